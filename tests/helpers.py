"""Test helpers shared by every test module: `from helpers import collect, wait_for, ...`."""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"


def monbus_cmd() -> list[str]:
    """The installed `monbus` console script of this interpreter's environment."""
    exe = Path(sys.executable).parent / "monbus"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("monbus")
    return [found] if found else [sys.executable, "-m", "monbus.core.cli"]


def free_port(kind=socket.SOCK_STREAM, host="127.0.0.1") -> int:
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for(cond, timeout=10.0, interval=0.02, what="condition"):
    """Poll `cond()` until it is truthy; return its value or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def collect(sub, n, timeout=10.0):
    """Receive lines from a Subscriber until n arrived (or fail after timeout)."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"got {len(got)} of {n} lines: {got[:5]}")
        lines = sub.recv_lines(min(left, 0.5))
        if lines:
            got.extend(lines)
    return got


def stop_process(proc, timeout: float = 10.0) -> None:
    """SIGTERM a subprocess and wait for it; SIGKILL it if it does not end in `timeout`."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
