"""`monbus demo`: a relay, real sample data through every bridge that exists, one stream.

Each bridge may provide `monbus.bridges.<tool>.demo.feed(relay, spool) -> int`, which sends
real sample data (a capture replayed through its decoder, a real plugin output) to the relay
and returns the number of lines it sent.  The demo subscribes to everything, feeds each
bridge in turn and prints the unified stream, then a count per source.
"""
from __future__ import annotations

import importlib
import tempfile
import threading
import time

import click

BRIDGES = ("nagios", "collectd", "sflow", "snmp", "ganglia", "graphite")


@click.command()
@click.option("--only", multiple=True, type=click.Choice(BRIDGES), help="Feed only these bridges.")
@click.option("--max-print", default=12, show_default=True,
              help="Lines to print per source (all are counted).")
@click.option("--format", "fmt", type=click.Choice(["line", "json"]), default="line",
              show_default=True)
def demo(only, max_print, fmt):
    """Start a relay on free loopback ports, feed it real sample data, show the stream."""
    from .bus import Subscriber, line_to_json
    from .relay import Relay

    spool = tempfile.mkdtemp(prefix="monbus-demo-")
    relay = Relay(["tcp://127.0.0.1:*"], ["tcp://127.0.0.1:*"], spool, selfmetrics_interval=1.0)
    th = threading.Thread(target=relay.run, kwargs={"install_signals": False}, daemon=True)
    th.start()
    sub = Subscriber([relay.endpoints_out[0]], ["**"])
    deadline = time.monotonic() + 5
    while not relay._subs and time.monotonic() < deadline:
        time.sleep(0.01)
    click.echo(f"# relay: input {relay.endpoints_in[0]}  output {relay.endpoints_out[0]}  "
               f"spool {spool}")
    sent = {}
    for name in only or BRIDGES:
        try:
            mod = importlib.import_module(f"monbus.bridges.{name}.demo")
        except ImportError:
            click.echo(f"# {name}: no demo in this build (bridge not installed yet)")
            continue
        try:
            sent[name] = mod.feed(relay.endpoints_in[0], spool)
            click.echo(f"# {name}: sent {sent[name]} lines from its real sample data")
        except Exception as e:  # noqa: BLE001 - one bridge's demo must not stop the others
            click.echo(f"# {name}: demo failed: {type(e).__name__}: {e}")
    from .bus import Sender
    with Sender(relay.endpoints_in[0], spool) as s:
        s.add("demo.localhost.hello 1 %d mtype=gauge output=hello%%20from%%20monbus%%20send"
              % int(time.time()))
    sent["send"] = 1
    total = sum(sent.values())
    printed: dict[str, int] = {}
    counts: dict[str, int] = {}
    got = 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = sub.recv_lines(0.3)
        if lines is None:
            if got >= total:
                break
            continue
        for line in lines:
            src = line.path.split(".", 1)[0]
            counts[src] = counts.get(src, 0) + 1
            if src != "monbus":
                got += 1
            if printed.get(src, 0) < max_print:
                printed[src] = printed.get(src, 0) + 1
                from .line import encode
                click.echo(line_to_json(line) if fmt == "json" else encode(line))
    click.echo("# lines received per source: " +
               ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) +
               f"; lost (sequence gaps): {sub.gaps.gaps}")
    sub.close()
    relay.stop()
    th.join(5)
    if got < total:
        raise click.ClickException(f"only {got} of {total} lines arrived")
