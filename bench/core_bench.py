"""Core benchmark: codec decode vs. a bare split()+float() loop, and end-to-end lines/s from
`monbus send` through a relay to a subscriber, with the sequence gaps seen.

    .venv/bin/python bench/core_bench.py [--lines 2000000] [--runs 5]

Prints medians of --runs runs.  Not a test: the figures go in the README.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from monbus.core.bus import Subscriber
from monbus.core.line import decode, decode_batch
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


def bench_decode(lines: list[str], runs: int) -> tuple[float, float, float]:
    """CPU-time rates (time.process_time: less sensitive than wall time to the other load on a
    shared machine) over the same text: the bare loop, decode() per line, decode_batch()."""
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

    batch()  # warm the series cache once, as a running subscriber has it warm
    b, m, d = [], [], []
    for _ in range(runs):
        b.append(baseline())
        m.append(per_line())
        d.append(batch())
    return statistics.median(b), statistics.median(m), statistics.median(d)


def bench_bus(lines: list[str], runs: int) -> list[tuple[float, int, int]]:
    data = ("\n".join(lines) + "\n").encode()
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
            p = subprocess.run(monbus + ["send", "--relay", relay.endpoints_in[0], "--spool", tmp],
                               input=data, capture_output=True)
            done.wait(60)
            el = time.perf_counter() - t0
            if p.returncode:
                print("send failed:", p.stderr.decode()[:300], file=sys.stderr)
            results.append((got / el, sub.gaps.gaps, got))
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
    b, m, d = bench_decode(lines[:500_000], a.runs)
    print(f"decode (CPU time): bare split()+float() loop {b:,.0f} lines/s | monbus decode() per line "
          f"{m:,.0f} lines/s ({m / b:.0%}) | decode_batch() {d:,.0f} lines/s ({d / b:.0%})")
    res = bench_bus(lines, a.runs)
    rate = statistics.median(r[0] for r in res)
    print(f"end to end: monbus send -> relay -> subscriber  {rate:,.0f} lines/s (median); "
          f"per run: " + ", ".join(f"{r[0]:,.0f}/s gaps={r[1]} got={r[2]:,}" for r in res))


if __name__ == "__main__":
    main()
