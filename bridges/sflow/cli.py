"""`monbus sflow`: receive sFlow v5 datagrams (listen) or read captures (decode)."""
from __future__ import annotations

import logging
import os
import sys
import time

import click

from monbus.core.options import (bind_udp, make_sender, parse_hostport, run_daemon,
                                 sender_options)

log = logging.getLogger("sflow")

DEFAULT_LISTEN = ("127.0.0.1:6343", "[::1]:6343")
_MAX_READS = 2000          # datagrams read per readable event before going back to the loop
_LOG_EVERY = 100           # after the first 10 problems, log one in this many


def _listen_addrs(ctx, param, value):
    return [parse_hostport(v, "--listen") for v in (value or DEFAULT_LISTEN)]


def _interval_option(f):
    return click.option("--interval", default=10.0, show_default=True,
                        type=click.FloatRange(min=0.1),
                        help="Seconds per flow aggregation window: flow and discard samples "
                             "are summed per window and published when it ends.")(f)


def _common(f):
    f = click.option("--prefix", default="sflow", show_default=True,
                     help="First path component of every line.")(f)
    f = click.option("--max-flow-keys", default=2000, show_default=True,
                     type=click.IntRange(min=10),
                     help="Most distinct protocol (port) and discard-reason series per agent "
                          "and window; more are summed under proto.overflow / "
                          "discards.overflow and counted in flow_keys_overflow.")(f)
    return _interval_option(f)


@click.group()
def cli():
    """sFlow v5: counter samples, flow samples and discarded-packet samples as monbus lines."""


@cli.command()
@click.option("--listen", "listen", multiple=True, callback=_listen_addrs,
              help="UDP address to receive sFlow on (HOST:PORT, repeatable; IPv6 as "
                   "[::1]:PORT; [::]:6343 or 0.0.0.0:6343 for every interface) "
                   "[default: 127.0.0.1:6343 and [::1]:6343].")
@_common
@click.option("--selfmetrics-interval", default=10.0, show_default=True,
              type=click.FloatRange(min=0.1),
              help="Seconds between self-metric publications (monbus.<host>.sflow.*).")
@sender_options
def listen(listen, prefix, max_flow_keys, interval, selfmetrics_interval, relay, spool, timeout,
           curve_server_key, curve_secret):
    """Receive sFlow v5 datagrams and publish their counters and flow estimates.

    Anything that is not sFlow v5 (NetFlow/IPFIX sent to the same port, garbage) is counted
    and dropped; a malformed datagram is reported (hex of the bytes) and what was whole in it
    is kept.  Stops cleanly on SIGTERM/SIGINT, publishing the open aggregation window.
    """
    from monbus.core.line import LineError
    from monbus.core.selfmetrics import Counters

    from .pipeline import Pipeline
    socks = []
    for host, port in listen:
        explicit = (host, port) not in [parse_hostport(d) for d in DEFAULT_LISTEN]
        try:
            socks.append(bind_udp(host, port))
        except click.ClickException as e:
            # the default pair: a machine without IPv6 loopback still gets the IPv4 one
            if explicit or len(listen) == 1:
                raise
            log.warning("%s (skipped)", e.message)
    if not socks:
        raise click.ClickException("no address to listen on")
    sender = make_sender(relay, spool, timeout, curve_server_key, curve_secret)
    counters = Counters("sflow")
    pipe = Pipeline(interval, prefix, max_flow_keys)
    nprob = 0
    for s in socks:
        click.echo(f"monbus sflow: listening on udp {_fmt_addr(s.getsockname())}", err=True)

    def report(problems):
        nonlocal nprob
        for p in problems:
            nprob += 1
            if nprob <= 10 or nprob % _LOG_EVERY == 0:
                log.warning("%s%s", p, f" ({nprob} problems so far)" if nprob > 10 else "")

    by_fd = {s.fileno(): s for s in socks}

    def on_readable(sock):
        # zmq's poller hands back the file descriptor of a plain socket
        sock = by_fd.get(sock, sock) if isinstance(sock, int) else sock
        now = time.time()
        for _ in range(_MAX_READS):
            try:
                payload, addr = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                counters.inc("receive_errors")
                log.warning("receive error: %s", e)
                return
            try:
                lines, problems = pipe.feed(payload, now, addr[0])
            except Exception as e:  # noqa: BLE001 - a decoder bug must not stop the daemon
                counters.inc("decoder_bugs")
                log.error("decoder bug on a datagram from %s (%s: %s), dropped: %s", addr[0],
                          type(e).__name__, e, payload[:64].hex())
                continue
            for line in lines:
                _add(line)
            if problems:
                report(problems)
            if pipe.notices:
                for notice in pipe.notices:
                    log.warning("%s", notice)
                pipe.notices.clear()

    def _add(line):
        try:
            sender.add(line)
        except LineError as e:  # a converter bug must not stop the daemon either
            counters.inc("invalid_lines")
            log.error("invalid line dropped: %s", e)

    def on_tick(now):
        for line in pipe.flush(now, final=False):
            _add(line)
        for k, v in pipe.counts.items():
            counters.values[k] = v
        counters.gauges.add("lost_datagrams")

    def drain():
        for sock in socks:
            on_readable(sock)

    stats = run_daemon(sender, counters, socks, on_readable,
                       _FinalFlush(pipe, _add, on_tick, drain),
                       selfmetrics_interval=selfmetrics_interval)
    for s in socks:
        s.close()
    if stats.get("lost_lines"):
        raise click.ClickException(f"{stats['lost_lines']} lines could not be delivered nor "
                                   f"spooled")


class _FinalFlush:
    """on_tick that also publishes the open aggregation window when the daemon stops.

    run_daemon calls on_tick once more after SIGTERM/SIGINT ended its loop, but does not say
    that it is the last call.  Work-around (core change wanted: an `on_stop` hook): on the
    first tick, wrap the stop handlers run_daemon installed so that we learn of the stop."""

    def __init__(self, pipe, add, on_tick, drain):
        self.pipe, self.add, self.on_tick, self.drain = pipe, add, on_tick, drain
        self.stopping = False
        self.wrapped = False

    def _wrap(self):
        import signal
        for sig in (signal.SIGTERM, signal.SIGINT):
            prev = signal.getsignal(sig)

            def handler(signum, frame, prev=prev):
                self.stopping = True
                if callable(prev):
                    prev(signum, frame)
            signal.signal(sig, handler)
        self.wrapped = True

    def __call__(self, now):
        if not self.wrapped:
            self._wrap()
        if self.stopping:
            # what is already in the socket buffers is read, not lost
            self.drain()
        self.on_tick(now)
        if self.stopping:
            for line in self.pipe.flush(now, final=True):
                self.add(line)


def _fmt_addr(a) -> str:
    return f"[{a[0]}]:{a[1]}" if ":" in a[0] else f"{a[0]}:{a[1]}"


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True))
@_common
@click.option("--raw", is_flag=True,
              help="FILES are bare datagrams (one per file), not pcap captures.")
@click.option("--now", "now", type=float, default=None,
              help="Timestamp for the lines [default: each packet's capture time].")
@click.option("--send", is_flag=True, help="Send the lines to the relay instead of printing.")
@sender_options
def decode(files, prefix, max_flow_keys, interval, raw, now, send, relay, spool, timeout,
           curve_server_key, curve_secret):
    """Decode sFlow datagrams from pcap captures (UDP payloads) or bare datagram files.

    Prints the lines (or sends them with --send) and reports malformed datagrams on stderr.
    Exits 1 if any datagram had errors.
    """
    from monbus.core.pcap import PcapError, read_udp
    from .pipeline import Pipeline
    pipe = Pipeline(interval, prefix, max_flow_keys)
    sender = make_sender(relay, spool, timeout, curve_server_key, curve_secret) if send else None
    out = sender.add if sender else (lambda line: click.echo(line))
    bad = 0
    for path in files:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise click.ClickException(f"cannot read {path}: {e.strerror}") from None
        cut = None
        if raw:
            packets = [(os.path.getmtime(path), path, data)]
        else:
            packets = []
            try:
                for d in read_udp(data):
                    packets.append((d.ts, d.src, d.payload))
            except PcapError as e:
                if not packets:
                    raise click.ClickException(f"{path}: {e} (use --raw for bare datagrams)") \
                        from None
                cut = e   # the datagrams before the cut are decoded, the cut is reported
        for ts, src, payload in packets:
            t = now if now is not None else ts
            lines, problems = pipe.feed(payload, t, src)
            for line in lines:
                out(line)
            for line in pipe.flush(t):
                out(line)
            for p in problems:
                bad += 1
                click.echo(f"monbus sflow decode: {path}: {p}", err=True)
            for notice in pipe.notices:
                click.echo(f"monbus sflow decode: {path}: {notice}", err=True)
            pipe.notices.clear()
        if cut is not None:
            bad += 1
            click.echo(f"monbus sflow decode: {path}: {cut}", err=True)
    for line in pipe.flush(0, final=True):
        out(line)
    if sender is not None:
        stats = sender.close()
        if stats["lost_lines"]:
            raise click.ClickException(f"{stats['lost_lines']} lines not delivered")
    if bad:
        sys.exit(1)
