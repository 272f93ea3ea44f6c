"""numpy arrays, dtypes and scalars from a pickle, built by hcm's own checked code.

numpy pickles an array in one of three forms, and :data:`NUMPY_RULES` reads each of them with
:func:`hcm.core.pickledata.read_data`:

* ``_reconstruct(ndarray, (0,), b"b")`` followed by ``BUILD`` with the state
  ``(1, shape, dtype, is_fortran, raw)`` (protocols 0-4; raw is bytes, under protocol 2 the
  result of ``_codecs.encode(text, "latin1")``, and a list of values for object arrays);
* ``_frombuffer(buffer, dtype, shape, order)`` (protocol 5);
* ``scalar(dtype, raw)`` for a numpy scalar;

and a dtype as ``dtype(name, False, True)`` followed by ``BUILD`` with its state
``(3, byteorder, None, None, None, elsize, alignment, flags)``.

None of numpy's reconstructors is ever called. The parts are checked and the result made with
``np.frombuffer`` over bytes of exactly the right length: the dtype must be one of a fixed list
of plain kinds (bool, signed and unsigned integers, floats, fixed-width str and bytes) in its
standard form (no fields, sub-arrays, metadata or made-up flags); the shape holds at most
:data:`MAX_DIMS` non-negative ints; an object array may only hold str, bytes, None and Python
numbers (what MMSA's id/text columns hold; never another array or object), and a numpy scalar
is never of the object dtype. Arrays
made from the file's bytes are read-only views of them.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from hcm.core.pickledata import Global, Pending, PickleDataError, Rules

MAX_DIMS = 32
MAX_STRING_WIDTH = 1 << 20  # characters of a fixed-width str/bytes dtype
_FIXED = re.compile(r"^([biuf])(\d+)$")
_FIXED_SIZES = {"b": (1,), "i": (1, 2, 4, 8), "u": (1, 2, 4, 8), "f": (2, 4, 8)}
_FLEXIBLE = re.compile(r"^([US])(\d+)$")
_OBJECT_NAMES = ("O8", "O4", "O")
_OBJECT_ITEMS = (str, bytes, int, float, type(None))  # inert values only (bool is an int)

RECONSTRUCT = ("numpy._core.multiarray", "_reconstruct")
SCALAR = ("numpy._core.multiarray", "scalar")
FROMBUFFER = ("numpy._core.numeric", "_frombuffer")
NDARRAY = ("numpy", "ndarray")
DTYPE = ("numpy", "dtype")
CODECS_ENCODE = ("_codecs", "encode")
ORDERED_DICT = ("collections", "OrderedDict")
EMPTY_BYTES = ("builtins", "bytes")  # protocols 0-2 write b"" as bytes()


def numpy_alias(module: str, name: str) -> tuple[str, str]:
    """numpy 1 writes ``numpy.core``, numpy 2 ``numpy._core``: one name for both (and Python 2's
    ``__builtin__`` is ``builtins``)."""
    if module == "__builtin__":
        module = "builtins"
    if module == "numpy.core" or module.startswith("numpy.core."):
        module = "numpy._core" + module[len("numpy.core"):]
    return module, name


def plain_dtype(name: Any) -> np.dtype:
    """The dtype called ``name`` if it is one of the plain kinds; PickleDataError otherwise."""
    if not isinstance(name, str):
        raise PickleDataError(f"a dtype named by a {type(name).__name__}")
    fixed, flexible = _FIXED.match(name), _FLEXIBLE.match(name)
    if fixed and int(fixed.group(2)) in _FIXED_SIZES[fixed.group(1)]:
        return np.dtype(name)
    if flexible and 1 <= int(flexible.group(2)) <= MAX_STRING_WIDTH:
        return np.dtype(name)
    if name in _OBJECT_NAMES:
        return np.dtype(object)
    raise PickleDataError(f"the dtype {name!r} is not one of the plain kinds (bool, integers, floats, "
                          f"fixed-width str/bytes, object arrays of strings)")


class DtypePending(Pending):
    """``dtype(name, False, True)`` awaiting its state; the state may only restate the standard form."""

    what = "numpy dtype"

    def __init__(self, name: Any) -> None:
        super().__init__()
        self.base = plain_dtype(name)

    def build(self, state: Any) -> None:
        base = self.base
        if not isinstance(state, tuple) or len(state) not in (8, 9) or state[0] not in (3, 4):
            raise PickleDataError(f"the state of dtype {base} is not numpy's (3, byteorder, ...) tuple")
        order, subarray, names, fields, elsize, alignment, flags = state[1:8]
        metadata = state[8] if len(state) == 9 else None
        if subarray is not None or names is not None or fields is not None or metadata is not None:
            raise PickleDataError(f"dtype {base} is given fields, a sub-array or metadata; only plain dtypes are read")
        flexible = base.kind in "US"
        expected = (base.itemsize, base.alignment) if flexible else (-1, -1)
        if (elsize, alignment) != expected or flags != int(base.flags):
            raise PickleDataError(f"dtype {base} is given a size, alignment or flags ({elsize}, {alignment}, "
                                  f"{flags}) other than its own {expected + (int(base.flags),)}")
        if order not in ("<", ">", "|", "="):
            raise PickleDataError(f"dtype {base} has the byte order {order!r}")
        self.value = base.newbyteorder(order)  # numpy keeps 1-byte, bytes and object dtypes order-less ("|")


class ArrayPending(Pending):
    """``_reconstruct(ndarray, (0,), b"b")`` awaiting ``(1, shape, dtype, fortran, raw)``."""

    what = "numpy array"

    def build(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 5 and state[0] == 1:
            state = state[1:]
        if not isinstance(state, tuple) or len(state) != 4:
            raise PickleDataError("the state of an array is not numpy's (1, shape, dtype, fortran, data) tuple")
        shape, dtype, fortran, raw = state
        if not isinstance(fortran, bool):
            raise PickleDataError(f"an array's order flag is a {type(fortran).__name__}")
        self.value = make_array(raw, dtype, shape, "F" if fortran else "C")


def _shape(shape: Any) -> tuple[tuple[int, ...], int]:
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    if (not isinstance(shape, tuple) or len(shape) > MAX_DIMS
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)):
        raise PickleDataError(f"an array shape {shape!r} is not a tuple of at most {MAX_DIMS} non-negative ints")
    count = 1
    for n in shape:
        count *= n
    return shape, count


def make_array(raw: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    """An array of ``shape`` and ``dtype`` holding ``raw`` (bytes of exactly the right length, or
    for an object array a list of str/bytes/None/numbers), made without numpy's unpickling code."""
    if not isinstance(dtype, np.dtype):
        raise PickleDataError(f"an array's dtype is a {type(dtype).__name__}")
    if order not in ("C", "F"):
        raise PickleDataError(f"an array's memory order is {order!r}")
    shape, count = _shape(shape)
    if dtype.kind == "O":
        if not isinstance(raw, list) or len(raw) != count or not all(isinstance(v, _OBJECT_ITEMS) for v in raw):
            raise PickleDataError(f"an object array of shape {shape} must hold {count} strings or numbers; it holds "
                                  f"{_describe(raw)}")
        out = np.empty(count, dtype=object)
        for i, value in enumerate(raw):
            out[i] = value
        return out.reshape(shape, order=order)
    if isinstance(raw, str):
        raw = raw.encode("latin-1")  # protocol 0-2 pickles written by Python 2
    if not isinstance(raw, bytes):
        raise PickleDataError(f"an array's data is a {type(raw).__name__}, expected bytes")
    if len(raw) != count * dtype.itemsize:
        raise PickleDataError(f"an array of shape {shape} and dtype {dtype} needs {count * dtype.itemsize} "
                              f"bytes of data; the file gives {len(raw)}")
    return np.frombuffer(raw, dtype=dtype, count=count).reshape(shape, order=order)


def _describe(raw: Any) -> str:
    if not isinstance(raw, list):
        return f"a {type(raw).__name__}"
    foreign = sorted({type(v).__name__ for v in raw if not isinstance(v, _OBJECT_ITEMS)})
    return f"{len(raw)} values" + (f" of type {', '.join(foreign)}" if foreign else "")


def _scalar(args: tuple) -> Any:
    if len(args) != 2 or not isinstance(args[0], np.dtype) or args[0].kind == "O":
        raise PickleDataError("a numpy scalar is not (plain dtype, bytes)")
    return make_array(args[1], args[0], (), "C")[()]


def _frombuffer(args: tuple) -> np.ndarray:
    if len(args) != 4 or not isinstance(args[1], np.dtype) or args[1].kind == "O":
        raise PickleDataError("a protocol-5 array is not (bytes, plain dtype, shape, order)")
    return make_array(*args)


def _reconstruct(args: tuple) -> ArrayPending:
    if len(args) != 3 or args[0] != Global(*NDARRAY):
        raise PickleDataError("_reconstruct is asked for something other than an ndarray")
    return ArrayPending()


def _dtype(args: tuple) -> DtypePending:
    if len(args) != 3 or args[1] is not False or args[2] is not True:
        raise PickleDataError(f"dtype is called with {len(args)} arguments other than (name, False, True)")
    return DtypePending(args[0])


def _encode(args: tuple) -> bytes:
    if len(args) != 2 or not isinstance(args[0], str) or args[1] not in ("latin1", "latin-1"):
        raise PickleDataError("_codecs.encode is called with anything but (text, 'latin1')")
    return args[0].encode("latin-1")


def _empty_bytes(args: tuple) -> bytes:
    if args != ():
        raise PickleDataError("bytes is called with arguments")
    return b""


def _ordered_dict(args: tuple) -> dict:
    if args != ():
        raise PickleDataError("OrderedDict is called with arguments")
    return {}


_REDUCERS = {RECONSTRUCT: _reconstruct, SCALAR: _scalar, FROMBUFFER: _frombuffer, DTYPE: _dtype,
             CODECS_ENCODE: _encode, ORDERED_DICT: _ordered_dict, EMPTY_BYTES: _empty_bytes}


def reduce_numpy(func: Global, args: tuple) -> Any:
    """The value of ``func(*args)`` for the numpy forms above, built by this module."""
    make = _REDUCERS.get((func.module, func.name))
    if make is None:
        raise PickleDataError(f"{func} is not something hcm builds")
    return make(args)


#: Plain data plus numpy arrays, dtypes and scalars and OrderedDict (read as dict).
NUMPY_RULES = Rules(globals=frozenset([*_REDUCERS, NDARRAY]), reduce=reduce_numpy, alias=numpy_alias)
