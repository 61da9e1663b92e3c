"""Benchmark of `monbus snmp poll` against real net-snmp snmpd agents on loopback.

    .venv/bin/python bench/snmp_bench.py [--runs 5] [--agents 10] [--targets 100,500]

1. The same full MIB-2 walk (.1.3.6.1.2.1) of one local snmpd with net-snmp's
   `snmpbulkwalk`, with plain pysnmp (`bulk_walk_cmd`, lookupMib off) and with monbus
   (in-process Poller + conversion to lines, and the `monbus snmp poll --once` command as
   cron runs it): times, medians of --runs runs, and the ratios to snmpbulkwalk.
2. Many targets: N concurrent targets (spread over --agents snmpd processes on different
   ports) polled with the system and interfaces modules, repeatedly: varbinds/s of wall
   time and per CPU second of the monbus process (the agents run on the same 2 cores).
Not a test: it prints figures; docs/snmp.md records them.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MIB2 = (1, 3, 6, 1, 2, 1)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_for(tmp: Path) -> dict:
    return dict(os.environ, MIBS="", MIBDIRS=str(tmp / "nomibs"),
                SNMP_PERSISTENT_DIR=str(tmp / "persist"), SNMPCONFPATH=str(tmp / "persist"))


def start_agents(n: int, tmp: Path) -> list:
    agents = []
    for i in range(n):
        d = tmp / f"agent{i}"
        (d / "persist").mkdir(parents=True)
        port = free_udp_port()
        (d / "snmpd.conf").write_text(f"agentAddress udp:127.0.0.1:{port}\n"
                                      f"rocommunity public 127.0.0.1\nsysName bench{i}\n")
        p = subprocess.Popen([shutil.which("snmpd") or "/usr/sbin/snmpd", "-f", "-Lf",
                              str(d / "log"), "-C", "-c", str(d / "snmpd.conf"), "-p",
                              str(d / "pid"), f"--persistentDir={d}/persist"],
                             env=env_for(d), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        agents.append((p, port))
    for p, port in agents:
        deadline = time.monotonic() + 30
        while subprocess.run(["snmpget", "-v2c", "-c", "public", "-t", "0.5", "-r", "0",
                              f"127.0.0.1:{port}", ".1.3.6.1.2.1.1.5.0"], env=env_for(tmp),
                             capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                raise SystemExit(f"snmpd on {port} does not answer")
    return agents


def median_time(fn, runs: int) -> tuple[float, object]:
    times, last = [], None
    for _ in range(runs):
        t = time.perf_counter()
        last = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), last


def bench_walk(port: int, runs: int, tmp: Path) -> None:
    from monbus.bridges.snmp.modules import Column, Module, Table
    from monbus.bridges.snmp.poller import Poller
    from monbus.bridges.snmp.samples import Skipped, module_lines
    from monbus.bridges.snmp.targets import Target, check
    from monbus.core.line import Sanitizer, encode

    env = env_for(tmp)

    def netsnmp():
        out = subprocess.run(["snmpbulkwalk", "-v2c", "-c", "public", "-On", "-Cr25",
                              f"127.0.0.1:{port}", ".1.3.6.1.2.1"], env=env,
                             capture_output=True, text=True, check=True).stdout
        return out.count("\n")

    def plain_pysnmp():
        from pysnmp.hlapi.v3arch.asyncio import (CommunityData, ContextData, ObjectIdentity,
                                                 ObjectType, SnmpEngine, UdpTransportTarget,
                                                 bulk_walk_cmd)

        async def run():
            eng = SnmpEngine()
            tgt = await UdpTransportTarget.create(("127.0.0.1", port), timeout=2, retries=1)
            n = 0
            async for ei, es, ex, vbs in bulk_walk_cmd(
                    eng, CommunityData("public"), tgt, ContextData(), 0, 25,
                    ObjectType(ObjectIdentity("1.3.6.1.2.1")), lookupMib=False,
                    lexicographicMode=False):
                if ei or es:
                    break
                n += len(vbs)
            eng.close_dispatcher()
            return n
        return asyncio.run(run())

    mod = Module("mib2walk", tables=(Table("all", (Column("v", MIB2),)),))
    target = check(Target("127.0.0.1", port, name="bench", modules=[mod],
                          max_repetitions=25, deadline=60), "bench")

    def monbus_inproc():
        async def run():
            p = Poller()
            r = await p.poll(target)
            p.close()
            assert r.ok, r.error
            lines = module_lines("bench", mod, r.scalars, r.walked, time.time(), Sanitizer(),
                                 Skipped())
            for ln in lines:
                encode(ln)
            return r.varbinds
        return asyncio.run(run())

    conf = tmp / "mib2.toml"
    conf.write_text(f"""[[target]]
name = "bench"
address = "127.0.0.1"
port = {port}
deadline = 60
modules = ["mib2walk"]
[module.mib2walk]
[[module.mib2walk.tables]]
name = "all"
columns = [{{ name = "v", oid = "1.3.6.1.2.1" }}]
""")
    spool = tmp / "spool"
    monbus_exe = str(Path(sys.executable).parent / "monbus")

    def monbus_cli():
        # no relay runs: lines go to the spool, as cron would when the relay is down
        r = subprocess.run([monbus_exe, "snmp", "poll", "--once", "--no-progress", "--targets",
                            str(conf), "--relay", "tcp://127.0.0.1:9", "--timeout", "0.01",
                            "--spool", str(spool)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return r.stderr.strip().splitlines()[-1]

    def python_startup():
        subprocess.run([sys.executable, "-c", "import monbus.bridges.snmp.poller"], check=True)

    t_net, n_net = median_time(netsnmp, runs)
    t_py, n_py = median_time(plain_pysnmp, runs)
    t_mb, n_mb = median_time(monbus_inproc, runs)
    t_cli, summary = median_time(monbus_cli, runs)
    t_start, _ = median_time(python_startup, runs)
    print(f"\n== full MIB-2 walk of one snmpd (GETBULK, max-repetitions 25), medians of {runs}")
    print(f"  snmpbulkwalk (net-snmp, C)     {t_net:7.3f} s  {n_net} varbinds   1.0x")
    print(f"  plain pysnmp bulk_walk_cmd     {t_py:7.3f} s  {n_py} varbinds  {t_py / t_net:5.1f}x")
    print(f"  monbus Poller + lines          {t_mb:7.3f} s  {n_mb} varbinds  {t_mb / t_net:5.1f}x")
    print(f"  monbus snmp poll --once (CLI)  {t_cli:7.3f} s  ({summary.split(': ', 1)[-1]})"
          f"  {t_cli / t_net:5.1f}x")
    print(f"    of which Python start + imports {t_start:.3f} s")


def bench_many(ports: list, counts: list, rounds: int, engine: str = "auto") -> None:
    from monbus.bridges.snmp.modules import resolve
    from monbus.bridges.snmp.poller import Poller
    from monbus.bridges.snmp.samples import Skipped, module_lines
    from monbus.bridges.snmp.targets import Target, check
    from monbus.core.line import Sanitizer, encode

    mods = resolve(["system", "interfaces"])
    print(f"\n== many targets over {len(ports)} snmpd agents (system + interfaces modules), "
          f"{rounds} rounds each, medians, engine {engine}")
    for n in counts:
        targets = [check(Target("127.0.0.1", ports[i % len(ports)], name=f"t{i}",
                                modules=mods, timeout=5, retries=2), "t")
                   for i in range(n)]
        names = Sanitizer()

        async def run():
            p = Poller(concurrency=min(n, 100), engine=engine)
            rates, cpu_rates, fails = [], [], 0
            for _ in range(rounds):
                w, c = time.perf_counter(), time.process_time()
                rs = await asyncio.gather(*(p.poll(t) for t in targets))
                vb = 0
                for r in rs:
                    fails += not r.ok
                    vb += r.varbinds
                    for m in r.target.modules:
                        for ln in module_lines(r.target.host, m, r.scalars, r.walked, 1.0,
                                               names, Skipped()):
                            encode(ln)
                w, c = time.perf_counter() - w, time.process_time() - c
                rates.append(vb / w)
                cpu_rates.append(vb / c)
            p.close()
            return statistics.median(rates), statistics.median(cpu_rates), fails, vb
        rate, cpu_rate, fails, vb = asyncio.run(run())
        print(f"  {n:4d} targets: {vb} varbinds/round  {rate:8.0f} varbinds/s wall  "
              f"{cpu_rate:8.0f} varbinds per CPU-second of monbus  ({fails} failed polls)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--agents", type=int, default=10)
    ap.add_argument("--targets", default="100,500")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        agents = start_agents(a.agents, tmp)
        try:
            bench_walk(agents[0][1], a.runs, tmp)
            ports = [p for _, p in agents]
            counts = [int(x) for x in a.targets.split(",")]
            bench_many(ports, counts, a.rounds)
            # the baseline: the same polls with every response decoded by pysnmp/pyasn1
            bench_many(ports, counts[:1], a.rounds, engine="pysnmp")
        finally:
            for p, _ in agents:
                p.terminate()
            for p, _ in agents:
                p.wait()


if __name__ == "__main__":
    main()
