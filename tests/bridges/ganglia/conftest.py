"""Real Ganglia daemons for the tests: gmond 3.7 and gmetad from Debian's ganglia-monitor and
gmetad packages, on loopback ephemeral ports, configs and data in pytest's tmp dirs."""
from __future__ import annotations

import glob
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from helpers import free_port, wait_for

DATA = Path(__file__).resolve().parents[2] / "data" / "ganglia"


def module_dir() -> str | None:
    """The system's ganglia module directory (modcpu.so etc.), whatever the architecture."""
    found = sorted(glob.glob("/usr/lib/*/ganglia/modcpu.so") + glob.glob("/usr/lib*/ganglia/modcpu.so"))
    return str(Path(found[0]).parent) if found else None


def need(binary: str) -> str:
    path = shutil.which(binary) or (f"/usr/sbin/{binary}" if Path(f"/usr/sbin/{binary}").exists()
                                    else None)
    if path is None:
        pytest.skip(f"{binary} is not installed (Debian packages ganglia-monitor, gmetad)")
    return path


def read_xml(port: int, query: bytes | None = None, timeout: float = 10.0) -> bytes:
    """The whole XML answer of a gmond/gmetad TCP port."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        if query:
            s.sendall(query)
        chunks = []
        while True:
            c = s.recv(65536)
            if not c:
                break
            chunks.append(c)
    return b"".join(chunks)


_MODULES = [("cpu_module", "modcpu.so"), ("disk_module", "moddisk.so"),
            ("load_module", "modload.so"), ("mem_module", "modmem.so"),
            ("net_module", "modnet.so"), ("proc_module", "modproc.so"),
            ("sys_module", "modsys.so")]


def gmond_conf(*, recv_port: int, tcp_port: int, send_ports=(), hostname="node01.monbus.test",
               cluster="monbus-test", host_tmax=20, metadata_interval=15, modules=True,
               groups: str | None = None, gzip_output: bool = False) -> str:
    """A gmond.conf like Debian's default, on loopback ports, with every standard module."""
    sends = "".join(f"udp_send_channel {{\n  host = 127.0.0.1\n  port = {p}\n}}\n"
                    for p in send_ports)
    mods = ""
    default_groups = ('collection_group {\n  collect_once = yes\n  time_threshold = 20\n'
                      '  metric { name = "heartbeat" }\n}\n')
    if modules:
        mdir = module_dir()
        mods = "".join(f'  module {{\n    name = "{n}"\n    path = "{mdir}/{f}"\n  }}\n'
                       for n, f in _MODULES)
        # the corpus gmond.conf's collection groups (Debian's default set)
        text = (DATA / "gmond372_local_gmond.conf").read_text()
        end = text.index("include (") if "include (" in text else len(text)
        default_groups = text[text.index("collection_group {"):end]
    if groups is None:
        groups = default_groups
    return f"""globals {{
  daemonize = no
  setuid = no
  debug_level = 0
  max_udp_msg_len = 1472
  mute = no
  deaf = no
  allow_extra_data = yes
  host_dmax = 0
  host_tmax = {host_tmax}
  cleanup_threshold = 300
  gexec = no
  send_metadata_interval = {metadata_interval}
  override_hostname = "{hostname}"
}}
cluster {{
  name = "{cluster}"
  owner = "unspecified"
}}
host {{
  location = "unspecified"
}}
{sends}udp_recv_channel {{
  port = {recv_port}
  bind = 127.0.0.1
}}
tcp_accept_channel {{
  port = {tcp_port}
  bind = 127.0.0.1
  gzip_output = {"yes" if gzip_output else "no"}
}}
modules {{
  module {{
    name = "core_metrics"
  }}
{mods}}}
{groups}"""


def gmetric_conf(port: int) -> str:
    """A config for `gmetric -c`: only where to send."""
    return (f"globals {{\n  override_hostname = \"node01.monbus.test\"\n}}\n"
            f"udp_send_channel {{\n  host = 127.0.0.1\n  port = {port}\n}}\n")


class Gmond:
    def __init__(self, proc, conf, recv_port, tcp_port, log):
        self.proc = proc
        self.conf = conf
        self.recv_port = recv_port
        self.tcp_port = tcp_port
        self.log = log

    def xml(self) -> bytes:
        import gzip
        data = read_xml(self.tcp_port)
        return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def gmond(tmp_path):
    """start(send_ports=(...), **conf) -> a running gmond on loopback; killed at teardown.
    It also sends to its own receive port, so its XML shows what it collects."""
    binary = need("gmond")
    if module_dir() is None:
        pytest.skip("ganglia modules (modcpu.so) not found")
    started = []

    def start(send_ports=(), self_send=True, **kw):
        recv_port = free_port(socket.SOCK_DGRAM)
        tcp_port = free_port()
        ports = list(send_ports) + ([recv_port] if self_send else [])
        d = tmp_path / f"gmond{len(started)}"
        d.mkdir()
        conf = d / "gmond.conf"
        conf.write_text(gmond_conf(recv_port=recv_port, tcp_port=tcp_port, send_ports=ports, **kw))
        log = open(d / "gmond.log", "wb")
        proc = subprocess.Popen([binary, "-c", str(conf), "-f"], stdout=log,
                                stderr=subprocess.STDOUT, cwd=d)
        g = Gmond(proc, conf, recv_port, tcp_port, d / "gmond.log")
        started.append(g)

        def up():
            if proc.poll() is not None:
                raise AssertionError(f"gmond exited: {g.log.read_text()[-2000:]}")
            try:
                return b"</GANGLIA_XML>" in g.xml()
            except OSError:
                return False
        wait_for(up, timeout=20, interval=0.1, what="gmond's TCP port")
        return g
    yield start
    for g in started:
        g.stop()


@pytest.fixture
def gmetad(tmp_path):
    """start(gmond) -> (xml_port, interactive_port) of a gmetad polling that gmond every 1 s."""
    binary = need("gmetad")
    procs = []

    def start(g: Gmond, grid="monbus-grid"):
        xml_port, q_port = free_port(), free_port()
        d = tmp_path / f"gmetad{len(procs)}"
        (d / "rrds").mkdir(parents=True)
        conf = d / "gmetad.conf"
        conf.write_text(f'data_source "monbus-test" 1 127.0.0.1:{g.tcp_port}\n'
                        f'gridname "{grid}"\nsetuid off\nxml_port {xml_port}\n'
                        f'interactive_port {q_port}\nrrd_rootdir "{d / "rrds"}"\n'
                        f'server_threads 2\n')
        log = open(d / "gmetad.log", "wb")
        proc = subprocess.Popen([binary, "-c", str(conf), "-d", "1"], stdout=log,
                                stderr=subprocess.STDOUT, cwd=d)
        procs.append(proc)

        def has_host():
            if proc.poll() is not None:
                raise AssertionError(f"gmetad exited: {(d / 'gmetad.log').read_text()[-2000:]}")
            try:
                return b"<HOST " in read_xml(xml_port)
            except OSError:
                return False
        wait_for(has_host, timeout=30, interval=0.2, what="gmetad's XML with a host")
        return xml_port, q_port
    yield start
    for p in procs:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


class TeeProxy:
    """A one-connection TCP proxy in a thread that records what the server sends, so a test
    can compare what monbus published with exactly the bytes the daemon gave it."""

    def __init__(self, port: int):
        import threading
        self.target = port
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.port = self.listener.getsockname()[1]
        self.data = b""
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        import select
        try:
            self.listener.settimeout(60)
            client, _ = self.listener.accept()
            server = socket.create_connection(("127.0.0.1", self.target), timeout=30)
            chunks = []
            open_client = True
            while True:
                r, _, _ = select.select([client, server] if open_client else [server], [], [], 30)
                if not r:
                    break
                if client in r:
                    c = client.recv(65536)
                    if c:
                        server.sendall(c)
                    else:
                        open_client = False
                if server in r:
                    c = server.recv(65536)
                    if not c:
                        break
                    chunks.append(c)
                    client.sendall(c)
            self.data = b"".join(chunks)
            server.close()
            client.close()
        finally:
            self.listener.close()
            self.done.set()


@pytest.fixture
def gtools():
    """The helpers above, for the test modules (with --import-mode=importlib a test module
    cannot import this conftest by name)."""
    from types import SimpleNamespace
    return SimpleNamespace(TeeProxy=TeeProxy, gmetric_conf=gmetric_conf, need=need,
                           read_xml=read_xml)
