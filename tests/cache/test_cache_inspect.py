"""hcm.cache.inspect problem by problem: a sound synthetic cache verifies clean, and each damage
made to it by hand (a shard's attributes, items, features, the manifest, files on disk) is found
and said in its own words, naming the file; and the summary table of ``hcm cache info``.

A shard edited here gets its new sha256 written into the manifest, so that only the damage made
on purpose is found (the checksum check has tests of its own)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from cache_synth import write_cache

from hcm.cache import CacheError, CacheMeta, cache_info, dropped_items, masked_items, verify_cache
from hcm.cache.inspect import format_info
from hcm.cache.manifest import sha256_file

SHARD = "shard-00001.h5"  # positions 5-9 of the 23-item plan: 4 items, item 6 failed


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    directory = tmp_path / "cache"
    write_cache(directory)
    return directory


def manifest(cache: Path) -> dict:
    return json.loads((cache / "manifest.json").read_text())


def edit_manifest(cache: Path, change: Callable[[dict], None]) -> None:
    content = manifest(cache)
    change(content)
    (cache / "manifest.json").write_text(json.dumps(content))


def edit_shard(cache: Path, change: Callable[[h5py.File], None], name: str = SHARD) -> None:
    with h5py.File(cache / name, "r+") as f:
        change(f)
    digest = sha256_file(cache / name)
    edit_manifest(cache, lambda m: m["shards"][str(int(name[6:11]))].__setitem__("sha256", digest))


def replace(group: h5py.Group, name: str, data: np.ndarray) -> None:
    attrs = dict(group[name].attrs)
    del group[name]
    group.create_dataset(name, data=data)
    group[name].attrs.update(attrs)


def test_a_sound_cache_has_no_problem(cache: Path) -> None:
    assert verify_cache(cache) == []
    assert verify_cache(str(cache)) == []


# ---------------------------------------------------------------------- one shard's attributes and items

@pytest.mark.parametrize(("change", "problem"), [
    (lambda f: f.attrs.__setitem__("schema_version", 1), "schema version 1, expected 2"),
    (lambda f: f.attrs.__setitem__("shard_index", 7), "says it is shard 7"),
    (lambda f: f.attrs.__setitem__("failures", "[]"), "failures differ from the manifest's"),
    (lambda f: f.attrs.__setitem__("masked", "[]"), "masked modalities differ from the manifest's"),
])
def test_a_shards_own_attributes_are_checked(cache: Path, change: Callable, problem: str) -> None:
    edit_shard(cache, change)
    assert verify_cache(cache) == [f"{SHARD}: {problem}"]


def test_a_shard_of_another_recipe_is_named_with_both_hashes(cache: Path) -> None:
    recipe_hash = manifest(cache)["recipe_hash"]

    def other_recipe(f: h5py.File) -> None:
        f.attrs["recipe_hash"] = "abc"
        f["features/mel"].attrs["recipe_hash"] = "abc"

    edit_shard(cache, other_recipe)
    assert verify_cache(cache) == [f"{SHARD}: recipe hash abc, the manifest has {recipe_hash}",
                                   f"{SHARD}: feature 'mel' carries recipe hash abc"]


def test_a_shard_without_masked_entries_is_read_as_none(cache: Path) -> None:
    def no_masked(f: h5py.File) -> None:
        del f.attrs["masked"]

    edit_shard(cache, no_masked)
    edit_manifest(cache, lambda m: m["shards"]["1"].pop("masked"))
    assert verify_cache(cache) == []


def test_counts_against_the_manifest(cache: Path) -> None:
    edit_manifest(cache, lambda m: m["shards"]["1"].update(items=3, counts={"train": 2, "valid": 1}))
    assert verify_cache(cache) == [
        f"{SHARD}: 4 items, the manifest lists 3",
        f"{SHARD}: split counts {{'test': 2, 'valid': 1, 'train': 1}}, the manifest lists {{'train': 2, 'valid': 1}}",
        "shard 1 accounts for 4 plan positions, expected 5"]


def test_regression_labels_must_be_finite(cache: Path) -> None:
    edit_shard(cache, lambda f: f["items/label"].__setitem__(2, np.inf))
    assert verify_cache(cache) == [f"{SHARD}: non-finite regression labels"]


def test_class_labels_must_be_class_indices(cache: Path) -> None:
    edit_manifest(cache, lambda m: m.update(task="classification", classes=["neg", "pos"]))
    labels = {0: [0, 1, 1, 0, 0], 1: [0, 2, 1, 1], 2: [0, -1, 0, 0], 3: [np.inf, 0, 0, 1, 0], 4: [1, 1]}
    for k, values in labels.items():
        edit_shard(cache, lambda f, v=values: f["items/label"].__setitem__(slice(None), v), f"shard-0000{k}.h5")
    assert verify_cache(cache) == ["shard-00001.h5: class labels outside 0..1",
                                   "shard-00002.h5: class labels outside 0..1",
                                   "shard-00003.h5: class labels outside 0..1"]


def test_a_masked_modality_the_items_do_not_mask_is_named(cache: Path) -> None:
    def unmask(f: h5py.File) -> None:
        flags = f["items/masks"][()]
        flags[:, :] = 1
        f["items/masks"][...] = flags

    edit_shard(cache, unmask)
    assert verify_cache(cache) == [f"{SHARD}: 5 listed masked modalities are not masked in the items, e.g. "
                                   "['vid1$_$2', 'vid2$_$1', 'vid2$_$1']"]


def test_a_masked_entry_of_an_unknown_item_or_modality_is_named(cache: Path) -> None:
    entries = manifest(cache)["shards"]["1"]["masked"]
    changed = [{**entries[0], "id": "nobody"}, {**entries[1], "modality": "smell"}, *entries[2:]]

    def relist(f: h5py.File) -> None:
        f.attrs["masked"] = json.dumps(changed)

    edit_shard(cache, relist)
    edit_manifest(cache, lambda m: m["shards"]["1"].__setitem__("masked", changed))
    assert verify_cache(cache) == [f"{SHARD}: 2 listed masked modalities are not masked in the items, e.g. "
                                   "['nobody', 'vid2$_$1']"]


def test_item_columns_of_other_lengths_are_named(cache: Path) -> None:
    edit_shard(cache, lambda f: replace(f["items"], "position", np.zeros(3, dtype=np.int64)))
    problems = verify_cache(cache)
    assert problems[0] == (f"{SHARD}: item columns have lengths {{'id': 4, 'split': 4, 'label': 4, 'group': 4, "
                           "'position': 3, 'text': 4, 'labels': 4, 'notes': 4, 'masks': 4}, expected 4")
    assert len(problems) == 1


def test_an_unreadable_part_of_a_shard_is_named_with_the_way_out(cache: Path) -> None:
    def drop_labels(f: h5py.File) -> None:
        del f["items/label"]

    edit_shard(cache, drop_labels)
    problems = verify_cache(cache)
    assert len(problems) == 1 and problems[0].startswith(f"{SHARD}: unreadable (KeyError: ")
    assert problems[0].endswith("); delete it and re-run the extraction")


def test_a_file_that_is_not_hdf5_is_named(cache: Path) -> None:
    (cache / SHARD).write_bytes(b"not hdf5")
    edit_manifest(cache, lambda m: m["shards"]["1"].__setitem__("sha256", sha256_file(cache / SHARD)))
    problems = verify_cache(cache)
    assert len(problems) == 1 and "cannot be opened as HDF5" in problems[0] and SHARD in problems[0]


# ---------------------------------------------------------------------- features

def test_a_feature_of_another_dtype_or_shape_is_named(cache: Path) -> None:
    def widen(f: h5py.File) -> None:
        replace(f["features/mel"], "data", np.zeros((19, 4), dtype=np.float32))

    edit_shard(cache, widen)
    assert verify_cache(cache) == [f"{SHARD}: feature 'mel' is float32[4], the manifest says float16[8]"]


@pytest.mark.parametrize(("offsets", "problem"), [
    ([0, 4, 4, 13], "has 4 offsets for 4 items (want n + 1)"),
    ([0, 4, 4, 13, 19, 19], "has 6 offsets for 4 items (want n + 1)"),
    ([1, 4, 4, 13, 19], "offsets are not monotone from 0 to 19"),
    ([0, 4, 4, 13, 18], "offsets are not monotone from 0 to 19"),
    ([0, 4, 3, 13, 19], "offsets are not monotone from 0 to 19"),
])
def test_offsets_must_run_from_0_to_the_rows_without_going_back(cache: Path, offsets: list[int],
                                                                  problem: str) -> None:
    edit_shard(cache, lambda f: replace(f["features/mel"], "offsets", np.array(offsets, dtype=np.int64)))
    assert verify_cache(cache) == [f"{SHARD}: feature 'mel' {problem}"]


def test_non_finite_features_are_counted_in_every_block(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def poison(f: h5py.File) -> None:
        data = f["features/mel/data"][()]
        data[0, 0], data[9, 3], data[18, 7] = np.nan, np.inf, -np.inf
        f["features/mel/data"][...] = data

    edit_shard(cache, poison)
    assert verify_cache(cache) == [f"{SHARD}: feature 'mel' holds 3 NaN/Inf values"]
    monkeypatch.setattr("hcm.cache.inspect.SCAN_BYTES", 16 * 4)  # blocks of 4 rows of 8 float16
    assert verify_cache(cache) == [f"{SHARD}: feature 'mel' holds 3 NaN/Inf values"]
    monkeypatch.setattr("hcm.cache.inspect.SCAN_BYTES", 1)  # one row a block
    assert verify_cache(cache) == [f"{SHARD}: feature 'mel' holds 3 NaN/Inf values"]


def test_a_float_feature_of_one_value_a_row_is_scanned(cache: Path) -> None:
    """token_word made a float16 scalar feature, the recipe hashes rewritten to match."""
    content = manifest(cache)
    next(f for f in content["features"] if f["name"] == "token_word")["dtype"] = "float16"
    recipe_hash = CacheMeta.from_dict(content).recipe_hash
    content["recipe_hash"] = recipe_hash
    (cache / "manifest.json").write_text(json.dumps(content))

    def rehash(f: h5py.File, k: int) -> None:
        f.attrs["recipe_hash"] = recipe_hash
        for group in f["features"].values():
            group.attrs["recipe_hash"] = recipe_hash
        data = f["features/token_word/data"][()].astype(np.float16)
        if k == 1:
            data[0] = np.nan
        replace(f["features/token_word"], "data", data)

    for k in range(5):
        edit_shard(cache, lambda f, k=k: rehash(f, k), f"shard-0000{k}.h5")
    assert verify_cache(cache) == [f"{SHARD}: feature 'token_word' holds 1 NaN/Inf values"]


def test_integer_features_are_not_scanned(cache: Path) -> None:
    edit_shard(cache, lambda f: f["features/token_word/data"].__setitem__(0, np.iinfo(np.int32).max))
    assert verify_cache(cache) == []


def test_a_missing_feature_is_named_and_the_others_still_checked(cache: Path) -> None:
    def drop(f: h5py.File) -> None:
        del f["features/roberta"]
        f["features/mel"].attrs["recipe_hash"] = "abc"

    edit_shard(cache, drop)
    assert verify_cache(cache) == [f"{SHARD}: feature 'roberta' is missing",
                                   f"{SHARD}: feature 'mel' carries recipe hash abc"]


# ---------------------------------------------------------------------- the cache as a whole

def test_shards_after_a_missing_one_are_still_checked(cache: Path) -> None:
    (cache / SHARD).unlink()
    edit_shard(cache, lambda f: f.attrs.__setitem__("shard_index", 9), "shard-00003.h5")
    assert verify_cache(cache) == [f"{SHARD}: listed in manifest.json but missing; re-run the extraction",
                                   "shard-00003.h5: says it is shard 9"]


def test_files_against_the_manifest(cache: Path) -> None:
    (cache / "shard-00009.h5").write_bytes((cache / "shard-00002.h5").read_bytes())
    (cache / "shard-00003.h5").unlink()
    problems = verify_cache(cache)
    assert problems[0] == "shard-00009.h5: present but not listed in manifest.json (another run's shard?)"
    assert problems[1] == "shard-00003.h5: listed in manifest.json but missing; re-run the extraction"
    assert len(problems) == 2


def test_a_changed_shard_is_named_by_its_checksum(cache: Path) -> None:
    edit_manifest(cache, lambda m: m["shards"]["1"].__setitem__("sha256", "0" * 64))
    assert verify_cache(cache) == [f"{SHARD}: sha256 differs from manifest.json (the file changed after it was "
                                   "written); delete it and re-run the extraction"]


def test_an_item_id_in_two_shards_is_named(cache: Path) -> None:
    def rename(f: h5py.File) -> None:
        ids = [s.decode() for s in f["items/id"][()]]
        ids[0] = "vid0$_$0"  # shard 0's first item
        ids[1] = "vid0$_$1"
        replace(f["items"], "id", np.array(ids, dtype=h5py.string_dtype()))

    edit_shard(cache, rename)
    problems = [p for p in verify_cache(cache) if "not masked in the items" not in p]
    assert problems == ["2 item ids appear more than once, e.g. ['vid0$_$0', 'vid0$_$1']"]


def test_repeated_ids_are_counted_and_three_shown(cache: Path) -> None:
    def rename(f: h5py.File) -> None:
        replace(f["items"], "id", np.array([f"vid0$_${i}" for i in range(3)] + ["vid1$_$0"], dtype=h5py.string_dtype()))

    edit_shard(cache, rename)
    problems = [p for p in verify_cache(cache) if "not masked in the items" not in p]
    assert problems == ["4 item ids appear more than once, e.g. ['vid0$_$0', 'vid0$_$1', 'vid0$_$2']"]


def test_a_manifest_whose_recipe_hash_is_not_its_recipes(cache: Path) -> None:
    recipe_hash = manifest(cache)["recipe_hash"]
    edit_manifest(cache, lambda m: m["recipe"].__setitem__("fps", 2))
    problems = verify_cache(cache)
    assert problems[0].startswith(f"manifest.json: recipe hash {recipe_hash} does not match its recipe (")
    assert problems[0] != f"manifest.json: recipe hash {recipe_hash} does not match its recipe ({recipe_hash})"


def test_the_plan_against_the_shards(cache: Path) -> None:
    (cache / "shard-00004.h5").unlink()
    edit_manifest(cache, lambda m: m["shards"].pop("4"))
    assert verify_cache(cache) == ["shard 4 of the plan of 23 items was never written; resume the extraction"]
    edit_manifest(cache, lambda m: m["shards"]["0"]["failures"].append({"id": "x", "reason": "r", "split": ""}))
    assert verify_cache(cache)[-2:] == ["shard 0 accounts for 6 plan positions, expected 5",
                                        "shard 4 of the plan of 23 items was never written; resume the extraction"]
    edit_manifest(cache, lambda m: m.__setitem__("n_planned", None))
    assert verify_cache(cache)[-1] == ("the plan size is unknown (extraction never finalized): the cache may be "
                                       "incomplete")


def test_the_last_shard_of_a_plan_covers_what_is_left(cache: Path) -> None:
    assert manifest(cache)["shards"]["4"]["items"] + len(manifest(cache)["shards"]["4"]["failures"]) == 3
    edit_manifest(cache, lambda m: m.__setitem__("n_planned", 24))
    assert verify_cache(cache) == ["shard 4 accounts for 3 plan positions, expected 4"]


def test_a_missing_or_unreadable_manifest_is_said_and_the_shards_still_checked(cache: Path) -> None:
    (cache / "manifest.json").unlink()
    problems = verify_cache(cache)
    assert problems[0] == "manifest.json is missing; opening the cache rebuilds it from the 5 shards"
    assert problems[-1].startswith("the plan size is unknown")
    (cache / "manifest.json").write_text("{not json")
    problems = verify_cache(cache)
    assert "manifest.json" in problems[0] and problems[-1].startswith("the plan size is unknown")


def test_a_folder_that_is_not_there_or_is_a_file(tmp_path: Path) -> None:
    with pytest.raises(CacheError, match=rf"^cache directory {tmp_path / 'none'} does not exist$"):
        verify_cache(tmp_path / "none")
    (tmp_path / "file").write_text("x")
    with pytest.raises(CacheError, match=rf"^cache directory {tmp_path / 'file'} is a file, not a cache folder$"):
        verify_cache(tmp_path / "file")


# ---------------------------------------------------------------------- the summary

def test_cache_info_sums_the_files_and_reads_the_manifest(cache: Path) -> None:
    info = cache_info(cache)
    files = [*cache.glob("shard-*.h5"), cache / "manifest.json"]
    assert info["size_bytes"] == sum(p.stat().st_size for p in files)
    assert (info["n_items"], info["n_planned"], info["shards"], info["complete"]) == (20, 23, 5, True)
    assert info["path"] == str(cache) and info["precision"] is None and info["classes"] is None


def test_info_and_listings_read_the_manifest_without_writing_one(cache: Path) -> None:
    saved = manifest(cache)
    info = cache_info(cache)
    assert (info["hcm_version"], info["created"], info["updated"]) == (saved["hcm_version"], saved["created"],
                                                                       saved["updated"])
    assert dropped_items(cache) == saved["failures"] and dropped_items(cache, "valid") == []
    assert masked_items(cache, "test") == [m for m in saved["masked"] if m["split"] == "test"]
    (cache / "manifest.json").unlink()
    assert cache_info(cache)["n_items"] == 20 and len(masked_items(cache)) == len(saved["masked"])
    assert len(dropped_items(cache)) == 3
    assert not (cache / "manifest.json").exists()


def test_dropped_items_of_one_split(cache: Path) -> None:
    edit_manifest(cache, lambda m: m["failures"][1].__setitem__("split", "valid"))
    assert [entry["id"] for entry in dropped_items(cache, "valid")] == ["vid4$_$1"]
    assert [entry["id"] for entry in dropped_items(cache, "")] == ["vid2$_$0", "vid6$_$2"]


def test_an_older_manifest_without_complete_or_masked(cache: Path) -> None:
    edit_manifest(cache, lambda m: [m.pop(key) for key in ("complete", "masked", "hcm_version", "created")])
    info = cache_info(cache)
    assert info["complete"] is False and info["masked"] == [] and info["hcm_version"] is None
    assert info["created"] is None and masked_items(cache) == []


def test_entries_missing_a_field_are_listed_with_it_empty() -> None:
    info = {**INFO, "failures": [{"id": "e", "split": "valid"}], "masked": [{"id": "f", "modality": "text"}]}
    lines = format_info(info, verbose=True).split("\n")
    assert lines[-7:] == ["failures   1", "  " + " " * 36 + "      1  (valid 1)", "    e [valid] ", "",
                          "masked     1", "  text / " + " " * 29 + "      1  (? 1)", "    f [?] text "]


def test_features_of_several_dimensions_show_each() -> None:
    info = {**INFO, "features": {"grid": {"shape": [2, 3], "dim": 6, "dtype": "float16", "encoder": "e",
                                          "weights": "w"}}}
    assert "grid               (n, 2, 3)      float16  e w" in format_info(info).split("\n")


INFO = {
    "path": "/c", "dataset": "meld", "profile": "tiny", "task": "classification", "classes": ["joy", "anger"],
    "schema_version": 2, "hcm_version": "0.1.0", "recipe_hash": "abc", "precision": "bf16", "shard_size": 5,
    "n_planned": 6, "complete": False, "n_items": 4, "counts": {"train": 3, "test": 1}, "shards": 2,
    "features": {"roberta": {"shape": [16], "dim": 16, "dtype": "float16", "encoder": "roberta", "weights": "large"},
                 "label": {"shape": [], "dim": 1, "dtype": "int32", "encoder": "none", "weights": ""}},
    "failures": [{"id": "a", "split": "train", "reason": "no audio", "detail": "clip a"},
                 {"id": "b", "split": "", "reason": "no audio", "detail": ""},
                 {"id": "c", "split": "test", "reason": "bad label", "detail": ""}],
    "masked": [{"id": "d", "split": "train", "modality": "video", "reason": "masked", "detail": ""},
               {"id": "d", "split": "train", "modality": "audio", "reason": "masked", "detail": "silent"}],
    "size_bytes": 3 * 1024 * 1024 + 512 * 1024,
}


def test_the_summary_table_line_by_line() -> None:
    assert format_info(INFO).split("\n") == [
        "cache      /c",
        "dataset    meld (profile tiny, task classification)",
        "items      4 of 6 planned, INCOMPLETE",
        "splits     train 3, test 1",
        "shards     2 x 5 planned items, 3.5 MiB on disk",
        "recipe     abc  (schema 2, hcm 0.1.0)",
        "precision  bf16 (the encoders' arithmetic; features stored as float16)",
        "classes    joy, anger",
        "",
        "feature            shape          dtype    encoder",
        "roberta            (n, 16)        float16  roberta large",
        "label              (n,)           int32    none",
        "",
        "failures   3",
        "  no audio                                  2  (? 1, train 1)",
        "  bad label                                 1  (test 1)",
        "  (ids: hcm cache info --verbose, or --json)",
        "",
        "masked     2 (1 items)",
        "  audio / masked                            1  (train 1)",
        "  video / masked                            1  (train 1)",
        "  (ids: hcm cache info --verbose, or --json)",
    ]


def test_the_verbose_summary_lists_every_id() -> None:
    lines = format_info(INFO, verbose=True).split("\n")
    assert lines[lines.index("failures   3") + 3:lines.index("failures   3") + 6] == [
        "    a [train] no audio: clip a", "    b [?] no audio", "    c [test] bad label"]
    assert lines[-2:] == ["    d [train] video masked", "    d [train] audio masked: silent"]
    assert "(ids:" not in "\n".join(lines)


def test_a_complete_cache_of_unknown_plan_without_precision_classes_or_entries() -> None:
    info = {**INFO, "n_planned": None, "complete": True, "precision": None, "classes": None, "failures": [],
            "masked": [], "size_bytes": 1023}
    lines = format_info(info).split("\n")
    assert lines[2] == "items      4 of unknown planned, complete"
    assert lines[4] == "shards     2 x 5 planned items, 1023 B on disk"
    assert not any(line.startswith(("precision", "classes")) for line in lines)
    assert lines[-4:] == ["", "failures   0", "", "masked     0"]


@pytest.mark.parametrize(("size", "shown"), [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"),
                                             (1024 * 1024 - 1, "1024.0 KiB"), (1024 ** 2, "1.0 MiB"),
                                             (5 * 1024 ** 3, "5.0 GiB"), (3 * 1024 ** 4, "3072.0 GiB")])
def test_sizes_in_the_largest_unit_below_1024(size: int, shown: str) -> None:
    line = format_info({**INFO, "size_bytes": size}).split("\n")[4]
    assert line == f"shards     2 x 5 planned items, {shown} on disk"
