"""`monbus ganglia`: poll gmond/gmetad XML, listen to gmond's UDP packets, emit to gmond."""
from __future__ import annotations

import logging
import socket
import time

import click

from monbus.core.options import (bind_udp, bus_selfmetrics, listen_option, make_sender,
                                 make_subscriber, parse_hostport, repair_options, run_daemon,
                                 sender_options, size_callback, subscriber_options)
from monbus.core.selfmetrics import Counters

log = logging.getLogger("monbus.ganglia")


class _Reporter:
    """Logs the first errors of each kind, then every 100th, so a flood cannot fill a disk."""

    def __init__(self):
        self.seen: dict[str, int] = {}

    def __call__(self, kind: str, msg: str) -> None:
        n = self.seen[kind] = self.seen.get(kind, 0) + 1
        if n <= 10 or n % 100 == 0:
            log.warning("%s (%s #%d)", msg, kind, n)


def _publish(sender, lines, counters, report, where: str) -> None:
    """Queue lines; one the line syntax refuses (a decoder bug, never expected) is reported
    and counted in bad_lines instead of stopping the daemon."""
    from monbus.core.line import LineError
    for line in lines:
        try:
            sender.add(line)
        except LineError as e:
            counters.inc("bad_lines")
            report("bad_lines", f"{where}: line refused: {e}")


_size = size_callback()


def _sources(ctx, param, value):
    from .poller import parse_source
    out = []
    for v in value or ():
        for part in v.split(","):
            if part.strip():
                try:
                    out.append(parse_source(part))
                except ValueError as e:
                    raise click.BadParameter(str(e)) from None
    return out


def _hostports(ctx, param, value):
    return [parse_hostport(v, param.name) for v in value or ()]


@click.group()
def cli():
    """Ganglia: gmond/gmetad XML polling, the gmond UDP (XDR) protocol, and emitting to gmond.

    Paths: ganglia.<cluster>.<host>.<metric>; each host also gets an availability line
    ganglia.<cluster>.<host>.heartbeat (mtype=state, 0 UP / 1 DOWN) whose tags are the
    host's string metrics (os_name, machine_type, ...).
    """


# --- poll ------------------------------------------------------------------------------------
@cli.command()
@click.argument("sources", nargs=-1, callback=_sources)
@sender_options
@click.option("--interval", type=click.FloatRange(min=0.1), default=15.0, show_default=True,
              help="Seconds between polls of each source (gmetad polls every 15 s).")
@click.option("--once", is_flag=True,
              help="Poll every source once, publish, and exit (for cron); exit 1 if a source "
                   "failed.")
@click.option("--poll-timeout", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
              help="Seconds allowed for connecting and reading one whole response.")
@click.option("--max-bytes", default="256M", show_default=True, callback=_size,
              help="Largest response accepted (after gunzip); a bigger one is refused and "
                   "that source skipped for this round.")
@click.option("--grid-tag/--no-grid-tag", default=True, show_default=True,
              help="Tag lines polled from gmetad with ;grid=<grid name>.")
def poll(sources, relay, spool, timeout, curve_server_key, curve_secret, interval, once,
         poll_timeout, max_bytes, grid_tag):
    """Poll gmond's or gmetad's XML and publish every host's metrics.

    SOURCES are HOST:PORT, or HOST:PORT/QUERY for gmetad's query port 8652
    (e.g. 127.0.0.1:8652/mycluster or 127.0.0.1:8652/?filter=summary)
    [default: 127.0.0.1:8649, a local gmond].  A response is all-or-nothing: bad or
    truncated XML is reported and that source skipped for this round.  Stale metrics
    (TN > TMAX) are not republished; a host with TN > 4 x TMAX is published DOWN.
    """
    from .naming import Namer
    from .poller import PollError
    from .poller import poll as poll_one
    if not sources:
        sources = _sources(None, None, ["127.0.0.1:8649"])
    sender = make_sender(relay, spool, timeout, curve_server_key, curve_secret)
    counters = Counters("ganglia_poll")
    report = _Reporter()
    # one Namer per source: names stay stable per source across polls, and the sources'
    # polls can run in parallel threads (network waits overlap; a slow gmetad does not
    # delay the others)
    namers = {s: Namer() for s in sources}
    pool = None
    if len(sources) > 1:
        from concurrent.futures import ThreadPoolExecutor
        pool = ThreadPoolExecutor(max_workers=min(8, len(sources)),
                                  thread_name_prefix="ganglia-poll")
    due = {s: 0.0 for s in sources}
    failed = 0

    def one(src, now):
        try:
            return src, poll_one(src, now, namers[src], timeout=poll_timeout,
                                 max_bytes=max_bytes, grid_tag=grid_tag), None
        except PollError as e:
            return src, None, e

    def run_due(now: float, force: bool = False) -> None:
        nonlocal failed
        mono = time.monotonic()
        todo = [s for s in sources if force or mono >= due[s]]
        for src in todo:
            due[src] = mono + interval
        if pool is not None and len(todo) > 1:
            results = list(pool.map(one, todo, [now] * len(todo)))
        else:
            results = [one(src, now) for src in todo]
        for src, got, err in results:
            counters.inc("polls")
            if err is not None:
                failed += 1
                counters.inc("poll_errors")
                report("poll_errors", f"poll {err}")
                continue
            lines, stats = got
            _publish(sender, lines, counters, report, f"poll {src}")
            counters.inc("lines", len(lines))
            for k in ("metrics", "stale_metrics", "string_metrics", "hosts_up", "hosts_down",
                      "down_host_metrics", "bad_values", "summaries", "bytes",
                      "xml_exact_path"):
                counters.inc(k, stats[k])
            for msg in stats["value_errors"]:
                report("bad_values", f"poll {src}: {msg}")
            sender.tick()

    if once:
        run_due(time.time(), force=True)
        if pool is not None:
            pool.shutdown()
        for line in counters.lines(time.time()):   # what this run did, failures included
            sender.add(line)
        stats = sender.close()
        if stats["lost_lines"]:
            raise click.ClickException(f"{stats['lost_lines']} lines not acknowledged by "
                                       f"{relay} and no --spool to keep them")
        if failed:
            raise click.ClickException(f"{failed} of {len(sources)} sources failed "
                                       f"(see the messages above)")
        return
    click.echo(f"monbus ganglia poll: {', '.join(map(str, sources))} every {interval:g} s",
               err=True)
    try:
        run_daemon(sender, counters, on_tick=run_due, tick_interval=min(1.0, interval))
    finally:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


# --- listen ----------------------------------------------------------------------------------
@cli.command()
@listen_option("127.0.0.1:8649", "UDP address gmond sends to")
@sender_options
@click.option("--multicast-group", default=None, metavar="GROUP",
              help="Join this multicast group on the listening sockets (gmond's default "
                   "channel is 239.2.11.71).")
@click.option("--cluster", default="unspecified", show_default=True,
              help="Cluster name for the paths (UDP packets do not carry one; use the name "
                   "in the cluster { } section of gmond.conf).")
@click.option("--host-tmax", type=click.FloatRange(min=1), default=20.0, show_default=True,
              help="gmond's host_tmax: a host silent for 4 x this is published DOWN.")
@click.option("--request-to", "request_to", multiple=True, callback=_hostports,
              metavar="HOST:PORT",
              help="Where to send metadata requests for values whose metadata is unknown "
                   "(a gmond's UDP channel; repeatable) [default: the multicast group and "
                   "port if --multicast-group, else nowhere: values wait for the periodic "
                   "metadata resend].")
@click.option("--pending-ttl", type=click.FloatRange(min=1), default=60.0, show_default=True,
              help="Seconds a value waits for its metadata before it is dropped (counted).")
def listen(listen, relay, spool, timeout, curve_server_key, curve_secret, multicast_group,
           cluster, host_tmax, request_to, pending_ttl):
    """Receive gmond's UDP (XDR) packets and publish the metrics they carry.

    Point a udp_send_channel of gmond.conf (or gmetric -c) at the --listen address.  All
    value types are understood (gmetric's strings are typed by their metadata); spoofed
    hosts (gmetric -S ip:name) appear under their own name.
    """
    from .listener import GmondListener
    sender = make_sender(relay, spool, timeout, curve_server_key, curve_secret)
    socks = [bind_udp(h, p, multicast_group=multicast_group) for h, p in listen]
    counters = Counters("ganglia_listen")
    report = _Reporter()
    state = GmondListener(cluster, host_tmax=host_tmax, pending_ttl=pending_ttl)
    targets = list(request_to)
    if not targets and multicast_group:
        targets = [(multicast_group, listen[0][1])]
    out = None
    if targets:
        out = socket.socket(socket.AF_INET6 if ":" in targets[0][0] else socket.AF_INET,
                            socket.SOCK_DGRAM)
        out.setblocking(False)

    def sync_counters():
        counters.values.update(state.stats)
        new = state.errors
        if new:
            for msg in new:
                report("bad_input", f"listen: {msg}")
            new.clear()

    def on_readable(sock):
        now = time.time()
        for _ in range(1000):  # bounded, so one busy socket cannot starve the rest
            try:
                data = sock.recv(65536, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                counters.inc("recv_errors")
                report("recv_errors", f"listen: recv: {e}")
                break
            lines, requests = state.feed(data, now)
            _publish(sender, lines, counters, report, "listen")
            if out is not None:
                for req in requests:
                    for t in targets:
                        try:
                            out.sendto(req, t)
                        except OSError as e:
                            counters.inc("request_errors")
                            report("request_errors", f"listen: metadata request to {t}: {e}")
        sync_counters()

    def on_tick(now):
        _publish(sender, state.expire(now), counters, report, "listen")
        sync_counters()

    click.echo(f"monbus ganglia listen: udp {', '.join(f'{h}:{p}' for h, p in listen)}"
               f"{' group ' + multicast_group if multicast_group else ''}", err=True)
    run_daemon(sender, counters, sockets=socks, on_readable=on_readable, on_tick=on_tick)


# --- emit ------------------------------------------------------------------------------------
@cli.command()
@click.argument("patterns", nargs=-1)
@subscriber_options
@click.option("--gmond", "gmonds", multiple=True, callback=_hostports, metavar="HOST:PORT",
              help="A gmond udp_recv_channel (or multicast group:port) to send to; "
                   "repeatable [default: 127.0.0.1:8649].")
@click.option("--ttl", type=click.IntRange(1, 255), default=1, show_default=True,
              help="Multicast TTL (gmond's udp_send_channel ttl).")
@click.option("--tmax", type=click.IntRange(1), default=60, show_default=True,
              help="TMAX of the emitted metrics (seconds gmond expects between values).")
@click.option("--dmax", type=click.IntRange(0), default=0, show_default=True,
              help="DMAX: seconds after which gmond deletes a silent metric (0 = never).")
@click.option("--metadata-interval", type=click.FloatRange(min=1), default=30.0,
              show_default=True,
              help="Resend each metric's metadata this often (gmond forgets it on restart).")
@click.option("--group", default=None,
              help="Ganglia metric group [default: the line's source, e.g. collectd].")
@click.option("--count", "-n", type=click.IntRange(min=1), default=None,
              help="Stop after emitting this many lines.")
@click.option("--relay", envvar="MONBUS_RELAY", default="tcp://127.0.0.1:7701", show_default=True,
              help="Relay input endpoint for this command's own self-metrics "
                   "(monbus.<host>.ganglia_emit.*) [env MONBUS_RELAY].")
@click.option("--selfmetrics-interval", type=click.FloatRange(min=0.1), default=10.0,
              show_default=True, help="Seconds between self-metric publications.")
@repair_options
def emit(patterns, connect, curve_server_key, curve_secret, gmonds, ttl, tmax, dmax,
         metadata_interval, group, count, relay, selfmetrics_interval, repair, repair_connect):
    """Send bus lines matching PATTERNS to gmond as gmetric packets.

    Each metric is spoofed as its bus host (<source>.<host>.<rest> -> host <host>, metric
    <source>.<rest>), so gmond, gmetad and Ganglia's web front-end show it under that host.
    Do not emit ganglia.** back into the gmond that `monbus ganglia poll` reads.
    """
    from monbus.core.options import Stopper

    from .emitter import GmetricEmitter
    targets = gmonds or [("127.0.0.1", 8649)]
    sub = make_subscriber(connect, patterns, curve_server_key, curve_secret, repair,
                          repair_connect)
    em = GmetricEmitter(tmax=tmax, dmax=dmax, metadata_interval=metadata_interval, group=group)
    socks = {}
    for host, port in targets:
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        if fam not in socks:
            s = socket.socket(fam, socket.SOCK_DGRAM)
            if fam == socket.AF_INET:
                s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
            else:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, ttl)
            socks[fam] = s
    counters = Counters("ganglia_emit")
    sender = make_sender(relay, None, 2.0, curve_server_key, curve_secret)
    report = _Reporter()
    stopper = Stopper()
    done = 0
    next_metrics = time.monotonic() + selfmetrics_interval

    def publish_counters():
        counters.values.update(em.stats)
        bus_selfmetrics(sub, counters)
        for line in counters.lines(time.time()):
            sender.add(line)
        sender.tick()
    click.echo(f"monbus ganglia emit: {' '.join(patterns) or '**'} -> "
               f"{', '.join(f'{h}:{p}' for h, p in targets)}", err=True)
    try:
        while not stopper.stop and (count is None or done < count):
            lines = sub.recv_lines(0.2)
            if time.monotonic() >= next_metrics:
                next_metrics = time.monotonic() + selfmetrics_interval
                publish_counters()
            else:
                sender.tick()
            if not lines:
                continue
            now = time.time()
            for line in lines:
                for pkt in em.packets(line, now):
                    for host, port in targets:
                        s = socks[socket.AF_INET6 if ":" in host else socket.AF_INET]
                        try:
                            s.sendto(pkt, (host, port))
                            counters.inc("packets")
                        except OSError as e:
                            counters.inc("send_errors")
                            report("send_errors", f"emit: to {host}:{port}: {e}")
                done += 1
                if count is not None and done >= count:
                    break
            for msg in em.errors:
                report("too_long", f"emit: {msg}")
            em.errors.clear()
    finally:
        sub.close()
        for s in socks.values():
            s.close()
        publish_counters()
        sender.close()
