"""Benchmark of the Ganglia bridge's decoders (not a test).

    .venv/bin/python bench/ganglia_bench.py [--hosts 1000] [--metrics 40] [--runs 7]

1. XML: a generated gmetad dump (GRID > CLUSTER x 10 > HOST x hosts > METRIC x metrics, each
   metric with gmond's EXTRA_DATA, the DOCTYPE gmond sends) parsed into lines, in 64 kB
   chunks, three ways on the same bytes in the same run:
   (a) a bare expat parse with no handler at all (the baseline),
   (b) monbus's exact path: XmlDumpParser(fast=False), expat with monbus's callbacks,
   (c) monbus's fast path: XmlDumpParser() as `monbus ganglia poll` runs it (one regex match
       per METRIC; it must read this dump itself, and give (b)'s very lines).
   Each run's figures are printed, then the medians (and the median of the per-run ratios,
   the steadier figure on a busy machine).
2. XDR: the captured gmond datagrams (tests/data/ganglia) decoded by `GmondListener.feed`
   beside a bare `struct.unpack` walk of the same datagrams' headers.

Rates are metrics (or datagrams) per CPU second (process time, so the other processes of a
busy machine do not count against either side).
"""
from __future__ import annotations

import argparse
import statistics
import struct
import time
from pathlib import Path
from pyexpat import ParserCreate

from monbus.bridges.ganglia.listener import GmondListener
from monbus.core.pcap import read_udp
from monbus.bridges.ganglia.xmldump import XmlDumpParser

ROOT = Path(__file__).resolve().parent.parent
CAPTURE = ROOT / "bridges" / "ganglia" / "data" / "gmond372_local_xdr_capture.pcap"
DUMP = ROOT / "tests" / "data" / "ganglia" / "gmond372_local_xml_dump.xml"


def _doctype() -> str:
    """gmond's own DOCTYPE, cut from the real dump (everything before <GANGLIA_XML ...>)."""
    text = DUMP.read_text("iso-8859-1")
    return text[:text.index("<GANGLIA_XML ")]


_METRICS = [("cpu_user", "float", "%", "both"), ("bytes_in", "float", "bytes/sec", "both"),
            ("mem_free", "float", "KB", "both"), ("proc_total", "uint32", " ", "both"),
            ("disk_total", "double", "GB", "both"), ("cpu_num", "uint16", "CPUs", "zero"),
            ("pkts_out", "float", "packets/sec", "both"), ("boottime", "uint32", "s", "zero")]


def make_dump(hosts: int, metrics: int, clusters: int = 10) -> bytes:
    """A gmetad-style XML dump with hosts x metrics numeric metrics."""
    now = 1795775670
    out = [_doctype(), '<GANGLIA_XML VERSION="3.7.2" SOURCE="gmetad">\n',
           f'<GRID NAME="bench-grid" AUTHORITY="http://bench/ganglia/" LOCALTIME="{now}">\n']
    per = max(1, hosts // clusters)
    for h in range(hosts):
        if h % per == 0:
            if h:
                out.append("</CLUSTER>\n")
            out.append(f'<CLUSTER NAME="cluster{h // per}" LOCALTIME="{now}" OWNER="unspecified" '
                       f'LATLONG="unspecified" URL="unspecified">\n')
        out.append(f'<HOST NAME="node{h:05d}.bench.example" IP="10.0.{h // 250}.{h % 250}" '
                   f'TAGS="" REPORTED="{now - 3}" TN="3" TMAX="20" DMAX="86400" '
                   f'LOCATION="unspecified" GMOND_STARTED="{now - 9000}">\n')
        for m in range(metrics):
            name, vtype, units, slope = _METRICS[m % len(_METRICS)]
            val = f"{(h * 31 + m * 7) % 1000 / 7:.3f}" if vtype in ("float", "double") \
                else str((h * 131 + m) % 65000)
            out.append(f'<METRIC NAME="{name}_{m}" VAL="{val}" TYPE="{vtype}" UNITS="{units}" '
                       f'TN="3" TMAX="90" DMAX="0" SLOPE="{slope}" SOURCE="gmond">\n'
                       f'<EXTRA_DATA>\n<EXTRA_ELEMENT NAME="GROUP" VAL="bench"/>\n'
                       f'<EXTRA_ELEMENT NAME="DESC" VAL="metric {m}"/>\n'
                       f'<EXTRA_ELEMENT NAME="TITLE" VAL="Metric {m}"/>\n'
                       f'</EXTRA_DATA>\n</METRIC>\n')
        out.append("</HOST>\n")
    out.append("</CLUSTER>\n</GRID>\n</GANGLIA_XML>\n")
    return "".join(out).encode("iso-8859-1")


def _chunks(data: bytes, size: int = 65536):
    return [data[i:i + size] for i in range(0, len(data), size)]


def bench_xml(data: bytes, runs: int, show=print) -> dict:
    chunks = _chunks(data)

    def bare():
        # skips DTD attribute defaults, as monbus's parser does
        p = ParserCreate()
        p.specified_attributes = True
        for c in chunks:
            p.Parse(c, False)
        p.Parse(b"", True)

    def parse(fast):
        p = XmlDumpParser(0.0, fast=fast)
        out = []
        for c in chunks:
            out += p.feed(c)
        out += p.close()
        return out, p

    exact_lines, q = parse(False)
    fast_lines, p = parse(True)
    assert p.path == "fast", f"the fast path gave up: {p.fallback}"
    assert fast_lines == exact_lines and p.stats == q.stats, "fast and exact paths differ"
    nmetrics = p.stats["metrics"]
    ways = (("bare", bare), ("exact", lambda: parse(False)), ("fast", lambda: parse(True)))
    res = {name: [] for name, _ in ways}
    for i in range(runs):
        for name, fn in ways:
            t = time.process_time()
            fn()
            res[name].append(nmetrics / (time.process_time() - t))
        show(f"  run {i + 1}: bare expat {res['bare'][-1]:9,.0f}   exact path "
             f"{res['exact'][-1]:9,.0f}   fast path {res['fast'][-1]:9,.0f} metrics/s   "
             f"fast/bare {100 * res['fast'][-1] / res['bare'][-1]:3.0f} %   "
             f"exact/bare {100 * res['exact'][-1] / res['bare'][-1]:3.0f} %")
    out = {k: statistics.median(v) for k, v in res.items()}
    out["fast_ratio"] = statistics.median(f / b for f, b in zip(res["fast"], res["bare"]))
    out["exact_ratio"] = statistics.median(e / b for e, b in zip(res["exact"], res["bare"]))
    out["metrics"] = nmetrics
    return out


def bench_xdr(runs: int, repeat: int = 200) -> dict:
    packets = [d.payload for d in read_udp(CAPTURE.read_bytes())] * repeat
    u = struct.Struct(">I")

    def bare():
        for p in packets:
            u.unpack_from(p, 0)
            n = u.unpack_from(p, 4)[0]
            u.unpack_from(p, 8 + n + (-n & 3))

    def monbus():
        lst = GmondListener("bench")
        t = 1795775634.0
        for p in packets:
            lst.feed(p, t)

    res = {"bare": [], "monbus": []}
    for _ in range(runs):
        for name, fn in (("bare", bare), ("monbus", monbus)):
            t = time.process_time()
            fn()
            res[name].append(time.process_time() - t)
    return {k: len(packets) / statistics.median(v) for k, v in res.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--metrics", type=int, default=40)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    data = make_dump(args.hosts, args.metrics)
    print(f"XML dump: {args.hosts} hosts x {args.metrics} metrics, {len(data) / 1e6:.1f} MB, "
          f"{args.runs} runs")
    r = bench_xml(data, args.runs)
    print(f"  median: bare expat parse (no handlers)      {r['bare']:10,.0f} metrics/s")
    print(f"  median: monbus exact path (expat+callbacks) {r['exact']:10,.0f} metrics/s  "
          f"({100 * r['exact_ratio']:.0f} % of bare, median of the runs' ratios)")
    print(f"  median: monbus fast path (default)          {r['fast']:10,.0f} metrics/s  "
          f"({100 * r['fast_ratio']:.0f} % of bare, median of the runs' ratios)")
    goal = r["fast"] >= 200_000 and r["fast_ratio"] >= 0.70
    print(f"  goal (>= 200,000 metrics/s and >= 70 % of bare): {'met' if goal else 'NOT met'}")
    x = bench_xdr(args.runs)
    print(f"XDR datagrams (real gmond capture, x200), median of {args.runs} runs")
    print(f"  bare struct.unpack header walk     {x['bare']:12,.0f} datagrams/s")
    print(f"  monbus GmondListener.feed          {x['monbus']:12,.0f} datagrams/s  "
          f"({100 * x['monbus'] / x['bare']:.0f} %)")


if __name__ == "__main__":
    main()
