"""`monbus carbon`: replay the bus into carbon (or whisper files) without losing data.

Strategy:
- The main thread receives bus messages, turns them into carbon plaintext (forward.py) and
  appends the result to one journal per destination (journal.py) *before* anything is sent.
- One delivery thread per destination sends the oldest undelivered chunk and moves the
  journal's cursor only once the destination took it (destinations.py).  While carbon is down
  or slow, data simply accumulates in the journal (bounded; the oldest dropped and counted)
  and is replayed in order, with its original timestamps, when carbon is back; a restart of
  `monbus carbon` (even after SIGKILL) replays what was left.
- Several carbons: `replicate` appends every line to every journal; `shard` places each series
  on carbon's own consistent-hashing ring (hashring.py), as carbon-relay would.
- The position on the bus (the relay's sequence number per topic) is saved beside the journal
  after every append.  After a restart (even after SIGKILL) monbus carbon asks each relay's
  repair endpoint for everything published after it (core/repair.py), so the messages that
  were still in socket buffers when the process died come back; so do the messages a relay
  dropped at a high-water mark.  Only what the relay no longer retains (`monbus relay
  --retain`) is lost, and it is counted (`bus_lost_messages`), never lost silently.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time

import click

from monbus.core.bus import DEFAULT_RELAY
from monbus.core.options import (Stopper, bus_selfmetrics, make_sender, make_subscriber,
                                 size_callback, subscriber_options)
from monbus.core.selfmetrics import Counters

from .destinations import (DEFAULT_RETENTION, TRANSPORTS, GraphyteDestination, TcpDestination,
                           UdpDestination, WhisperDestination, parse_carbon, parse_retention)
from .forward import TAG_MODES, Formatter, decided_by_topic, exact_by_topic
from .hashring import HASH_TYPES, ConsistentHashRing, normalize_series
from .journal import Journal, JournalError, MemoryJournal
from monbus.core.rates import RateConverter

log = logging.getLogger("monbus.carbon")

BACKOFF_MIN = 0.1
BACKOFF_MAX = 5.0


_size = size_callback()


class Delivery(threading.Thread):
    """Sends one journal to one destination, oldest first, committing only what it took."""

    def __init__(self, dest, journal, batch_bytes: int, latency: float = 0.1):
        super().__init__(name=f"deliver-{dest.name}", daemon=True)
        self.dest = dest
        self.journal = journal
        self.batch_bytes = batch_bytes
        self.latency = latency
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.drain_until = 0.0        # monotonic deadline for delivering after a stop
        self.healthy = True
        self.errors = 0
        self.sent_lines = 0
        self.sent_chunks = 0
        self.last_error = ""

    def _wait(self, seconds: float) -> None:
        self.wake.wait(seconds)
        self.wake.clear()

    def run(self) -> None:
        """Deliver until stopped; an unexpected error is logged and delivery resumes."""
        while True:
            try:
                self._run()
                return
            except Exception:  # noqa: BLE001 - a bug must not silently stop delivery
                log.exception("%s: delivery failed unexpectedly; restarting it", self.dest.name)
                self.errors += 1
                self._wait(1.0)

    def _run(self) -> None:
        backoff = BACKOFF_MIN
        while True:
            if self.stopping.is_set() and time.monotonic() >= self.drain_until:
                return
            try:
                chunk = self.journal.peek(self.batch_bytes)
            except OSError as e:
                log.error("%s: cannot read spool: %s", self.dest.name, e)
                self._wait(1.0)
                continue
            if chunk is None:
                if self.stopping.is_set():
                    return
                self._wait(0.5)
                continue
            token, data = chunk
            nlines = data.count(b"\n")
            try:
                self.dest.send(data)
            except OSError as e:
                self.errors += 1
                self.last_error = str(e)[:200]
                if self.healthy:
                    log.warning("%s: %s; keeping data in the spool, retrying",
                                self.dest.name, self.last_error)
                    self.healthy = False
                    self.journal.mark_replay()
                if self.stopping.is_set() and time.monotonic() + backoff >= self.drain_until:
                    return
                self._wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            self.journal.commit(token, nlines)
            self.sent_lines += nlines
            self.sent_chunks += 1
            if not self.healthy:
                log.warning("%s: delivering again", self.dest.name)
                self.healthy = True
            backoff = BACKOFF_MIN
            if len(data) < self.batch_bytes // 2 and not self.stopping.is_set():
                self._wait(self.latency)   # little data: let a batch build up


class BusPosition:
    """The last relay sequence number seen per (relay id, topic), saved atomically in a file,
    so a restarted process counts what it missed while it was dead."""

    def __init__(self, path: str | None):
        self.path = path

    def load(self) -> dict:
        """The positions saved by the previous run, {(relay id, topic): seq}."""
        out: dict = {}
        if not self.path:
            return out
        try:
            with open(self.path) as f:
                data = json.load(f)
            for key, seq in data.items():
                sender, _, topic = key.partition(" ")
                out[(bytes.fromhex(sender), topic.encode("utf-8"))] = int(seq)
        except FileNotFoundError:
            pass
        except (OSError, ValueError, AttributeError) as e:
            log.warning("ignoring unreadable bus position file %s: %s", self.path, e)
            return {}
        return out

    def save(self, gaps) -> None:
        """Write the current positions (atomically: write, then rename): per stream, the
        seq up to which everything was journaled (or counted lost)."""
        if not self.path:
            return
        data = {f"{s.hex()} {t.decode('utf-8', 'replace')}": q
                for (s, t), q in gaps.positions().items()}
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(data, f)
        os.replace(tmp, self.path)


class CarbonForwarder:
    """The bus side: bodies in, journals appended, deliveries woken.  No sockets of its own."""

    def __init__(self, formatter: Formatter, deliveries: list[Delivery], mode: str = "replicate",
                 ring: ConsistentHashRing | None = None, replication: int = 1,
                 normalize: bool = False, topic_matcher=None):
        self.formatter = formatter
        self.deliveries = deliveries
        self.mode = mode
        self.ring = ring
        self.replication = replication
        self.normalize = normalize
        self.topic_matcher = topic_matcher
        self._by_node = {(d.dest.host if hasattr(d.dest, "host") else d.dest.name,
                          d.dest.instance): d for d in deliveries}
        self.stats = {"received_lines": 0, "spooled_lines": 0, "spool_errors": 0}
        self._placed: dict[bytes, tuple] = {}

    def handle(self, body: bytes, topic: bytes = b"") -> None:
        """Forward the lines of one bus message body (all of `topic`)."""
        if not body:
            return
        n = body.count(b"\n") + 1
        self.stats["received_lines"] += n
        fmt = self.formatter
        if self.topic_matcher is not None and topic:
            if not self.topic_matcher(topic.decode("utf-8", "replace").rstrip(".")):
                fmt.stats["unmatched_lines"] += n
                return
        if self.mode == "replicate":
            data = fmt.fast_body(body) if fmt.fast else None
            if data is not None:
                nlines = data.count(b"\n")
            else:
                data, nlines = fmt.encoded_data(body)
                if not nlines:
                    return
            for d in self.deliveries:
                self._append(d, data, nlines)
            return
        # shard: each series to its node(s) on the ring
        groups: dict[tuple, list] = {}
        placed = self._placed
        for series, text in fmt.encoded(body):
            nodes = placed.get(series)
            if nodes is None:
                nodes = self._place(series)
            for node in nodes:
                groups.setdefault(node, []).append(text)
        for node, texts in groups.items():
            self._append(self._by_node[node], b"\n".join(texts) + b"\n", len(texts))

    def _place(self, series: bytes) -> tuple:
        """The ring nodes of a carbon series name (remembered)."""
        key = series.decode("utf-8", "replace")
        if self.normalize:
            key = normalize_series(key)
        if self.replication > 1:
            nodes = self.ring.nodes_for(key, self.replication, diverse=True)
        else:
            nodes = (self.ring.node_for(key),)
        if len(self._placed) > 500_000:
            self._placed.clear()
        self._placed[series] = nodes
        return nodes

    def _append(self, d: Delivery, data: bytes, nlines: int) -> None:
        try:
            d.journal.append(data, nlines)
        except JournalError as e:
            # the spool cannot take it: nothing else to keep it in; count and say so
            self.stats["spool_errors"] += 1
            log.error("%s", e)
            return
        if not d.healthy:
            self.stats["spooled_lines"] += nlines
        d.wake.set()


def _make_destination(spec, transport, timeout, udp_size):
    host, port, instance = spec
    if transport == "tcp":
        return TcpDestination(host, port, timeout, instance)
    if transport == "graphyte":
        return GraphyteDestination(host, port, timeout, instance)
    return UdpDestination(host, port, timeout, instance, udp_size)


def _dest_dir(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


_GAUGES = ("spool_bytes", "up")


def _publish_metrics(counters, fwd, deliveries, sub, rates, sender, now):
    c = counters

    def put(name, value):
        # cumulative totals are published as mtype=counter, levels as mtype=gauge
        if name.rsplit(".", 1)[-1] in _GAUGES:
            c.set(name, value)
        else:
            c.values[name] = value
    for k, v in fwd.stats.items():
        put(k, v)
    for k, v in fwd.formatter.stats.items():
        put(k, v)
    bus_selfmetrics(sub, c)
    totals = {"sent_lines": 0, "replayed_lines": 0, "dropped_lines": 0, "spool_bytes": 0,
              "carbon_errors": 0}
    for d in deliveries:
        j = d.journal
        per = {"sent_lines": d.sent_lines, "replayed_lines": j.replayed_lines,
               "dropped_lines": j.dropped_lines, "spool_bytes": j.pending_bytes,
               "carbon_errors": d.errors, "up": int(d.healthy)}
        tag = _dest_dir(d.dest.name)
        for k, v in per.items():
            put(f"dest.{tag}.{k}", v)
            if k in totals:
                totals[k] += v
    for k, v in totals.items():
        put(k, v)
    if rates is not None:
        for k, v in rates.stats.items():
            put(f"rates.{k}", v)
    if sender is not None:
        for line in c.lines(now):
            sender.add(line)


@click.command()
@click.argument("patterns", nargs=-1)
@subscriber_options
@click.option("--carbon", "carbon", multiple=True, metavar="HOST:PORT[:INSTANCE]",
              help="Carbon to send to (plaintext protocol); repeatable.  INSTANCE names the "
                   "node on the consistent-hashing ring as in carbon's DESTINATIONS.  Without "
                   "any, lines are written to whisper files (--whisper).")
@click.option("--transport", type=click.Choice(TRANSPORTS), default="tcp", show_default=True,
              help="tcp: a connection per batch, counted as delivered only once carbon closed "
                   "it after reading everything; graphyte: graphyte's send_message (counted "
                   "once in the kernel); udp: datagrams under --udp-size, no guarantee.")
@click.option("--mode", type=click.Choice(["replicate", "shard"]), default="replicate",
              show_default=True,
              help="With several --carbon: send every line to all, or shard series over them "
                   "with carbon's consistent-hashing ring (carbon-relay's placement).")
@click.option("--hash-type", type=click.Choice(HASH_TYPES), default="carbon_ch",
              show_default=True, help="Ring hash, as carbon's ROUTER_HASH_TYPE.")
@click.option("--replication", type=click.IntRange(min=1), default=1, show_default=True,
              help="Shard mode: copies of each series on distinct nodes, as carbon's "
                   "REPLICATION_FACTOR (with DIVERSE_REPLICAS).")
@click.option("--normalize-tags", is_flag=True,
              help="Shard mode: hash tagged series with their tags sorted, as carbon-relay "
                   "with TAG_RELAY_NORMALIZED = True.")
@click.option("--whisper", "whisper", type=click.Path(file_okay=False), default="./whisper",
              show_default=True, envvar="MONBUS_WHISPER",
              help="Without --carbon: write whisper files here (carbon's layout, so "
                   "graphite-web can read them) [env MONBUS_WHISPER].")
@click.option("--retention", default=DEFAULT_RETENTION, show_default=True,
              help="Retention of whisper files created by --whisper (carbon's syntax).")
@click.option("--tags", type=click.Choice(TAG_MODES), default="keep", show_default=True,
              help="Tagged series: keep (carbon >= 1.1), drop the tags, or fold them into the "
                   "path (path.key.value..., sorted by key) for carbons without tag support.")
@click.option("--prefix", default="", help="Prepend this to every path sent.")
@click.option("--rates", is_flag=True,
              help="Send per-second rates instead of raw mtype=counter/derive values (32/64-bit "
                   "wraps handled, resets never become spikes).")
@click.option("--max-rate", type=click.FloatRange(min=0, min_open=True), default=None,
              help="With --rates: drop (and count) rates above this.")
@click.option("--check-lines/--no-check-lines", default=True, show_default=True,
              help="Check the shape of every line before it goes to carbon (bad lines are "
                   "counted and quoted, not sent).  --no-check-lines trusts the bus (lines "
                   "written by monbus bridges are valid) for the last bit of speed; carbon "
                   "then drops malformed lines itself.")
@click.option("--spool", "spool", type=click.Path(file_okay=False), default=None,
              envvar="MONBUS_CARBON_SPOOL",
              help="Durable spool directory (one journal per destination); without it data "
                   "waits in memory and what is undelivered at exit is lost (and counted) "
                   "[env MONBUS_CARBON_SPOOL].")
@click.option("--spool-max", default="1G", show_default=True, callback=_size,
              help="Spool bound per destination; when full the oldest data is dropped and "
                   "counted (dropped_lines).")
@click.option("--fsync", is_flag=True,
              help="fsync the spool on every append (survives power loss, not only crashes).")
@click.option("--batch-size", default="256K", show_default=True, callback=_size,
              help="Bytes of lines per send.")
@click.option("--udp-size", type=click.IntRange(512, 65000), default=65000, show_default=True,
              help="Largest UDP datagram (whole lines) with --transport udp.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
              help="Seconds a send may take before it counts as failed.")
@click.option("--drain-timeout", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="On SIGTERM, seconds to keep delivering what is queued (with --spool the "
                   "rest stays there for the next start).")
@click.option("--repair/--no-repair", default=True, show_default=True,
              help="Ask the relay again for messages missed on the bus (sequence gaps; after "
                   "a restart, everything after the saved position), so even a SIGKILL of "
                   "this command loses nothing the relay still retains (monbus relay "
                   "--retain).")
@click.option("--repair-connect", "repair_connect", multiple=True,
              envvar="MONBUS_REPAIR_CONNECT",
              help="The relays' repair endpoints; repeatable [default: each --connect "
                   "endpoint's port + 1, as monbus relay binds it; env MONBUS_REPAIR_CONNECT].")
@click.option("--relay", default=DEFAULT_RELAY, show_default=True, envvar="MONBUS_RELAY",
              help="Relay to publish self-metrics to (monbus.<host>.carbon.*) [env MONBUS_RELAY].")
@click.option("--selfmetrics-interval", type=click.FloatRange(min=0), default=10.0,
              show_default=True, help="Seconds between self-metric publications (0: none).")
def cli(patterns, connect, curve_server_key, curve_secret, carbon, transport, mode, hash_type,
        replication, normalize_tags, whisper, retention, tags, prefix, rates, max_rate,
        check_lines, spool, spool_max, fsync, batch_size, udp_size, timeout, drain_timeout,
        repair, repair_connect, relay, selfmetrics_interval):
    """Replay the bus (lines matching PATTERNS, default all) into carbon, losing nothing.

    Every line is written to the spool before it is sent and removed only once carbon took
    it, so carbon restarts, carbon outages and restarts of this command lose no data.
    Annotations never reach carbon; with no --carbon, lines go into whisper files.
    """
    carbons, whisper_dir, spool_dir = carbon, whisper, spool
    try:
        specs = [parse_carbon(c) for c in carbons]
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    if len({(h, p) for h, p, _ in specs}) != len(specs):
        raise click.ClickException("the same --carbon HOST:PORT is given twice")
    if mode == "shard" and len({(h, i) for h, _, i in specs}) != len(specs):
        raise click.ClickException("two --carbon share a host and instance: give each an "
                                   "INSTANCE (HOST:PORT:INSTANCE) so the ring can tell them apart")
    if mode == "shard" and len(specs) < 2:
        raise click.ClickException("--mode shard needs at least two --carbon")
    if max_rate is not None and not rates:
        raise click.ClickException("--max-rate needs --rates")
    try:
        if specs:
            dests = [_make_destination(s, transport, timeout, udp_size) for s in specs]
        else:
            dests = [WhisperDestination(whisper_dir, retention)]
    except (ValueError, OSError) as e:
        raise click.ClickException(str(e)) from None
    if not specs:
        parse_retention(retention)
    rate_conv = RateConverter(max_rate) if rates else None
    repair_eps = [x.strip() for v in repair_connect for x in v.split(",") if x.strip()]
    sub = make_subscriber(connect, patterns, curve_server_key, curve_secret, rcvhwm=1000,
                          repair=repair, repair_connect=repair_eps or None)
    from monbus.core.pattern import Matcher
    patterns = sub.matcher.patterns
    # the patterns are applied per message (topic) when that decides, else per line
    topic_matcher = None
    if exact_by_topic(patterns):
        matcher = None
    elif decided_by_topic(patterns):
        matcher, topic_matcher = None, Matcher(patterns)
    else:
        matcher = Matcher(patterns)
    formatter = Formatter(tags, prefix, rate_conv, matcher, check_lines)
    deliveries = []
    position = BusPosition(None)
    try:
        if spool_dir:
            os.makedirs(spool_dir, exist_ok=True)
            position = BusPosition(os.path.join(spool_dir, "bus-position.json"))
        for d in dests:
            j = (Journal(os.path.join(spool_dir, _dest_dir(d.name)), spool_max, fsync=fsync)
                 if spool_dir else MemoryJournal(spool_max))
            if j.pending_bytes:
                log.warning("%s: replaying %d bytes left in the spool", d.name, j.pending_bytes)
            deliveries.append(Delivery(d, j, batch_size if transport != "udp" or not specs
                                       else max(batch_size, udp_size)))
    except (JournalError, OSError) as e:
        raise click.ClickException(str(e)) from None
    sub.resume(position.load())
    ring = None
    if mode == "shard":
        ring = ConsistentHashRing([(s[0], s[2]) for s in specs], hash_type)
    fwd = CarbonForwarder(formatter, deliveries, mode, ring, replication, normalize_tags,
                          topic_matcher)
    sender = make_sender(relay, None, 2.0) if selfmetrics_interval else None
    counters = Counters("carbon")
    for d in deliveries:
        d.start()
    click.echo(f"monbus carbon: {', '.join(d.dest.name for d in deliveries)}  mode {mode}  "
               f"spool {spool_dir or '(memory)'}", err=True)
    stopper = Stopper()
    next_metrics = time.monotonic() + (selfmetrics_interval or 1e18)
    gaps_seen = sub.gaps.gaps
    gap_changes = getattr(sub.gaps, "changes", 0)
    repaired_seen = getattr(sub.gaps, "repaired", 0)
    logged_bad, next_log_reset = 0, time.monotonic() + 60
    while not stopper.stop:
        n = 0
        got = sub.recv_raw(0.1)
        while got is not None:
            fwd.handle(got[1], got[0])
            n += 1
            if n >= 100 or stopper.stop:
                break
            got = sub.recv_raw(0)
        if formatter.errors:
            for e in formatter.errors:
                if logged_bad < 20:      # per minute; all of them are counted
                    log.warning("bad line on the bus, not sent: %s", e)
                logged_bad += 1
            formatter.errors.clear()
        if time.monotonic() >= next_log_reset:
            logged_bad, next_log_reset = 0, time.monotonic() + 60
        if n or getattr(sub.gaps, "changes", 0) != gap_changes:
            gap_changes = getattr(sub.gaps, "changes", 0)
            try:
                position.save(sub.gaps)
            except OSError as e:
                log.error("cannot save bus position: %s", e)
            if sub.gaps.gaps != gaps_seen:
                log.warning("%d bus messages lost before they reached monbus carbon "
                            "(sequence gaps%s)", sub.gaps.gaps - gaps_seen,
                            "; the relay no longer retained them" if repair else
                            "; e.g. in flight when it was killed")
                gaps_seen = sub.gaps.gaps
        if repair and sub.gaps.repaired - repaired_seen >= 1 and not sub.repair.busy:
            log.warning("%d bus messages missed and asked again from the relay (repaired)",
                        sub.gaps.repaired - repaired_seen)
            repaired_seen = sub.gaps.repaired
        now = time.monotonic()
        if now >= next_metrics:
            next_metrics = now + selfmetrics_interval
            _publish_metrics(counters, fwd, deliveries, sub, rate_conv, sender, time.time())
        if sender is not None:
            sender.tick()
    # clean stop: deliver what we can within --drain-timeout, keep the rest in the spool
    sub.close()
    until = time.monotonic() + drain_timeout
    for d in deliveries:
        d.drain_until = until
        d.stopping.set()
        d.wake.set()
    for d in deliveries:
        d.join(drain_timeout + timeout + 1)
    left = 0
    for d in deliveries:
        j = d.journal
        if not spool_dir:
            left += sum(c[1] for c in getattr(j, "_chunks", ()))
        j.close()
    if sender is not None:
        _publish_metrics(counters, fwd, deliveries, sub, rate_conv, sender, time.time())
        sender.close(1.0)
    if left:
        click.echo(f"monbus carbon: {left} lines not delivered and no --spool to keep them",
                   err=True)
        raise SystemExit(3)
