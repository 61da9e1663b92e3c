"""`monbus nagios ...`: hook, spool, passive and parse (a thin click layer over the modules)."""
from __future__ import annotations

import logging
import sys
import time

import click

from monbus.core.options import (Stopper, bus_selfmetrics, make_sender, make_subscriber,
                                 repair_options, sender_options, subscriber_options)
from monbus.core.selfmetrics import Counters

log = logging.getLogger("monbus.nagios")


@click.group()
def cli():
    """Nagios (and Icinga, Naemon) check results onto the bus, and bus alerts back into it."""


@cli.command(context_settings={"ignore_unknown_options": False})
@click.option("--host", default=None, help='Host name: "$HOSTNAME$" [env NAGIOS_HOSTNAME].')
@click.option("--service", default=None,
              help='Service description: "$SERVICEDESC$"; absent or empty for a host check '
                   '[env NAGIOS_SERVICEDESC].')
@click.option("--state", default=None,
              help='"$SERVICESTATEID$" or "$HOSTSTATEID$" (0-3 or OK/WARNING/CRITICAL/UNKNOWN/'
                   'UP/DOWN/UNREACHABLE).')
@click.option("--state-type", default=None, help='"$SERVICESTATETYPE$" (SOFT/HARD).')
@click.option("--output", default=None, help='"$SERVICEOUTPUT$" (first line of plugin output).')
@click.option("--long-output", default=None, help='"$LONGSERVICEOUTPUT$".')
@click.option("--perfdata", default=None, help='"$SERVICEPERFDATA$" or "$HOSTPERFDATA$".')
@click.option("--time", "time_", default=None, help='"$TIMET$" [default: now].')
@click.option("--source", default="nagios", show_default=True, help="First path component.")
@click.option("--relay", envvar="MONBUS_RELAY", default=None,
              help="Relay input endpoint [default: tcp://127.0.0.1:7701; env MONBUS_RELAY].")
@click.option("--spool", envvar="MONBUS_SPOOL", default=None,
              help="The relay's spool directory [env MONBUS_SPOOL].")
@click.option("--spool-max", default=None,
              help="Bound of the spool directory (512M, 2G; 0: leave it to the relay) "
                   "[default: 256M].")
@click.option("--timeout", envvar="MONBUS_TIMEOUT", default=None,
              help="Seconds to wait for the relay with --via relay [default: 2].")
@click.option("--curve-server-key", envvar="MONBUS_CURVE_SERVER_KEY", default=None,
              help="With --via relay: the relay's public CURVE certificate.")
@click.option("--curve-secret", envvar="MONBUS_CURVE_SECRET", default=None,
              help="With --via relay: this client's secret CURVE certificate.")
@click.option("--via", type=click.Choice(["auto", "spool", "relay"]), default="auto",
              show_default=True,
              help="spool: write the lines into --spool for the relay to drain (fastest); "
                   "relay: send over ZeroMQ; auto: spool if --spool is set.")
@click.option("--quiet", is_flag=True, help="Do not report skipped perfdata items.")
@click.option("--no-env", is_flag=True, help="Ignore Nagios' NAGIOS_* environment macros.")
def hook(host, service, state, state_type, output, long_output, perfdata, time_, source, relay,
         spool, spool_max, timeout, curve_server_key, curve_secret, via, quiet, no_env):
    """One check result from service_perfdata_command / host_perfdata_command onto the bus.

    For the fastest start use `python3 -m monbus.bridges.nagios.hook` with the same options
    (no click, no zmq).  Options not given are read from Nagios' environment macros.
    Exit: 0 delivered, 1 delivered but perfdata items skipped, 2 usage, 3 not delivered.
    """
    from . import hook as hook_mod
    opts = {k: v for k, v in dict(host=host, service=service, state=state,
                                  state_type=state_type, output=output, long_output=long_output,
                                  perfdata=perfdata, time=time_, source=source, relay=relay,
                                  spool=spool, spool_max=spool_max, timeout=timeout, via=via,
                                  quiet=quiet or None,
                                  curve_server_key=curve_server_key, curve_secret=curve_secret,
                                  no_env=no_env or None).items() if v is not None}
    sys.exit(hook_mod.run(opts))


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@sender_options
@click.option("--pattern", default="*", show_default=True,
              help="Only files whose name matches this glob (e.g. 'service-perfdata.*').")
@click.option("--interval", type=click.FloatRange(min=0.05), default=2.0, show_default=True,
              help="Seconds between looks at DIRECTORY.")
@click.option("--once", is_flag=True,
              help="Process the files there now, then exit (cron, tests).")
@click.option("--source", default="nagios", show_default=True, help="First path component.")
def spool(directory, relay, spool, timeout, curve_server_key, curve_secret, pattern, interval,
          once, source):
    """Deliver the perfdata files in DIRECTORY (Nagios service_perfdata_file /
    host_perfdata_file rotated there, Icinga 2 PerfdataWriter, Nagflux spool lines),
    oldest first; each file is deleted once all its lines are acknowledged or spooled.

    Exit (--once): 0 all consumed, 1 bad records were skipped, 3 a file had to be kept.
    """
    from .perffiles import FileProcessor, pending_files
    counters = Counters("nagios_spool")
    # A file's lines spread over one topic per host: with the default 50 ms latency bound a
    # big installation's files went out as messages of ~30 lines, each waiting for its
    # acknowledgement.  Each file is flushed at its end anyway, so batch for longer.
    sender = make_sender(relay, spool, timeout, curve_server_key, curve_secret, latency=2.0)
    proc = FileProcessor(sender, counters, source)
    kept = 0
    if once:
        for path in pending_files(directory, pattern):
            kept += not proc.process(path, time.time())
        stats = sender.close()
        click.echo(f"monbus nagios spool: {int(counters['files'])} files, "
                   f"{int(counters['records'])} records, {int(counters['lines'])} lines, "
                   f"{int(counters['bad_records'])} bad records, "
                   f"{int(counters['bad_items'])} bad items, {kept} files kept, "
                   f"{stats['spooled_lines']} lines spooled", err=True)
        sys.exit(3 if kept else (1 if counters["bad_records"] else 0))
    stopper = Stopper()
    next_look = 0.0
    next_metrics = time.monotonic() + 10.0
    while not stopper.stop:
        now = time.monotonic()
        if now >= next_look:
            for path in pending_files(directory, pattern):
                if stopper.stop:
                    break
                proc.process(path, time.time())
            next_look = time.monotonic() + interval
        if now >= next_metrics:
            next_metrics = now + 10.0
            counters.set("spooled_lines", sender.stats["spooled_lines"])
            counters.set("lost_lines", sender.stats["lost_lines"])
            counters.set("unknown_values", proc.maker.unknown_values)
            for line in counters.lines(time.time()):
                sender.add(line)
        sender.sock.poll(50)
        sender.tick()
    sender.close()


@cli.command()
@click.argument("patterns", nargs=-1)
@subscriber_options
@click.option("--command-file", required=True, type=click.Path(dir_okay=False),
              help="Nagios' external command file (command_file in nagios.cfg, a FIFO).")
@click.option("--thresholds", is_flag=True,
              help="Also submit metric lines that carry warn/crit annotations, evaluated with "
                   "the Nagios range rules.")
@click.option("--include-nagios", is_flag=True,
              help="Also submit lines of source `nagios` (off: they came from Nagios).")
@click.option("--host-format", default="{host}", show_default=True,
              help="Nagios host name from the path: {source} {host} {rest}.")
@click.option("--service-format", default="{rest}", show_default=True,
              help="Nagios service description from the path: {source} {host} {rest}.")
@click.option("--count", "-n", type=click.IntRange(min=1), default=None,
              help="Stop after submitting this many results.")
@click.option("--relay", envvar="MONBUS_RELAY", default=None,
              help="Relay input for this command's self-metrics (monbus.<host>.nagios_passive.*: "
                   "results, bad_lines, dropped, backlog) every 10 s [env MONBUS_RELAY; "
                   "default: none].")
@repair_options
def passive(patterns, connect, curve_server_key, curve_secret, command_file, thresholds,
            include_nagios, host_format, service_format, count, relay, repair, repair_connect):
    """Submit bus lines matching PATTERNS (default all) to Nagios as passive check results:
    availability lines (mtype=state), and with --thresholds metrics with warn/crit."""
    from .passive import CommandFile, SkipLine, command_for
    for f in (host_format, service_format):
        try:
            f.format(source="s", host="h", rest="r")
        except (KeyError, IndexError, ValueError) as e:
            raise click.ClickException(f"bad format {f!r}: {e}") from None
    sub = make_subscriber(connect, patterns, curve_server_key, curve_secret, repair,
                          repair_connect)
    out = CommandFile(command_file)
    counters = Counters("nagios_passive")
    metrics = make_sender(relay, None, 2.0) if relay else None
    next_metrics = time.monotonic() + 10.0
    stopper = Stopper()
    submitted = 0
    last_error = None
    try:
        while not stopper.stop:
            if metrics is not None:
                if time.monotonic() >= next_metrics:
                    next_metrics = time.monotonic() + 10.0
                    counters.set("backlog", len(out.backlog))
                    counters.set("dropped", out.dropped)
                    bus_selfmetrics(sub, counters)
                    for line in counters.lines(time.time()):
                        metrics.add(line)
                metrics.tick()
            got = sub.recv_lines(0.2)
            cmds = []
            for line in got or ():
                try:
                    cmd = command_for(line, thresholds, include_nagios, host_format,
                                      service_format)
                except SkipLine as e:
                    counters.inc("bad_lines")
                    log.warning("skipped %s: %s", line.series[:120], e)
                    continue
                if cmd is not None:
                    cmds.append(cmd)
            written = out.submit(cmds) if cmds else out.flush()
            submitted += written
            counters.inc("results", written)
            if out.last_error and out.last_error != last_error:
                log.error("%s (results are kept and retried)", out.last_error)
            last_error = out.last_error
            if count is not None and submitted >= count:
                break
    finally:
        sub.close()
        if metrics is not None:
            metrics.close()
    if out.backlog or out.dropped:
        click.echo(f"monbus nagios passive: {len(out.backlog)} results not written, "
                   f"{out.dropped} dropped", err=True)


@cli.command()
@click.option("--host", default="localhost", show_default=True, help="Host name for the paths.")
@click.option("--service", default=None, help="Service description (none: a host check).")
@click.option("--state", default=None, help="State code or name for the availability line.")
@click.option("--time", "time_", type=float, default=None, help="Timestamp [default: now].")
@click.option("--perfdata-only", is_flag=True, help="stdin is a perfdata string, not output.")
def parse(host, service, state, time_, perfdata_only):
    """Print the lines monbus makes of a plugin's output on stdin (no bus): to check a plugin.

    e.g. `/usr/lib/nagios/plugins/check_load -w 5,4,3 -c 10,8,6 | monbus nagios parse
    --service load --state $?` ... (state: the plugin's exit code)."""
    from .perfdata import CheckResult, LineMaker, parse_state, split_output
    text = sys.stdin.read()
    try:
        code = parse_state(state)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    if perfdata_only:
        output, long_output, perf = None, None, text
    else:
        output, long_output, perf = split_output(text)
    r = CheckResult(host, service or None, code, output or None, long_output or None, perf,
                    float(int(time.time() if time_ is None else time_)))
    errors: list = []
    _, lines = LineMaker().lines(r, errors)
    for line in lines:
        click.echo(line)
    for e in errors:
        click.echo(f"monbus nagios parse: skipped {e}", err=True)
    sys.exit(1 if errors else 0)
