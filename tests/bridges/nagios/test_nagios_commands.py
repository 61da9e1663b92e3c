"""The commands against a real relay: hook (lean and click), spool (at-least-once), passive."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from helpers import DATA, collect, free_port, wait_for
from monbus.bridges.nagios.passive import CommandFile, SkipLine, command_for, names
from monbus.core.line import decode

HOOK = [sys.executable, "-m", "monbus.bridges.nagios.hook"]
LOAD = ["--host", "web01", "--service", "Current Load", "--state", "1", "--state-type", "HARD",
        "--output", "LOAD WARNING - total load average: 5.03, 0.07, 0.09",
        "--perfdata", "load1=5.030;5.000;10.000;0; load5=0.070;4.000;8.000;0; "
                      "load15=0.090;3.000;6.000;0;", "--time", "1700000000"]
LOAD_LINES = [
    "nagios.web01.Current_Load.load1 5.03 1700000000 mtype=gauge warn=5 crit=10 min=0",
    "nagios.web01.Current_Load.load5 0.07 1700000000 mtype=gauge warn=4 crit=8 min=0",
    "nagios.web01.Current_Load.load15 0.09 1700000000 mtype=gauge warn=3 crit=6 min=0",
    "nagios.web01.Current_Load.state 1 1700000000 mtype=state state_type=hard "
    "output=LOAD%20WARNING%20-%20total%20load%20average:%205.03,%200.07,%200.09",
]


def hook(*args, env=None, timeout=30):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("NAGIOS_", "MONBUS_"))}
    e.update(env or {})
    return subprocess.run(HOOK + [str(a) for a in args], capture_output=True, text=True,
                          env=e, timeout=timeout)


# --- hook -----------------------------------------------------------------------------------
@pytest.mark.parametrize("via", ["spool", "relay"])
def test_hook_delivers_a_check_result(relay, subscribe, via):
    sub = subscribe("nagios.web01")
    args = ["--spool", relay.spool] if via == "spool" else ["--via", "relay", "--relay",
                                                             relay.input]
    r = hook(*args, *LOAD)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    got = [x for x in collect(sub, 4)]
    from monbus.core.line import encode
    assert sorted(encode(x) for x in got) == sorted(LOAD_LINES)


def test_click_hook_gives_the_same_lines(relay, subscribe, monbus):
    sub = subscribe("nagios.web01")
    r = monbus("nagios", "hook", "--spool", relay.spool, *LOAD)
    assert r.returncode == 0, r.stderr
    from monbus.core.line import encode
    assert sorted(encode(x) for x in collect(sub, 4)) == sorted(LOAD_LINES)


def test_hook_from_environment_macros(relay, subscribe):
    sub = subscribe("nagios.db1")
    env = {"NAGIOS_HOSTNAME": "db1", "NAGIOS_HOSTSTATEID": "1", "NAGIOS_HOSTOUTPUT": "PING CRIT",
           "NAGIOS_HOSTPERFDATA": "'rta avg'=250ms;100;200;0 pl=100%", "NAGIOS_TIMET": "1700000005",
           "NAGIOS_SERVICESTATEID": "2"}  # stale service macro: must not be used
    r = hook("--spool", relay.spool, env=env)
    assert r.returncode == 0, r.stderr
    got = {x.path: x for x in collect(sub, 3)}
    assert got["nagios.db1.host.rta_avg"].value == 0.25
    assert got["nagios.db1.host.state"].value == 1
    assert got["nagios.db1.host.state"].meta["output"] == "PING CRIT"
    assert got["nagios.db1.host.pl"].timestamp == 1700000005


def test_hook_bad_items_reported_counted_and_the_rest_delivered(relay, subscribe):
    sub = subscribe("nagios.web01", "monbus")
    r = hook("--spool", relay.spool, "--host", "web01", "--service", "x", "--perfdata",
             "ok=1 rta=&391ms;1;2 'open", "--time", "1700000000")
    assert r.returncode == 1
    assert "value '&391ms' is not a number" in r.stderr and "unterminated" in r.stderr
    got = {x.path: x for x in collect(sub, 2)}
    assert got["nagios.web01.x.ok"].value == 1
    [(path, bad)] = [(p, x) for p, x in got.items() if p.startswith("monbus.")]
    assert path.endswith(".nagios_hook.bad_items") and bad.value == 2
    assert bad.meta == {"mtype": "absolute"}


def test_hook_relay_down_spools_or_fails_fast(tmp_path):
    dead = f"tcp://127.0.0.1:{free_port()}"
    spool = tmp_path / "sp"
    r = hook("--via", "relay", "--relay", dead, "--timeout", "0.3", "--spool", spool, *LOAD)
    assert r.returncode == 0, r.stderr
    [msg] = list(spool.iterdir())
    assert msg.read_text().split("\n", 1) == ["nagios.web01.", "\n".join(LOAD_LINES)]
    t = time.monotonic()
    r = hook("--via", "relay", "--relay", dead, "--timeout", "0.3", *LOAD)
    assert r.returncode == 3 and "not acknowledged" in r.stderr
    assert time.monotonic() - t < 20


@pytest.mark.parametrize("args, message", [
    ([], "no host"),
    (["--host", "h", "--state", "7"], "unknown state '7'"),
    (["--host", "h", "--time", "yesterday"], "not a Unix time"),
    (["--host", "h", "--bogus"], "unknown argument '--bogus'"),
    (["--host"], "needs a value"),
    (["--host", "h", "--via", "spool"], "--via spool needs --spool"),
    (["--host", "h", "--via", "carrier-pigeon", "--spool", "/tmp"], "--via must be"),
    (["--host", "h", "--spool", "/tmp", "--spool-max", "lots"], "--spool-max expects a size"),
])
def test_hook_usage_errors_are_one_line(args, message):
    r = hook(*args)
    assert r.returncode == 2 and message in r.stderr
    assert len(r.stderr.strip().split("\n")) == 1 and "Traceback" not in r.stderr


def test_hook_help_documents_every_option(monbus):
    r = hook("--help")
    assert r.returncode == 0
    for opt in ("--host", "--service", "--state", "--state-type", "--output", "--long-output",
                "--perfdata", "--time", "--source", "--relay", "--spool", "--spool-max",
                "--timeout", "--via", "--curve-server-key", "--curve-secret",
                "--quiet", "--no-env"):
        assert opt in r.stdout
    r = monbus("nagios", "hook", "--help")
    assert r.returncode == 0 and "--long-output" in r.stdout


# --- spool ----------------------------------------------------------------------------------
def _perfdir(tmp_path, name="perf", files=("nagios4-perfdata.txt",)):
    d = tmp_path / name
    d.mkdir()
    for i, f in enumerate(files):
        shutil.copy(DATA / "nagios" / f, d / f"service-perfdata.{1700000000 + i}")
    return d


def test_spool_real_nagios_file_golden(relay, subscribe, monbus, tmp_path):
    """A perfdata file Nagios 4.4.6 wrote (contrib template) -> the expected lines."""
    sub = subscribe("nagios.**")
    d = _perfdir(tmp_path)
    r = monbus("nagios", "spool", d, "--once", "--relay", relay.input)
    assert r.returncode == 0, r.stderr
    assert "34 lines, 0 bad records" in r.stderr
    expected = (DATA / "nagios" / "nagios4-perfdata.expected").read_text().split("\n")[:-1]
    from monbus.core.line import encode
    assert sorted(encode(x) for x in collect(sub, len(expected))) == sorted(expected)
    assert not list(d.iterdir())  # consumed once acknowledged


def test_spool_keeps_the_file_when_nothing_can_take_it(monbus, tmp_path):
    d = _perfdir(tmp_path)
    r = monbus("nagios", "spool", d, "--once", "--relay", f"tcp://127.0.0.1:{free_port()}",
               "--timeout", "0.3")
    assert r.returncode == 3 and "1 files kept" in r.stderr
    assert len(list(d.iterdir())) == 1


def test_spool_relay_down_goes_to_the_monbus_spool_then_the_relay(relay, subscribe, monbus,
                                                                  tmp_path):
    d = _perfdir(tmp_path)
    r = monbus("nagios", "spool", d, "--once", "--relay", f"tcp://127.0.0.1:{free_port()}",
               "--timeout", "0.3", "--spool", relay.spool)
    assert r.returncode == 0, r.stderr
    assert not list(d.iterdir()) and "34 lines spooled" in r.stderr
    sub = subscribe("nagios.**")  # the host's relay drains what the bridge spooled
    assert len(collect(sub, 34)) == 34


def test_spool_order_bad_records_and_nagflux_lines(relay, subscribe, monbus, tmp_path):
    d = tmp_path / "perf"
    d.mkdir()
    (d / "b-newer").write_text("DATATYPE::SERVICEPERFDATA\tTIMET::1700000002\tHOSTNAME::h\t"
                               "SERVICEDESC::s\tSERVICEPERFDATA::x=2\n")
    (d / "a-older").write_text(
        "DATATYPE::SERVICEPERFDATA\tTIMET::1700000001\tHOSTNAME::h\tSERVICEDESC::s\t"
        "SERVICEPERFDATA::x=1\nthis is not a perfdata line\nHOSTNAME::\tSERVICEPERFDATA::y=1\n"
        # Nagflux's spool format with its custom tag (corpus sample nagflux-spool-13)
        "DATATYPE::SERVICEPERFDATA\tTIMET::1441791000\tNAGFLUX:TAG::foo=bar\tHOSTNAME::xxx\t"
        "SERVICEDESC::range\tSERVICEPERFDATA::tag=4.5\tSERVICECHECKCOMMAND::check_ranges\n")
    os.utime(d / "b-newer", (1700000200, 1700000200))
    os.utime(d / "a-older", (1700000100, 1700000100))
    sub = subscribe("nagios.**")
    r = monbus("nagios", "spool", d, "--once", "--relay", relay.input)
    assert r.returncode == 1 and "2 bad records" in r.stderr and "bad record" in r.stderr
    got = collect(sub, 3)
    xs = [x.value for x in got if x.path == "nagios.h.s.x"]
    assert xs == [1, 2]  # the older file first
    assert any(x.series == "nagios.xxx.range.tag;foo=bar" and x.value == 4.5 for x in got)
    assert not list(d.iterdir())


def test_spool_daemon_self_metrics_and_clean_stop(relay, subscribe, tmp_path):
    from helpers import monbus_cmd
    d = _perfdir(tmp_path)
    sub = subscribe("nagios.**")
    p = subprocess.Popen(monbus_cmd() + ["nagios", "spool", str(d), "--relay", relay.input,
                                         "--interval", "0.1"], stderr=subprocess.PIPE, text=True)
    try:
        assert len(collect(sub, 34, timeout=30)) == 34
        wait_for(lambda: not list(d.iterdir()), 10, what="file consumed")
        shutil.copy(DATA / "nagios" / "nagios4-perfdata.txt", d / "later")
        assert len(collect(sub, 34, timeout=30)) == 34
    finally:
        p.terminate()
        err = p.communicate(timeout=15)[1]
    assert p.returncode == 0, err


# --- passive --------------------------------------------------------------------------------
def L(text):
    return decode(text)


def test_passive_commands_pure():
    c = command_for(L("snmp.router1.ifOperStatus.eth0.state 2 1700000000 mtype=state "
                      "output=link%20down%0Asecond%7Cline"))
    assert c == ("[1700000000] PROCESS_SERVICE_CHECK_RESULT;router1;ifOperStatus.eth0;2;"
                 "link down\\nsecond/line\n")
    assert command_for(L("ganglia.web1.host.state 1 1700000000 mtype=state")) == \
        "[1700000000] PROCESS_HOST_CHECK_RESULT;web1;1;state 1 from monbus (ganglia.web1.host.state)\n"
    assert command_for(L("nagios.web1.x.state 2 1700000000 mtype=state")) is None  # no loop
    assert command_for(L("nagios.web1.x.state 2 1700000000 mtype=state"), include_nagios=True)
    metric = L("collectd.web1.cpu.idle 3 1700000000 unit=%25 warn=10: crit=5:")
    assert command_for(metric) is None  # thresholds are off by default
    assert command_for(metric, thresholds=True) == (
        "[1700000000] PROCESS_SERVICE_CHECK_RESULT;web1;cpu.idle;2;CRITICAL - idle = 3% "
        "(warn 10:, crit 5:)|'idle'=3%;10:;5:\n")
    ok = L("collectd.web1.cpu.idle 50 1700000000 warn=10: crit=5:")
    assert ";0;OK - idle = 50 " in command_for(ok, thresholds=True)
    inside = L("x.h.m 15 1700000000 warn=@10:20")
    assert ";1;WARNING" in command_for(inside, thresholds=True)
    with pytest.raises(SkipLine):
        command_for(L("snmp.r.x.state 7 1700000000 mtype=state"))
    with pytest.raises(SkipLine):
        command_for(L("snmp.r.x 7 1700000000 warn=9:1"), thresholds=True)
    long = command_for(L("snmp.r.x.state 2 1 mtype=state output=" + "%C3%A9" * 3000))
    assert len(long.encode()) <= 4001 and long.endswith("...\n")
    assert names("snmp.r1.if.eth0", "{host}.example", "{source}:{rest}") == \
        ("snmp", "r1.example", "snmp:if.eth0")


def test_command_file_fifo_without_reader_keeps_results(tmp_path):
    fifo = tmp_path / "nagios.cmd"
    os.mkfifo(fifo)
    cf = CommandFile(str(fifo), max_backlog=3)
    assert cf.submit(["a\n", "b\n", "c\n", "d\n"]) == 0  # nobody reads: kept, bounded
    assert cf.backlog == ["b\n", "c\n", "d\n"] and cf.dropped == 1 and "cannot open" in cf.last_error
    got = []
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert cf.flush() == 3
        got.append(os.read(fd, 100))
    finally:
        os.close(fd)
    assert got == [b"b\nc\nd\n"] and cf.backlog == []


def test_spool_missing_directory_is_a_clear_error(monbus, tmp_path):
    r = monbus("nagios", "spool", tmp_path / "nope", "--once")
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr


def test_parse_a_real_plugin(monbus):
    """`monbus nagios parse` on what the real check_users prints (exit code as the state)."""
    plugin = subprocess.run(["/usr/lib/nagios/plugins/check_users", "-w", "50", "-c", "100"],
                            capture_output=True, text=True)
    r = monbus("nagios", "parse", "--host", "web01", "--service", "users", "--state",
               plugin.returncode, "--time", "1700000000", input=plugin.stdout)
    assert r.returncode == 0, r.stderr
    users = plugin.stdout.split("|")[1].split(";")[0].split("=")[1]
    assert r.stdout.split("\n") == [
        f"nagios.web01.users.users {users} 1700000000 mtype=gauge warn=50 crit=100 min=0",
        f"nagios.web01.users.state {plugin.returncode} 1700000000 mtype=state output="
        + plugin.stdout.split("|")[0].strip().replace(" ", "%20"), ""]


def test_demo_feed_sends_the_real_nagios_file(relay, subscribe):
    from monbus.bridges.nagios.demo import feed
    sub = subscribe("nagios.**")
    assert feed(relay.input, None) == 34
    got = collect(sub, 34)
    assert {x.path for x in got} >= {"nagios.monbus-test.edge.rta", "nagios.router1.host.state"}
