"""`monbus collectd`: listen (network plugin -> bus), exec and notify (collectd's exec plugin,
both directions) and putval (PUTVAL/PUTNOTIF text -> bus)."""
from __future__ import annotations

import ipaddress
import logging
import os
import sys
import time

import click

from monbus.core.options import (listen_option, make_sender, make_subscriber, repair_options,
                                 sender_options, subscriber_options)

log = logging.getLogger("monbus.collectd")

#: error messages logged per self-metrics interval before the rest are only counted
LOG_BUDGET = 20


def naming_options(f):
    """write_graphite's naming options, spelled as write_graphite spells them."""
    for opt in reversed([
        click.option("--prefix", default="collectd.", show_default=True,
                     help="write_graphite's Prefix: put before the host name (keep the "
                          "trailing dot; with the default the bus topic is collectd.<host>.)."),
        click.option("--postfix", default="", help="write_graphite's Postfix: put after the "
                                                   "host name."),
        click.option("--escape-character", default="_", show_default=True,
                     help="write_graphite's EscapeCharacter: replaces dots, white space and "
                          "characters Graphite forbids in names."),
        click.option("--separate-instances", is_flag=True,
                     help="write_graphite's SeparateInstances: plugin.instance instead of "
                          "plugin-instance (same for type)."),
        click.option("--always-append-ds", is_flag=True,
                     help="write_graphite's AlwaysAppendDS: append the data-source name even "
                          "for single-value types (.value)."),
        click.option("--preserve-separator", is_flag=True,
                     help="write_graphite's PreserveSeparator: keep dots inside names."),
        click.option("--drop-duplicate-fields", is_flag=True,
                     help="write_graphite's DropDuplicateFields: memory.memory-used -> "
                          "memory.used."),
        click.option("--reverse-host", is_flag=True,
                     help="write_graphite's ReverseHost: the dot-separated parts of the host "
                          "in reverse order (node3.example.com -> com_example_node3)."),
        click.option("--use-tags", is_flag=True,
                     help="write_graphite's UseTags: tagged series, <prefix><plugin>.<type>"
                          "[.<ds>]<postfix>;host=...;plugin=...;type=...  (the bus topic is "
                          "then <prefix><plugin>)."),
    ]):
        f = opt(f)
    return f


store_rates_option = click.option(
    "--store-rates", is_flag=True,
    help="write_graphite's StoreRates: publish counter, derive and absolute values as "
         "per-second rates (mtype=gauge) instead of raw values.  Off by default: raw values "
         "with their mtype lose nothing.")


def typesdb_options(f):
    """--typesdb FILE (repeatable) and --no-system-typesdb."""
    f = click.option("--no-system-typesdb", is_flag=True,
                     help="Do not read /usr/share/collectd/types.db (only --typesdb files and "
                          "the built-in common types).")(f)
    f = click.option("--typesdb", "typesdb", multiple=True, type=click.Path(dir_okay=False),
                     help="Extra types.db file (repeatable), read after the system's, as "
                          "collectd's TypesDB.")(f)
    return f


def _make_naming(prefix, postfix, escape_character, separate_instances, always_append_ds,
                 preserve_separator, drop_duplicate_fields, reverse_host, use_tags):
    from .naming import GraphiteNaming, NamingError
    try:
        return GraphiteNaming(prefix, postfix, escape_character, separate_instances,
                              always_append_ds, preserve_separator, drop_duplicate_fields,
                              reverse_host, use_tags)
    except NamingError as e:
        raise click.ClickException(str(e)) from None


def _make_typesdb(paths, no_system):
    from .typesdb import TypesDB
    try:
        db = TypesDB(paths, use_system=not no_system)
    except OSError as e:
        raise click.ClickException(f"cannot read types.db {e.filename!r}: {e.strerror}") from None
    for err in db.errors[:5]:
        log.warning("%s", err)
    return db


class _ErrorLog:
    """Logs decode errors, at most LOG_BUDGET per interval; the rest only counted."""

    def __init__(self):
        self.budget = LOG_BUDGET
        self.suppressed = 0

    def __call__(self, peer, errors):
        for e in errors:
            if self.budget > 0:
                self.budget -= 1
                log.warning("datagram from %s: %s", peer, e.message)
            else:
                self.suppressed += 1

    def reset(self):
        if self.suppressed:
            log.warning("%d more datagram errors not logged (see monbus.*.collectd.* "
                        "self-metrics)", self.suppressed)
        self.budget = LOG_BUDGET
        self.suppressed = 0


def _interface_index(name: str) -> int:
    """The index of a network interface by name (click error if there is none)."""
    import socket
    try:
        return socket.if_nametoindex(name)
    except OSError:
        raise click.ClickException(f"--interface {name!r}: no such network interface") from None


@click.group()
def cli():
    """collectd: the network plugin's protocol (with Sign/Encrypt) and the exec plugin."""


@cli.command()
@listen_option("127.0.0.1:25826", "UDP address to receive collectd's network plugin on; a "
               "multicast address is joined")
@click.option("--security-level", type=click.Choice(["none", "sign", "encrypt"],
                                                     case_sensitive=False),
              default="none", show_default=True,
              help="collectd's SecurityLevel: 'sign' accepts signed or encrypted data only, "
                   "'encrypt' encrypted data only; the rest is dropped and counted.")
@click.option("--auth-file", type=click.Path(dir_okay=False),
              help="collectd's AuthFile: 'user: password' lines; re-read when it changes. "
                   "Needed to verify signed and decrypt encrypted packets.")
@typesdb_options
@naming_options
@store_rates_option
@sender_options
@click.option("--selfmetrics-interval", default=10.0, show_default=True,
              type=click.FloatRange(min=0.1),
              help="Seconds between self-metric publications (monbus.<host>.collectd.*: "
                   "datagrams, lines, and every kind of drop).")
@click.option("--interface", metavar="NAME",
              help="collectd's Interface for a <Listen> block: join the multicast groups of "
                   "--listen on this network interface (e.g. lo) instead of the one the "
                   "routing table picks.")
def listen(listen, security_level, auth_file, typesdb, no_system_typesdb, prefix, postfix,
           escape_character, separate_instances, always_append_ds, preserve_separator,
           drop_duplicate_fields, reverse_host, use_tags, store_rates, relay, spool, timeout,
           curve_server_key, curve_secret, selfmetrics_interval, interface):
    """Receive collectd's network plugin (UDP) and put its values on the bus.

    Paths are the ones collectd's write_graphite makes with the same options:
    collectd.<host>.<plugin>[-<instance>].<type>[-<instance>][.<ds>], with mtype (gauge,
    counter, derive, absolute) and interval annotations.  Notifications become availability
    lines (mtype=state: OKAY 0, WARNING 1, FAILURE 2) ending in `.notification`.
    """
    from monbus.core.options import bind_udp, run_daemon
    from monbus.core.selfmetrics import Counters

    from .kerneldrops import kernel_drops, socket_inodes
    from .network import NetworkDecoder
    from .security import AuthFile, AuthFileError

    security_level = security_level.lower()
    auth = None
    if auth_file:
        try:
            auth = AuthFile(auth_file)
        except AuthFileError as e:
            raise click.ClickException(str(e)) from None
        if os.stat(auth_file).st_mode & 0o077:
            log.warning("AuthFile %s is readable by other users: it holds passwords "
                        "(chmod 600 it)", auth_file)
    elif security_level != "none":
        raise click.ClickException(f"--security-level {security_level} needs --auth-file "
                                   f"(the users and passwords to check packets with)")
    naming = _make_naming(prefix, postfix, escape_character, separate_instances,
                          always_append_ds, preserve_separator, drop_duplicate_fields,
                          reverse_host, use_tags)
    db = _make_typesdb(typesdb, no_system_typesdb)
    decoder = NetworkDecoder(db, naming, security_level, auth.lookup if auth else None,
                             store_rates)
    ifindex = _interface_index(interface) if interface else 0
    sockets = []
    for host, port in listen:
        try:
            group = host if ipaddress.ip_address(host).is_multicast else None
        except ValueError:
            group = None
        # with --interface, the group is joined on it (collectd's Interface in a Listen block)
        sockets.append(bind_udp(host, port, multicast_group=group,
                                ifindex=ifindex if group else 0))
    inodes = socket_inodes(sockets)
    sender = make_sender(relay, spool, timeout, curve_server_key, curve_secret)
    counters = Counters("collectd")
    errlog = _ErrorLog()
    add = sender.add
    decode = decoder.decode

    def on_readable(sock):
        while True:
            try:
                data, peer = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                counters.inc("receive_errors")
                log.warning("receive error: %s", e)
                return
            lines, errors = decode(data)
            for text in lines:
                add(text)
            if errors:
                errlog(peer[0], errors)

    last_metrics = [time.monotonic()]

    def on_tick(now):
        if auth is not None and not auth.refresh():
            counters.inc("auth_file_errors")
            log.warning("cannot re-read AuthFile %s: %s (keeping the last users)",
                        auth.path, auth.error)
        for k, v in decoder.counts.items():
            counters.values[k] = v
        if auth is not None:
            counters.values["auth_file_reloads"] = auth.reloads
        drops = kernel_drops(inodes)
        if drops is not None:
            counters.values["kernel_drops"] = drops
        if time.monotonic() - last_metrics[0] >= 10:
            last_metrics[0] = time.monotonic()
            errlog.reset()

    addrs = ", ".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in listen)
    log.info("listening on %s (security level %s, types.db %s, decoder %s)", addrs,
             security_level, ", ".join(db.loaded) or "built-in",
             "in C" if decoder._c else "in Python (the C module _fastdecode was not built)")
    click.echo(f"monbus collectd listen: {addrs} -> {relay}", err=True)
    stats = run_daemon(sender, counters, sockets, on_readable, on_tick,
                       tick_interval=min(1.0, selfmetrics_interval / 2),
                       selfmetrics_interval=selfmetrics_interval)
    for s in sockets:
        s.close()
    if stats["lost_lines"]:
        click.echo(f"monbus collectd listen: {stats['lost_lines']} lines not acknowledged and "
                   f"no --spool to keep them", err=True)
        sys.exit(3)


@cli.command("exec")
@click.argument("patterns", nargs=-1)
@subscriber_options
@repair_options
@click.option("--local-host", is_flag=True,
              help="Use COLLECTD_HOSTNAME (set by the exec plugin) as the host of every value "
                   "instead of the host in each line's path.")
def exec_(patterns, connect, curve_server_key, curve_secret, repair, repair_connect, local_host):
    """A program for collectd's Exec plugin: bus lines matching PATTERNS -> PUTVAL/PUTNOTIF.

    Each line `<source>.<host>.<rest>` becomes `PUTVAL "<host>/<source>/<mtype>-<rest>"`
    (gauge, derive, counter or absolute from the line's mtype); availability lines
    (mtype=state) become PUTNOTIF (0 okay, 1 warning, 2 and 3 failure).  The interval is the
    line's, else COLLECTD_INTERVAL.  Every command is flushed; the program ends cleanly when
    collectd closes the pipe or sends SIGTERM.
    """
    from monbus.core.options import Stopper

    from .putval import PutvalFormatter

    interval = None
    try:
        interval = float(os.environ.get("COLLECTD_INTERVAL", "")) or None
    except ValueError:
        pass
    host = os.environ.get("COLLECTD_HOSTNAME") if local_host else None
    if local_host and not host:
        raise click.ClickException("--local-host needs COLLECTD_HOSTNAME (run me from "
                                   "collectd's Exec plugin)")
    fmt = PutvalFormatter(host, interval)
    sub = make_subscriber(connect, patterns, curve_server_key, curve_secret, repair,
                          repair_connect)
    stopper = Stopper()
    parent = os.getppid()
    out = sys.stdout
    try:
        while not stopper.stop:
            lines = sub.recv_lines(0.5)
            if lines is None:
                if os.getppid() != parent:  # collectd is gone
                    break
                continue
            for line in lines:
                cmd = fmt.format(line)
                if cmd is not None:
                    out.write(cmd + "\n")
                    out.flush()  # collectd reads line by line: never leave one buffered
    except BrokenPipeError:
        pass  # collectd closed the pipe: a normal end
    finally:
        sub.close()
    if sub.gaps.gaps or sub.stats["bad_lines"]:
        # collectd's exec plugin logs what its programs write on stderr
        click.echo(f"monbus collectd exec: {sub.gaps.gaps} bus messages lost (sequence gaps), "
                   f"{sub.stats['bad_lines']} bad lines skipped", err=True)
    try:
        sys.stdout.close()
    except BrokenPipeError:
        pass
    os._exit(0)


@cli.command()
@naming_options
@sender_options
def notify(prefix, postfix, escape_character, separate_instances, always_append_ds,
           preserve_separator, drop_duplicate_fields, reverse_host, use_tags, relay, spool,
           timeout, curve_server_key, curve_secret):
    """A NotificationExec handler: one notification on stdin -> one availability line.

    The path is that of the notified value plus `.notification`
    (collectd.<host>.<plugin>[-<pi>].<type>[-<ti>].notification), value 0 OKAY, 1 WARNING,
    2 FAILURE, the message in `output`.
    """
    from monbus.core.line import LineError

    from .putval import TextError, parse_notification_text
    naming = _make_naming(prefix, postfix, escape_character, separate_instances,
                          always_append_ds, preserve_separator, drop_duplicate_fields,
                          reverse_host, use_tags)
    text = sys.stdin.buffer.read().decode("utf-8", "replace")
    try:
        n = parse_notification_text(text)
        line = _notification_line(naming, n)
    except (TextError, LineError) as e:
        raise click.ClickException(f"not a collectd notification: {e}") from None
    sender = make_sender(relay, spool, timeout, curve_server_key, curve_secret)
    sender.add(line)
    stats = sender.close()
    if stats["lost_lines"]:
        raise click.ClickException(f"notification not acknowledged by {relay} and no --spool")


def _notification_line(naming, n) -> str:
    """The availability line of a notification (no types.db needed for that)."""
    from .network import LineMaker
    from .typesdb import TypesDB
    return LineMaker(TypesDB(use_system=False), naming).notification_line(n)


@cli.command()
@click.argument("file", type=click.File("r", encoding="utf-8", errors="replace"), default="-")
@typesdb_options
@naming_options
@store_rates_option
@sender_options
@click.option("--quiet", "-q", is_flag=True, help="Do not report bad lines on stderr.")
def putval(file, typesdb, no_system_typesdb, prefix, postfix, escape_character,
           separate_instances, always_append_ds, preserve_separator, drop_duplicate_fields,
           reverse_host, use_tags, store_rates, relay, spool, timeout, curve_server_key,
           curve_secret, quiet):
    """Read PUTVAL / PUTNOTIF lines (exec plugin / unixsock text) from FILE or stdin onto the bus.

    Data-source names and kinds come from types.db, as in collectd.  Exits 1 if bad lines
    were skipped (each reported), 3 if data could be neither delivered nor spooled.
    """
    from .network import LineMaker
    from .putval import TextError, parse_putnotif, parse_putval
    naming = _make_naming(prefix, postfix, escape_character, separate_instances,
                          always_append_ds, preserve_separator, drop_duplicate_fields,
                          reverse_host, use_tags)
    db = _make_typesdb(typesdb, no_system_typesdb)
    maker = LineMaker(db, naming, store_rates)
    sender = make_sender(relay, spool, timeout, curve_server_key, curve_secret)
    bad = 0
    counts: dict = {}
    for lineno, raw in enumerate(file, 1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        errors: list = []
        try:
            cmd = text.split(None, 1)[0].upper()
            if cmd == "PUTVAL":
                out = maker.lines(parse_putval(text, db, time.time()), errors, counts)
            elif cmd == "PUTNOTIF":
                out = [maker.notification_line(parse_putnotif(text, time.time()))]
            else:
                raise TextError("not a PUTVAL or PUTNOTIF command", text)
        except TextError as e:
            errors.append(e)
            out = []
        for line in out:
            sender.add(line)
        if errors:
            bad += 1
            if not quiet:
                for e in errors:
                    click.echo(f"monbus collectd putval: line {lineno}: {e}", err=True)
        sender.tick()
    stats = sender.close()
    if counts.get("nan_values") and not quiet:
        click.echo(f"monbus collectd putval: {counts['nan_values']} unknown (U) values skipped",
                   err=True)
    if stats["lost_lines"]:
        click.echo(f"monbus collectd putval: {stats['lost_lines']} lines not acknowledged by "
                   f"{relay} and no --spool to keep them", err=True)
        sys.exit(3)
    if bad:
        sys.exit(1)
