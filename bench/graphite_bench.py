"""Benchmark for `monbus carbon` (not a test): 1,000,000 lines from the bus to a TCP receiver
that counts lines, against carbon-c-relay (Debian package, one worker) relaying the same
plain lines; and the carbon transports alone (graphyte's connection per batch vs monbus's
confirmed connection per batch vs one persistent socket).

Run: .venv/bin/python bench/graphite_bench.py [--lines N] [--runs K]
[--quick | --per-line | --rates-codec]
Each figure is the median of K runs; rates are lines/s at the receiver, from its first byte
to its last line.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

RECEIVER = r"""
import socket, sys, time, selectors
target = int(sys.argv[1])
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(128)
print(s.getsockname()[1], flush=True)
sel = selectors.DefaultSelector(); sel.register(s, selectors.EVENT_READ)
n = 0; t0 = None
while n < target:
    for k, _ in sel.select(60):
        if k.fileobj is s:
            c, _ = s.accept(); sel.register(c, selectors.EVENT_READ)
            continue
        d = k.fileobj.recv(1 << 20)
        if not d:
            sel.unregister(k.fileobj); k.fileobj.close(); continue
        if t0 is None:
            t0 = time.perf_counter()
        n += d.count(b"\n")
print(n, time.perf_counter() - t0, flush=True)
"""


def receiver(n):
    p = subprocess.Popen([sys.executable, "-c", RECEIVER, str(n)], stdout=subprocess.PIPE,
                         text=True)
    port = int(p.stdout.readline())
    return p, port


def finish(p, timeout=300):
    out = p.stdout.readline().split()
    p.wait(timeout)
    n, secs = int(out[0]), float(out[1])
    return n / secs


def wait_port(port, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} never opened")


def make_lines(n):
    t = 1700000000
    # as bridges put them on the bus: with annotations (which carbon never gets)
    return [f"bench.host{i % 10}.metric{i % 1000}.value {i * 0.5} {t + i // 1000} "
            f"mtype=gauge unit=B" for i in range(n)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_carbon_c_relay(data: bytes, n: int) -> float:
    rp, rport = receiver(n)
    d = tempfile.mkdtemp()
    conf = os.path.join(d, "relay.conf")
    with open(conf, "w") as f:
        f.write(f"cluster out forward 127.0.0.1:{rport};\nmatch * send to out stop;\n")
    port = free_port()
    # a queue large enough that the relay never drops (its default is 25,000 lines)
    log = open(os.path.join(d, "relay.log"), "w+")
    cr = subprocess.Popen(["carbon-c-relay", "-f", conf, "-p", str(port), "-w", "1",
                           "-q", str(2 * n)], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(port)
        try:
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(data)
        except OSError as e:
            log.seek(0)
            rp.kill()
            raise RuntimeError(f"carbon-c-relay: {e}; its log ends: "
                               f"{log.read()[-200:]!r}") from None
        return finish(rp)
    finally:
        cr.kill()
        cr.wait()
        log.close()
        shutil.rmtree(d, ignore_errors=True)


def run_monbus(lines, n, spool: bool, extra=()) -> float:
    from monbus.core.bus import Sender
    d = tempfile.mkdtemp()
    rin, rout = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    exe = os.path.join(os.path.dirname(sys.executable), "monbus")
    relay = subprocess.Popen([exe, "relay", "--input", rin, "--output", rout, "--spool",
                              os.path.join(d, "relay-spool"), "--spool-max", "4G"],
                             stderr=subprocess.DEVNULL)
    rp = fwd = None
    try:
        # the lines are put on the bus first: with no subscriber yet the relay holds them
        s = Sender(rin, None, 30.0)
        for x in lines:
            s.add(x)
        stats = s.close(120.0)
        assert stats["lost_lines"] == 0, stats
        rp, rport = receiver(n)
        args = [exe, "carbon", "--connect", rout, "--carbon", f"127.0.0.1:{rport}",
                "--selfmetrics-interval", "0", "--relay", rin, "--batch-size", "1M"]
        if spool:
            args += ["--spool", os.path.join(d, "carbon-spool"), "--spool-max", "4G"]
        args += list(extra)
        fwd = subprocess.Popen(args, stderr=subprocess.DEVNULL)
        return finish(rp)
    finally:
        for p in (fwd, relay):
            if p is not None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(d, ignore_errors=True)


def run_transport(kind: str, data: bytes, n: int, chunk: int = 256 * 1024) -> float:
    from monbus.bridges.graphite.destinations import (GraphyteDestination, TcpDestination,
                                                      split_datagrams)
    rp, rport = receiver(n)
    chunks = split_datagrams(data, chunk)
    if kind == "persistent":
        with socket.create_connection(("127.0.0.1", rport)) as s:
            for c in chunks:
                s.sendall(c)
    else:
        dest = (TcpDestination if kind == "tcp" else GraphyteDestination)("127.0.0.1", rport)
        for c in chunks:
            dest.send(c)
    return finish(rp)


def median(f, runs):
    vals = []
    while len(vals) < runs:
        try:
            vals.append(f())
        except RuntimeError as e:   # report, and run again (other processes share the host)
            print(f"  (a run failed, repeated: {e})", flush=True)
    return statistics.median(vals), vals


def rates_counters(lines, a, ccr):
    """--rates on the same lines as mtype=counter: each of the 1,000 series' first sample
    gives no rate, every later one a rate (500/s) that the C module (where built) writes."""
    counters = [x.replace("mtype=gauge", "mtype=counter") for x in lines]
    n = a.lines - 1000
    r, v = median(lambda: run_monbus(counters, n, True, ["--rates"]), a.runs)
    print(f"monbus carbon --spool --rates (the lines as mtype=counter: {n:,} rates) "
          f"{r:12,.0f}   {[round(x) for x in v]}   ratio {r / ccr:.2f}x", flush=True)


def rates_codec(lines, runs):
    """CPU time (time.process_time, median) of Formatter.encoded_data with rates on the
    bench's lines in 256 KB bodies: the C module against the Python path (the reference)."""
    from monbus.bridges.graphite import forward
    from monbus.core.rates import RateConverter
    for mtype in ("gauge", "counter"):
        text = "\n".join(x.replace("mtype=gauge", f"mtype={mtype}") for x in lines) + "\n"
        data = text.encode()
        bodies, start = [], 0
        while start < len(data):      # bus-message-sized bodies, cut at a line end
            end = data.rfind(b"\n", start, start + 256 * 1024) + 1 or len(data)
            bodies.append(data[start:end])
            start = end
        figures = {}
        for path, module in (("C", forward._fastrates), ("Python", None)):
            if path == "C" and module is None:
                continue
            saved, forward._fastrates = forward._fastrates, module
            try:
                secs = []
                for _ in range(runs):
                    fmt = forward.Formatter("keep", "", RateConverter())
                    t0 = time.process_time()
                    for b in bodies:
                        fmt.encoded_data(b)
                    secs.append(time.process_time() - t0)
            finally:
                forward._fastrates = saved
            figures[path] = len(lines) / statistics.median(secs)
        ratio = (f"   C/Python {figures['C'] / figures['Python']:.1f}x" if "C" in figures
                 else "   (C module not built)")
        print(f"Formatter.encoded_data with rates, mtype={mtype:<7} CPU lines/s: "
              + ", ".join(f"{k} {v:,.0f}" for k, v in figures.items()) + ratio, flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true",
                    help="only carbon-c-relay and monbus carbon --spool (checked / not)")
    ap.add_argument("--per-line", action="store_true",
                    help="only carbon-c-relay and the paths that handle each line in Python")
    ap.add_argument("--rates-codec", action="store_true",
                    help="only the CPU time of --rates' formatter, C module against Python")
    a = ap.parse_args()
    lines = make_lines(a.lines)
    if a.rates_codec:
        rates_codec(lines, a.runs)
        return
    # carbon-c-relay gets the same datapoints as plain carbon lines (it has no annotations)
    data = ("\n".join(x.rsplit(" ", 2)[0] for x in lines) + "\n").encode()
    print(f"{a.lines:,} lines, {len(data) / 1e6:.1f} MB, median of {a.runs} runs, lines/s "
          f"at the receiver")
    ccr, v1 = median(lambda: run_carbon_c_relay(data, a.lines), a.runs)
    print(f"carbon-c-relay -w 1 (plain lines in)    {ccr:12,.0f}   {[round(x) for x in v1]}")
    if a.per_line:
        for extra in (["--tags", "drop", "bench.*.metric*.**"], ["--tags", "fold"],
                      ["--rates"]):
            r, v = median(lambda: run_monbus(lines, a.lines, True, extra), a.runs)
            print(f"monbus carbon --spool {' '.join(extra):<36} {r:12,.0f}   "
                  f"{[round(x) for x in v]}   ratio {r / ccr:.2f}x", flush=True)
        rates_counters(lines, a, ccr)
        return
    if a.quick:
        for extra in ([], ["--no-check-lines"]):
            r, v = median(lambda: run_monbus(lines, a.lines, True, extra), a.runs)
            print(f"monbus carbon --spool {' '.join(extra):<18} {r:12,.0f}   "
                  f"{[round(x) for x in v]}   ratio {r / ccr:.2f}x", flush=True)
        return
    mem, v2 = median(lambda: run_monbus(lines, a.lines, False), a.runs)
    print(f"monbus carbon (bus in, memory queue)    {mem:12,.0f}   {[round(x) for x in v2]}"
          f"   ratio {mem / ccr:.2f}x")
    dur, v3 = median(lambda: run_monbus(lines, a.lines, True), a.runs)
    print(f"monbus carbon (bus in, --spool on disk) {dur:12,.0f}   {[round(x) for x in v3]}"
          f"   ratio {dur / ccr:.2f}x")
    nc, v6 = median(lambda: run_monbus(lines, a.lines, True, ["--no-check-lines"]), a.runs)
    print(f"monbus carbon (bus in, --spool, --no-check-lines) {nc:12,.0f}   "
          f"{[round(x) for x in v6]}   ratio {nc / ccr:.2f}x")
    top, v4 = median(lambda: run_monbus(lines, a.lines, True, ["--tags", "drop",
                                                               "bench.host*.**"]), a.runs)
    print(f"monbus carbon --spool --tags drop 'bench.host*.**' (pattern decided per message) "
          f"{top:12,.0f}   {[round(x) for x in v4]}   ratio {top / ccr:.2f}x")
    slow, v5 = median(lambda: run_monbus(lines, a.lines, True, ["--tags", "drop",
                                                                "bench.*.metric*.**"]), a.runs)
    print(f"monbus carbon --spool --tags drop 'bench.*.metric*.**' (every line checked) "
          f"{slow:12,.0f}   {[round(x) for x in v5]}   ratio {slow / ccr:.2f}x")
    for extra, what in ((["--tags", "fold"], "every line in Python"),
                        (["--rates"], "every line decoded; in C where built")):
        r, v = median(lambda: run_monbus(lines, a.lines, True, extra), a.runs)
        print(f"monbus carbon --spool {' '.join(extra)} ({what}) {r:12,.0f}   "
              f"{[round(x) for x in v]}   ratio {r / ccr:.2f}x", flush=True)
    rates_counters(lines, a, ccr)
    print("transports alone, 256 KB batches:")
    for kind in ("persistent", "tcp", "graphyte"):
        r, v = median(lambda: run_transport(kind, data, a.lines), a.runs)
        print(f"  {kind:<10} {r:12,.0f}   {[round(x) for x in v]}")


if __name__ == "__main__":
    main()
