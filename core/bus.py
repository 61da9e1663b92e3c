"""The monbus bus: ZeroMQ messages `[topic, header, body]`, senders, subscribers.

- `topic`  `<source>.<host>.` (UTF-8), the trailing dot so `snmp.router1.` never matches
           `snmp.router10.`;
- `header` 26 bytes: format version (1), flags, a 16-byte sender id, a 64-bit sequence number;
- `body`   many lines joined by `\\n`, all of the same topic.

Senders (bridges, `monbus send`) talk to the relay of their host over DEALER/ROUTER; the relay
acknowledges each message once it has published it or written it to its spool, and the sender
keeps every message until then.  What is not acknowledged within the timeout goes to the spool
directory, which the relay drains.  Subscribers connect a SUB socket to any number of relays'
XPUB sockets; the relay re-stamps every message with its own sender id and a sequence number
per topic, so a subscriber (which receives every message of the topics it subscribed to)
counts lost messages exactly.
"""
from __future__ import annotations

import collections
import json
import os
import struct
import time
import uuid

import zmq

from .line import LineError, Line, decode, encode, topic_of
from .pattern import Matcher
from .spool import Spool, SpoolError

VERSION = 1
HEADER = struct.Struct("!BB16sQ")
ACK = b"A"

DEFAULT_RELAY = "tcp://127.0.0.1:7701"
DEFAULT_CONNECT = "tcp://127.0.0.1:7702"
DEFAULT_TIMEOUT = 2.0
BATCH_BYTES = 256 * 1024
BATCH_LATENCY = 0.05


class BusError(Exception):
    """A bus problem that the user must fix (bad endpoint, unreadable key, no spool)."""


def pack_header(sender: bytes, seq: int, flags: int = 0) -> bytes:
    return HEADER.pack(VERSION, flags, sender, seq)


def unpack_header(header: bytes) -> tuple[int, bytes, int]:
    """(flags, sender id, seq).  Raises ValueError on a foreign or truncated header."""
    if len(header) != HEADER.size:
        raise ValueError(f"bad header length {len(header)}: {header[:32].hex()}")
    version, flags, sender, seq = HEADER.unpack(header)
    if version != VERSION:
        raise ValueError(f"unknown bus format version {version}")
    return flags, sender, seq


# --- CURVE ---------------------------------------------------------------------------------
def _load_cert(path: str, secret: bool):
    import zmq.auth
    try:
        public, secret_key = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as e:
        raise BusError(f"cannot read CURVE certificate {path!r}: {e}") from None
    if secret and not secret_key:
        raise BusError(f"{path!r} holds no secret key (use the .key_secret file)")
    return public, secret_key


def curve_client(sock, server_key: str | None, secret: str | None) -> None:
    """Make `sock` a CURVE client of the server whose public certificate is `server_key`."""
    if not server_key:
        return
    server_public, _ = _load_cert(server_key, False)
    if secret:
        public, secret_key = _load_cert(secret, True)
    else:  # an ephemeral key: encrypted, but no allow-list will know it
        public, secret_key = zmq.curve_keypair()
    sock.curve_serverkey = server_public
    sock.curve_publickey = public
    sock.curve_secretkey = secret_key


def curve_server(sock, secret: str | None) -> None:
    if not secret:
        return
    public, secret_key = _load_cert(secret, True)
    sock.curve_server = True
    sock.curve_publickey = public
    sock.curve_secretkey = secret_key


# --- sending -------------------------------------------------------------------------------
class Sender:
    """Batches lines by topic and hands them to the relay, at least once.

    Use `add()` / `add_line()` for each line, call `tick()` from the event loop (it reads
    acknowledgements, flushes batches older than the latency bound and spools messages the
    relay did not acknowledge within `timeout`), and `close()` at the end: it waits up to
    `timeout` for the outstanding acknowledgements and spools the rest.  With no spool
    directory, unacknowledged data is counted in `lost` and `close()` reports it.
    """

    def __init__(self, relay: str = DEFAULT_RELAY, spool: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT, *, batch_bytes: int = BATCH_BYTES,
                 latency: float = BATCH_LATENCY, window: int = 64,
                 curve_server_key: str | None = None, curve_secret: str | None = None,
                 spool_max_bytes: int = 256 * 1024 * 1024, context=None, counters=None):
        self.timeout = timeout
        self.batch_bytes = batch_bytes
        self.latency = latency
        self.window = window
        self.id = uuid.uuid4().bytes
        self.seq = 0
        self.ctx = context or zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.sndhwm = max(window * 2, 100)
        curve_client(self.sock, curve_server_key, curve_secret)
        try:
            self.sock.connect(relay)
        except zmq.ZMQError as e:
            self.sock.close()
            raise BusError(f"bad relay endpoint {relay!r}: {e}") from None
        self.spool = Spool(spool, spool_max_bytes) if spool else None
        self._pending: dict[str, list] = {}      # topic -> [texts, nbytes, first_add_time, nlines]
        self._unacked: dict[int, tuple] = {}     # seq -> (sent_at, topic, body, nlines)
        # When the relay stops acknowledging (down, restarting), new messages go straight to
        # the spool instead of blocking the caller; one message a second probes the relay.
        self._suspect = False
        self._next_probe = 0.0
        self.counters = counters
        self.stats = {"lines": 0, "messages": 0, "acked_lines": 0, "spooled_lines": 0,
                      "lost_lines": 0, "bad_lines": 0}

    # -- adding --------------------------------------------------------------------------
    def add(self, text: str, topic: str | None = None) -> None:
        """Queue one already-encoded line (no newline).  `topic` saves a lookup if known."""
        if topic is None:
            topic = topic_of(text[:text.find(" ")])
        p = self._pending.get(topic)
        if p is None:
            p = self._pending[topic] = [[], 0, time.monotonic(), 0]
        p[0].append(text)
        p[1] += len(text) + 1
        p[3] += 1
        if p[1] >= self.batch_bytes:
            self._send(topic, p)
            del self._pending[topic]

    def add_many(self, topic: str, lines: list[str]) -> None:
        """Queue already-validated lines that all belong to `topic`."""
        p = self._pending.get(topic)
        if p is None:
            p = self._pending[topic] = [[], 0, time.monotonic(), 0]
        p[0].extend(lines)
        p[1] += sum(map(len, lines)) + len(lines)
        p[3] += len(lines)
        if p[1] >= self.batch_bytes:
            self._send(topic, p)
            del self._pending[topic]

    def add_body(self, topic: str, body: str, nlines: int) -> None:
        """Queue `nlines` already-validated lines of `topic` joined by newlines."""
        p = self._pending.get(topic)
        if p is None:
            p = self._pending[topic] = [[], 0, time.monotonic(), 0]
        p[0].append(body)
        p[1] += len(body) + 1
        p[3] += nlines
        if p[1] >= self.batch_bytes:
            self._send(topic, p)
            del self._pending[topic]

    def add_line(self, line: Line) -> None:
        """Encode and queue one Line."""
        self.add(encode(line), line.topic)

    def add_lines(self, lines) -> None:
        for line in lines:
            if isinstance(line, str):
                self.add(line)
            else:
                self.add_line(line)

    # -- the loop ------------------------------------------------------------------------
    def _send(self, topic: str, p) -> None:
        body = "\n".join(p[0]).encode("utf-8")
        nlines = p[3]
        self.stats["lines"] += nlines
        tb = topic.encode("utf-8")
        if self._suspect:
            now = time.monotonic()
            if now < self._next_probe:
                self._to_spool(tb, body, nlines)
                return
            self._next_probe = now + 1.0
        # flow control: never more than `window` messages in flight
        if len(self._unacked) >= self.window:
            self._wait_acks(lambda: len(self._unacked) < self.window, self.timeout)
        self.seq += 1
        seq = self.seq
        try:
            self.sock.send_multipart([tb, pack_header(self.id, seq), body],
                                     flags=zmq.NOBLOCK, copy=len(body) < 65536)
        except zmq.Again:
            self._to_spool(tb, body, nlines)
            return
        self.stats["messages"] += 1
        self._unacked[seq] = (time.monotonic(), tb, body, nlines)

    def flush(self) -> None:
        """Send every pending batch now."""
        for topic, p in list(self._pending.items()):
            self._send(topic, p)
        self._pending.clear()

    def _read_acks(self, timeout_ms: int = 0) -> None:
        sock = self.sock
        if timeout_ms and not sock.poll(timeout_ms):
            return
        while True:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) >= 2 and frames[0] == ACK:
                self._suspect = False
                for raw in frames[1:]:
                    if len(raw) == 8:
                        rec = self._unacked.pop(struct.unpack("!Q", raw)[0], None)
                        if rec is not None:
                            self.stats["acked_lines"] += rec[3]

    def _wait_acks(self, done, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                self._expire(force=True)
                return
            self._read_acks(max(1, int(min(left, 0.1) * 1000)))

    def _to_spool(self, topic: bytes, body: bytes, nlines: int) -> None:
        if self.spool is not None:
            try:
                self.spool.write(topic, body)
                self.stats["spooled_lines"] += nlines
                return
            except SpoolError:
                pass
        self.stats["lost_lines"] += nlines

    def _expire(self, force: bool = False) -> None:
        """Spool messages unacknowledged for longer than the timeout (all, if force)."""
        if not self._unacked:
            return
        limit = time.monotonic() - self.timeout
        for seq in list(self._unacked):
            sent, tb, body, n = self._unacked[seq]
            if force or sent < limit:
                del self._unacked[seq]
                self._to_spool(tb, body, n)
                self._suspect = True
                self.stats["timeouts"] = self.stats.get("timeouts", 0) + 1

    def tick(self) -> None:
        """Read acks, flush batches past the latency bound, spool what timed out."""
        self._read_acks()
        if self._pending:
            old = time.monotonic() - self.latency
            for topic, p in list(self._pending.items()):
                if p[2] <= old:
                    self._send(topic, p)
                    del self._pending[topic]
        self._expire()

    def wait_delivered(self, timeout: float | None = None) -> int:
        """Flush and wait until nothing is in flight: every message acknowledged or, past
        `timeout`, spooled (or counted lost).  Returns the lines lost so far."""
        self.flush()
        self._wait_acks(lambda: not self._unacked, self.timeout if timeout is None else timeout)
        return self.stats["lost_lines"]

    @property
    def in_flight(self) -> int:
        return len(self._unacked)

    def close(self, timeout: float | None = None) -> dict:
        """Flush, wait for acknowledgements (up to `timeout`), spool the rest; return stats."""
        self.wait_delivered(timeout)
        self.sock.close(linger=0)
        return dict(self.stats)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --- subscribing ---------------------------------------------------------------------------
class GapTracker:
    """Counts lost and repeated messages from each sender, per topic."""

    def __init__(self, max_streams: int = 100_000):
        self.last: dict[tuple, int] = {}
        self.gaps = 0
        self.repeats = 0
        self._max = max_streams

    def see(self, sender: bytes, topic: bytes, seq: int) -> int:
        """Record one message; return how many messages were lost just before it."""
        key = (sender, topic)
        last = self.last.get(key)
        if len(self.last) >= self._max and last is None:
            self.last.clear()
        self.last[key] = max(seq, last or 0)
        if last is None:
            return 0
        if seq == last + 1:
            return 0
        if seq <= last:
            self.repeats += 1
            return 0
        lost = seq - last - 1
        self.gaps += lost
        return lost

    def positions(self) -> dict:
        """Per (sender, topic), the seq up to which everything was seen or counted lost."""
        return dict(self.last)


class Subscriber:
    """Connects to any number of relays and yields the lines matching the patterns.

    With `repair`, a gap in a relay's sequence numbers is asked again from the relay's repair
    endpoint (`repair_connect`, default next to each `connect` endpoint, see repair.py): the
    missing messages are delivered when they come, possibly after newer ones, each once;
    only what the relay no longer retains counts in `gaps.gaps`.
    """

    def __init__(self, connect=(DEFAULT_CONNECT,), patterns=("**",), *,
                 curve_server_key: str | None = None, curve_secret: str | None = None,
                 rcvhwm: int = 100_000, context=None, repair: bool = False,
                 repair_connect=None, repair_timeout: float | None = None):
        self.ctx = context or zmq.Context.instance()
        self.matcher = Matcher(patterns)
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.linger = 0
        self.sock.rcvhwm = rcvhwm
        curve_client(self.sock, curve_server_key, curve_secret)
        for prefix in self.matcher.zmq_prefixes():
            self.sock.setsockopt(zmq.SUBSCRIBE, prefix)
        for ep in connect:
            try:
                self.sock.connect(ep)
            except zmq.ZMQError as e:
                self.sock.close()
                raise BusError(f"bad endpoint {ep!r}: {e}") from None
        self.gaps = GapTracker()
        self.stats = {"messages": 0, "lines": 0, "bad_lines": 0, "bad_messages": 0}
        self.errors: list = []
        self.repair = None
        if repair:
            from .repair import DEFAULT_TIMEOUT, RepairClient, repair_endpoint
            eps = list(repair_connect or [repair_endpoint(ep) for ep in connect])
            try:
                self.repair = RepairClient(self.ctx, eps, curve_server_key, curve_secret,
                                           repair_timeout or DEFAULT_TIMEOUT)
            except zmq.ZMQError as e:
                self.sock.close()
                raise BusError(f"bad repair endpoint in {eps!r}: {e}") from None
            self.gaps = self.repair.gaps
            self._repaired: collections.deque = collections.deque()
            self._poller = zmq.Poller()
            self._poller.register(self.sock, zmq.POLLIN)
            for s in self.repair.socks:
                self._poller.register(s, zmq.POLLIN)

    def resume(self, positions: dict) -> None:
        """Start from the positions {(sender id, topic): seq} a previous run saved (see
        `gaps.positions()`): what was published after them and is missed is counted, and in
        repair mode asked for again right away (everything after each position; and for a
        topic of those relays first seen later at seq S, 1..S-1)."""
        for (sender, topic), seq in positions.items():
            self.gaps.last[(sender, topic)] = seq
            if self.repair is not None:
                self.gaps.backfill.add(sender)
                self.repair.request(sender, topic, seq + 1, 0)

    def recv_raw(self, timeout: float | None = None):
        """One message as (topic, body) after gap accounting, or None on timeout."""
        if self.repair is not None:
            return self._recv_repairing(timeout)
        if timeout is not None and not self.sock.poll(int(timeout * 1000)):
            return None
        msg = self._parse(self.sock.recv_multipart())
        if msg is None:
            return (b"", b"")
        topic, sender, seq, body = msg
        self.gaps.see(sender, topic, seq)
        self.stats["messages"] += 1
        return topic, body

    def _parse(self, frames):
        """(topic, sender id, seq, body) of a bus message, or None (counted) if malformed."""
        if len(frames) == 3:
            try:
                _, sender, seq = unpack_header(frames[1])
            except ValueError:
                pass
            else:
                return frames[0], sender, seq, frames[2]
        self.stats["bad_messages"] += 1
        return None

    def _recv_repairing(self, timeout: float | None):
        rep = self.repair
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if rep.busy:
                for s in rep.socks:
                    if s.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                        self._repaired.extend(rep.read(s))
                rep.expire()
            if self._repaired:
                self.stats["messages"] += 1
                return self._repaired.popleft()
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                wait = 1000 if left is None else int(left * 1000) + 1
                events = dict(self._poller.poll(min(wait, 200) if rep.busy else wait))
                for s in rep.socks:
                    if s in events:
                        self._repaired.extend(rep.read(s))
                continue
            msg = self._parse(frames)
            if msg is None:
                return (b"", b"")
            topic, sender, seq, body = msg
            deliver, hole = self.gaps.see(sender, topic, seq)
            if hole is not None:
                rep.request(sender, topic, hole[0], hole[1])
            if deliver:
                self.stats["messages"] += 1
                return topic, body

    def recv_lines(self, timeout: float | None = None, decode_lines: bool = True):
        """The matching lines of one message (Line objects, or str if not decode_lines);
        [] for a message with none, None on timeout.  Bad lines are counted and kept in
        `errors` (the last 100)."""
        got = self.recv_raw(timeout)
        if got is None:
            return None
        topic, body = got
        if not body:
            return []
        text = body.decode("utf-8", "replace")
        match = self.matcher
        out = []
        for raw in text.split("\n"):
            if not raw:
                continue
            self.stats["lines"] += 1
            try:
                line = decode(raw)
            except LineError as e:
                self.stats["bad_lines"] += 1
                self.errors.append(e)
                del self.errors[:-100]
                continue
            if match.match_all or match(line.series.split(";", 1)[0]):
                out.append(line if decode_lines else raw)
        return out

    def close(self) -> None:
        self.sock.close(linger=0)
        if self.repair is not None:
            self.repair.close()


def line_to_json(line: Line) -> str:
    """One line as a JSON object (for `monbus tail --format json`)."""
    d = {"path": line.path, "tags": line.tags, "value": line.value,
         "timestamp": line.timestamp}
    if line.meta:
        d.update(meta=line.meta)
    return json.dumps(d, ensure_ascii=False)


def env_list(name: str, default: str) -> list[str]:
    return [x.strip() for x in os.environ.get(name, default).split(",") if x.strip()]
