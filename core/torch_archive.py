"""Tensors from a PyTorch zip archive (``torch.save`` files and TorchScript archives) read as
data: nothing the archive carries is run.

A PyTorch archive is a zip holding ``<name>/data.pkl`` (a pickle of the saved object whose
tensors refer to storages by persistent id), the storages' bytes as ``<name>/data/<key>``,
and ``<name>/byteorder``; a TorchScript archive adds compiled code (``code/``, ``constants.pkl``)
that ``torch.jit.load`` would run. :func:`read_archive` reads only ``data.pkl`` and the
storages, with :func:`hcm.core.pickledata.read_data`:

* ``torch._utils._rebuild_tensor_v2``/``_rebuild_parameter`` become tensors made by hcm: the
  storage is one of the plain element types (:data:`STORAGE_DTYPES`), its record must hold
  exactly ``numel`` elements, and offset, sizes and strides must stay inside it;
* with ``script=True`` a TorchScript object (``__torch__.*``, created by ``NEWOBJ`` and given
  a dict by ``BUILD``) becomes that plain dict of attributes, and TorchScript's typed lists and
  dicts (``torch.jit._pickle``) their plain value; its code is never read;
* with ``numpy=True`` the numpy arrays, dtypes and scalars of :mod:`hcm.core.numpy_pickle`
  are read too (hcm checkpoints of earlier versions hold a few), and torch's version string;
* any other name, opcode or shape is refused with :class:`PickleDataError`.

With ``mapped=True`` the storages of uncompressed records (as torch writes them) are not read
into memory but mapped from the file, copy-on-write (:func:`mapped_record`): a tensor's pages
are read only when used and are shared with the page cache, so a weight file's unused tensors
cost no memory and its used ones no second copy. Writing to such a tensor changes this
process's copy only, never the file. Mapped records are not checked against their CRC (that
would read every page); their sizes are checked as always.

torch is imported inside the functions: core's module level stays free of it.
"""

from __future__ import annotations

import mmap
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

from hcm.core.numpy_pickle import MAX_DIMS, NUMPY_RULES, ORDERED_DICT, numpy_alias, reduce_numpy
from hcm.core.pickledata import DamagedPickleError, Global, Pending, PickleDataError, Rules, read_data

#: Storage class name -> torch dtype name (the element types a weight file holds).
STORAGE_DTYPES = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool",
}
REBUILD_TENSOR = ("torch._utils", "_rebuild_tensor_v2")
REBUILD_PARAMETER = ("torch._utils", "_rebuild_parameter")
TORCH_VERSION = ("torch.torch_version", "TorchVersion")
LOCAL_HEADER_SIZE, LOCAL_HEADER_SIGNATURE = 30, b"PK\x03\x04"  # a zip record's local file header
MAX_EXPANSION = 100  # how many times a compressed record may expand (torch writes them uncompressed)
#: TorchScript's typed containers: ``build_*list(list)`` and ``restore_type_tag(value, type)``
#: return their first argument unchanged.
SCRIPT_LISTS = {("torch.jit._pickle", n) for n in ("build_intlist", "build_doublelist", "build_boollist",
                                                    "build_tensorlist")}
RESTORE_TYPE_TAG = ("torch.jit._pickle", "restore_type_tag")


class _Storage:
    """One storage record of the archive as a flat tensor (read once, shared by its views)."""

    def __init__(self, flat: Any) -> None:
        self.flat = flat


class ScriptAttributes(dict):
    """The attributes of one TorchScript object (a module or submodule), as read from the archive."""


class _ScriptObject(Pending):
    """A TorchScript object: its ``BUILD`` state, a dict of attributes, is all that is kept."""

    what = "TorchScript object"

    def build(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise PickleDataError(f"a TorchScript object's state is a {type(state).__name__}, expected a dict")
        self.value = ScriptAttributes(state)


class _Reader:
    """The rules of one archive: storages from its zip, tensors from checked parts."""

    def __init__(self, archive: zipfile.ZipFile, prefix: str, script: bool, numpy: bool,
                 mapping: mmap.mmap | None = None) -> None:
        self.archive, self.prefix, self.script, self.numpy = archive, prefix, script, numpy
        self.mapping = mapping  # the whole file, copy-on-write, when storages are mapped
        self.storages: dict[str, _Storage] = {}

    def rules(self) -> Rules:
        names = {REBUILD_TENSOR, REBUILD_PARAMETER, ORDERED_DICT} | {("torch", n) for n in STORAGE_DTYPES}
        if self.script:
            names |= SCRIPT_LISTS | {RESTORE_TYPE_TAG}
        if self.numpy:
            names |= set(NUMPY_RULES.globals) | {TORCH_VERSION}
        return Rules(globals=_Names(frozenset(names), self.script), reduce=self.reduce,
                     persistent=self.persistent, alias=numpy_alias)

    def reduce(self, func: Global, args: tuple) -> Any:
        key = (func.module, func.name)
        if key == REBUILD_TENSOR:
            return self.tensor(args)
        if key == REBUILD_PARAMETER:
            if len(args) != 3 or not _is_tensor(args[0]):
                raise PickleDataError("_rebuild_parameter is not (tensor, requires_grad, hooks)")
            return args[0]
        if key == TORCH_VERSION:
            if len(args) != 1 or not isinstance(args[0], str):
                raise PickleDataError("TorchVersion is not called with one string")
            return str(args[0])
        if key in SCRIPT_LISTS or key == RESTORE_TYPE_TAG:
            if len(args) != (1 if key in SCRIPT_LISTS else 2) or not isinstance(args[0], (list, dict)):
                raise PickleDataError(f"{func} is not called with one list (or a value and its type)")
            return args[0]
        if func.module == "__torch__" or func.module.startswith("__torch__."):
            if args != ():
                raise PickleDataError(f"the TorchScript object {func} is created with arguments")
            return _ScriptObject()
        return reduce_numpy(func, args)  # OrderedDict and, when rules() allowed them, numpy's names

    def persistent(self, pid: Any) -> _Storage:
        import torch

        if (not isinstance(pid, tuple) or len(pid) != 5 or pid[0] != "storage" or not isinstance(pid[1], Global)
                or pid[1].module != "torch" or pid[1].name not in STORAGE_DTYPES or not isinstance(pid[2], str)
                or not isinstance(pid[4], int) or isinstance(pid[4], bool) or pid[4] < 0):
            raise PickleDataError(f"a persistent id {_short(pid)} is not ('storage', torch.<Type>Storage, key, "
                                  f"location, numel)")
        key, numel = pid[2], pid[4]
        if key in self.storages:
            return self.storages[key]
        dtype = getattr(torch, STORAGE_DTYPES[pid[1].name])
        name = f"{self.prefix}data/{key}"
        itemsize = dtype.itemsize
        offset = mapped_record(self.archive, name, numel * itemsize, itemsize) if self.mapping and numel else None
        if offset is not None:
            flat = torch.frombuffer(self.mapping, dtype=dtype, count=numel, offset=offset)  # (numel,), no copy
        else:
            raw = read_record(self.archive, name, numel * itemsize, f"{numel} {dtype} elements")
            flat = torch.frombuffer(bytearray(raw), dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        self.storages[key] = _Storage(flat)
        return self.storages[key]

    def tensor(self, args: tuple) -> Any:
        import torch

        if len(args) not in (6, 7) or not isinstance(args[0], _Storage):
            raise PickleDataError("_rebuild_tensor_v2 is not (storage, offset, size, stride, requires_grad, hooks)")
        storage, offset, size, stride = args[:4]
        if (not _ints(size) or not _ints(stride) or len(size) != len(stride) or len(size) > MAX_DIMS
                or not isinstance(offset, int) or isinstance(offset, bool) or offset < 0):
            raise PickleDataError(f"a tensor's offset {offset!r}, size {_short(size)} or stride {_short(stride)} "
                                  f"is not made of non-negative ints")
        numel = storage.flat.numel()
        last = offset + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else offset - 1
        if last >= numel:
            raise PickleDataError(f"a tensor of size {tuple(size)} at offset {offset} reaches past its storage "
                                  f"of {numel} elements")
        return torch.as_strided(storage.flat, tuple(size), tuple(stride), offset)


class _Names(frozenset):
    """The allowed names, plus every ``__torch__.*`` class of a TorchScript archive."""

    def __new__(cls, names: frozenset, script: bool) -> "_Names":
        out = super().__new__(cls, names)
        out.script = script
        return out

    def __contains__(self, key: object) -> bool:
        if self.script and isinstance(key, tuple) and len(key) == 2 and isinstance(key[0], str):
            if key[0] == "__torch__" or key[0].startswith("__torch__."):
                return True
        return super().__contains__(key)


def read_record(archive: zipfile.ZipFile, name: str, size: int | None = None, what: str = "") -> bytes:
    """The bytes of record ``name``; its size (``size`` when given) is checked before it is read,
    and a compressed record may not expand more than :data:`MAX_EXPANSION` times."""
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise PickleDataError(f"the archive lacks the record {name}") from None
    if size is not None and info.file_size != size:
        raise PickleDataError(f"storage {name} holds {info.file_size} bytes, not the {size} of {what}")
    if info.compress_type != zipfile.ZIP_STORED and info.file_size > MAX_EXPANSION * info.compress_size + (1 << 20):
        raise PickleDataError(f"record {name} expands from {info.compress_size} to {info.file_size} bytes "
                              f"(a compression bomb)")
    raw = archive.read(info)
    if len(raw) != info.file_size:
        raise DamagedPickleError(f"record {name} holds {len(raw)} bytes, its header says {info.file_size}")
    return raw


def mapped_record(archive: zipfile.ZipFile, name: str, size: int, alignment: int) -> int | None:
    """Where the bytes of record ``name`` start in the archive's file, when they can be mapped: the
    record is stored uncompressed, holds ``size`` bytes, starts on a multiple of ``alignment`` and
    lies inside the file. ``None`` otherwise (the caller reads and checks it with :func:`read_record`)."""
    try:
        info = archive.getinfo(name)
    except KeyError:
        return None
    if info.compress_type != zipfile.ZIP_STORED or info.file_size != size:
        return None
    handle = archive.fp
    handle.seek(info.header_offset)
    header = handle.read(LOCAL_HEADER_SIZE)
    if len(header) != LOCAL_HEADER_SIZE or header[:4] != LOCAL_HEADER_SIGNATURE:
        return None
    name_length, extra_length = struct.unpack("<HH", header[26:30])  # the local header's own lengths
    start = info.header_offset + LOCAL_HEADER_SIZE + name_length + extra_length
    handle.seek(0, 2)
    inside = start + size <= handle.tell()
    return start if inside and start % alignment == 0 else None


def _ints(values: Any) -> bool:
    return isinstance(values, tuple) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                             for v in values)


def _is_tensor(value: Any) -> bool:
    import torch

    return isinstance(value, torch.Tensor)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def archive_prefix(archive: zipfile.ZipFile) -> str:
    """The folder inside the zip that holds ``data.pkl`` (``archive/`` for torch.save files)."""
    found = [n for n in archive.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
    if len(found) != 1:
        raise DamagedPickleError(f"the zip holds {len(found)} top-level data.pkl records, expected one "
                                 f"(it is not a PyTorch archive)")
    return found[0][: -len("data.pkl")]


def is_script_archive(path: str | Path) -> bool:
    """Whether ``path`` is a TorchScript archive (it has compiled code), not a ``torch.save`` file."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") or "/code/" in name for name in archive.namelist())


def read_archive(path: str | Path, *, script: bool = False, numpy: bool = False, mapped: bool = False) -> Any:
    """The object saved in the archive at ``path``, tensors included, read as data only
    (``mapped``: storages mapped from the file, see the module docstring).

    Raises:
        DamagedPickleError: not a PyTorch zip archive, or truncated/damaged.
        PickleDataError: it holds anything but tensors, plain data and what the flags allow.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            prefix = archive_prefix(archive)
            order = archive.read(prefix + "byteorder").decode("ascii", "replace").strip() \
                if prefix + "byteorder" in archive.namelist() else "little"
            if order != "little":
                raise PickleDataError(f"the archive's byte order is {order!r}; hcm reads little-endian archives")
            reader = _Reader(archive, prefix, script, numpy, _map_file(path) if mapped else None)
            return read_data(read_record(archive, prefix + "data.pkl"), reader.rules())
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, NotImplementedError, ValueError) as error:
        if isinstance(error, PickleDataError):
            raise
        raise DamagedPickleError(f"not a readable zip archive ({type(error).__name__}: {error})") from None
    except (RuntimeError, zlib.error) as error:  # zlib or torch on a damaged record
        raise DamagedPickleError(f"a record cannot be read ({error})") from None


def _map_file(path: str | Path) -> mmap.mmap | None:
    """The whole file mapped copy-on-write (``None`` for an empty file); the tensors made from it
    keep it alive, and it is unmapped when the last of them is freed."""
    with open(path, "rb") as handle:
        size = handle.seek(0, 2)
        return mmap.mmap(handle.fileno(), size, access=mmap.ACCESS_COPY) if size else None


def script_tensors(state: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted name -> tensor of a TorchScript module read by :func:`read_archive` (``script=True``):
    the tensors among its attributes and, recursively, its submodules' (the keys of the
    module's ``state_dict()`` for traced modules, whose other tensors are constants; a scripted
    module's plain tensor attributes, which ``state_dict()`` leaves out, are included)."""
    import torch

    out: dict[str, Any] = {}
    if isinstance(state, dict):
        for name, value in state.items():
            if not isinstance(name, str):
                continue
            if isinstance(value, torch.Tensor):
                out[prefix + name] = value
            elif isinstance(value, ScriptAttributes):  # a submodule; plain dict attributes are not weights
                out.update(script_tensors(value, f"{prefix}{name}."))
    return out
