"""The commands as a user runs them: daemon-mode polling with staleness, bad input, the demo,
and a listener that survives garbage."""
from __future__ import annotations

import socket
import subprocess
import time

import pytest

from helpers import collect, free_port, monbus_cmd, wait_for, stop_process
from monbus.bridges.ganglia import xdr


def test_poll_daemon_host_down_stale_metric_and_up_again(gmond, relay, subscribe, tmp_path,
                                                         gtools):
    """gmond with host_tmax 1: a spoofed host that stops reporting is DOWN after 4 s; its
    metric with TMAX 2 is not republished once stale; a new heartbeat brings it UP."""
    gmetric = gtools.need("gmetric")
    g = gmond(modules=False, host_tmax=1)
    conf = tmp_path / "gmetric.conf"
    conf.write_text(gtools.gmetric_conf(g.recv_port))
    spoof = ["-S", "10.9.9.9:ghost.example"]
    subprocess.run([gmetric, "-c", str(conf), "-n", "x", "-v", "1.5", "-t", "float", "-x", "2",
                    *spoof], check=True, timeout=20)
    wait_for(lambda: b"ghost.example" in g.xml(), timeout=20, what="ghost host in gmond's XML")
    sub = subscribe("ganglia.*.ghost_example.**")
    proc = subprocess.Popen(monbus_cmd() + ["ganglia", "poll", f"127.0.0.1:{g.tcp_port}",
                                            "--interval", "0.5", "--relay", relay.input],
                            stderr=subprocess.PIPE, text=True)
    try:
        seen = []

        def until(cond, timeout, what):
            deadline = time.monotonic() + timeout
            while True:
                for ln in sub.recv_lines(0.3) or []:
                    seen.append(ln)
                    if cond(ln, len(seen) - 1):
                        return len(seen) - 1
                assert time.monotonic() < deadline, f"{what}; saw {[x[:2] for x in seen][-8:]}"

        first_x = until(lambda ln, i: ln.path.endswith(".x"), 20, "x never published")
        assert seen[first_x].value == 1.5
        down = until(lambda ln, i: ln.path.endswith(".heartbeat") and ln.value == 1, 30,
                     "ghost never DOWN")
        assert "DOWN" in seen[down].meta["output"]
        assert not any(ln.path.endswith(".x") for ln in seen[down:])
        subprocess.run([gmetric, "-c", str(conf), "-n", "hb", "-H", *spoof], check=True,
                       timeout=20)
        up = until(lambda ln, i: ln.path.endswith(".heartbeat") and ln.value == 0, 30,
                   "ghost never UP again")
        # x is stale now (TN > TMAX 2): the host is UP but the metric is not republished
        until(lambda ln, i: ln.path.endswith(".heartbeat") and ln.value == 0 and i > up, 10,
              "no second poll after UP")
        assert not any(ln.path.endswith(".x") for ln in seen[down:])
    finally:
        stop_process(proc)


def test_listener_survives_garbage_and_reports_it(relay, subscribe):
    sub = subscribe("ganglia.**")
    port = free_port(socket.SOCK_DGRAM)
    proc = subprocess.Popen(monbus_cmd() + ["ganglia", "listen", "--listen", f"127.0.0.1:{port}",
                                            "--relay", relay.input, "--cluster", "c"],
                            stderr=subprocess.PIPE, text=True)
    try:
        assert "monbus ganglia listen" in proc.stderr.readline()
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for junk in (b"", b"\xff" * 3, b"\x00\x00\x00\x89junk", b"\x00\x00\x00\x85" + b"\x7f" * 40):
            s.sendto(junk, ("127.0.0.1", port))
        s.sendto(xdr.encode_metadata("web01", "m", "double", "B", 3, 60, 0), ("127.0.0.1", port))
        s.sendto(xdr.encode_value("web01", "m", xdr.DOUBLE, 2.5), ("127.0.0.1", port))
        lines = collect(sub, 1, timeout=20)
        assert (lines[0].path, lines[0].value) == ("ganglia.c.web01.m", 2.5)
        assert proc.poll() is None
    finally:
        stop_process(proc)
    err = proc.stderr.read()
    assert "unknown message id 137" in err and "000000896a756e6b" in err   # quoted in hex


@pytest.mark.parametrize("args,message", [
    (["poll", "nohostport"], "expected HOST:PORT"),
    (["poll", "127.0.0.1:99999"], "bad port"),
    (["poll", "--max-bytes", "lots"], "expected a size"),
    (["listen", "--listen", "nowhere"], "expected HOST:PORT"),
    (["listen", "--listen", "203.0.113.9:8649"], "cannot listen on"),
    (["emit", "--gmond", "x"], "expected HOST:PORT"),
    (["emit", "--ttl", "0"], "0"),
])
def test_bad_options_one_line_error(monbus, args, message):
    r = monbus("ganglia", *args, timeout=30)
    assert r.returncode != 0
    assert message in r.stderr and "Traceback" not in r.stderr


def test_poll_once_unreachable_source_fails_cleanly(monbus, relay):
    port = free_port()
    r = monbus("ganglia", "poll", f"127.0.0.1:{port}", "--once", "--relay", relay.input)
    assert r.returncode == 1
    assert "Connection refused" in r.stderr and "Traceback" not in r.stderr


def test_demo_feeds_the_real_capture(relay, subscribe):
    from monbus.bridges.ganglia.demo import feed
    sub = subscribe("ganglia.**")
    n = feed(relay.input, None)
    assert n == 158
    lines = collect(sub, n, timeout=20)
    assert any(ln.path == "ganglia.monbus-corpus.spoofed-host_example.monbus_spoofed"
               for ln in lines)


@pytest.mark.parametrize("text,want", [
    ("127.0.0.1:8649", ("127.0.0.1", 8649, None)),
    ("[::1]:8651", ("::1", 8651, None)),
    ("gmetad.example:8652/my cluster/node1", ("gmetad.example", 8652, "/my cluster/node1")),
    ("127.0.0.1:8652/?filter=summary", ("127.0.0.1", 8652, "/?filter=summary")),
])
def test_parse_source(text, want):
    from monbus.bridges.ganglia.poller import parse_source
    src = parse_source(text)
    assert tuple(src) == want
    assert str(src) == text


@pytest.mark.parametrize("text", ["8649", ":8649", "h:0", "h:x", "[::1]8649", "h:8652/a\nb"])
def test_parse_source_rejects(text):
    from monbus.bridges.ganglia.poller import parse_source
    with pytest.raises(ValueError):
        parse_source(text)


def test_listen_refuses_a_port_a_gmond_already_uses(gmond, monbus):
    """Unicast: no SO_REUSEADDR, so the listener cannot silently share gmond's port."""
    g = gmond(modules=False)
    r = monbus("ganglia", "listen", "--listen", f"127.0.0.1:{g.recv_port}", timeout=30)
    assert r.returncode == 1
    assert "cannot listen on" in r.stderr and "pick another port" in r.stderr
    assert "Traceback" not in r.stderr


def test_poll_counts_the_responses_the_exact_path_read(relay, subscribe, monbus):
    """Two sources serving the real gmond dump, one with a comment in it: both are
    published in full, and the run's self-metric xml_exact_path counts the one the fast
    path handed to expat."""
    import threading
    from pathlib import Path
    dump = (Path(__file__).resolve().parents[2] / "data" / "ganglia" /
            "gmond372_local_xml_dump.xml").read_bytes()
    cut = dump.index(b"</HOST>") + len(b"</HOST>")
    servers = []
    for data in (dump, dump[:cut] + b"<!-- a comment gmond never writes -->" + dump[cut:]):
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        servers.append(srv)

        def serve(srv=srv, data=data):
            c, _ = srv.accept()
            c.sendall(data)
            c.close()
        threading.Thread(target=serve, daemon=True).start()
    sub = subscribe("ganglia.**")
    selfm = subscribe("monbus.*.ganglia_poll.*")
    r = monbus("ganglia", "poll", *[f"127.0.0.1:{s.getsockname()[1]}" for s in servers],
               "--once", "--relay", relay.input)
    assert r.returncode == 0, r.stderr
    lines = collect(sub, 2 * 43, timeout=20)
    assert len(lines) == 2 * 43   # 40 numeric metrics and 3 heartbeats, from each source
    counts = {}
    deadline = time.monotonic() + 20
    while "xml_exact_path" not in counts or "polls" not in counts:
        assert time.monotonic() < deadline, counts
        for ln in selfm.recv_lines(0.5) or []:
            counts[ln.path.rsplit(".", 1)[1]] = ln.value
    assert counts["polls"] == 2 and counts["xml_exact_path"] == 1
    for s in servers:
        s.close()
