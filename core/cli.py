"""The `monbus` command: one explicit registry of sub-commands, imported lazily.

Only click is imported at start-up; each sub-command's module is imported when it runs, so
`monbus --help` stays fast and a broken optional dependency breaks only its own sub-command.

Configuration, lowest precedence first: the TOML file (`--config`, default
/etc/monbus/monbus.toml if present), environment variables `MONBUS_*`, then flags.
"""
from __future__ import annotations

import importlib
import os
import sys

import click

# name -> (import string, one-line help).  The one place a sub-command is registered.
COMMANDS: dict[str, tuple[str, str]] = {
    "relay": ("monbus.core.commands:relay", "Forward bridges' lines to subscribers (one relay per host)."),
    "send": ("monbus.core.commands:send", "Put lines from stdin or arguments on the bus."),
    "tail": ("monbus.core.commands:tail", "Print matching lines from the bus as they arrive."),
    "keygen": ("monbus.core.commands:keygen", "Make a CURVE certificate pair for a relay or a client."),
    "demo": ("monbus.core.demo:demo", "Start a relay, feed it real sample data, show the stream."),
    "nagios": ("monbus.bridges.nagios.cli:cli", "Nagios perfdata and check states (hooks, perfdata files)."),
    "collectd": ("monbus.bridges.collectd.cli:cli", "collectd network protocol and exec plugin."),
    "sflow": ("monbus.bridges.sflow.cli:cli", "sFlow v5 counter and flow samples."),
    "snmp": ("monbus.bridges.snmp.cli:cli", "SNMP polling (cron or daemon) and traps."),
    "ganglia": ("monbus.bridges.ganglia.cli:cli", "Ganglia gmond/gmetad XML and gmond XDR packets."),
    "carbon": ("monbus.bridges.graphite.carbon:cli", "Replay the bus into carbon or whisper, losing nothing."),
    "graphite": ("monbus.bridges.graphite.cli:cli", "Graphite plaintext listener and render API."),
}

# Sub-commands that a monitoring tool starts for every check result, so start-up time is
# what they cost: (command, sub-command) -> a plain `main(argv)` that needs neither click
# nor the config file.  `monbus nagios hook ...` runs the same code as the click command.
FAST = {
    ("nagios", "hook"): "monbus.bridges.nagios.hook:main",
}

DEFAULT_CONFIG = "/etc/monbus/monbus.toml"
# keys of the config file's [global] table: defaults for the shared options of every command
SHARED_KEYS = ("relay", "connect", "spool", "timeout", "curve_server_key", "curve_secret",
               "log_level")


class ConfigError(click.ClickException):
    pass


def load_config(path: str | None) -> dict:
    """Read the TOML config; return the click default_map.  The keys of its [global] table
    become MONBUS_* environment defaults (never overriding the real environment)."""
    explicit = path is not None
    path = path or os.environ.get("MONBUS_CONFIG") or DEFAULT_CONFIG
    if not os.path.exists(path):
        if explicit:
            raise ConfigError(f"config file {path!r} does not exist")
        return {}
    import tomllib
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"cannot read config {path!r}: {e}") from None

    def norm(d):
        return {k.replace("-", "_"): (norm(v) if isinstance(v, dict) else v) for k, v in d.items()}

    data = norm(data)
    shared = data.pop("global", {})
    if not isinstance(shared, dict):
        raise ConfigError(f"{path}: 'global' must be a table")
    for key, value in shared.items():
        if key not in SHARED_KEYS:
            raise ConfigError(f"{path}: unknown key {key!r} in [global] "
                              f"(shared keys: {', '.join(SHARED_KEYS)})")
        env = "MONBUS_" + key.upper()
        if env not in os.environ:
            os.environ[env] = ",".join(value) if isinstance(value, list) else str(value)
    out = {}
    for key, value in data.items():
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: unknown top-level key {key!r} (put shared options "
                              f"in [global], per-command ones in a [command] table)")
        out[key] = value
    return out


def _unavailable(name: str, err: Exception) -> click.Command:
    msg = f"`monbus {name}` is not available here: {type(err).__name__}: {err}"

    @click.command(name=name, help=msg, context_settings={"ignore_unknown_options": True,
                                                          "allow_extra_args": True})
    def _cmd():
        raise click.ClickException(msg)
    return _cmd


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        entry = COMMANDS.get(name)
        if entry is None:
            return None
        mod, _, attr = entry[0].partition(":")
        try:
            return getattr(importlib.import_module(mod), attr)
        except Exception as e:  # noqa: BLE001 - any import failure disables only this command
            return _unavailable(name, e)

    def format_commands(self, ctx, formatter):
        # from the registry, without importing anything
        rows = [(name, help_) for name, (_, help_) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"],
                                              "max_content_width": 100})
@click.option("--config", type=click.Path(dir_okay=False), default=None,
              help=f"TOML config file [default: {DEFAULT_CONFIG} if present; env MONBUS_CONFIG].")
@click.option("--log-level", envvar="MONBUS_LOG_LEVEL", default="warning", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
              help="Logging threshold for messages on stderr [env MONBUS_LOG_LEVEL].")
@click.version_option("0.1.0", prog_name="monbus")
@click.pass_context
def cli(ctx, config, log_level):
    """monbus: every monitoring tool on one ZeroMQ bus, in one line syntax.

    Lines are Graphite's tagged plaintext plus annotations:
    `path;tag=v value timestamp key=value ...`  (docs/line-syntax.md).
    """
    ctx.default_map = load_config(config)
    import logging
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="monbus %(name)s: %(levelname)s: %(message)s")


def main(argv=None):
    """Console-script entry point: click's own error handling, plus one line for what
    escapes it (a broken pipe, an unreadable file), never a traceback for bad input."""
    args = sys.argv[1:] if argv is None else list(argv)
    fast = FAST.get(tuple(args[:2]))
    if fast is not None:
        mod, _, attr = fast.partition(":")
        return getattr(importlib.import_module(mod), attr)(args[2:])
    try:
        cli.main(args=args, prog_name="monbus", standalone_mode=True)
    except BrokenPipeError:
        try:
            sys.stdout = None
        finally:
            os._exit(0)


if __name__ == "__main__":
    main()
