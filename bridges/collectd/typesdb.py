"""collectd's types.db: the names and kinds of the data sources of every value type.

Format (collectd's types.db(5)): one type per line, `<type> <ds>:<KIND>:<min>:<max>[, ...]`,
`#` starts a comment.  KIND is GAUGE, COUNTER, DERIVE or ABSOLUTE; min/max are numbers or `U`.

The network protocol carries only the kind of each value, not its name, so the names
(`if_octets` -> rx, tx) come from here.  A small built-in table of the most common types keeps
`monbus collectd` usable where no types.db is installed (the demo); a real types.db always wins.
"""
from __future__ import annotations

import os
import re
from typing import NamedTuple

#: the system file of Debian's collectd-core
SYSTEM_TYPESDB = "/usr/share/collectd/types.db"

#: kinds, in the order of their wire codes (network protocol VALUES part)
KINDS = ("counter", "gauge", "derive", "absolute")
_KIND_BY_NAME = {k.upper(): k for k in KINDS}


class DataSource(NamedTuple):
    name: str
    kind: str          # counter | gauge | derive | absolute (the monbus mtype)
    min: float | None
    max: float | None


class TypesDBError(ValueError):
    """A line of a types.db file that does not parse; the message quotes it."""


_TYPE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*\Z")


def _bound(text: str) -> float | None:
    if text == "U":
        return None
    return float(text)


def parse_typesdb(text: str, source: str = "types.db") -> tuple[dict, list[str]]:
    """Parse types.db text -> ({type: (DataSource, ...)}, [error messages]).  Pure."""
    types: dict[str, tuple[DataSource, ...]] = {}
    errors: list[str] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split(None, 1)
        if len(fields) != 2 or not _TYPE_NAME.match(fields[0]):
            errors.append(f"{source}:{lineno}: expected '<type> <ds>:<kind>:<min>:<max>': {raw[:100]!r}")
            continue
        name, spec = fields
        dss = []
        ok = True
        for item in spec.replace(",", " ").split():
            parts = item.split(":")
            kind = _KIND_BY_NAME.get(parts[1].upper()) if len(parts) == 4 else None
            if kind is None:
                ok = False
                break
            try:
                dss.append(DataSource(parts[0], kind, _bound(parts[2]), _bound(parts[3])))
            except ValueError:
                ok = False
                break
        if not ok or not dss:
            errors.append(f"{source}:{lineno}: bad data source in {raw[:100]!r}")
            continue
        types[name] = tuple(dss)
    return types, errors


def _builtin() -> dict:
    """The fallback table: common collectd types (names and kinds), written for monbus."""
    multi = {
        "load": ("shortterm", "midterm", "longterm", "gauge"),
        "if_octets": ("rx", "tx", "derive"), "if_packets": ("rx", "tx", "derive"),
        "if_errors": ("rx", "tx", "derive"), "if_dropped": ("rx", "tx", "derive"),
        "io_octets": ("rx", "tx", "derive"), "io_packets": ("rx", "tx", "derive"),
        "disk_octets": ("read", "write", "derive"), "disk_ops": ("read", "write", "derive"),
        "disk_time": ("read", "write", "derive"), "disk_merged": ("read", "write", "derive"),
        "disk_io_time": ("io_time", "weighted_io_time", "derive"),
        "ps_disk_octets": ("read", "write", "derive"), "ps_disk_ops": ("read", "write", "derive"),
        "ps_cputime": ("user", "syst", "derive"), "ps_pagefaults": ("minflt", "majflt", "derive"),
        "ps_count": ("processes", "threads", "gauge"),
        "vmpage_faults": ("minflt", "majflt", "derive"), "vmpage_io": ("in", "out", "derive"),
        "node_octets": ("rx", "tx", "derive"), "mysql_octets": ("rx", "tx", "derive"),
    }
    out = {name: tuple(DataSource(ds, spec[-1], None, None) for ds in spec[:-1])
           for name, spec in multi.items()}
    single = {
        "gauge": "gauge", "counter": "counter", "derive": "derive", "absolute": "absolute",
        "cpu": "derive", "memory": "gauge", "df_complex": "gauge", "percent": "gauge",
        "percent_bytes": "gauge", "percent_inodes": "gauge", "df_inodes": "gauge",
        "uptime": "gauge", "swap": "gauge", "swap_io": "derive", "users": "gauge",
        "entropy": "gauge", "contextswitch": "derive", "fork_rate": "derive",
        "ps_state": "gauge", "temperature": "gauge", "bytes": "gauge", "count": "gauge",
        "objects": "gauge", "packets": "derive", "requests": "derive", "latency": "gauge",
        "response_time": "gauge", "current_connections": "gauge", "irq": "derive",
        "vmpage_number": "gauge", "vmpage_action": "derive", "pending_operations": "gauge",
        "operations": "derive", "frequency": "gauge", "power": "gauge", "voltage": "gauge",
        "if_multicast": "derive", "tcp_connections": "gauge", "connections": "derive",
        "queue_length": "gauge", "total_requests": "derive", "total_bytes": "derive",
    }
    for name, kind in single.items():
        out[name] = (DataSource("value", kind, None, None),)
    return out


BUILTIN = _builtin()


class TypesDB:
    """All loaded types.db files (later files override earlier ones), plus the built-ins."""

    def __init__(self, paths=(), use_system: bool = True):
        self.types: dict[str, tuple[DataSource, ...]] = dict(BUILTIN)
        self.errors: list[str] = []
        self.loaded: list[str] = []
        files = ([SYSTEM_TYPESDB] if use_system and os.path.exists(SYSTEM_TYPESDB) else [])
        for path in files + list(paths):
            self.load(path)

    def load(self, path: str) -> None:
        """Read one types.db file (raises OSError if it cannot be read)."""
        with open(path, encoding="utf-8", errors="replace") as f:
            types, errors = parse_typesdb(f.read(), path)
        self.types.update(types)
        self.errors.extend(errors)
        self.loaded.append(path)

    def get(self, type_: str):
        """The data sources of a type, or None if unknown."""
        return self.types.get(type_)

    def __contains__(self, type_: str) -> bool:
        return type_ in self.types
