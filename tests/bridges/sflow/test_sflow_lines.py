"""The lines monbus publishes, checked against tshark's decode of the same datagrams:
counter values and annotations, flow estimates per interface, VLAN and protocol, and lost
datagrams from the agents' sequence numbers."""
from __future__ import annotations

import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from sflow_testlib import get, subtrees, tshark_frames  # noqa: E402

from monbus.bridges.sflow.datagram import SflowError, decode_datagram  # noqa: E402
from monbus.bridges.sflow.pipeline import Pipeline  # noqa: E402
from monbus.core.line import decode, sanitize  # noqa: E402

GENERIC_LINES = {  # tshark field -> monbus line name under <instance>.if.
    "sflow_245.ifinoct": "in_octets", "sflow_245.ifoutoct": "out_octets",
    "sflow_245.ifinpkt": "in_ucast_pkts", "sflow_245.ifoutpkt": "out_ucast_pkts",
    "sflow_245.ifinerr": "in_errors", "sflow_245.ifouterr": "out_errors",
    "sflow_245.ifindisc": "in_discards", "sflow_245.ifspeed": "speed",
    "sflow_245.ifadmin_status": "admin_up", "sflow_245.ifoper_status": "oper_up",
    "sflow_245.ifinmcast": "in_multicast_pkts", "sflow_245.ifoutbcast": "out_broadcast_pkts",
}


def _by_series(lines):
    out = {}
    for raw in lines:
        ln = decode(raw)
        out[ln.series] = ln
    return out


def test_interface_counter_lines_carry_tshark_values():
    checked = 0
    for cap in ("tcpdump_sflow_multiple_counter_30_pdus.pcap", "tcpdump_sflow-print-v6.pcap",
                "ndpi_sflow.pcap"):
        pipe = Pipeline()
        for num, payload, sflow, _ in tshark_frames(cap):
            lines, _ = pipe.feed(payload, 1700000000, "t")
            if sflow is None:
                assert not lines
                continue
            series = _by_series(lines)
            agent = sanitize(get(sflow, "sflow_245.agent") or get(sflow, "sflow_245.agent.v6"))
            for _, sample in subtrees(sflow):
                for title, rec in subtrees(sample):
                    if title != "Generic interface counters":
                        continue
                    pre = f"sflow.{agent}.if{get(rec, 'sflow_245.ifindex')}.if."
                    for tf, name in GENERIC_LINES.items():
                        value = int(get(rec, tf))
                        unknown = value == 0xFFFFFFFF or value == 2**64 - 1
                        ln = series.get(pre + name)
                        if unknown:
                            assert ln is None  # sFlow's "not available" is not published
                            continue
                        assert ln is not None, (cap, num, pre + name)
                        assert ln.value == value and ln.timestamp == 1700000000
                        checked += 1
                    mt = series[pre + "in_octets"].meta
                    assert mt == {"mtype": "counter", "unit": "bytes",
                                  "max": str(2**64 - 1)}  # ifInOctets is 64-bit in sFlow
                    assert series[pre + "in_errors"].meta["max"] == str(2**32 - 1)
                    assert series[pre + "speed"].meta == {"mtype": "gauge", "unit": "bit/s"}
    assert checked > 1500


def test_processor_percentages_and_vlan_counters():
    pipe = Pipeline()
    vectors = tshark_frames("vectors/all_vectors.wrapped.pcap")
    lines = []
    for num, payload, sflow, _ in vectors:
        lines += pipe.feed(payload, 1700000000, "t")[0]
    series = _by_series(lines)
    # gopacket SFlowTestPacket3: processor 5s CPU 1450 hundredths of a percent = 14.5 %
    cpu = series["sflow.10_20_4_0.entity1.processor.cpu_5s"]
    assert cpu.value == 14.5 and cpu.meta["unit"] == "percent"
    assert series["sflow.10_20_4_0.entity1.processor.total_memory"].value == 3884806144
    # gopacket SFlowTestPacket10: VLAN counters are published under the VLAN id
    vlan = [s for s in series if ".vlan" in s and s.endswith(".vlan.octets")]
    assert vlan, sorted(series)[:20]


def _tshark_flow_totals(cap):
    """Per (agent, data source index): (samples, frames, bytes) from tshark."""
    out = {}
    for num, payload, sflow, _ in tshark_frames(cap):
        if not sflow:
            continue
        agent = get(sflow, "sflow_245.agent") or get(sflow, "sflow_245.agent.v6")
        for title, sample in subtrees(sflow):
            rate = get(sample, "sflow.flow_sample.sampling_rate")
            if rate is None:
                continue
            idx = get(sample, "sflow.flow_sample.index") or get(
                sample, "sflow.flow_sample.source_id_index")
            hdr = dict(subtrees(sample)).get("Raw packet header")
            length = int(get(hdr, "sflow_245.header.frame_length")) if hdr else 0
            acc = out.setdefault((sanitize(agent), int(idx)), [0, 0, 0])
            acc[0] += 1
            acc[1] += int(rate)
            acc[2] += int(rate) * length
    return out


def test_flow_estimates_per_interface_equal_tshark_sums():
    for cap in ("tcpdump_sflow-print-v6.pcap", "ndpi_sflow.pcap",
                "tcpdump_sflow_expanded.pcap"):
        want = _tshark_flow_totals(cap)
        assert want
        pipe = Pipeline(interval=10)
        lines = []
        for num, payload, _, _ in tshark_frames(cap):
            lines += pipe.feed(payload, 1000, "t")[0]  # all in one window
        lines += pipe.flush(1010)
        series = _by_series(lines)
        for (agent, idx), (n, frames, nbytes) in want.items():
            pre = f"sflow.{agent}.if{idx}.flow."
            assert series[pre + "samples"].value == n
            assert series[pre + "frames"].value * 10 == frames
            assert abs(series[pre + "bytes"].value * 10 - nbytes) < 1e-6 * nbytes + 1e-9
            assert series[pre + "bytes"].meta == {"mtype": "gauge", "unit": "B/s",
                                                  "interval": "10"}
            assert series[pre + "bytes"].timestamp == 1000


def test_protocol_and_vlan_breakdown_adds_up():
    pipe = Pipeline(interval=10)
    lines = []
    for num, payload, _, _ in tshark_frames("vectors/all_vectors.wrapped.pcap"):
        lines += pipe.feed(payload, 1000, "t")[0]
    lines += pipe.flush(1010)
    series = _by_series(lines)
    hosts = {s.split(".")[1] for s in series if ".flow.bytes" in s}
    for host in hosts:
        per_if = sum(ln.value for s, ln in series.items()
                     if s.startswith(f"sflow.{host}.") and ".flow.frames" in s
                     and ".vlan" not in s and ".proto." not in s)
        per_proto = sum(ln.value for s, ln in series.items()
                        if s.startswith(f"sflow.{host}.proto.") and s.endswith(".frames"))
        assert abs(per_if - per_proto) < 1e-9, host
    # the ssh packet of gopacket SFlowTestPacket2 (TCP 54237 -> 22)
    assert "sflow.192_168_91_17.proto.ipv4.tcp.22.bytes" in series
    # the QinQ ICMP vector: outer tag first
    assert any(s.startswith("sflow.172_16_0_17.proto.ipv4.icmp.") for s in series)


def _v6_datagrams():
    return [p for _, p, s, _ in tshark_frames("tcpdump_sflow-print-v6.pcap") if s]


def test_lost_and_reordered_datagrams_are_counted():
    dgs = _v6_datagrams()
    seqs = [decode_datagram(p).sequence for p in dgs]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # one agent, consecutive
    pipe = Pipeline()
    keep = [p for i, p in enumerate(dgs) if i not in (3, 4, 10)]   # 3 lost
    keep[5], keep[6] = keep[6], keep[5]                            # 1 reordered
    for p in keep:
        pipe.feed(p, 1000, "t")
    series = _by_series(pipe.flush(0, final=True))
    pre = "sflow.30::1:1:1.agent.sub0."
    assert series[pre + "lost_datagrams"].value == 3
    assert series[pre + "out_of_order"].value == 1
    assert series[pre + "datagrams"].value == len(keep)
    assert series[pre + "lost_datagrams"].meta["mtype"] == "counter"


def test_agent_restart_is_not_counted_as_loss():
    dgs = _v6_datagrams()
    pipe = Pipeline()
    for p in dgs[:10]:
        pipe.feed(p, 1000, "t")
    # the same agent restarts: sequence 1, uptime 5 s
    restarted = dgs[0][:28] + struct.pack(">II", 1, 5000) + dgs[0][36:]  # seq, uptime
    assert decode_datagram(restarted).sequence == 1
    pipe.feed(restarted, 1001, "t")
    series = _by_series(pipe.flush(0, final=True))
    pre = "sflow.30::1:1:1.agent.sub0."
    assert series[pre + "resets"].value == 1
    assert series[pre + "lost_datagrams"].value == 0


def test_non_sflow_and_malformed_are_counted_and_quoted():
    pipe = Pipeline()
    lines, problems = pipe.feed(bytes.fromhex("000500019ae72b16"), 1, "10.0.0.1")
    assert not lines and "327681" in problems[0] and "000500019ae72b16" in problems[0]
    segv = tshark_frames("tcpdump_sflow_print-segv.pcap")[0][1]
    lines, problems = pipe.feed(segv, 1, "10.0.0.250")
    assert problems and all("10.0.0.250" in p for p in problems)
    assert pipe.counts["not_sflow5"] == 1 and pipe.counts["datagrams_with_errors"] == 1
    try:
        decode_datagram(b"\0\0\0\x05")
    except SflowError as e:
        assert e.reason == "too_short" and "00000005" in str(e)


def _flow_datagram(seq: int, dst_port: int) -> bytes:
    """A flow sample of one UDP/IPv4 packet to dst_port, as raw_ip sampled header
    (header protocol 11), from agent 192.0.2.7 interface 4, 1-in-100."""
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 60, 0, 0, 64, 17, 0, bytes([10, 0, 0, 1]),
                     bytes([10, 0, 0, 2])) + struct.pack(">HHHH", 40000, dst_port, 40, 0)
    hdr = struct.pack(">IIII", 11, 60, 0, len(ip)) + ip
    rec = struct.pack(">II", 1, len(hdr)) + hdr
    sample = struct.pack(">IIIIIIII", seq, 4, 100, seq * 100, 0, 4, 5, 1) + rec
    return (struct.pack(">II4sIIII", 5, 1, bytes([192, 0, 2, 7]), 0, seq, 1000, 1)
            + struct.pack(">II", 1, len(sample)) + sample)


def test_protocol_keys_are_capped_per_window_and_counted():
    pipe = Pipeline(interval=10, max_flow_keys=10)
    for i in range(30):
        lines, problems = pipe.feed(_flow_datagram(i + 1, 1000 + i), 1005, "t")
        assert not problems
    series = _by_series(pipe.flush(1010))
    ports = [s for s in series if s.startswith("sflow.192_0_2_7.proto.ipv4.udp.")
             and s.endswith(".frames")]
    assert len(ports) == 10
    over = series["sflow.192_0_2_7.proto.overflow.frames"].value
    assert over * 10 == 20 * 100          # 20 packets, each standing for 100
    assert pipe.counts["flow_keys_overflow"] == 20
    # the interface total is not capped: all 30 samples
    assert series["sflow.192_0_2_7.if4.flow.samples"].value == 30
    assert series["sflow.192_0_2_7.if4.flow.bytes"].value * 10 == 30 * 60 * 100


def test_unknown_record_is_skipped_counted_and_named_once():
    """A counter record of an enterprise monbus does not know, between two it knows."""
    generic = bytes.fromhex("00000001") + struct.pack(">I", 88) + struct.pack(
        ">IIQIIQIIIIIIQIIIIII", 9, 6, 10**9, 1, 3, 1000, 1, 2, 3, 4, 5, 6, 2000, 7, 8, 9, 10,
        11, 0)
    unknown = struct.pack(">II", (9999 << 12) | 77, 12) + b"\x01" * 12
    proc = struct.pack(">II", 1001, 28) + struct.pack(">iiiQQ", 100, 200, 300, 8, 4)
    body = generic + unknown + proc
    sample = struct.pack(">IIII", 1, 0, 9, 3) + body
    dgram = (struct.pack(">II4sIIII", 5, 1, bytes([192, 0, 2, 8]), 0, 1, 1000, 1)
             + struct.pack(">II", 4, len(sample)) + sample)
    pipe = Pipeline()
    lines, problems = pipe.feed(dgram, 1000, "t")
    assert not problems
    series = _by_series(lines)
    assert series["sflow.192_0_2_8.if9.if.in_octets"].value == 1000
    assert series["sflow.192_0_2_8.if9.processor.cpu_1m"].value == 2
    assert pipe.counts["unknown_records"] == 1
    assert len(pipe.notices) == 1 and "9999:77" in pipe.notices[0]
    pipe.feed(dgram, 1001, "t")
    assert pipe.counts["unknown_records"] == 2 and len(pipe.notices) == 1


def test_uptime_wrap_with_loss_is_loss_not_a_restart():
    """32-bit milliseconds of uptime wrap after 49.7 days; the sequence goes on."""
    dgs = _v6_datagrams()
    pipe = Pipeline()
    base = dgs[0]
    seq0 = decode_datagram(base).sequence

    def at(seq, uptime):
        return base[:28] + struct.pack(">II", seq, uptime) + base[36:]
    pipe.feed(at(seq0, 2**32 - 2000), 1000, "t")
    pipe.feed(at(seq0 + 3, 3000), 1001, "t")  # two datagrams lost across the wrap
    series = _by_series(pipe.flush(0, final=True))
    pre = "sflow.30::1:1:1.agent.sub0."
    assert series[pre + "lost_datagrams"].value == 2
    assert series[pre + "resets"].value == 0
