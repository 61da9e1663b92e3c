"""`monbus graphite listen` (carbon protocols -> bus) and `monbus graphite pull` (render API ->
bus).  Thin loops around the pure decoders in plaintext.py and render.py."""
from __future__ import annotations

import logging
import socket
import time

import click

from monbus.core.options import (listen_option, make_sender, parse_hostport, run_daemon,
                                 sender_options)
from monbus.core.selfmetrics import Counters

from .plaintext import CarbonError, LineBuffer, PickleFrames, decode_datagram, decode_pickle

log = logging.getLogger("monbus.graphite")

_MAX_LOGGED = 20   # bad lines logged individually per self-metric period; all are counted


@click.group()
def cli():
    """Graphite speakers onto the bus: a carbon-compatible listener and a render API poller."""


def _bind_tcp(host: str, port: int) -> socket.socket:
    try:
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if fam == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((host, port))
        s.listen(128)
        s.setblocking(False)
        return s
    except OSError as e:
        raise click.ClickException(f"cannot listen on {host}:{port}: {e}") from None


class Listener:
    """The carbon-compatible receiver: TCP and UDP plaintext, optionally pickle over TCP."""

    def __init__(self, sender, counters, prefix: str = "", max_connections: int = 1024):
        self.sender = sender
        self.c = counters
        self.prefix = (prefix.strip(".") + ".") if prefix and prefix.strip(".") else ""
        self.kinds: dict = {}        # listening socket -> "tcp" | "udp" | "pickle"
        self.conns: dict = {}        # fd -> (socket, LineBuffer | PickleFrames, peer)
        self.max_connections = max_connections
        self._logged = 0

    # -- reporting -------------------------------------------------------------------------
    def _bad(self, errors, peer) -> None:
        for e in errors:
            self.c.inc("bad_lines")
            if self._logged < _MAX_LOGGED:
                self._logged += 1
                log.warning("from %s: %s", peer, e)

    def _publish(self, lines) -> None:
        add = self.sender.add
        for line in lines:
            add(line.carbon(), line.topic)
        self.c.inc("lines", len(lines))

    # -- sockets ---------------------------------------------------------------------------
    def sockets(self):
        """Every socket to poll: the listening ones and the open connections."""
        return list(self.kinds) + [c[0] for c in self.conns.values()]

    def on_readable(self, sock) -> None:
        """Read whatever `sock` has (datagrams, a new connection, or stream data)."""
        kind = self.kinds.get(sock)
        if kind == "udp":
            self._read_udp(sock)
        elif kind is not None:
            self._accept(sock, kind)
        else:
            self._read_conn(sock)

    def _read_udp(self, sock) -> None:
        for _ in range(1000):
            try:
                data, peer = sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.warning("udp receive: %s", e)
                return
            self.c.inc("datagrams")
            errors: list = []
            self._publish(decode_datagram(data, time.time(), self.prefix, errors))
            self._bad(errors, peer[0])

    def _accept(self, sock, kind) -> None:
        while True:
            try:
                conn, peer = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.warning("accept: %s", e)
                return
            if len(self.conns) >= self.max_connections:
                self.c.inc("refused_connections")
                conn.close()
                continue
            conn.setblocking(False)
            buf = PickleFrames() if kind == "pickle" else LineBuffer()
            self.conns[conn.fileno()] = (conn, buf, peer[0])
            self.c.inc("connections")
            self._dirty = True

    def _close(self, fd) -> None:
        conn, buf, peer = self.conns.pop(fd)
        if isinstance(buf, LineBuffer):
            rest = buf.finish()
            if rest.strip():
                # carbon's LineReceiver drops an unterminated last line; a bridge that kept
                # it would differ from carbon, so it is dropped too, but counted and quoted
                self._bad([CarbonError("line without newline at end of connection", rest)], peer)
        conn.close()
        self._dirty = True

    def _read_conn(self, sock) -> None:
        fd = sock.fileno()
        entry = self.conns.get(fd)
        if entry is None:
            return
        conn, buf, peer = entry
        for _ in range(64):
            try:
                data = conn.recv(1 << 18)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self._close(fd)
                return
            now = time.time()
            errors: list = []
            if isinstance(buf, LineBuffer):
                over = buf.overlong
                chunk = buf.feed(data)
                if buf.overlong != over:
                    errors.append(CarbonError("line longer than 16384 bytes", data[:64]))
                if chunk:
                    self._publish(decode_datagram(chunk, now, self.prefix, errors))
            else:
                try:
                    frames = buf.feed(data)
                except CarbonError as e:
                    self._bad([e], peer)
                    self._close(fd)   # cannot resynchronise a length-prefixed stream
                    return
                for payload in frames:
                    try:
                        self._publish(decode_pickle(payload, now, self.prefix, errors))
                    except CarbonError as e:
                        self.c.inc("bad_pickles")
                        errors.append(e)
            self._bad(errors, peer)

    def new_period(self) -> None:
        """Start a self-metric period: log bad lines again, update gauges."""
        self._logged = 0
        self.c.set("open_connections", len(self.conns))


@cli.command()
@sender_options
@listen_option("127.0.0.1:2003", "TCP and UDP address for carbon's plaintext protocol")
@click.option("--no-udp", is_flag=True, help="Do not listen on UDP.")
@click.option("--pickle", "pickle_addrs", multiple=True, metavar="HOST:PORT",
              help="Also accept carbon's pickle protocol here (e.g. 127.0.0.1:2004), with an "
                   "unpickler that builds nothing but lists of (path, (timestamp, value)).")
@click.option("--prefix", default="",
              help="Prepend this to every path (e.g. graphite.web01), so single-component "
                   "carbon names get the <source>.<host> monbus needs.")
@click.option("--max-connections", type=click.IntRange(min=1), default=1024, show_default=True,
              help="Concurrent TCP connections; more are refused and counted.")
@click.option("--selfmetrics-interval", type=click.FloatRange(min=1), default=10.0,
              show_default=True, help="Seconds between self-metrics (monbus.<host>.graphite.*).")
def listen(relay, spool, timeout, curve_server_key, curve_secret, listen, no_udp, pickle_addrs,
           prefix, max_connections, selfmetrics_interval):
    """Receive carbon plaintext (TCP and UDP) and publish every valid line on the bus.

    Anything that writes to Graphite (collectd write_graphite, statsd, gmetad, Telegraf,
    Diamond, carbon-c-relay) can point here unchanged.  Invalid lines are counted and logged
    (quoted, truncated); they never stop the listener or the good lines beside them.
    """
    from monbus.core.options import bind_udp
    sender = make_sender(relay, spool, timeout, curve_server_key, curve_secret)
    counters = Counters("graphite", gauges=("open_connections",))
    lst = Listener(sender, counters, prefix, max_connections)
    for host, port in listen:
        # UDP first: a client that sees the TCP port accept may send datagrams at once
        if not no_udp:
            lst.kinds[bind_udp(host, port)] = "udp"
        lst.kinds[_bind_tcp(host, port)] = "tcp"
    for addr in pickle_addrs:
        host, port = parse_hostport(addr, "--pickle")
        lst.kinds[_bind_tcp(host, port)] = "pickle"
    names = ", ".join(f"{k} {s.getsockname()[0]}:{s.getsockname()[1]}"
                      for s, k in lst.kinds.items())
    click.echo(f"monbus graphite listen: {names}", err=True)
    _serve(lst, sender, counters, selfmetrics_interval)


def _serve(lst: Listener, sender, counters, selfmetrics_interval: float) -> None:
    """run_daemon's loop, re-entered whenever the set of sockets changes (connections come
    and go; run_daemon polls a fixed list)."""
    import zmq

    from monbus.core.options import Stopper
    stopper = Stopper()
    next_metrics = time.monotonic() + selfmetrics_interval
    lst._dirty = True
    poller = None
    while not stopper.stop:
        if lst._dirty:
            poller = zmq.Poller()
            fdmap = {}
            for s in lst.sockets():
                poller.register(s, zmq.POLLIN)
                fdmap[s.fileno()] = s
            lst._dirty = False
        try:
            events = poller.poll(100)
        except (zmq.ZMQError, InterruptedError):
            continue
        for fd, _ in events:
            # zmq.Poller reports plain sockets by file descriptor
            sock = fdmap.get(fd) if isinstance(fd, int) else fd
            if sock is not None and sock.fileno() >= 0:
                lst.on_readable(sock)
        now = time.monotonic()
        if now >= next_metrics:
            next_metrics = now + selfmetrics_interval
            lst.new_period()
            counters.set("in_flight", sender.in_flight)
            for k in ("spooled_lines", "lost_lines"):
                counters.set(k, sender.stats[k])
            for line in counters.lines(time.time()):
                sender.add(line)
        sender.tick()
    for fd in list(lst.conns):
        lst._read_conn(lst.conns[fd][0])
        if fd in lst.conns:
            lst._close(fd)
    stats = sender.close()
    if stats["lost_lines"]:
        click.echo(f"monbus graphite listen: {stats['lost_lines']} lines not acknowledged by "
                   f"the relay and no --spool to keep them", err=True)


@cli.command()
@sender_options
@click.option("--url", required=True, envvar="MONBUS_GRAPHITE_URL",
              help="graphite-web base URL, e.g. http://127.0.0.1:8080 [env MONBUS_GRAPHITE_URL].")
@click.option("--target", "targets", multiple=True, required=True,
              help="A render target as you would write it in graphite-web, e.g. "
                   "'sumSeries(collectd.*.load.load.shortterm)'; repeatable.")
@click.option("--prefix", required=True,
              help="Path prefix <source>.<host> for the published series, e.g. graphite.web; "
                   "each series' name (its alias) follows, sanitised to path components.")
@click.option("--interval", type=click.FloatRange(min=1), default=60.0, show_default=True,
              help="Seconds between polls.")
@click.option("--from", "from_", default="-10min", show_default=True,
              help="How far back each poll reads (graphite's from=); only datapoints newer "
                   "than the last one published are published.")
@click.option("--once", is_flag=True, help="Poll once and exit (for cron).")
@click.option("--http-timeout", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
              help="Seconds for each HTTP request.")
@click.option("--user", default=None, help="HTTP basic auth user.")
@click.option("--password", envvar="MONBUS_GRAPHITE_PASSWORD", default=None,
              help="HTTP basic auth password [env MONBUS_GRAPHITE_PASSWORD; never logged].")
def pull(relay, spool, timeout, curve_server_key, curve_secret, url, targets, prefix, interval,
         from_, once, http_timeout, user, password):
    """Read series from graphite-web's render API (format=json) every --interval and publish
    the new datapoints, so series computed in Graphite reach every subscriber."""
    import requests

    from .render import RenderState, RenderError
    try:
        state = RenderState(prefix)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    sender = make_sender(relay, spool, timeout, curve_server_key, curve_secret)
    counters = Counters("graphite_pull")
    session = requests.Session()
    if user:
        session.auth = (user, password or "")
    endpoint = url.rstrip("/") + "/render"

    def poll(now):
        params = [("target", t) for t in targets] + [("format", "json"), ("from", from_)]
        try:
            r = session.get(endpoint, params=params, timeout=http_timeout)
            r.raise_for_status()
            lines = state.new_points(r.content)
        except (requests.RequestException, RenderError) as e:
            counters.inc("poll_errors")
            log.warning("render API %s: %s", endpoint, str(e)[:200])
            return
        counters.inc("polls")
        counters.inc("lines", len(lines))
        for line in lines:
            sender.add(line.carbon(), line.topic)
        sender.flush()

    if once:
        poll(time.time())
        stats = sender.close()
        if stats["lost_lines"]:
            raise SystemExit(3)
        return
    run_daemon(sender, counters, on_tick=poll, tick_interval=interval)
