"""``hcm import mmsa``: MMSA feature pickles -> feature caches (reading, checking, writing, resuming)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from mmsa_files import Spec, make_arrays, reuse_encoders, write_file  # noqa: F401  (fixture)

from hcm.cache import CacheError, FeatureCache
from hcm.cache.inspect import verify_cache
from hcm.core.errors import UsageError
from hcm.pipeline.encoders.graph import ChainParser
from hcm.pipeline.importers.mmsa import import_mmsa
from hcm.pipeline.importers.mmsa_file import MmsaFileError, UnsafePickleError, read_mmsa_file

SPLITS = ("train", "valid", "test")
def _import(tmp_path: Path, spec: Spec, arrays: dict | None = None, name: str = "cache", **options) -> tuple:
    source = write_file(tmp_path / f"{spec.dataset}.pkl", spec, arrays)
    summary = import_mmsa(source, spec.dataset, "tiny", out=tmp_path / name, progress=False, **options)
    return source, summary, tmp_path / name


def _manifest(cache: Path) -> dict:
    return json.loads((cache / "manifest.json").read_text())


# --------------------------------------------------------------------------- safety and bad files


class _Payload:
    """Loading this with plain pickle writes a file: the kind of code a pickle can carry."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def test_a_malicious_pickle_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "ran.txt"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"train": {"id": _Payload(marker)}}, protocol=2))
    with pytest.raises(UnsafePickleError, match=r"builtins\.exec.*Nothing from the file was run.*--trust-pickle"):
        read_mmsa_file(path, "mosi", (-3.0, 3.0))
    assert not marker.exists()
    with pytest.raises(MmsaFileError):  # the same file with --trust-pickle does run the code
        read_mmsa_file(path, "mosi", (-3.0, 3.0), trust=True)
    assert marker.read_text() == "ran"


def _drop(key: str, split: str = "valid"):
    return lambda data: data[split].pop(key)


def _at(values: np.ndarray, row: int, value: float) -> np.ndarray:
    changed = np.array(values, dtype=np.float64)
    changed[row] = value
    return changed


def _set(key: str, value, split: str = "train"):
    return lambda data: data[split].__setitem__(key, value(data[split]))


BAD_FILES = {
    "missing split": (lambda data: data.pop("test"), r"lacks the split\(s\) \['test'\]"),
    "missing key": (_drop("vision"), r"split 'valid' lacks the key\(s\) \['vision'\]"),
    "one length key": (_drop("audio_lengths"), r"has vision_lengths but not the other modality's lengths"),
    "mismatched text": (_set("raw_text", lambda s: s["raw_text"][:-1]), r"32 ids but 31 raw_text"),
    "mismatched labels": (_set("regression_labels", lambda s: s["regression_labels"][:5]),
                          r"'regression_labels'\] has shape \(5,\), expected 32 values"),
    "mismatched audio": (_set("audio", lambda s: s["audio"][:7]),
                         r"'audio'\] is .*expected a numeric \(32, T, d\)"),
    "label out of range": (_set("regression_labels", lambda s: _at(s["regression_labels"], 3, 4.5)),
                           r"1 regression label\(s\) of split 'train' .* \[-3, 3\]"
                           r".*row 3 \('trainVid00\$_\$4'\) = 4\.5"),
    "label not finite": (_set("regression_labels", lambda s: _at(s["regression_labels"], 0, np.nan)),
                         r"not finite numbers in \[-3, 3\].*row 0"),
    "ids not strings": (_set("id", lambda s: np.arange(32)),
                        r"'id'\] row 0 holds a value of type int, expected a string"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_give_clear_errors(tmp_path: Path, case: str) -> None:
    change, message = BAD_FILES[case]
    arrays = make_arrays(Spec("mosi"))
    change(arrays)
    path = write_file(tmp_path / "bad.pkl", Spec("mosi"), arrays)
    with pytest.raises(MmsaFileError, match=message):
        read_mmsa_file(path, "mosi", (-3.0, 3.0))


def test_not_a_pickle_and_not_a_dict(tmp_path: Path) -> None:
    text = tmp_path / "label.csv"
    text.write_text("video_id,clip_id\n")
    with pytest.raises(MmsaFileError, match=r"label\.csv is not a readable pickle .*aligned_50\.pkl"):
        read_mmsa_file(text, "mosi", (-3.0, 3.0))
    listed = tmp_path / "list.pkl"
    listed.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(MmsaFileError, match="holds a list, expected a dict with the splits"):
        read_mmsa_file(listed, "mosi", (-3.0, 3.0))


def test_a_mosi_file_imported_as_sims_names_the_range(tmp_path: Path) -> None:
    path = write_file(tmp_path / "mosi.pkl", Spec("mosi"))
    with pytest.raises(MmsaFileError, match=r"\[-1, 1\], the range of --dataset sims.*CH-SIMS labels in \[-1, 1\]"):
        import_mmsa(path, "sims", "tiny", out=tmp_path / "cache", progress=False)
    assert not (tmp_path / "cache").exists()


# --------------------------------------------------------------------------- what the cache holds


FORMS = [Spec("mosi"), Spec("mosei", aligned=True, tool_format=True), Spec("sims", tool_format=True),
         Spec("sims", aligned=True)]


@pytest.mark.parametrize("spec", FORMS, ids=lambda s: f"{s.dataset}-{'aligned' if s.aligned else 'unaligned'}-"
                                               f"{'tool' if s.tool_format else 'distributed'}")
def test_ids_labels_and_rows_round_trip(tmp_path: Path, spec: Spec) -> None:
    arrays = make_arrays(spec)
    source, summary, cache_dir = _import(tmp_path, spec, arrays, shard_size=20)
    assert summary.imported == sum(spec.sizes) and not summary.skipped and not summary.masked
    assert verify_cache(cache_dir) == []
    cache = FeatureCache(cache_dir)
    items = [cache[i] for i in range(len(cache))]
    stored = pickle.loads(source.read_bytes())
    expected = [(split, i) for split in SPLITS for i in range(len(arrays[split]["id"]))]
    assert [item.id for item in items] == [str(stored[s]["id"][i]) for s, i in expected]
    assert [item.split for item in items] == [s for s, _ in expected]
    # labels exactly as stored (float32 or float64 in the file; float64 in the cache)
    assert [item.label for item in items] == [float(stored[s]["regression_labels"][i]) for s, i in expected]
    for item, (split, i) in zip(items, expected):
        for key in ("vision", "audio"):
            rows = np.asarray(stored[split][key][i])
            if spec.aligned:  # all-zero padding at the end is trimmed
                count = int(np.flatnonzero(np.any(rows != 0, axis=1))[-1]) + 1
            else:
                count = int(stored[split][f"{key}_lengths"][i])
            assert np.array_equal(item.features[f"mmsa_{key}"], rows[:count].astype(np.float32))
        assert item.text == str(stored[split]["raw_text"][i]) and item.features["roberta"].shape[0] > 2
        if spec.dataset == "sims":
            assert item.labels["label_T"] == float(np.float32(stored[split]["regression_labels_T"][i]))
    meta = _manifest(cache_dir)
    assert meta["profile"] == "mmsa-tiny" and meta["recipe"]["source"]["aligned"] == spec.aligned
    assert meta["recipe"]["streams"]["video"] == ["mmsa_vision"]


def test_unusable_rows_and_modalities_are_reported(tmp_path: Path) -> None:
    arrays = make_arrays(Spec("mosi"))
    train = arrays["train"]
    train["id"][5] = train["id"][4]  # repeated id
    train["id"][6] = ""
    train["raw_text"][7] = None  # a missing transcript: imported with the text masked
    train["vision_lengths"][8] = 0
    train["audio_lengths"][9] = 99  # more than the 10 stored rows
    train["audio"][10, 1, 2] = -np.inf  # COVAREP's -inf, zeroed by MMSA's loader
    train["vision"][10, 0, :3] = np.nan
    source, summary, cache_dir = _import(tmp_path, Spec("mosi"), arrays)
    failures = {f["id"]: f["reason"] for f in _manifest(cache_dir)["failures"]}
    assert failures == {train["id"][4]: "train row 5: id already used by train row 4",
                        "<train row 6>": "train row 6: empty id"}
    cache = FeatureCache(cache_dir)
    by_id = {cache[i].id: cache[i] for i in range(len(cache))}
    assert len(by_id) == sum(Spec().sizes) - 2
    text, video, audio, nonfinite = (by_id[train["id"][i]] for i in (7, 8, 9, 10))
    assert not text.masks["text"] and "empty raw_text" in text.notes["text"]
    assert not video.masks["video"] and video.features["mmsa_vision"].shape == (0, 20)
    assert "vision_lengths is 0" in video.notes["video"]
    assert audio.masks["audio"] and audio.features["mmsa_audio"].shape == (10, 5)
    assert "audio_lengths 99 exceeds the 10 stored rows" in audio.notes["audio_rows"]
    assert nonfinite.features["mmsa_audio"][1, 2] == 0 and np.all(nonfinite.features["mmsa_vision"][0, :3] == 0)
    assert nonfinite.notes["audio_nonfinite"].startswith("1 non-finite audio values set to 0")
    assert nonfinite.notes["vision_nonfinite"].startswith("3 non-finite vision values")
    assert [item_id for item_id, _ in summary.nonfinite] == [train["id"][10]]
    assert "2 skipped" in summary.format() and "2 with a masked modality" in summary.format()


def test_aligned_rows_all_keeps_padding_and_an_all_zero_sequence_is_masked(tmp_path: Path) -> None:
    spec = Spec("mosi", aligned=True)
    arrays = make_arrays(spec)
    arrays["train"]["vision"][0] = 0.0
    _, _, trimmed = _import(tmp_path, spec, arrays, name="trim")
    _, _, kept = _import(tmp_path, spec, arrays, name="all", aligned_rows="all")
    first = FeatureCache(trimmed)[0]
    assert not first.masks["video"] and "all 10 stored vision rows are zero" in first.notes["video"]
    assert all(FeatureCache(kept)[i].features["mmsa_audio"].shape[0] == 10 for i in range(5))
    assert _manifest(kept)["recipe"]["source"]["rows"] == "all stored rows"


def test_a_rerun_resumes_and_another_file_is_refused(tmp_path: Path) -> None:
    _, first, cache_dir = _import(tmp_path, Spec("mosi"), shard_size=16)
    _, again, _ = _import(tmp_path, Spec("mosi"), shard_size=16)
    assert (first.shards.total, first.shards.resumed) == (4, 0)
    assert (again.shards.resumed, again.imported) == (4, 0)
    with pytest.raises(CacheError, match="recipe hash"):
        _import(tmp_path, Spec("mosi", seed=1), shard_size=16)


# --------------------------------------------------------------------------- text


def test_sims_without_a_chinese_parser_uses_chain_graphs_and_says_so(tmp_path: Path) -> None:
    _, summary, cache_dir = _import(tmp_path, Spec("sims", sizes=(8, 4, 4)), spacy_model="zh_not_installed_here")
    (warning,) = _manifest(cache_dir)["recipe"]["warnings"]
    assert "'zh_not_installed_here' for Chinese is not installed: text graphs are chains" in warning
    assert "\n" not in warning and summary.warnings == [warning]
    item = FeatureCache(cache_dir)[0]
    rows = np.flatnonzero(item.features["roberta_current"])
    edges = item.features["text_edges"]
    assert len(edges) >= len(rows) - 1 and set(edges.reshape(-1)) <= set(rows.tolist())
    assert _manifest(cache_dir)["features"][0]["config"]["parser"] == "chain"


def test_english_without_its_parser_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="'en_not_installed_here' is not installed"):
        _import(tmp_path, Spec("mosi", sizes=(4, 4, 4)), spacy_model="en_not_installed_here")


def test_chain_parser_words() -> None:
    (chinese, english) = ChainParser().parse(["我很喜欢 it", "so  good today"])
    assert [(w.start, w.end, w.head) for w in chinese] == [(0, 1, 0), (1, 2, 0), (2, 3, 1), (3, 4, 2), (5, 7, 3)]
    assert [(w.start, w.end, w.head) for w in english] == [(0, 2, 0), (4, 8, 0), (9, 14, 1)]


def test_a_bert_type_chinese_tokenizer_gets_cls_and_sep_and_chain_edges() -> None:
    from types import SimpleNamespace

    from transformers import BertTokenizerFast

    from hcm.pipeline.encoders.graph import dependency_edges
    from hcm.pipeline.encoders.text import text_window

    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"我说很喜欢电影"]
    tokenizer = BertTokenizerFast(vocab={token: i for i, token in enumerate(tokens)})
    assert tokenizer.bos_token_id is None  # BERT-type: no <s>, so [CLS] opens the window
    utterance = SimpleNamespace(text="很喜欢", context_before=["我说"], context_after=["电影"])
    window = text_window(tokenizer, utterance, 2, 64)
    assert window.input_ids[0] == tokenizer.cls_token_id and window.input_ids[-1] == tokenizer.sep_token_id
    rows = np.flatnonzero(window.current)
    assert tokenizer.convert_ids_to_tokens(window.input_ids[rows].tolist()) == ["很", "喜", "欢"]
    (words,) = ChainParser().parse([window.current_text])
    edges = dependency_edges(words, window.spans, rows)
    assert edges.tolist() == [[rows[0], rows[1]], [rows[1], rows[2]]]
