"""Reading a pickle as data: a small stack machine over the pickle opcodes that never calls
anything a file names.

:func:`pickle.load` runs code: a ``GLOBAL`` opcode imports any name and ``REDUCE``/``BUILD``
call it with arguments from the file, and even an allow-list of names is not enough when the
allowed functions rebuild interpreter or numpy state from those arguments. :func:`read_data`
walks the opcode stream itself (:func:`pickletools.genops` parses each opcode's argument) and
builds only ``None``, bools, ints, floats, str, bytes, lists, tuples, dicts and sets. A
``GLOBAL`` becomes an inert :class:`Global` marker, and only if the caller's :class:`Rules`
allow that name; what ``REDUCE`` (and ``NEWOBJ``) of a marker and ``BUILD`` on the result
produce is decided by the caller's own checked code (:mod:`hcm.core.numpy_pickle` for numpy
arrays). Persistent ids (PyTorch's storages) go to ``Rules.persistent``. Everything else (other
globals, ``BUILD`` on a plain value other than a dict's attributes, which are dropped, extension
codes, out-of-band buffers, ``INST``/``OBJ``) is refused with :class:`PickleDataError` before
anything is built.

Limits that keep a hostile file from hanging or exhausting the reader: dict keys and set items
must be strings, bytes, numbers or flat tuples of those (hashing a nested tuple shared through
the memo takes time exponential in its depth); the finished value must be a tree or a DAG
without cycles, at most :data:`MAX_DEPTH` containers deep and at most :data:`MAX_NODES`
values when shared parts are counted once per use.
"""

from __future__ import annotations

import io
import pickletools
from dataclasses import dataclass
from typing import Any, Callable

MAX_DEPTH = 100  # containers inside containers
MAX_NODES = 20_000_000  # values in the finished tree, shared parts counted per use
_SCALARS = (str, bytes, int, float, bool, type(None))


class PickleDataError(ValueError):
    """The pickle holds something other than the plain data the rules allow; nothing of it was run."""


class DamagedPickleError(PickleDataError):
    """The bytes are not a complete pickle (truncated, unknown opcode, bad argument)."""


@dataclass(frozen=True)
class Global:
    """An allowed ``module.name`` from the file: a name only, never imported or called."""

    module: str
    name: str

    def __str__(self) -> str:
        return f"{self.module}.{self.name}"


class Pending:
    """An object built in two steps (``REDUCE`` then one ``BUILD``); subclasses set ``value``.

    Used anywhere before its ``BUILD`` (put into a container, passed to a call) it is refused.
    """

    __hash__ = None  # type: ignore[assignment]  # never a dict key
    what = "object"

    def __init__(self) -> None:
        self.done = False
        self.value: Any = None

    def build(self, state: Any) -> None:
        raise NotImplementedError


@dataclass
class Rules:
    """What a reader accepts beyond plain data.

    Args:
        globals: the ``(module, name)`` pairs a ``GLOBAL`` may name (after ``alias``).
        reduce: ``(Global, args tuple) -> value or Pending``; the only place a call is decided.
        persistent: ``pid -> value`` for ``PERSID``/``BINPERSID``; None refuses them.
        alias: ``(module, name) -> (module, name)``, e.g. numpy 1 and 2 module names to one.
    """

    globals: frozenset[tuple[str, str]]
    reduce: Callable[[Global, tuple], Any]
    persistent: Callable[[Any], Any] | None = None
    alias: Callable[[str, str], tuple[str, str]] = lambda module, name: (module, name)


def read_data(data: bytes, rules: Rules) -> Any:
    """The value pickled in ``data``, built as plain data under ``rules``; PickleDataError otherwise."""
    machine = _Machine(rules)
    pos = 0
    try:
        for op, arg, pos in pickletools.genops(io.BytesIO(data)):  # noqa: B007 (pos names the byte in errors)
            if op.name == "STOP":
                value = machine.final(machine.pop())
                check_shape(value)
                return value
            machine.step(op.name, arg)
    except PickleDataError as error:
        raise type(error)(f"{error} (at byte {pos})") from None
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, UnicodeError, RecursionError,
            MemoryError, EOFError) as error:
        raise DamagedPickleError(f"{type(error).__name__}: {error} (near byte {pos})") from None
    raise DamagedPickleError("the pickle ends without its STOP opcode (truncated)")


class _Machine:
    """The unpickler's stack, mark stack and memo, with one method per kind of opcode."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self.stack: list[Any] = []
        self.marks: list[int] = []
        self.memo: dict[int, Any] = {}

    def pop(self) -> Any:
        if not self.stack or (self.marks and len(self.stack) <= self.marks[-1]):
            raise DamagedPickleError("an opcode needs a value but the stack is empty")
        return self.stack.pop()

    def pop_mark(self) -> list[Any]:
        if not self.marks:
            raise DamagedPickleError("an opcode needs a MARK that was never set")
        start = self.marks.pop()
        items = self.stack[start:]
        del self.stack[start:]
        return items

    def top(self) -> Any:
        if not self.stack or (self.marks and len(self.stack) <= self.marks[-1]):
            raise DamagedPickleError("an opcode needs a value but the stack is empty")
        return self.stack[-1]

    def final(self, value: Any) -> Any:
        """``value`` as it may be stored or passed on: a Pending must have had its BUILD."""
        if isinstance(value, Pending):
            if not value.done:
                raise PickleDataError(f"a {value.what} is used before its state was set (BUILD)")
            return value.value
        return value  # a Global may travel in an argument tuple; check_shape refuses it in the result

    def step(self, name: str, arg: Any) -> None:
        handler = _HANDLERS.get(name)
        if handler is None:
            raise PickleDataError(f"the pickle uses the opcode {name}, which plain data never needs")
        handler(self, arg)

    # ------------------------------------------------------------------ values

    def push(self, value: Any) -> None:
        self.stack.append(value)  # INT's "00"/"01" (protocol 0 bools) arrive as False/True from genops

    def push_bytearray(self, arg: Any) -> None:
        self.stack.append(bytes(arg))  # held as immutable bytes; no caller needs a mutable buffer

    # ------------------------------------------------------------------ containers

    def key(self, value: Any) -> Any:
        value = self.final(value)
        if isinstance(value, _SCALARS) or (isinstance(value, tuple) and all(isinstance(v, _SCALARS) for v in value)):
            return value
        raise PickleDataError(f"a dict key or set item is a {type(value).__name__}; plain data keys are "
                              f"strings, numbers or flat tuples")

    def container(self, kind: type) -> Any:
        target = self.final(self.top())
        if type(target) is not kind:
            raise DamagedPickleError(f"an opcode adds items to a {type(target).__name__}, expected a {kind.__name__}")
        return target

    def appends(self, _arg: Any) -> None:
        items = [self.final(v) for v in self.pop_mark()]
        self.container(list).extend(items)

    def append(self, _arg: Any) -> None:
        item = self.final(self.pop())
        self.container(list).append(item)

    def setitems(self, _arg: Any) -> None:
        items = self.pop_mark()
        if len(items) % 2:
            raise DamagedPickleError("SETITEMS with an odd number of values")
        target = self.container(dict)
        for i in range(0, len(items), 2):
            target[self.key(items[i])] = self.final(items[i + 1])

    def setitem(self, _arg: Any) -> None:
        value, key = self.final(self.pop()), self.key(self.pop())
        self.container(dict)[key] = value

    def additems(self, _arg: Any) -> None:
        items = [self.key(v) for v in self.pop_mark()]
        self.container(set).update(items)

    def dict_(self, _arg: Any) -> None:
        items = self.pop_mark()
        if len(items) % 2:
            raise DamagedPickleError("DICT with an odd number of values")
        self.push({self.key(items[i]): self.final(items[i + 1]) for i in range(0, len(items), 2)})

    # ------------------------------------------------------------------ stack and memo

    def mark(self, _arg: Any) -> None:
        self.marks.append(len(self.stack))

    def pop_op(self, _arg: Any) -> None:
        if self.marks and len(self.stack) == self.marks[-1]:
            self.marks.pop()  # POP of a bare MARK, as pickle does
        else:
            self.pop()

    def memo_put(self, index: Any) -> None:
        if not isinstance(index, int) or index < 0:
            raise DamagedPickleError(f"memo index {index!r}")
        self.memo[index] = self.top()

    def memoize(self, _arg: Any) -> None:
        self.memo[len(self.memo)] = self.top()

    def memo_get(self, index: Any) -> None:
        if index not in self.memo:
            raise DamagedPickleError(f"the memo has no entry {index!r}")
        self.push(self.memo[index])

    # ------------------------------------------------------------------ names and calls

    def global_(self, arg: Any) -> None:
        module, _, name = str(arg).partition(" ")
        self.push(self.named(module, name))

    def stack_global(self, _arg: Any) -> None:
        name, module = self.final(self.pop()), self.final(self.pop())
        if not isinstance(module, str) or not isinstance(name, str):
            raise DamagedPickleError("STACK_GLOBAL needs two strings")
        self.push(self.named(module, name))

    def named(self, module: str, name: str) -> Global:
        module, name = self.rules.alias(module, name)
        if (module, name) not in self.rules.globals:
            raise PickleDataError(f"the pickle asks for {module}.{name}")
        return Global(module, name)

    def call(self, func: Any, args: Any) -> None:
        if not isinstance(func, Global):
            raise PickleDataError(f"the pickle calls a {type(func).__name__}, not an allowed name")
        if not isinstance(args, tuple):
            raise PickleDataError(f"{func} is called with a {type(args).__name__} instead of an argument tuple")
        self.push(self.rules.reduce(func, args))

    def reduce(self, _arg: Any) -> None:
        args, func = self.final(self.pop()), self.pop()
        self.call(func, args)

    def newobj(self, _arg: Any) -> None:
        args, cls = self.final(self.pop()), self.pop()
        self.call(cls, args)

    def build(self, _arg: Any) -> None:
        state, target = self.final(self.pop()), self.top()
        if type(target) is dict and (state is None or type(state) is dict):
            return  # attributes of a dict subclass (an OrderedDict's ``_metadata``): read, then dropped
        if not isinstance(target, Pending):
            raise PickleDataError(f"the pickle sets the state of a {type(target).__name__} (BUILD), "
                                  f"which plain data never needs")
        if target.done:
            raise PickleDataError(f"the pickle sets the state of a {target.what} twice")
        target.build(state)
        target.done = True

    def persid(self, pid: Any) -> None:
        self.load_persistent(pid)

    def binpersid(self, _arg: Any) -> None:
        self.load_persistent(self.final(self.pop()))

    def load_persistent(self, pid: Any) -> None:
        if self.rules.persistent is None:
            raise PickleDataError("the pickle refers to outside objects (persistent ids)")
        self.push(self.rules.persistent(pid))

    def nothing(self, _arg: Any) -> None:
        pass


def _tuple_of(n: int) -> Callable[[_Machine, Any], None]:
    def handler(machine: _Machine, _arg: Any) -> None:
        items = [machine.final(machine.pop()) for _ in range(n)]
        machine.push(tuple(reversed(items)))
    return handler


def _const(value_factory: Callable[[], Any]) -> Callable[[_Machine, Any], None]:
    return lambda machine, _arg: machine.push(value_factory())


def _from_mark(make: Callable[[list], Any], keyed: bool = False) -> Callable[[_Machine, Any], None]:
    def handler(machine: _Machine, _arg: Any) -> None:
        items = machine.pop_mark()
        machine.push(make([machine.key(v) if keyed else machine.final(v) for v in items]))
    return handler


_HANDLERS: dict[str, Callable[[_Machine, Any], None]] = {
    "PROTO": _Machine.nothing, "FRAME": _Machine.nothing,
    "NONE": _const(lambda: None), "NEWTRUE": _const(lambda: True), "NEWFALSE": _const(lambda: False),
    "EMPTY_LIST": _const(list), "EMPTY_DICT": _const(dict), "EMPTY_SET": _const(set),
    "EMPTY_TUPLE": _const(tuple),
    "INT": _Machine.push, "BININT": _Machine.push, "BININT1": _Machine.push,
    "BININT2": _Machine.push, "LONG": _Machine.push, "LONG1": _Machine.push,
    "LONG4": _Machine.push, "FLOAT": _Machine.push, "BINFLOAT": _Machine.push,
    "STRING": _Machine.push, "BINSTRING": _Machine.push, "SHORT_BINSTRING": _Machine.push,
    "UNICODE": _Machine.push, "BINUNICODE": _Machine.push, "SHORT_BINUNICODE": _Machine.push,
    "BINUNICODE8": _Machine.push, "BINBYTES": _Machine.push, "SHORT_BINBYTES": _Machine.push,
    "BINBYTES8": _Machine.push, "BYTEARRAY8": _Machine.push_bytearray,
    "APPEND": _Machine.append, "APPENDS": _Machine.appends, "SETITEM": _Machine.setitem,
    "SETITEMS": _Machine.setitems, "ADDITEMS": _Machine.additems, "DICT": _Machine.dict_,
    "LIST": _from_mark(list), "TUPLE": _from_mark(tuple), "FROZENSET": _from_mark(frozenset, keyed=True),
    "TUPLE1": _tuple_of(1), "TUPLE2": _tuple_of(2), "TUPLE3": _tuple_of(3),
    "MARK": _Machine.mark, "POP": _Machine.pop_op, "POP_MARK": lambda m, _a: m.pop_mark() and None,
    "DUP": lambda m, _a: m.push(m.top()),
    "PUT": _Machine.memo_put, "BINPUT": _Machine.memo_put, "LONG_BINPUT": _Machine.memo_put,
    "MEMOIZE": _Machine.memoize, "GET": _Machine.memo_get, "BINGET": _Machine.memo_get,
    "LONG_BINGET": _Machine.memo_get,
    "GLOBAL": _Machine.global_, "STACK_GLOBAL": _Machine.stack_global, "REDUCE": _Machine.reduce,
    "NEWOBJ": _Machine.newobj, "BUILD": _Machine.build,
    "PERSID": _Machine.persid, "BINPERSID": _Machine.binpersid,
}


def check_shape(value: Any) -> None:
    """Refuse a finished value with a cycle, more than MAX_DEPTH nested containers or more than
    MAX_NODES values counted per use (a DAG of shared lists can stand for an exponential tree)."""
    counts: dict[int, tuple[int, int]] = {}  # id -> (depth below, values) of finished containers
    open_ids: set[int] = set()
    stack: list[tuple[Any, bool]] = [(value, False)]
    while stack:
        node, leaving = stack.pop()
        key = id(node)
        children = _children(node)
        if children is None:
            if isinstance(node, Global):
                raise PickleDataError(f"{node} is a name, not a value")
            continue
        if leaving:
            open_ids.discard(key)
            below = [counts[id(c)] for c in children if id(c) in counts]
            depth = 1 + max((d for d, _ in below), default=0)
            size = 1 + sum(n for _, n in below) + sum(1 for c in children if id(c) not in counts)
            if depth > MAX_DEPTH:
                raise PickleDataError(f"containers nest more than {MAX_DEPTH} deep")
            if size > MAX_NODES:
                raise PickleDataError(f"the value holds more than {MAX_NODES:,} items once shared parts are "
                                      f"counted per use")
            counts[key] = (depth, size)
            continue
        if key in counts:
            continue
        if key in open_ids:
            raise PickleDataError("a container holds itself (a cycle)")
        open_ids.add(key)
        stack.append((node, True))
        for child in children:
            if isinstance(child, Global):
                raise PickleDataError(f"{child} is a name, not a value")
            if _children(child) is not None and id(child) not in counts:
                stack.append((child, False))


def _children(node: Any) -> list | None:
    if isinstance(node, dict):
        return [*node.keys(), *node.values()]
    if isinstance(node, (list, tuple, set, frozenset)):
        return list(node)
    return None
