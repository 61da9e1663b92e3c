"""`monbus sflow decode`: captures or bare datagrams to lines on stdout, problems on stderr."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from sflow_testlib import DATA  # noqa: E402

from monbus.core.line import decode  # noqa: E402


def test_decode_pcap_prints_valid_lines(monbus):
    r = monbus("sflow", "decode", DATA / "tcpdump_sflow-print-v6.pcap", "--interval", "60")
    assert r.returncode == 0, r.stderr
    lines = [decode(x) for x in r.stdout.splitlines()]
    names = {ln.series for ln in lines}
    assert "sflow.30::1:1:1.if23001.if.out_octets" in names
    assert "sflow.30::1:1:1.agent.sub0.datagrams" in names
    # capture times are the timestamps (2020-09-04)
    assert all(1599190000 < ln.timestamp < 1599300000 for ln in lines)


def test_decode_reports_malformed_and_non_sflow(monbus):
    r = monbus("sflow", "decode", DATA / "tcpdump_sflow_multiple_counter_30_pdus.pcap",
               DATA / "tcpdump_sflow_print-segv.pcap")
    assert r.returncode == 1
    assert "not sFlow v5 (version field 327681)" in r.stderr
    assert "too short" in r.stderr or "needs 28 bytes" in r.stderr
    assert "Traceback" not in r.stderr
    assert "sflow.use03710ff.host.mem.mem_total" in r.stdout


def test_decode_raw_datagram_with_fixed_time(monbus):
    f = DATA / "vectors" / "goflow2_drop_extended_function_unpadded.bin"
    r = monbus("sflow", "decode", "--raw", "--now", "1700000005", f)
    assert r.returncode == 0, r.stderr  # the unpadded string is a quirk, not an error
    assert "sflow.192_168_119_184.if1.discards." in r.stdout
    assert " 1700000000 " in r.stdout


def test_decode_refuses_a_non_pcap_file(monbus, tmp_path):
    bad = tmp_path / "x.pcapng"
    bad.write_bytes(b"\x0a\x0d\x0d\x0a" + bytes(40))
    r = monbus("sflow", "decode", bad)
    assert r.returncode != 0 and "bad byte-order magic 00000000" in r.stderr
    assert "use --raw for bare datagrams" in r.stderr
    assert "Traceback" not in r.stderr


def test_decode_send_puts_the_lines_on_the_bus(monbus, relay, subscribe):
    from helpers import wait_for
    sub = subscribe("sflow.**")
    f = DATA / "vectors" / "telegraf_sflow_v5_example.bin"
    r = monbus("sflow", "decode", "--raw", "--now", "1700000000", "--send",
               "--relay", relay.input, f)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    series = {}

    def arrived():
        series.update({ln.series: ln.value for ln in sub.recv_lines(0.3) or []})
        return "sflow.192_168_119_184.if3.if.in_octets;ifname=eno1" in series
    wait_for(arrived, timeout=15, what="the decoded lines on the bus")
    assert series["sflow.192_168_119_184.if3.if.in_octets;ifname=eno1"] == 3910


def test_decode_cut_capture_keeps_the_datagrams_before_the_cut(monbus, tmp_path):
    whole = (DATA / "tcpdump_sflow-print-v6.pcap").read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(whole[:-10])
    full = monbus("sflow", "decode", DATA / "tcpdump_sflow-print-v6.pcap", "--interval", "60")
    r = monbus("sflow", "decode", cut, "--interval", "60")
    assert r.returncode == 1
    assert "cut: " in r.stderr and "Traceback" not in r.stderr
    assert len(r.stdout.splitlines()) > 0.8 * len(full.stdout.splitlines())


def test_decode_reads_pcapng(monbus):
    # ndpi's sFlow capture exists as pcap only; collectd's pcapng shows the format is read
    r = monbus("sflow", "decode", DATA.parent / "collectd" / "ndpi_collectd.pcap")
    assert "pcapng is not supported" not in r.stderr
    assert "not sFlow v5" in r.stderr          # read, then refused by the sFlow decoder
