"""``--split-file``: a user-given id,split CSV replacing every dataset's splits, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hcm.cache import CacheError
from hcm.cli import app
from hcm.pipeline.datasets import SplitFile, SplitFileError, get_dataset
from hcm.pipeline.extract import extract
from hcm.pipeline.sample import make_sample
from hcm.pipeline.sample.registry import get_sample

FAST = dict(profile="tiny", frames=2, segments=2, batch_size=4, workers=0, progress=False)


def write_split(path: Path, rows: list[tuple[str, str]], header: str = "id,split") -> Path:
    path.write_text("\n".join([header] + [f"{item},{split}" for item, split in rows]) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    parent = tmp_path_factory.mktemp("corpora")
    # iemocap at its minimum size (10) keeps no session 5 turn; 16 keeps four
    sizes = {"mosei": get_sample("mosei").min_n, "meld": get_sample("meld").min_n, "iemocap": 16}
    return {name: make_sample(name, parent / name, n=n, progress=False).root for name, n in sizes.items()}


@pytest.mark.parametrize("dataset", ["mosei", "meld", "iemocap", "sample"])
def test_split_file_reassigns_and_leaves_out(dataset: str, corpora: dict[str, Path], tmp_path: Path) -> None:
    adapter = get_dataset(dataset)
    root = corpora["mosei" if dataset == "sample" else dataset]
    default = adapter.utterances(root)
    # the last item goes to train, the first to test, the second to valid; the rest are not listed
    rows = [(default[-1].id, "train"), (default[0].id, "test"), (default[1].id, "valid")]
    selection = adapter.select(root, split_file=SplitFile.read(write_split(tmp_path / "s.csv", rows)))
    assert [(u.id, u.split) for u in selection.utterances] == [rows[0], rows[2], rows[1]]  # train, valid, test
    assert selection.left_out == len(default) - 3
    assert [u.split for u in adapter.utterances(root)] == [u.split for u in default]  # adapter untouched
    only_test = adapter.utterances(root, ["test"], SplitFile.read(tmp_path / "s.csv"))
    assert [u.id for u in only_test] == [default[0].id]


def test_iemocap_default_split_is_sessions_one_to_four_and_five(corpora: dict[str, Path]) -> None:
    items = get_dataset("iemocap").utterances(corpora["iemocap"])
    assert {u.split for u in items if u.id.startswith("Ses05")} == {"test"}
    assert {u.split for u in items if not u.id.startswith("Ses05")} == {"train", "valid"}


def test_unknown_ids_are_listed(corpora: dict[str, Path], tmp_path: Path) -> None:
    adapter = get_dataset("meld")
    known = adapter.utterances(corpora["meld"])[0].id
    wrong = [(known, "train")] + [(f"dia{k}_utt0", "test") for k in range(7)]  # MELD ids carry the split
    split = SplitFile.read(write_split(tmp_path / "s.csv", wrong))
    with pytest.raises(SplitFileError) as caught:
        adapter.select(corpora["meld"], split_file=split)
    message = str(caught.value)
    assert "7 of its 8 ids are not items of meld" in message and "'dia0_utt0'" in message
    assert "and 2 more" in message and repr(known) in message  # a few listed, and what ids look like


@pytest.mark.parametrize("content, expected", [
    ("a,train\nb,test\n", r"missing column\(s\) \['id', 'split'\].*header `id,split`"),
    ("", r"missing column\(s\)"),
    ("id,split\n", "no rows after the header"),
    ("id,split\na,train\nb,dev\nc,Test\n", r"line 3: split 'dev' for 'b' is not one of train, valid, test.*line 4"),
    ("id,split\na,train\nb,test\na,valid\na,train\n", r"1 id\(s\) listed more than once: 'a' \(lines 2, 4, 5\)"),
    ("id,split\n,train\n", "line 2: empty id"),
])
def test_bad_split_files_are_refused(content: str, expected: str, tmp_path: Path) -> None:
    path = tmp_path / "split.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(SplitFileError, match=expected):
        SplitFile.read(path)


def test_missing_split_file(tmp_path: Path) -> None:
    with pytest.raises(SplitFileError, match="does not exist"):
        SplitFile.read(tmp_path / "nope.csv")


def test_extra_columns_and_spaces_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "split.csv"
    path.write_text("\ufeffsplit, id ,source\ntrain, a ,paper\n", encoding="utf-8")
    assert SplitFile.read(path).splits == {"a": "train"}


def test_extract_records_the_split_file_and_refuses_another(corpora: dict[str, Path], tmp_path: Path,
                                                            one_thread: None) -> None:
    ids = [u.id for u in get_dataset("mosei").utterances(corpora["mosei"])]
    first = write_split(tmp_path / "a.csv", [(ids[0], "test"), (ids[1], "train"), (ids[2], "valid")])
    out = tmp_path / "cache"
    summary = extract("mosei", corpora["mosei"], out, split_file=first, **FAST)
    assert summary.planned == 3 and summary.left_out == len(ids) - 3
    assert f"{len(ids) - 3} dataset items not in it left out" in summary.format()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == {"test": 1, "train": 1, "valid": 1}
    assert manifest["recipe"]["plan"]["split_file"] == {
        "sha256": SplitFile.read(first).sha256, "ids": 3, "left_out": len(ids) - 3}
    moved = first.rename(tmp_path / "renamed.csv")  # the same content elsewhere resumes
    assert extract("mosei", corpora["mosei"], out, split_file=moved, **FAST).shards.resumed == 1
    other = write_split(tmp_path / "b.csv", [(ids[0], "train"), (ids[1], "train"), (ids[2], "valid")])
    with pytest.raises(CacheError, match="other settings"):
        extract("mosei", corpora["mosei"], out, split_file=other, **FAST)


def test_cli_split_file_errors_exit_2(corpora: dict[str, Path], workdir: Path, tmp_path: Path) -> None:
    bad = write_split(tmp_path / "bad.csv", [("not-an-id", "train")])
    result = CliRunner().invoke(app, ["extract", "--dataset", "sample", "--data-root", str(corpora["mosei"]),
                                      "--split-file", str(bad), "--quiet"])
    assert result.exit_code == 2
    assert "not-an-id" in result.output and "not items of sample" in result.output
