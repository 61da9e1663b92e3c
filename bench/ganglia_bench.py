"""Benchmark of the Ganglia bridge's decoders (not a test).

    .venv/bin/python bench/ganglia_bench.py [--hosts 1000] [--metrics 40] [--runs 5]

1. XML: a generated gmetad dump (GRID > CLUSTER x 10 > HOST x hosts > METRIC x metrics, each
   metric with gmond's EXTRA_DATA, the DOCTYPE gmond sends) parsed by monbus's streaming
   parser into lines, beside two baselines on the same bytes in the same run:
   (a) a bare expat parse with no handler at all, (b) expat with a start handler that only
   counts METRIC elements (the least any consumer of the dump must do), (c) expat with the
   very callbacks monbus's parser sets (a Python start handler on ordered attribute lists,
   the C-level list.append as end handler) doing nothing: the ceiling of this design.
2. XDR: the captured gmond datagrams (tests/data/ganglia) decoded by `GmondListener.feed`
   beside a bare `struct.unpack` walk of the same datagrams' headers.

Prints medians of `--runs` runs, in metrics (or datagrams) per CPU second (process time, so
the other processes of a busy machine do not count against either side).
"""
from __future__ import annotations

import argparse
import statistics
import struct
import time
from pathlib import Path
from pyexpat import ParserCreate

from monbus.bridges.ganglia.listener import GmondListener
from monbus.bridges.ganglia.pcap import read_udp
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


def bench_xml(data: bytes, runs: int) -> dict:
    chunks = _chunks(data)

    # both baselines skip DTD attribute defaults, as monbus's parser does
    def bare():
        p = ParserCreate()
        p.specified_attributes = True
        for c in chunks:
            p.Parse(c, False)
        p.Parse(b"", True)

    def counting():
        n = [0]

        def start(tag, attrs):
            if tag == "METRIC":
                n[0] += 1
        p = ParserCreate()
        p.specified_attributes = True
        p.StartElementHandler = start
        for c in chunks:
            p.Parse(c, False)
        p.Parse(b"", True)
        return n[0]

    def callbacks():
        ends = []

        def start(tag, attrs):
            pass
        p = ParserCreate()
        p.specified_attributes = True
        p.ordered_attributes = True
        p.StartElementHandler = start
        p.EndElementHandler = ends.append
        for c in chunks:
            p.Parse(c, False)
            ends.clear()
        p.Parse(b"", True)

    def monbus():
        p = XmlDumpParser(0.0)
        n = 0
        for c in chunks:
            n += len(p.feed(c))
        n += len(p.close())
        return p.stats["metrics"]

    res = {"bare": [], "counting": [], "callbacks": [], "monbus": []}
    nmetrics = counting()
    assert monbus() == nmetrics, "monbus parsed a different number of metrics"
    for _ in range(runs):
        for name, fn in (("bare", bare), ("counting", counting), ("callbacks", callbacks),
                         ("monbus", monbus)):
            t = time.process_time()
            fn()
            res[name].append(time.process_time() - t)
    return {k: nmetrics / statistics.median(v) for k, v in res.items()}


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
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    data = make_dump(args.hosts, args.metrics)
    r = bench_xml(data, args.runs)
    print(f"XML dump: {args.hosts} hosts x {args.metrics} metrics, {len(data) / 1e6:.1f} MB, "
          f"median of {args.runs} runs")
    print(f"  bare expat parse (no handlers)     {r['bare']:12,.0f} metrics/s")
    print(f"  expat counting METRIC elements     {r['counting']:12,.0f} metrics/s")
    print(f"  expat, monbus's callbacks, empty   {r['callbacks']:12,.0f} metrics/s  "
          f"({100 * r['callbacks'] / r['bare']:.0f} % of bare)")
    print(f"  monbus ganglia XmlDumpParser       {r['monbus']:12,.0f} metrics/s  "
          f"({100 * r['monbus'] / r['bare']:.0f} % of bare, "
          f"{100 * r['monbus'] / r['counting']:.0f} % of counting, "
          f"{100 * r['monbus'] / r['callbacks']:.0f} % of empty callbacks)")
    x = bench_xdr(args.runs)
    print(f"XDR datagrams (real gmond capture, x200), median of {args.runs} runs")
    print(f"  bare struct.unpack header walk     {x['bare']:12,.0f} datagrams/s")
    print(f"  monbus GmondListener.feed          {x['monbus']:12,.0f} datagrams/s  "
          f"({100 * x['monbus'] / x['bare']:.0f} %)")


if __name__ == "__main__":
    main()
