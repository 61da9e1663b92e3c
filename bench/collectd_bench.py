"""Benchmark: collectd network-protocol decode, values per second, on one core.

    .venv/bin/python bench/collectd_bench.py [--runs 5] [--seconds 1.0]

Input: the real captures in tests/data/collectd/ (collectd 5.12 local capture, bucky's 25
packets, libcollectdclient's 5, nDPI's 81).  Three figures, medians of several runs, all
measured in this same process:

- baseline: a bare `struct.unpack_from` walk over the same parts (header of every part,
  the values of every VALUES part, nothing kept): the floor any Python decoder pays;
- monbus parse: PacketParser (records with names, time, interval, values);
- monbus decode: NetworkDecoder (datagram -> finished monbus line texts, write_graphite
  paths, mtype/interval annotations): what `monbus collectd listen` does per datagram (clean
  plain datagrams take its fused walk, in C where bridges/collectd/_fastdecode.c was built);
- monbus decode, Python walk: the same with the C module off: what an install without a C
  compiler does;
- monbus decode, general path: the same decoder with the fused walk off (records from
  PacketParser, then LineMaker): what every datagram cost before the fused walk, and what a
  broken datagram (or any datagram with StoreRates) still costs;
- the same collectd run's signed and encrypted captures (10 datagrams, 350 values each),
  decoded with their passwords: the payload takes the C walk after the signature is
  checked or the part decrypted (in Python: hmac, cryptography), against the general path.

The load average is printed before and after: on a shared machine, compare the ratios to
the baseline rather than the absolute figures.
"""
from __future__ import annotations

import argparse
import os
import statistics
import struct
import sys
import time
from pathlib import Path

from monbus.bridges.collectd.capture import read_pcap, read_pkts
from monbus.bridges.collectd.network import NetworkDecoder, PacketParser, _fastdecode
from monbus.bridges.collectd.typesdb import TypesDB

D = Path(__file__).resolve().parent.parent / "tests" / "data" / "collectd"
HEAD = struct.Struct(">HH").unpack_from
U16 = struct.Struct(">H").unpack_from
BE64 = struct.Struct(">Q").unpack_from
LE64 = struct.Struct("<d").unpack_from


def datagrams() -> list[bytes]:
    out = read_pcap(str(D / "collectd512_local_plain.pcap"))
    out += read_pkts(str(D / "bucky_collectd.pkts"))
    out += [(D / f"collectd_libcollectdclient_pkt{i}.bin").read_bytes() for i in range(1, 6)]
    out += read_pcap(str(D / "ndpi_collectd.pcap"))
    return out


def bare_walk(data: bytes) -> int:
    """The baseline: walk parts, unpack every value, keep nothing; returns the value count."""
    pos, end, n = 0, len(data), 0
    while end - pos >= 4:
        ptype, plen = HEAD(data, pos)
        if plen < 4 or plen > end - pos:
            break
        if ptype == 6:
            count = U16(data, pos + 4)[0]
            off = pos + 6 + count
            for k in data[pos + 6:pos + 6 + count]:
                (LE64 if k == 1 else BE64)(data, off)
                off += 8
            n += count
        pos += plen
    return n


def rate(fn, packets, nvalues, seconds) -> float:
    """Values per CPU second of fn over all packets, repeated for about `seconds` of CPU.

    CPU time (time.process_time), not wall time: the figures are for one core, and on a
    shared machine wall time mostly measures the neighbours."""
    reps = 0
    t0 = time.process_time()
    while True:
        for p in packets:
            fn(p)
        reps += 1
        el = time.process_time() - t0
        if el >= seconds:
            return reps * nvalues / el


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=1.0)
    a = ap.parse_args(argv)
    packets = datagrams()
    nvalues = sum(bare_walk(p) for p in packets)
    db = TypesDB()
    parser = PacketParser()
    decoder = NetworkDecoder(db)
    python = NetworkDecoder(db)
    python._c = False
    general = NetworkDecoder(db)
    general._fast = False
    for p in packets:  # warm the caches as a running listener has them
        decoder.decode(p)
        python.decode(p)
        general.decode(p)
    runs = {"baseline": bare_walk, "parse": parser.parse, "decode": decoder.decode,
            "python": python.decode, "general": general.decode}
    secured = {}
    for mode, password in (("signed", b"s3cr3t-sign"), ("encrypted", b"s3cr3t-encrypt")):
        dgs = read_pcap(str(D / f"collectd512_local_{mode}.pcap"))
        fast = NetworkDecoder(db, password_of={b"monbus": password}.get)
        slow = NetworkDecoder(db, password_of={b"monbus": password}.get)
        slow._fast = False
        n = sum(len(vl.values) for p in dgs for vl in slow.parser.parse(p).values)
        for p in dgs:
            fast.decode(p)
            slow.decode(p)
        secured[mode] = dgs, n
        runs[mode] = fast.decode
        runs[mode + " general"] = slow.decode
    results = {k: [] for k in runs}
    load0 = os.getloadavg()
    for _ in range(a.runs):
        for k, fn in runs.items():
            dgs, n = secured[k.split()[0]] if k.split()[0] in secured else (packets, nvalues)
            results[k].append(rate(fn, dgs, n, a.seconds))
    load1 = os.getloadavg()
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"python {sys.version.split()[0]}, {len(packets)} datagrams, {nvalues} values, "
          f"median of {a.runs} runs of {a.seconds:.1f} CPU s; load average "
          f"{load0[0]:.2f} before, {load1[0]:.2f} after, {os.cpu_count()} cores")
    print(f"baseline bare struct.unpack_from walk : {med['baseline']:>10,.0f} values/s")
    # (figures are per CPU second of one core)
    c = "C walk" if _fastdecode is not None else "C walk NOT BUILT: Python walk"
    for k, what in (("parse", "monbus parse (records)"),
                    ("decode", f"monbus decode (finished lines, {c})"),
                    ("python", "monbus decode, Python walk"),
                    ("general", "monbus decode, general path")):
        print(f"{what:<38}: {med[k]:>10,.0f} values/s "
              f"({100 * med[k] / med['baseline']:.0f} % of baseline)")
    for mode in secured:
        print(f"{'monbus decode, ' + mode + ' capture':<38}: {med[mode]:>10,.0f} values/s "
              f"(general path {med[mode + ' general']:,.0f}; {len(secured[mode][0])} "
              f"datagrams, {secured[mode][1]} values)")


if __name__ == "__main__":
    main()
