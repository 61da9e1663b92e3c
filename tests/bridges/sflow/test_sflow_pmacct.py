"""A real sFlow agent: pmacct's pmacctd with its sfprobe plugin samples traffic the test sends
on `lo` and exports sFlow v5 to `monbus sflow listen`.  The estimated frames and bytes on the
bus agree with the traffic sent (exactly at 1-in-1, within the sampling error at 1-in-10), and
the bytes agree exactly with tshark's decode of the very datagrams pmacctd sent."""
from __future__ import annotations

import json
import math
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from helpers import wait_for  # noqa: E402

PMACCTD = shutil.which("pmacctd") or "/usr/sbin/pmacctd"
TSHARK = shutil.which("tshark")
PAYLOAD = 200
IP_LEN = 20 + 8 + PAYLOAD


def _low_udp_port() -> int:
    """A free UDP port below 32768, so it is the 'service' (lower) port of the flows."""
    for _ in range(200):
        p = random.randint(20000, 32000)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                continue
            return p
    raise AssertionError("no free UDP port below 32768")


class _Tap:
    """Receives pmacctd's datagrams, keeps a copy, forwards them to the monbus listener."""

    def __init__(self, forward_port):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.forward = ("127.0.0.1", forward_port)
        self.datagrams: list[bytes] = []
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop:
            try:
                d, _ = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            self.datagrams.append(d)
            self.out.sendto(d, self.forward)

    def close(self):
        self.stop = True
        self.thread.join(5)
        self.sock.close()
        self.out.close()


def _pcap(datagrams, path):
    """Wrap datagrams in IPv4/UDP headers (link type 101, raw IP) for tshark."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101))
        for i, d in enumerate(datagrams):
            udp = struct.pack(">HHHH", 40000, 6343, 8 + len(d), 0) + d
            ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xFFFF, 0, 64, 17, 0,
                             socket.inet_aton("127.0.0.1"), socket.inet_aton("127.0.0.1")) + udp
            f.write(struct.pack("<IIII", 1700000000 + i, 0, len(ip), len(ip)) + ip)


def _tshark_flow_totals(pcap, port):
    """(frames, bytes) estimated from tshark's decode: sampling_rate and frame_length of
    every flow sample whose sampled header is UDP to `port`."""
    out = subprocess.run([TSHARK, "-r", str(pcap), "-T", "json", "-d", "udp.port==6343,sflow",
                          "-J", "sflow"], capture_output=True, text=True, timeout=120, check=True)
    frames = nbytes = 0

    def walk(o):
        nonlocal frames, nbytes
        if isinstance(o, dict):
            if "sflow.flow_sample.sampling_rate" in o:
                rate = int(o["sflow.flow_sample.sampling_rate"])
                hdrs = o.get("Raw packet header")
                for h in (hdrs if isinstance(hdrs, list) else [hdrs]):
                    if h and f'"udp.dstport": "{port}"' in json.dumps(h):
                        frames += rate
                        nbytes += rate * int(h["sflow_245.header.frame_length"])
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
    walk(json.loads(out.stdout))
    return frames, nbytes


@pytest.mark.parametrize("rate,count", [(1, 400), (10, 3000)])
def test_pmacctd_sfprobe_estimates(rate, count, sflow_listener, subscribe, tmp_path):
    assert os.path.exists(PMACCTD), "pmacct is not installed (.ci/apt.d/sflow.txt)"
    assert TSHARK, "tshark is not installed (.ci/apt.d/sflow.txt)"
    probe_port, data_port = _low_udp_port(), _low_udp_port()
    while data_port == probe_port:
        data_port = _low_udp_port()
    sub = subscribe("sflow.127_0_0_1.**")
    lst = sflow_listener("--interval", "1")
    tap = _Tap(lst.port)
    conf = tmp_path / "pmacctd.conf"
    conf.write_text(
        "daemonize: false\n"
        "pcap_interface: lo\n"
        # only the test's own traffic: not the sFlow it exports, not other tests on lo
        f"pcap_filter: udp and (dst port {probe_port} or dst port {data_port})\n"
        "plugins: sfprobe\n"
        f"sfprobe_receiver: 127.0.0.1:{tap.port}\n"
        "sfprobe_agentip: 127.0.0.1\n"
        f"sampling_rate: {rate}\n")
    pm = subprocess.Popen([PMACCTD, "-f", str(conf)], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    got = []
    try:
        # pmacctd is capturing once probe packets come back as flow samples on the bus
        def probe_seen():
            assert pm.poll() is None, pm.communicate()[0]
            for _ in range(rate):
                tx.sendto(b"p" * 10, ("127.0.0.1", probe_port))
            got.extend(sub.recv_lines(0.3) or [])
            return any(f".udp.{probe_port}." in ln.series for ln in got)
        wait_for(probe_seen, timeout=60, interval=0.1, what="pmacctd's first flow samples")
        start = len(tap.datagrams)
        for _ in range(count):
            tx.sendto(b"d" * PAYLOAD, ("127.0.0.1", data_port))
        key = f"sflow.127_0_0_1.proto.ipv4.udp.{data_port}."

        def frames_so_far():
            return sum(ln.value * float(ln.meta["interval"]) for ln in got
                       if ln.series == key + "frames")

        expect_min = count if rate == 1 else count - 4 * math.sqrt(count * (rate - 1))

        def all_seen():
            # pmacctd sends a partly filled datagram when the next packet arrives: keep
            # probe traffic going so that the last data samples are exported
            tx.sendto(b"p" * 10, ("127.0.0.1", probe_port))
            got.extend(sub.recv_lines(0.3) or [])
            return frames_so_far() >= expect_min
        try:
            wait_for(all_seen, timeout=60, interval=0.1, what=f"{count} frames estimated")
        except AssertionError:
            raise AssertionError(f"{frames_so_far()} of {count}: " + str(sorted({ln.series for ln in got}))[:3000]) from None
        # a little longer, for anything still in pmacctd's buffer
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            tx.sendto(b"p" * 10, ("127.0.0.1", probe_port))
            got.extend(sub.recv_lines(0.3) or [])
    finally:
        pm.terminate()
        try:
            pm.wait(10)
        except subprocess.TimeoutExpired:
            pm.kill()
        tx.close()
        tap.close()
    frames = frames_so_far()
    nbytes = sum(ln.value * float(ln.meta["interval"]) for ln in got if ln.series == key + "bytes")
    if rate == 1:
        assert frames == count
    else:
        # 1-in-N sampling: the estimate is within 4 standard deviations of the truth
        sigma = math.sqrt(count * (rate - 1))
        assert abs(frames - count) <= 4 * sigma, (frames, count, sigma)
    # every estimated frame is one of ours: a UDP/IPv4 packet of IP_LEN bytes on the wire
    # (pmacctd reports the frame length as IP length + 4, the Ethernet FCS)
    assert IP_LEN * frames <= nbytes <= (IP_LEN + 18) * frames
    # and the same sums straight from tshark's decode of the datagrams pmacctd sent
    pcap = tmp_path / "sflow.pcap"
    _pcap(tap.datagrams[start:] + tap.datagrams[:start], pcap)
    t_frames, t_bytes = _tshark_flow_totals(pcap, data_port)
    assert (t_frames, t_bytes) == (frames, nbytes)
    lost = [ln for ln in got if ln.series == "sflow.127_0_0_1.agent.sub0.lost_datagrams"]
    assert lost and lost[-1].value == 0
