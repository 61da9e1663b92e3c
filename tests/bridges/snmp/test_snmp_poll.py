"""`monbus snmp poll` against real net-snmp snmpd agents, checked against net-snmp's own
snmpget/snmpbulkwalk reading the same agent just before and just after the poll."""
from __future__ import annotations

import asyncio
import socket
import time

import pytest

from monbus.bridges.snmp.modules import BUILTIN, SYS_UPTIME
from monbus.core.line import sanitize


def _local_conftest():
    """This directory's conftest (its net-snmp helpers), by path: the top-level tests/
    conftest.py owns the name `conftest`."""
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location("snmp_netsnmp_tools",
                                                  Path(__file__).with_name("conftest.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_t = _local_conftest()
V3_AUTH, V3_PRIV, V3_USER = _t.V3_AUTH, _t.V3_PRIV, _t.V3_USER
netsnmp_number, netsnmp_text, parse_netsnmp = _t.netsnmp_number, _t.netsnmp_text, _t.parse_netsnmp
ALL = ["system", "interfaces", "host-resources", "ucd", "ip", "tcp", "udp"]
# subtrees net-snmp walks to read every table column of the built-in modules
SUBTREES = [".1.3.6.1.2.1.2.2", ".1.3.6.1.2.1.31.1.1", ".1.3.6.1.2.1.25.2.3",
            ".1.3.6.1.2.1.25.3.3", ".1.3.6.1.4.1.2021.10"]


AGENT_LINES = (".agent.status", ".agent.poll_seconds", ".agent.varbinds")


def collect_polls(sub, n_targets, timeout=60.0):
    """Lines from the bus until `n_targets` agent.status lines arrived."""
    got, statuses = [], 0
    deadline = time.monotonic() + timeout
    while statuses < n_targets:
        left = deadline - time.monotonic()
        assert left > 0, f"only {statuses} of {n_targets} targets reported: {got[-5:]}"
        for ln in sub.recv_lines(min(left, 0.5)) or []:
            got.append(ln)
            statuses += ln.path.endswith(".agent.status")
    return got


def netsnmp_read(agent, proto, modules):
    """Everything the modules poll, read by net-snmp: {oid: (type, text)}."""
    scalars = [c.oid for m in modules for c in BUILTIN[m].scalars] + [SYS_UPTIME]
    data = parse_netsnmp(getattr(agent, proto)("snmpget", *(
        "." + ".".join(map(str, o)) for o in scalars)))
    tool = "snmpwalk" if proto == "v1" else "snmpbulkwalk"
    for root in SUBTREES:
        data.update(parse_netsnmp(getattr(agent, proto)(tool, root)))
    return data


def expected(data: dict, host: str, modules) -> dict:
    """path -> (value, mtype) computed from net-snmp's output, independently of the bridge."""
    out = {}
    for name in modules:
        m = BUILTIN[name]
        pre = f"snmp.{host}.{name}"
        for c in m.scalars:
            got = data.get(c.oid)
            if c.kind == "info" or got is None or got[0] == "nosuch":
                continue
            v = netsnmp_number(*got)
            if v is not None:
                out[f"{pre}.{c.name}"] = (v * c.scale,
                                          "counter" if got[0].startswith("Counter") else "gauge")
        for t in m.tables:
            base = f"{pre}.{t.name}" if t.name else pre
            idxs = set()
            for col in t.walked():
                idxs.update(o[len(col):] for o in data if o[:len(col)] == col)
            for idx in idxs:
                label = None
                for lab in t.labels:
                    got = data.get(lab + idx)
                    if got and netsnmp_text(*got).strip():
                        label = netsnmp_text(*got).strip()
                        break
                inst = sanitize(label if label else ".".join(map(str, idx)))
                for c in t.columns:
                    got = data.get(c.oid + idx)
                    if got is None:
                        continue
                    v = netsnmp_number(*got)
                    if v is None:
                        continue
                    path = f"{base}.{inst}.{c.name}"
                    if c.kind == "ifstatus":
                        admin = netsnmp_number(*data[c.oid[:-1] + (7,) + idx])
                        state = 0 if v in (1, 5) or admin == 2 else 2 if v in (2, 7) else \
                            1 if v == 3 else 3
                        out[path] = (state, "state")
                        continue
                    if c.scale_by:
                        v *= netsnmp_number(*data[c.scale_by + idx])
                    mt = "counter" if got[0].startswith("Counter") else "gauge"
                    out[path] = (v * c.scale, mt)
    return out


# values that move while we read: a bracket check would be luck, so they are retried
VOLATILE = ("hrProcessorLoad", "laLoad", "memAvail", "memTotalFree", "memBuffer",
            "memCached", "memShared", ".used", "hrSystemProcesses", "Physical_memory",
            "Available_memory", "tcpCurrEstab")


def compare(before, after, lines):
    """Every bridge value lies between net-snmp's reads before and after the poll."""
    got = {ln.path: ln for ln in lines if not ln.path.endswith(AGENT_LINES)}
    problems = []
    missing = set(before) & set(after) - set(got)
    extra = set(got) - set(before)
    if missing:
        problems.append(f"not published: {sorted(missing)[:10]}")
    if extra:
        problems.append(f"published, not in net-snmp's reads: {sorted(extra)[:10]}")
    for path, ln in got.items():
        if path not in before or path not in after:
            continue
        (b, mt), (a, _) = before[path], after[path]
        if ln.meta["mtype"] != mt:
            problems.append(f"{path}: mtype {ln.meta['mtype']} != {mt}")
        lo, hi = min(a, b), max(a, b)
        if path.endswith("sysUpTime"):
            hi += 0.02
        if not lo - 1e-6 <= ln.value <= hi + 1e-6:
            problems.append(f"{path}: {ln.value} not in net-snmp's [{lo}, {hi}]")
    return problems


def poll_and_compare(agent, monbus, relay, subscribe, proto, modules, extra_args):
    sub = subscribe("snmp.**")
    for attempt in range(4):
        before = netsnmp_read(agent, proto, modules)
        args = ["snmp", "poll", "--once", "--relay", relay.input, "--name", "agent"]
        for m in modules:
            args += ["-m", m]
        r = monbus(*args, *extra_args, agent.address)
        assert r.returncode == 0, r.stderr
        assert "1 targets ok, 0 failed" in r.stderr
        lines = collect_polls(sub, 1)
        after = netsnmp_read(agent, proto, modules)
        problems = compare(expected(before, "agent", modules), expected(after, "agent", modules),
                           lines)
        hard = [p for p in problems if not any(v in p for v in VOLATILE)]
        assert not hard, hard
        if not problems:
            return lines
    raise AssertionError(f"volatile values never agreed with net-snmp: {problems}")


@pytest.mark.parametrize("engine", ["auto", "pysnmp"])
def test_v2c_every_module_equals_netsnmp(snmpd, monbus, relay, subscribe, engine):
    """Both paths: monbus's own BER codec (the default for v1/v2c) and pysnmp's engine."""
    agent = snmpd()
    lines = poll_and_compare(agent, monbus, relay, subscribe, "v2c", ALL,
                             ["-v", "2c", "-c", "public", "--engine", engine])
    paths = {ln.path for ln in lines}
    # the HC counters come from GETBULK over ifXTable, named by ifName
    assert "snmp.agent.interfaces.lo.ifHCInOctets" in paths
    assert "snmp.agent.host-resources.storage._.size" in paths
    assert "snmp.agent.ucd.load.Load-1.laLoad" in paths
    status = [ln for ln in lines if ln.path == "snmp.agent.agent.status"]
    assert status[0].value == 0 and status[0].meta["mtype"] == "state"
    nvb = next(ln for ln in lines if ln.path == "snmp.agent.agent.varbinds").value
    assert nvb >= len(lines) - 3                  # every line came from at least one varbind
    assert next(ln for ln in lines if ln.path == "snmp.agent.agent.poll_seconds").value > 0
    up = next(ln for ln in lines if ln.path == "snmp.agent.system.sysUpTime")
    assert up.meta["sysname"] == "monbus-test-agent" and up.meta["unit"] == "s"
    hc = next(ln for ln in lines if ln.path.endswith("lo.ifHCInOctets"))
    assert hc.meta["mtype"] == "counter" and hc.meta["max"] == str(2 ** 64 - 1)


def test_v3_authpriv_equals_netsnmp(snmpd, monbus, relay, subscribe):
    agent = snmpd()
    poll_and_compare(agent, monbus, relay, subscribe, "v3", ["system", "interfaces", "tcp"],
                     ["-v", "3", "-u", V3_USER, "-l", "authPriv", "-a", "SHA", "-A", V3_AUTH,
                      "-x", "AES", "-X", V3_PRIV])


@pytest.mark.parametrize("engine", ["auto", "pysnmp"])
def test_v1_getnext_equals_netsnmp(snmpd, monbus, relay, subscribe, engine):
    agent = snmpd()
    lines = poll_and_compare(agent, monbus, relay, subscribe, "v1",
                             ["system", "interfaces", "host-resources"],
                             ["-v", "1", "--engine", engine])
    # SNMPv1 cannot carry Counter64: the agent skips ifHC*, and so do we
    assert not any("ifHC" in ln.path for ln in lines)


def test_wrong_v3_password_is_an_availability_line(snmpd, monbus, relay, subscribe):
    agent = snmpd()
    sub = subscribe("snmp.**")
    r = monbus("snmp", "poll", "--once", "--relay", relay.input, "-v", "3", "-u", V3_USER,
               "-A", "wrong-password", "-X", V3_PRIV, "-t", "1", "-r", "0", agent.address)
    assert r.returncode == 2, r.stderr
    assert "0 targets ok, 1 failed" in r.stderr
    *_, status = collect_polls(sub, 1)
    assert status.path.endswith(".agent.status")
    assert status.value == 1 and status.meta["mtype"] == "state"
    assert "SNMP DOWN" in status.meta["output"]
    assert V3_PRIV not in r.stderr + status.meta["output"]


def test_dead_target_times_out_alone(snmpd):
    """Three live agents and a port that swallows requests: the dead one fails at its own
    deadline; the live ones are done long before, all from one engine."""
    from monbus.bridges.snmp.modules import resolve
    from monbus.bridges.snmp.poller import Poller
    from monbus.bridges.snmp.targets import Target, check

    agents = [snmpd(f"agent{i}") for i in range(3)]
    hole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)   # bound, never answers
    hole.bind(("127.0.0.1", 0))
    mods = resolve(["system", "interfaces"])
    live = [check(Target("127.0.0.1", a.port, name=f"a{i}", modules=mods, timeout=2,
                         retries=1), "live") for i, a in enumerate(agents)]
    # the dead target's one timeout cycle (2 x 4 s) is long next to a live poll (tens of
    # ms), so the ordering below holds even on a machine loaded many times over
    dead = check(Target("127.0.0.1", hole.getsockname()[1], name="dead", modules=mods,
                        timeout=4, retries=1), "dead")

    async def run():
        p = Poller(concurrency=10)
        done = {}
        start = time.monotonic()

        async def one(t):
            r = await p.poll(t)
            done[t.name] = time.monotonic() - start
            return r
        rs = await asyncio.gather(one(dead), *(one(t) for t in live))
        p.close()
        return rs, done
    try:
        results, done = asyncio.run(run())
    finally:
        hole.close()
    dead_r, *live_r = results
    assert not dead_r.ok and "No SNMP response" in dead_r.error
    # one timeout cycle: 4 s x (1 retry + 1); its deadline (4 x 2 x 3 modules+1) was
    # never needed because the first GET's timeout ends the poll (the walk never starts)
    assert 8.0 <= done["dead"] < dead.effective_deadline, done
    for r in live_r:
        assert r.ok, r.error
        assert r.varbinds > 20
        assert done[r.target.name] < done["dead"], done


def test_dead_target_via_cli_publishes_the_rest(snmpd, monbus, relay, subscribe, tmp_path):
    a, b = snmpd("one"), snmpd("two")
    hole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    hole.bind(("127.0.0.1", 0))
    f = tmp_path / "targets.toml"
    f.write_text(f"""
[defaults]
version = "2c"
community = "public"
timeout = 1.0
retries = 0
modules = ["system"]

[[target]]
name = "one"
address = "127.0.0.1"
port = {a.port}

[[target]]
name = "dead"
address = "127.0.0.1"
port = {hole.getsockname()[1]}

[[target]]
name = "two"
address = "127.0.0.1"
port = {b.port}
""")
    sub = subscribe("snmp.**")
    try:
        r = monbus("snmp", "poll", "--once", "--relay", relay.input, "--targets", f)
    finally:
        hole.close()
    assert r.returncode == 2, r.stderr
    assert "2 targets ok, 1 failed" in r.stderr and "dead:" in r.stderr
    lines = collect_polls(sub, 3)
    st = {ln.path: ln.value for ln in lines if ln.path.endswith("agent.status")}
    assert st == {"snmp.one.agent.status": 0, "snmp.two.agent.status": 0,
                  "snmp.dead.agent.status": 1}
    names = {ln.path: ln.meta.get("sysname") for ln in lines if "sysUpTime" in ln.path}
    assert names == {"snmp.one.system.sysUpTime": "one", "snmp.two.system.sysUpTime": "two"}


def test_state_file_gives_rates_across_cron_runs(snmpd, monbus, relay, subscribe, tmp_path):
    agent = snmpd()
    state = tmp_path / "state.json"
    sub = subscribe("snmp.**")
    runs = []
    for _ in range(2):
        r = monbus("snmp", "poll", "--once", "--relay", relay.input, "--name", "h", "-m",
                   "interfaces", "-m", "ucd", "--state", state, agent.address)
        assert r.returncode == 0, r.stderr
        runs.append({ln.path: ln for ln in collect_polls(sub, 1)})
    assert not any(p.endswith("_rate") for p in runs[0])
    rates = {p: ln for p, ln in runs[1].items() if p.endswith("_rate")}
    assert "snmp.h.interfaces.lo.ifHCInOctets_rate" in rates
    for p, ln in rates.items():
        c0, c1 = runs[0][p[:-5]], runs[1][p[:-5]]
        dt = c1.timestamp - c0.timestamp
        assert ln.value == pytest.approx((c1.value - c0.value) / dt, rel=1e-3), p
        assert ln.meta["mtype"] == "gauge"
    assert rates["snmp.h.interfaces.lo.ifHCInOctets_rate"].meta["unit"] == "B/s"


def test_daemon_polls_repeatedly_and_stops_cleanly(snmpd, relay, subscribe):
    import signal
    import subprocess
    from helpers import monbus_cmd
    agent = snmpd()
    sub = subscribe("snmp.**")
    own = subscribe("monbus.*.snmp.*")
    p = subprocess.Popen(monbus_cmd() + ["snmp", "poll", "--relay", relay.input, "--interval",
                                         "1", "-m", "system", "--name", "d", agent.address],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = collect_polls(sub, 2, timeout=30)
    finally:
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=20)
    assert p.returncode == 0, err
    ups = [ln.value for ln in lines if ln.path == "snmp.d.system.sysUpTime"]
    assert len(ups) >= 2 and ups[-1] > ups[0]
    # at the stop, the self-metrics go out once more: the sender's losses and the poller's own
    mine = {}
    deadline = time.monotonic() + 20
    while "lost_lines" not in mine and time.monotonic() < deadline:
        mine.update((ln.path.rsplit(".", 1)[1], ln.value) for ln in own.recv_lines(0.3) or [])
    assert mine.get("lost_lines") == 0 and mine.get("spooled_lines") == 0, mine
    assert mine.get("polls", 0) >= 2 and mine.get("bad_responses") == 0, mine


def test_bad_input_is_one_line_error(monbus, tmp_path):
    r = monbus("snmp", "poll", "--once", "-v", "3", "127.0.0.1:1")
    assert r.returncode != 0 and "needs a user" in r.stderr and "Traceback" not in r.stderr
    r = monbus("snmp", "poll", "--once", "-m", "nosuch", "127.0.0.1:1")
    assert "unknown module 'nosuch'" in r.stderr and "Traceback" not in r.stderr
    f = tmp_path / "t.toml"
    f.write_text("[[target]]\naddress = '192.0.2.1'\nversoin = '2c'\n")
    r = monbus("snmp", "poll", "--once", "--targets", f)
    assert "unknown key(s) ['versoin']" in r.stderr and "Traceback" not in r.stderr
    f.write_text("[[target]\n")
    r = monbus("snmp", "poll", "--once", "--targets", f)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    r = monbus("snmp", "poll", "--once")
    assert "nothing to poll" in r.stderr
    r = monbus("snmp", "poll", "--once", "--name", "x", "192.0.2.1", "192.0.2.2")
    assert "--name names one ADDRESS" in r.stderr and "Traceback" not in r.stderr


def test_user_module_from_targets_file(snmpd, monbus, relay, subscribe, tmp_path):
    """A module defined in the targets file: a labelled table with scale, a float column,
    a scalar with scale; values equal snmpget's."""
    agent = snmpd()
    f = tmp_path / "targets.toml"
    f.write_text(f"""
[[target]]
name = "u"
address = "127.0.0.1"
port = {agent.port}
modules = ["mine"]

[module.mine]
scalars = [{{ name = "totalKiB", oid = "1.3.6.1.4.1.2021.4.5.0", scale = 1 }},
           {{ name = "totalMiB", oid = ".1.3.6.1.4.1.2021.4.5.0", scale = 0.0009765625, unit = "MiB" }}]
[[module.mine.tables]]
name = "load"
labels = ["1.3.6.1.4.1.2021.10.1.2"]
columns = [{{ name = "int100", oid = "1.3.6.1.4.1.2021.10.1.5" }},
           {{ name = "config", oid = "1.3.6.1.4.1.2021.10.1.4", kind = "float" }}]
""")
    sub = subscribe("snmp.**")
    r = monbus("snmp", "poll", "--once", "--relay", relay.input, "--targets", f)
    assert r.returncode == 0, r.stderr
    got = {ln.path: ln for ln in collect_polls(sub, 1)}
    ref = parse_netsnmp(agent.v2c("snmpget", ".1.3.6.1.4.1.2021.4.5.0",
                                  ".1.3.6.1.4.1.2021.10.1.4.1", ".1.3.6.1.4.1.2021.10.1.2.1"))
    total = netsnmp_number(*ref[(1, 3, 6, 1, 4, 1, 2021, 4, 5, 0)])
    assert got["snmp.u.mine.totalKiB"].value == total
    assert got["snmp.u.mine.totalMiB"].value == pytest.approx(total / 1024)
    assert got["snmp.u.mine.totalMiB"].meta["unit"] == "MiB"
    label = netsnmp_text(*ref[(1, 3, 6, 1, 4, 1, 2021, 10, 1, 2, 1)])
    assert label == "Load-1"
    assert got["snmp.u.mine.load.Load-1.config"].value == \
        netsnmp_number(*ref[(1, 3, 6, 1, 4, 1, 2021, 10, 1, 4, 1)])
    assert {p for p in got if ".load." in p} == {
        f"snmp.u.mine.load.Load-{n}.{c}" for n in (1, 5, 15) for c in ("int100", "config")}


V3_USERS = [  # (user, auth, priv) as net-snmp's createUser and monbus's -a/-x spell them
    ("umd5des", "MD5", "DES"), ("usha224", "SHA-224", "AES"),
    ("usha256", "SHA-256", "AES-192"), ("usha384", "SHA-384", "AES-256"),
    ("usha512", "SHA-512", None),
]


def test_v3_every_auth_and_privacy_protocol(snmpd, monbus, relay, subscribe):
    extra = "\n".join(
        f'createUser {u} {a} "authpass123"' + (f' {x} "privpass123"' if x else "")
        + f"\nrouser {u} {'priv' if x else 'auth'}" for u, a, x in V3_USERS)
    agent = snmpd("v3-agent", extra)
    sub = subscribe("snmp.**")
    for user, auth, priv in V3_USERS:
        args = ["-v", "3", "-u", user, "-a", auth, "-A", "authpass123"]
        args += ["-l", "authPriv", "-x", priv, "-X", "privpass123"] if priv else \
            ["-l", "authNoPriv"]
        r = monbus("snmp", "poll", "--once", "--relay", relay.input, "-m", "system",
                   "--name", user, *args, agent.address)
        assert r.returncode == 0, (user, r.stderr)
        lines = {ln.path: ln for ln in collect_polls(sub, 1)}
        assert lines[f"snmp.{user}.system.sysUpTime"].meta["sysname"] == "v3-agent", user


def test_garbage_responses_are_quoted_counted_and_published(monbus, relay, subscribe):
    """An 'agent' answering every request with broken BER: the poll fails cleanly, the
    bad datagram is quoted in hex on stderr and counted in a self-metric on the bus."""
    import threading
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def answer():
        while not stop.is_set():
            try:
                _, addr = sock.recvfrom(65535)
            except OSError:
                continue
            sock.sendto(b"\x30\x05\x02\x01\x01\x04\x09", addr)   # length runs past the end
    t = threading.Thread(target=answer, daemon=True)
    t.start()
    sub = subscribe("**")
    try:
        r = monbus("snmp", "poll", "--once", "--relay", relay.input, "-t", "0.5", "-r", "1",
                   "--name", "junk", f"127.0.0.1:{sock.getsockname()[1]}")
    finally:
        stop.set()
        t.join(5)
        sock.close()
    assert r.returncode == 2, r.stderr
    assert "bad SNMP response" in r.stderr and "30050201010409" in r.stderr
    got = []
    deadline = time.monotonic() + 20
    while not any(ln.path.endswith(".snmp.bad_responses") for ln in got):
        assert time.monotonic() < deadline, got
        got.extend(sub.recv_lines(0.5) or [])
    bad = next(ln for ln in got if ln.path.endswith(".snmp.bad_responses"))
    assert bad.path.startswith("monbus.") and bad.value == 2   # the request and its retry
    status = next(ln for ln in got if ln.path == "snmp.junk.agent.status")
    assert status.value == 1


def test_monbus_toml_snmp_poll_table(snmpd, monbus, relay, subscribe, tmp_path):
    """[snmp.poll] in monbus.toml names the targets file and the state (what the generic
    monbus-bridge@snmp-poll unit relies on); -t/-r flags still override the file."""
    agent = snmpd("from-config")
    targets = tmp_path / "targets.toml"
    targets.write_text(f'[[target]]\nname = "cfg"\naddress = "127.0.0.1"\nport = {agent.port}\n'
                       f'modules = ["system"]\ntimeout = 30\n')
    cfg = tmp_path / "monbus.toml"
    cfg.write_text(f'[snmp.poll]\ntargets_file = "{targets}"\n'
                   f'state_file = "{tmp_path / "state.json"}"\n')
    sub = subscribe("snmp.**")
    r = monbus("--config", cfg, "snmp", "poll", "--once", "--relay", relay.input, "-t", "3")
    assert r.returncode == 0, r.stderr
    lines = {ln.path: ln for ln in collect_polls(sub, 1)}
    assert lines["snmp.cfg.system.sysUpTime"].meta["sysname"] == "from-config"
    assert (tmp_path / "state.json").exists()


def test_daemon_polls_each_module_on_its_own_interval(snmpd, relay, subscribe, tmp_path):
    """A module with `interval = 1` is polled every second; the target's other modules
    keep the target's interval (here: once in the test's lifetime)."""
    import signal
    import subprocess
    from helpers import monbus_cmd
    agent = snmpd()
    f = tmp_path / "targets.toml"
    f.write_text(f"""
[[target]]
name = "m"
address = "127.0.0.1"
port = {agent.port}
interval = 3600
modules = ["system", "fast"]

[module.fast]
interval = 1
scalars = [{{ name = "tcpCurrEstab", oid = "1.3.6.1.2.1.6.9.0" }}]
""")
    sub = subscribe("snmp.**")
    p = subprocess.Popen(monbus_cmd() + ["snmp", "poll", "--relay", relay.input, "--targets",
                                         str(f)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = collect_polls(sub, 4, timeout=60)
    finally:
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=20)
    assert p.returncode == 0, err
    fast = [ln for ln in lines if ln.path == "snmp.m.fast.tcpCurrEstab"]
    slow = [ln for ln in lines if ln.path == "snmp.m.system.sysUpTime"]
    assert len(fast) >= 3 and len(slow) == 1, [ln.path for ln in lines]
