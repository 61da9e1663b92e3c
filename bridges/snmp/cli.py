"""`monbus snmp`: poll agents (from cron or as a daemon) and receive traps."""
from __future__ import annotations

import asyncio
import sys
import time

import click

from monbus.core.line import sanitize
from monbus.core.options import listen_option, make_sender, sender_options

from .modules import BUILTIN, ALIASES, ModuleError, resolve
from .targets import Target, TargetError, check, load, parse_address, with_overrides


@click.group()
def cli():
    """SNMP: poll agents (v1, v2c, v3) and receive traps, onto the bus.

    Lines: snmp.<host>.<module>[.<table>].<instance>.<object>, e.g.
    snmp.core1.interfaces.eth0.ifHCInOctets; snmp.<host>.agent.status (mtype=state) says
    whether the agent answered; traps are snmp.<agent>.trap.<name-or-oid>.
    """


def _targets_from(args, targets_file, opts) -> tuple[list, dict]:
    """Targets from the file and/or the ADDRESS arguments; raise ClickException."""
    targets, user, traps = [], {}, {}
    try:
        if targets_file:
            targets, user, traps = load(targets_file)
        mods = None
        if opts["module"]:
            mods = resolve(opts["module"], user)
        # for the file's targets, the flags that tune polling win; the version and
        # credential flags describe ADDRESS arguments only
        for t in targets:
            if mods:
                t.modules = mods
            for key in ("snmp_timeout", "retries", "max_repetitions"):
                if opts[key] is not None:
                    setattr(t, "timeout" if key == "snmp_timeout" else key, opts[key])
        if opts["name"] and len(args) != 1:
            raise TargetError("--name names one ADDRESS; give a targets file for several")
        for a in args:
            host, port = parse_address(a)
            t = Target(host, port, name=opts["name"] or "",
                       modules=mods or resolve(["system", "interfaces"]))
            t = with_overrides(t, version=opts["version"], community=opts["community"],
                               user=opts["user"], level=opts["level"],
                               auth_protocol=opts["auth_protocol"],
                               auth_password=opts["auth_password"],
                               priv_protocol=opts["priv_protocol"],
                               priv_password=opts["priv_password"], context=opts["context"],
                               timeout=opts["snmp_timeout"], retries=opts["retries"],
                               max_repetitions=opts["max_repetitions"],
                               deadline=opts["deadline"])
            targets.append(check(t, f"target {a}"))
        if opts["deadline"]:
            for t in targets:
                t.deadline = opts["deadline"]
    except (TargetError, ModuleError) as e:
        raise click.ClickException(str(e)) from None
    if not targets:
        raise click.ClickException("nothing to poll: give ADDRESS arguments or --targets FILE")
    names = [t.host for t in targets]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise click.ClickException(f"several targets named {sorted(dup)}: use --targets "
                                   f"with distinct names")
    return targets, traps


@cli.command()
@click.argument("addresses", nargs=-1, metavar="[ADDRESS[:PORT]]...")
@click.option("--targets", "-f", "targets_file", type=click.Path(dir_okay=False),
              help="TOML file of targets and user modules (contrib/snmp/targets.toml); "
                   "in monbus.toml: [snmp.poll] targets_file = \"...\".")
@click.option("--version", "-v", "version", type=click.Choice(["1", "2c", "3"]), default=None,
              help="SNMP version for ADDRESS arguments [default: 2c].")
@click.option("--community", "-c", envvar="MONBUS_SNMP_COMMUNITY", default=None,
              help="v1/v2c community [default: public; env MONBUS_SNMP_COMMUNITY].")
@click.option("--user", "-u", default=None, help="SNMPv3 user name.")
@click.option("--level", "-l", default=None,
              type=click.Choice(["noAuthNoPriv", "authNoPriv", "authPriv"], case_sensitive=False),
              help="SNMPv3 security level [default: authPriv].")
@click.option("--auth-protocol", "-a", default=None,
              help="SNMPv3 auth: MD5, SHA, SHA-224, SHA-256, SHA-384, SHA-512 [default: SHA].")
@click.option("--auth-password", "-A", envvar="MONBUS_SNMP_AUTH_PASSWORD", default=None,
              help="SNMPv3 auth pass phrase [env MONBUS_SNMP_AUTH_PASSWORD, which keeps it "
                   "out of `ps`].")
@click.option("--priv-protocol", "-x", default=None,
              help="SNMPv3 privacy: DES, AES (=AES-128), AES-192, AES-256, AES192C, AES256C "
                   "[default: AES].")
@click.option("--priv-password", "-X", envvar="MONBUS_SNMP_PRIV_PASSWORD", default=None,
              help="SNMPv3 privacy pass phrase [env MONBUS_SNMP_PRIV_PASSWORD].")
@click.option("--context", "-n", default=None, help="SNMPv3 context name.")
@click.option("--snmp-timeout", "-t", type=click.FloatRange(min=0.01), default=None,
              help="Seconds to wait for each response [default: 2].")
@click.option("--retries", "-r", type=click.IntRange(min=0), default=None,
              help="Retries per request [default: 1].")
@click.option("--max-repetitions", type=click.IntRange(1, 1000), default=None,
              help="GETBULK max-repetitions (net-snmp's -Cr) [default: 25].")
@click.option("--module", "-m", "module", multiple=True,
              help="Module to poll; repeatable (overrides the file's).  Built in: "
                   + ", ".join(list(BUILTIN) + list(ALIASES)) + " [default: system, interfaces].")
@click.option("--name", default=None,
              help="The <host> path component for a single ADDRESS [default: the address].")
@click.option("--once", is_flag=True,
              help="Poll every target once, publish, print a summary and exit (for cron).")
@click.option("--interval", type=click.FloatRange(min=1), default=None,
              help="Daemon: seconds between polls of a target [default: the target's "
                   "`interval`, 60].")
@click.option("--deadline", type=click.FloatRange(min=0.1), default=None,
              help="Seconds one target's whole poll may take before it is given up "
                   "[default: timeout x (retries+1) x (modules+1)].")
@click.option("--concurrency", type=click.IntRange(min=1), default=100, show_default=True,
              help="Targets polled at the same time.")
@click.option("--state", "state_file", type=click.Path(dir_okay=False), default=None,
              help="File remembering the last counter values: adds <name>_rate lines, "
                   "correct across cron runs, agent restarts and Counter32 wraps.")
@click.option("--engine", type=click.Choice(["auto", "pysnmp"]), default="auto",
              show_default=True,
              help="auto: v1/v2c through monbus's own BER codec (fast), v3 through pysnmp; "
                   "pysnmp: every version through pysnmp's engine.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar with --once [default: when stderr is a terminal].")
@sender_options
def poll(addresses, targets_file, relay, spool, timeout, curve_server_key, curve_secret,
         once, interval, concurrency, state_file, engine, progress, **opts):
    """Poll SNMP agents: ADDRESS arguments (net-snmp style flags) and/or --targets FILE.

    For the file's targets, -m, -t, -r, --max-repetitions and --deadline override the
    file; the version and credential flags apply to ADDRESS arguments only.

    \b
      monbus snmp poll --once -v 2c -c public -m interfaces 192.0.2.1:161
      monbus snmp poll --once -v 3 -u USER -l authPriv -a SHA -A PASS -x AES -X PASS host
      monbus snmp poll --targets /etc/monbus/snmp-targets.toml      # daemon

    With --once, exits 0 when every target answered, 2 when some did not (each is also
    published as snmp.<host>.agent.status = 1), 3 when lines could not be delivered nor
    spooled.
    """
    from monbus.core.selfmetrics import Counters

    from . import rates
    from .service import Publisher, poll_forever, poll_once, split_by_interval

    targets, _ = _targets_from(addresses, targets_file, opts)
    state = rates.load(state_file) if state_file else None
    counters = Counters("snmp")
    sender = make_sender(relay, spool, timeout, curve_server_key, curve_secret)
    pub = Publisher(sender, counters, state)
    if progress is None:
        progress = sys.stderr.isatty()
    start = time.monotonic()
    try:
        if once:
            asyncio.run(poll_once(targets, pub, concurrency, progress, engine))
        else:
            last_save = [time.monotonic()]

            def save_now_and_then():
                if time.monotonic() - last_save[0] >= 30:
                    last_save[0] = time.monotonic()
                    try:
                        rates.save(state, state_file, time.time())
                    except OSError as e:     # a full disk must not stop the polling
                        counters.inc("state_write_errors")
                        click.echo(f"monbus snmp poll: cannot write state {state_file!r}: "
                                   f"{e.strerror}", err=True)
            asyncio.run(poll_forever(split_by_interval(targets, interval), pub, concurrency,
                                     on_cycle=save_now_and_then if state_file else None,
                                     engine=engine))
    except KeyboardInterrupt:
        pass
    finally:
        if state_file:
            try:
                rates.save(state, state_file, time.time())
            except OSError as e:
                click.echo(f"monbus snmp poll: cannot write state {state_file!r}: "
                           f"{e.strerror}", err=True)
    # self-metrics (polls, varbinds, skipped values, bad responses...) in both modes: a
    # cron run's counts are its own, published once at the end
    for line in counters.lines(time.time()):
        sender.add(line)
    stats = sender.close()
    if once:
        click.echo(f"monbus snmp poll: {pub.ok} targets ok, {pub.failed} failed, "
                   f"{pub.varbinds} varbinds, {pub.lines} lines in "
                   f"{time.monotonic() - start:.2f} s", err=True)
        for f in pub.failures[:20]:
            click.echo(f"  failed: {f}", err=True)
        if len(pub.failures) > 20:
            click.echo(f"  ... and {len(pub.failures) - 20} more", err=True)
    if stats["lost_lines"]:
        click.echo(f"monbus snmp poll: {stats['lost_lines']} lines not acknowledged by "
                   f"{relay} and no --spool to keep them", err=True)
        sys.exit(3)
    if once and pub.failed:
        sys.exit(2)


@cli.command()
@click.option("--oids", is_flag=True, help="Also list every object with its OID.")
def modules(oids):
    """List the built-in modules (numeric OIDs; no MIB files needed)."""
    for name, m in BUILTIN.items():
        n = len(m.scalars) + sum(len(t.columns) for t in m.tables)
        click.echo(f"{name}: {n} objects" + (f", {len(m.tables)} table(s)" if m.tables else ""))
        if oids:
            for c in m.scalars:
                click.echo(f"  {c.name:24} {'.'.join(map(str, c.oid))}  {c.kind}")
            for t in m.tables:
                for c in t.columns:
                    click.echo(f"  {(t.name + '.' if t.name else '') + c.name:24} "
                               f"{'.'.join(map(str, c.oid))}  {c.kind}")
    for a, ms in ALIASES.items():
        click.echo(f"{a}: alias of {', '.join(ms)}")


@cli.command()
@listen_option("127.0.0.1:162", "Address to receive notifications on")
@click.option("--targets", "-f", "targets_file", type=click.Path(dir_okay=False),
              help="The targets file: its [traps] table (communities, v3 users, names) and "
                   "its targets' names for their addresses; in monbus.toml: [snmp.traps] "
                   "targets_file = \"...\".")
@click.option("--community", "-c", "communities", multiple=True,
              help="Accepted v1/v2c community; repeatable [default: the file's, else public].")
@sender_options
def traps(listen, targets_file, communities, relay, spool, timeout, curve_server_key,
          curve_secret):
    """Receive SNMP traps and informs (v1, v2c, v3) and put each on the bus.

    Each becomes snmp.<agent>.trap.<name> (linkDown, coldStart, ... or the trap OID with
    '_'), value 1, its varbinds as annotations; linkUp/linkDown also become
    snmp.<agent>.interfaces.<if>.ifOperStatus availability lines.  <agent> is the name of
    the target with that address in --targets, or the sender's address.  Port 162 needs
    root or CAP_NET_BIND_SERVICE; `--listen 0.0.0.0:162` to hear other hosts.
    """
    from monbus.core.selfmetrics import Counters

    import socket

    from monbus.core.options import bind_udp

    from .trapd import parse_users, run
    names, users, comms = {}, [], list(communities)
    if targets_file:
        try:
            targets, _, tcfg = load(targets_file)
            bad = set(tcfg) - {"community", "communities", "user", "names"}
            if bad:
                raise TargetError(f"{targets_file} [traps]: unknown key(s) {sorted(bad)}")
            users = parse_users(tcfg.get("user"))
            if not comms:
                c = tcfg.get("communities", tcfg.get("community", []))
                comms = [c] if isinstance(c, str) else list(c)
            for t in targets:
                names.setdefault(t.address, t.host)
            for addr, name in (tcfg.get("names") or {}).items():
                names[addr] = sanitize(str(name))
        except TargetError as e:
            raise click.ClickException(str(e)) from None
    if not comms and not users:
        comms = ["public"]
    # the targets' names for their addresses, resolved too (a target given by DNS name
    # sends its traps from an IP address)
    for addr, name in list(names.items()):
        try:
            for info in socket.getaddrinfo(addr, None, type=socket.SOCK_DGRAM):
                names.setdefault(info[4][0], name)
        except OSError:
            pass
    socks = [bind_udp(h, p) for h, p in listen]   # a port in use: a clear error, now
    counters = Counters("snmp_traps")
    sender = make_sender(relay, spool, timeout, curve_server_key, curve_secret)
    where = ", ".join(f"{h}:{p}" for h, p in listen)
    try:
        asyncio.run(run(socks, comms, users, names, sender, counters,
                        ready=lambda: click.echo(f"monbus snmp traps: listening on {where}",
                                                 err=True)))
    except OSError as e:
        raise click.ClickException(f"cannot listen on {where}: {e.strerror or e}") from None
    except KeyboardInterrupt:
        pass
    stats = sender.close()
    if stats["lost_lines"]:
        click.echo(f"monbus snmp traps: {stats['lost_lines']} lines lost (no relay, no "
                   f"--spool)", err=True)
        sys.exit(3)
