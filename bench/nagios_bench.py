"""Benchmarks of the Nagios bridge (not a test): run `.venv/bin/python bench/nagios_bench.py`.

1. Hook start-up: median wall time of one `python3 -m monbus.bridges.nagios.hook` call (a real
   check result written to a spool directory), beside, in the same run and interleaved so they
   share the machine's load: `python -c pass`, `python -c 'import zmq'`, the hook over ZeroMQ
   to a running relay (`--via relay`), and `monbus nagios hook` (through click).
2. Perfdata files: items per CPU-second of `monbus nagios spool`'s decoder on a file of real
   plugin outputs (the corpus' monitoring-plugins samples, 5 services x 500 hosts), beside a
   bare split-and-float loop over the same text (the least any Python parser must do); the
   same with every perfdata number drawn anew (no figure may come from repeating numbers);
   and end to end into a real relay (sender thread's CPU time).
3. The whole command: `monbus nagios spool --once` on a file of 440,000 items (the file of 2.
   x 20, numbers drawn anew in each copy) into a relay process: items per CPU-second of the
   spool process (start-up included) and its wall time, beside the bare loop in the same run
   and the command on an empty directory.  BENCH_NAGIOS_OLD=main runs main's bridges beside
   this checkout's.  `python bench/nagios_bench.py spool` runs 2 and 3, `... command` only 3.
"""
from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
MONBUS = str(Path(PY).parent / "monbus")
RUNS = int(os.environ.get("BENCH_RUNS", "21"))


def _wall(cmd, env=None, stderr=None) -> tuple[float, float]:
    """(wall seconds, CPU seconds user+system) of one run of cmd."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env, stderr=stderr)
    wall = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def bench_hook() -> dict:
    from monbus.core.relay import Relay
    spool = tempfile.mkdtemp(prefix="monbus-bench-spool-")
    relay = Relay(["tcp://127.0.0.1:*"], ["tcp://127.0.0.1:*"], None, hold=False,
                  selfmetrics_interval=3600)
    th = threading.Thread(target=relay.run, kwargs={"install_signals": False}, daemon=True)
    th.start()
    args = ["--host", "web01", "--service", "Current Load", "--state", "0",
            "--state-type", "HARD", "--output", "LOAD OK - total load average: 0.03, 0.07, 0.09",
            "--perfdata", "load1=0.030;5.000;10.000;0; load5=0.070;4.000;8.000;0; "
                          "load15=0.090;3.000;6.000;0;", "--time", "1700000000"]
    cases = {
        "python -c pass": [PY, "-c", "pass"],
        "python -c 'import zmq'": [PY, "-c", "import zmq"],
        "hook (python -m, --spool)": [PY, "-m", "monbus.bridges.nagios.hook", "--spool", spool]
        + args,
        "hook (python -m, --via relay)": [PY, "-m", "monbus.bridges.nagios.hook", "--via", "relay",
                                          "--relay", relay.endpoints_in[0]] + args,
        "monbus nagios hook (click, --spool)": [MONBUS, "nagios", "hook", "--spool", spool] + args,
    }
    # as installed: bytecode cached in __pycache__ (the warm-up run writes it), whatever the
    # calling environment says
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    # The same without `site` (python -S): this venv's editable install runs a finder at every
    # start (pathlib, re, typing: ~30 ms) that a regular install does not; here the package is
    # reached through PYTHONPATH instead (a tree of symlinks to core/ and bridges/).
    tree = Path(tempfile.mkdtemp(prefix="monbus-bench-tree-"))
    (tree / "monbus").mkdir()
    (tree / "monbus" / "core").symlink_to(ROOT / "core")
    (tree / "monbus" / "bridges").symlink_to(ROOT / "bridges")
    import zmq
    site_dir = str(Path(zmq.__file__).parent.parent)
    env["PYTHONPATH"] = f"{tree}{os.pathsep}{site_dir}"
    cases.update({
        "python -S -c pass": [PY, "-S", "-c", "pass"],
        "python -S -c 'import zmq'": [PY, "-S", "-c", "import zmq"],
        "hook (python -S -m, --spool)": [PY, "-S", "-m", "monbus.bridges.nagios.hook",
                                         "--spool", spool] + args,
    })
    times: dict = {k: [] for k in cases}
    for cmd in cases.values():  # warm the page cache and .pyc files
        _wall(cmd, env)
    for _ in range(RUNS):
        for name, cmd in cases.items():
            times[name].append(_wall(cmd, env))
    relay.stop()
    th.join(5)
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
           for k, v in times.items()}
    print(f"hook start-up, median of {RUNS} interleaved runs (wall time; CPU time user+sys):")
    for k, (w, c) in med.items():
        bw, bc = med["python -S -c pass" if " -S " in k else "python -c pass"]
        print(f"  {k:40s} {w * 1000:7.1f} ms {w / bw:5.2f}x   CPU {c * 1000:7.1f} ms "
              f"{c / bc:5.2f}x  (vs {'python -S' if ' -S ' in k else 'python'} -c pass)")
    return med


def _corpus_file(hosts: int = 500, cycles: int = 4) -> str:
    rows = [json.loads(x) for x in
            (ROOT / "tests/data/nagios/perfdata_samples.jsonl").read_text().splitlines()]
    from monbus.bridges.nagios.perfdata import split_output
    real = [r for r in rows if r["id"] in ("local-check_load", "local-check_icmp",
                                           "local-check_http", "local-check_disk",
                                           "local-check_users")]
    out = []
    t = 1700000000
    for h in [h for _ in range(cycles) for h in range(hosts)]:
        for r in real:
            o, _, p = split_output(r["text"])
            out.append(f"DATATYPE::SERVICEPERFDATA\tTIMET::{t}\tHOSTNAME::host{h:04d}\t"
                       f"SERVICEDESC::{r['id'][6:]}\tSERVICEPERFDATA::{p}\tSERVICECHECKCOMMAND::"
                       f"{r['id'][6:]}\tSERVICESTATE::0\tSERVICESTATETYPE::1\tSERVICEOUTPUT::{o}")
            t += 1
    return "\n".join(out) + "\n"


def _vary_numbers(text: str, seed: int = 1) -> str:
    """The same file with every digit of every perfdata value drawn anew (same form: `0.030`
    may become `7.402`), as successive checks print them: no figure may come from numbers
    repeating."""
    import random
    import re
    rnd = random.Random(seed)
    digit = re.compile(r"[0-9]")
    value = re.compile(r"(?<==)[-+]?[0-9.,]+")

    def perf(m):
        return m.group(1) + value.sub(
            lambda v: digit.sub(lambda _: str(rnd.randrange(10)), v.group()), m.group(2))

    return re.sub(r"(SERVICEPERFDATA::)([^\t\n]*)", perf, text)


def _bare(text: str) -> int:
    """The least a Python parser does: split records, fields, items; float each value."""
    n = 0
    strip = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ%"
    for raw in text.split("\n"):
        for f in raw.split("\t"):
            if f.startswith("SERVICEPERFDATA::"):
                for tok in f[17:].split():
                    float(tok.partition("=")[2].partition(";")[0].rstrip(strip))
                    n += 1
    return n


class _Null:
    stats = {"lost_lines": 0}

    def add(self, line, topic=None):
        pass

    def add_many(self, topic, lines):
        pass

    def add_body(self, topic, body, nlines):
        pass

    def tick(self):
        pass


def bench_spool(repeats: int = 11) -> dict:
    from monbus.bridges.nagios.perffiles import FileProcessor, wait_delivered
    from monbus.core.bus import Sender
    from monbus.core.relay import Relay
    from monbus.core.selfmetrics import Counters
    text = _corpus_file()
    varied = _vary_numbers(text)
    items = _bare(text)
    assert _bare(varied) == items
    rates: dict = {"bare split+float loop": [], "monbus decoder": [],
                   "monbus decoder, numbers varied": []}
    # steady state, as in the daemon: names and threshold annotations already known
    null_proc = FileProcessor(_Null(), Counters("bench"))
    null_proc.feed_text(text, 1700000000)
    # (the decoder alone first: a relay thread in this process would share the CPU's caches)
    for _ in range(repeats):
        t = time.thread_time()
        _bare(text)
        rates["bare split+float loop"].append(items / (time.thread_time() - t))
        t = time.thread_time()
        null_proc.feed_text(text, 1700000000)
        rates["monbus decoder"].append(items / (time.thread_time() - t))
        t = time.thread_time()
        null_proc.feed_text(varied, 1700000000)
        rates["monbus decoder, numbers varied"].append(items / (time.thread_time() - t))
    relay = Relay(["tcp://127.0.0.1:*"], ["tcp://127.0.0.1:*"], None, hold=False,
                  selfmetrics_interval=3600)
    th = threading.Thread(target=relay.run, kwargs={"install_signals": False}, daemon=True)
    th.start()
    sender = Sender(relay.endpoints_in[0], None, 10.0)
    proc = FileProcessor(sender, Counters("bench"))
    proc.feed_text(text, 1700000000)
    wait_delivered(sender)
    rates["bare split+float loop, beside the relay"] = []
    rates["monbus decoder + Sender to a relay"] = []
    for _ in range(repeats):
        t = time.thread_time()
        _bare(text)
        rates["bare split+float loop, beside the relay"].append(items / (time.thread_time() - t))
        t = time.thread_time()
        proc.feed_text(text, 1700000000)
        wait_delivered(sender)
        rates["monbus decoder + Sender to a relay"].append(items / (time.thread_time() - t))
    sender.close()
    relay.stop()
    th.join(5)
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"perfdata files: {items} items per run, median of {repeats} interleaved runs "
          f"(items per CPU-second of the decoding thread; x the bare loop's median):")
    for k, v in med.items():
        base = med["bare split+float loop" + (", beside the relay" if "relay" in k else "")]
        print(f"  {k:40s} {v:12,.0f} items/s  {v / base:5.2f}x")
    return med


def _tree(ref: str | None, with_c: bool = True) -> Path:
    """A tree for PYTHONPATH holding `monbus` (core/ of this checkout, and bridges/ of this
    checkout, without its C modules if not `with_c`, or, with `ref`, of that git commit:
    `git archive`), so the versions run alike."""
    import shutil
    tree = Path(tempfile.mkdtemp(prefix="monbus-bench-tree-"))
    (tree / "monbus").mkdir()
    (tree / "monbus" / "core").symlink_to(ROOT / "core")
    if ref is None and not with_c:
        shutil.copytree(ROOT / "bridges", tree / "monbus" / "bridges",
                        ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    elif ref is None:
        (tree / "monbus" / "bridges").symlink_to(ROOT / "bridges")
    else:
        tar = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "bridges"],
                             check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree / "monbus")], input=tar, check=True)
    return tree


def bench_command(runs: int = 5, copies: int = 20) -> dict:
    """The whole `monbus nagios spool --once DIR` into a relay process: items per CPU-second
    of the spool process (user+sys, start-up included) and its wall time, on a file of
    `copies` x the decoder's file (each copy's perfdata numbers drawn anew), beside the bare
    loop over the same text and the command on an empty directory (start-up alone).  With
    BENCH_NAGIOS_OLD=<git ref> (e.g. main) the bridges of that ref run too, interleaved; and
    always this checkout without its C module (as installed without a compiler)."""
    import socket
    import zmq
    from monbus.core.bus import Sender
    base = _corpus_file()
    text = "".join(_vary_numbers(base, seed) for seed in range(copies))
    items = _bare(text)
    tmp = Path(tempfile.mkdtemp(prefix="monbus-bench-spool-"))
    ports = []
    for _ in range(2):
        with socket.socket() as sk:
            sk.bind(("127.0.0.1", 0))
            ports.append(sk.getsockname()[1])
    inp, out = (f"tcp://127.0.0.1:{p}" for p in ports)
    relay = subprocess.Popen([MONBUS, "relay", "--input", inp, "--output", out, "--retain", "0",
                              "--no-hold", "--spool", str(tmp / "relay-spool")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    site_dir = str(Path(zmq.__file__).parent.parent)
    versions = {"this checkout": _tree(None),
                "this checkout without its C module": _tree(None, with_c=False)}
    old = os.environ.get("BENCH_NAGIOS_OLD")
    if old:
        versions[old] = _tree(old)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

    def spool(tree: Path, data: str | None) -> tuple[float, float]:
        d = Path(tempfile.mkdtemp(dir=tmp))
        if data is not None:
            (d / "service-perfdata.1").write_text(data)
        e = dict(env, PYTHONPATH=f"{tree}{os.pathsep}{site_dir}")
        got = _wall([PY, "-m", "monbus.core.cli", "nagios", "spool", "--once", "--relay", inp,
                     str(d)], e, subprocess.DEVNULL)
        assert not any(d.iterdir()), "the file was not consumed"
        return got

    try:
        # the relay is up once a line is acknowledged
        probe = Sender(inp, None, 30.0)
        probe.add("nagios.bench.probe.x 1 1")
        assert probe.close()["acked_lines"] == 1, "the relay did not start"
        for tree in versions.values():  # warm the page cache and .pyc files
            spool(tree, base)
        res: dict = {"bare split+float loop": []}
        for name in versions:
            res[f"monbus nagios spool ({name})"] = []
            res[f"start-up alone, empty directory ({name})"] = []
        load = [os.getloadavg()[0]]
        for _ in range(runs):
            t = time.thread_time()
            _bare(text)
            res["bare split+float loop"].append((0.0, time.thread_time() - t))
            for name, tree in versions.items():
                res[f"monbus nagios spool ({name})"].append(spool(tree, text))
                res[f"start-up alone, empty directory ({name})"].append(spool(tree, None))
        load.append(os.getloadavg()[0])
    finally:
        relay.terminate()
        relay.wait(10)
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
           for k, v in res.items()}
    bare = items / med["bare split+float loop"][1]
    print(f"monbus nagios spool --once, the whole command into a relay process: {items} items "
          f"({text.count(chr(10))} records) per run, median of {runs} interleaved runs, load "
          f"average {load[0]:.1f} -> {load[1]:.1f} (items per CPU-second of the spool process, "
          f"user+sys, start-up included; x the bare loop's median):")
    print(f"  {'bare split+float loop':60s} {bare:12,.0f} items/s  1.00x")
    for k, (w, c) in med.items():
        if k.startswith("monbus"):
            print(f"  {k:60s} {items / c:12,.0f} items/s {items / c / bare:5.2f}x   "
                  f"CPU {c:5.2f} s, wall {w:5.2f} s")
        elif k.startswith("start-up"):
            print(f"  {k:60s} {'':21s}   CPU {c:5.2f} s, wall {w:5.2f} s")
    return med


if __name__ == "__main__":
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}")
    if sys.argv[1:] in ([], ["spool"]):
        bench_spool()
    if sys.argv[1:] in ([], ["spool"], ["command"]):
        bench_command(int(os.environ.get("BENCH_COMMAND_RUNS", "5")))
    if sys.argv[1:] == []:
        bench_hook()
