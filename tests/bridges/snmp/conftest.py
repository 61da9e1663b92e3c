"""Fixtures for the SNMP bridge: real net-snmp snmpd agents on loopback, and net-snmp's own
tools (snmpget, snmpbulkwalk, snmptrap) as the independent reference."""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import free_port, wait_for

SNMPD = shutil.which("snmpd") or "/usr/sbin/snmpd"
COMMUNITY = "public"
V3_USER, V3_AUTH, V3_PRIV = "monbus", "authpass123", "privpass123"


def _require(tool):
    if not (shutil.which(tool) or os.path.exists(tool)):
        pytest.skip(f"{tool} not installed (Debian packages snmpd, snmp: .ci/apt.d/snmp.txt)")


def netsnmp_env(tmp: Path) -> dict:
    """Environment for net-snmp tools: no MIB files (numeric OIDs), a private state dir."""
    env = dict(os.environ)
    env.update(MIBS="", MIBDIRS=str(tmp / "nomibs"), SNMP_PERSISTENT_DIR=str(tmp / "netsnmp"),
               SNMPCONFPATH=str(tmp / "netsnmp"))
    return env


class Agent:
    def __init__(self, proc, port, tmp, env):
        self.proc, self.port, self.tmp, self.env = proc, port, tmp, env
        self.address = f"127.0.0.1:{port}"

    def run(self, *args, check=True) -> str:
        """A net-snmp command (its arguments as given); its stdout."""
        r = subprocess.run(list(args), capture_output=True, text=True, env=self.env,
                           timeout=60)
        if check and r.returncode != 0:
            raise AssertionError(f"{args}: {r.returncode} {r.stderr[-500:]}")
        return r.stdout

    def v2c(self, tool, *oids) -> str:
        return self.run(tool, "-v2c", "-c", COMMUNITY, "-On", "-t", "3", "-r", "2",
                        f"udp:{self.address}", *oids)

    def v1(self, tool, *oids) -> str:
        return self.run(tool, "-v1", "-c", COMMUNITY, "-On", "-t", "3", "-r", "2",
                        f"udp:{self.address}", *oids)

    def v3(self, tool, *oids) -> str:
        return self.run(tool, "-v3", "-l", "authPriv", "-u", V3_USER, "-a", "SHA", "-A",
                        V3_AUTH, "-x", "AES", "-X", V3_PRIV, "-On", "-t", "3", "-r", "2",
                        f"udp:{self.address}", *oids)


def start_agent(tmp: Path, sysname: str = "monbus-test-agent", extra: str = "") -> Agent:
    _require(SNMPD)
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "netsnmp").mkdir(exist_ok=True)
    port = free_port(socket.SOCK_DGRAM)
    conf = tmp / "snmpd.conf"
    conf.write_text(f"""agentAddress udp:127.0.0.1:{port}
rocommunity {COMMUNITY} 127.0.0.1
createUser {V3_USER} SHA "{V3_AUTH}" AES "{V3_PRIV}"
rouser {V3_USER} priv
sysName {sysname}
sysLocation "monbus test lab"
{extra}
""")
    env = netsnmp_env(tmp)
    proc = subprocess.Popen([SNMPD, "-f", "-Lf", str(tmp / "snmpd.log"), "-C", "-c", str(conf),
                             "-p", str(tmp / "snmpd.pid"), f"--persistentDir={tmp}/netsnmp"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    agent = Agent(proc, port, tmp, env)

    def answers():
        if proc.poll() is not None:
            raise AssertionError(f"snmpd exited: {(tmp / 'snmpd.log').read_text()[-800:]}")
        r = subprocess.run(["snmpget", "-v2c", "-c", COMMUNITY, "-On", "-t", "0.5", "-r", "0",
                            f"udp:{agent.address}", ".1.3.6.1.2.1.1.5.0"],
                           capture_output=True, text=True, env=env)
        return r.returncode == 0 and sysname in r.stdout
    wait_for(answers, timeout=30, interval=0.2, what="snmpd to answer")
    return agent


@pytest.fixture
def snmpd(tmp_path_factory):
    """snmpd(sysname=...) -> a running Agent; every agent is killed at teardown."""
    _require("snmpget")
    agents = []

    def make(sysname="monbus-test-agent", extra=""):
        a = start_agent(tmp_path_factory.mktemp("snmpd"), sysname, extra)
        agents.append(a)
        return a
    yield make
    for a in agents:
        a.proc.terminate()
        try:
            a.proc.wait(10)
        except subprocess.TimeoutExpired:
            a.proc.kill()
            a.proc.wait()


_LINE = re.compile(r"^(\.[\d.]+) = (?:([\w-]+): )?(.*)$")


def parse_netsnmp(text: str) -> dict:
    """net-snmp -On output -> {oid tuple: (type, value text)}; multi-line strings joined."""
    out = {}
    last = None
    for raw in text.splitlines():
        m = _LINE.match(raw)
        if not m:
            if last is not None:   # continuation of a multi-line STRING
                t, v = out[last]
                out[last] = (t, v + "\n" + raw)
            continue
        oid = tuple(int(x) for x in m.group(1).strip(".").split("."))
        typ = m.group(2) or ""
        val = m.group(3)
        if typ == "" and val.startswith("No Such"):
            typ = "nosuch"
        out[oid] = (typ, val)
        last = oid
    return out


def netsnmp_number(typ: str, val: str):
    """A net-snmp printed value as a number (None for text)."""
    if typ in ("INTEGER", "Gauge32", "Counter32", "Counter64", "Unsigned32"):
        m = re.search(r"-?\d+", val)
        return int(m.group(0)) if m else None
    if typ == "Timeticks":
        return int(re.search(r"\((\d+)\)", val).group(1))
    if typ == "STRING":
        try:
            return float(val.strip('"'))
        except ValueError:
            return None
    return None


def netsnmp_text(typ: str, val: str) -> str:
    if typ == "STRING":
        return val[1:-1] if val.startswith('"') and val.endswith('"') else val
    return val
