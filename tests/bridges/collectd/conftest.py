"""Fixtures for the collectd bridge: a real collectd 5.12 (Debian collectd-core) in a temp
dir, `monbus collectd listen` as a subprocess, and a Python command line that the exec
plugin can run as `nobody` (collectd's exec refuses to run programs as root)."""
from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from helpers import monbus_cmd, wait_for

COLLECTD = shutil.which("collectd") or "/usr/sbin/collectd"
TYPESDB = "/usr/share/collectd/types.db"
HOSTNAME = "cdtest.monbus.example"


def have_collectd() -> bool:
    return os.path.exists(COLLECTD) and os.path.exists("/usr/lib/collectd/network.so")


@pytest.fixture
def collectd_host():
    """The Hostname the test collectd runs with (a dotted name, to check the escaping)."""
    return HOSTNAME


def collectd_conf(d: Path, body: str, interval: float = 1) -> str:
    """A complete collectd.conf: everything in `d`, `Interval`, logfile, then `body`.

    `WriteThreads 1`: collectd's csv plugin (csv.c, csv_write) creates a missing file with
    stat() then fopen("w") and appends with fopen("a"), unlocked in between.  With several
    write threads, two values of one series queued together (the write queue backs up on a
    loaded machine) can both find the file missing: the second fopen("w") truncates the
    rows the first thread has appended by then, and any of them may be lost, not only the
    oldest (the tests once saw a few bus values that no csv row showed).  One write thread
    writes every value list in turn, so the csv files hold every row."""
    return f"""Hostname "{HOSTNAME}"
FQDNLookup false
BaseDir "{d}"
PIDFile "{d}/collectd.pid"
PluginDir "/usr/lib/collectd"
TypesDB "{TYPESDB}"
Interval {interval}
WriteThreads 1
AutoLoadPlugin false
LoadPlugin logfile
<Plugin logfile>
  LogLevel info
  File "{d}/collectd.log"
  Timestamp true
</Plugin>
{body}
"""


class Procs:
    """Processes started by a test, stopped (TERM, then KILL) at teardown."""

    def __init__(self):
        self.procs: list[subprocess.Popen] = []

    def start(self, args, **kw) -> subprocess.Popen:
        p = subprocess.Popen([str(a) for a in args], **kw)
        self.procs.append(p)
        return p

    def stop_all(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


@pytest.fixture
def procs():
    ps = Procs()
    yield ps
    ps.stop_all()


@pytest.fixture
def open_tmp():
    """A temp dir that the exec plugin's unprivileged user can read (pytest's is 0700)."""
    d = Path(tempfile.mkdtemp(prefix="monbus-collectd-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def start_collectd(procs):
    """start_collectd(dir, body) -> Popen of `collectd -C conf -f`, checked to be running."""
    if not have_collectd():
        pytest.skip("collectd-core is not installed (.ci/apt.d/collectd.txt)")

    def start(d: Path, body: str, interval: float = 1):
        conf = d / "collectd.conf"
        conf.write_text(collectd_conf(d, body, interval))
        test = subprocess.run([COLLECTD, "-C", str(conf), "-t"], capture_output=True, text=True)
        assert test.returncode == 0, f"collectd -t: {test.stdout}{test.stderr}"
        p = procs.start([COLLECTD, "-C", conf, "-f"], stdout=open(d / "collectd.out", "w"),
                        stderr=subprocess.STDOUT)
        wait_for(lambda: (d / "collectd.log").exists() or p.poll() is not None,
                 timeout=30, what="collectd start")
        assert p.poll() is None, (d / "collectd.out").read_text()
        return p
    return start


@pytest.fixture
def start_listener(procs, tmp_path):
    """start_listener(*args) -> (Popen, stderr path) of `monbus collectd listen`, bound."""
    def start(*args):
        err = tmp_path / f"listen-{len(procs.procs)}.err"
        p = procs.start(monbus_cmd() + ["--log-level", "info", "collectd", "listen", *args],
                        stdout=subprocess.DEVNULL, stderr=open(err, "w"))
        wait_for(lambda: "monbus collectd listen:" in err.read_text() or p.poll() is not None,
                 timeout=30, what="listener bound")
        assert p.poll() is None, err.read_text()
        return p, err
    return start


@pytest.fixture
def nobody_monbus():
    """The command (list) that runs monbus as `nobody`; skips if there is none."""
    cmd = unprivileged_monbus()
    if cmd is None:
        pytest.skip("no Python interpreter with monbus that the user nobody may run")
    return cmd


def unprivileged_monbus() -> list[str] | None:
    """A command running `monbus` that the user `nobody` can execute, or None.

    The venv's interpreter may live where nobody cannot read it (pyenv under /root); then
    the system python of the same version runs monbus from the venv's site-packages."""
    sp = next((p for p in site.getsitepackages() if "site-packages" in p), None)
    code = ("import site,sys; site.addsitedir(%r); from monbus.core.cli import main; "
            "sys.argv[0]='monbus'; main()" % sp)
    ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    exes = [exe for exe in (sys.executable, os.path.realpath(sys.executable), f"/usr/bin/{ver}")
            if os.path.exists(exe)]
    for exe in exes:
        cmd = [exe, "-c", code]
        if _runs_as_nobody(cmd):
            return cmd
    # The checkout itself (or the venv inside it) may be where nobody cannot read, e.g. a
    # clone under /root: run a world-readable copy of the sources and of site-packages.
    copy = _readable_copy(sp)
    code = ("import sys; sys.path[:0] = [%r, %r]; from monbus.core.cli import main; "
            "sys.argv[0]='monbus'; main()" % (copy["src"], copy["site"]))
    for exe in exes:
        cmd = [exe, "-c", code]
        if _runs_as_nobody(cmd):
            return cmd
    return None


def _runs_as_nobody(cmd) -> bool:
    r = subprocess.run(["runuser", "-u", "nobody", "--"] + cmd + ["collectd", "--help"],
                       capture_output=True, text=True)
    return r.returncode == 0


_COPY: dict = {}


def _readable_copy(site_packages: str) -> dict:
    """Copy monbus's sources (as the monbus.core / monbus.bridges namespace layout) and the
    venv's site-packages (without the editable-install hooks) into a world-readable temp dir."""
    if _COPY:
        return _COPY
    root = tempfile.mkdtemp(prefix="monbus-nobody-")
    os.chmod(root, 0o755)
    repo = Path(__file__).resolve().parents[3]
    src = os.path.join(root, "src")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(repo / "core", os.path.join(src, "monbus", "core"), ignore=ignore)
    shutil.copytree(repo / "bridges", os.path.join(src, "monbus", "bridges"), ignore=ignore)
    site_copy = os.path.join(root, "site")
    shutil.copytree(site_packages, site_copy, ignore=shutil.ignore_patterns(
        "__pycache__", "__editable__*", "*.pth", "monbus*"))
    for d, dirs, files in os.walk(root):
        os.chmod(d, 0o755)
        for f in files:
            os.chmod(os.path.join(d, f), 0o644)
    _COPY.update(src=src, site=site_copy)
    return _COPY
