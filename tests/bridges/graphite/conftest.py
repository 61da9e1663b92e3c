"""Fixtures for the Graphite bridge: a real carbon-cache (Debian graphite-carbon) and a real
carbon-c-relay on loopback, with every file in a temp dir, started per test, killed at
teardown; plus a counting TCP receiver."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from helpers import free_port, monbus_cmd, wait_for

CARBON_CACHE = shutil.which("carbon-cache") or "/usr/bin/carbon-cache"
CARBON_C_RELAY = shutil.which("carbon-c-relay") or "/usr/bin/carbon-c-relay"


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), 0.2):
            return True
    except OSError:
        return False


class CarbonCache:
    """A real carbon-cache on 127.0.0.1 with its whisper files under `root/whisper`."""

    def __init__(self, root: Path, retentions: str = "1s:1h,60s:1d"):
        self.root = root
        self.whisper = root / "whisper"
        self.port = free_port()
        self.pickle_port = free_port()
        self.query_port = free_port()
        for d in ("whisper", "log", "conf", "run"):
            (root / d).mkdir(parents=True, exist_ok=True)
        (root / "conf" / "storage-schemas.conf").write_text(
            f"[everything]\npattern = .*\nretentions = {retentions}\n")
        (root / "conf" / "carbon.conf").write_text(f"""[cache]
STORAGE_DIR = {root}/
LOCAL_DATA_DIR = {root}/whisper/
CONF_DIR = {root}/conf/
LOG_DIR = {root}/log/
PID_DIR = {root}/run/
USER =
DATABASE = whisper
ENABLE_LOGROTATION = False
MAX_CACHE_SIZE = inf
MAX_UPDATES_PER_SECOND = inf
MAX_CREATES_PER_MINUTE = inf
MIN_TIMESTAMP_RESOLUTION = 1
LINE_RECEIVER_INTERFACE = 127.0.0.1
LINE_RECEIVER_PORT = {self.port}
ENABLE_UDP_LISTENER = False
PICKLE_RECEIVER_INTERFACE = 127.0.0.1
PICKLE_RECEIVER_PORT = {self.pickle_port}
CACHE_QUERY_INTERFACE = 127.0.0.1
CACHE_QUERY_PORT = {self.query_port}
USE_FLOW_CONTROL = True
WHISPER_AUTOFLUSH = False
WHISPER_FALLOCATE_CREATE = False
LOG_LISTENER_CONNECTIONS = False
TAGDB =
ENABLE_TAGS = False
""")
        self.proc = None

    def start(self) -> None:
        pid = self.root / "run" / "carbon-cache-a.pid"
        if pid.exists():
            pid.unlink()
        log = open(self.root / "log" / "stdout.txt", "ab")
        self.proc = subprocess.Popen(
            [CARBON_CACHE, f"--config={self.root}/conf/carbon.conf", "--debug", "start"],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.root)
        log.close()
        wait_for(lambda: self.proc.poll() is not None or _port_open(self.port), 30,
                 what="carbon-cache to listen")
        if self.proc.poll() is not None:
            raise RuntimeError("carbon-cache exited:\n" + self.log_tail())

    def stop(self) -> None:
        """SIGTERM (carbon writes its cache before exiting) and wait for the exit."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        wait_for(lambda: not _port_open(self.port), 10, what="carbon port closed")

    def log_tail(self) -> str:
        try:
            return (self.root / "log" / "stdout.txt").read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def wsp(self, series: str) -> Path:
        return self.whisper / (series.replace(".", "/") + ".wsp")


@pytest.fixture
def carbon_cache(tmp_path):
    c = CarbonCache(tmp_path / "carbon")
    c.start()
    yield c
    if c.proc and c.proc.poll() is None:
        c.proc.kill()
        c.proc.wait(10)


class LineCounter:
    """A TCP server on loopback that keeps every line it receives (a stand-in carbon
    destination used only where the point is *which* lines arrive where)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._conn, args=(c,), daemon=True).start()

    def _conn(self, c):
        buf = b""
        with c:
            while True:
                d = c.recv(1 << 16)
                if not d:
                    break
                buf += d
                *done, buf = buf.split(b"\n")
                with self._lock:
                    self.lines.extend(x.decode() for x in done if x)

    def close(self):
        self._stop = True
        self._t.join(2)
        self.sock.close()


@pytest.fixture
def line_counter():
    made = []

    def make():
        lc = LineCounter()
        made.append(lc)
        return lc
    yield make
    for lc in made:
        lc.close()


class Proc:
    """A `monbus` subprocess (a daemon) whose stderr is kept in a file."""

    def __init__(self, args, log: Path, env=None):
        self.log = log
        e = dict(os.environ)
        e.update(env or {})
        f = open(log, "ab")
        self.proc = subprocess.Popen(monbus_cmd() + [str(a) for a in args], stdout=f,
                                     stderr=subprocess.STDOUT, env=e)
        f.close()

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout)
        return self.proc.returncode


@pytest.fixture
def daemon(tmp_path):
    """daemon(*args) -> Proc: a monbus daemon, killed at teardown."""
    procs = []

    def start(*args, env=None):
        p = Proc(args, tmp_path / f"monbus-{len(procs)}.log", env)
        procs.append(p)
        return p
    yield start
    for p in procs:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait(10)
