"""Gap repair: a subscriber asks the relay again for the messages it missed.

Strategy:
- The relay keeps a bounded *retention* of what it published lately: per topic, the bodies of
  the last messages, indexed by its own per-topic sequence number (`Retention`; the bound is
  in bytes over all topics, the oldest message is evicted first).
- It answers requests on a ROUTER socket, the *repair endpoint* (by default the output
  endpoint's port + 1, so a subscriber finds it without configuration; CURVE like the other
  sockets).  A request names the relay id, a topic and a sequence range, or "everything
  after seq N"; the reply is those messages with their original headers, then an end marker
  that says which part of the range is no longer retained (evicted) and where to continue if
  the reply was cut at the page size.
- A subscriber in repair mode (`RepairClient`, used by `bus.Subscriber(repair=True)`) tracks,
  per (relay id, topic), the highest sequence seen and the *holes* below it.  A hole in the
  live stream (a message dropped at a high-water mark, or in a socket buffer of a process
  killed with SIGKILL) is requested at once; a restarted process asks for everything after
  the position it saved.  Repaired messages are delivered as they arrive, after newer ones
  (consumers that need order sort by timestamp; carbon does not care), and a message that
  arrives twice (live and repaired) is delivered once.  Only what the relay no longer
  retains, or a relay that does not answer within the timeout, counts as lost (`gaps`).

Wire format (all frames bytes; numbers big-endian):
  request   [b"MBR1", b"H"]                               -> [b"MBR1", b"H", relay id]
            [b"MBR1", b"R", req id (4), relay id (16), topic, lo (8), hi (8)]
                hi = 0: everything after lo - 1 that the relay has published
  reply     [b"MBR1", b"M", topic, header, body]          one per message, in order
            [b"MBR1", b"E", req id (4), JSON end marker]
                {"lo", "hi" (the range served; hi resolved), "unavailable": [[a, b]...],
                 "more": next seq if cut at the page size else null, "error": str|null}
"""
from __future__ import annotations

import json
import logging
import struct
import time

import zmq

from .bus import GapTracker, curve_client, pack_header, unpack_header

log = logging.getLogger("monbus.repair")

MAGIC = b"MBR1"
HELLO = b"H"
RANGE = b"R"
MSG = b"M"
END = b"E"
_RANGE = struct.Struct("!QQ")
_REQ = struct.Struct("!I")
PAGE_BYTES = 4 * 1024 * 1024
DEFAULT_RETAIN = 64 * 1024 * 1024
DEFAULT_TIMEOUT = 10.0


def repair_endpoint(output: str) -> str:
    """The repair endpoint that goes with a relay output endpoint: TCP port + 1 (`*` stays
    `*`), `ipc://path` -> `ipc://path.repair`, `inproc://x` -> `inproc://x.repair`."""
    if output.startswith("tcp://"):
        host, sep, port = output[6:].rpartition(":")
        if sep and port.isdigit():
            return f"tcp://{host}:{int(port) + 1}"
        return output
    return output + ".repair"


# --- the relay side ------------------------------------------------------------------------
class _Topic:
    __slots__ = ("bodies", "head", "first")

    def __init__(self, first: int):
        self.bodies: list[bytes] = []
        self.head = 0          # index in bodies of the oldest retained message
        self.first = first     # its sequence number

    def __len__(self) -> int:
        return len(self.bodies) - self.head


class Retention:
    """The last published messages of every topic, at most `max_bytes` of bodies in all."""

    def __init__(self, max_bytes: int = DEFAULT_RETAIN):
        self.max_bytes = max_bytes
        self.bytes = 0
        self.messages = 0
        self._topics: dict[bytes, _Topic] = {}
        self._order: list = []     # (topic state, size) in publish order
        self._order_head = 0

    def add(self, topic: bytes, seq: int, body: bytes) -> None:
        """Retain one published message (seq is the relay's next seq of `topic`)."""
        t = self._topics.get(topic)
        if t is None or len(t) == 0:
            if t is None:
                t = self._topics[topic] = _Topic(seq)
            t.bodies.clear()
            t.head = 0
            t.first = seq
        elif t.first + len(t) != seq:
            raise ValueError(f"retention of {topic!r}: seq {seq} after {t.first + len(t) - 1}")
        t.bodies.append(body)
        self._order.append((t, len(body)))
        self.bytes += len(body)
        self.messages += 1
        while self.bytes > self.max_bytes and self.messages:
            self._evict()

    def _evict(self) -> None:
        t, size = self._order[self._order_head]
        self._order_head += 1
        t.bodies[t.head] = b""
        t.head += 1
        t.first += 1
        self.bytes -= size
        self.messages -= 1
        if t.head > 1024 and t.head * 2 > len(t.bodies):
            del t.bodies[:t.head]
            t.head = 0
        if self._order_head > 4096 and self._order_head * 2 > len(self._order):
            del self._order[:self._order_head]
            self._order_head = 0

    def first(self, topic: bytes, last: int) -> int:
        """The oldest retained seq of `topic` (last + 1 if none is)."""
        t = self._topics.get(topic)
        if t is None or len(t) == 0:
            return last + 1
        return t.first

    def get(self, topic: bytes, lo: int, hi: int, max_bytes: int):
        """(seq, body) for the retained messages lo..hi, stopping after `max_bytes`."""
        t = self._topics.get(topic)
        if t is None:
            return
        start = max(lo, t.first)
        size = 0
        for seq in range(start, min(hi, t.first + len(t) - 1) + 1):
            body = t.bodies[t.head + seq - t.first]
            yield seq, body
            size += len(body)
            if size >= max_bytes:
                return


def serve(retention: Retention, relay_id: bytes, last_seq: dict, frames: list,
          page_bytes: int = PAGE_BYTES):
    """Answer one repair request (frames after the ROUTER identity).  Returns (replies,
    outcome): the reply messages (each a list of frames) and one of "hello", "served",
    "evicted" (part of the range no longer retained), "unknown_relay", "bad"."""
    if len(frames) < 2 or frames[0] != MAGIC:
        return [], "bad"
    op = frames[1]
    if op == HELLO and len(frames) == 2:
        return [[MAGIC, HELLO, relay_id]], "hello"
    if op != RANGE or len(frames) != 6 or len(frames[2]) != 4 or len(frames[3]) != 16 \
            or len(frames[5]) != _RANGE.size:
        return [], "bad"
    req, rid, topic, rng = frames[2], frames[3], frames[4], frames[5]
    lo, hi = _RANGE.unpack(rng)
    lo = max(lo, 1)
    end = {"lo": lo, "hi": hi, "unavailable": [], "more": None, "error": None}
    if rid != relay_id:
        end["error"] = f"unknown relay id {rid.hex()} (this is {relay_id.hex()})"
        return [[MAGIC, END, req, json.dumps(end).encode()]], "unknown_relay"
    last = last_seq.get(topic, 0)
    hi = last if hi == 0 else min(hi, last)
    end["hi"] = hi
    out = []
    outcome = "served"
    if lo <= hi:
        first = retention.first(topic, last)
        if lo < first:
            end["unavailable"].append([lo, min(first - 1, hi)])
            outcome = "evicted"
        seq = None
        for seq, body in retention.get(topic, lo, hi, page_bytes):
            out.append([MAGIC, MSG, topic, pack_header(relay_id, seq), body])
        if seq is not None and seq < hi:
            end["more"] = seq + 1
    out.append([MAGIC, END, req, json.dumps(end).encode()])
    return out, outcome


# --- the subscriber side -------------------------------------------------------------------
class RepairingGaps(GapTracker):
    """GapTracker for repair mode: keeps the holes below the highest seq seen, delivers a
    message once, and counts as lost (`gaps`) only the holes given up."""

    def __init__(self, max_streams: int = 100_000):
        super().__init__(max_streams)
        self.holes: dict[tuple, list] = {}    # key -> sorted [lo, hi] ranges
        self.repaired = 0
        self.changes = 0                      # bumped when holes are given up
        # relays this subscriber resumed from saved positions: a topic of theirs first seen
        # at seq S > 1 was published (to us before a restart, or to another subscriber while
        # we were down) without reaching us, so 1..S-1 is a hole too
        self.backfill: set = set()

    def see(self, sender: bytes, topic: bytes, seq: int, repaired: bool = False):
        """Record one message; return (deliver, new hole (lo, hi) or None)."""
        key = (sender, topic)
        last = self.last.get(key)
        if last is None:
            if len(self.last) >= self._max:
                self.gaps += sum(b - a + 1 for hs in self.holes.values() for a, b in hs)
                self.last.clear()
                self.holes.clear()
            self.last[key] = seq
            if seq > 1 and not repaired and sender in self.backfill:
                self.holes[key] = [[1, seq - 1]]
                return True, (1, seq - 1)
            return True, None
        if seq == last + 1:
            self.last[key] = seq
            if repaired:
                self.repaired += 1
            return True, None
        if seq > last:
            self.last[key] = seq
            hole = (last + 1, seq - 1)
            self.holes.setdefault(key, []).append(list(hole))
            if repaired:
                self.repaired += 1
            return True, hole
        hs = self.holes.get(key)
        if hs:
            for i, (a, b) in enumerate(hs):
                if a <= seq <= b:
                    if a == b:
                        del hs[i]
                    elif seq == a:
                        hs[i][0] = a + 1
                    elif seq == b:
                        hs[i][1] = b - 1
                    else:
                        hs[i:i + 1] = [[a, seq - 1], [seq + 1, b]]
                    if not hs:
                        del self.holes[key]
                    self.repaired += 1
                    return True, None
        self.repeats += 1
        return False, None

    def give_up(self, sender: bytes, topic: bytes, lo: int, hi: int | None) -> int:
        """The seqs lo..hi (hi None: all) that are still holes are lost: count them."""
        key = (sender, topic)
        hs = self.holes.get(key)
        if not hs:
            return 0
        top = hi if hi is not None else float("inf")
        keep, lost = [], 0
        for a, b in hs:
            if b < lo or a > top:
                keep.append([a, b])
                continue
            lost += min(b, top) - max(a, lo) + 1
            if a < lo:
                keep.append([a, lo - 1])
            if b > top:
                keep.append([top + 1, b])
        if keep:
            self.holes[key] = keep
        else:
            del self.holes[key]
        self.gaps += lost
        if lost:
            self.changes += 1
        return lost

    @property
    def missing(self) -> int:
        """Messages currently known missing and being repaired."""
        return sum(b - a + 1 for hs in self.holes.values() for a, b in hs)

    def positions(self) -> dict:
        """Per stream, the seq after which everything was delivered or given up."""
        out = dict(self.last)
        for key, hs in self.holes.items():
            if hs:
                out[key] = min(a for a, _ in hs) - 1
        return out


class _Request:
    __slots__ = ("id", "sender", "topic", "lo", "hi", "deadline", "sock", "upto")

    def __init__(self, rid, sender, topic, lo, hi, deadline, upto):
        self.id, self.sender, self.topic, self.lo, self.hi = rid, sender, topic, lo, hi
        self.deadline = deadline
        self.sock = None
        self.upto = upto      # what a failure gives up: hi, or for "after" the seq seen then


class RepairClient:
    """The subscriber's side of repair: one DEALER per relay repair endpoint."""

    def __init__(self, ctx, endpoints, curve_server_key=None, curve_secret=None,
                 timeout: float = DEFAULT_TIMEOUT, clock=time.monotonic):
        self.gaps = RepairingGaps()
        self.timeout = timeout
        self.clock = clock
        self.socks = []
        self._ids: dict = {}           # sock -> relay id (None until it said hello)
        self._hello_sent: dict = {}    # sock -> when
        for ep in endpoints:
            s = ctx.socket(zmq.DEALER)
            s.linger = 0
            s.sndhwm = 10_000
            curve_client(s, curve_server_key, curve_secret)
            s.connect(ep)
            self.socks.append(s)
            self._ids[s] = None
        self._requests: dict[bytes, _Request] = {}
        self._waiting: list[_Request] = []     # for a relay id no socket has named yet
        self._next_id = 0
        self.stats = {"repair_requests": 0, "repair_timeouts": 0, "repair_unknown_relay": 0,
                      "repair_evicted": 0, "repair_bad_replies": 0}
        for s in self.socks:
            self._hello(s)

    @property
    def busy(self) -> bool:
        """True while requests are outstanding (then the sockets must be read)."""
        return bool(self._requests)

    @property
    def named(self) -> bool:
        """True once every repair endpoint said which relay it is."""
        return all(v is not None for v in self._ids.values())

    def _hello(self, s) -> None:
        self._hello_sent[s] = self.clock()
        try:
            s.send_multipart([MAGIC, HELLO], zmq.NOBLOCK)
        except zmq.Again:
            pass

    def request(self, sender: bytes, topic: bytes, lo: int, hi: int = 0) -> None:
        """Ask for seqs lo..hi (hi 0: everything after lo - 1) of (sender, topic)."""
        self._next_id = (self._next_id + 1) & 0xFFFFFFFF
        rid = _REQ.pack(self._next_id)
        upto = hi or self.gaps.last.get((sender, topic), lo - 1)
        r = _Request(rid, sender, topic, lo, hi, self.clock() + self.timeout, upto)
        self.stats["repair_requests"] += 1
        self._requests[rid] = r
        self._dispatch(r)

    def _dispatch(self, r: _Request) -> None:
        for s, ident in self._ids.items():
            if ident == r.sender:
                r.sock = s
                try:
                    s.send_multipart([MAGIC, RANGE, r.id, r.sender, r.topic,
                                      _RANGE.pack(r.lo, r.hi)], zmq.NOBLOCK)
                except zmq.Again:
                    pass      # the deadline gives up on it
                return
        # nobody named this relay (yet): a restarted relay has a new id, ask again
        self._waiting.append(r)
        now = self.clock()
        for s, ident in self._ids.items():
            if now - self._hello_sent.get(s, 0) > 1.0:
                self._hello(s)

    def read(self, s) -> list:
        """Handle what socket `s` has; return the repaired messages to deliver, as
        (topic, body).  Each is counted by the gap tracker before any end marker after it
        decides what is lost."""
        out = []
        gaps = self.gaps
        first = True
        while True:
            try:
                frames = s.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return out
            if first:   # a relay that answers is not timed out while it streams a reply
                first = False
                deadline = self.clock() + self.timeout
                for r in self._requests.values():
                    if r.sock is s:
                        r.deadline = deadline
            if len(frames) < 2 or frames[0] != MAGIC:
                self.stats["repair_bad_replies"] += 1
                continue
            op = frames[1]
            if op == MSG and len(frames) == 5:
                try:
                    _, sender, seq = unpack_header(frames[3])
                except ValueError:
                    self.stats["repair_bad_replies"] += 1
                    continue
                if gaps.see(sender, frames[2], seq, repaired=True)[0]:
                    out.append((frames[2], frames[4]))
            elif op == END and len(frames) == 4:
                self._end(frames[2], frames[3])
            elif op == HELLO and len(frames) == 3 and len(frames[2]) == 16:
                self._named(s, frames[2])
            else:
                self.stats["repair_bad_replies"] += 1

    def _named(self, s, relay_id: bytes) -> None:
        self._ids[s] = relay_id
        waiting, self._waiting = self._waiting, []
        for r in waiting:
            self._dispatch(r)
        # what nobody can name once every socket answered: that relay is gone (restarted)
        if all(v is not None for v in self._ids.values()):
            for r in self._waiting:
                self._requests.pop(r.id, None)
                self._fail(r, "repair_unknown_relay")
            self._waiting = []

    def _end(self, rid: bytes, raw: bytes) -> None:
        r = self._requests.pop(rid, None)
        if r is None:
            return      # given up already
        try:
            end = json.loads(raw)
            hi = int(end.get("hi") or r.hi)
            more = end.get("more")
        except (ValueError, TypeError, AttributeError):
            end, hi, more = {"error": f"bad end marker {raw[:64]!r}"}, r.hi, None
            self.stats["repair_bad_replies"] += 1
        if end.get("error"):
            log.warning("repair of %s: %s", r.topic.decode("utf-8", "replace"), end["error"])
            self._fail(r, "repair_unknown_relay")
            return
        if end.get("unavailable"):
            self.stats["repair_evicted"] += 1
        if more:
            self.gaps.give_up(r.sender, r.topic, r.lo, int(more) - 1)
            self.request(r.sender, r.topic, int(more), hi)
        else:
            self.gaps.give_up(r.sender, r.topic, r.lo, hi)

    def _fail(self, r: _Request, reason: str) -> None:
        self.stats[reason] += 1
        self.gaps.give_up(r.sender, r.topic, r.lo, r.upto)

    def expire(self) -> None:
        """Give up the requests past their deadline."""
        now = self.clock()
        for rid, r in list(self._requests.items()):
            if r.deadline < now:
                if r in self._waiting:
                    self._waiting.remove(r)
                del self._requests[rid]
                log.warning("repair of %s seq %d..%s: no answer from the relay in %.0f s",
                            r.topic.decode("utf-8", "replace"), r.lo, r.hi or "", self.timeout)
                self._fail(r, "repair_timeouts")

    def close(self) -> None:
        for s in self.socks:
            s.close(linger=0)
