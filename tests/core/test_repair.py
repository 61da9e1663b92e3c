"""Gap repair: the relay's retention and repair endpoint, the subscriber's repair mode.

Units first (Retention, serve, RepairingGaps; the request parser fuzzed), then real relays
on loopback: messages dropped at a high-water mark come back, a subscriber killed with
messages in its socket buffer is resumed by another from its saved position, eviction and a
wrong relay id are counted, CURVE applies to the repair socket, `monbus relay` options."""
from __future__ import annotations

import json
import os
import subprocess
import threading
import time

import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import free_port, monbus_cmd, wait_for
from monbus.core.bus import Sender, Subscriber, unpack_header
from monbus.core.relay import Relay
from monbus.core.repair import (END, HELLO, MAGIC, MSG, RANGE, RepairingGaps, Retention,
                                repair_endpoint, serve)

RID = b"R" * 16


def _range_req(req: int, rid: bytes, topic: bytes, lo: int, hi: int) -> list:
    return [MAGIC, RANGE, req.to_bytes(4, "big"), rid, topic, lo.to_bytes(8, "big") +
            hi.to_bytes(8, "big")]


def _end(reply) -> dict:
    assert reply[0] == MAGIC and reply[1] == END
    return json.loads(reply[3])


# --- units -----------------------------------------------------------------------------------
def test_repair_endpoint_is_next_to_the_output():
    assert repair_endpoint("tcp://127.0.0.1:7702") == "tcp://127.0.0.1:7703"
    assert repair_endpoint("tcp://[::1]:7702") == "tcp://[::1]:7703"
    assert repair_endpoint("tcp://127.0.0.1:*") == "tcp://127.0.0.1:*"
    assert repair_endpoint("ipc:///run/monbus/out") == "ipc:///run/monbus/out.repair"


def test_retention_evicts_the_oldest_message_of_any_topic_first():
    r = Retention(max_bytes=100)
    for seq in range(1, 6):
        r.add(b"a.", seq, b"x" * 20)           # 100 bytes: all fit
    r.add(b"b.", 1, b"y" * 30)                 # evicts a.1 and a.2
    assert (r.bytes, r.messages) == (90, 4)
    assert r.first(b"a.", 5) == 3 and r.first(b"b.", 1) == 1
    assert [s for s, _ in r.get(b"a.", 1, 10, 1 << 20)] == [3, 4, 5]
    assert [s for s, _ in r.get(b"a.", 4, 4, 1 << 20)] == [4]
    assert [s for s, _ in r.get(b"a.", 1, 10, 30)] == [3, 4]    # page bound
    r.add(b"c.", 1, b"z" * 500)                # larger than the bound: evicts everything
    assert (r.bytes, r.messages) == (0, 0)
    assert r.first(b"c.", 1) == 2 and list(r.get(b"c.", 1, 1, 1 << 20)) == []
    r.add(b"c.", 2, b"ok")
    assert list(r.get(b"c.", 1, 2, 1 << 20)) == [(2, b"ok")]
    with pytest.raises(ValueError):            # seqs of a topic are contiguous
        r.add(b"c.", 5, b"gap")


def test_retention_compacts_under_long_streams():
    r = Retention(max_bytes=1000)
    for seq in range(1, 20001):
        r.add(b"t.", seq, b"0123456789")
    assert r.messages == 100 and r.first(b"t.", 20000) == 19901
    assert [s for s, _ in r.get(b"t.", 19999, 20000, 1 << 20)] == [19999, 20000]
    assert len(r._order) < 10_000 and len(r._topics[b"t."].bodies) < 3000


def test_serve_answers_hello_ranges_and_says_what_is_gone():
    r = Retention(max_bytes=50)
    for seq in range(1, 11):
        r.add(b"t.", seq, b"%09d" % seq)       # 9 bytes each: 5 retained (6..10)
    last = {b"t.": 10}
    out, how = serve(r, RID, last, [MAGIC, HELLO])
    assert how == "hello" and out == [[MAGIC, HELLO, RID]]
    # everything after 3: 4 and 5 are evicted, 6..10 come with their original headers
    out, how = serve(r, RID, last, _range_req(7, RID, b"t.", 4, 0))
    assert how == "evicted"
    msgs, end = out[:-1], _end(out[-1])
    assert [unpack_header(m[3])[1:] for m in msgs] == [(RID, s) for s in range(6, 11)]
    assert all(m[:3] == [MAGIC, MSG, b"t."] for m in msgs) and msgs[0][4] == b"000000006"
    assert out[-1][2] == (7).to_bytes(4, "big")
    assert end == {"lo": 4, "hi": 10, "unavailable": [[4, 5]], "more": None, "error": None}
    # a page bound cuts the reply and says where to go on
    out, how = serve(r, RID, last, _range_req(8, RID, b"t.", 6, 9), page_bytes=18)
    assert how == "served" and len(out) == 3 and _end(out[-1])["more"] == 8
    # beyond what was published: nothing, and nothing unavailable
    out, how = serve(r, RID, last, _range_req(9, RID, b"t.", 11, 0))
    assert how == "served" and _end(out[0]) == {"lo": 11, "hi": 10, "unavailable": [],
                                                "more": None, "error": None}
    # an unknown topic: never published, so nothing to send
    out, how = serve(r, RID, last, _range_req(9, RID, b"u.", 1, 0))
    assert how == "served" and len(out) == 1
    # another relay's id: a restarted relay (new id) cannot repair the old one's stream
    out, how = serve(r, RID, last, _range_req(10, b"X" * 16, b"t.", 1, 0))
    assert how == "unknown_relay" and "unknown relay id" in _end(out[0])["error"]


@pytest.mark.parametrize("frames", [
    [],                                              # nothing
    [b"MBR0", HELLO],                                # another protocol version
    [MAGIC],                                         # no operation
    [MAGIC, b"Z"],                                   # unknown operation
    [MAGIC, HELLO, b"extra"],                        # hello with a payload
    [MAGIC, RANGE, b"\0\0\0\1", RID, b"t."],         # range without the range
    [MAGIC, RANGE, b"\0\1", RID, b"t.", b"\0" * 16],  # short request id
    [MAGIC, RANGE, b"\0\0\0\1", b"short", b"t.", b"\0" * 16],  # short relay id
    [MAGIC, RANGE, b"\0\0\0\1", RID, b"t.", b"\0" * 15],       # short range
])
def test_serve_rejects_bad_requests(frames):
    assert serve(Retention(), RID, {}, frames) == ([], "bad")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=20), max_size=7))
def test_serve_never_raises_on_any_request(frames):
    r = Retention(100)
    r.add(b"t.", 1, b"x")
    out, how = serve(r, RID, {b"t.": 1}, frames)
    assert how in ("hello", "served", "evicted", "unknown_relay", "bad")


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 30), st.sets(st.integers(1, 30)), st.randoms(use_true_random=False))
def test_repairing_gaps_delivers_each_message_once_and_counts_only_what_is_given_up(
        n, dropped, rnd):
    """Live messages 1..n with some dropped; repairs of the dropped ones arrive later in any
    order, some of them twice, some never: each seq is delivered once, and exactly the ones
    never repaired are counted lost when their ranges are given up."""
    g = RepairingGaps()
    delivered = []
    holes = []
    for seq in range(1, n + 1):
        if seq in dropped and seq != 1:
            continue
        ok, hole = g.see(b"s", b"t.", seq)
        assert ok
        delivered.append(seq)
        if hole:
            holes.append(hole)
    assert sorted(s for a, b in holes for s in range(a, b + 1)) == \
        sorted(s for s in dropped if 1 < s < max(delivered) + 1)
    missing = [s for a, b in holes for s in range(a, b + 1)]
    repaired = [s for s in missing if rnd.random() < 0.6]
    replays = repaired + [s for s in repaired if rnd.random() < 0.3] + delivered[:2]
    rnd.shuffle(replays)
    for seq in replays:
        if g.see(b"s", b"t.", seq, repaired=True)[0]:
            delivered.append(seq)
    assert sorted(delivered) == sorted(set(delivered))
    assert g.positions()[(b"s", b"t.")] == (min(set(missing) - set(repaired)) - 1
                                           if set(missing) - set(repaired) else max(delivered))
    lost = sum(g.give_up(b"s", b"t.", a, b) for a, b in holes)
    assert lost == g.gaps == len(set(missing) - set(repaired))
    assert g.repaired == len(set(repaired)) and not g.holes
    assert g.positions()[(b"s", b"t.")] == max(delivered)


# --- with real relays --------------------------------------------------------------------------
class _RelayThread:
    def __init__(self, tmp_path, **kw):
        kw.setdefault("selfmetrics_interval", 3600)
        self.relay = Relay(["tcp://127.0.0.1:*"], ["tcp://127.0.0.1:*"], str(tmp_path / "spool"),
                           **kw)
        self.thread = threading.Thread(target=self.relay.run, kwargs={"install_signals": False},
                                       daemon=True)
        self.thread.start()
        self.input = self.relay.endpoints_in[0]
        self.output = self.relay.endpoints_out[0]
        self.repair = self.relay.endpoints_repair[0] if self.relay.endpoints_repair else None

    def stop(self):
        self.relay.stop()
        self.thread.join(5)


@pytest.fixture
def relay_thread(tmp_path):
    made = []

    def make(**kw):
        r = _RelayThread(tmp_path / f"r{len(made)}", **kw)
        made.append(r)
        return r
    yield make
    for r in made:
        r.stop()


def _send(relay, first: int, count: int, topic="app.h"):
    """`count` messages of one line each: values first..first+count-1."""
    s = Sender(relay.input, None, 10.0, batch_bytes=1)
    for v in range(first, first + count):
        s.add(f"{topic}.x {v} 1700000000")
    assert s.close(30.0)["lost_lines"] == 0


def _values(sub, n: int, timeout: float = 30.0) -> list[int]:
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < n:
        left = deadline - time.monotonic()
        assert left > 0, f"got {len(got)} of {n}; lost {sub.gaps.gaps}"
        for line in sub.recv_lines(min(left, 0.5)) or ():
            got.append(int(line.value))
    return got


def _subscribed(r, sub):
    wait_for(lambda: r.relay._subs, what="the subscription at the relay")
    return sub


def test_messages_dropped_at_the_high_water_mark_are_repaired(relay_thread):
    """The relay publishes 3000 messages to a subscriber that reads none of them until the
    end: ZeroMQ drops most at the high-water marks; repair brings every one back, once."""
    r = relay_thread(sndhwm=20)
    sub = _subscribed(r, Subscriber([r.output], ["app.**"], rcvhwm=20, repair=True,
                                    repair_connect=[r.repair]))
    plain = _subscribed(r, Subscriber([r.output], ["app.**"], rcvhwm=20))
    try:
        _send(r, 1, 3000)
        # a drop at the very end of a stream is seen when the next message of the topic
        # comes (monitoring data is periodic) or, after a restart, from the saved position
        got = _values(sub, 2000)
        _send(r, 3001, 1)
        got += _values(sub, 1001)
        assert sorted(got) == list(range(1, 3002))
        assert sub.gaps.gaps == 0 and sub.gaps.repaired > 0
        assert sub.recv_lines(0.3) is None          # nothing twice
        # the same without repair: the drop is counted, never silent
        got = []
        while (lines := plain.recv_lines(0.5)) is not None:
            got.extend(lines)
        vals = [int(x.value) for x in got]
        assert len(got) < 3001
        assert plain.gaps.gaps == max(vals) - min(vals) + 1 - len(vals) > 0
        c = r.relay.counters
        assert c["repairs_served"] >= 1 and c["repaired_messages"] >= sub.gaps.repaired
    finally:
        sub.close()
        plain.close()


def test_a_killed_subscriber_is_resumed_from_its_saved_position(relay_thread):
    """A subscriber dies with messages in its socket buffer (closed without reading them, as
    SIGKILL would); a new one resumes from the saved position and gets everything after it,
    though nothing newer is published."""
    r = relay_thread()
    first = _subscribed(r, Subscriber([r.output], ["app.**"], repair=True,
                                      repair_connect=[r.repair]))
    _send(r, 1, 200)
    _send(r, 1, 10, topic="app.other")
    got = _values(first, 50)
    saved = first.gaps.positions()
    first.close()                                   # 160 messages die with it
    wait_for(lambda: not r.relay._subs, what="the relay to see the subscriber gone")
    second = Subscriber([r.output], ["app.**"], repair=True, repair_connect=[r.repair])
    try:
        second.resume(saved)
        got += _values(second, 150)
        assert sorted(got) == list(range(1, 201))
        # app.other was never seen by the first: its 10 messages are asked for once the
        # next one shows that the topic exists
        _send(r, 11, 1, topic="app.other")
        assert sorted(_values(second, 11)) == list(range(1, 12))
        assert second.gaps.gaps == 0
        assert second.recv_lines(0.3) is None
    finally:
        second.close()


def test_what_the_relay_no_longer_retains_is_counted_lost(relay_thread):
    r = relay_thread(retain_bytes=2000)
    first = _subscribed(r, Subscriber([r.output], ["app.**"]))
    _send(r, 1, 10)
    _values(first, 1)
    saved = first.gaps.positions()                 # seq 1 of app.h.
    first.close()
    wait_for(lambda: not r.relay._subs, what="the relay to see the subscriber gone")
    # the relay holds (spools) app.** while nobody subscribes: subscribe something else so
    # these 200 messages are published, and evict 2..n from the small retention
    other = _subscribed(r, Subscriber([r.output], ["app.**"]))
    _send(r, 11, 200)
    assert len(_values(other, 200)) == 200
    other.close()
    second = Subscriber([r.output], ["app.**"], repair=True, repair_connect=[r.repair])
    try:
        second.resume(saved)
        size = len("app.h.x 100 1700000000")
        kept = 2000 // size                          # what fits in the retention
        got = _values(second, kept)
        assert sorted(got) == list(range(211 - kept, 211))
        wait_for(lambda: second.recv_lines(0.1) is None and not second.repair.busy, 10,
                 what="the repair to end")
        assert second.gaps.gaps == 210 - 1 - kept
        assert second.repair.stats["repair_evicted"] == 1
        assert r.relay.counters["repairs_evicted"] == 1
    finally:
        second.close()


def test_a_position_from_another_relay_is_not_repaired(relay_thread):
    r = relay_thread()
    sub = Subscriber([r.output], ["app.**"], repair=True, repair_connect=[r.repair])
    try:
        sub.resume({(b"X" * 16, b"app.h."): 5})
        wait_for(lambda: sub.recv_lines(0.1) is None and not sub.repair.busy, 10,
                 what="the request to be given up")
        assert sub.repair.stats["repair_unknown_relay"] == 1
        # asked directly (a relay that restarted has a new id): the relay says so
        d = zmq.Context.instance().socket(zmq.DEALER)
        d.linger = 0
        d.connect(r.repair)
        d.send_multipart(_range_req(3, b"X" * 16, b"app.h.", 1, 0))
        assert d.poll(10_000)
        reply = d.recv_multipart()
        assert "unknown relay id" in _end(reply)["error"]
        d.send_multipart([b"junk"])
        wait_for(lambda: r.relay.counters["bad_repair_requests"] == 1, what="bad request count")
        assert r.relay.counters["repairs_unknown_relay"] == 1
        d.close()
    finally:
        sub.close()


def test_repair_endpoint_speaks_curve_only_to_allowed_keys(tmp_path, relay_thread, monbus):
    keys, allowed = tmp_path / "keys", tmp_path / "allowed"
    allowed.mkdir()
    for name in ("relay", "good", "rogue"):
        assert monbus("keygen", keys, name).returncode == 0
    os.replace(keys / "good.key", allowed / "good.key")
    server = str(keys / "relay.key")
    r = relay_thread(curve_secret=str(keys / "relay.key_secret"), curve_clients=str(allowed),
                     sndhwm=20)
    good = Subscriber([r.output], ["app.**"], curve_server_key=server, rcvhwm=20,
                      curve_secret=str(keys / "good.key_secret"), repair=True,
                      repair_connect=[r.repair])
    rogue = Subscriber([r.output], ["app.**"], curve_server_key=server, repair=True,
                       curve_secret=str(keys / "rogue.key_secret"), repair_connect=[r.repair],
                       repair_timeout=1.0)
    try:
        wait_for(lambda: r.relay._subs, what="the subscription")
        wait_for(lambda: good.recv_raw(0.05) is None and good.repair.named, 10,
                 what="the good key's hello answered")
        _send_curve(r, server, keys, 1, 2000)
        got = _values(good, 1500)
        _send_curve(r, server, keys, 2001, 1)    # shows a drop at the end of the stream
        got += _values(good, 501)
        assert sorted(got) == list(range(1, 2002)) and good.gaps.gaps == 0
        # the rogue key is never answered: its hello stays unanswered, its requests time out
        rogue.resume({(r.relay.id, b"app.h."): 0})
        wait_for(lambda: rogue.recv_lines(0.1) is None and rogue.repair.stats["repair_timeouts"],
                 10, what="the rogue request to time out")
        assert rogue.stats["messages"] == 0 and not rogue.repair.named
    finally:
        good.close()
        rogue.close()


def _send_curve(r, server, keys, first, n):
    s = Sender(r.input, None, 10.0, batch_bytes=1, curve_server_key=server,
               curve_secret=str(keys / "good.key_secret"))
    for v in range(first, first + n):
        s.add(f"app.h.x {v} 1700000000")
    assert s.close(30.0)["lost_lines"] == 0


def test_monbus_relay_retain_and_repair_options(tmp_path):
    pin, pout, prep = free_port(), free_port(), free_port()
    proc = subprocess.Popen(monbus_cmd() + [
        "relay", "--input", f"tcp://127.0.0.1:{pin}", "--output", f"tcp://127.0.0.1:{pout}",
        "--repair", f"tcp://127.0.0.1:{prep}", "--retain", "1M", "--selfmetrics-interval", "3600"],
        stderr=subprocess.PIPE, text=True)
    d = zmq.Context.instance().socket(zmq.DEALER)
    d.linger = 0
    try:
        d.connect(f"tcp://127.0.0.1:{prep}")
        d.send_multipart([MAGIC, HELLO])
        assert d.poll(20_000), "no hello from the relay's repair endpoint"
        magic, op, rid = d.recv_multipart()
        assert (magic, op, len(rid)) == (MAGIC, HELLO, 16)
    finally:
        d.close()
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert f"repair tcp://127.0.0.1:{prep}" in err
    bad = subprocess.run(monbus_cmd() + ["relay", "--retain", "lots"], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "'lots'" in bad.stderr
    bad = subprocess.run(monbus_cmd() + ["relay", "--retain", "0", "--repair",
                                         f"tcp://127.0.0.1:{prep}"], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 1 and "needs a retention" in bad.stderr


def test_a_relay_without_retention_has_no_repair_endpoint(relay_thread):
    r = relay_thread(retain_bytes=0)
    assert r.relay.endpoints_repair == [] and r.relay.retention is None


def _big_send(relay, first: int, count: int, lines: int = 40):
    """`count` messages of `lines` lines each (about 2.5 KB): line values count up from first."""
    s = Sender(relay.input, None, 10.0, batch_bytes=1)
    v = first
    for _ in range(count):
        s.add_many("app.h", [f"app.h.x{i} {v + i} 1700000000 text={'x' * 40}"
                             for i in range(lines)])
        v += lines
        s.tick()
    assert s.close(60.0)["lost_lines"] == 0


@pytest.mark.parametrize("repair", [True, False])
def test_monbus_tail_repairs_what_a_stopped_process_missed(relay_thread, repair):
    """`monbus tail` is SIGSTOPped while 4,000 messages (10 MB) stream past it: the kernel's
    buffers fill and the relay drops at its high-water mark.  After SIGCONT, with repair (the
    default of every subscriber command) every line arrives once; with --no-repair the loss is
    reported on stderr."""
    import signal
    r = relay_thread(sndhwm=20)
    n_msgs, per = 4000, 40
    total = n_msgs * per
    cmd = monbus_cmd() + ["tail", "--connect", r.output, "app.**", "--timeout", "300"]
    cmd += ["--repair-connect", r.repair] if repair else ["--no-repair"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    values: list[int] = []
    reader = threading.Thread(target=lambda: values.extend(int(ln.split()[1])
                                                           for ln in proc.stdout), daemon=True)
    reader.start()
    try:
        wait_for(lambda: r.relay._subs, timeout=60, what="tail's subscription at the relay")
        _big_send(r, 0, 1, per)                                 # tail is up and reading
        wait_for(lambda: len(values) == per, timeout=60, what="tail's first lines")
        os.kill(proc.pid, signal.SIGSTOP)
        _big_send(r, per, n_msgs - 2, per)
        os.kill(proc.pid, signal.SIGCONT)
        time.sleep(1.0)
        _big_send(r, total - per, 1, per)                       # the last: makes a tail hole seen
        wait_for(lambda: values and max(values) == total - 1 and
                 (not repair or len(values) >= total), timeout=120, what="the last line")
    finally:
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=60)[1]
        reader.join(10)
    assert proc.returncode == 0, err
    if repair:
        assert sorted(values) == list(range(total)), (len(values), err)
        assert "lost" not in err
    else:
        assert len(values) < total
        assert "monbus tail: " in err, (len(values), total, err)
        lost = int(err.split("monbus tail: ")[1].split()[0])
        assert lost > 0 and lost * per == total - len(values), err
