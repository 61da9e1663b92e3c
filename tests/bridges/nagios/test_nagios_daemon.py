"""A real Nagios 4 with real monitoring-plugins: the hook (command-line and environment macros),
perfdata files through `monbus nagios spool`, and `monbus nagios passive` back into Nagios.

Independent check: Nagios' own status.dat holds, for each service, the check time, the state, the
output and the perfdata as Nagios itself split them; every value that reaches the bus is compared
with those (read with a small regex written here, not with the bridge's parser).
"""
from __future__ import annotations

import re
import subprocess
import sys
import threading
import time

from pathlib import Path

from helpers import monbus_cmd, wait_for
from monbus.core.line import decode

HOOK = f"{sys.executable} -m monbus.bridges.nagios.hook"
CONTRIB = Path(__file__).resolve().parents[3] / "contrib" / "nagios"


def contrib_setting(name: str) -> str:
    """A setting of contrib/nagios/nagios.cfg: the test runs what users paste."""
    m = re.search(rf"^{name}=(.*)$", (CONTRIB / "nagios.cfg").read_text(), re.M)
    assert m, f"{name} missing from contrib/nagios/nagios.cfg"
    return m.group(1)

EDGE = ("x|'page file'=36%\\;80\\;90 rta=1,5ms\\;100\\;200\\;0 temp=U "
        "offs=-0.5s\\;~:1\\;@2:3 'it''s'=5c")
EDGE_EXPECTED = {  # the hand-made check_dummy output above, as monbus must deliver it
    "page_file": (36, {"mtype": "gauge", "unit": "%", "warn": "80", "crit": "90"}),
    "rta": (0.0015, {"mtype": "gauge", "unit": "s", "warn": "0.1", "crit": "0.2", "min": "0"}),
    "offs": (-0.5, {"mtype": "gauge", "unit": "s", "warn": "~:1", "crit": "@2:3"}),
    "it_s": (5, {"mtype": "counter"}),
    "state": (1, {"mtype": "state", "state_type": "hard", "output": "WARNING: x"}),
}
REAL = {  # service -> plugin command line (thresholds known, values measured by the plugin)
    "load": "$USER1$/check_load -w 50,40,30 -c 100,80,60",
    "users": "$USER1$/check_users -w 50 -c 100",
    "procs": "$USER1$/check_procs -w 5000 -c 10000",
    "disk": "$USER1$/check_disk -w 10% -c 5% -p /",
}


def contrib_commands(root, spooldir) -> dict:
    """The command definitions of contrib/nagios/commands.cfg, with this test's paths."""
    text = (CONTRIB / "commands.cfg").read_text()
    text = (text.replace("/usr/bin/python3", sys.executable)
            .replace("/var/spool/monbus-nagios", f"{root}/perfspool")
            .replace("/var/spool/monbus", str(spooldir))
            .replace("/var/lib/nagios4", str(root)))
    body = re.sub(r"#.*", "", text)
    return dict(re.findall(r"command_name\s+(\S+)\s+command_line\s+(.+)", body))


def objects(root, spooldir) -> str:
    cmds = {
        "check_dummy": '$USER1$/check_dummy $ARG1$ "$ARG2$"',
        "check_long": "/bin/printf 'LONG OK first line|a=1\\nsecond line\\nthird|b=2ms\\nc=3s\\n'",
        **contrib_commands(root, spooldir),
    }
    # the event handler's lines get their own source, to tell them from the perfdata hook's
    cmds["monbus-event-hook-env"] += " --source nagiosenv"
    cmds.update({f"check_{k}": v for k, v in REAL.items()})
    out = ["define timeperiod {\n timeperiod_name 24x7\n alias 24x7\n"
           + "".join(f" {d} 00:00-24:00\n" for d in ("sunday", "monday", "tuesday", "wednesday",
                                                   "thursday", "friday", "saturday")) + "}\n"]
    out += [f"define command {{\n command_name {k}\n command_line {v}\n}}\n"
            for k, v in cmds.items()]
    common = (" max_check_attempts 1\n check_interval 4\n retry_interval 4\n"
              " check_period 24x7\n notification_period 24x7\n notifications_enabled 0\n"
              " contacts nobody\n")
    out.append("define contact {\n contact_name nobody\n host_notifications_enabled 0\n"
               " service_notifications_enabled 0\n host_notification_period 24x7\n"
               " service_notification_period 24x7\n host_notification_options n\n"
               " service_notification_options n\n host_notification_commands check_dummy\n"
               " service_notification_commands check_dummy\n}\n")
    for host in ("monbus-test", "router1"):
        out.append(f"define host {{\n host_name {host}\n alias {host}\n address 127.0.0.1\n"
                   f" check_command check_dummy!0!UP ~ 'quoted'|rta=0.5ms\\;100\\;200\\;0\n"
                   f"{common}}}\n")
    services = {k: f"check_{k}" for k in REAL}
    services["edge"] = f"check_dummy!1!{EDGE}"
    services["long"] = "check_long"
    for svc, cmd in services.items():
        out.append(f"define service {{\n host_name monbus-test\n service_description {svc}\n"
                   f" check_command {cmd}\n{common}}}\n")
    for svc in ("ifOperStatus.eth0", "temp"):
        out.append(f"define service {{\n host_name router1\n service_description {svc}\n"
                   f" check_command check_dummy!3!no result yet\n active_checks_enabled 0\n"
                   f" passive_checks_enabled 1\n{common}}}\n")
    return "".join(out)


_VALUE = re.compile(r"([-\d.]+)([a-zA-Z%]*)")
_FACTOR = {"": 1, "B": 1, "%": 1, "s": 1}


def nagios_values(perfdata: str) -> dict:
    """Nagios' perfdata of the real plugins (simple items only) -> {label: value in base unit}."""
    out = {}
    for token in perfdata.split():
        label, _, rest = token.partition("=")
        m = _VALUE.match(rest)
        out[label] = float(m.group(1)) * _FACTOR[m.group(2)]
    return out


class Collected:
    """What `monbus tail` prints, grouped by check."""

    def __init__(self, proc):
        self.proc = proc
        self.raw: list[str] = []
        self.checks: dict = {}  # (source, host, service) -> {ts: {name: Line}}
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self._done = 0

    def _read(self):
        for text in self.proc.stdout:
            self.raw.append(text.rstrip("\n"))

    def pump(self):
        new, self._done = self.raw[self._done:], len(self.raw)
        for text in new:
            line = decode(text)
            src, host, svc, name = line.path.split(".", 3)
            self.checks.setdefault((src, host, svc), {}).setdefault(
                line.timestamp, {})[name] = line

    def check_near(self, source, host, svc, t: float, need=("state",)):
        """The lines of the check reported at about time t (TIMET is taken just after it)."""
        for ts, lines in sorted(self.checks.get((source, host, svc), {}).items()):
            if t - 1 <= ts <= t + 3 and all(n in lines for n in need):
                return lines
        return None


def _spool_daemon(relay, directory):
    return subprocess.Popen(monbus_cmd() + ["nagios", "spool", str(directory), "--relay",
                                            relay.input, "--source", "nagiosfile",
                                            "--interval", "0.2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_real_nagios_hook_and_perfdata_files(relay, nagios, tmp_path):
    root = tmp_path / "nagios"
    tail = subprocess.Popen(monbus_cmd() + ["tail", "--connect", relay.output, "nagios.monbus-test",
                                            "nagiosfile.monbus-test", "nagiosenv.monbus-test"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: len(relay.relay._subs) >= 3, 20, what="monbus tail subscribed")
    col = Collected(tail)
    (root / "perfspool").mkdir(parents=True)
    spool_proc = _spool_daemon(relay, root / "perfspool")
    try:
        n = nagios(objects(root, relay.spool),
                   service_perfdata_command="monbus-service-hook",
                   host_perfdata_command="monbus-host-hook",
                   global_service_event_handler="monbus-event-hook-env",
                   enable_event_handlers=1,
                   enable_environment_macros=1,
                   illegal_macro_output_chars='`$"',
                   service_perfdata_file=contrib_setting("service_perfdata_file").replace(
                       "/var/lib/nagios4", str(root)),
                   service_perfdata_file_template=contrib_setting(
                       "service_perfdata_file_template"),
                   service_perfdata_file_mode="a",
                   service_perfdata_file_processing_interval=1,
                   service_perfdata_file_processing_command=contrib_setting(
                       "service_perfdata_file_processing_command"),
                   host_perfdata_file=contrib_setting("host_perfdata_file").replace(
                       "/var/lib/nagios4", str(root)),
                   host_perfdata_file_template=contrib_setting("host_perfdata_file_template"),
                   host_perfdata_file_mode="a",
                   host_perfdata_file_processing_interval=1,
                   host_perfdata_file_processing_command=contrib_setting(
                       "host_perfdata_file_processing_command"))
        services = list(REAL) + ["edge", "long"]
        done: dict = {}
        missing: list = []

        def all_arrived():
            col.pump()
            status = n.status()
            missing.clear()
            for svc in services:
                st = status.get(("service", "monbus-test", svc))
                if not st or st.get("has_been_checked") != "1":
                    missing.append(("unchecked", svc))
                    continue
                t = float(st["last_check"])
                for source in ("nagios", "nagiosfile"):
                    lines = col.check_near(source, "monbus-test", svc, t)
                    if lines is None:
                        missing.append((source, svc, t))
                    else:
                        done[(source, svc)] = (st, lines)
            host = status.get(("host", "monbus-test"))
            if not host or host.get("has_been_checked") != "1":
                missing.append(("unchecked", "host"))
            else:
                for source in ("nagios", "nagiosfile"):
                    lines = col.check_near(source, "monbus-test", "host",
                                           float(host["last_check"]), need=("state", "rta"))
                    if lines is None:
                        missing.append((source, "host", host["last_check"]))
                    else:
                        done[(source, "host")] = (host, lines)
            # the event handler ran once, at the edge service's change to a hard WARNING
            env = col.checks.get(("nagiosenv", "monbus-test", "edge"))
            if not env:
                missing.append(("nagiosenv", "edge"))
            else:
                done["env"] = next(iter(env.values()))
            return not missing

        try:
            wait_for(all_arrived, 60, interval=0.1, what="every check result on the bus, twice")
        except AssertionError:
            seen = {k: sorted(v) for k, v in col.checks.items()}
            raise AssertionError(f"missing {missing}; on the bus: {seen}; "
                                 f"nagios.log: {n.log()[-2000:]}") from None
        # the rotated perfdata files are consumed (deleted) once delivered; Nagios goes on
        # rotating new ones, so wait for the ones there now
        present = set((root / "perfspool").iterdir())
        wait_for(lambda: not present & set((root / "perfspool").iterdir()), 20,
                 what="perfdata files deleted after delivery")
    finally:
        spool_proc.terminate()
        err = spool_proc.communicate(timeout=15)[1]
        tail.terminate()
        tail.wait(15)
    assert spool_proc.returncode == 0, err

    for source in ("nagios", "nagiosfile"):
        # real plugins: every value Nagios recorded arrives, thresholds as configured
        for svc in REAL:
            st, lines = done[(source, svc)]
            expect = nagios_values(st["performance_data"])
            assert expect, st
            got = {k: v.value for k, v in lines.items() if k != "state"}
            assert got == {k.replace("/", "_"): v for k, v in expect.items()}, (source, svc)
            assert lines["state"].value == int(st["current_state"])
            assert lines["state"].meta["output"] == st["plugin_output"]
        load = done[(source, "load")][1]
        assert (load["load1"].meta["warn"], load["load15"].meta["crit"]) == ("50", "60")
        assert done[(source, "disk")][1]["_"].meta["unit"] == "B"
        # hand-made edge cases through check_dummy: quoted labels, decimal comma, U, ranges
        _, lines = done[(source, "edge")]
        got = {k: (v.value, v.meta) for k, v in lines.items()}
        if source == "nagiosfile":  # the file template carries no state type
            got["state"][1].pop("state_type", None)
            EDGE_EXPECTED["state"][1].pop("state_type", None)
        assert got == EDGE_EXPECTED
        # perfdata after a `|` on a later line, as Nagios splits it
        _, lines = done[(source, "long")]
        assert {k: v.value for k, v in lines.items()} == {"a": 1, "b": 0.002, "c": 3, "state": 0}
        assert lines["state"].meta["output"] == "LONG OK first line"
    assert done[("nagios", "long")][1]["state"].meta["long_output"] == "second line\nthird"
    # the event handler with environment macros: exact, nothing stripped
    got = {k: (v.value, v.meta) for k, v in done["env"].items()}
    EDGE_EXPECTED["state"][1]["state_type"] = "hard"
    assert got == EDGE_EXPECTED
    # host check, macros on the command line: the quotes and the ~ survive
    for source in ("nagios", "nagiosfile"):
        host, lines = done[(source, "host")]
        assert lines["state"].meta["output"] == "OK: UP ~ 'quoted'" == host["plugin_output"]
        assert lines["state"].value == int(host["current_state"]) == 0
        assert lines["rta"].value == 0.0005 and lines["rta"].meta["crit"] == "0.2"


def test_passive_results_recorded_by_nagios(relay, nagios, tmp_path, monbus):
    root = tmp_path / "nagios"
    root.mkdir()
    (root / "perfspool").mkdir()
    n = nagios(objects(root, relay.spool), execute_service_checks=0, execute_host_checks=0)
    proc = subprocess.Popen(monbus_cmd() + ["nagios", "passive", "--connect", relay.output,
                                            "--command-file", str(n.command_file),
                                            "--thresholds", "snmp.**", "collectd.**",
                                            "ganglia.**", "nagios.**"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: len(relay.relay._subs) >= 4, 20, what="passive subscribed")
        now = int(time.time())
        r = monbus("send", "--relay", relay.input,
                   f"snmp.router1.ifOperStatus.eth0.state 2 {now} mtype=state "
                   f"output=ifOperStatus%20eth0%20down%20(trap%20linkDown)",
                   f"collectd.router1.temp 85.5 {now} unit=C warn=70 crit=80",
                   f"ganglia.router1.host.state 1 {now} mtype=state output=gmond%20silent",
                   f"nagios.router1.temp.state 0 {now} mtype=state output=loop")
        assert r.returncode == 0, r.stderr

        def recorded():
            st = n.status()
            svc = st.get(("service", "router1", "ifOperStatus.eth0"), {})
            temp = st.get(("service", "router1", "temp"), {})
            host = st.get(("host", "router1"), {})
            if svc.get("current_state") == "2" and temp.get("current_state") == "2" and \
                    host.get("current_state") == "1":
                return svc, temp, host
            return None
        svc, temp, host = wait_for(recorded, 60, interval=0.2, what="passive results in status.dat")
    finally:
        proc.terminate()
        err = proc.communicate(timeout=15)[1]
    assert svc["plugin_output"] == "ifOperStatus eth0 down (trap linkDown)"
    assert svc["check_type"] == "1"  # passive
    assert temp["plugin_output"] == "CRITICAL - temp = 85.5C (warn 70, crit 80)"
    assert temp["performance_data"] == "'temp'=85.5;70;80"
    assert host["plugin_output"] == "gmond silent"
    assert "loop" not in n.log()  # the nagios-sourced line was not fed back
    assert "PROCESS_SERVICE_CHECK_RESULT;router1;temp;0;loop" not in n.log(), err
