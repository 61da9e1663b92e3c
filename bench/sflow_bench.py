"""Benchmark of the sFlow decoder (not a test): datagrams/s and records/s decoded from the real
corpus, beside a bare loop that only walks the datagram, sample and record headers.

    .venv/bin/python bench/sflow_bench.py [--seconds 1.0] [--runs 5]

Prints medians of several runs; in each run the baseline and monbus's decoders take turns in
slices of ~20 ms on the same data for about `--seconds` each, so the ratio is meaningful on
a busy machine even when the absolute figures move.
"""
from __future__ import annotations

import argparse
import statistics
import struct
import time
from pathlib import Path

from monbus.bridges.sflow.datagram import SflowError, decode_datagram
from monbus.bridges.sflow.pcap import udp_payloads
from monbus.bridges.sflow.pipeline import Pipeline

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "sflow"

_II = struct.Struct(">II")
_U32 = struct.Struct(">I")


def corpus() -> list[bytes]:
    """Every well-formed sFlow v5 datagram of the corpus captures."""
    out = []
    for f in sorted(DATA.glob("*.pcap")) + sorted((DATA / "vectors").glob("*.pcap")):
        for _, _, _, payload in udp_payloads(f.read_bytes()):
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


def count_records(dgs) -> int:
    return sum(len(s.records) for d in dgs for s in decode_datagram(d).samples)


def _interleaved(fns: dict, dgs, seconds) -> dict:
    """Datagrams/s of each function, measured in alternating slices of ~20 ms so that all of
    them see the same machine load (this machine is shared)."""
    done = {k: 0 for k in fns}
    spent = {k: 0.0 for k in fns}
    t_end = time.perf_counter() + seconds * len(fns)
    while time.perf_counter() < t_end:
        for k, fn in fns.items():
            t0 = time.perf_counter()
            n = 0
            while True:
                for d in dgs:
                    fn(d)
                n += len(dgs)
                el = time.perf_counter() - t0
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

    def full(d):
        pipe.feed(d, 1700000000.0, "bench")

    results = {"bare": [], "decode": [], "full": []}
    ratios = {"decode": [], "full": []}
    for _ in range(a.runs):
        r = _interleaved({"bare": bare_walk, "decode": decode_datagram, "full": full}, dgs,
                         a.seconds)
        for k, v in r.items():
            results[k].append(v)
        ratios["decode"].append(r["decode"] / r["bare"])
        ratios["full"].append(r["full"] / r["bare"])
    med = {k: statistics.median(v) for k, v in results.items()}
    rat = {k: statistics.median(v) for k, v in ratios.items()}
    print(f"corpus: {len(dgs)} well-formed sFlow v5 datagrams, {recs_per_dg:.2f} records each "
          f"(median of {a.runs} runs of {a.seconds:g}s)")
    print(f"  bare header walk (baseline)  {med['bare']:>10,.0f} datagrams/s  "
          f"{med['bare'] * recs_per_dg:>11,.0f} records/s")
    print(f"  monbus decode_datagram       {med['decode']:>10,.0f} datagrams/s  "
          f"{med['decode'] * recs_per_dg:>11,.0f} records/s  "
          f"({100 * rat['decode']:.0f} % of the bare walk)")
    print(f"  monbus decode + lines        {med['full']:>10,.0f} datagrams/s  "
          f"{med['full'] * recs_per_dg:>11,.0f} records/s  "
          f"({100 * rat['full']:.0f} % of the bare walk)")


if __name__ == "__main__":
    main()
