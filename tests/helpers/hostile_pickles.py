"""Hostile pickles for the safe-loading tests, written opcode by opcode.

Each gadget, loaded with plain :mod:`pickle`, creates the file ``marker`` (the tests' oracle:
after a refusal the marker must not exist). :func:`gadgets` returns them by name, each in the
protocols that can express it; :func:`tricks` adds streams that abuse the protocol itself
(INST/OBJ opcodes, extension codes, BUILD on plain values, hidden names, numpy state rebuilt
from the file) and streams that would hang or exhaust a naive reader.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np

Expr = object  # str | int | ("call", module, name, [Expr...]) | ("apply", Expr, [Expr...]) | ("list", [...])


def text(value: str, protocol: int) -> bytes:
    if protocol == 0:
        return b"V" + value.encode("raw-unicode-escape") + b"\n"
    data = value.encode("utf-8")
    return b"X" + struct.pack("<I", len(data)) + data


def global_ops(module: str, name: str, protocol: int) -> bytes:
    if protocol >= 4:
        return text(module, 1) + text(name, 1) + b"\x93"  # STACK_GLOBAL
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def ops(expr: Expr, protocol: int) -> bytes:
    if isinstance(expr, str):
        return text(expr, protocol)
    if isinstance(expr, int):
        return b"I" + str(expr).encode() + b"\n"
    kind, *rest = expr
    if kind == "list":
        return b"(" + b"".join(ops(e, protocol) for e in rest[0]) + b"l"
    if kind == "apply":  # call the value of an expression
        func, args = rest
        return ops(func, protocol) + b"(" + b"".join(ops(a, protocol) for a in args) + b"tR"
    module, name, args = rest
    return global_ops(module, name, protocol) + b"(" + b"".join(ops(a, protocol) for a in args) + b"tR"


def dumps(expr: Expr, protocol: int, in_file: bool = True) -> bytes:
    """``expr`` as a pickle; ``in_file`` puts it where an MMSA file's split would be."""
    body = ops(expr, protocol)
    if in_file:
        body = b"(" + text("train", protocol) + body + b"d"  # {"train": expr}
    head = b"\x80" + bytes([protocol]) if protocol >= 2 else b""
    return head + body + b"."


def gadget_exprs(marker: Path) -> dict[str, Expr]:
    """Name -> a call expression that writes ``marker`` when plain pickle loads it."""
    m = str(marker)
    shell = f"touch '{m}'"
    write = f"open({m!r}, 'w').write('ran')"
    return {
        "posix.system": ("call", "posix", "system", [shell]),
        "os.system": ("call", "os", "system", [shell]),
        "subprocess.Popen": ("call", "subprocess", "Popen", [("list", ["touch", m])]),
        "builtins.exec": ("call", "builtins", "exec", [write]),
        "builtins.eval": ("call", "builtins", "eval", [write]),
        "builtins.getattr": ("apply", ("call", "builtins", "getattr",
                                       [("call", "builtins", "__import__", ["os"]), "system"]), [shell]),
        "__builtin__.exec": ("call", "__builtin__", "exec", [write]),
        "numpy.testing._private.utils.runstring": ("call", "numpy.testing._private.utils", "runstring",
                                                   [write, ("call", "builtins", "dict", [])]),
        "numpy.load": ("call", "numpy", "load", [m]),
        "numpy.frombuffer": ("call", "numpy", "frombuffer", ["x"]),
        "numpy.core.multiarray.ndarray.__setstate__": ("call", "numpy.core.multiarray", "ndarray.__setstate__", []),
        "collections.namedtuple": ("call", "collections", "namedtuple", ["T", "a"]),
        "collections.deque": ("call", "collections", "deque", []),
        "copyreg._reconstructor": ("call", "copyreg", "_reconstructor", []),
        "torch.load": ("call", "torch", "load", [m]),
    }


#: Gadgets that plain pickle really runs here (shown once, so the refusals are of real attacks).
LIVE = ("posix.system", "os.system", "subprocess.Popen", "builtins.exec", "builtins.getattr")


def gadgets(marker: Path, in_file: bool = True) -> dict[str, bytes]:
    """``"<name> p<protocol>"`` -> a pickle that calls ``name`` (protocols 0, 2 and 4)."""
    out = {}
    for name, expr in gadget_exprs(marker).items():
        for protocol in (0, 2, 4):
            if expr[0] == "call" and "." in expr[2] and protocol < 4:
                continue  # a dotted name needs STACK_GLOBAL's qualified lookup (protocol 4)
            out[f"{name} p{protocol}"] = dumps(expr, protocol, in_file)
    return out


def _dtype(name: str, state: bytes) -> bytes:
    return global_ops("numpy", "dtype", 2) + text(name, 2) + b"\x89\x88\x87R" + state + b"b"


_PLAIN_STATE = b"(K\x03X\x01\x00\x00\x00<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t"


def _array(dtype_ops: bytes, shape: tuple[int, ...], raw: bytes) -> bytes:
    head = global_ops("numpy.core.multiarray", "_reconstruct", 2) + global_ops("numpy", "ndarray", 2)
    head += b"K\x00\x85" + b"C\x01b" + b"\x87R"
    shape_ops = b"(" + b"".join(b"J" + struct.pack("<i", n) for n in shape) + b"t"
    return head + b"(K\x01" + shape_ops + dtype_ops + b"\x89" + b"B" + struct.pack("<I", len(raw)) + raw + b"tb"


def tricks(marker: Path) -> dict[str, bytes]:
    """Protocol tricks and resource attacks, each a complete pickle (protocol 3 framing where needed)."""
    m = str(marker)
    p3 = b"\x80\x03"
    fields_state = pickle.dumps(np.dtype([("a", "O")]), protocol=3)  # a dtype with a made-up field layout
    deep = b"(" * 0 + b"]" * 2000 + b"a" * 1999  # 2000 nested lists
    dag = b"]" + b"".join(b"q\x00(h\x00h\x00l" for _ in range(64)) + b"."  # l_{k+1} = [l_k, l_k]
    return {
        "INST": b"(V" + f"touch '{m}'".encode() + b"\nios\nsystem\n.",
        "OBJ": b"(cnumpy\ndtype\nVf8\no.",  # an allowed name, through the opcode that calls it
        "EXT1": b"\x80\x02\x82\x01.",
        "EXT2": b"\x80\x02\x83\x01\x00.",
        "NEWOBJ_EX": p3 + global_ops("os", "system", 3) + b")}\x92.",
        "NEXT_BUFFER": b"\x80\x05\x97.",
        "PERSID": b"(Pos.system\n.",
        "BUILD on a list": p3 + b"]}X\x0c\x00\x00\x00__setstate__Ns" + b"b.",
        "REDUCE on a string": p3 + b"X\x02\x00\x00\x00osX\x01\x00\x00\x00x\x85R.",
        "name hidden in the memo": b"\x80\x04" + text("os", 4) + b"\x94" + text("system", 4) + b"\x94"
                                   + b"h\x00h\x01\x93" + text(f"touch '{m}'", 4) + b"\x85R.",
        "dtype with fields": fields_state,
        "dtype given fields": p3 + _dtype("f8", b"(K\x03X\x01\x00\x00\x00<NX\x01\x00\x00\x00a\x85}"
                                           b"J\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t") + b".",
        "dtype with object flags": p3 + _dtype("f8", _PLAIN_STATE.replace(b"K\x00t", b"K?t")) + b".",
        "dtype with a made-up size": p3 + _dtype("f8", b"(K\x03X\x01\x00\x00\x00<NNNK\x10K\x08K\x00t") + b".",
        "dtype not plain": p3 + _dtype("M8", _PLAIN_STATE) + b".",
        "scalar of the object dtype": p3 + global_ops("numpy.core.multiarray", "scalar", 3)
                                      + _dtype("O8", _PLAIN_STATE.replace(b"<", b"|").replace(b"K\x00t", b"K?t"))
                                      + b"C\x08" + b"\x00" * 8 + b"\x86R.",
        "array with short data": p3 + _array(_dtype("f8", _PLAIN_STATE), (4,), b"\x00" * 8) + b".",
        "array with a negative shape": p3 + _array(_dtype("f8", _PLAIN_STATE), (-1,), b"") + b".",
        "array written into (SETITEMS)": p3 + _array(_dtype("f8", _PLAIN_STATE), (1,), b"\x00" * 8)
                                         + b"(X\x01\x00\x00\x00aK\x01u.",
        "array state set twice": p3 + _array(_dtype("f8", _PLAIN_STATE), (1,), b"\x00" * 8)
                                 + b"(K\x01(K\x01tNNC\x00tb.",
        "array used before its state": p3 + b"]" + global_ops("numpy.core.multiarray", "_reconstruct", 3)
                                       + global_ops("numpy", "ndarray", 3) + b"K\x00\x85C\x01b\x87Ra.",
        "_reconstruct of another class": p3 + global_ops("numpy.core.multiarray", "_reconstruct", 3)
                                         + global_ops("numpy", "dtype", 3) + b"K\x00\x85C\x01b\x87R.",
        "a list holding itself": p3 + b"]q\x00h\x00a.",
        "containers 2000 deep": p3 + deep + b".",
        "a shared-list bomb": p3 + dag,
        "a list as a dict key": p3 + b"}]K\x01s.",
        "huge int text": b"I" + b"9" * 100_000 + b"\n.",
        "truncated": pickle.dumps({"train": list(range(100))}, protocol=4)[:-7],
    }
