"""Benchmark of the sFlow decoder (not a test): datagrams/s and records/s decoded from the real
corpus, beside a bare loop that only walks the datagram, sample and record headers.

    .venv/bin/python bench/sflow_bench.py [--seconds 1.0] [--runs 5]

Prints medians of several runs; in each run the baseline and monbus's decoders take turns in
slices of ~20 ms on the same data for about `--seconds` each, so the ratio is meaningful on
a busy machine even when the absolute figures move.  Time is the process's CPU time
(time.process_time), not the wall clock: on a shared machine the wall clock also counts the
time other processes had the core.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import struct
import time
from pathlib import Path

from monbus.bridges.sflow import datagram
from monbus.bridges.sflow.datagram import SflowError, decode_datagram
from monbus.core.pcap import read_udp
from monbus.bridges.sflow.pipeline import Pipeline

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "sflow"

_II = struct.Struct(">II")
_U32 = struct.Struct(">I")


def corpus() -> list[bytes]:
    """Every well-formed sFlow v5 datagram of the corpus captures."""
    out = []
    for f in sorted(DATA.glob("*.pcap")) + sorted((DATA / "vectors").glob("*.pcap")):
        for *_, payload in read_udp(f.read_bytes()):
            try:
                dg = decode_datagram(payload)
            except SflowError:
                continue
            if not dg.problems:
                out.append(payload)
    return out


def bare_walk(data: bytes) -> int:
    """The baseline: walk the headers and count records, decoding nothing else."""
    off = 28 if _U32.unpack_from(data, 4)[0] == 1 else 40
    nsamples = _U32.unpack_from(data, off - 4)[0]
    records = 0
    for _ in range(nsamples):
        stype, slen = _II.unpack_from(data, off)
        body = off + 8
        # record count offset by sample format (compact/expanded flow/counters, discard)
        roff = body + {1: 28, 2: 8, 3: 40, 4: 12, 5: 28}[stype]
        nrec = _U32.unpack_from(data, roff)[0]
        roff += 4
        for _ in range(nrec):
            _, rlen = _II.unpack_from(data, roff)
            roff += 8 + rlen
            records += 1
        off = body + slen
    return records


class _NeverSeen(set):
    """A set of seen layouts that never has one: no layout is ever compiled, so every sample
    takes the field-by-field path (what the first samples of each layout cost; see
    datagram._Shape)."""

    def __contains__(self, key):
        return False

    def add(self, key):
        pass


@contextlib.contextmanager
def layouts_cold():
    """decode_datagram without the layout cache (and without learning layouts)."""
    saved = datagram._SHAPES, datagram._SEEN
    datagram._SHAPES, datagram._SEEN = {}, _NeverSeen()
    try:
        yield
    finally:
        datagram._SHAPES, datagram._SEEN = saved


def decode_cold(data: bytes):
    """decode_datagram, measured inside layouts_cold()."""
    return decode_datagram(data)


def count_records(dgs) -> int:
    return sum(len(s.records) for d in dgs for s in decode_datagram(d).samples)


def _interleaved(fns: dict, dgs, seconds, contexts: dict) -> dict:
    """Datagrams/s (of CPU time) of each function, measured in alternating slices of ~20 ms
    so that all of them see the same machine load (this machine is shared).  `contexts`:
    a context manager per function to run its slices in."""
    done = {k: 0 for k in fns}
    spent = {k: 0.0 for k in fns}
    clock = time.process_time
    t_end = clock() + seconds * len(fns)
    while clock() < t_end:
        for k, fn in fns.items():
            with contexts.get(k, contextlib.nullcontext)():
                t0 = clock()
                n = 0
                while True:
                    for d in dgs:
                        fn(d)
                    n += len(dgs)
                    el = clock() - t0
                    if el >= 0.02:
                        break
            done[k] += n
            spent[k] += el
    return {k: done[k] / spent[k] for k in fns}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    dgs = corpus()
    recs_per_dg = count_records(dgs) / len(dgs)
    pipe = Pipeline(interval=10)
    lines_per_dg = sum(len(pipe.feed(d, 1700000000.0, "bench")[0]) for d in dgs) / len(dgs)

    def full(d):
        pipe.feed(d, 1700000000.0, "bench")

    fns = {"bare": bare_walk, "cold": decode_cold, "decode": decode_datagram, "full": full}
    results = {k: [] for k in fns}
    ratios = {k: [] for k in fns if k != "bare"}
    for _ in range(a.runs):
        r = _interleaved(fns, dgs, a.seconds, {"cold": layouts_cold})
        for k, v in r.items():
            results[k].append(v)
            if k != "bare":
                ratios[k].append(v / r["bare"])
    med = {k: statistics.median(v) for k, v in results.items()}
    rat = {k: statistics.median(v) for k, v in ratios.items()}
    print(f"corpus: {len(dgs)} well-formed sFlow v5 datagrams, {recs_per_dg:.2f} records and "
          f"{lines_per_dg:.1f} counter lines each (median of {a.runs} runs of {a.seconds:g} s "
          f"of CPU time each)")
    print(f"  bare header walk (baseline)  {med['bare']:>10,.0f} datagrams/s  "
          f"{med['bare'] * recs_per_dg:>11,.0f} records/s")
    print(f"  monbus decode, layouts cold  {med['cold']:>10,.0f} datagrams/s  "
          f"{med['cold'] * recs_per_dg:>11,.0f} records/s  "
          f"({100 * rat['cold']:.0f} % of the bare walk)")
    print(f"  monbus decode_datagram       {med['decode']:>10,.0f} datagrams/s  "
          f"{med['decode'] * recs_per_dg:>11,.0f} records/s  "
          f"({100 * rat['decode']:.0f} % of the bare walk)")
    print(f"  monbus decode + lines        {med['full']:>10,.0f} datagrams/s  "
          f"{med['full'] * recs_per_dg:>11,.0f} records/s  "
          f"({100 * rat['full']:.0f} % of the bare walk)  "
          f"{med['full'] * lines_per_dg:>11,.0f} lines/s")


if __name__ == "__main__":
    main()
