"""hcm.core.torch_archive part by part, on archives written here record by record: which storages,
tensor shapes, calls and names it takes, what it builds from them, and what it refuses (with
which words); how records are found, sized and mapped.

The archives ``torch.save`` and ``torch.jit.save`` write, and the hostile ones, are in
test_torch_archive.py; here each archive's ``data.pkl`` is pickled by :class:`Writer`, whose
storages are persistent ids and whose calls are the functions torch's own pickles name."""

from __future__ import annotations

import collections
import gc
import io
import os
import pickle
import re
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.jit._pickle

from hcm.core.numpy_pickle import MAX_DIMS
from hcm.core.pickledata import DamagedPickleError, Global, PickleDataError
from hcm.core.torch_archive import (
    MAX_EXPANSION,
    STORAGE_DTYPES,
    ScriptAttributes,
    archive_prefix,
    is_script_archive,
    mapped_record,
    read_archive,
    read_record,
    script_tensors,
)

REBUILD = torch._utils._rebuild_tensor_v2


class Storage:
    """A storage in the pickle: written as its persistent id."""

    def __init__(self, pid: tuple) -> None:
        self.pid = pid


class Call:
    """``func(*args)`` in the pickle (GLOBAL func, the args, REDUCE)."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple:
        return self.func, self.args


class Writer(pickle.Pickler):
    def persistent_id(self, obj: Any) -> Any:
        return obj.pid if isinstance(obj, Storage) else None


def dump(value: Any) -> bytes:
    out = io.BytesIO()
    Writer(out, protocol=2).dump(value)
    return out.getvalue()


def write_archive(path: Path, data: bytes, storages: dict[str, bytes] | None = None, prefix: str = "archive/",
                  byteorder: bytes | None = b"little", compress: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w") as out:
        out.writestr(prefix + "data.pkl", data, compress_type=compress)
        if byteorder is not None:
            out.writestr(prefix + "byteorder", byteorder)
        for key, raw in (storages or {}).items():
            out.writestr(f"{prefix}data/{key}", raw, compress_type=compress)
    return path


def floats(n: int, key: str = "0") -> Storage:
    return Storage(("storage", torch.FloatStorage, key, "cpu", n))


def tensor(storage: Storage, offset: int, size: tuple, stride: tuple, *extra: Any) -> Call:
    return Call(REBUILD, storage, offset, size, stride, False, collections.OrderedDict(), *extra)


def read_tensor(tmp_path: Path, offset: int, size: tuple, stride: tuple, n: int = 12, **flags: Any) -> Any:
    raw = np.arange(n, dtype="<f4").tobytes()
    path = write_archive(tmp_path / "t.pt", dump(tensor(floats(n), offset, size, stride)), {"0": raw})
    return read_archive(path, **flags)


# ---------------------------------------------------------------------- storages and tensors

@pytest.mark.parametrize("storage", sorted(STORAGE_DTYPES))
def test_every_storage_type_reads_as_its_dtype(tmp_path: Path, storage: str) -> None:
    dtype = getattr(torch, STORAGE_DTYPES[storage])
    expected = torch.tensor([1, 0, 1], dtype=dtype)
    path = tmp_path / "a.pt"
    torch.save({"t": expected, "empty": torch.zeros(0, dtype=dtype)}, path)
    for mapped in (False, True):
        got = read_archive(path, mapped=mapped)
        assert got["t"].dtype == dtype and torch.equal(got["t"], expected)
        assert got["empty"].dtype == dtype and got["empty"].shape == (0,)


def test_offsets_sizes_and_strides_make_the_view(tmp_path: Path) -> None:
    assert read_tensor(tmp_path, 2, (2, 3), (3, 1)).tolist() == [[2, 3, 4], [5, 6, 7]]
    assert read_tensor(tmp_path, 1, (3, 2), (1, 3)).tolist() == [[1, 4], [2, 5], [3, 6]]
    assert read_tensor(tmp_path, 0, (), ()).tolist() == 0.0
    assert read_tensor(tmp_path, 11, (1,), (1,)).tolist() == [11.0]  # the last element, exactly
    assert read_tensor(tmp_path, 0, (12,), (1,)).tolist() == list(range(12))
    assert read_tensor(tmp_path, 0, (2, 2), (0, 1)).tolist() == [[0, 1], [0, 1]]  # a broadcast stride
    assert read_tensor(tmp_path, 0, (1,) * MAX_DIMS, (1,) * MAX_DIMS).numel() == 1


def test_an_empty_tensor_may_sit_anywhere_in_its_storage(tmp_path: Path) -> None:
    assert read_tensor(tmp_path, 12, (0, 3), (3, 1)).shape == (0, 3)
    assert read_tensor(tmp_path, 5, (4, 0), (1, 1)).shape == (4, 0)
    assert read_tensor(tmp_path, 12, (0, 5), (1, 1)).shape == (0, 5)  # its other sizes reach nothing


def test_an_empty_storage_holds_no_element(tmp_path: Path) -> None:
    path = write_archive(tmp_path / "a.pt", dump(tensor(floats(0), 0, (1,), (1,))), {"0": b""})
    with pytest.raises(PickleDataError, match=r"^a tensor of size \(1,\) at offset 0 reaches past its storage of 0 "):
        read_archive(path)


@pytest.mark.parametrize(("offset", "size", "stride"), [(1, (12,), (1,)), (12, (1,), (1,)), (0, (2, 7), (6, 1)),
                                                       (0, (13,), (1,)), (3, (2, 2), (1, 9)), (13, (0,), (1,))])
def test_a_tensor_reaching_past_its_storage_is_refused(tmp_path: Path, offset: int, size: tuple,
                                                       stride: tuple) -> None:
    with pytest.raises(PickleDataError, match=rf"^a tensor of size {re.escape(repr(size))} at offset {offset} reaches "
                                              r"past its storage of 12 elements"):
        read_tensor(tmp_path, offset, size, stride)


@pytest.mark.parametrize(("offset", "size", "stride"), [
    (-1, (1,), (1,)), (True, (1,), (1,)), (0.0, (1,), (1,)), (0, (1, 1), (1,)), (0, [1], [1]), (0, (1,), (-1,)),
    (0, (-1,), (1,)), (0, (True,), (1,)), (0, (1,) * (MAX_DIMS + 1), (1,) * (MAX_DIMS + 1)), (0, (1,), (1.0,)),
])
def test_offsets_sizes_and_strides_must_be_non_negative_ints_of_one_length(tmp_path: Path, offset: Any, size: Any,
                                                                            stride: Any) -> None:
    with pytest.raises(PickleDataError, match=r"^a tensor's offset .* is not made of non-negative ints"):
        read_tensor(tmp_path, offset, size, stride)


def test_the_refusal_of_a_shape_quotes_offset_size_and_stride(tmp_path: Path) -> None:
    with pytest.raises(PickleDataError, match=r"^a tensor's offset 0, size \(2, 2\) or stride \(2,\) is not made of "
                                              r"non-negative ints"):
        read_tensor(tmp_path, 0, (2, 2), (2,))


def test_rebuild_takes_six_or_seven_arguments_and_a_storage(tmp_path: Path) -> None:
    raw = np.arange(2, dtype="<f4").tobytes()
    seven = tensor(floats(2), 0, (2,), (1,), {})
    assert read_archive(write_archive(tmp_path / "a.pt", dump(seven), {"0": raw})).tolist() == [0.0, 1.0]
    refusal = r"^_rebuild_tensor_v2 is not \(storage, offset, size, stride, requires_grad, hooks\)"
    for call in (Call(REBUILD, floats(2), 0, (2,), (1,), False), tensor(floats(2), 0, (2,), (1,), {}, 0),
                 Call(REBUILD, [1.0, 2.0], 0, (2,), (1,), False, collections.OrderedDict())):
        with pytest.raises(PickleDataError, match=refusal):
            read_archive(write_archive(tmp_path / "b.pt", dump(call), {"0": raw}))


def test_views_of_one_storage_share_it_and_its_bytes_are_read_once(tmp_path: Path) -> None:
    storage = floats(4)
    value = [tensor(storage, 0, (2,), (1,)), tensor(storage, 2, (2,), (1,))]
    got = read_archive(write_archive(tmp_path / "a.pt", dump(value), {"0": np.arange(4, dtype="<f4").tobytes()}))
    assert [t.tolist() for t in got] == [[0, 1], [2, 3]]
    assert got[0].untyped_storage().data_ptr() == got[1].untyped_storage().data_ptr()


def test_a_storage_of_no_elements_needs_an_empty_record(tmp_path: Path) -> None:
    path = write_archive(tmp_path / "a.pt", dump(tensor(floats(0), 0, (0,), (1,))), {"0": b""})
    for mapped in (False, True):
        got = read_archive(path, mapped=mapped)
        assert got.shape == (0,) and got.dtype == torch.float32


@pytest.mark.parametrize("pid", [
    ("storage", torch.FloatStorage, "0", "cpu"), ("storage", torch.FloatStorage, "0", "cpu", 4, 0),
    ("module", torch.FloatStorage, "0", "cpu", 4), ("storage", collections.OrderedDict, "0", "cpu", 4),
    ("storage", "FloatStorage", "0", "cpu", 4), ("storage", torch.FloatStorage, 0, "cpu", 4),
    ("storage", torch.FloatStorage, "0", "cpu", -1), ("storage", torch.FloatStorage, "0", "cpu", True),
    ("storage", torch.FloatStorage, "0", "cpu", 4.0), ["storage", torch.FloatStorage, "0", "cpu", 4], "0",
])
def test_persistent_ids_must_be_torch_storage_ids(tmp_path: Path, pid: Any) -> None:
    path = write_archive(tmp_path / "a.pt", dump(tensor(Storage(pid), 0, (1,), (1,))),
                         {"0": b"\x00" * 16})
    with pytest.raises(PickleDataError, match=r"^a persistent id .* is not \('storage', torch.<Type>Storage, key, "
                                              r"location, numel\)"):
        read_archive(path)


@pytest.mark.parametrize("length", [79, 80, 81])
def test_a_persistent_id_of_up_to_80_characters_is_quoted_whole(tmp_path: Path, length: int) -> None:
    bare = ("storage", Global("torch", "FloatStorage"), "", "cpu", -1)  # as the reader sees it
    key = "k" * (length - len(repr(bare)))
    shown = repr(bare[:2] + (key,) + bare[3:])
    assert len(shown) == length
    path = write_archive(tmp_path / "a.pt", dump(tensor(Storage(("storage", torch.FloatStorage, key, "cpu", -1)),
                                                        0, (1,), (1,))))
    with pytest.raises(PickleDataError) as caught:
        read_archive(path)
    quoted = shown if length <= 80 else shown[:77] + "..."
    assert str(caught.value).startswith(f"a persistent id {quoted} is not ")


def test_a_long_persistent_id_is_shortened_in_the_message(tmp_path: Path) -> None:
    pid = ("storage", torch.FloatStorage, "0" * 200, "cpu", -1)
    path = write_archive(tmp_path / "a.pt", dump(tensor(Storage(pid), 0, (1,), (1,))))
    with pytest.raises(PickleDataError) as caught:
        read_archive(path)
    shown = str(caught.value).split("a persistent id ", 1)[1].split(" is not", 1)[0]
    assert len(shown) == 80 and shown.endswith("...") and shown.startswith("('storage', ")


def test_a_record_of_another_size_than_numel_elements_is_refused(tmp_path: Path) -> None:
    for mapped in (False, True):
        for raw in (b"\x00" * 12, b"\x00" * 20):
            path = write_archive(tmp_path / "a.pt", dump(tensor(floats(4), 0, (4,), (1,))), {"0": raw})
            with pytest.raises(PickleDataError, match=rf"^storage archive/data/0 holds {len(raw)} bytes, not the 16 "
                                                      r"of 4 torch.float32 elements"):
                read_archive(path, mapped=mapped)
    path = write_archive(tmp_path / "b.pt", dump(tensor(floats(4), 0, (4,), (1,))))
    with pytest.raises(PickleDataError, match=r"^the archive lacks the record archive/data/0"):
        read_archive(path, mapped=True)


# ---------------------------------------------------------------------- calls and names

def test_parameters_are_their_tensor_and_nothing_else(tmp_path: Path) -> None:
    raw = np.arange(2, dtype="<f4").tobytes()
    param = Call(torch._utils._rebuild_parameter, tensor(floats(2), 0, (2,), (1,)), True, collections.OrderedDict())
    got = read_archive(write_archive(tmp_path / "a.pt", dump(param), {"0": raw}))
    assert type(got) is torch.Tensor and got.tolist() == [0.0, 1.0]
    for bad in (Call(torch._utils._rebuild_parameter, tensor(floats(2), 0, (2,), (1,)), True),
                Call(torch._utils._rebuild_parameter, [0.0, 1.0], True, collections.OrderedDict())):
        with pytest.raises(PickleDataError, match=r"^_rebuild_parameter is not \(tensor, requires_grad, hooks\)"):
            read_archive(write_archive(tmp_path / "b.pt", dump(bad), {"0": raw}))


def test_torchs_version_and_numpy_values_are_read_only_when_asked(tmp_path: Path) -> None:
    version = Call(torch.torch_version.TorchVersion, "2.1.0")
    path = write_archive(tmp_path / "a.pt", dump({"v": version, "a": np.arange(3), "s": np.float32(2.5)}))
    got = read_archive(path, numpy=True)
    assert got["v"] == "2.1.0" and type(got["v"]) is str
    assert got["a"].tolist() == [0, 1, 2] and got["s"] == 2.5
    with pytest.raises(PickleDataError, match=r"^the pickle asks for torch\.torch_version\.TorchVersion"):
        read_archive(path)
    numpy_only = write_archive(tmp_path / "b.pt", dump(np.arange(3)))
    with pytest.raises(PickleDataError, match=r"^the pickle asks for numpy"):
        read_archive(numpy_only)
    for bad in (Call(torch.torch_version.TorchVersion, 2), Call(torch.torch_version.TorchVersion, "2", "1")):
        with pytest.raises(PickleDataError, match="^TorchVersion is not called with one string"):
            read_archive(write_archive(tmp_path / "c.pt", dump(bad)), numpy=True)


def test_ordered_dicts_are_dicts_in_every_archive(tmp_path: Path) -> None:
    got = read_archive(write_archive(tmp_path / "a.pt", dump(collections.OrderedDict(b=1, a=2))))
    assert got == {"b": 1, "a": 2} and type(got) is dict and list(got) == ["b", "a"]


SCRIPT = b"\x80\x02c__torch__.M\nM\n)\x81}X\x01\x00\x00\x00wK\x05sb."  # a TorchScript object {"w": 5}


def test_script_objects_and_typed_lists_are_read_only_from_script_archives(tmp_path: Path) -> None:
    path = write_archive(tmp_path / "a.pt", SCRIPT)
    got = read_archive(path, script=True)
    assert got == {"w": 5} and type(got) is ScriptAttributes
    with pytest.raises(PickleDataError, match=r"^the pickle asks for __torch__\.M\.M"):
        read_archive(path)
    pickled = torch.jit._pickle
    value = {"i": Call(pickled.build_intlist, [1, 2]), "d": Call(pickled.build_doublelist, [0.5]),
             "b": Call(pickled.build_boollist, [True]), "t": Call(pickled.build_tensorlist, []),
             "tag": Call(pickled.restore_type_tag, {"k": 1}, "Dict[str, int]"),
             "tag list": Call(pickled.restore_type_tag, [3], "List[int]")}
    typed = write_archive(tmp_path / "b.pt", dump(value))
    assert read_archive(typed, script=True) == {"i": [1, 2], "d": [0.5], "b": [True], "t": [], "tag": {"k": 1},
                                                "tag list": [3]}
    with pytest.raises(PickleDataError, match=r"^the pickle asks for torch\.jit\._pickle\."):
        read_archive(typed)


@pytest.mark.parametrize("call", [
    Call(torch.jit._pickle.build_intlist, [1], [2]), Call(torch.jit._pickle.build_intlist, (1, 2)),
    Call(torch.jit._pickle.restore_type_tag, [1]), Call(torch.jit._pickle.restore_type_tag, [1], "t", 0),
    Call(torch.jit._pickle.restore_type_tag, "x", "str"),
])
def test_typed_lists_take_one_list_and_type_tags_a_value_and_its_type(tmp_path: Path, call: Call) -> None:
    with pytest.raises(PickleDataError, match=r"^torch\.jit\._pickle\.\w+ is not called with one list \(or a value "
                                              r"and its type\)"):
        read_archive(write_archive(tmp_path / "a.pt", dump(call)), script=True)


@pytest.mark.parametrize(("data", "message"), [
    (b"\x80\x02c__torch__.M\nM\nK\x01\x85\x81}b.", r"^the TorchScript object __torch__\.M\.M is created with "
                                                    r"arguments"),
    (b"\x80\x02c__torch__.M\nM\n)\x81]b.", r"^a TorchScript object's state is a list, expected a dict"),
    (b"\x80\x02c__torch__\nM\n)\x81}b.", None),
    (b"\x80\x02c__torch__x\nM\n)\x81}b.", r"^the pickle asks for __torch__x\.M"),
    (b"\x80\x02c__torch__.a.b\nM\n)\x81}b.", None),
])
def test_script_names_are_the_torch_namespace_only(tmp_path: Path, data: bytes, message: str | None) -> None:
    path = write_archive(tmp_path / "a.pt", data)
    if message is None:
        assert read_archive(path, script=True) == {}
    else:
        with pytest.raises(PickleDataError, match=message):
            read_archive(path, script=True)


def test_script_tensors_names_the_tensors_of_the_module_and_its_submodules() -> None:
    weight, inner = torch.ones(2), torch.zeros(1)
    state = ScriptAttributes({"weight": weight, "training": True, "sub": ScriptAttributes({"w": inner, "n": 3}),
                              "table": {"t": torch.ones(1)}, 7: torch.ones(1), "deep": ScriptAttributes({
                                  "sub": ScriptAttributes({"b": inner})})})
    got = script_tensors(state)
    assert list(got) == ["weight", "sub.w", "deep.sub.b"] and got["weight"] is weight and got["sub.w"] is inner
    assert script_tensors([weight]) == {} and script_tensors(state, "m.")["m.weight"] is weight


# ---------------------------------------------------------------------- the zip around the pickle

def test_the_pickle_is_found_in_its_one_top_level_folder(tmp_path: Path) -> None:
    assert read_archive(write_archive(tmp_path / "a.pt", dump([1]), prefix="model_v2/")) == [1]
    with zipfile.ZipFile(write_archive(tmp_path / "b.pt", dump([1]), prefix="x/")) as archive:
        assert archive_prefix(archive) == "x/"
    with zipfile.ZipFile(tmp_path / "two.pt", "w") as out:
        out.writestr("a/data.pkl", dump(1))
        out.writestr("b/data.pkl", dump(2))
        out.writestr("c/d/data.pkl", dump(3))
    with pytest.raises(DamagedPickleError, match=r"^the zip holds 2 top-level data\.pkl records, expected one \(it is "
                                                 r"not a PyTorch archive\)"):
        read_archive(tmp_path / "two.pt")
    with zipfile.ZipFile(tmp_path / "deep.pt", "w") as out:
        out.writestr("c/d/data.pkl", dump(3))
        out.writestr("data.pkl", dump(3))
    with pytest.raises(DamagedPickleError, match="holds 0 top-level data.pkl records"):
        read_archive(tmp_path / "deep.pt")


def test_the_byte_order_record_is_optional_and_must_say_little(tmp_path: Path) -> None:
    assert read_archive(write_archive(tmp_path / "a.pt", dump([1]), byteorder=None)) == [1]
    assert read_archive(write_archive(tmp_path / "b.pt", dump([1]), byteorder=b"little\n")) == [1]
    with pytest.raises(PickleDataError, match=r"^the archive's byte order is 'big'; hcm reads little-endian archives"):
        read_archive(write_archive(tmp_path / "c.pt", dump([1]), byteorder=b"big"))
    with pytest.raises(PickleDataError, match="^the archive's byte order is '\ufffdlittle'; hcm reads"):
        read_archive(write_archive(tmp_path / "d.pt", dump([1]), byteorder=b"\xfflittle"))


def test_files_that_are_not_zips_are_damage_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "a.pt").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(DamagedPickleError, match=r"^not a readable zip archive \(BadZipFile: "):
        read_archive(tmp_path / "a.pt")
    with pytest.raises(DamagedPickleError, match=r"^not a readable zip archive \((FileNotFoundError|OSError)"):
        read_archive(tmp_path / "missing.pt")


def test_a_corrupt_compressed_record_is_damage(tmp_path: Path) -> None:
    path = write_archive(tmp_path / "a.pt", dump(list(range(200))), compress=zipfile.ZIP_DEFLATED)
    data = bytearray(path.read_bytes())
    start = data.index(b"data.pkl") + len(b"data.pkl")
    data[start + 5:start + 25] = b"\xff" * 20  # inside the deflated stream
    path.write_bytes(bytes(data))
    with pytest.raises(DamagedPickleError, match=r"^a record cannot be read \(Error -3 while decompressing"):
        read_archive(path)


def test_compressed_records_may_expand_up_to_the_limit(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as out:
        out.writestr("small", b"\x00" * (1 << 20), compress_type=zipfile.ZIP_DEFLATED)  # under the 1 MiB allowance
        out.writestr("bomb", b"\x00" * (3 << 20), compress_type=zipfile.ZIP_DEFLATED)
        out.writestr("stored", b"\x00" * (3 << 20))
    with zipfile.ZipFile(tmp_path / "a.zip") as archive:
        assert len(read_record(archive, "small")) == 1 << 20 and len(read_record(archive, "stored")) == 3 << 20
        info = archive.getinfo("bomb")
        assert info.file_size > MAX_EXPANSION * info.compress_size + (1 << 20)
        with pytest.raises(PickleDataError, match=rf"^record bomb expands from {info.compress_size} to {3 << 20} "
                                                  r"bytes \(a compression bomb\)$"):
            read_record(archive, "bomb")
        assert read_record(archive, "small", 1 << 20) == b"\x00" * (1 << 20)
        with pytest.raises(PickleDataError, match=r"^storage small holds 1048576 bytes, not the 5 of five things$"):
            read_record(archive, "small", 5, "five things")


def mapped(path: Path) -> bool:
    """Whether this process maps ``path`` (Linux's list of the process's mappings)."""
    return os.path.realpath(path) in Path("/proc/self/maps").read_text()


@pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="needs Linux's /proc/self/maps")
def test_mapped_tensors_keep_the_file_mapped_and_others_do_not(tmp_path: Path) -> None:
    path = tmp_path / "a.pt"
    torch.save({"w": torch.arange(6.0)}, path)
    tensors = read_archive(path, mapped=True)
    assert mapped(path) and tensors["w"].tolist() == list(range(6))
    del tensors
    gc.collect()
    assert not mapped(path)  # unmapped with its last tensor
    tensors = read_archive(path)
    assert not mapped(path) and tensors["w"].tolist() == list(range(6))


def test_compressed_records_may_expand_up_to_100_times_plus_1_mib(tmp_path: Path) -> None:
    allowed = MAX_EXPANSION * 10_000 + (1 << 20)
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as out:
        out.writestr("at", b"\x00" * allowed, compress_type=zipfile.ZIP_DEFLATED)
        out.writestr("past", b"\x00" * (allowed + 1), compress_type=zipfile.ZIP_DEFLATED)
        out.writestr("padding", os.urandom(30_000))  # so that 10,000 bytes can be read after each record
    with zipfile.ZipFile(tmp_path / "a.zip") as archive:
        for name in ("at", "past"):
            assert archive.getinfo(name).compress_size < 10_000
            archive.getinfo(name).compress_size = 10_000  # the ratio the check sees: exactly 100 + 1 MiB, and one more
        assert len(read_record(archive, "at")) == allowed
        with pytest.raises(PickleDataError, match=rf"^record past expands from 10000 to {allowed + 1} bytes"):
            read_record(archive, "past")


def test_a_local_header_with_a_long_extra_field_is_mapped_past_it(tmp_path: Path) -> None:
    path = tmp_path / "a.zip"
    info = zipfile.ZipInfo("abc")
    info.extra = struct.pack("<HH", 0xCAFE, 39_996) + b"\x00" * 39_996  # 40,000 bytes: past a signed 16-bit length
    with zipfile.ZipFile(path, "w") as out:
        out.writestr(info, b"12345678")
    with zipfile.ZipFile(path) as archive:
        start = mapped_record(archive, "abc", 8, 1)
    assert start == 30 + 3 + 40_000 and path.read_bytes()[start:start + 8] == b"12345678"


def test_mapped_records_are_stored_of_the_right_size_aligned_and_inside_the_file(tmp_path: Path) -> None:
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as out:
        out.writestr("abc", b"12345678")
        out.writestr("deflated", b"\x00" * 64, compress_type=zipfile.ZIP_DEFLATED)
    with zipfile.ZipFile(path) as archive:
        start = mapped_record(archive, "abc", 8, 1)
        assert start == 30 + len("abc") and path.read_bytes()[start:start + 8] == b"12345678"
        assert mapped_record(archive, "abc", 7, 1) is None and mapped_record(archive, "abc", 9, 1) is None
        assert mapped_record(archive, "abc", 8, 2) is None  # 33 is odd
        assert mapped_record(archive, "abc", 8, 3) == 33
        assert mapped_record(archive, "missing", 8, 1) is None
        assert mapped_record(archive, "deflated", 64, 1) is None
    data = bytearray(path.read_bytes())
    data[0:4] = b"PK\x00\x00"  # the record's local header is not one
    (tmp_path / "b.zip").write_bytes(bytes(data))
    with zipfile.ZipFile(tmp_path / "b.zip") as archive:
        assert mapped_record(archive, "abc", 8, 1) is None


def test_a_record_said_to_run_past_the_file_is_not_mapped(tmp_path: Path) -> None:
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as out:
        out.writestr("abc", b"12345678")
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("abc")
        size = path.stat().st_size
        end = 30 + len("abc") + 8
        assert mapped_record(archive, "abc", 8, 1) == 33 and end <= size
        info.file_size = size - 33 + 1  # one byte past the end of the file
        assert mapped_record(archive, "abc", size - 33 + 1, 1) is None
        info.file_size = size - 33  # up to the last byte
        assert mapped_record(archive, "abc", size - 33, 1) == 33


def test_script_archives_are_told_by_their_code(tmp_path: Path) -> None:
    (tmp_path / "plain.txt").write_text("not a zip")
    assert not is_script_archive(tmp_path / "plain.txt")
    assert not is_script_archive(write_archive(tmp_path / "a.pt", dump([1])))
    with zipfile.ZipFile(tmp_path / "b.pt", "w") as out:
        out.writestr("m/data.pkl", dump([1]))
        out.writestr("m/code/__torch__.py", "")
    assert is_script_archive(tmp_path / "b.pt")
    with zipfile.ZipFile(tmp_path / "c.pt", "w") as out:
        out.writestr("m/data.pkl", dump([1]))
        out.writestr("m/constants.pkl", dump(()))
    assert is_script_archive(str(tmp_path / "c.pt"))
