"""Fixtures for the sFlow tests: `monbus sflow listen` as a real subprocess on loopback."""
from __future__ import annotations

import os
import signal
import socket
import subprocess

import pytest

from helpers import free_port, monbus_cmd


class Listener:
    """A running `monbus sflow listen`; `send(payload)` delivers a UDP datagram to it."""

    def __init__(self, proc, host, port):
        self.proc = proc
        self.host = host
        self.port = port
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_DGRAM)

    def send(self, payload: bytes):
        self.sock.sendto(payload, (self.host, self.port))

    def stop(self, timeout=20):
        """SIGTERM and wait; returns (returncode, stderr)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        self.sock.close()
        return self.proc.returncode, err


@pytest.fixture
def sflow_listener(relay):
    """start(*extra_args, host=...) -> Listener running against the fixture relay."""
    started = []

    def start(*args, host="127.0.0.1"):
        port = free_port(socket.SOCK_DGRAM, host)
        listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        cmd = monbus_cmd() + ["sflow", "listen", "--listen", listen, "--relay", relay.input,
                              "--timeout", "5", *[str(a) for a in args]]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=dict(os.environ))
        lst = Listener(proc, host, port)
        started.append(lst)
        return lst

    yield start
    for lst in started:
        if lst.proc.poll() is None:
            lst.stop()
