"""The asyncio loops of `monbus snmp poll` (once, or as a daemon) around `Poller`.

pysnmp is asyncio-based, so these loops replace core's `run_daemon` (a select loop) with
the same duties: tick the Sender every 50 ms, publish self-metrics every 10 s
(`monbus.<host>.snmp.*`), stop cleanly on SIGTERM/SIGINT and flush.
"""
from __future__ import annotations

import asyncio
import logging
import sys
import time
from dataclasses import replace

from monbus.core.line import Line, Sanitizer, encode
from monbus.core.options import stop_event, tick_until
from monbus.core.selfmetrics import Counters

from .poller import Poller, PollResult
from .rates import CounterState
from .samples import Skipped, module_lines, status_line

log = logging.getLogger("monbus.snmp.poll")


class Publisher:
    """Turns PollResults into lines on the Sender and counts everything."""

    def __init__(self, sender, counters: Counters, state: CounterState | None = None):
        self.sender = sender
        self.counters = counters
        self.state = state
        self._names: dict[str, Sanitizer] = {}
        self.ok = self.failed = self.varbinds = self.lines = 0
        self.failures: list[str] = []

    def lines_of(self, r: PollResult, now: float) -> list:
        """The lines for one poll result (pure apart from the per-host name memory)."""
        t = r.target
        names = self._names.setdefault(t.host, Sanitizer())
        skipped = Skipped()
        out = []
        if r.scalars or r.walked:
            for m in t.modules:
                out.extend(module_lines(t.host, m, r.scalars, r.walked, now, names, skipped))
        if self.state is not None and r.ok:
            out.extend(self.state.rates(t.host, out, r.uptime, now))
        if r.ok:
            text = (f"SNMP OK - v{t.version} {t.address}:{t.port} answered {r.varbinds} "
                    f"varbinds in {r.requests} requests, {r.elapsed:.2f} s")
        else:
            text = f"SNMP DOWN - v{t.version} {t.address}:{t.port}: {r.error}"
        # how the poll went, per target: a slow or chatty device shows here first
        out.append(Line(f"snmp.{t.host}.agent.poll_seconds", round(r.elapsed, 4), now,
                        {"mtype": "gauge", "unit": "s"}))
        out.append(Line(f"snmp.{t.host}.agent.varbinds", r.varbinds, now, {"mtype": "gauge"}))
        out.append(status_line(t.host, r.ok, text, now))      # last: "this poll is complete"
        for reason, n in skipped.items():
            self.counters.inc(f"skipped_{reason}", n)
        for p in r.problems:
            self.counters.inc("agent_problems")
        return out

    def publish(self, r: PollResult) -> int:
        """Put one target's lines on the bus; return how many."""
        now = round(time.time(), 3)
        lines = self.lines_of(r, now)
        for ln in lines:
            self.sender.add(encode(ln), ln.topic)
        self.sender.tick()
        c = self.counters
        c.inc("polls")
        c.inc("requests", r.requests)
        c.inc("varbinds", r.varbinds)
        c.inc("lines", len(lines))
        if r.ok:
            self.ok += 1
        else:
            self.failed += 1
            c.inc("poll_failures")
            self.failures.append(f"{r.target.host}: {r.error}")
        self.varbinds += r.varbinds
        self.lines += len(lines)
        return len(lines)


def split_by_interval(targets: list, default_interval: float | None) -> list:
    """One schedule entry per (target, interval): modules with their own interval are
    polled on their own clock."""
    out = []
    for t in targets:
        base = default_interval or t.interval
        groups: dict[float, list] = {}
        for m in t.modules:
            groups.setdefault(m.interval or base, []).append(m)
        for iv, mods in groups.items():
            out.append(replace(t, modules=mods, interval=iv))
    return out


class _Progress:
    def __init__(self, total: int, enabled: bool):
        self.total, self.done, self.enabled = total, 0, enabled and total > 0

    def step(self, failed: int) -> None:
        self.done += 1
        if self.enabled:
            width = 30
            fill = int(width * self.done / self.total)
            sys.stderr.write(f"\rsnmp poll [{'#' * fill}{'.' * (width - fill)}] "
                             f"{self.done}/{self.total} targets, {failed} failed")
            sys.stderr.flush()

    def end(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


async def poll_once(targets, publisher: Publisher, concurrency: int, progress: bool,
                    engine: str = "auto"):
    """Poll every target once, concurrently; publish each as soon as it is done."""
    poller = Poller(concurrency, engine)
    bar = _Progress(len(targets), progress)
    try:
        for fut in asyncio.as_completed([poller.poll(t) for t in targets]):
            r = await fut
            try:
                publisher.publish(r)
            except Exception:  # noqa: BLE001 - one bad result must not lose the others
                publisher.counters.inc("publish_errors")
                log.exception("cannot publish the poll of %s", r.target.host)
            bar.step(publisher.failed)
    finally:
        bar.end()
        for k, v in poller.stats.items():
            publisher.counters.inc(k, v)
        poller.close()


async def poll_forever(targets, publisher: Publisher, concurrency: int,
                       metrics_interval: float = 10.0, on_cycle=None, engine: str = "auto"):
    """Poll each schedule entry every its interval until SIGTERM/SIGINT."""
    poller = Poller(concurrency, engine)
    stop = stop_event()

    def poller_stats():
        for k, v in poller.stats.items():
            publisher.counters.set(k, v)

    async def run(t):
        next_at = time.monotonic()
        while not stop.is_set():
            r = await poller.poll(t)
            try:
                publisher.publish(r)
            except Exception:  # noqa: BLE001 - one bad result must not end this target's loop
                publisher.counters.inc("publish_errors")
                log.exception("cannot publish the poll of %s", t.host)
            if on_cycle:
                on_cycle()
            next_at += t.interval
            if next_at < time.monotonic():      # fell behind: skip, never pile up polls
                publisher.counters.inc("skipped_cycles")
                next_at = time.monotonic() + t.interval
            try:
                await asyncio.wait_for(stop.wait(), next_at - time.monotonic())
            except asyncio.TimeoutError:
                pass

    tasks = [asyncio.create_task(run(t)) for t in targets]
    ticker = asyncio.create_task(tick_until(stop, publisher.sender, publisher.counters,
                                            metrics_interval, poller_stats))
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await ticker
    poller.close()
