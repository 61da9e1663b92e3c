"""The relay: the per-host forwarder between senders (ROUTER) and subscribers (XPUB).

Strategy:
- Every message from a sender is re-stamped with the relay's own sender id and a sequence
  number per topic, then published, and only then acknowledged.
- The output is an XPUB socket, so the relay knows which topic prefixes have subscribers.
  A message nobody subscribes to yet is *held*: written to the spool instead of published to
  nobody (and acknowledged once written).  When a subscription arrives, held messages that it
  matches are drained in order.  So a collector that restarts, or a relay that restarts
  before its collectors reconnect, loses nothing; `--no-hold` turns this off.
- The spool directory is shared with the host's senders: they write what the relay did not
  acknowledge in time (relay down, restarting), and the relay drains it while it runs.
- Every published message is also *retained* (bounded in bytes, oldest evicted first) and
  served again on the repair endpoint (a ROUTER socket, by default the output port + 1), so a
  subscriber that missed messages (socket buffers lost when it was killed, a high-water mark)
  asks for them again by sequence number (repair.py).
- Self-metrics are published on the relay's own output every 10 s.
"""
from __future__ import annotations

import logging
import signal
import struct
import time
import uuid

import zmq

from .bus import ACK, HEADER, VERSION, BusError, curve_server, pack_header
from .repair import DEFAULT_RETAIN, Retention, repair_endpoint, serve
from .selfmetrics import INTERVAL, Counters
from .spool import Spool, SpoolError

log = logging.getLogger("monbus.relay")

DEFAULT_INPUT = "tcp://127.0.0.1:7701"
DEFAULT_OUTPUT = "tcp://127.0.0.1:7702"


class Relay:
    def __init__(self, inputs=(DEFAULT_INPUT,), outputs=(DEFAULT_OUTPUT,), spool: str | None = None,
                 *, spool_max_bytes: int = 1024 ** 3, hold: bool = True,
                 curve_secret: str | None = None, curve_clients: str | None = None,
                 sndhwm: int = 100_000, selfmetrics_interval: float = INTERVAL,
                 context=None, host: str | None = None, retain_bytes: int = DEFAULT_RETAIN,
                 repair=None):
        if not retain_bytes and repair:
            raise BusError("a repair endpoint needs a retention (--retain above 0)")
        self.ctx = context or zmq.Context()
        self.id = uuid.uuid4().bytes
        self.hold = hold and spool is not None
        self.counters = Counters("relay", host=host, gauges=(
            "spool_bytes", "spool_messages", "subscriptions", "retained_bytes",
            "retained_messages"))
        self.interval = selfmetrics_interval
        self._auth = None
        if curve_secret and curve_clients:
            from zmq.auth.thread import ThreadAuthenticator
            self._auth = ThreadAuthenticator(self.ctx, log=logging.getLogger("monbus.auth"))
            self._auth.start()
            self._auth.configure_curve(domain="*", location=curve_clients)
        elif curve_secret or curve_clients:
            raise BusError("CURVE needs both --curve-secret and --curve-clients")
        self.inp = self.ctx.socket(zmq.ROUTER)
        self.out = self.ctx.socket(zmq.XPUB)
        # repair: retain what was published and serve it again (None: next to each output)
        derived = repair is None
        if derived:
            repair = [repair_endpoint(ep) for ep in outputs] if retain_bytes else []
        self.retention = Retention(retain_bytes) if retain_bytes and repair else None
        self.rep = self.ctx.socket(zmq.ROUTER) if self.retention else None
        for s in (self.inp, self.out, self.rep):
            if s is None:
                continue
            s.linger = 0
            curve_server(s, curve_secret)
        if self.rep is not None:
            self.rep.sndhwm = 0    # replies are bounded per request (repair.PAGE_BYTES)
        self.out.sndhwm = sndhwm
        self.inp.rcvhwm = 10_000
        self.inp.router_mandatory = False
        try:
            for ep in inputs:
                self.inp.bind(ep)
            for ep in outputs:
                self.out.bind(ep)
        except zmq.ZMQError as e:
            self.close()
            raise BusError(f"cannot bind: {e}") from None
        try:
            for ep in (repair if self.rep is not None else ()):
                self.rep.bind(ep)
        except zmq.ZMQError as e:
            if not derived:
                self.close()
                raise BusError(f"cannot bind the repair endpoint: {e}") from None
            # the default place (output port + 1) is taken: run on, without repair
            log.warning("no repair endpoint (%s: %s); give one with --repair", repair, e)
            self.rep.close(linger=0)
            self.rep = self.retention = None
        self.endpoints_in = [self.inp.getsockopt_string(zmq.LAST_ENDPOINT)]
        self.endpoints_out = [self.out.getsockopt_string(zmq.LAST_ENDPOINT)]
        self.endpoints_repair = ([self.rep.getsockopt_string(zmq.LAST_ENDPOINT)]
                                 if self.rep is not None else [])
        self.spool = Spool(spool, spool_max_bytes) if spool else None
        self._subs: set[bytes] = set()
        self._sub_cache: dict[bytes, bool] = {}
        self._seq: dict[bytes, int] = {}
        self._stop = False
        self._spool_index: list = []

    # -- subscriptions -------------------------------------------------------------------
    def _read_subscriptions(self) -> bool:
        changed = False
        while True:
            try:
                msg = self.out.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            if not msg:
                continue
            if msg[0] == 1:
                self._subs.add(msg[1:])
            elif msg[0] == 0:
                self._subs.discard(msg[1:])
            changed = True
        if changed:
            self._sub_cache.clear()
            self.counters.set("subscriptions", len(self._subs))
        return changed

    def subscribed(self, topic: bytes) -> bool:
        hit = self._sub_cache.get(topic)
        if hit is None:
            hit = any(topic.startswith(p) for p in self._subs)
            self._sub_cache[topic] = hit
        return hit

    # -- publishing ----------------------------------------------------------------------
    def publish(self, topic: bytes, body: bytes, nlines: int) -> None:
        seq = self._seq.get(topic, 0) + 1
        self._seq[topic] = seq
        self.out.send_multipart([topic, pack_header(self.id, seq), body], copy=len(body) < 65536)
        if self.retention is not None:
            self.retention.add(topic, seq, body)
        self.counters.inc("lines_out", nlines)
        self.counters.inc("messages_out")

    def _handle_input(self, frames) -> None:
        c = self.counters
        if len(frames) != 4:
            c.inc("bad_messages")
            return
        ident, topic, header, body = frames
        if len(header) != HEADER.size or header[0] != VERSION:
            c.inc("bad_messages")
            log.warning("dropping message with a foreign header %s", header[:32].hex())
            return
        nlines = body.count(b"\n") + 1 if body else 0
        c.inc("lines_in", nlines)
        c.inc("messages_in")
        if self.hold and not self.subscribed(topic):
            try:
                self.spool.write(topic, body)
                c.inc("lines_held", nlines)
            except SpoolError as e:
                # cannot hold it: not acknowledged, the sender keeps and spools it itself
                c.inc("spool_errors")
                log.error("%s", e)
                return
        else:
            self.publish(topic, body, nlines)
        self.inp.send_multipart([ident, ACK, header[-8:]])

    # -- repair ---------------------------------------------------------------------------
    def _handle_repair(self, frames) -> None:
        c = self.counters
        replies, outcome = serve(self.retention, self.id, self._seq, frames[1:])
        if outcome == "bad":
            c.inc("bad_repair_requests")
            log.warning("bad repair request %s", b"|".join(frames[1:4])[:64].hex())
            return
        if outcome != "hello":
            c.inc("repairs_served")
            c.inc("repaired_messages", len(replies) - 1)
            if outcome == "evicted":
                c.inc("repairs_evicted")
            elif outcome == "unknown_relay":
                c.inc("repairs_unknown_relay")
        ident = frames[0]
        for r in replies:
            self.rep.send_multipart([ident, *r], copy=len(r[-1]) < 65536)

    # -- the spool -----------------------------------------------------------------------
    def drain(self, max_messages: int = 200) -> int:
        """Publish up to `max_messages` spooled messages that have subscribers, oldest first."""
        if self.spool is None:
            return 0
        if not self._spool_index:
            self._spool_index = self.spool.list()
            self.counters.set("spool_messages", len(self._spool_index))
            self.counters.set("spool_bytes", sum(s for _, s in self._spool_index))
        done = 0
        keep = []
        while self._spool_index and done < max_messages:
            name, size = self._spool_index.pop(0)
            msg = self.spool.read(name)
            if msg is None:
                continue
            topic, body = msg
            if self.hold and not self.subscribed(topic):
                keep.append((name, size))
                continue
            nlines = body.count(b"\n") + 1 if body else 0
            self.publish(topic, body, nlines)
            self.spool.remove(name, size)
            self.counters.inc("lines_drained", nlines)
            done += 1
        self._spool_index[:0] = keep
        if keep and len(keep) == len(self._spool_index):
            self._spool_index = []  # everything left is held: re-list on the next round
        return done

    def _sync_spool_counters(self) -> None:
        if self.spool is not None:
            self.counters.set("spool_dropped_lines", self.spool.dropped_lines)
            self.counters.set("spool_dropped_messages", self.spool.dropped_messages)

    # -- the loop ------------------------------------------------------------------------
    def stop(self, *_):
        self._stop = True

    def run(self, install_signals: bool = True) -> None:
        if install_signals:
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
        poller = zmq.Poller()
        poller.register(self.inp, zmq.POLLIN)
        poller.register(self.out, zmq.POLLIN)
        if self.rep is not None:
            poller.register(self.rep, zmq.POLLIN)
        next_drain = 0.0
        next_metrics = time.monotonic() + self.interval
        while not self._stop:
            try:
                events = dict(poller.poll(100))
            except zmq.ZMQError:
                if self._stop:
                    break
                raise
            if self.out in events and self._read_subscriptions():
                next_drain = 0.0
            if self.inp in events:
                for _ in range(1000):
                    try:
                        frames = self.inp.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self._handle_input(frames)
            if self.rep is not None and self.rep in events:
                for _ in range(100):
                    try:
                        frames = self.rep.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self._handle_repair(frames)
            now = time.monotonic()
            if now >= next_drain:
                # nothing to drain: look again in a while (a new subscription looks at once)
                if self.drain() == 0:
                    next_drain = now + (2.0 if self.hold else 0.5)
            if now >= next_metrics:
                next_metrics = now + self.interval
                self.publish_selfmetrics(time.time())
        self.close()

    def publish_selfmetrics(self, now: float) -> None:
        self._sync_spool_counters()
        if self.retention is not None:
            self.counters.set("retained_bytes", self.retention.bytes)
            self.counters.set("retained_messages", self.retention.messages)
        lines = self.counters.lines(now)
        topic = f"monbus.{self.counters.host}.".encode()
        body = "\n".join(lines).encode()
        if self.hold and not self.subscribed(topic):
            return  # nobody wants them: self-metrics are not worth spooling
        self.publish(topic, body, len(lines))

    def close(self) -> None:
        for s in (self.inp, self.out, self.rep):
            if s is not None:
                s.close(linger=0)
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
