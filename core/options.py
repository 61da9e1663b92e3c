"""Options every monbus command shares, so that all bridges spell them the same way.

- senders:      --relay, --spool, --timeout, --curve-server-key, --curve-secret
- subscribers:  --connect (repeatable), PATTERN arguments, the same CURVE options
- listeners:    --listen HOST:PORT (repeatable; IPv6 as [::1]:PORT)

`run_daemon` is the loop every long-running bridge uses: it polls the bridge's sockets and
its Sender, publishes self-metrics every 10 s and stops cleanly on SIGTERM/SIGINT.
"""
from __future__ import annotations

import errno
import os
import signal
import socket
import time

import click

from .bus import DEFAULT_CONNECT, DEFAULT_RELAY, DEFAULT_TIMEOUT


def _comma_list(ctx, param, value):
    """A repeatable option that also takes comma-separated values (and its env var)."""
    out = []
    for v in value or ():
        out.extend(x.strip() for x in v.split(",") if x.strip())
    return out


def sender_options(f):
    """--relay, --spool, --timeout and CURVE client options; for every command that sends."""
    for opt in reversed([
        click.option("--relay", envvar="MONBUS_RELAY", default=DEFAULT_RELAY, show_default=True,
                     help="Relay input endpoint [env MONBUS_RELAY]."),
        click.option("--spool", envvar="MONBUS_SPOOL", default=None,
                     type=click.Path(file_okay=False),
                     help="Spool directory for what the relay does not acknowledge in time; "
                          "the host's relay drains it [env MONBUS_SPOOL]."),
        click.option("--timeout", envvar="MONBUS_TIMEOUT", default=DEFAULT_TIMEOUT, show_default=True,
                     type=click.FloatRange(min=0.01),
                     help="Seconds to wait for the relay's acknowledgement before spooling; "
                          "never blocks the calling tool longer [env MONBUS_TIMEOUT]."),
        click.option("--curve-server-key", envvar="MONBUS_CURVE_SERVER_KEY", default=None,
                     type=click.Path(dir_okay=False),
                     help="The relay's public CURVE certificate: encrypts the connection "
                          "[env MONBUS_CURVE_SERVER_KEY]."),
        click.option("--curve-secret", envvar="MONBUS_CURVE_SECRET", default=None,
                     type=click.Path(dir_okay=False),
                     help="This client's secret CURVE certificate (monbus keygen) "
                          "[env MONBUS_CURVE_SECRET]."),
    ]):
        f = opt(f)
    return f


def subscriber_options(f):
    """--connect (repeatable) and CURVE client options; for every command that subscribes."""
    for opt in reversed([
        click.option("--connect", "connect", multiple=True, envvar="MONBUS_CONNECT",
                     callback=_comma_list,
                     help=f"Relay output endpoint to subscribe to; repeatable or comma-separated "
                          f"[default: {DEFAULT_CONNECT}; env MONBUS_CONNECT]."),
        click.option("--curve-server-key", envvar="MONBUS_CURVE_SERVER_KEY", default=None,
                     type=click.Path(dir_okay=False),
                     help="The relay's public CURVE certificate [env MONBUS_CURVE_SERVER_KEY]."),
        click.option("--curve-secret", envvar="MONBUS_CURVE_SECRET", default=None,
                     type=click.Path(dir_okay=False),
                     help="This client's secret CURVE certificate [env MONBUS_CURVE_SECRET]."),
    ]):
        f = opt(f)
    return f


def repair_options(f):
    """--repair/--no-repair and --repair-connect, for commands that hand bus lines on to a tool
    (a message lost on the bus is a lost value or alert there)."""
    for opt in reversed([
        click.option("--repair/--no-repair", default=True, show_default=True,
                     help="Ask the relay again for messages missed on the bus (sequence gaps: "
                          "a full buffer, a reconnect); only what the relay no longer retains "
                          "(monbus relay --retain) counts as lost."),
        click.option("--repair-connect", "repair_connect", multiple=True,
                     envvar="MONBUS_REPAIR_CONNECT", callback=_comma_list,
                     help="The relays' repair endpoints; repeatable or comma-separated "
                          "[default: each --connect endpoint's port + 1, as monbus relay binds "
                          "it; env MONBUS_REPAIR_CONNECT]."),
    ]):
        f = opt(f)
    return f


def size_callback(allow_zero: bool = False):
    """A click callback turning '512K' / '64M' / '2G' / '1048576' into bytes (0 only if
    `allow_zero`, for options where it means "no bound")."""
    def callback(ctx, param, value):
        if value is None or isinstance(value, int):
            return value
        v = str(value).strip().upper().removesuffix("B")
        mult = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4}.get(v[-1:], 1)
        try:
            n = int(float(v[:-1] if mult > 1 else v) * mult)
            if n < 0 or (n == 0 and not allow_zero):
                raise ValueError
            return n
        except ValueError:
            raise click.BadParameter(f"expected a size like 512K, 64M or 2G, got {value!r}") \
                from None
    return callback


def listen_option(default, help_: str = "Address to listen on"):
    """--listen HOST:PORT, repeatable; IPv6 as [::1]:PORT.  Loopback by default.
    `default` is one address or a list of them (e.g. IPv4 and IPv6 loopback)."""
    defaults = [default] if isinstance(default, str) else list(default)
    return click.option("--listen", "listen", multiple=True, default=defaults, show_default=True,
                        callback=lambda ctx, p, v: [parse_hostport(x, p.name) for x in v],
                        help=f"{help_} (HOST:PORT, repeatable; IPv6 as [::1]:PORT).")


def parse_hostport(text: str, what: str = "address") -> tuple[str, int]:
    """'127.0.0.1:8649' / '[::1]:8649' / ':8649' -> (host, port).  Raises click.BadParameter."""
    t = text.strip()
    if t.startswith("["):
        host, sep, rest = t[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise click.BadParameter(f"expected [IPv6]:PORT, got {text!r}", param_hint=what)
        port = rest[1:]
    else:
        host, sep, port = t.rpartition(":")
        if not sep:
            raise click.BadParameter(f"expected HOST:PORT, got {text!r}", param_hint=what)
        if ":" in host:
            raise click.BadParameter(f"write IPv6 addresses as [addr]:PORT, got {text!r}",
                                     param_hint=what)
    try:
        p = int(port)
        if not 0 <= p <= 65535:
            raise ValueError
    except ValueError:
        raise click.BadParameter(f"bad port in {text!r}", param_hint=what) from None
    return (host or "0.0.0.0"), p


def make_sender(relay, spool, timeout, curve_server_key=None, curve_secret=None, **kw):
    """A Sender from the shared options, with user errors turned into click errors."""
    from .bus import BusError, Sender
    from .spool import SpoolError
    try:
        return Sender(relay, spool, timeout, curve_server_key=curve_server_key,
                      curve_secret=curve_secret, **kw)
    except (BusError, SpoolError) as e:
        raise click.ClickException(str(e)) from None


def make_subscriber(connect, patterns, curve_server_key=None, curve_secret=None,
                    repair: bool = False, repair_connect=(), **kw):
    """A Subscriber from the shared options (with repair_options' two), with user errors
    turned into click errors."""
    from .bus import BusError, Subscriber
    try:
        return Subscriber(connect or [DEFAULT_CONNECT], patterns or ["**"],
                          curve_server_key=curve_server_key, curve_secret=curve_secret,
                          repair=repair, repair_connect=list(repair_connect or ()) or None, **kw)
    except BusError as e:
        raise click.ClickException(str(e)) from None


def bus_selfmetrics(sub, counters) -> None:
    """What a subscriber saw go wrong on the bus, into its self-metrics: messages lost for
    good, repaired, still awaited (a gauge), and malformed."""
    counters.update({"bus_lost_messages": sub.gaps.gaps,
                     "bad_bus_messages": sub.stats["bad_messages"]})
    if sub.repair is not None:
        counters.update({"bus_repaired_messages": sub.gaps.repaired,
                         **{f"bus_{k}": v for k, v in sub.repair.stats.items()}})
        counters.set("bus_repair_missing", sub.gaps.missing)


def bind_udp(host: str, port: int, rcvbuf: int = 8 * 1024 * 1024,
             multicast_group: str | None = None, ifindex: int = 0) -> socket.socket:
    """A non-blocking UDP socket bound to host:port (IPv4 or IPv6), optionally joined to a
    multicast group: on the interface the routing table picks, or on the interface with
    index `ifindex` (ip_mreqn / ipv6_mreq).  Raises click.ClickException with the reason."""
    import ipaddress
    import struct
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        fam, _, _, _, addr = infos[0]
        s = socket.socket(fam, socket.SOCK_DGRAM)
        if multicast_group:
            # several receivers of one multicast group on a host need the shared port; for
            # unicast, SO_REUSEADDR would let a second listener silently take part of the traffic
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        except OSError:
            pass
        if fam == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind(addr)
        if multicast_group:
            g = ipaddress.ip_address(multicast_group)
            if g.version == 4:
                if ifindex:
                    mreq = struct.pack("4s4si", g.packed, bytes(4), ifindex)  # ip_mreqn
                else:
                    mreq = struct.pack("4s4s", g.packed, socket.inet_aton("0.0.0.0"))
                s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
            else:
                mreq = struct.pack("16sI", g.packed, ifindex)
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
        s.setblocking(False)
        return s
    except (OSError, ValueError) as e:
        busy = isinstance(e, OSError) and e.errno == errno.EADDRINUSE
        hint = " (the tool itself or another listener has it? pick another port)" if busy else ""
        raise click.ClickException(f"cannot listen on {host}:{port}: {e}{hint}") from None


class Stopper:
    """Sets `.stop` on SIGTERM/SIGINT, so loops finish their current step and flush."""

    def __init__(self):
        self.stop = False
        signal.signal(signal.SIGTERM, self._set)
        signal.signal(signal.SIGINT, self._set)

    def _set(self, *_):
        self.stop = True


def run_daemon(sender, counters, sockets=(), on_readable=None, on_tick=None,
               tick_interval: float = 1.0, selfmetrics_interval: float = 10.0, on_stop=None):
    """The loop of a long-running bridge.

    `sockets`: objects with fileno() (UDP/TCP sockets) or zmq sockets; `on_readable(sock)` is
    called when one is readable (it must not block: read with MSG_DONTWAIT until EAGAIN).
    `on_tick(now)` runs every `tick_interval` seconds (pollers, aggregations), and once more
    at the stop; `on_stop(now)` runs last, before the sender is flushed and closed (publish
    what an aggregation window holds, drain socket buffers).  Self-metrics
    from `counters` go out every `selfmetrics_interval` seconds through `sender`.  Returns
    the sender's stats after a clean stop (SIGTERM/SIGINT), having flushed everything.
    """
    import zmq
    stopper = Stopper()
    poller = zmq.Poller()
    for s in sockets:
        poller.register(s, zmq.POLLIN)
    # zmq's poller reports a plain socket by its file descriptor: hand back the object
    by_fd = {s.fileno(): s for s in sockets if not isinstance(s, zmq.Socket)}
    next_tick = time.monotonic()
    next_metrics = time.monotonic() + selfmetrics_interval
    while not stopper.stop:
        try:
            events = poller.poll(50) if sockets else (time.sleep(0.05) or [])
        except (zmq.ZMQError, InterruptedError):
            continue
        for s, _ in events:
            on_readable(by_fd.get(s, s) if isinstance(s, int) else s)
        now = time.monotonic()
        if on_tick is not None and now >= next_tick:
            next_tick = now + tick_interval
            on_tick(time.time())
        if now >= next_metrics:
            next_metrics = now + selfmetrics_interval
            publish_selfmetrics(sender, counters)
        sender.tick()
    if on_tick is not None:
        on_tick(time.time())
    if on_stop is not None:
        on_stop(time.time())
    publish_selfmetrics(sender, counters)
    return sender.close()


def publish_selfmetrics(sender, counters, before=None) -> None:
    """One round of a daemon's self-metrics: its counters, with the sender's in-flight,
    spooled and lost lines (so a drop is never silent); `before()` sets bridge-specific ones."""
    if before is not None:
        before()
    counters.set("in_flight", sender.in_flight)
    for k in ("spooled_lines", "lost_lines"):
        counters.set(k, sender.stats[k])
    for line in counters.lines(time.time()):
        sender.add(line)


def stop_event():
    """An asyncio.Event set by SIGTERM/SIGINT, on the running loop (the asyncio Stopper)."""
    import asyncio
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def tick_until(stop, sender, counters, selfmetrics_interval: float = 10.0,
                     before_metrics=None) -> None:
    """run_daemon's housekeeping for asyncio bridges (SNMP's poller and trap receiver): tick
    the sender every 50 ms and publish self-metrics every `selfmetrics_interval` seconds until
    `stop` is set, then once more.  The caller closes the sender."""
    import asyncio
    next_metrics = time.monotonic() + selfmetrics_interval
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), 0.05)
        except asyncio.TimeoutError:
            pass
        sender.tick()
        if time.monotonic() >= next_metrics:
            next_metrics = time.monotonic() + selfmetrics_interval
            publish_selfmetrics(sender, counters, before_metrics)
    publish_selfmetrics(sender, counters, before_metrics)


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")
