"""A real Nagios 4 (Debian nagios4-core) in a temp dir, with real plugins, for the nagios tests."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from helpers import wait_for

NAGIOS = shutil.which("nagios4") or "/usr/sbin/nagios4"
PLUGINS = "/usr/lib/nagios/plugins"
def read_status(path: Path) -> dict:
    """status.dat -> {('service', host, desc) | ('host', host): {key: value}}."""
    out = {}
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return out
    for kind, body in re.findall(r"^(hoststatus|servicestatus) \{\n(.*?)\n\s*\}", text, re.M | re.S):
        d = {}
        for ln in body.split("\n"):
            k, _, v = ln.strip().partition("=")
            d[k] = v
        if kind == "servicestatus":
            out[("service", d["host_name"], d["service_description"])] = d
        else:
            out[("host", d["host_name"])] = d
    return out


class Nagios:
    def __init__(self, root: Path, proc):
        self.root = root
        self.proc = proc
        self.status_file = root / "status.dat"
        self.command_file = root / "nagios.cmd"

    def status(self) -> dict:
        return read_status(self.status_file)

    def log(self) -> str:
        try:
            return (self.root / "nagios.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""


def write_config(root: Path, objects: str, settings: dict) -> Path:
    (root / "checkresults").mkdir(exist_ok=True)
    (root / "objects.cfg").write_text(objects)
    (root / "resource.cfg").write_text(f"$USER1$={PLUGINS}\n")
    base = {
        "log_file": root / "nagios.log", "cfg_file": root / "objects.cfg",
        "resource_file": root / "resource.cfg", "status_file": root / "status.dat",
        "object_cache_file": root / "objects.cache",
        "precached_object_file": root / "objects.precache",
        "lock_file": root / "nagios.lock", "temp_file": root / "nagios.tmp", "temp_path": root,
        "check_result_path": root / "checkresults", "command_file": root / "nagios.cmd",
        "state_retention_file": root / "retention.dat", "retain_state_information": 0,
        "nagios_user": "root", "nagios_group": "root", "interval_length": 1,
        "status_update_interval": 1, "check_external_commands": 1,
        "command_check_interval": -1, "max_service_check_spread": 1,
        "max_host_check_spread": 1, "process_performance_data": 1, "log_passive_checks": 1,
        "enable_notifications": 0, "use_syslog": 0, "check_for_orphaned_services": 0,
        "check_for_updates": 0, "bare_update_check": 1, "enable_flap_detection": 0,
    }
    base.update(settings)
    cfg = root / "nagios.cfg"
    cfg.write_text("".join(f"{k}={v}\n" for k, v in base.items()))
    return cfg


@pytest.fixture
def nagios(tmp_path):
    """start(objects, **settings) -> a running Nagios; killed (its process group) at teardown."""
    started = []

    def start(objects: str, **settings) -> Nagios:
        root = tmp_path / "nagios"
        root.mkdir(exist_ok=True)
        cfg = write_config(root, objects, settings)
        check = subprocess.run([NAGIOS, "-v", str(cfg)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout[-3000:]
        proc = subprocess.Popen([NAGIOS, str(cfg)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True,
                                env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
        n = Nagios(root, proc)
        started.append(n)
        wait_for(lambda: n.command_file.exists() or proc.poll() is not None, 30,
                 what="nagios to create its command file")
        assert proc.poll() is None, n.log()[-3000:]
        return n
    yield start
    for n in started:
        if n.proc.poll() is None:
            os.killpg(n.proc.pid, signal.SIGTERM)
            try:
                n.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(n.proc.pid, signal.SIGKILL)
                n.proc.wait(5)
