"""The bus end to end over real ZeroMQ sockets on loopback: senders, the relay (in a thread
and as a real `monbus relay` process), spooling, holding, gaps and CURVE."""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import zmq

from helpers import collect, free_port, monbus_cmd, wait_for
from monbus.core.bus import GapTracker, Sender, Subscriber
from monbus.core.relay import Relay
from monbus.core.spool import Spool


def test_patterns_filter_topics_and_paths(relay, subscribe):
    sub = subscribe("snmp.router1", "collectd.web*.cpu-*.**")
    with Sender(relay.input, relay.spool) as s:
        for text in ["snmp.router10.ifHCInOctets 1 1700000000",        # not router1
                     "snmp.router1.ifHCInOctets;ifName=eth0 2 1700000000 mtype=counter",
                     "collectd.web01.cpu-0.cpu-idle 97.5 1700000000",
                     "collectd.web01.memory.memory-used 5 1700000000",  # not cpu-*
                     "collectd.db01.cpu-0.cpu-idle 1 1700000000"]:      # not web*
            s.add(text)
    got = collect(sub, 2)
    assert sorted(x.path for x in got) == ["collectd.web01.cpu-0.cpu-idle",
                                            "snmp.router1.ifHCInOctets"]
    assert sub.recv_lines(0.3) in (None, [])


def test_sender_acknowledged_or_spooled_when_relay_is_down(tmp_path, monbus):
    spool = tmp_path / "spool"
    port = free_port()
    # the same start-up (imports, a sender) with nothing to wait for, measured just before:
    # on a loaded machine the process start alone can take seconds
    t0 = time.monotonic()
    r = monbus("send", "--relay", f"tcp://127.0.0.1:{port}", "--spool", spool, "--timeout", "0.5",
               input="")
    startup = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    t0 = time.monotonic()
    r = monbus("send", "--relay", f"tcp://127.0.0.1:{port}", "--spool", spool, "--timeout", "0.5",
               "nagios.web01.http.time 0.25 1700000000 unit=s")
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    assert took - startup < 2.5, (took, startup)  # never blocks much past --timeout
    msgs = Spool(str(spool)).list()
    assert len(msgs) == 1
    topic, body = Spool(str(spool)).read(msgs[0][0])
    assert topic == b"nagios.web01." and body == b"nagios.web01.http.time 0.25 1700000000 unit=s"
    # without a spool, the loss is reported and the exit code says so
    r = monbus("send", "--relay", f"tcp://127.0.0.1:{port}", "--timeout", "0.3", "a.b 1 2")
    assert r.returncode == 3 and "not acknowledged" in r.stderr


def test_relay_drains_the_spool_senders_wrote(relay, subscribe):
    sp = Spool(relay.spool)
    for i in range(5):
        sp.write(b"app.h.", f"app.h.x {i} 1700000000".encode())
    sub = subscribe("app.**")
    got = collect(sub, 5)
    assert [x.value for x in got] == [0, 1, 2, 3, 4]  # oldest first
    wait_for(lambda: not sp.list(), what="spool drained")


def test_relay_holds_data_until_a_subscriber_comes(relay):
    with Sender(relay.input, None) as s:
        s.add("sflow.sw1.ifInOctets 10 1700000000 mtype=counter")
        assert s.close(5)["acked_lines"] == 1
    assert Spool(relay.spool).list()  # held on disk, not published to nobody
    sub = Subscriber([relay.output], ["sflow.**"])
    try:
        [line] = collect(sub, 1)
        assert line.value == 10
    finally:
        sub.close()


def _start_relay(inp, out, spool, *extra):
    p = subprocess.Popen(monbus_cmd() + ["relay", "--input", inp, "--output", out,
                                         "--spool", str(spool), *extra],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return p


def _wait_listening(port):
    import socket

    def up():
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0
    wait_for(up, 15, what=f"port {port}")


def test_relay_killed_with_sigkill_loses_nothing_it_acknowledged(tmp_path):
    pin, pout = free_port(), free_port()
    inp, out = f"tcp://127.0.0.1:{pin}", f"tcp://127.0.0.1:{pout}"
    spool = tmp_path / "spool"
    relay = _start_relay(inp, out, spool)
    _wait_listening(pin)
    s = Sender(inp, None, timeout=5)
    for i in range(300):
        s.add(f"ganglia.node{i % 3}.load_one {i} 1700000000")
    stats = s.close()
    assert stats["acked_lines"] == 300 and stats["lost_lines"] == 0
    relay.send_signal(signal.SIGKILL)
    relay.wait(10)
    relay = _start_relay(inp, out, spool)
    sub = Subscriber([out], ["ganglia.**"])
    try:
        got = collect(sub, 300, timeout=20)
        assert sorted(x.value for x in got) == list(range(300))
    finally:
        sub.close()
        relay.terminate()
        relay.wait(10)


def test_gaps_are_counted_never_silent(tmp_path):
    # tiny high-water marks and a subscriber that does not read: ZeroMQ drops, the
    # subscriber's per-sender, per-topic sequence numbers count every lost message
    r = Relay(["tcp://127.0.0.1:*"], ["tcp://127.0.0.1:*"], None, sndhwm=5,
              selfmetrics_interval=3600)
    th = threading.Thread(target=r.run, kwargs={"install_signals": False}, daemon=True)
    th.start()
    sub = Subscriber([r.endpoints_out[0]], ["x.**"], rcvhwm=5)
    try:
        wait_for(lambda: r._subs, what="subscription")
        s = Sender(r.endpoints_in[0], None, batch_bytes=1)  # one message per line
        n = 3000
        for i in range(n):
            s.add(f"x.h.m {i} 1700000000")
        assert s.close(20)["acked_lines"] == n
        received = 0
        while sub.recv_raw(1.0) is not None:
            received += 1
        # messages lost at the end of the stream are invisible until the next one arrives:
        s = Sender(r.endpoints_in[0], None)
        s.add("x.h.m -1 1700000000")
        s.close(5)
        while sub.recv_raw(1.0) is not None:
            received += 1
        assert received < n + 1, "high-water marks did not drop anything"
        assert received + sub.gaps.gaps == n + 1
    finally:
        sub.close()
        r.stop()
        th.join(5)


def test_gap_tracker_unit():
    g = GapTracker()
    assert [g.see(b"s", b"t.", q) for q in (1, 2, 5, 6, 6, 7)] == [0, 0, 2, 0, 0, 0]
    assert g.gaps == 2 and g.repeats == 1
    assert g.see(b"s", b"u.", 10) == 0  # another topic has its own sequence
    assert g.see(b"s2", b"t.", 1) == 0  # a restarted relay is a new sender


def test_curve_refuses_a_client_whose_key_is_not_allowed(tmp_path, monbus):
    keys, allowed = tmp_path / "keys", tmp_path / "allowed"
    allowed.mkdir()
    for name in ("relay", "good", "rogue"):
        r = monbus("keygen", keys, name)
        assert r.returncode == 0, r.stderr
    os.replace(keys / "good.key", allowed / "good.key")
    r = Relay(["tcp://127.0.0.1:*"], ["tcp://127.0.0.1:*"], str(tmp_path / "spool"),
              curve_secret=str(keys / "relay.key_secret"), curve_clients=str(allowed),
              selfmetrics_interval=3600)
    th = threading.Thread(target=r.run, kwargs={"install_signals": False}, daemon=True)
    th.start()
    server = str(keys / "relay.key")
    good = Subscriber([r.endpoints_out[0]], ["app.**"], curve_server_key=server,
                      curve_secret=str(keys / "good.key_secret"))
    rogue = Subscriber([r.endpoints_out[0]], ["app.**"], curve_server_key=server,
                       curve_secret=str(keys / "rogue.key_secret"))
    plain = Subscriber([r.endpoints_out[0]], ["app.**"])
    try:
        # a rogue sender is never acknowledged: it spools, and nothing of it is published
        rs = Sender(r.endpoints_in[0], str(tmp_path / "rogue-spool"), timeout=1,
                    curve_server_key=server, curve_secret=str(keys / "rogue.key_secret"))
        rs.add("app.evil.x 666 1700000000")
        st = rs.close()
        assert st["acked_lines"] == 0 and st["spooled_lines"] == 1
        gs = Sender(r.endpoints_in[0], None, timeout=5, curve_server_key=server,
                    curve_secret=str(keys / "good.key_secret"))
        gs.add("app.web01.x 1 1700000000")
        assert gs.close()["acked_lines"] == 1
        [line] = collect(good, 1)
        assert line.value == 1
        assert rogue.recv_lines(1.0) is None
        assert plain.recv_lines(0.5) is None
    finally:
        for s in (good, rogue, plain):
            s.close()
        r.stop()
        th.join(5)


def test_1000_concurrent_sends_with_a_relay_restart_all_arrive(tmp_path):
    pin, pout = free_port(), free_port()
    inp, out = f"tcp://127.0.0.1:{pin}", f"tcp://127.0.0.1:{pout}"
    spool = tmp_path / "spool"
    relay = _start_relay(inp, out, spool)
    _wait_listening(pin)
    sub = Subscriber([out], ["cron.**"])
    n = 1000
    seen: set[int] = set()
    results = []
    env = dict(os.environ, MONBUS_RELAY=inp, MONBUS_SPOOL=str(spool), MONBUS_TIMEOUT="2")

    done = []

    def one(i):
        p = subprocess.run(monbus_cmd() + ["send", f"cron.host{i % 7}.job{i} {i} 1700000000"],
                           env=env, capture_output=True, text=True, timeout=120)
        done.append(i)
        return p.returncode, p.stderr

    stop = threading.Event()

    def restart():
        wait_for(lambda: len(done) >= n // 3 or stop.is_set(), 900, what="a third sent")
        relay.send_signal(signal.SIGKILL)
        relay.wait(10)
        time.sleep(0.5)  # some senders find no relay at all and spool
        return _start_relay(inp, out, spool)

    try:
        with ThreadPoolExecutor(32) as ex:
            rs = ex.submit(restart)
            for res in ex.map(one, range(n)):
                results.append(res)
            relay = rs.result()
        bad = [r for r in results if r[0] != 0]
        assert not bad, bad[:3]
        deadline = time.monotonic() + 60
        while len(seen) < n and time.monotonic() < deadline:
            got = sub.recv_lines(0.5)
            for line in got or ():
                seen.add(int(line.value))
        assert len(seen) == n, f"missing {sorted(set(range(n)) - seen)[:20]}"
    finally:
        stop.set()
        sub.close()
        relay.terminate()
        relay.wait(10)


def test_a_daemon_sender_never_stalls_while_the_relay_is_down(tmp_path):
    # a long-running bridge keeps receiving while its relay is away: after the first
    # timeout, new batches go straight to the spool; once the relay is back, they flow again
    pin, pout = free_port(), free_port()
    inp, out = f"tcp://127.0.0.1:{pin}", f"tcp://127.0.0.1:{pout}"
    spool = tmp_path / "spool"
    s = Sender(inp, str(spool), timeout=0.3, batch_bytes=1, window=4)
    t0 = time.monotonic()
    for i in range(200):
        s.add(f"bridge.h.m {i} 1700000000")
        s.tick()
    # blocking for the 0.3 s timeout even once per window would take 15 s or more
    assert time.monotonic() - t0 < 6.0, "the sender blocked while the relay was down"
    wait_for(lambda: (s.tick() or True) and s.stats["spooled_lines"] == 200, 10,
             what="everything spooled")
    relay = _start_relay(inp, out, spool)
    sub = Subscriber([out], ["bridge.**"])
    try:
        for i in range(200, 210):  # the probe finds the relay again
            s.add(f"bridge.h.m {i} 1700000000")
            s.tick()
            time.sleep(0.2)
        st = s.close(5)
        assert st["lost_lines"] == 0
        seen: set[int] = set()
        deadline = time.monotonic() + 30
        while len(seen) < 210 and time.monotonic() < deadline:
            seen.update(int(x.value) for x in sub.recv_lines(0.5) or ())
        assert sorted(seen) == list(range(210))  # duplicates allowed, nothing lost
    finally:
        sub.close()
        relay.terminate()
        assert relay.wait(10) == 0  # SIGTERM: a clean stop


def test_one_collector_subscribes_to_the_relays_of_many_hosts(tmp_path):
    relays = []
    try:
        for k in range(3):
            r = Relay(["tcp://127.0.0.1:*"], ["tcp://127.0.0.1:*"], str(tmp_path / f"s{k}"),
                      selfmetrics_interval=3600)
            th = threading.Thread(target=r.run, kwargs={"install_signals": False}, daemon=True)
            th.start()
            relays.append((r, th))
        sub = Subscriber([r.endpoints_out[0] for r, _ in relays], ["collectd.**"])
        for k, (r, _) in enumerate(relays):
            wait_for(lambda: r._subs, what="subscription")
            with Sender(r.endpoints_in[0], None) as s:
                s.add(f"collectd.host{k}.load.load.shortterm {k} 1700000000")
        got = collect(sub, 3)
        assert sorted(x.path for x in got) == [f"collectd.host{k}.load.load.shortterm"
                                               for k in range(3)]
        assert sub.gaps.gaps == 0
        sub.close()
    finally:
        for r, th in relays:
            r.stop()
            th.join(5)
