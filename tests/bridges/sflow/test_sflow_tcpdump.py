"""Checks against tcpdump's printout of the same captures (tests/data/sflow/*.out): every
datagram header, every sample header, and the hsflowd host structures (which neither tcpdump
nor tshark 4.0 decode: tcpdump prints their bytes, so we check that we framed exactly those
bytes and that the values agree with each other and with the datagram header)."""
from __future__ import annotations

import re
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from sflow_testlib import DATA, tshark_frames  # noqa: E402

from monbus.bridges.sflow.datagram import SflowError, decode_datagram  # noqa: E402
from monbus.bridges.sflow.metrics import Converter  # noqa: E402

_FRAME = re.compile(r"^\s*(\d+)\s+\d{4}-\d\d-\d\d ")
_DGRAM = re.compile(r"sFlowv5, IPv[46] agent (\S+), agent-id (\d+), seqnum (\d+), "
                    r"uptime (\d+), samples (\d+), length (\d+)")
_SAMPLE = re.compile(r"^\s+(expanded )?(counter|flow) sample \((\d)\), length (\d+), seqnum "
                     r"(\d+), type (\d+), idx (\d+)")
_UNKNOWN = re.compile(r"^\s+enterprise 0, Unknown \((\d+)\) length (\d+)")
_HEX = re.compile(r"^\s+0x[0-9a-f]{4}:\s+((?:[0-9a-f]{2,4} ?)+)")


def parse_tcpdump(name):
    """{frame: {"dgram": (...), "samples": [...], "unknown": [(format, bytes)]}}"""
    frames = {}
    cur = None
    hexbuf = None
    for raw in (DATA / name).read_text().splitlines():
        m = _FRAME.match(raw)
        if m:
            cur = frames.setdefault(int(m.group(1)), {"dgram": None, "samples": [],
                                                      "unknown": []})
            hexbuf = None
        if cur is None:
            continue
        m = _DGRAM.search(raw)
        if m:
            cur["dgram"] = m.groups()
            continue
        m = _SAMPLE.match(raw)
        if m:
            cur["samples"].append(m.groups())
            hexbuf = None
            continue
        m = _UNKNOWN.match(raw)
        if m:
            hexbuf = bytearray()
            cur["unknown"].append((int(m.group(1)), int(m.group(2)), hexbuf))
            continue
        m = _HEX.match(raw)
        if m and hexbuf is not None:
            hexbuf.extend(bytes.fromhex(m.group(1).replace(" ", "")))
        elif hexbuf is not None and not m:
            hexbuf = None
    return frames


@pytest.mark.parametrize("capture,out", [
    ("tcpdump_sflow_multiple_counter_30_pdus.pcap",
     "tcpdump_sflow_multiple_counter_30_pdus.tcpdump-v.out"),
    ("tcpdump_sflow-print-v6.pcap", "tcpdump_sflow-print-v6.tcpdump-vvv.out"),
    ("tcpdump_sflow_expanded.pcap", "tcpdump_sflow_expanded.tcpdump-v.out"),
])
def test_headers_and_samples_match_tcpdump(capture, out):
    printed = parse_tcpdump(out)
    payloads = {num: p for num, p, _, _ in tshark_frames(capture)}
    checked = 0
    for num, info in printed.items():
        if info["dgram"] is None:
            with pytest.raises(SflowError):
                decode_datagram(payloads[num])  # "sFlow version 327681 packet not supported"
            continue
        dg = decode_datagram(payloads[num])
        agent, sub, seq, uptime, nsamples, length = info["dgram"]
        assert (dg.agent, dg.sub_agent, dg.sequence, dg.uptime, dg.declared_samples) == \
            (agent, int(sub), int(seq), int(uptime), int(nsamples))
        assert len(payloads[num]) == int(length)
        assert len(dg.samples) == len(info["samples"])
        for s, (exp, kind, fmt, slen, sseq, stype, sidx) in zip(dg.samples, info["samples"]):
            assert s.kind == ("counters" if kind == "counter" else "flow")
            assert s.expanded == bool(exp)
            assert (s.sequence, s.ds_class, s.ds_index) == (int(sseq), int(stype), int(sidx))
            checked += 1
    assert checked


def test_host_structures_framed_as_tcpdump_prints_them():
    printed = parse_tcpdump("tcpdump_sflow_multiple_counter_30_pdus.tcpdump-v.out")
    payloads = {num: p for num, p, _, _ in tshark_frames(
        "tcpdump_sflow_multiple_counter_30_pdus.pcap")}
    seen = set()
    for num, info in printed.items():
        if not info["unknown"]:
            continue
        dg = decode_datagram(payloads[num])
        assert not dg.problems
        (s,) = dg.samples
        mine = {rf.tag: (rf, vals, extra) for rf, vals, extra in s.records}
        for fmt, length, raw in info["unknown"]:
            assert len(raw) == length
            rf, vals, extra = mine[fmt]
            seen.add(rf.name)
            v = dict(zip([f.name for f in rf.fields], vals))
            if rf.name == "host_descr":
                # the hostname and os_release strings are readable in tcpdump's bytes
                assert v["hostname"].encode() in raw and v["os_release"].encode() in raw
                assert v["uuid"] == raw[4 + len(v["hostname"]) + (-len(v["hostname"]) % 4):][:16]
                assert v["os_name"] == 2  # linux
            elif rf.name == "adapters":
                assert vals[0] == len(extra["adapters"]) >= 1
                for ifindex, macs in extra["adapters"]:
                    for mac in macs:
                        assert bytes.fromhex(mac.replace(":", "")) in raw
            elif rf.name == "cpu":
                # the agent (hsflowd, ms in the datagram header) started after the host
                # booted (host uptime in s): a misaligned field would not keep this order
                assert v["uptime"] + 1 >= dg.uptime / 1000 > 0
                assert 1 <= v["cpu_num"] <= 1024 and 100 <= v["cpu_speed"] <= 10000
                assert 0 <= v["load_one"] < v["cpu_num"] * 4
                assert v["proc_run"] <= v["proc_total"]
            elif rf.name == "mem":
                assert v["mem_free"] <= v["mem_total"] and v["swap_free"] <= v["swap_total"]
                assert v["mem_cached"] + v["mem_buffers"] <= v["mem_total"]
            elif rf.name == "disk":
                assert v["disk_free"] <= v["disk_total"]
                assert 0 <= v["part_max_used"] <= 10000  # hundredths of a percent
                assert v["bytes_read"] >= v["reads"] * 512 / 8  # sectors, at least
            elif rf.name == "net":
                assert v["bytes_in"] >= v["pkts_in"] * 20 / 4  # counters may wrap (u32 pkts)
    assert seen == {"host_descr", "adapters", "cpu", "mem", "disk", "net"}


def test_hostname_from_host_descr_names_the_host():
    conv = Converter()
    lines = []
    for num, payload, _, _ in tshark_frames("tcpdump_sflow_multiple_counter_30_pdus.pcap"):
        try:
            dg = decode_datagram(payload)
        except SflowError:
            continue
        lines += conv.datagram(dg, 1301703211)
    hosts = {ln.split(".")[1] for ln in lines if ".host." in ln}
    assert hosts == {"proxy-use03147k2", "use03710ff"}
    one = next(ln for ln in lines if ln.startswith("sflow.use03710ff.host.cpu.cpu_num;"))
    series = one.split(" ")[0]
    tags = dict(t.split("=") for t in series.split(";")[1:])
    assert tags["agent"] == "15_184_13_52" and tags["os"] == "linux"
    uuid.UUID(tags["uuid"])
