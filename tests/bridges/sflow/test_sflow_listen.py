"""`monbus sflow listen` as a real process: real datagrams over UDP (IPv4 and IPv6) to a
real relay; NetFlow and garbage are counted and dropped; SIGTERM publishes the open window."""
from __future__ import annotations

import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from sflow_testlib import DATA, wait_listening  # noqa: E402

from helpers import collect, wait_for  # noqa: E402

V5_EXAMPLE = (DATA / "vectors" / "telegraf_sflow_v5_example.bin").read_bytes()
TWO_FLOWS = (DATA / "vectors" / "telegraf_inputs_sflow_2flows.bin").read_bytes()


def _with_seq(payload: bytes, seq: int) -> bytes:
    """The same IPv4-agent datagram with another datagram sequence number (offset 16)."""
    return payload[:16] + struct.pack(">I", seq) + payload[20:]


def test_counters_flows_and_bad_input_over_udp(sflow_listener, subscribe):
    sub = subscribe("sflow.**", "monbus.*.sflow.*")
    lst = sflow_listener("--interval", "1", "--selfmetrics-interval", "1")
    first = wait_listening(lst, sub, V5_EXAMPLE)
    series = {ln.series: ln for ln in first}
    # the counter sample of the Telegraf vector: port eno1 (ifIndex 3), 3910 octets in
    key = "sflow.192_168_119_184.if3.if.in_octets;ifname=eno1"
    assert series[key].value == 3910 and series[key].meta["mtype"] == "counter"
    assert series[key].meta["unit"] == "bytes"
    # NetFlow v5 header and garbage: dropped and counted, the daemon goes on
    lst.send(struct.pack(">HH", 5, 1) + bytes(20))
    lst.send(b"\x00\x00\x00\x05\x00\x00\x00\x07" + bytes(30))
    # flow samples (two sampled packets of one agent), with a sequence gap of 3 datagrams
    lst.send(_with_seq(TWO_FLOWS, 100))
    lst.send(_with_seq(TWO_FLOWS, 104))
    got = []

    def seen():
        got.extend(sub.recv_lines(0.3) or [])
        names = {ln.series for ln in got}
        return ("monbus" in " ".join(names) and
                any(n.startswith("sflow.192_168_1_2.agent.sub16.lost_datagrams") for n in names)
                and any(".flow.bytes" in n for n in names)
                and {ln.series.split(".")[-1] for ln in got if ln.series.startswith("monbus.")}
                >= {"not_sflow5", "bad_header"})
    wait_for(seen, timeout=30, what="flow, agent and self-metric lines")
    lost = [ln for ln in got if ln.series == "sflow.192_168_1_2.agent.sub16.lost_datagrams"]
    assert lost[-1].value == 3
    selfm = {ln.series.split(".")[-1]: ln.value for ln in got if ln.series.startswith("monbus.")}
    assert selfm["not_sflow5"] >= 1 and selfm["bad_header"] >= 1
    assert lst.proc.poll() is None
    rc, err = lst.stop()
    assert rc == 0, err
    assert "not sFlow v5 (version field 327681)" in err   # the problem is quoted, in hex too
    assert "0005000100000000" in err


def test_sigterm_publishes_the_open_window_ipv6(sflow_listener, subscribe):
    sub = subscribe("sflow.**", "monbus.*.sflow.flow_samples")
    # a window far longer than the test: only the stop can publish it
    lst = sflow_listener("--interval", "3600", "--selfmetrics-interval", "0.2", host="::1")
    wait_listening(lst, sub, V5_EXAMPLE)
    lst.send(_with_seq(TWO_FLOWS, 7))
    # the flows are only counted (self-metric flow_samples), not published until the stop
    seen = []

    def counted():
        seen.extend(sub.recv_lines(0.3) or [])
        return any(ln.series.endswith(".sflow.flow_samples") and ln.value >= 2 for ln in seen)
    wait_for(counted, timeout=30, what="the flow samples counted")
    assert not any(".flow." in ln.series for ln in seen)
    rc, err = lst.stop()
    assert rc == 0, err
    got = collect(sub, 1, timeout=15)
    got += sub.recv_lines(1.0) or []
    got = [ln for ln in got if ln.series.startswith("sflow.")]
    names = {ln.series for ln in got}
    # the flow window was published by the stop: per interface and per protocol
    assert any(n.startswith("sflow.192_168_1_2.") and n.endswith(".flow.samples") for n in names)
    frames = sum(ln.value for ln in got if ln.series.startswith("sflow.192_168_1_2.proto.")
                 and ln.series.endswith(".frames"))
    assert frames > 0


def test_bad_listen_address_is_a_one_line_error(monbus):
    r = monbus("sflow", "listen", "--listen", "nonsense")
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and "HOST:PORT" in r.stderr
