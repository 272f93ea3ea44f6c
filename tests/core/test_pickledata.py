"""Reading pickles as data (hcm.core.pickledata with numpy's forms): every numpy form reads back
exactly, and hostile pickles are refused without running anything (a marker file is the oracle)."""

from __future__ import annotations

import collections
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
from hostile_pickles import LIVE, gadgets, tricks

from hcm.core.numpy_pickle import NUMPY_RULES
from hcm.core.pickledata import DamagedPickleError, PickleDataError, read_data
from hcm.pipeline.importers.mmsa_file import MmsaFileError, UnsafePickleError, read_mmsa_file

VALUES = {
    "float32": np.arange(6, dtype=np.float32).reshape(2, 3), "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
    "big endian": np.arange(3, dtype=">i4"), "bool": np.array([True, False]), "uint8": np.arange(4, dtype=np.uint8),
    "float16": np.ones(3, np.float16), "empty": np.zeros((0, 5), np.int16), "unicode": np.array(["ab", "c"]),
    "bytes": np.array([b"ab", b"c"]), "object strings": np.array(["x", "yy", None], dtype=object),
    "scalar": np.float32(1.5), "int scalar": np.int64(-5), "ordered": collections.OrderedDict(a=1),
    "plain": [1, 2.5, "x", None, (1, 2), b"raw", b"", True, 2**70],
}


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_every_numpy_form_reads_back_exactly(protocol: int) -> None:
    out = read_data(pickle.dumps(VALUES, protocol=protocol), NUMPY_RULES)
    assert list(out) == list(VALUES)
    for key, value in VALUES.items():
        if isinstance(value, np.ndarray):
            got = out[key]
            assert type(got) is np.ndarray and got.dtype == value.dtype and got.shape == value.shape, key
            assert np.array_equal(got, value), key
            assert not got.flags.writeable or got.dtype.kind == "O", key  # object arrays are built, not views
        else:
            assert out[key] == value and type(out[key]) is (dict if key == "ordered" else type(value)), key


def test_arrays_share_memory_with_nothing_they_could_write(tmp_path: Path) -> None:
    array = read_data(pickle.dumps(np.arange(4.0), protocol=5), NUMPY_RULES)
    with pytest.raises(ValueError):
        array[0] = 1.0  # a read-only view of the file's bytes, never a writable alias


def _wait_for(marker: Path) -> bool:
    for _ in range(100):
        if marker.exists():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("name", LIVE)
def test_the_gadgets_are_real(tmp_path: Path, name: str) -> None:
    """Plain pickle runs each of these: the refusals below are of working attacks."""
    marker = tmp_path / "ran"
    try:
        pickle.loads(gadgets(marker, in_file=False)[f"{name} p2"])
    except Exception:  # noqa: BLE001  the call ran; what it returned is not a value we need
        pass
    assert _wait_for(marker)


def _names(tmp_path: Path) -> list[str]:
    return sorted(gadgets(tmp_path / "ran"))


@pytest.mark.parametrize("case", _names(Path("/nonexistent")))
def test_the_mmsa_reader_refuses_every_gadget(tmp_path: Path, case: str) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pkl"
    path.write_bytes(gadgets(marker)[case])
    name = case.split()[0].replace("__builtin__", "builtins").replace("numpy.core.", "numpy._core.")
    with pytest.raises(UnsafePickleError, match=rf"asks for {name.replace('.', '[.]')}.*Nothing from the file was "
                                                 rf"run.*--trust-pickle"):
        read_mmsa_file(path, "mosi", (-3.0, 3.0))
    assert not _wait_for_short(marker)


def _wait_for_short(marker: Path) -> bool:
    time.sleep(0.01)
    return marker.exists()


TRICK_MESSAGES = {
    "INST": "opcode INST", "OBJ": "opcode OBJ", "EXT1": "opcode EXT1", "EXT2": "opcode EXT2",
    "NEWOBJ_EX": "asks for os.system", "NEXT_BUFFER": "opcode NEXT_BUFFER", "PERSID": "outside objects",
    "BUILD on a list": "sets the state of a list", "REDUCE on a string": "calls a str",
    "name hidden in the memo": "asks for os.system", "dtype with fields": "'V8' is not one of the plain kinds",
    "dtype given fields": "fields, a sub-array or metadata", "dtype with object flags": "flags",
    "dtype with a made-up size": "size, alignment or flags", "dtype not plain": "'M8' is not one of the plain",
    "scalar of the object dtype": "not \\(plain dtype, bytes\\)", "array with short data": "needs 32 bytes",
    "array with a negative shape": "non-negative ints", "array written into (SETITEMS)": "adds items to a",
    "array state set twice": "twice", "array used before its state": "used before its state",
    "_reconstruct of another class": "other than an ndarray", "a list holding itself": "cycle",
    "containers 2000 deep": "nest more than", "a shared-list bomb": "counted per use",
    "a list as a dict key": "dict key", "huge int text": "ValueError", "truncated": "STOP|bytes",
}


@pytest.mark.parametrize("case", sorted(TRICK_MESSAGES))
def test_protocol_tricks_are_refused(tmp_path: Path, case: str) -> None:
    marker = tmp_path / "ran"
    data = tricks(marker)[case]
    with pytest.raises(PickleDataError, match=TRICK_MESSAGES[case]):
        read_data(data, NUMPY_RULES)
    path = tmp_path / "evil.pkl"
    path.write_bytes(data)
    with pytest.raises(MmsaFileError, match=r"evil\.pkl"):
        read_mmsa_file(path, "mosi", (-3.0, 3.0))
    assert not marker.exists()


def test_every_trick_has_a_message() -> None:
    assert set(tricks(Path("x"))) == set(TRICK_MESSAGES)


def test_damage_reads_as_damage_not_as_an_attack(tmp_path: Path) -> None:
    good = pickle.dumps({"train": [1, 2, 3]}, protocol=4)
    for data in (good[:-1], good[:5], b"hello", b""):
        with pytest.raises(DamagedPickleError):
            read_data(data, NUMPY_RULES)
