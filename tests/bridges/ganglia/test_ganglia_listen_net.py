"""`monbus ganglia listen` on a multicast group (IPv4 and IPv6) and on IPv6 unicast, fed by
the real `gmetric`; and gmond 3.7's `derivative` slope, through the XDR listener and the XML
poller.

Multicast without leaving the host: the loopback interface here has no MULTICAST flag, so
the group is joined on the default interface (as gmond does) and gmetric sends with a TTL
(hop limit) of 0 (`ttl = 0` in its udp_send_channel): the kernel loops the datagram back to
the local members of the group and never puts it on the wire.
"""
from __future__ import annotations

import socket
import subprocess
import time

import pytest

from helpers import free_port, monbus_cmd, stop_process

V4_GROUP = "239.2.11.71"      # gmond's default channel (a free port keeps tests apart)
V6_GROUP = "ff15::2:11:71"    # site-local transient group, no route needed

# (gmetric arguments, path tail, value, unit, mtype)
SENT = [
    (["-n", "t_int32", "-v", "-2000000000", "-t", "int32", "-u", "items"], "t_int32",
     -2000000000, "items", "gauge"),
    (["-n", "t_double", "-v", "2.5e-3", "-t", "double"], "t_double", 0.0025, None, "gauge"),
    (["-n", "t_counter", "-v", "4000000000", "-t", "uint32", "-s", "positive", "-u", "bytes"],
     "t_counter", 4000000000, "bytes", "counter"),
    (["-n", "t_derive", "-v", "17", "-t", "uint32", "-s", "derivative", "-u", "pkts"],
     "t_derive", 17, "pkts", "derive"),
]


def _listener(relay, listen: str, *args):
    proc = subprocess.Popen(monbus_cmd() + ["ganglia", "listen", "--listen", listen,
                                            "--relay", relay.input, "--cluster", "net",
                                            *args],
                            stderr=subprocess.PIPE, text=True)
    first = proc.stderr.readline()   # printed once the sockets are bound (and joined)
    assert "monbus ganglia listen" in first, first + proc.stderr.read()
    return proc


def _send_and_check(gtools, tmp_path, sub, channel: str):
    binary = gtools.need("gmetric")
    conf = tmp_path / "gmetric.conf"
    conf.write_text(f'globals {{\n  override_hostname = "node01.monbus.test"\n}}\n'
                    f"udp_send_channel {{\n{channel}}}\n")
    for args, *_ in SENT:
        r = subprocess.run([binary, "-c", str(conf), *args], capture_output=True, text=True,
                           timeout=20)
        assert r.returncode == 0, r.stderr
    want = {f"ganglia.net.node01_monbus_test.{tail}": (v, u, m) for _, tail, v, u, m in SENT}
    got = {}
    deadline = time.monotonic() + 30
    while set(want) - set(got):
        assert time.monotonic() < deadline, f"missing {sorted(set(want) - set(got))}"
        for ln in sub.recv_lines(0.5) or []:
            got[ln.path] = ln
    for path, (value, unit, mtype) in want.items():
        ln = got[path]
        assert (ln.value, ln.meta.get("unit"), ln.meta["mtype"]) == (value, unit, mtype), ln
    assert got["ganglia.net.node01_monbus_test.t_derive"].meta["slope"] == "derivative"


@pytest.mark.parametrize("group,wildcard,listen", [
    (V4_GROUP, "0.0.0.0", "{group}:{port}"),
    (V6_GROUP, "::", "[{group}]:{port}"),
], ids=["ipv4", "ipv6"])
def test_listen_on_a_multicast_group(relay, subscribe, gtools, tmp_path, group, wildcard, listen):
    port = free_port(socket.SOCK_DGRAM, wildcard)
    sub = subscribe("ganglia.**")
    proc = _listener(relay, listen.format(group=group, port=port), "--multicast-group", group)
    try:
        _send_and_check(gtools, tmp_path, sub,
                        f"  mcast_join = {group}\n  port = {port}\n  ttl = 0\n")
    finally:
        stop_process(proc)


def test_listen_on_ipv6_loopback(relay, subscribe, gtools, tmp_path):
    port = free_port(socket.SOCK_DGRAM, "::1")
    sub = subscribe("ganglia.**")
    proc = _listener(relay, f"[::1]:{port}")
    try:
        _send_and_check(gtools, tmp_path, sub, f"  host = ::1\n  port = {port}\n")
    finally:
        stop_process(proc)


def test_derivative_slope_polled_from_gmond_xml(gmond, relay, subscribe, monbus, gtools,
                                                tmp_path):
    """gmetric -s derivative into a real gmond: its XML says SLOPE="derivative", and the
    poller publishes mtype=derive (positive stays counter)."""
    from helpers import wait_for
    g = gmond(modules=False)
    binary = gtools.need("gmetric")
    conf = tmp_path / "gmetric.conf"
    conf.write_text(gtools.gmetric_conf(g.recv_port))
    for args, *_ in SENT[2:]:
        subprocess.run([binary, "-c", str(conf), *args], check=True, timeout=20)
    wait_for(lambda: b'SLOPE="derivative"' in g.xml() and b'NAME="t_counter"' in g.xml(),
             timeout=20, what="the derivative metric in gmond's XML")
    sub = subscribe("ganglia.*.*.t_*")
    r = monbus("ganglia", "poll", f"127.0.0.1:{g.tcp_port}", "--once", "--relay", relay.input)
    assert r.returncode == 0, r.stderr
    got = {}
    deadline = time.monotonic() + 20
    while len(got) < 2:
        assert time.monotonic() < deadline, got
        for ln in sub.recv_lines(0.5) or []:
            got[ln.path.rsplit(".", 1)[1]] = ln
    assert (got["t_derive"].value, got["t_derive"].meta["mtype"],
            got["t_derive"].meta["slope"]) == (17, "derive", "derivative")
    assert got["t_counter"].meta["mtype"] == "counter"
