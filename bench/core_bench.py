"""Core benchmark: codec decode vs. a bare split()+float() loop, and end-to-end lines/s from
`monbus send` through a relay to a subscriber, with the sequence gaps seen.

    .venv/bin/python bench/core_bench.py [--lines 2000000] [--runs 5]

Prints medians of --runs runs.  Not a test: the figures go in the README.
"""
from __future__ import annotations

import argparse
import resource
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from monbus.core.bus import Subscriber
from monbus.core import line as line_mod
from monbus.core.line import decode, decode_batch, group_chunk
from monbus.core.relay import Relay

HERE = Path(__file__).resolve().parent


def make_lines(n: int) -> list[str]:
    """A realistic stream: 5,000 series from 50 hosts, integer timestamps, some annotations."""
    out = []
    ts = 1_700_000_000
    for i in range(n):
        h = i % 50
        s = i % 100
        if i % 10 == 0:
            out.append(f"collectd.web{h:02d}.interface-eth{s % 4}.if_octets.rx {i * 1.5} {ts + i // 5000}"
                       f" mtype=derive unit=B")
        else:
            out.append(f"collectd.web{h:02d}.cpu-{s}.percent-idle {97.25 + (i % 7)} {ts + i // 5000}")
    return out


def bench_decode(lines: list[str], runs: int) -> tuple[float, float, float, float]:
    """CPU-time rates (time.process_time: less sensitive than wall time to the other load on a
    shared machine) over the same text: the bare loop, decode() per line, decode_batch(),
    group_chunk() (a sender's validation)."""
    text = "\n".join(lines)
    n = len(lines)

    def baseline():
        t = time.process_time()
        for line in text.split("\n"):
            f = line.split()
            float(f[1])
            float(f[2])
        return n / (time.process_time() - t)

    def per_line():
        t = time.process_time()
        for line in text.split("\n"):
            decode(line)
        return n / (time.process_time() - t)

    # the bus carries messages of up to 256 KiB: decode_batch sees texts of ~4,000 lines
    chunks = ["\n".join(lines[i:i + 4000]) for i in range(0, n, 4000)]

    def batch():
        t = time.process_time()
        for chunk in chunks:
            decode_batch(chunk)
        return n / (time.process_time() - t)

    # what `monbus send` does with each chunk of its input (C fast path when built)
    raw_chunks = [c.encode() for c in chunks]

    def sender():
        t = time.process_time()
        for chunk in raw_chunks:
            group_chunk(chunk)
        return n / (time.process_time() - t)

    batch()  # warm the series cache once, as a running subscriber has it warm
    b, m, d, g = [], [], [], []
    for _ in range(runs):
        b.append(baseline())
        m.append(per_line())
        d.append(batch())
        g.append(sender())
    return (statistics.median(b), statistics.median(m), statistics.median(d),
            statistics.median(g))


def _bridge_sender(endpoint: str, grouped: dict) -> None:
    """What a bridge process does: lines it encoded itself, handed to a Sender by topic."""
    from monbus.core.bus import Sender
    s = Sender(endpoint, None, timeout=30)
    for topic, lst in grouped.items():
        for i in range(0, len(lst), 2000):
            s.add_many(topic, lst[i:i + 2000])
        s.tick()
    s.close()


def bench_bus(lines: list[str], runs: int, mode: str) -> list[tuple[float, int, int]]:
    """mode 'send': `monbus send` reads the lines on stdin and validates each one;
    mode 'bridge': a process with lines already encoded (as a bridge has) uses a Sender."""
    import multiprocessing
    from monbus.core.line import group_by_topic
    data = ("\n".join(lines) + "\n").encode()
    grouped = group_by_topic("\n".join(lines)) if mode == "bridge" else None
    results = []
    monbus = [str(Path(sys.executable).parent / "monbus")]
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            relay = Relay(["tcp://127.0.0.1:*"], ["tcp://127.0.0.1:*"], tmp, selfmetrics_interval=3600)
            th = threading.Thread(target=relay.run, kwargs={"install_signals": False}, daemon=True)
            th.start()
            sub = Subscriber([relay.endpoints_out[0]], ["collectd.**"])
            while not relay._subs:
                time.sleep(0.01)
            got = 0
            done = threading.Event()

            def consume():
                nonlocal got
                while got < len(lines):
                    r = sub.recv_raw(5.0)
                    if r is None:
                        break
                    got += r[1].count(b"\n") + 1
                done.set()
            ct = threading.Thread(target=consume, daemon=True)
            t0 = time.perf_counter()
            ct.start()
            cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            if mode == "send":
                p = subprocess.run(monbus + ["send", "--relay", relay.endpoints_in[0], "--spool",
                                             tmp], input=data, capture_output=True)
                if p.returncode:
                    print("send failed:", p.stderr.decode()[:300], file=sys.stderr)
            else:
                proc = multiprocessing.get_context("fork").Process(
                    target=_bridge_sender, args=(relay.endpoints_in[0], grouped))
                proc.start()
                proc.join(120)
            done.wait(60)
            el = time.perf_counter() - t0
            cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
            results.append((got / el, sub.gaps.gaps, got, len(lines) / cpu if cpu else 0.0))
            sub.close()
            relay.stop()
            th.join(5)
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=2_000_000)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    lines = make_lines(a.lines)
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; {a.lines:,} lines, "
          f"median of {a.runs} runs")
    b, m, d, g = bench_decode(lines[:500_000], a.runs)
    print(f"decode (CPU time): bare split()+float() loop {b:,.0f} lines/s | monbus decode() per line "
          f"{m:,.0f} lines/s ({m / b:.0%}) | decode_batch() {d:,.0f} lines/s ({d / b:.0%})")
    print(f"sender validation (CPU time): group_chunk() {g:,.0f} lines/s ({g / b:.0%} of the bare "
          f"loop; C fast path {'built' if line_mod._fastline else 'NOT built: Python path'})")
    for mode, label in (("send", "monbus send (validates every line) -> relay -> subscriber"),
                        ("bridge", "bridge process Sender (lines pre-encoded) -> relay -> subscriber")):
        res = bench_bus(lines, a.runs, mode)
        rate = statistics.median(r[0] for r in res)
        cpu = statistics.median(r[3] for r in res)
        print(f"end to end, {label}: {rate:,.0f} lines/s (median), gaps "
              f"{sum(r[1] for r in res)}; the sending process alone: {cpu:,.0f} lines per "
              f"CPU-second (start-up included); per run: " +
              ", ".join(f"{r[0]:,.0f}/s gaps={r[1]} got={r[2]:,}" for r in res))


if __name__ == "__main__":
    main()
