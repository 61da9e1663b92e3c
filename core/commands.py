"""The core sub-commands: relay, send, tail, keygen."""
from __future__ import annotations

import sys
import time

import click

from .options import (_comma_list, make_sender, make_subscriber, repair_options,
                      sender_options, size_callback, subscriber_options)


_size = size_callback(allow_zero=True)  # --spool-max 0: unbounded
@click.command()
@click.option("--input", "input", multiple=True, envvar="MONBUS_RELAY_INPUT", callback=_comma_list,
              help="Endpoint senders connect to; repeatable [default: tcp://127.0.0.1:7701; "
                   "env MONBUS_RELAY_INPUT].")
@click.option("--output", "output", multiple=True, envvar="MONBUS_RELAY_OUTPUT",
              callback=_comma_list,
              help="Endpoint subscribers connect to; repeatable [default: tcp://127.0.0.1:7702; "
                   "env MONBUS_RELAY_OUTPUT].  Use tcp://0.0.0.0:7702 with CURVE across hosts.")
@click.option("--spool", envvar="MONBUS_SPOOL", type=click.Path(file_okay=False), default=None,
              help="Spool directory shared with this host's senders: drained while running; "
                   "holds data no subscriber wants yet [env MONBUS_SPOOL].")
@click.option("--spool-max", default="1G", show_default=True, callback=_size,
              help="Spool size bound; when full the oldest data is dropped and counted.")
@click.option("--hold/--no-hold", default=True, show_default=True,
              help="Hold (spool) messages of topics nobody subscribes to yet, instead of "
                   "publishing them to nobody.  Needs --spool.")
@click.option("--curve-secret", envvar="MONBUS_RELAY_CURVE_SECRET", type=click.Path(dir_okay=False),
              help="The relay's secret CURVE certificate (monbus keygen); enables CURVE on "
                   "both sockets [env MONBUS_RELAY_CURVE_SECRET].")
@click.option("--curve-clients", envvar="MONBUS_RELAY_CURVE_CLIENTS",
              type=click.Path(file_okay=False, exists=True),
              help="Directory of the public certificates allowed to connect; any other key "
                   "gets nothing [env MONBUS_RELAY_CURVE_CLIENTS].")
@click.option("--retain", default="64M", show_default=True, callback=_size,
              help="Keep the last messages published, up to this many bytes of them (the "
                   "oldest evicted first), to send again to subscribers that missed some "
                   "(gap repair); 0: none, and no repair endpoint.")
@click.option("--repair", "repair", multiple=True, envvar="MONBUS_RELAY_REPAIR",
              callback=_comma_list,
              help="Endpoint where subscribers ask for missed messages again; repeatable "
                   "[default: each --output's port + 1, e.g. tcp://127.0.0.1:7703; env "
                   "MONBUS_RELAY_REPAIR].  CURVE like the others.")
@click.option("--selfmetrics-interval", default=10.0, show_default=True, type=float,
              help="Seconds between self-metric publications (monbus.<host>.relay.*).")
def relay(input, output, spool, spool_max, hold, curve_secret, curve_clients,  # noqa: A002
          retain, repair, selfmetrics_interval):
    """Forward lines from this host's bridges to any number of subscribers.

    Acknowledges a message only once it is published or written to the spool, so a relay
    killed with SIGKILL loses nothing it acknowledged.  Binds to loopback by default.
    """
    from .bus import BusError
    from .relay import DEFAULT_INPUT, DEFAULT_OUTPUT, Relay
    from .spool import SpoolError
    try:
        r = Relay(input or [DEFAULT_INPUT], output or [DEFAULT_OUTPUT], spool,
                  spool_max_bytes=spool_max, hold=hold, curve_secret=curve_secret,
                  curve_clients=curve_clients, selfmetrics_interval=selfmetrics_interval,
                  retain_bytes=retain, repair=list(repair) or None)
    except (BusError, SpoolError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"monbus relay: input {', '.join(r.endpoints_in)}  output "
               f"{', '.join(r.endpoints_out)}  repair {', '.join(r.endpoints_repair) or '-'}  "
               f"spool {spool or '-'}", err=True)
    r.run()


@click.command()
@click.argument("lines", nargs=-1)
@sender_options
@click.option("--prefix", default=None,
              help="Prepend this to every path (e.g. app.web01 for a tool that prints bare "
                   "Graphite names).")
@click.option("--quiet", "-q", is_flag=True, help="Do not report bad lines on stderr.")
def send(lines, relay, spool, timeout, curve_server_key, curve_secret, prefix, quiet):
    """Put lines on the bus: LINES as arguments, or one per line on stdin.

    Exits 0 once every good line is acknowledged by the relay or written to the spool;
    1 if bad lines were skipped (each is reported); 3 if data could not be delivered nor
    spooled (no --spool and no relay).
    """
    from .line import group_chunk
    sender = make_sender(relay, spool, timeout, curve_server_key, curve_secret)
    bad = 0
    pre = (prefix.rstrip(".") + ".").encode("utf-8") if prefix else b""

    def feed(data: bytes):
        nonlocal bad
        if pre:
            data = b"\n".join(pre + x for x in data.split(b"\n") if x)
        errors = []
        for topic, body, n in group_chunk(data, errors):
            sender.add_body(topic, body, n)
        for e in errors:
            bad += 1
            if not quiet and bad <= 10:
                click.echo(f"monbus send: skipped: {e}", err=True)
        sender.tick()

    if lines:
        feed("\n".join(lines).encode("utf-8", "surrogateescape"))
    else:
        from .chunks import line_chunks
        for chunk in line_chunks(sys.stdin.buffer):
            feed(chunk)
    stats = sender.close()
    if stats["lost_lines"]:
        click.echo(f"monbus send: {stats['lost_lines']} lines not acknowledged by {relay} "
                   f"and no --spool to keep them", err=True)
        sys.exit(3)
    if bad:
        if not quiet and bad > 10:
            click.echo(f"monbus send: {bad} bad lines skipped in all", err=True)
        sys.exit(1)


@click.command()
@click.argument("patterns", nargs=-1)
@subscriber_options
@click.option("--count", "-n", type=click.IntRange(min=1), default=None,
              help="Stop after this many lines.")
@click.option("--timeout", type=click.FloatRange(min=0), default=None,
              help="Stop after this many seconds.")
@click.option("--format", "fmt", type=click.Choice(["line", "json"]), default="line",
              show_default=True, help="Output format.")
@repair_options
def tail(patterns, connect, curve_server_key, curve_secret, count, timeout, fmt, repair,
         repair_connect):
    """Print lines from the bus matching PATTERNS (Graphite globs or prefixes; default all).

    Output is flushed per message, so `monbus tail | grep` is live.  Messages missed on the
    bus are asked again from the relay (--no-repair: not); those lost for good are reported
    on stderr at the end.
    """
    from .bus import line_to_json
    sub = make_subscriber(connect, patterns, curve_server_key, curve_secret, repair,
                          repair_connect)
    out = sys.stdout
    seen = 0
    deadline = None if timeout is None else time.monotonic() + timeout
    stopped = False

    import signal

    def _stop(*_):
        nonlocal stopped
        stopped = True
    signal.signal(signal.SIGTERM, _stop)
    try:
        while not stopped:
            wait = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
            if wait <= 0:
                break
            got = sub.recv_lines(wait, decode_lines=(fmt == "json"))
            if not got:
                continue
            if count is not None:
                got = got[:count - seen]
            if fmt == "json":
                out.write("\n".join(line_to_json(x) for x in got) + "\n")
            else:
                out.write("\n".join(got) + "\n")
            out.flush()
            seen += len(got)
            if count is not None and seen >= count:
                break
    except KeyboardInterrupt:
        pass
    finally:
        sub.close()
    if sub.gaps.gaps or sub.stats["bad_lines"]:
        click.echo(f"monbus tail: {sub.gaps.gaps} messages lost (sequence gaps), "
                   f"{sub.stats['bad_lines']} bad lines", err=True)


@click.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.argument("name")
def keygen(directory, name):
    """Write a CURVE certificate pair NAME.key (public) and NAME.key_secret into DIRECTORY.

    Give the relay its .key_secret (--curve-secret) and put each allowed client's public
    .key in the relay's --curve-clients directory; clients get the relay's public .key as
    --curve-server-key and their own .key_secret as --curve-secret.
    """
    import os

    import zmq.auth
    os.makedirs(directory, exist_ok=True)
    public, secret = zmq.auth.create_certificates(directory, name)
    os.chmod(secret, 0o600)
    click.echo(f"public: {public}\nsecret: {secret}")
