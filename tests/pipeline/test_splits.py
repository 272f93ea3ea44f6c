"""hcm.pipeline.datasets.splits on its own, without a corpus: how videos are dealt to the splits,
what a split file's reading accepts and says, which items it keeps or leaves out, and what the
cache's recipe records of it (the corpus-wide runs are in test_split_file.py)."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest

from hcm.pipeline.datasets.base import Utterance
from hcm.pipeline.datasets.splits import SplitFile, SplitFileError, assign_by_group

SHARES = {"train": 0.7, "valid": 0.1, "test": 0.2}


# ---------------------------------------------------------------------- assign_by_group

def test_groups_go_to_the_split_furthest_below_its_share() -> None:
    chosen = assign_by_group([1] * 10, SHARES)
    assert chosen.count("train") == 7 and chosen.count("valid") == 1 and chosen.count("test") == 2
    assert chosen[0] == "train"  # the first goes to the largest share


def test_the_deal_of_equal_groups_step_by_step() -> None:
    # after each group, the split with the largest shares[s] * total - assigned[s] takes the next
    assert assign_by_group([1] * 5, {"a": 0.5, "b": 0.3, "c": 0.2}) == ["a", "b", "c", "a", "a"]  # a, b tie last
    assert assign_by_group([1] * 4, {"a": 0.5, "b": 0.5}) == ["a", "b", "a", "b"]  # ties to the first


def test_the_size_of_the_coming_group_counts_in_the_total() -> None:
    # a big group first: 10 clips of 12 go to "a"; "b" then lags by 0.5 * 12 - 0 and takes the rest
    assert assign_by_group([10, 1, 1], {"a": 0.5, "b": 0.5}) == ["a", "b", "b"]
    assert assign_by_group([2, 2, 1, 1], {"a": 0.5, "b": 0.5}) == ["a", "b", "a", "b"]
    # with the coming group counted, 0.8 * 4 - 1 = 2.2 > 0.2 * 4 - 0 = 0.8 gives the 3 clips to "a"
    assert assign_by_group([1, 3, 1, 1, 1], {"a": 0.8, "b": 0.2}) == ["a", "a", "b", "a", "a"]


def test_the_last_groups_go_to_the_splits_still_empty() -> None:
    assert assign_by_group([5, 5, 1], SHARES) == ["train", "valid", "test"]
    assert assign_by_group([1, 1, 1, 1], SHARES) == ["train", "test", "train", "valid"]
    assert assign_by_group([3, 1], {"a": 0.9, "b": 0.1}) == ["a", "b"]
    assert assign_by_group([1, 1], SHARES) == ["train", "valid"]  # fewer groups than splits: in the shares' order
    assert assign_by_group([], SHARES) == []


def test_enough_groups_give_every_split_one() -> None:
    for n in range(3, 12):
        assert set(assign_by_group([10] + [1] * (n - 1), SHARES)) == set(SHARES), n


# ---------------------------------------------------------------------- reading a split file

def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_a_split_file_reads_as_id_to_split_with_its_content_hash(tmp_path: Path) -> None:
    path = write(tmp_path / "s.csv", "id,split\na,train\n b , valid \nc,test\n")
    split = SplitFile.read(str(path))
    assert split.splits == {"a": "train", "b": "valid", "c": "test"} and list(split.splits) == ["a", "b", "c"]
    assert split.path == path and isinstance(split.path, Path)
    assert split.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert split.recipe(4) == {"sha256": split.sha256, "ids": 3, "left_out": 4}


def test_a_missing_file_is_named_with_what_to_give(tmp_path: Path) -> None:
    with pytest.raises(SplitFileError, match=rf"^split file {tmp_path / 'no.csv'} does not exist; give a CSV with "
                                             r"the header `id,split`$"):
        SplitFile.read(tmp_path / "no.csv")
    with pytest.raises(SplitFileError, match="does not exist"):
        SplitFile.read(tmp_path)  # a folder is not a file


def test_a_file_without_the_header_says_so(tmp_path: Path) -> None:
    path = write(tmp_path / "s.csv", "name,part\na,train\n")
    with pytest.raises(SplitFileError, match=r"^split file .*s\.csv: missing column\(s\) \['id', 'split'\].* "
                                             r"Its first line must be the header `id,split`\.$"):
        SplitFile.read(path)


def problems(tmp_path: Path, text: str) -> str:
    path = write(tmp_path / "s.csv", text)
    with pytest.raises(SplitFileError) as caught:
        SplitFile.read(path)
    message = str(caught.value)
    assert message.startswith(f"split file {path}: ") and message.endswith(". Fix the file and run again.")
    return message[len(f"split file {path}: "):-len(". Fix the file and run again.")]


def test_every_problem_of_a_file_is_listed_with_its_line(tmp_path: Path) -> None:
    text = "id,split\n,train\na,dev\nb,test\nb,train\nc,Train\nb,test\n"
    assert problems(tmp_path, text) == ("line 2: empty id, line 3: split 'dev' for 'a' is not one of train, valid, "
                                        "test, line 6: split 'Train' for 'c' is not one of train, valid, test, "
                                        "1 id(s) listed more than once: 'b' (lines 4, 5, 7)")


def test_an_id_twice_is_refused_even_with_the_same_split(tmp_path: Path) -> None:
    assert problems(tmp_path, "id,split\na,train\nb,test\na,train\n") == \
        "1 id(s) listed more than once: 'a' (lines 2, 4)"


def test_an_empty_split_and_a_file_of_only_a_header(tmp_path: Path) -> None:
    assert problems(tmp_path, "id,split\na,\n") == "line 2: split '' for 'a' is not one of train, valid, test"
    assert problems(tmp_path, "id,split\n") == "no rows after the header"
    assert problems(tmp_path, "id,split\n,\n") == "line 2: empty id"


def test_long_lists_of_problems_show_five_and_count_the_rest(tmp_path: Path) -> None:
    rows = "".join(f"x{i},nope\n" for i in range(8))
    shown = problems(tmp_path, "id,split\n" + rows)
    assert shown.count("is not one of") == 5 and shown.endswith("'x4' is not one of train, valid, test ... and 3 more")
    six = problems(tmp_path, "id,split\n" + "".join(f"x{i},nope\n" for i in range(6)))
    assert six.endswith("... and 1 more")
    five = problems(tmp_path, "id,split\n" + "".join(f"x{i},nope\n" for i in range(5)))
    assert five.count("is not one of") == 5 and "more" not in five
    repeated = problems(tmp_path, "id,split\n" + "".join(f"y{i},train\ny{i},test\n" for i in range(7)))
    assert repeated.startswith("7 id(s) listed more than once: 'y0' (lines 2, 3), ") and \
        repeated.endswith("'y4' (lines 10, 11) ... and 2 more")


# ---------------------------------------------------------------------- assigning items

def item(ident: str, split: str = "train", dropped: tuple[str, str] | None = None) -> Utterance:
    return Utterance(id=ident, split=split, label=0.0, labels={}, text="", group=ident, position=0, video=None,
                     audio=None, dropped=dropped)


def test_assign_keeps_the_listed_items_in_their_order_with_the_files_split(tmp_path: Path,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    split = SplitFile.read(write(tmp_path / "s.csv", "id,split\nc,train\na,test\n"))
    items = [item("a", "train"), item("b", "valid"), item("c", "test"), item("d", "test"),
             item("e", dropped=("invalid label", "row 5"))]
    with caplog.at_level(logging.INFO, logger="hcm.pipeline.datasets.splits"):
        kept, left_out = split.assign(items, "mosei")
    assert [(u.id, u.split) for u in kept] == [("a", "test"), ("c", "train")]
    assert left_out == 2  # b and d; the rejected row e is a failure of its own, not left out
    assert [u.split for u in items] == ["train", "valid", "test", "test", "train"]  # the items are not changed
    assert f"split file {split.path}: train 1, valid 0, test 1; 2 item(s) of mosei not in the file are left out" \
        in caplog.messages


def test_assign_of_a_file_listing_every_item_leaves_none_out(tmp_path: Path) -> None:
    split = SplitFile.read(write(tmp_path / "s.csv", "id,split\na,valid\nb,valid\n"))
    kept, left_out = split.assign([item("a"), item("b")], "meld")
    assert [u.split for u in kept] == ["valid", "valid"] and left_out == 0


def test_ids_the_dataset_lacks_are_refused_with_examples_of_its_ids(tmp_path: Path) -> None:
    split = SplitFile.read(write(tmp_path / "s.csv", "id,split\na,train\nzz,test\nyy,valid\n"))
    items = [item("a"), item("b"), item("c"), item("d")]
    with pytest.raises(SplitFileError, match=rf"^split file {split.path}: 2 of its 3 ids are not items of meld: "
                                             r"'zz', 'yy'\. meld ids look like 'a', 'b', 'c' \(the `id` of cache "
                                             r"items and predictions\.csv\); rows the adapter skipped as malformed "
                                             r"are logged above\.$"):
        split.assign(items, "meld")
    with pytest.raises(SplitFileError, match=r"3 of its 3 ids are not items of iemocap: 'a', 'zz', 'yy'\. iemocap "
                                             r"ids look like none: the dataset lists no item \("):
        split.assign([], "iemocap")
