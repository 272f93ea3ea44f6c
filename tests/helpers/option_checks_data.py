"""The every-option table's checks of the commands that make caches: extract, import mmsa,
import csd. Each takes the session fixtures it names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_options import WEIGHT_NAMES, Corpus, Space, hcm, import_mmsa, items_of, missing_weights, ok

from hcm.cache import FeatureCache


def check_extract_splits(extracted: Path, corpus: Corpus) -> None:
    planned = (corpus.root / "label.csv").read_text().splitlines()[1:]
    train = [row for row in planned if row.endswith(",train")]
    assert 0 < len(train) < len(planned)
    assert set(items_of(extracted).values()) == {"train"} and len(items_of(extracted)) == len(train)


def check_extract_spacy_model(extracted: Path) -> None:
    with FeatureCache(extracted) as cache:
        assert cache.meta.recipe["profile"]["parser"]["model"] == "chain"


def check_extract_device(extracted: Path) -> None:
    manifest = json.loads((extracted / "manifest.json").read_text())
    assert '"device": "cpu"' in json.dumps(manifest), manifest


def check_extract_shards(space: Space, corpus: Corpus) -> None:
    out = space.root.parent / "shard-1-of-2"
    run = ok(hcm(space, *corpus.args, "--out", str(out), "--num-shards", "2", "--shard-index", "1"))
    assert sorted(path.name for path in out.glob("shard-*.h5")) == ["shard-00001.h5"]
    assert "1 of 2 assigned to this worker" in run.result.output


def check_extract_strict(space: Space, corpus: Corpus, tmp_path: Path) -> None:
    from hcm.pipeline.sample import make_sample

    faulty = make_sample("mosei", tmp_path / "faulty", n=12, seed=3, faults=True, progress=False).root
    args = [*corpus.args[:4], str(faulty), *corpus.args[5:], "--out"]
    masked = ok(hcm(space, *args, str(tmp_path / "lenient")))
    strict = hcm(space, *args, str(tmp_path / "strict"), "--strict")
    assert "masked" in masked.result.output
    assert strict.result.exit_code == 1 and "--strict: " in strict.result.output, strict.result.output
    assert "Traceback" not in strict.result.output


def check_extract_custom_facts(space: Space, corpus: Corpus, tmp_path: Path) -> None:
    """--label-range and --split-seed reach the custom dataset (the corpus without its mode column)."""
    root = tmp_path / "custom"
    root.mkdir()
    (root / "Raw").symlink_to(corpus.root / "Raw", target_is_directory=True)
    rows = [line.rsplit(",", 1)[0] for line in (corpus.root / "label.csv").read_text().splitlines()]
    (root / "label.csv").write_text("\n".join(rows) + "\n")
    splits = {}
    for seed in ("0", "5"):
        out = tmp_path / f"seed-{seed}"
        ok(hcm(space, *corpus.args[:2], "custom", *corpus.args[3:4], str(root), *corpus.args[5:], "--out", str(out),
               "--label-range", "-4,4", "--split-seed", seed))
        with FeatureCache(out) as cache:
            assert cache.meta.recipe["facts"]["label_range"] == [-4.0, 4.0], cache.meta.recipe
        splits[seed] = items_of(out)
    assert splits["0"].keys() == splits["5"].keys() and splits["0"] != splits["5"]


def check_weight_option(space: Space, corpus: Corpus, no_weight_caches: Path, option: str = "") -> None:
    files = {"--clip-weights": "RN50.pt", "--clip-vocab": "bpe_simple_vocab_16e6.txt.gz",
             "--efficientnet-weights": "efficientnet-b0-355c32eb.pth", "--esresnext-weights": "ESRNXFBSP.pt"}
    before = missing_weights(space, corpus)
    after = missing_weights(space, corpus, option, str(no_weight_caches / files[option]))
    assert f"- {WEIGHT_NAMES[option]}" in before and f"- {WEIGHT_NAMES[option]}" not in after, after
    assert "5 missing" in before and "4 missing" in after


def check_weights_dir(space: Space, corpus: Corpus, no_weight_caches: Path) -> None:
    found = missing_weights(space, corpus, "--weights-dir", str(no_weight_caches))
    assert "1 missing" in found and "RoBERTa" in found
    assert not any(f"- {name}" in found for name in WEIGHT_NAMES.values()), found


def check_text_model(space: Space, corpus: Corpus, no_weight_caches: Path) -> None:
    folder = no_weight_caches / "my-roberta"
    folder.mkdir()
    found = missing_weights(space, corpus, "--text-model", str(folder))
    assert f"--roberta {folder} is not a complete model folder" in found


def check_import_out(imported: Path, space: Space) -> None:
    assert (imported / "manifest.json").is_file() and not (space.root / "features" / "mosi").exists()


def check_import_shard_size(imported: Path) -> None:
    with FeatureCache(imported) as cache:
        n, size = len(cache), cache.meta.shard_size
    assert size == 4 and len(list(imported.glob("shard-*.h5"))) == -(-n // 4) > 1


def check_import_device(imported: Path) -> None:
    assert '"device": "cpu"' in json.dumps(json.loads((imported / "manifest.json").read_text()))


def check_import_spacy_model(imported: Path) -> None:
    with FeatureCache(imported) as cache:
        assert cache.meta.recipe["profile"]["parser"]["model"] == "chain"


def check_import_aligned_rows(imported: Path, space: Space, mmsa_file: Path, tmp_path: Path) -> None:
    ok(import_mmsa(space, mmsa_file, "--out", str(tmp_path / "trimmed")))
    with FeatureCache(imported) as every, FeatureCache(tmp_path / "trimmed") as trimmed:
        assert every.meta.recipe["source"]["rows"] == "all stored rows"
        assert trimmed.meta.recipe["source"]["rows"] == "first to last row that is not all zeros"


def check_import_batch_size(space: Space, mmsa_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hcm.pipeline.importers import mmsa

    sizes: list[int] = []
    encode = mmsa.encode_batch
    monkeypatch.setattr(mmsa, "encode_batch", lambda rows, encoders: sizes.append(len(rows)) or encode(rows, encoders))
    ok(import_mmsa(space, mmsa_file, "--out", str(tmp_path / "cache"), "--batch-size", "3"))
    assert max(sizes) == 3 and sum(sizes) > 3


def check_import_trust_pickle(imported: Path, space: Space, mmsa_file: Path, tmp_path: Path) -> None:
    """A file the safe reader refuses (it also holds a date object) loads with --trust-pickle."""
    import datetime
    import pickle

    data = pickle.loads(mmsa_file.read_bytes())
    data["train"]["extracted_on"] = datetime.date(2020, 1, 1)
    source = tmp_path / "aligned_50.pkl"
    source.write_bytes(pickle.dumps(data))
    refused = import_mmsa(space, source, "--out", str(tmp_path / "refused"))
    assert refused.result.exit_code == 2 and "--trust-pickle" in refused.result.output, refused.result.output
    ok(import_mmsa(space, source, "--out", str(tmp_path / "trusted"), "--trust-pickle"))
    assert len(items_of(tmp_path / "trusted")) == len(items_of(imported))  # the fixture, not its path: any order


def check_import_weights(space: Space, mmsa_file: Path, no_weight_caches: Path, option: str = "") -> None:
    """The paper profile's text weights: the named file or folder is the one looked at."""
    paper = ["import", "mmsa", str(mmsa_file), "--dataset", "mosi", "--quiet", "--spacy-model", "chain"]
    before = hcm(space, *paper).result.output
    named = {"--clip-weights": no_weight_caches / "RN50.pt",
             "--clip-vocab": no_weight_caches / "bpe_simple_vocab_16e6.txt.gz",
             "--weights-dir": no_weight_caches, "--text-model": no_weight_caches}[option]
    after = hcm(space, *paper, option, str(named)).result.output
    if option == "--text-model":
        assert f"{no_weight_caches} is not a complete model folder" in after, after
        return
    gone = {"--clip-weights": ["CLIP RN50"], "--clip-vocab": ["CLIP BPE vocabulary"],
            "--weights-dir": ["CLIP RN50", "CLIP BPE vocabulary"]}[option]
    for name in gone:
        assert f"- {name}" in before and f"- {name}" not in after, after


def check_import_csd(space: Space, tmp_path: Path) -> None:
    """Each sequence chosen by a file of another name, --align words, --out and --shard-size."""
    import shutil

    from csd_files import FILES, write_mosi_set

    from hcm.core.configs import configs_dir

    folds = json.loads((configs_dir() / "datasets" / "folds" / "mosi.json").read_text())
    folder = write_mosi_set(tmp_path / "CMU_MOSI", {folds[s][0]: 3 for s in ("train", "valid", "test")}).folder
    chosen = {}
    for option, root in (("--text", "glove_vectors"), ("--video", "FACET_4.2"), ("--audio", "COVAREP"),
                         ("--words", "words"), ("--labels", "Opinion Segment Labels")):
        chosen[option] = f"my_{FILES[root]}"
        shutil.move(folder / FILES[root], folder / chosen[option])
    args = [arg for pair in chosen.items() for arg in pair]
    out = tmp_path / "cache"
    ok(hcm(space, "import", "csd", str(folder), "--dataset", "mosi", *args, "--align", "words", "--out", str(out),
           "--shard-size", "4", "--quiet"))
    with FeatureCache(out) as cache:
        source, n = cache.meta.recipe["source"], len(cache)
    assert source["align"] == "words" and len(list(out.glob("shard-*.h5"))) == -(-n // 4) > 1
    assert {source["files"][name]["file"] for name in source["files"]} == set(chosen.values()), source["files"]


# --------------------------------------------------------------------------- the table
