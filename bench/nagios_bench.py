"""Benchmarks of the Nagios bridge (not a test): run `.venv/bin/python bench/nagios_bench.py`.

1. Hook start-up: median wall time of one `python3 -m monbus.bridges.nagios.hook` call (a real
   check result written to a spool directory), beside, in the same run and interleaved so they
   share the machine's load: `python -c pass`, `python -c 'import zmq'`, the hook over ZeroMQ
   to a running relay (`--via relay`), and `monbus nagios hook` (through click).
2. Perfdata files: items per CPU-second of `monbus nagios spool`'s decoder on a file of real
   plugin outputs (the corpus' monitoring-plugins samples, 5 services x 500 hosts), beside a
   bare split-and-float loop over the same text (the least any Python parser must do); the
   same with every perfdata number drawn anew (no figure may come from repeating numbers);
   and end to end into a real relay (sender thread's CPU time).  `python bench/nagios_bench.py
   spool` runs only this part.
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


def _wall(cmd, env=None) -> tuple[float, float]:
    """(wall seconds, CPU seconds user+system) of one run of cmd."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
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


if __name__ == "__main__":
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}")
    bench_spool()
    if sys.argv[1:] != ["spool"]:
        bench_hook()
