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
_FLOWSAMPLE = re.compile(r"rate (\d+), pool (\d+), drops (\d+), input (\d+)(?: \((\d)\))?,? "
                         r"output (\d+)(?: \((\d)\))?,? records (\d+)")
_RAW = re.compile(r"protocol \S+ \((\d+)\), length (\d+), stripped bytes (\d+), "
                  r"header_size (\d+)")
_GENERIC = [  # tcpdump's generic counter printout -> our field names
    (re.compile(r"ifindex (\d+), iftype (\d+), ifspeed (\d+), ifdirection (\d+)"),
     ("index", "type", "speed", "direction")),
    (re.compile(r"ifstatus (\d+),"), ("status",)),
    (re.compile(r"In octets (\d+), unicast pkts (\d+), multicast pkts (\d+), broadcast pkts "
                r"(\d+), discards (\d+)"),
     ("in_octets", "in_ucast_pkts", "in_multicast_pkts", "in_broadcast_pkts", "in_discards")),
    (re.compile(r"In errors (\d+), unknown protos (\d+)"), ("in_errors", "in_unknown_protos")),
    (re.compile(r"Out octets (\d+), unicast pkts (\d+), multicast pkts (\d+), broadcast pkts "
                r"(\d+), discards (\d+)"),
     ("out_octets", "out_ucast_pkts", "out_multicast_pkts", "out_broadcast_pkts",
      "out_discards")),
    (re.compile(r"Out errors (\d+), promisc mode (\d+)"), ("out_errors", "promiscuous_mode")),
]
_ETHERNET = [  # tcpdump's ethernet counter printout -> our field names
    (re.compile(r"align errors (\d+), fcs errors (\d+), single collision (\d+), multiple "
                r"collision (\d+), test error (\d+)"),
     ("alignment_errors", "fcs_errors", "single_collision_frames", "multiple_collision_frames",
      "sqe_test_errors")),
    (re.compile(r"deferred (\d+), late collision (\d+), excessive collision (\d+), mac trans "
                r"error (\d+)"),
     ("deferred_transmissions", "late_collisions", "excessive_collisions",
      "internal_mac_transmit_errors")),
    (re.compile(r"carrier error (\d+), frames too long (\d+), mac receive errors (\d+), "
                r"symbol errors (\d+)"),
     ("carrier_sense_errors", "frame_too_longs", "internal_mac_receive_errors",
      "symbol_errors")),
]
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
            fm = _FLOWSAMPLE.search(raw)
            cur["samples"].append((m.groups(), fm.groups() if fm else None, {}, [], {}))
            hexbuf = None
            continue
        if cur["samples"]:
            for rx, names in _GENERIC:
                gm = rx.search(raw)
                if gm:
                    cur["samples"][-1][2].update(zip(names, map(int, gm.groups())))
            for rx, names in _ETHERNET:
                em = rx.search(raw)
                if em:
                    cur["samples"][-1][4].update(zip(names, map(int, em.groups())))
            rm = _RAW.search(raw)
            if rm:
                cur["samples"][-1][3].append(tuple(map(int, rm.groups())))
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
        for s, (head, flow, generic, raws, ether) in zip(dg.samples, info["samples"]):
            exp, kind, fmt, slen, sseq, stype, sidx = head
            assert s.kind == ("counters" if kind == "counter" else "flow")
            assert s.expanded == bool(exp)
            assert (s.sequence, s.ds_class, s.ds_index) == (int(sseq), int(stype), int(sidx))
            checked += 1
            if flow:
                rate, pool, drops, inp, infmt, out, outfmt, nrec = flow
                assert (s.sampling_rate, s.sample_pool, s.drops) == \
                    (int(rate), int(pool), int(drops))
                if s.expanded:  # tcpdump: "input 29001 (0)" = value (format)
                    assert (s.input, s.input_format) == (int(inp), int(infmt))
                    assert (s.output, s.output_format) == (int(out), int(outfmt))
                else:           # tcpdump prints the compact 32-bit word
                    assert (s.input_format << 30) | s.input == int(inp)
                    assert (s.output_format << 30) | s.output == int(out)
                assert len(s.records) == int(nrec)
                checked += 5
            headers = [(r[1][0], r[1][1], r[1][2], r[1][3]) for r in s.records
                       if r[0] is not None and r[0].name == "sampled_header"]
            assert headers == raws
            checked += len(raws)
            for rname, printed_values in (("if", generic), ("eth", ether)):
                if not printed_values:
                    continue
                (rec,) = [r for r in s.records if r[0] is not None and r[0].name == rname]
                view = dict(zip([f.name for f in rec[0].fields], rec[1]))
                for name, value in printed_values.items():
                    assert view[name] == value, (num, rname, name)
                    checked += 1
    # every sample header, plus 19 generic and 13 ethernet counter fields per interface
    # counter sample, plus 6 fields per flow sample
    assert checked >= {"tcpdump_sflow_multiple_counter_30_pdus.pcap": 144 + 142 * 32,
                       "tcpdump_sflow-print-v6.pcap": 61 + 48 * 32 + 13 * 6,
                       "tcpdump_sflow_expanded.pcap": 1 + 6}[capture], checked


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
