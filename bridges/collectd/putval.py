"""collectd's text protocol: PUTVAL / PUTNOTIF lines (exec plugin, unixsock) and the
notification text the NotificationExec plugin writes, both ways.

    PUTVAL <identifier> [interval=<seconds>] <time>:<value>[:<value>...] [<time>:...]
    PUTNOTIF severity=failure|warning|okay time=<epoch> [host=..] [plugin=..]
             [plugin_instance=..] [type=..] [type_instance=..] message=<text>

The identifier is `host/plugin[-plugin_instance]/type[-type_instance]` (the first `-` of
the plugin and type parts separates the instance; host may not contain `/`).  A field may be
double-quoted, with backslash escapes inside quotes (collectd's parse_string).  The time is
seconds since the epoch or `N` (now); a value is a number or `U` (unknown).  The number and
kinds of the values come from types.db: GAUGE values are floats, the others integers.

NotificationExec (collectd-exec(5)) writes `Key: value` header lines (Severity, Time, Host,
Plugin, PluginInstance, Type, TypeInstance, and meta data), an empty line, then the message.

Everything here is pure: text in, records or text out; `now` is passed in.
"""
from __future__ import annotations

import hashlib
import math
import re

from .network import Notification, ValueList
from .typesdb import KINDS, TypesDB

_SEVERITY_BY_NAME = {"failure": 1, "warning": 2, "okay": 4}
_NAME_MAX = 127   # DATA_MAX_NAME_LEN without the NUL


class TextError(ValueError):
    """A PUTVAL/PUTNOTIF/notification text that does not parse; quotes the text."""

    def __init__(self, problem: str, text: str):
        self.problem = problem
        shown = text if len(text) <= 160 else text[:157] + "..."
        super().__init__(f"{problem}: {shown!r}")


def split_fields(text: str) -> list[str]:
    """Split a command line on white space, honouring "quoted strings" with backslash escapes
    (also as `key="quoted value"`).  Raises ValueError on an unterminated quote."""
    fields = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t":
            i += 1
        if i >= n:
            break
        buf = []
        while i < n and text[i] not in " \t":
            c = text[i]
            if c == '"':
                i += 1
                while True:
                    if i >= n:
                        raise ValueError("unterminated quoted string")
                    c = text[i]
                    if c == "\\" and i + 1 < n:
                        buf.append(text[i + 1])
                        i += 2
                        continue
                    if c == '"':
                        i += 1
                        break
                    buf.append(c)
                    i += 1
            else:
                buf.append(c)
                i += 1
        fields.append("".join(buf))
    return fields


def parse_identifier(ident: str) -> tuple[str, str, str, str, str]:
    """`host/plugin[-pi]/type[-ti]` -> (host, plugin, pi, type, ti).  Raises ValueError."""
    parts = ident.split("/")
    if len(parts) != 3:
        raise ValueError(f"identifier needs host/plugin/type, got {len(parts)} part(s)")
    host, plugin, type_ = parts
    plugin, _, pinst = plugin.partition("-")
    type_, _, tinst = type_.partition("-")
    if not host or not plugin or not type_:
        raise ValueError("empty host, plugin or type in identifier")
    for f in (host, plugin, pinst, type_, tinst):
        if len(f.encode("utf-8")) > _NAME_MAX:
            raise ValueError(f"identifier field longer than {_NAME_MAX} bytes")
    return host, plugin, pinst, type_, tinst


def _int_value(text: str, kind: str) -> int:
    v = int(text, 10)
    if kind in ("counter", "absolute") and v < 0:
        raise ValueError(f"negative {kind} value {text!r}")
    return v


def parse_putval(text: str, typesdb: TypesDB, now: float) -> list[ValueList]:
    """One PUTVAL line -> its value lists (one per `time:values` field).  Raises TextError.

    Unknown values (`U`) are kept as NaN gauges (LineMaker drops and counts them) or, for
    integer kinds, make that value list fail: the protocol has no "unknown" integer.
    """
    try:
        fields = split_fields(text.strip())
    except ValueError as e:
        raise TextError(str(e), text) from None
    if len(fields) < 3 or fields[0].upper() != "PUTVAL":
        raise TextError("expected 'PUTVAL <identifier> [interval=N] <time>:<value>...'", text)
    try:
        host, plugin, pinst, type_, tinst = parse_identifier(fields[1])
    except ValueError as e:
        raise TextError(str(e), text) from None
    dss = typesdb.get(type_)
    if dss is None:
        raise TextError(f"type {type_!r} is not in types.db (add yours with --typesdb)", text)
    interval = 0.0
    out = []
    kinds = bytes(KINDS.index(ds.kind) for ds in dss)
    for field in fields[2:]:
        key, eq, val = field.partition("=")
        if eq and ":" not in key:
            if key == "interval":
                try:
                    interval = float(val)
                except ValueError:
                    raise TextError(f"bad interval {val!r}", text) from None
                if not interval > 0 or math.isinf(interval):
                    raise TextError(f"bad interval {val!r}", text)
                continue
            raise TextError(f"unknown option {key!r}", text)
        if eq and key.startswith("meta:"):
            continue  # meta data has no place in a line; collectd 5 accepts and stores it
        parts = field.split(":")
        if len(parts) != len(dss) + 1:
            raise TextError(f"type {type_!r} has {len(dss)} data source(s) but "
                            f"{field[:60]!r} gives {len(parts) - 1} value(s)", text)
        try:
            t = now if parts[0] == "N" else float(parts[0])
        except ValueError:
            raise TextError(f"bad time {parts[0]!r}", text) from None
        if not t > 0 or math.isinf(t):
            raise TextError(f"bad time {parts[0]!r}", text)
        values = []
        for ds, v in zip(dss, parts[1:]):
            try:
                if ds.kind == "gauge":
                    values.append(math.nan if v == "U" else float(v))
                else:
                    values.append(_int_value(v, ds.kind))
            except ValueError:
                raise TextError(f"bad {ds.kind} value {v!r} for {ds.name}", text) from None
        out.append(ValueList(host, plugin, pinst, type_, tinst, t, interval, kinds,
                             tuple(values)))
    if not out:
        raise TextError("no values", text)
    return out


_NOTIF_KEYS = {"host", "plugin", "plugin_instance", "type", "type_instance", "severity",
               "time", "message"}


def parse_putnotif(text: str, now: float) -> Notification:
    """One PUTNOTIF line -> a Notification.  Raises TextError."""
    try:
        fields = split_fields(text.strip())
    except ValueError as e:
        raise TextError(str(e), text) from None
    if not fields or fields[0].upper() != "PUTNOTIF":
        raise TextError("expected 'PUTNOTIF key=value ...'", text)
    opts = {}
    for field in fields[1:]:
        key, eq, val = field.partition("=")
        if not eq:
            raise TextError(f"option without '=': {field[:40]!r}", text)
        if key not in _NOTIF_KEYS:
            if key.startswith("meta:"):
                continue
            raise TextError(f"unknown option {key!r}", text)
        opts[key] = val
    sev = _SEVERITY_BY_NAME.get(opts.get("severity", "").lower())
    if sev is None:
        raise TextError("option 'severity' missing or not failure/warning/okay", text)
    try:
        t = now if opts.get("time", "N") == "N" else float(opts["time"])
    except ValueError:
        raise TextError(f"bad time {opts['time']!r}", text) from None
    if not opts.get("message"):
        raise TextError("no message", text)
    return Notification(opts.get("host", ""), opts.get("plugin", ""),
                        opts.get("plugin_instance", ""), opts.get("type", ""),
                        opts.get("type_instance", ""), t, sev, opts["message"])


_HEADER_KEYS = {"host": "host", "plugin": "plugin", "plugininstance": "plugin_instance",
                "type": "type", "typeinstance": "type_instance"}


def parse_notification_text(text: str) -> Notification:
    """What NotificationExec writes on a program's stdin -> a Notification.  Raises TextError."""
    head, sep, body = text.replace("\r\n", "\n").partition("\n\n")
    if not sep:
        head, body = text, ""
    fields = {"host": "", "plugin": "", "plugin_instance": "", "type": "", "type_instance": ""}
    severity = None
    t = None
    for raw in head.split("\n"):
        if not raw.strip():
            continue
        key, colon, val = raw.partition(":")
        if not colon:
            raise TextError("header line without ':'", raw)
        key = key.strip().lower()
        val = val.strip()
        if key == "severity":
            severity = _SEVERITY_BY_NAME.get(val.lower())
            if severity is None:
                raise TextError("unknown severity", raw)
        elif key == "time":
            try:
                t = float(val)
            except ValueError:
                raise TextError("bad time", raw) from None
        elif key in _HEADER_KEYS:
            fields[_HEADER_KEYS[key]] = val
        # anything else is notification meta data: not part of a line
    if severity is None:
        raise TextError("no Severity header", text)
    if t is None or not t > 0:
        raise TextError("no Time header", text)
    message = body.strip("\n")
    if not message:
        raise TextError("no message after the headers", text)
    return Notification(fields["host"], fields["plugin"], fields["plugin_instance"],
                        fields["type"], fields["type_instance"], t, severity, message)


# --- the other way: bus lines -> PUTVAL / PUTNOTIF ------------------------------------------
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-;=:@+%#,]")
#: bus mtype -> the collectd type (a single-value type of the standard types.db)
MTYPE_TYPES = {"gauge": "gauge", "counter": "counter", "derive": "derive",
               "absolute": "absolute"}


def _field(text: str) -> str:
    """A name made safe for an identifier field (no '/', quotes, spaces; <= 127 bytes)."""
    s = _UNSAFE.sub("_", text)
    if len(s) > _NAME_MAX:
        digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]
        s = f"{s[:_NAME_MAX - 9]}_{digest}"
    return s


def _number(v: float) -> str:
    v = float(v)
    return str(int(v)) if v.is_integer() and abs(v) < 1e16 else repr(v)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class PutvalFormatter:
    """Bus lines -> PUTVAL / PUTNOTIF commands for collectd's exec plugin.

    The path `<source>.<host>.<a>.<b>` becomes the identifier `<host>/<source>/<type>-<a>.<b>`:
    plugin `<source>`, type from the line's mtype (gauge when it has none; counter/derive/absolute
    values that are not integers go out as gauge), type instance `<a>.<b>` plus any tags.
    `host` overrides the line's host (COLLECTD_HOSTNAME), `interval` is used when a line has
    no interval annotation (COLLECTD_INTERVAL).
    """

    def __init__(self, host: str | None = None, interval: float | None = None):
        self.host = _field(host) if host else None
        self.interval = interval
        self.counts: dict[str, int] = {}

    def _ident(self, series: str, type_: str) -> str:
        path, _, tags = series.partition(";")
        parts = path.split(".")
        host = self.host or _field(parts[1])
        rest = ".".join(parts[2:])
        if tags:
            rest = f"{rest};{tags}" if rest else tags
        tinst = _field(rest) if rest else ""
        return f"{host}/{_field(parts[0]).replace('-', '_')}/{type_}" + (f"-{tinst}" if tinst else "")

    def format(self, line) -> str | None:
        """One Line -> one command (without newline), or None if it has no collectd form."""
        meta = line.meta or {}
        mtype = meta.get("mtype", "gauge")
        if mtype == "state":
            return self._putnotif(line, meta)
        type_ = MTYPE_TYPES.get(mtype, "gauge")
        v = float(line.value)
        if type_ != "gauge" and not (v.is_integer() and (v >= 0 or type_ == "derive")):
            self.counts["as_gauge"] = self.counts.get("as_gauge", 0) + 1
            type_ = "gauge"
        interval = meta.get("interval")
        try:
            iv = float(interval) if interval is not None else self.interval
        except ValueError:
            iv = self.interval
        opt = f" interval={_number(iv)}" if iv and iv > 0 and not math.isinf(iv) else ""
        value = _number(v) if type_ == "gauge" else str(int(v))
        return (f"PUTVAL {_quote(self._ident(line.series, type_))}{opt} "
                f"{_number(float(line.timestamp))}:{value}")

    def _putnotif(self, line, meta) -> str:
        v = float(line.value)
        code = int(v) if v.is_integer() else 3
        severity = {0: "okay", 1: "warning"}.get(code, "failure")
        path, _, tags = line.series.partition(";")
        parts = path.split(".")
        host = self.host or _field(parts[1])
        rest = ".".join(parts[2:])
        if tags:
            rest = f"{rest};{tags}" if rest else tags
        message = meta.get("output") or f"state {code}"
        fields = [f"severity={severity}", f"time={_number(float(line.timestamp))}", f"host={host}",
                  f"plugin={_field(parts[0]).replace('-', '_')}"]
        if rest:
            fields.append(f"type_instance={_quote(_field(rest))}")
        fields.append(f"message={_quote(message.replace(chr(10), ' '))}")
        return "PUTNOTIF " + " ".join(fields)

