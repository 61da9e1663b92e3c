"""`monbus carbon` options end to end: rates, tag modes, prefix, the three transports,
replication to several carbons, bad input and bad options."""
from __future__ import annotations

import socket

import pytest

from helpers import wait_for
from monbus.core.bus import Sender

LINES = ["opt.sw1.if;port=1 4294967000 1700000000 mtype=counter",
         "opt.sw1.if;port=1 700 1700000010 mtype=counter",          # 32-bit wrap: 99.6/s
         "opt.sw1.if;port=1 800 1700000020 mtype=counter",          # 10/s
         "opt.sw1.if;port=1 5 1700000030 mtype=counter",            # reset: nothing
         "opt.sw1.temp;port=1 41.5 1700000030 mtype=gauge unit=C"]


def send(relay, lines):
    s = Sender(relay.input, None, 10.0)
    for x in lines:
        s.add(x)
    assert s.close(30.0)["lost_lines"] == 0


def start(daemon, relay, *args):
    p = daemon("carbon", "--connect", relay.output, "--selfmetrics-interval", "0",
               "--relay", relay.input, "--repair-connect", relay.relay.endpoints_repair[0],
               *args, "opt.**")
    wait_for(lambda: b"opt." in relay.relay._subs or p.proc.poll() is not None, 60,
             what="subscription")
    assert p.proc.poll() is None, p.text()
    return p


@pytest.mark.parametrize("transport", ["tcp", "graphyte"])
def test_rates_fold_prefix(relay, daemon, line_counter, transport):
    lc = line_counter()
    p = start(daemon, relay, "--carbon", f"127.0.0.1:{lc.port}", "--transport", transport,
              "--rates", "--tags", "fold", "--prefix", "dc1")
    send(relay, LINES)
    wait_for(lambda: len(lc.lines) >= 3, 60, what="lines at the receiver")
    assert sorted(lc.lines) == sorted(["dc1.opt.sw1.if.port.1 99.6 1700000010",
                                       "dc1.opt.sw1.if.port.1 10 1700000020",
                                       "dc1.opt.sw1.temp.port.1 41.5 1700000030"])
    assert p.stop() == 0


def test_udp_transport_and_replication(relay, daemon, line_counter):
    lc = line_counter()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    u.settimeout(10)
    p = start(daemon, relay, "--carbon", f"127.0.0.1:{u.getsockname()[1]}", "--transport",
              "udp", "--udp-size", "600", "--tags", "drop")
    many = [f"opt.h{i % 3}.x {i} 1700000000" for i in range(200)]
    send(relay, many)
    got = []
    while len(got) < 200:
        d, _ = u.recvfrom(70000)
        assert len(d) <= 600 and d.endswith(b"\n")
        got += d.decode().splitlines()
    assert sorted(got) == sorted(many)
    p.stop()
    u.close()
    # replicate: every carbon gets every line
    a, b = line_counter(), line_counter()
    p = start(daemon, relay, "--carbon", f"127.0.0.1:{a.port}", "--carbon",
              f"127.0.0.1:{b.port}")
    send(relay, many[:50])
    wait_for(lambda: len(a.lines) == 50 and len(b.lines) == 50, 60, what="both carbons")
    assert sorted(a.lines) == sorted(b.lines) == sorted(many[:50])
    assert p.stop() == 0


def test_bad_lines_on_the_bus_are_counted_not_forwarded(relay, daemon, line_counter, subscribe):
    lc = line_counter()
    msub = subscribe("monbus.**")
    p = start(daemon, relay, "--carbon", f"127.0.0.1:{lc.port}", "--tags", "drop",
              "--selfmetrics-interval", "1")
    send(relay, ["opt.h.x 1 1700000000", "opt.h.y notanumber 1700000000",
                 "opt.h.z 2 1700000000"])
    wait_for(lambda: len(lc.lines) == 2, 60, what="good lines")
    assert sorted(lc.lines) == ["opt.h.x 1 1700000000", "opt.h.z 2 1700000000"]

    seen = {}

    def bad_count():
        for line in msub.recv_lines(0.5) or ():
            seen[line.path.split(".carbon.", 1)[-1]] = line
        return ("bad_lines" in seen and seen["bad_lines"].value == 1 and "spool_bytes" in seen
                and seen["sent_lines"].value == 2)
    wait_for(bad_count, 60, what="bad_lines self-metric")
    assert seen["bad_lines"].meta["mtype"] == "counter"
    assert seen["spool_bytes"].meta["mtype"] == "gauge"
    assert seen["received_lines"].value == 3
    assert "bad line on the bus, not sent: value is not a number" in p.text()
    assert p.stop() == 0


@pytest.mark.parametrize("args,msg", [
    (["--carbon", "nohost"], "HOST:PORT"),
    (["--carbon", "a:1", "--mode", "shard"], "at least two"),
    (["--carbon", "a:1", "--carbon", "a:2", "--mode", "shard"], "INSTANCE"),
    (["--carbon", "a:1", "--carbon", "a:1"], "twice"),
    (["--max-rate", "10"], "--rates"),
    (["--retention", "bogus"], "retention"),
])
def test_bad_options_one_line_error(monbus, args, msg):
    r = monbus("carbon", *args, timeout=30)
    assert r.returncode != 0 and msg in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("repair", [True, False])
def test_messages_missed_while_dead_are_repaired_or_reported(relay, daemon, line_counter,
                                                             subscribe, tmp_path, repair):
    """While monbus carbon is dead, another subscriber keeps the relay publishing (so it does
    not hold).  After the restart monbus carbon asks the relay for everything after the
    positions saved with its spool and gets the three messages; with --no-repair it knows
    from the sequence numbers how many it missed, and says so."""
    import signal
    lc = line_counter()
    spool = tmp_path / "cs"
    other = subscribe("opt.h")       # topic prefix opt.h. (monbus carbon's is opt.)
    args = ("--carbon", f"127.0.0.1:{lc.port}", "--spool", spool,
            *(() if repair else ("--no-repair",)))
    p = start(daemon, relay, *args)
    send(relay, ["opt.h.x 1 1700000000"])
    wait_for(lambda: len(lc.lines) == 1, 60, what="first line")
    p.stop(signal.SIGKILL)
    wait_for(lambda: b"opt." not in relay.relay._subs, 60, what="the relay to see it gone")
    for k in range(3):              # three messages only the other subscriber gets
        send(relay, [f"opt.h.x {k + 2} 1700000000"])
    assert len([x for _ in range(3) for x in other.recv_lines(5) or ()]) >= 1
    p2 = start(daemon, relay, *args)
    if repair:   # they come back at start, with no newer message to show the gap
        wait_for(lambda: len(lc.lines) == 4, 60, what="the three missed lines")
        assert sorted(lc.lines) == [f"opt.h.x {k} 1700000000" for k in range(1, 5)]
    send(relay, ["opt.h.x 9 1700000000"])
    wait_for(lambda: "9 1700000000" in " ".join(lc.lines), 60, what="the line after restart")
    if repair:
        wait_for(lambda: "3 bus messages missed and asked again" in p2.text(), 10,
                 what="the repair report")
        assert "lost" not in p2.text()
    else:
        wait_for(lambda: "3 bus messages lost" in p2.text(), 10, what="the loss report")
    assert p2.stop() == 0


def test_without_spool_undelivered_lines_are_reported_at_exit(relay, daemon):
    """No --spool and carbon unreachable: on SIGTERM the lines still queued in memory are
    reported (exit status 3), never dropped silently."""
    from helpers import free_port
    p = start(daemon, relay, "--carbon", f"127.0.0.1:{free_port()}", "--drain-timeout", "0.5")
    send(relay, ["opt.h.x 1 1700000000", "opt.h.y 2 1700000000"])
    wait_for(lambda: "keeping data" in p.text(), 60, what="the first failed send")
    assert p.stop() == 3
    assert "2 lines not delivered" in p.text()
