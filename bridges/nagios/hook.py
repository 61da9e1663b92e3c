"""`monbus nagios hook`: one check result from Nagios' perfdata command (or event handler) onto
the bus, as fast as a process can start.

Strategy: Nagios forks this once per check result, so start-up time is the cost.  This module
imports neither click nor zmq nor the monbus core's line codec (each costs 3-4x a bare
`python3 -c pass` to import); it parses its own few options and, by default, hands the lines
to the host's relay through the relay's spool directory: one file written under a temporary
name and renamed into place (atomic), which the relay drains at once.  That is at-least-once
with no round trip: the relay need not even be running.  With no spool directory (or
`--via relay`) it sends over ZeroMQ with the core Sender (acknowledged, spooled on timeout).

Run it as `python3 -m monbus.bridges.nagios.hook ...` (or contrib/nagios/monbus-nagios-hook);
`monbus nagios hook ...` takes the same options but pays for click on every call.
"""
from __future__ import annotations

import os
import sys
import time

from .perfdata import CheckResult, LineMaker, parse_state, sanitize

PROG = "monbus nagios hook"

# option -> (destination, Nagios environment macro(s) used when the option is absent, help)
OPTIONS = {
    "--host": ("host", ("NAGIOS_HOSTNAME",), "Host name: \"$HOSTNAME$\"."),
    "--service": ("service", ("NAGIOS_SERVICEDESC",),
                  "Service description: \"$SERVICEDESC$\"; absent or empty for a host check."),
    "--state": ("state", ("NAGIOS_SERVICESTATEID", "NAGIOS_HOSTSTATEID"),
                "State: \"$SERVICESTATEID$\" or \"$HOSTSTATEID$\" (0-3, or OK/WARNING/...)."),
    "--state-type": ("state_type", ("NAGIOS_SERVICESTATETYPE", "NAGIOS_HOSTSTATETYPE"),
                     "\"$SERVICESTATETYPE$\" (SOFT/HARD); annotated as state_type."),
    "--output": ("output", ("NAGIOS_SERVICEOUTPUT", "NAGIOS_HOSTOUTPUT"),
                 "First line of plugin output: \"$SERVICEOUTPUT$\"."),
    "--long-output": ("long_output", ("NAGIOS_LONGSERVICEOUTPUT", "NAGIOS_LONGHOSTOUTPUT"),
                      "Long output: \"$LONGSERVICEOUTPUT$\" (Nagios' \\n escapes are undone)."),
    "--perfdata": ("perfdata", ("NAGIOS_SERVICEPERFDATA", "NAGIOS_HOSTPERFDATA"),
                   "Performance data: \"$SERVICEPERFDATA$\" or \"$HOSTPERFDATA$\"."),
    "--time": ("time", ("NAGIOS_TIMET",), "Check time: \"$TIMET$\" (Unix seconds) [default: now]."),
    "--source": ("source", (), "First path component [default: nagios]."),
    "--relay": ("relay", ("MONBUS_RELAY",), "Relay input endpoint [default: tcp://127.0.0.1:7701; "
                                            "env MONBUS_RELAY]."),
    "--spool": ("spool", ("MONBUS_SPOOL",), "The relay's spool directory [env MONBUS_SPOOL]."),
    "--spool-max": ("spool_max", (), "Bound of the spool directory (512M, 2G; 0: no bound, "
                                     "leave it to the relay) [default: 256M]."),
    "--timeout": ("timeout", ("MONBUS_TIMEOUT",), "Seconds to wait for the relay with --via relay "
                                                 "before spooling [default: 2]."),
    "--curve-server-key": ("curve_server_key", ("MONBUS_CURVE_SERVER_KEY",),
                           "With --via relay: the relay's public CURVE certificate "
                           "[env MONBUS_CURVE_SERVER_KEY]."),
    "--curve-secret": ("curve_secret", ("MONBUS_CURVE_SECRET",),
                       "With --via relay: this client's secret CURVE certificate "
                       "[env MONBUS_CURVE_SECRET]."),
    "--via": ("via", (), "spool: write to --spool (fastest); relay: send over ZeroMQ; auto: spool "
                         "if --spool is set, else relay [default: auto]."),
}
FLAGS = {"--quiet": ("quiet", "Do not report skipped perfdata items on stderr."),
         "--no-env": ("no_env", "Ignore Nagios' NAGIOS_* environment macros.")}


class UsageError(Exception):
    pass


def parse_args(argv: list[str]) -> dict:
    """`--opt value` / `--opt=value` / flags -> dict.  Raises UsageError."""
    opts: dict = {}
    i = 0
    while i < len(argv):
        a = argv[i]
        key, eq, val = a.partition("=")
        if key in OPTIONS:
            if not eq:
                i += 1
                if i >= len(argv):
                    raise UsageError(f"option {key} needs a value")
                val = argv[i]
            opts[OPTIONS[key][0]] = val
        elif a in FLAGS:
            opts[FLAGS[a][0]] = True
        elif a in ("-h", "--help"):
            opts["help"] = True
        else:
            raise UsageError(f"unknown argument {a[:60]!r} (see --help)")
        i += 1
    return opts


def help_text() -> str:
    rows = [f"  {k} TEXT".ljust(24) + h for k, (_, _, h) in OPTIONS.items()]
    rows += [f"  {k}".ljust(24) + h for k, (_, h) in FLAGS.items()]
    return (f"Usage: {PROG} [OPTIONS]\n\n"
            "  Put one Nagios check result (perfdata items and the state) on the bus.\n"
            "  Options absent from the command line are taken from Nagios' environment\n"
            "  macros (NAGIOS_HOSTNAME, ...) when enable_environment_macros=1.\n"
            "  Exit: 0 delivered, 1 delivered but some perfdata items skipped (reported),\n"
            "  2 usage error, 3 not delivered and not spooled.\n\nOptions:\n" + "\n".join(rows))


def result_from(opts: dict, environ, now: float) -> tuple[CheckResult, dict]:
    """The CheckResult an invocation describes (options, then environment macros)."""
    use_env = not opts.get("no_env")
    service = opts.get("service")
    if service is None and use_env:
        service = environ.get("NAGIOS_SERVICEDESC")
    service = service or None
    v: dict = {}
    for _, (dest, envs, _) in OPTIONS.items():
        val = opts.get(dest)
        if val is None and use_env and envs:
            # (service macro, host macro): a host check must not take a service's macros
            name = envs[0] if (service is not None or len(envs) == 1) else envs[1]
            val = environ.get(name)
        v[dest] = val
    host = (v["host"] or "").strip()
    if not host:
        raise UsageError("no host: give --host \"$HOSTNAME$\" (or run with Nagios' "
                         "environment macros)")
    try:
        state = parse_state(v["state"])
    except ValueError as e:
        raise UsageError(str(e)) from None
    t = (v["time"] or "").strip()
    if t:
        try:
            ts = float(int(float(t)))
        except (ValueError, OverflowError):
            raise UsageError(f"--time {t[:40]!r} is not a Unix time") from None
        if ts < 0:
            raise UsageError(f"--time {t[:40]!r} is negative")
    else:
        ts = float(int(now))
    st = (v["state_type"] or "").strip().upper()
    state_type = {"0": "soft", "1": "hard", "SOFT": "soft", "HARD": "hard"}.get(st)
    long_output = (v["long_output"] or "").replace("\\n", "\n").strip("\n") or None
    r = CheckResult(host, service, state, (v["output"] or "").strip() or None, long_output,
                    v["perfdata"] or "", ts, state_type)
    return r, v


def _via(v: dict) -> str:
    """'spool' or 'relay': how this invocation delivers.  Raises UsageError."""
    via = (v.get("via") or "auto").lower()
    if via not in ("auto", "spool", "relay"):
        raise UsageError(f"--via must be auto, spool or relay, not {via[:20]!r}")
    if via == "spool" and not v.get("spool"):
        raise UsageError("--via spool needs --spool DIR (the relay's spool directory)")
    if via == "auto":
        via = "spool" if v.get("spool") else "relay"
    return via


def _size(text: str) -> int:
    """'256M' / '2G' / '1048576' -> bytes.  Raises UsageError."""
    t = text.strip().upper().removesuffix("B")
    mult = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4}.get(t[-1:], 1)
    try:
        n = int(float(t[:-1] if mult > 1 else t) * mult)
    except ValueError:
        n = -1
    if n < 0:
        raise UsageError(f"--spool-max expects a size like 512M or 2G, not {text[:20]!r}")
    return n


def deliver(topic_lines: dict, v: dict) -> int:
    """Hand {topic: [lines]} to the relay (spool file or ZeroMQ).  Returns lines not delivered."""
    spool = v.get("spool")
    if _via(v) == "spool":
        from monbus.core.spool import Spool, SpoolError
        lost = 0
        try:
            sp = Spool(spool, _size(v.get("spool_max") or "256M"))
        except SpoolError as e:
            print(f"{PROG}: {e}", file=sys.stderr)
            return sum(len(x) for x in topic_lines.values())
        for topic, lines in topic_lines.items():
            try:
                sp.write(topic.encode("utf-8"), "\n".join(lines).encode("utf-8"))
            except SpoolError as e:
                print(f"{PROG}: {e}", file=sys.stderr)
                lost += len(lines)
        return lost
    from monbus.core.bus import DEFAULT_RELAY, BusError, Sender
    try:
        timeout = float(v.get("timeout") or 2.0)
    except ValueError:
        raise UsageError(f"--timeout {v.get('timeout')!r} is not a number") from None
    try:
        sender = Sender(v.get("relay") or DEFAULT_RELAY, spool, timeout,
                        curve_server_key=v.get("curve_server_key"),
                        curve_secret=v.get("curve_secret"))
    except (BusError, OSError) as e:
        raise UsageError(str(e)) from None
    for topic, lines in topic_lines.items():
        for line in lines:
            sender.add(line, topic)
    stats = sender.close()
    if stats["lost_lines"]:
        print(f"{PROG}: {stats['lost_lines']} lines not acknowledged by {v.get('relay')} "
              f"and no --spool to keep them", file=sys.stderr)
    return stats["lost_lines"]


def run(opts: dict, environ=None, now: float | None = None) -> int:
    """Do one hook invocation; return the exit code."""
    environ = os.environ if environ is None else environ
    now = time.time() if now is None else now
    try:
        r, v = result_from(opts, environ, now)
        if _via(v) == "spool":
            _size(v.get("spool_max") or "256M")
        maker = LineMaker(opts.get("source") or "nagios")
        errors: list = []
        topic, lines = maker.lines(r, errors)
        out = {topic: lines} if lines else {}
        if errors:
            if not opts.get("quiet"):
                where = r.host + ("/" + r.service if r.service else "")
                for e in errors[:10]:
                    print(f"{PROG}: {where}: skipped {e}", file=sys.stderr)
            # counted: a self-metric per invocation (mtype=absolute: this call's count)
            me = sanitize(os.uname().nodename.split(".")[0] or "localhost")
            out[f"monbus.{me}."] = [f"monbus.{me}.nagios_hook.bad_items {len(errors)} "
                                    f"{int(now)} mtype=absolute"]
        lost = deliver(out, v) if out else 0
    except (UsageError, ValueError) as e:  # ValueError: RecordError, a name too long
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    if lost:
        return 3
    return 1 if errors else 0


def main(argv=None) -> None:
    """Entry point of `python3 -m monbus.bridges.nagios.hook`."""
    try:
        opts = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        sys.exit(2)
    if opts.get("help"):
        try:
            print(help_text())
        except BrokenPipeError:
            pass
        sys.exit(0)
    sys.exit(run(opts))


if __name__ == "__main__":
    main()
