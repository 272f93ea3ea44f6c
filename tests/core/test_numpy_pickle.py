"""hcm.core.numpy_pickle's checks, one form at a time: which dtypes, dtype states, shapes, data and
calls a pickle may give, what hcm builds from them, and what it refuses (and says) otherwise.

The round trips of real numpy pickles are in test_pickledata.py; these feed each reducer the
parts a hostile or odd file could hold, as hcm.core.pickledata would hand them over."""

from __future__ import annotations

import pickle
import re
from typing import Any

import numpy as np
import pytest

from hcm.core.numpy_pickle import (
    CODECS_ENCODE,
    DTYPE,
    EMPTY_BYTES,
    FROMBUFFER,
    MAX_DIMS,
    MAX_STRING_WIDTH,
    NDARRAY,
    NUMPY_RULES,
    ORDERED_DICT,
    RECONSTRUCT,
    SCALAR,
    ArrayPending,
    DtypePending,
    make_array,
    numpy_alias,
    plain_dtype,
    reduce_numpy,
)
from hcm.core.pickledata import Global, PickleDataError, read_data


def call(name: tuple[str, str], *args: Any) -> Any:
    return reduce_numpy(Global(*name), args)


def state_of(dtype: np.dtype) -> tuple:
    """The BUILD state numpy itself pickles for ``dtype``."""
    return dtype.__reduce__()[2]


def built_dtype(name: str, state: tuple) -> np.dtype:
    pending = call(DTYPE, name, False, True)
    pending.build(state)
    return pending.value


# ---------------------------------------------------------------------- dtype names

@pytest.mark.parametrize("name", ["b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8",
                                  "U1", "S1", "U7", "S7", f"U{MAX_STRING_WIDTH}", f"S{MAX_STRING_WIDTH}"])
def test_every_plain_kind_is_its_own_dtype(name: str) -> None:
    assert plain_dtype(name) == np.dtype(name)


@pytest.mark.parametrize("name", ["O8", "O4", "O"])
def test_object_names_are_the_object_dtype(name: str) -> None:
    assert plain_dtype(name) == np.dtype(object)


@pytest.mark.parametrize("name", ["b2", "i3", "i16", "u16", "f1", "f16", "c16", "U0", "S0",
                                  f"U{MAX_STRING_WIDTH + 1}", f"S{MAX_STRING_WIDTH + 1}", "V8", "M8", "O2",
                                  "xi8", "i8x", "f8 ", "<f8", "", "float64"])
def test_other_dtype_names_are_refused(name: str) -> None:
    with pytest.raises(PickleDataError, match=rf"^the dtype '{name}' is not one of the plain kinds"):
        plain_dtype(name)


@pytest.mark.parametrize("name", [8, b"f8", None])
def test_a_dtype_named_by_anything_but_text_is_refused(name: Any) -> None:
    with pytest.raises(PickleDataError, match=f"^a dtype named by a {type(name).__name__}$"):
        plain_dtype(name)


# ---------------------------------------------------------------------- dtype states

@pytest.mark.parametrize("name", ["f8", "i2", "u1", "b1", "U5", "S5", "O8"])
@pytest.mark.parametrize("order", ["<", ">"])
def test_numpys_own_dtype_states_build_that_dtype(name: str, order: str) -> None:
    dtype = np.dtype(name).newbyteorder(order) if name not in ("O8",) else np.dtype(object)
    got = built_dtype(name, state_of(dtype))
    assert got == dtype and got.byteorder == dtype.byteorder and got.str == dtype.str


@pytest.mark.parametrize("name", ["f8", "i4", "U3"])
def test_the_byte_order_in_the_state_is_the_one_the_dtype_gets(name: str) -> None:
    plain = state_of(np.dtype(name))
    big = built_dtype(name, (plain[0], ">", *plain[2:]))
    little = built_dtype(name, (plain[0], "<", *plain[2:]))
    assert big.str[0] == ">" and little.str[0] == "<"
    assert built_dtype(name, (plain[0], "=", *plain[2:])) == np.dtype(name)
    assert built_dtype(name, (plain[0], "|", *plain[2:])) == np.dtype(name)


@pytest.mark.parametrize("name", ["u1", "b1", "S4", "i1"])
def test_single_byte_and_bytes_dtypes_have_no_byte_order(name: str) -> None:
    plain = state_of(np.dtype(name))
    for order in "<>|=":
        got = built_dtype(name, (plain[0], order, *plain[2:]))
        assert got == np.dtype(name) and got.byteorder == "|"


def test_the_state_version_4_and_a_ninth_empty_metadata_field_are_read() -> None:
    plain = state_of(np.dtype("f8"))
    assert built_dtype("f8", (4, *plain[1:])) == np.dtype("f8")
    assert built_dtype("f8", (*plain, None)) == np.dtype("f8")


@pytest.mark.parametrize("state", [None, [3, "<", None, None, None, -1, -1, 0], (3, "<", None, None, None, -1, -1),
                                   (3, "<", None, None, None, -1, -1, 0, None, None),
                                   (2, "<", None, None, None, -1, -1, 0), (5, "<", None, None, None, -1, -1, 0)])
def test_a_state_not_shaped_like_numpys_is_refused(state: Any) -> None:
    with pytest.raises(PickleDataError, match=r"^the state of dtype float64 is not numpy's \(3, byteorder"):
        built_dtype("f8", state)


@pytest.mark.parametrize("slot", [2, 3, 4, 8])
def test_fields_sub_arrays_and_metadata_are_refused_each_alone(slot: int) -> None:
    state = [*state_of(np.dtype("f8")), None]
    state[slot] = ("a",) if slot != 8 else {"unit": "s"}
    with pytest.raises(PickleDataError, match="^dtype float64 is given fields, a sub-array or metadata"):
        built_dtype("f8", tuple(state))


OWN_LAYOUT = {"f8": (-1, -1, 0), "U5": (20, 4, 8), "S5": (5, 1, 0)}  # as numpy pickles them: see the test below


def test_the_own_layouts_are_numpys() -> None:
    for name, own in OWN_LAYOUT.items():
        assert state_of(np.dtype(name))[5:] == own


@pytest.mark.parametrize(("name", "layout"), [
    ("f8", (8, -1, 0)), ("f8", (-1, 8, 0)), ("f8", (-1, -1, 1)), ("f8", (-1, -1, 63)),
    ("U5", (-1, -1, 8)), ("U5", (20, 1, 8)), ("U5", (5, 4, 8)), ("U5", (20, 4, 0)),
    ("S5", (5, 4, 0)), ("S5", (4, 1, 0)),
])
def test_a_size_alignment_or_flags_other_than_the_dtypes_own_is_refused(name: str, layout: tuple) -> None:
    dtype = re.escape(str(np.dtype(name)))
    with pytest.raises(PickleDataError, match=rf"^dtype {dtype} is given a size, alignment or flags "
                                              rf"{re.escape(str(layout))} other than its own "
                                              rf"{re.escape(str(OWN_LAYOUT[name]))}$"):
        built_dtype(name, (3, "|", None, None, None, *layout))


@pytest.mark.parametrize("order", ["!", "", "<>", None, "x"])
def test_an_unknown_byte_order_is_refused(order: Any) -> None:
    with pytest.raises(PickleDataError, match=rf"^dtype float64 has the byte order {re_repr(order)}"):
        built_dtype("f8", (3, order, None, None, None, -1, -1, 0))


def re_repr(value: Any) -> str:
    return re.escape(repr(value))


def test_dtype_is_called_only_as_numpy_calls_it() -> None:
    assert isinstance(call(DTYPE, "f8", False, True), DtypePending)
    for args in [("f8",), ("f8", False), ("f8", False, True, 0), ("f8", 0, True), ("f8", False, 1), ("f8", True, True),
                 ("f8", False, False)]:
        with pytest.raises(PickleDataError, match=rf"^dtype is called with {len(args)} arguments other than "
                                                  rf"\(name, False, True\)"):
            call(DTYPE, *args)


def test_dtype_checks_its_name_when_called() -> None:
    with pytest.raises(PickleDataError, match="^the dtype 'V8' is not one of the plain kinds"):
        call(DTYPE, "V8", False, True)


# ---------------------------------------------------------------------- arrays

def test_make_array_gives_the_values_shape_order_and_dtype_of_the_bytes() -> None:
    values = np.arange(6, dtype=">i4").reshape(2, 3)
    c = make_array(values.tobytes(order="C"), values.dtype, (2, 3), "C")
    f = make_array(values.tobytes(order="F"), values.dtype, (2, 3), "F")
    for got in (c, f):
        assert got.dtype.str == ">i4" and got.shape == (2, 3) and np.array_equal(got, values)
        assert not got.flags.writeable
    assert c.flags.c_contiguous and f.flags.f_contiguous and not f.flags.c_contiguous


def test_an_int_shape_is_one_dimension_and_empty_shapes_need_no_data() -> None:
    assert np.array_equal(make_array(b"\x01\x02\x03", np.dtype("u1"), 3, "C"), [1, 2, 3])
    assert make_array(b"", np.dtype("f8"), (0, 7), "C").shape == (0, 7)
    assert make_array(b"\x00" * 8, np.dtype("f8"), (), "C").shape == ()
    deepest = make_array(b"\x05", np.dtype("u1"), (1,) * MAX_DIMS, "C")
    assert deepest.ndim == MAX_DIMS and deepest.item() == 5


@pytest.mark.parametrize("shape", [(1,) * (MAX_DIMS + 1), (2, -1), -1, (True,), True, [2], (2.0,), "2", None])
def test_shapes_other_than_a_few_non_negative_ints_are_refused(shape: Any) -> None:
    shown = (shape,) if type(shape) is int else shape  # one int is the length of one dimension
    with pytest.raises(PickleDataError, match=rf"^an array shape {re_repr(shown)} is not a tuple of at most {MAX_DIMS} "
                                              r"non-negative ints"):
        make_array(b"", np.dtype("u1"), shape, "C")


def test_text_data_is_latin1_bytes_as_python_2_wrote_them() -> None:
    got = make_array("\x00\xff\x7f", np.dtype("u1"), (3,), "C")
    assert got.tolist() == [0, 255, 127]


@pytest.mark.parametrize("raw", [[1, 2], bytearray(b"\x00\x00"), memoryview(b"\x00\x00"), None, 0])
def test_data_other_than_bytes_is_refused(raw: Any) -> None:
    with pytest.raises(PickleDataError, match=f"^an array's data is a {type(raw).__name__}, expected bytes"):
        make_array(raw, np.dtype("u2"), (1,), "C")


@pytest.mark.parametrize("length", [0, 15, 17, 48])
def test_data_of_another_length_than_shape_times_itemsize_is_refused(length: int) -> None:
    with pytest.raises(PickleDataError, match=rf"^an array of shape \(2, 2\) and dtype int32 needs 16 bytes of data; "
                                              rf"the file gives {length}$"):
        make_array(b"\x00" * length, np.dtype("i4"), (2, 2), "C")


@pytest.mark.parametrize("dtype", ["f8", None, float, np.float64])
def test_a_dtype_that_is_not_a_built_dtype_is_refused(dtype: Any) -> None:
    with pytest.raises(PickleDataError, match=f"^an array's dtype is a {type(dtype).__name__}$"):
        make_array(b"\x00" * 8, dtype, (1,), "C")


@pytest.mark.parametrize("order", ["A", "K", "c", None, True])
def test_a_memory_order_other_than_c_or_f_is_refused(order: Any) -> None:
    with pytest.raises(PickleDataError, match=rf"^an array's memory order is {re_repr(order)}"):
        make_array(b"\x00", np.dtype("u1"), (1,), order)


def test_object_arrays_hold_the_inert_values_in_place() -> None:
    values = ["a", b"b", None, 3, 2.5, True, "f"]
    got = make_array(values[:6], np.dtype(object), (2, 3), "C")
    assert got.dtype == object and got.shape == (2, 3) and got.tolist() == [["a", b"b", None], [3, 2.5, True]]
    fortran = make_array(values[:6], np.dtype(object), (2, 3), "F")
    assert fortran.tolist() == [["a", None, 2.5], [b"b", 3, True]]
    assert make_array([], np.dtype(object), (0,), "C").shape == (0,)
    zero_dim = make_array(["x"], np.dtype(object), (), "C")
    assert zero_dim.shape == () and zero_dim.item() == "x"


@pytest.mark.parametrize(("raw", "said"), [
    (["a", ["b"]], "2 values of type list"), (["a", {}, np.float64(1.0), {}], "4 values of type dict"),
    ([object(), np.zeros(1)], "2 values of type ndarray, object"), (["a"], "1 values$"), (["a"] * 3, "3 values$"),
    (("a", "b"), "a tuple"), (b"ab", "a bytes"),
])
def test_object_arrays_of_anything_else_are_refused_and_said(raw: Any, said: str) -> None:
    with pytest.raises(PickleDataError, match=rf"^an object array of shape \(2,\) must hold 2 strings or numbers; "
                                              rf"it holds {said}"):
        make_array(raw, np.dtype(object), (2,), "C")


def test_array_states_with_or_without_the_version_build_the_array() -> None:
    dtype = np.dtype("<i2")
    for state in [(1, (2,), dtype, False, b"\x01\x00\x02\x00"), ((2,), dtype, False, b"\x01\x00\x02\x00")]:
        pending = call(RECONSTRUCT, Global(*NDARRAY), (0,), b"b")
        assert isinstance(pending, ArrayPending)
        pending.build(state)
        assert pending.value.tolist() == [1, 2] and pending.value.dtype == dtype
    pending = call(RECONSTRUCT, Global(*NDARRAY), (0,), b"b")
    pending.build((1, (2, 2), dtype, True, np.arange(4, dtype=dtype).tobytes()))
    assert pending.value.tolist() == [[0, 2], [1, 3]]


@pytest.mark.parametrize("state", [
    (2, (2,), np.dtype("u1"), False, b"\x00\x00"), ((2,), np.dtype("u1"), False), [(2,), np.dtype("u1"), False, b"ab"],
    (1, 1, (2,), np.dtype("u1"), False, b"ab"), None,
])
def test_array_states_of_another_form_are_refused(state: Any) -> None:
    with pytest.raises(PickleDataError, match=r"^the state of an array is not numpy's \(1, shape, dtype, fortran, "
                                              r"data\) tuple$"):
        ArrayPending().build(state)


@pytest.mark.parametrize("flag", [0, 1, None, "F"])
def test_the_fortran_flag_must_be_a_bool(flag: Any) -> None:
    with pytest.raises(PickleDataError, match=f"^an array's order flag is a {type(flag).__name__}$"):
        ArrayPending().build((1, (1,), np.dtype("u1"), flag, b"\x00"))


@pytest.mark.parametrize("args", [(Global("numpy", "matrix"), (0,), b"b"), (Global(*NDARRAY), (0,)),
                                  (Global(*NDARRAY), (0,), b"b", 1), ("numpy.ndarray", (0,), b"b")])
def test_reconstruct_makes_only_ndarrays(args: tuple) -> None:
    with pytest.raises(PickleDataError, match="^_reconstruct is asked for something other than an ndarray"):
        call(RECONSTRUCT, *args)


# ---------------------------------------------------------------------- scalars and protocol 5

def test_a_scalar_is_the_value_of_its_bytes() -> None:
    got = call(SCALAR, np.dtype(">f4"), np.float32(1.5).byteswap().tobytes())
    assert type(got) is np.float32 and got == 1.5
    assert call(SCALAR, np.dtype("i8"), "\xfb" + "\xff" * 7) == -5  # Python 2's text bytes


@pytest.mark.parametrize("args", [(np.dtype("f4"),), (np.dtype("f4"), b"\x00" * 4, 0), ("f4", b"\x00" * 4),
                                  (np.dtype(object), [1])])
def test_a_scalar_must_be_a_plain_dtype_and_its_bytes(args: tuple) -> None:
    with pytest.raises(PickleDataError, match=r"^a numpy scalar is not \(plain dtype, bytes\)"):
        call(SCALAR, *args)


def test_a_protocol_5_buffer_is_the_array_it_describes() -> None:
    got = call(FROMBUFFER, np.arange(6, dtype="<u2").tobytes(), np.dtype("<u2"), (3, 2), "F")
    assert got.tolist() == [[0, 3], [1, 4], [2, 5]] and not got.flags.writeable


@pytest.mark.parametrize("args", [(b"", np.dtype("u1"), (0,)), (b"", np.dtype("u1"), (0,), "C", 1),
                                  (b"", "u1", (0,), "C"), ([], np.dtype(object), (0,), "C")])
def test_a_protocol_5_buffer_must_be_bytes_a_plain_dtype_a_shape_and_an_order(args: tuple) -> None:
    with pytest.raises(PickleDataError, match=r"^a protocol-5 array is not \(bytes, plain dtype, shape, order\)"):
        call(FROMBUFFER, *args)


# ---------------------------------------------------------------------- the small helpers

@pytest.mark.parametrize("encoding", ["latin1", "latin-1"])
def test_codecs_encode_gives_the_latin1_bytes(encoding: str) -> None:
    assert call(CODECS_ENCODE, "a\xe9\xff", encoding) == b"a\xe9\xff"


@pytest.mark.parametrize("args", [("a",), ("a", "latin1", "strict"), (b"a", "latin1"), ("a", "utf-8"), ("a", "LATIN1")])
def test_codecs_encode_only_encodes_text_to_latin1(args: tuple) -> None:
    with pytest.raises(PickleDataError, match=r"^_codecs.encode is called with anything but \(text, 'latin1'\)"):
        call(CODECS_ENCODE, *args)


def test_empty_bytes_and_ordered_dicts_take_no_arguments() -> None:
    assert call(EMPTY_BYTES) == b"" and type(call(EMPTY_BYTES)) is bytes
    assert call(ORDERED_DICT) == {} and type(call(ORDERED_DICT)) is dict
    with pytest.raises(PickleDataError, match="^bytes is called with arguments$"):
        call(EMPTY_BYTES, 3)
    with pytest.raises(PickleDataError, match="^OrderedDict is called with arguments$"):
        call(ORDERED_DICT, [("a", 1)])


def test_names_hcm_does_not_build_are_refused_by_name() -> None:
    with pytest.raises(PickleDataError, match=r"^numpy\.ndarray is not something hcm builds$"):
        call(NDARRAY)
    with pytest.raises(PickleDataError, match=r"^os\.system is not something hcm builds$"):
        call(("os", "system"), "true")


@pytest.mark.parametrize(("written", "read"), [
    (("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")),
    (("numpy.core", "x"), ("numpy._core", "x")), (("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric",
                                                                                          "_frombuffer")),
    (("__builtin__", "bytes"), ("builtins", "bytes")), (("numpy.corex", "y"), ("numpy.corex", "y")),
    (("numpy", "dtype"), ("numpy", "dtype")), (("xnumpy.core", "y"), ("xnumpy.core", "y")),
    (("__builtin__x", "y"), ("__builtin__x", "y")),
])
def test_numpy_1_and_python_2_module_names_are_read_as_todays(written: tuple, read: tuple) -> None:
    assert numpy_alias(*written) == read


def test_the_rules_allow_exactly_the_built_names_and_ndarray() -> None:
    assert NUMPY_RULES.globals == {RECONSTRUCT, SCALAR, FROMBUFFER, DTYPE, CODECS_ENCODE, ORDERED_DICT, EMPTY_BYTES,
                                   NDARRAY}


@pytest.mark.parametrize("protocol", [0, 1, 2])
def test_python_2_style_pickles_of_old_protocols_read_back(protocol: int) -> None:
    value = {"text": np.array(["\xe9t\xe9", "b"]), "big": np.arange(3, dtype=">f8"),
             "bytes": np.array([b"\xff", b""]), "scalar": np.int16(-3)}
    data = pickle.dumps(value, protocol=protocol).replace(b"numpy._core", b"numpy.core")
    out = read_data(data, NUMPY_RULES)
    for key, expected in value.items():
        assert out[key].dtype == expected.dtype and np.array_equal(out[key], expected), key
