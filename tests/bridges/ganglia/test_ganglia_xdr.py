"""The gmond XDR codec and the listener state, on the real gmond 3.7.2 capture."""
from __future__ import annotations

import json
import math
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monbus.bridges.ganglia import xdr
from monbus.bridges.ganglia.listener import GmondListener
from monbus.core.pcap import PcapError, read_udp
from monbus.core.line import decode

DATA = Path(__file__).resolve().parents[2] / "data" / "ganglia"
PCAP = DATA / "gmond372_local_xdr_capture.pcap"
HELPER = DATA / "gmond372_local_xdr_capture.decoded.jsonl"
DUMP = DATA / "gmond372_local_xml_dump.xml"
EXPECTED = DATA / "gmond372_local_xdr_capture.expected"


def datagrams():
    return list(read_udp(PCAP.read_bytes()))


def replay(cluster="monbus-corpus"):
    lst = GmondListener(cluster)
    out = []
    for d in datagrams():
        lines, reqs = lst.feed(d.payload, d.ts)
        assert reqs == []
        out += lines
    return lst, out


# --- the codec -----------------------------------------------------------------------------
def test_capture_decodes_like_the_helper_walk():
    """Every one of the 276 datagrams decodes, field for field as the corpus's helper decode."""
    dg = datagrams()
    helper = [json.loads(x) for x in HELPER.read_text().splitlines()]
    assert len(dg) == len(helper) == 276
    kinds = {"metadata_full": xdr.METADATA, "uint": xdr.UINT, "ushort": xdr.USHORT,
             "float": xdr.FLOAT, "double": xdr.DOUBLE, "string": xdr.STRING}
    for d, h in zip(dg, helper):
        m = xdr.decode(d.payload)
        assert m.id.host == h["host"] and m.id.name == h["name"] and m.id.spoof == bool(h["spoof"])
        if isinstance(m, xdr.Metadata):
            assert h["type"] == "metadata_full"
            assert (m.type, m.name, m.units, m.slope, m.tmax, m.dmax, m.extra) == \
                (h["vtype"], h["name2"], h["units"], h["slope"], h["tmax"], h["dmax"], h["extra"])
        else:
            assert m.kind == kinds[h["type"]] and m.fmt == h["fmt"]
            assert m.value == h["value"]


def test_reencoding_the_capture_is_byte_exact():
    """decode -> encode gives back every captured datagram byte for byte."""
    for d in datagrams():
        m = xdr.decode(d.payload)
        if isinstance(m, xdr.Metadata):
            again = xdr.encode_metadata(m.id.host, m.id.name, m.type, m.units, m.slope,
                                        m.tmax, m.dmax, m.extra, spoof=m.id.spoof)
            assert m.name == m.id.name
        else:
            again = xdr.encode_value(m.id.host, m.id.name, m.kind, m.value, m.fmt, m.id.spoof)
        assert again == d.payload


@pytest.mark.parametrize("kind,value", [
    (xdr.USHORT, 65535), (xdr.SHORT, -32768), (xdr.INT, -2_000_000_000),
    (xdr.UINT, 4_000_000_000), (xdr.STRING, "héllo wörld"), (xdr.FLOAT, 0.5),
    (xdr.DOUBLE, 1e100)])
def test_round_trip_every_value_type(kind, value):
    pkt = xdr.encode_value("10.0.0.1:web01", "m", kind, value, "%s", spoof=True)
    m = xdr.decode(pkt)
    assert m == xdr.Value(xdr.MetricId("10.0.0.1:web01", "m", True), kind, "%s", value)
    assert len(pkt) % 4 == 0


def test_round_trip_request():
    pkt = xdr.encode_request("web01", "load_one")
    assert xdr.decode(pkt) == xdr.MetadataRequest(xdr.MetricId("web01", "load_one", False))


_GOOD = xdr.encode_value("h", "m", xdr.UINT, 7)
_META = xdr.encode_metadata("h", "m", "uint32", "B", 1, 60, 0, {"GROUP": "g"})
INVALID = [
    (b"", "truncated"),                                             # nothing at all
    (b"\x00\x00\x00", "truncated"),                                 # id cut short
    (struct.pack(">I", 0) + b"\0" * 40, "2.5/3.0 format"),         # old gmetric format
    (struct.pack(">I", 137) + b"\0" * 12, "unknown message id 137"),
    (struct.pack(">I", 200) + b"\0" * 12, "unknown message id 200"),  # the uuid fork's ids
    (struct.pack(">II", xdr.UINT, 1000) + b"h", "string length 1000 past the end"),
    (_GOOD[:-2], "truncated"),                                      # value cut in half
    (_GOOD[:12], "truncated"),                                      # inside the metric id
    (_META[:-4], "past the end"),                                   # extra data cut off
    (struct.pack(">I", xdr.UINT) + xdr._xstr("h") + xdr._xstr("m") + struct.pack(">I", 2)
     + xdr._xstr("%u") + struct.pack(">I", 1), "bool is 2"),        # spoof flag not 0/1
    (xdr.encode_value("h", "m", xdr.UINT, 70000)[:0] + struct.pack(">I", xdr.USHORT)
     + xdr._xstr("h") + xdr._xstr("m") + struct.pack(">I", 0) + xdr._xstr("%hu")
     + struct.pack(">I", 70000), "does not fit 16 bits"),           # ushort out of range
    (_META[:-24] + struct.pack(">I", 0x7FFFFFFF) + b"\0" * 8, "cannot fit"),  # absurd count
    (xdr.encode_metadata("h", "m", "uint32", "", 9), "unknown slope 9"),
]


@pytest.mark.parametrize("data,problem", INVALID)
def test_invalid_datagrams_are_reported_with_hex(data, problem):
    with pytest.raises(xdr.XdrError) as e:
        xdr.decode(data)
    assert problem in str(e.value)
    assert data[:8].hex() in str(e.value)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_decode_raises_only_xdr_error(data):
    try:
        xdr.decode(data)
    except xdr.XdrError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([d.payload for d in read_udp(PCAP.read_bytes())]),
       st.integers(0, 400), st.binary(min_size=1, max_size=8))
def test_fuzz_listener_on_mutated_real_datagrams(pkt, pos, junk):
    """Corrupted real packets: the listener counts them, never raises, lines stay valid."""
    lst = GmondListener("c")
    mutated = pkt[:pos] + junk + pkt[pos + len(junk):]
    for p in (pkt, mutated, mutated[:pos]):
        lines, _ = lst.feed(p, 1795775634.0)
        for line in lines:
            decode(line)
    assert lst.stats["packets"] == 3


# --- the listener on the capture -----------------------------------------------------------
def test_capture_lines_match_golden_file():
    _, lines = replay()
    assert lines == EXPECTED.read_text().splitlines()


def test_capture_last_values_equal_gmonds_own_xml():
    """The same gmond's XML dump (parsed by ElementTree, independently of monbus) shows,
    for every numeric metric, the last value the capture carried."""
    _, lines = replay()
    last = {}
    for raw in lines:
        ln = decode(raw)
        last[ln.path] = ln
    root = ET.fromstring(DUMP.read_bytes())
    checked = 0
    for host in root.iter("HOST"):
        hname = host.get("NAME").replace(".", "_")
        for m in host.iter("METRIC"):
            if m.get("TYPE") == "string":
                continue
            path = f"ganglia.monbus-corpus.{hname}.{m.get('NAME').replace(' ', '_').replace('.', '_')}"
            got = last[path]
            want = float(m.get("VAL"))
            # gmond prints floats with the metric's format (%.1f etc.)
            assert math.isclose(got.value, want, rel_tol=1e-6, abs_tol=0.051), (path, got, want)
            assert got.meta["type"] == m.get("TYPE")
            assert got.meta["slope"] == m.get("SLOPE")
            assert got.meta.get("unit", "") == m.get("UNITS").strip()
            assert got.meta["mtype"] == ("counter" if m.get("SLOPE") == "positive" else "gauge")
            checked += 1
    assert checked == 40


def test_capture_string_metrics_and_spoofed_hosts():
    _, lines = replay()
    hb = [decode(x) for x in lines if ".heartbeat" in x]
    node = [x for x in hb if x.path == "ganglia.monbus-corpus.node01_monbus_example.heartbeat"]
    assert node[-1].tags == {"gexec": "OFF", "location": "unspecified", "machine_type": "x86_64",
                             "monbus_string": "hello_world", "os_name": "Linux",
                             "os_release": "6.18.44-fc-v657"}
    assert node[-1].value == 0 and node[-1].meta["mtype"] == "state"
    # gmetric -S 10.1.2.4:spoofed-hb.example -H: a spoofed heartbeat
    assert any(x.path == "ganglia.monbus-corpus.spoofed-hb_example.heartbeat" for x in hb)
    # gmetric -S 10.1.2.3:spoofed-host.example: under its own host
    spoofed = [decode(x) for x in lines if ".monbus_spoofed " in x]
    assert [(s.path, s.value) for s in spoofed] == [
        ("ganglia.monbus-corpus.spoofed-host_example.monbus_spoofed", 7.0)]


def test_values_wait_for_metadata_and_request_it():
    meta = xdr.encode_metadata("10.0.0.9:web09", "temp", "int16", "C", 3, 60, 0,
                               {"SPOOF_HOST": "10.0.0.9:web09"}, spoof=True)
    val = xdr.encode_value("10.0.0.9:web09", "temp", xdr.STRING, "-7", spoof=True)
    lst = GmondListener("c", request_interval=10)
    lines, reqs = lst.feed(val, 100.0)
    assert lines == [] and reqs == [xdr.encode_request("web09", "temp")]
    lines, reqs = lst.feed(val, 101.0)          # asked already, within request_interval
    assert reqs == []
    lines, _ = lst.feed(meta, 102.0)            # metadata: the waiting value goes out
    assert lines == ["ganglia.c.web09.temp -7 101 mtype=gauge unit=C type=int16 slope=both tmax=60"]
    assert lst.stats["pending_published"] == 1


def test_waiting_values_expire():
    val = xdr.encode_value("web09", "temp", xdr.FLOAT, 1.5)
    lst = GmondListener("c", pending_ttl=30)
    lst.feed(val, 100.0)
    lst.expire(131.0)
    assert lst.pending == {} and lst.stats["pending_expired"] == 1


def test_host_down_after_four_tmax_and_up_again():
    meta = xdr.encode_metadata("web01", "load", "float", "", 3, 70, 0)
    val = xdr.encode_value("web01", "load", xdr.FLOAT, 0.5)
    lst = GmondListener("c", host_tmax=20)
    lst.feed(meta, 1000.0)
    assert lst.expire(1080.0) == []             # 80 s: not yet past 4 x 20
    down = lst.expire(1081.0)
    assert [decode(x)[:3] for x in down] == [("ganglia.c.web01.heartbeat", 1.0, 1081.0)]
    assert lst.expire(1200.0) == []             # said once
    lines, _ = lst.feed(val, 1300.0)
    assert [decode(x)[:2] for x in lines] == [("ganglia.c.web01.heartbeat", 0.0),
                                              ("ganglia.c.web01.load", 0.5)]


def test_bad_numeric_string_is_counted_not_fatal():
    lst = GmondListener("c")
    lst.feed(xdr.encode_metadata("h", "m", "float", "", 3, 60, 0), 1.0)
    lines, _ = lst.feed(xdr.encode_value("h", "m", xdr.STRING, "twelve"), 2.0)
    assert lines == [] and lst.stats["bad_values"] == 1 and "twelve" in lst.errors[-1]
    lines, _ = lst.feed(xdr.encode_value("h", "m", xdr.STRING, "12"), 3.0)
    assert [decode(x).value for x in lines] == [12.0]


def test_pcap_reader_rejects_garbage():
    with pytest.raises(PcapError):
        list(read_udp(b"\x0a\x0d\x0d\x0a" + b"\0" * 40))   # pcapng
    with pytest.raises(PcapError):
        list(read_udp(PCAP.read_bytes()[:-10]))              # cut inside the last record


_TYPES = ["string", "int8", "uint8", "int16", "uint16", "int32", "uint32", "float", "double",
          "timestamp", "weird"]
_msg = st.one_of(
    st.builds(lambda h, n, t, u, sl, sp: xdr.encode_metadata(h, n, t, u, sl, 60, 0, spoof=sp),
              st.sampled_from(["web01", "10.0.0.1:db02", ":", "a:"]),
              st.sampled_from(["m", "heartbeat", "x y", ""]), st.sampled_from(_TYPES),
              st.text(max_size=5), st.integers(0, 5), st.booleans()),
    st.builds(lambda h, n, v, sp: xdr.encode_value(h, n, xdr.STRING, v, spoof=sp),
              st.sampled_from(["web01", "10.0.0.1:db02", ":", "a:"]),
              st.sampled_from(["m", "heartbeat", "x y", ""]),
              st.one_of(st.text(max_size=12), st.floats().map(repr)), st.booleans()),
    st.builds(lambda k, v: xdr.encode_value("web01", "m", k, v),
              st.sampled_from([xdr.UINT, xdr.INT]), st.integers(0, 2**31 - 1)),
    st.builds(lambda v: xdr.encode_value("web01", "m", xdr.DOUBLE, v), st.floats()),
    st.builds(lambda: xdr.encode_request("web01", "m")))


@settings(max_examples=300, deadline=None)
@given(st.lists(_msg, max_size=12), st.integers(0, 200))
def test_fuzz_listener_message_sequences(msgs, gap):
    """Any order of metadata, values (NaN, text, every type) and requests: valid lines only,
    and every value is either published, waiting or counted as bad."""
    lst = GmondListener("c", host_tmax=1)
    t = 1000.0
    for m in msgs:
        lines, _ = lst.feed(m, t)
        lines += lst.expire(t + gap)
        for line in lines:
            decode(line)
        t += gap


@pytest.mark.parametrize("slope,mtype", [(0, "gauge"), (1, "counter"), (2, "gauge"),
                                         (3, "gauge"), (4, "gauge"), (5, "derive")])
def test_slopes_map_to_mtypes(slope, mtype):
    """gmond 3.7's slopes (ganglia_slope_t): positive is a counter, derivative (5) a
    derive, the others gauges."""
    lst = GmondListener("c")
    lst.feed(xdr.encode_metadata("h", "m", "uint32", "pkts", slope, 60, 0), 1.0)
    lines, _ = lst.feed(xdr.encode_value("h", "m", xdr.STRING, "17"), 2.0)
    ln = decode(lines[0])
    assert (ln.value, ln.meta["mtype"], ln.meta["slope"]) == (17, mtype, xdr.SLOPES[slope])
