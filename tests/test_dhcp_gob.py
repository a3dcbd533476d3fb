"""The dhcp RPC's codec, pure: Go's gob (``dhcp.gob``), the RPC's types
(``dhcp.messages``) and the daemon's flags. What Go's own binaries send is
checked in tests/test_dhcp.py (bytes captured from them at run time); here the
format as encoding/gob's documentation spells it, and round trips."""

from __future__ import annotations

import io
import ipaddress
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cni_plugins_builtin.dhcp import gob
from cni_plugins_builtin.dhcp.daemon import parse_flags
from cni_plugins_builtin.dhcp.gob import (
    BOOL,
    BYTES,
    COMPLEX,
    FLOAT,
    INT,
    STRING,
    UINT,
    Array,
    Decoder,
    Encoder,
    GobError,
    Map,
    Marshaled,
    Slice,
    Struct,
)
from cni_plugins_builtin.dhcp.messages import CMD_ARGS, RESULT, result_from_gob, result_to_gob


def uint_bytes(value: int) -> bytes:
    out = bytearray()
    gob.put_uint(out, value)
    return bytes(out)


def int_bytes(value: int) -> bytes:
    out = bytearray()
    gob.put_int(out, value)
    return bytes(out)


def test_integers_as_the_documentation_spells_them() -> None:
    assert uint_bytes(0) == b"\x00" and uint_bytes(7) == b"\x07" and uint_bytes(256) == bytes.fromhex("fe0100")
    assert int_bytes(-129) == bytes.fromhex("fe0101") and int_bytes(22) == b"\x2c"
    assert uint_bytes(gob._float_bits(17.0)) == bytes.fromhex("fe3140")
    assert uint_bytes(2**64 - 1) == b"\xf8" + b"\xff" * 8
    with pytest.raises(GobError):
        uint_bytes(2**64)


def test_the_documentations_point() -> None:
    """encoding/gob doc.go's worked example, byte for byte: the descriptor, then the value,
    and the second time only the value."""
    point = Struct("Point", (("X", INT), ("Y", INT)))
    encoder = Encoder()
    first = encoder.encode({"X": 22, "Y": 33}, point)
    assert first.hex() == ("1fff8103010105506f696e7401ff82000102010158010400010159010400000007ff82012c014200")
    assert encoder.encode({"X": 22, "Y": 33}, point).hex() == "07ff82012c014200"
    decoder = Decoder()
    stream = io.BytesIO(first + first[-8:])
    assert decoder.read(stream.read) == (65, {"X": 22, "Y": 33})
    assert decoder.read(stream.read) == (65, {"X": 22, "Y": 33})
    with pytest.raises(EOFError):
        decoder.read(stream.read)


# -- round trips -------------------------------------------------------------------------

names = st.from_regex(r"[A-Z][A-Za-z0-9]{0,6}", fullmatch=True)
scalars = st.sampled_from([
    (BOOL, st.booleans()),
    (INT, st.integers(-(2**63), 2**63 - 1)),
    (UINT, st.integers(0, 2**64 - 1)),
    (FLOAT, st.floats(allow_nan=False)),
    (COMPLEX, st.complex_numbers(allow_nan=False)),
    (BYTES, st.binary(max_size=40)),
    (STRING, st.text(max_size=20)),
    (Marshaled("Time"), st.binary(max_size=16)),
])


def composite(inner: st.SearchStrategy) -> st.SearchStrategy:
    def slice_of(pair):
        return Slice(pair[0]), st.lists(pair[1], max_size=4)

    def array_of(pair, length):
        return Array(pair[0], length), st.lists(pair[1], min_size=length, max_size=length)

    def map_of(pair, key):
        return Map(key[0], pair[0]), st.dictionaries(key[1], pair[1], max_size=3)

    def struct_of(name, fields):
        gotype = Struct(name, tuple((field, pair[0]) for field, pair in fields))
        values = st.fixed_dictionaries({}, optional={field: st.one_of(st.none(), pair[1]) if not
                                                     isinstance(pair[0], (Struct,)) else pair[1]
                                                     for field, pair in fields})
        return gotype, values

    keys = st.sampled_from([(STRING, st.text(max_size=5)), (INT, st.integers(-1000, 1000))])
    return st.one_of(
        inner.map(slice_of),
        st.builds(array_of, inner, st.integers(0, 3)),
        st.builds(map_of, inner, keys),
        st.builds(struct_of, names, st.lists(st.tuples(names, inner), min_size=1, max_size=4,
                                             unique_by=lambda field: field[0])),
    )


types_and_values = st.recursive(scalars, composite, max_leaves=8)


def sent(gotype: gob.GoType, value: object) -> object:
    """What a receiver gets: struct fields with zero values left out, as Go's encoder."""
    if isinstance(gotype, Struct):
        value = value or {}
        return {name: sent(field, value[name]) for name, field in gotype.fields  # type: ignore[index]
                if not Encoder.is_zero(field, value.get(name))}  # type: ignore[union-attr]
    if isinstance(gotype, (Slice, Array)):
        return [sent(gotype.elem, item) for item in value or []]  # type: ignore[union-attr]
    if isinstance(gotype, Map):
        return {key: sent(gotype.elem, item) for key, item in (value or {}).items()}  # type: ignore[union-attr]
    if isinstance(gotype, Marshaled):
        return bytes(value or b"")  # type: ignore[arg-type]
    return value


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(types_and_values.flatmap(lambda pair: st.tuples(st.just(pair[0]), st.lists(pair[1], min_size=1,
                                                                                   max_size=3))))
def test_round_trip(case) -> None:
    """Values of any shape the RPC could carry come back as sent (zero struct fields left
    out, as Go leaves them out), over one stream; re-encoded with the type the stream
    described, they give the same bytes."""
    gotype, values = case
    encoder, decoder = Encoder(), Decoder()
    stream = b"".join(encoder.encode(value, gotype) for value in values)
    reader = io.BytesIO(stream)
    decoded = [decoder.read(reader.read) for _ in values]
    assert reader.read() == b""
    for (type_id, value), original in zip(decoded, values):
        expected = sent(gotype, original)
        assert value == expected or (isinstance(expected, float) and math.isnan(expected))
    again = Encoder()
    assert b"".join(again.encode(value, decoder.go_type(type_id)) for type_id, value in decoded) == stream


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_is_an_error_not_a_crash(data: bytes) -> None:
    decoder = Decoder()
    reader = io.BytesIO(data)
    try:
        while True:
            decoder.read(reader.read)
    except (GobError, EOFError):
        pass


def test_a_value_that_does_not_fit_leaves_the_stream_as_it_was() -> None:
    encoder, decoder = Encoder(), Decoder()
    with pytest.raises(GobError):
        encoder.encode({"ContainerID": 5}, CMD_ARGS)
    with pytest.raises(GobError, match="no field"):
        encoder.encode({"Nope": "x"}, CMD_ARGS)
    stream = io.BytesIO(encoder.encode({"ContainerID": "c", "StdinData": b"{}"}, CMD_ARGS))
    assert decoder.read(stream.read) == (65, {"ContainerID": "c", "StdinData": b"{}"})


# -- current.Result <-> CNI JSON ---------------------------------------------------------------


def test_result_as_go_sends_it() -> None:
    """net.IP and net.IPMask as their bytes (not MarshalText's text: gob never calls it),
    Route's later fields by name."""
    result = {"cniVersion": "1.1.0", "ips": [{"address": "10.77.0.60/24", "gateway": "10.77.0.1"}],
              "routes": [{"dst": "0.0.0.0/0", "gw": "10.77.0.1", "priority": 7},
                         {"dst": "10.9.0.0/16", "gw": "0.0.0.0", "scope": 253}],
              "dns": {"nameservers": ["10.77.0.1"]}}
    value = result_to_gob(result)
    assert value["IPs"] == [{"Address": {"IP": bytes([10, 77, 0, 60]), "Mask": b"\xff\xff\xff\x00"},
                             "Gateway": bytes([10, 77, 0, 1])}]
    assert value["Routes"][1]["Scope"] == 253
    stream = io.BytesIO(Encoder().encode(value, RESULT))
    assert result_from_gob(Decoder().read(stream.read)[1]) == result


addresses = st.one_of(
    st.builds(lambda a, p: f"{ipaddress.IPv4Address(a)}/{p}", st.integers(0, 2**32 - 1), st.integers(0, 32)),
    st.builds(lambda a, p: f"{ipaddress.IPv6Address(a)}/{p}", st.integers(0, 2**128 - 1), st.integers(0, 128)))
ips = st.builds(lambda a: str(ipaddress.ip_interface(a).ip), addresses)
results = st.fixed_dictionaries({"cniVersion": st.just("1.1.0")}, optional={
    "ips": st.lists(st.fixed_dictionaries({"address": addresses}, optional={
        "gateway": ips, "interface": st.integers(1, 3)}), min_size=1, max_size=3),
    "routes": st.lists(st.fixed_dictionaries({"dst": addresses}, optional={
        "gw": ips, "mtu": st.integers(1, 9000), "advmss": st.integers(1, 9000), "priority": st.integers(1, 100),
        "table": st.integers(1, 255), "scope": st.integers(1, 255)}), min_size=1, max_size=3),
    "dns": st.fixed_dictionaries({}, optional={"nameservers": st.lists(ips, min_size=1, max_size=2),
                                               "domain": st.from_regex(r"[a-z]{1,8}", fullmatch=True)}).filter(bool),
    "interfaces": st.lists(st.fixed_dictionaries({"name": st.from_regex(r"[a-z]{1,6}[0-9]", fullmatch=True)},
                                                 optional={"mac": st.just("0a:58:0a:4d:00:02"),
                                                           "sandbox": st.just("/var/run/netns/x"),
                                                           "mtu": st.integers(1, 9000)}), min_size=1, max_size=2)})


@settings(max_examples=200, deadline=None)
@given(results)
def test_result_round_trip(result: dict) -> None:
    """Everything but pointers to zero (``interface: 0``, ``table: 0``): gob sends what a
    pointer points to and leaves zeros out, so Go's peers lose them too."""
    stream = io.BytesIO(Encoder().encode(result_to_gob(result), RESULT))
    assert result_from_gob(Decoder().read(stream.read)[1]) == result


# -- the daemon's flags, Go's syntax -------------------------------------------------------------


def test_the_reference_daemons_flags() -> None:
    assert parse_flags(["-socketpath", "/run/x.sock", "--timeout=5s", "-broadcast", "-resendmax", "1m2s",
                        "-hostprefix=/host", "-pidfile", "/run/p"]) == {
        "socketpath": "/run/x.sock", "timeout": "5s", "broadcast": "true", "resendmax": "1m2s",
        "hostprefix": "/host", "pidfile": "/run/p"}
    assert parse_flags(["-broadcast=false", "extra", "-timeout", "x"]) == {"broadcast": "false"}
    for argv, text in ((["-nope"], "flag provided but not defined: -nope"),
                       (["-timeout", "ten"], 'invalid value "ten" for flag -timeout: parse error'),
                       (["-socketpath"], "flag needs an argument: -socketpath")):
        with pytest.raises(ValueError, match=text):
            parse_flags(argv)
