"""ber.py, the v1/v2c codec, checked against independent decoders and encoders: TShark on
the real captures, pysnmp/pyasn1 both ways, and fuzzed."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from helpers import DATA
from monbus.bridges.snmp.ber import (GET, GETBULK, GETNEXT, BerError, decode_oid,
                                     decode_response, encode_oid, encode_request)
from monbus.bridges.snmp.traps import decode_message

CAPTURES = ["netsnmp593_local_v1_v2c_v3_traps.pcap.tshark.json", "ndpi_snmp.pcap.tshark.json"]


def _frames():
    for name in CAPTURES:
        for p in json.loads((DATA / "snmp" / name).read_text()):
            layers = p["_source"]["layers"]
            pay = layers.get("udp", {}).get("udp.payload")
            if pay is not None and "snmp" in layers:
                yield name, layers["frame"]["frame.number"], \
                    bytes.fromhex(pay.replace(":", "")), layers["snmp"]


def test_every_captured_response_decodes_like_tshark_and_pysnmp():
    n = 0
    for name, num, payload, snmp in _frames():
        tree = snmp.get("snmp.data_tree", {})
        if "snmp.get_response_element" not in tree:
            continue
        elem = tree["snmp.get_response_element"]
        version, community, rid, es, ex, vbs = decode_response(payload)
        assert version == int(snmp["snmp.version"]) and community.decode() == \
            snmp["snmp.community"], num
        assert (rid, es, ex) == (int(elem["snmp.request_id"]), int(elem["snmp.error_status"]),
                                 int(elem["snmp.error_index"])), num
        # the varbinds, value for value, equal pyasn1's decoding (itself checked
        # against TShark in test_snmp_corpus.py)
        assert vbs == decode_message(payload)[3], (name, num)
        n += 1
    assert n >= 100


def test_requests_are_what_pysnmp_reads():
    """Our requests, decoded by pysnmp's own message classes."""
    from pyasn1.codec.ber import decoder
    from pysnmp.proto import api
    oids = [(1, 3, 6, 1, 2, 1, 1, 3, 0), (1, 3, 6, 1, 4, 1, 2021, 10, 1, 3, 4294967295),
            (2, 999, 3)]
    for ver, pdu in ((0, GET), (1, GETNEXT), (1, GETBULK)):
        raw = encode_request(ver, b"s3cret", pdu, 2 ** 31 - 1, oids, 0, 25)
        pmod = api.PROTOCOL_MODULES[ver]
        msg, rest = decoder.decode(raw, asn1Spec=pmod.Message())
        assert not rest
        assert bytes(pmod.apiMessage.get_community(msg)) == b"s3cret"
        p = pmod.apiMessage.get_pdu(msg)
        assert p.tagSet[0][2] == pdu & 0x1F
        assert int(pmod.apiPDU.get_request_id(p)) == 2 ** 31 - 1
        assert [tuple(o) for o, _ in pmod.apiPDU.get_varbinds(p)] == oids
        if pdu == GETBULK:
            assert int(pmod.apiBulkPDU.get_max_repetitions(p)) == 25


@pytest.mark.parametrize("data,problem", [
    (b"", "truncated TLV header"),
    (b"\x30\x80\x00\x00", "indefinite length"),
    (b"\x30\x03\x02\x01\x01\x00", "bytes after the message"),
    (bytes.fromhex("3006020101040561"), "runs past the end"),
    (bytes.fromhex("3006020103040000"), "version 3 is not v1/v2c"),
    (bytes.fromhex("300b020101040170a003020100"), "is not a Response"),
    (bytes.fromhex("3003040100"), "bad version field"),
    (bytes.fromhex("3085ffffffffff"), "bad length of length 5"),
])
def test_malformed_responses_are_clear_errors(data, problem):
    with pytest.raises(BerError, match=problem) as e:
        decode_response(data)
    assert f"({len(data)} bytes)" in str(e.value)


def _response_by_pysnmp(ver, rid, es, ex, vbs) -> bytes:
    from pyasn1.codec.ber import encoder
    from pysnmp.proto import api, rfc1902, rfc1905
    from pyasn1.type import univ
    pmod = api.PROTOCOL_MODULES[ver]
    cls = {"int": rfc1902.Integer32, "uint": rfc1902.Gauge32, "counter32": rfc1902.Counter32,
           "counter64": rfc1902.Counter64, "ticks": rfc1902.TimeTicks,
           "str": rfc1902.OctetString, "oid": rfc1902.ObjectIdentifier,
           "ip": rfc1902.IpAddress, "opaque": rfc1902.Opaque}
    out = []
    for o, (tag, v) in vbs:
        if tag == "null":
            val = univ.Null("")
        elif tag == "nosuchobject":
            val = rfc1905.noSuchObject
        elif tag == "endofmibview":
            val = rfc1905.endOfMibView
        else:
            val = cls[tag](v)
        out.append((rfc1902.ObjectName(o), val))
    pdu = pmod.GetResponsePDU()
    pmod.apiPDU.set_defaults(pdu)
    pmod.apiPDU.set_request_id(pdu, rid)
    pmod.apiPDU.set_error_status(pdu, es)
    pmod.apiPDU.set_error_index(pdu, ex)
    pmod.apiPDU.set_varbinds(pdu, out)
    msg = pmod.Message()
    pmod.apiMessage.set_defaults(msg)
    pmod.apiMessage.set_community(msg, "public")
    pmod.apiMessage.set_pdu(msg, pdu)
    return encoder.encode(msg)


_OID = st.lists(st.integers(0, 2 ** 32 - 1), min_size=1, max_size=12).map(
    lambda arcs: (1, 3) + tuple(arcs))
_VALUE = st.one_of(
    st.tuples(st.just("int"), st.integers(-2 ** 31, 2 ** 31 - 1)),
    st.tuples(st.sampled_from(["uint", "counter32", "ticks"]), st.integers(0, 2 ** 32 - 1)),
    st.tuples(st.just("counter64"), st.integers(0, 2 ** 64 - 1)),
    st.tuples(st.just("str"), st.binary(max_size=300)),
    st.tuples(st.just("ip"), st.binary(min_size=4, max_size=4)),
    st.tuples(st.just("oid"), _OID),
    st.tuples(st.sampled_from(["null", "nosuchobject", "endofmibview"]), st.none()),
)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2 ** 31 - 1), st.integers(0, 18), st.integers(0, 100),
       st.lists(st.tuples(_OID, _VALUE), max_size=40))
def test_decode_equals_pysnmp_encoding_fuzz(rid, es, ex, vbs):
    """Responses built by pysnmp (random values of every type) decode to exactly them."""
    raw = _response_by_pysnmp(1, rid, es, ex, vbs)
    version, community, rid2, es2, ex2, got = decode_response(raw)
    assert (version, community, rid2, es2, ex2) == (1, b"public", rid, es, ex)
    assert got == [(o, (t, bytes(v) if isinstance(v, bytes) else v)) for o, (t, v) in vbs]


@settings(max_examples=200, deadline=None)
@given(st.lists(_OID, min_size=1, max_size=20))
def test_oid_round_trip_fuzz(oids):
    for o in oids:
        tlv = encode_oid(o)
        assert decode_oid(tlv, 2 if tlv[1] < 0x80 else 2 + (tlv[1] & 0x7F), len(tlv)) == o


_SEEDS = [p for _, _, p, s in _frames() if "snmp.get_response_element" in
          s.get("snmp.data_tree", {})][:40]


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.binary(max_size=200),
    st.tuples(st.sampled_from(_SEEDS), st.integers(0, 600), st.binary(min_size=1, max_size=3))
    .map(lambda t: t[0][:t[1]] + t[2] + t[0][t[1] + len(t[2]):]),
    st.tuples(st.sampled_from(_SEEDS), st.integers(0, 600)).map(lambda t: t[0][:t[1]]),
))
def test_decode_response_fuzz(data):
    """Garbage and mutated real responses: a result or a BerError, never anything else."""
    try:
        decode_response(data)
    except BerError as e:
        assert "bytes)" in str(e)
