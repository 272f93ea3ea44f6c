"""hcm.core.pickledata's stack machine, opcode by opcode: what each builds from a hand-written
stream, what it refuses (damage or an attempt to run code, told apart), where the error says
it happened, and the limits on the finished value.

Streams are written with protocol 0-4 opcodes by hand where ``pickle.dumps`` never writes them;
the rules are a test's own (names ``m.f``/``m.g``, a reducer that records its calls)."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

import hcm.core.pickledata as pickledata
from hcm.core.pickledata import DamagedPickleError, Global, Pending, PickleDataError, Rules, read_data


class Box(Pending):
    """A two-step object of the test's reducer: ``m.g()`` then BUILD with any state."""

    what = "box"

    def build(self, state: Any) -> None:
        self.value = ("box", state)


def reduce(func: Global, args: tuple) -> Any:
    return Box() if func.name == "g" else ("called", str(func), args)


RULES = Rules(globals=frozenset({("m", "f"), ("m", "g")}), reduce=reduce)
P2 = b"\x80\x02"


def read(data: bytes, rules: Rules = RULES) -> Any:
    return read_data(data, rules)


def refused(data: bytes, message: str, kind: type = PickleDataError, rules: Rules = RULES) -> None:
    with pytest.raises(kind, match=message) as caught:
        read(data, rules)
    if kind is PickleDataError:
        assert not isinstance(caught.value, DamagedPickleError), caught.value  # an attack is not damage


# ---------------------------------------------------------------------- plain values

@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_plain_values_of_every_protocol_read_back(protocol: int) -> None:
    shared = [1, 2]
    value = {"none": None, "bools": [True, False], "ints": [0, -1, 255, 65536, -2**31, 2**40, 2**100, -2**100],
             "floats": [1.5, -0.0], "text": ["", "é", "x" * 300], "tuples": [(), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4)],
             "shared": [shared, shared], 3: "int key", (1, "a"): "tuple key", None: "none key"}
    if protocol >= 3:  # bytes (earlier protocols call builtins or _codecs for them)
        value |= {"bytes": [b"", b"\x00" * 300], b"k": "bytes key"}
    if protocol >= 4:  # sets have opcodes of their own
        value |= {"set": {1, "a"}, "frozen": frozenset({2, "b"})}
    out = read(pickle.dumps(value, protocol=protocol))
    assert out == value and type(out["tuples"][2]) is tuple
    assert protocol < 4 or (type(out["set"]) is set and type(out["frozen"]) is frozenset)


def test_a_bytearray_is_read_as_bytes() -> None:
    out = read(pickle.dumps([bytearray(b"ab")], protocol=5))
    assert out == [b"ab"] and type(out[0]) is bytes


def test_protocol_0_bools_are_bools() -> None:
    out = read(b"(I01\nI00\nI5\nl.")
    assert out == [True, False, 5] and [type(v) for v in out] == [bool, bool, int]


def test_dict_tuple_and_list_opcodes_with_marks() -> None:
    assert read(b"(I1\nI2\nd.") == {1: 2}
    assert read(b"(K\x01K\x02K\x03K\x04K\x05K\x06d.") == {1: 2, 3: 4, 5: 6}
    assert read(b"(I1\nI2\nt.") == (1, 2)
    assert read(b"(I1\nI2\nl.") == [1, 2]
    assert read(b"I3\nI4\n\x85\x86.") == (3, (4,))  # TUPLE1, TUPLE2
    assert read(P2 + b"K\x01K\x02K\x03\x87.") == (1, 2, 3)
    assert read(b"]q\x00(K\x01K\x02e.") == [1, 2]  # APPENDS
    assert read(b"}(K\x01K\x02K\x03K\x04u.") == {1: 2, 3: 4}  # SETITEMS
    assert read(b"}K\x01K\x02s.") == {1: 2}  # SETITEM: the key below the value
    assert read(b"\x80\x04\x8f(K\x01K\x02\x90.") == {1, 2}  # EMPTY_SET + ADDITEMS
    assert read(b"\x80\x04(K\x01K\x02\x91.") == frozenset({1, 2})
    assert read(b")N\x88\x89\x87.") == (None, True, False)
    assert read(b")\x85.") == ((),)


def test_pop_drops_a_value_or_a_bare_mark_and_dup_copies() -> None:
    assert read(b"K\x01K\x020.") == 1  # POP
    assert read(b"]K\x01(0a.") == [1]  # POP of a bare MARK leaves the list's APPEND working
    assert read(b"K\x07(K\x01K\x021.") == 7  # POP_MARK
    assert read(b"K\x012\x86.") == (1, 1)  # DUP


@pytest.mark.parametrize("data", [
    b"K\x07p3\nK\x08p4\n0g3\n\x86.",  # PUT / GET with a text index
    b"K\x07q\x05K\x08r\x06\x00\x00\x00h\x05j\x06\x00\x00\x00\x87.",  # BINPUT, LONG_BINPUT, BINGET, LONG_BINGET
    b"\x80\x04K\x07\x94K\x08\x94h\x00h\x01\x86\x86.",  # MEMOIZE numbers 0, 1, ...
    b"\x80\x04K\x07\x94(K\x08\x94h\x01h\x00t.",  # MEMOIZE counts entries, not the stack
])
def test_the_memo_gives_back_what_was_put_as_pickle_does(data: bytes) -> None:
    assert read(data) == pickle.loads(data)


# ---------------------------------------------------------------------- names and calls

def test_allowed_names_are_markers_the_rules_call() -> None:
    assert read(b"cm\nf\n(K\x01tR.") == ("called", "m.f", (1,))
    assert read(b"\x80\x04\x8c\x01m\x8c\x01f\x93K\x02\x85R.") == ("called", "m.f", (2,))  # STACK_GLOBAL
    assert read(P2 + b"cm\nf\n)\x81.") == ("called", "m.f", ())  # NEWOBJ


def test_a_global_name_is_all_of_its_second_line() -> None:
    rules = Rules(globals=frozenset({("m", "f g")}), reduce=reduce)
    assert read(b"cm\nf g\n)R.", rules) == ("called", "m.f g", ())
    refused(b"cm\nf g\n)R.", r"^the pickle asks for m\.f g ")


def test_names_go_through_the_alias_before_the_check() -> None:
    rules = Rules(globals=frozenset({("m", "f")}), reduce=reduce, alias=lambda module, name: ("m", name))
    assert read(b"cold.place\nf\n)R.", rules) == ("called", "m.f", ())
    refused(b"cold.place\nf\n)R.", r"^the pickle asks for old\.place\.f \(at byte 0\)$")


@pytest.mark.parametrize(("data", "message"), [
    (b"cos\nsystem\n.", r"^the pickle asks for os\.system \(at byte 0\)$"),
    (b"cm\nh\n.", r"^the pickle asks for m\.h "),
    (b"cm\nf\n.", r"^m\.f is a name, not a value"),
    (b"(cm\nf\nl.", r"^m\.f is a name, not a value"),
    (b"((cm\nf\nll.", r"^m\.f is a name, not a value"),
    (b"Vx\n)R.", r"^the pickle calls a str, not an allowed name \(at byte 4\)$"),
    (b"cm\nf\n]R.", r"^m\.f is called with a list instead of an argument tuple"),
    (b"cm\nf\n]\x81.", r"^m\.f is called with a list instead of an argument tuple"),
    (b"K\x01)\x81.", r"^the pickle calls a int, not an allowed name"),
])
def test_other_names_and_calls_are_refused(data: bytes, message: str) -> None:
    refused(data, message)


def test_stack_global_needs_two_strings() -> None:
    refused(b"\x80\x04K\x01\x8c\x01f\x93.", "^STACK_GLOBAL needs two strings", DamagedPickleError)
    refused(b"\x80\x04\x8c\x01mK\x01\x93.", "^STACK_GLOBAL needs two strings", DamagedPickleError)


def test_build_sets_a_pending_object_once_and_it_is_used_only_after() -> None:
    assert read(b"cm\ng\n)RK\x05b.") == ("box", 5)
    assert read(b"(cm\ng\n)RK\x05bl.") == [("box", 5)]
    refused(b"cm\ng\n)RK\x05bK\x06b.", r"^the pickle sets the state of a box twice")
    refused(b"(cm\ng\n)Rl.", r"^a box is used before its state was set \(BUILD\)")
    refused(b"cm\ng\n)R.", r"^a box is used before its state was set")
    refused(b"]cm\ng\n)Ra.", r"^a box is used before its state was set")


def test_build_on_a_dict_drops_its_attributes_and_is_refused_on_other_values() -> None:
    assert read(b"}}(K\x01K\x02db.") == {}
    assert read(b"}Nb.") == {}
    refused(b"}K\x01b.", r"^the pickle sets the state of a dict \(BUILD\), which plain data never needs")
    refused(b"]}b.", r"^the pickle sets the state of a list \(BUILD\)")
    refused(b"}]b.", r"^the pickle sets the state of a dict \(BUILD\)")


def test_persistent_ids_go_to_the_rules_or_are_refused() -> None:
    rules = Rules(globals=frozenset(), reduce=reduce, persistent=lambda pid: ("outside", pid))
    assert read(b"Pkey\n.", rules) == ("outside", "key")
    assert read(P2 + b"K\x07Q.", rules) == ("outside", 7)
    refused(b"Pkey\n.", r"^the pickle refers to outside objects \(persistent ids\)")
    refused(P2 + b"K\x07Q.", r"^the pickle refers to outside objects")


@pytest.mark.parametrize(("data", "opcode"), [(b"(Vx\nios\nsystem\n.", "INST"), (P2 + b"\x82\x01.", "EXT1"),
                                              (b"\x80\x05\x97.", "NEXT_BUFFER")])
def test_opcodes_plain_data_never_needs_are_refused_by_name(data: bytes, opcode: str) -> None:
    refused(data, rf"^the pickle uses the opcode {opcode}, which plain data never needs")


# ---------------------------------------------------------------------- keys and containers

@pytest.mark.parametrize("data", [b"}]K\x01s.", b"(]K\x01d.", b"}((K\x01\x85\x85K\x01s.", b"\x80\x04\x8f(]\x90.",
                                  b"\x80\x04(]\x91.", b"}(]K\x01u."])
def test_keys_other_than_scalars_and_flat_tuples_are_refused(data: bytes) -> None:
    refused(data, r"^a dict key or set item is a (list|tuple); plain data keys are strings, numbers or flat tuples")


@pytest.mark.parametrize(("data", "message"), [
    (b")K\x01a.", r"^an opcode adds items to a tuple, expected a list"),
    (b"}K\x01a.", r"^an opcode adds items to a dict, expected a list"),
    (b"]K\x01K\x02s.", r"^an opcode adds items to a list, expected a dict"),
    (b"\x80\x04](K\x01\x90.", r"^an opcode adds items to a list, expected a set"),
    (b")(K\x01e.", r"^an opcode adds items to a tuple, expected a list"),
])
def test_items_go_only_into_their_kind_of_container(data: bytes, message: str) -> None:
    refused(data, message, DamagedPickleError)


@pytest.mark.parametrize(("data", "message"), [
    (b"}(K\x01u.", "^SETITEMS with an odd number of values"),
    (b"(K\x01d.", "^DICT with an odd number of values"),
    (b"a.", "^an opcode needs a value but the stack is empty"),
    (b"K\x01(a.", "^an opcode needs a value but the stack is empty"),  # the value under a MARK is out of reach
    (b"K\x01(2.", "^an opcode needs a value but the stack is empty"),
    (b"K\x01(\x85.", "^an opcode needs a value but the stack is empty"),  # TUPLE1 may not reach under a MARK
    (b"2.", "^an opcode needs a value but the stack is empty"),
    (b"K\x01(q\x00.", "^an opcode needs a value but the stack is empty"),
    (b"l.", "^an opcode needs a MARK that was never set"),
    (b"g5\n.", "^the memo has no entry 5"),
    (b"K\x01p-1\n.", "^memo index -1"),
])
def test_broken_streams_are_damage(data: bytes, message: str) -> None:
    refused(data, message, DamagedPickleError)


def test_damage_says_what_broke_and_near_which_byte() -> None:
    refused(b"K\x01K\x02K\x03a.", r"^an opcode adds items to a int, expected a list \(at byte 6\)$",
            DamagedPickleError)
    refused(b"I12x\n.", r"^ValueError: .* \(near byte 0\)$", DamagedPickleError)
    refused(b"K\x01K\x02\xff", r"^ValueError: .*opcode b'\\xff' unknown \(near byte 2\)$", DamagedPickleError)
    refused(b"K\x01", r"^ValueError: .*STOP \(near byte 0\)$", DamagedPickleError)  # pickletools sees the end
    refused(b"", r"^ValueError: .*STOP \(near byte 0\)$", DamagedPickleError)


# ---------------------------------------------------------------------- the finished value

def nested(depth: int) -> bytes:
    """``depth`` lists, each holding the next (the innermost empty)."""
    return b"]" * depth + b"a" * (depth - 1) + b"."


def test_containers_may_nest_max_depth_deep_and_no_deeper() -> None:
    value = read(nested(pickledata.MAX_DEPTH))
    depth = 0
    while value is not None:
        depth, value = depth + 1, (value[0] if value else None)
    assert depth == pickledata.MAX_DEPTH
    refused(nested(pickledata.MAX_DEPTH + 1), rf"^containers nest more than {pickledata.MAX_DEPTH} deep")


def test_every_item_is_checked_not_only_the_last_walked() -> None:
    deep_first = b"(" + nested(pickledata.MAX_DEPTH)[:-1] + b"]l."  # [deep, []]: [] is walked first
    refused(deep_first, "nest more than")
    refused(P2 + b"(]q\x00h\x00a]l.", "a cycle")  # [cycle, []]
    refused(b"((cm\nf\nt]l.", r"^m\.f is a name, not a value")


def test_a_dicts_values_count_as_depth() -> None:
    refused(b"}K\x01" + nested(pickledata.MAX_DEPTH)[:-1] + b"s.", "nest more than")
    assert len(read(b"}K\x01" + nested(pickledata.MAX_DEPTH - 1)[:-1] + b"s.")) == 1


def test_the_value_may_hold_max_nodes_values_counted_per_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pickledata, "MAX_NODES", 7)
    assert read(pickle.dumps([1, 2, 3, 4, 5, 6])) == [1, 2, 3, 4, 5, 6]  # the list and its 6 items: 7
    refused(pickle.dumps([1, 2, 3, 4, 5, 6, 7]), r"^the value holds more than 7 items once shared parts are counted")
    shared = [1, 2]
    assert read(pickle.dumps([shared, shared])) == [[1, 2], [1, 2]]  # 1 + 2 * (1 + 2)
    refused(pickle.dumps([shared, shared, 0]), "counted per use")
    refused(pickle.dumps({"a": [1, 2], "b": [3]}), "counted per use")  # 1 + 2 keys + 3 + 2 = 8
    assert read(pickle.dumps({"a": [1, 2], "b": 3})) == {"a": [1, 2], "b": 3}  # 1 + 2 keys + 3 + 1 = 7


def test_a_shared_part_is_walked_once_and_a_cycle_is_refused() -> None:
    leaf: list = []
    for _ in range(60):
        leaf = [leaf, leaf]  # 2**60 lists once shared parts are counted per use
    refused(pickle.dumps(leaf), "counted per use")
    refused(P2 + b"]q\x00(h\x00h\x00e.", r"^a container holds itself \(a cycle\)")
    refused(P2 + b"}q\x00K\x01]q\x01h\x00as.", "a cycle")
    cyclic_set = P2 + b"]q\x00]q\x01h\x00ah\x01a."
    refused(cyclic_set, "a cycle")


def test_a_global_is_refused_wherever_it_ends_up() -> None:
    refused(b"(Vk\ncm\nf\nd.", r"^m\.f is a name, not a value")
    refused(b"(cm\nf\nVv\nd.", r"^a dict key or set item is a Global")
    refused(b"((cm\nf\ntt.", r"^m\.f is a name, not a value")
    refused(b"cm\nf\n(cm\nf\ntR.", r"^m\.f is a name, not a value")  # an argument may be a name, a result not
