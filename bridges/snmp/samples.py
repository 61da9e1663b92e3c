"""Polled varbinds -> monbus lines (pure: no sockets, no clock, no pysnmp objects).

A varbind value here is a pair `(tag, value)` with `tag` one of TAGS (the SMIv2 type,
RFC 2578 section 7.1, plus the RFC 3416 exceptions) and `value` an int, bytes or tuple;
`pdu.py` and `poller.py` turn pysnmp's objects into this form, so this module (and its
tests) never depend on how the bytes came in.

Paths:
  snmp.<host>.<module>.<object>                       scalars
  snmp.<host>.<module>[.<table>].<instance>.<object>  tables; instance = label column or index
  snmp.<host>.agent.status                            availability of the agent (mtype=state)
"""
from __future__ import annotations

from monbus.core.line import Line, Sanitizer, sanitize

from .modules import Column, Module, Table

TAGS = ("int", "uint", "counter32", "counter64", "ticks", "str", "oid", "ip", "opaque",
        "null", "nosuchobject", "nosuchinstance", "endofmibview")
EXCEPTIONS = frozenset({"null", "nosuchobject", "nosuchinstance", "endofmibview"})
MAX32 = 2 ** 32 - 1
MAX64 = 2 ** 64 - 1

# IF-MIB ifOperStatus values (RFC 2863) -> availability, given ifAdminStatus
_IF_OPER = {1: "up", 2: "down", 3: "testing", 4: "unknown", 5: "dormant", 6: "notPresent",
            7: "lowerLayerDown"}
_IF_ADMIN = {1: "up", 2: "down", 3: "testing"}


def if_state(oper: int, admin: int | None) -> tuple[int, str]:
    """(Nagios code, text) for an interface: down while admin up is CRITICAL, anything
    administratively down is OK (nobody wants an alarm for a port they shut)."""
    text = f"ifOperStatus={_IF_OPER.get(oper, '?')}({oper})"
    if admin is not None:
        text += f" ifAdminStatus={_IF_ADMIN.get(admin, '?')}({admin})"
    if oper in (1, 5):
        return 0, text
    if admin == 2:
        return 0, text
    if oper == 3:
        return 1, text
    if oper in (2, 7):
        return 2, text
    return 3, text


def oid_text(o) -> str:
    """(1, 3, 6) -> '1.3.6'."""
    return ".".join(map(str, o))


def text_of(tag: str, value) -> str:
    """A value as text, the way an annotation or an instance label shows it."""
    if tag == "str" or tag == "opaque":
        b = bytes(value)
        try:
            s = b.decode("utf-8")
        except UnicodeDecodeError:
            return b.hex()
        return s if s.isprintable() else b.hex()
    if tag == "oid":
        return oid_text(value)
    if tag == "ip":
        b = bytes(value)
        return ".".join(str(x) for x in b) if len(b) == 4 else b.hex()
    if tag in EXCEPTIONS:
        return tag
    return str(value)


def number(tag: str, value, col: Column):
    """(value, mtype, max) for a numeric varbind, or None if it is not one."""
    kind = col.kind
    if tag in EXCEPTIONS:
        return None
    if kind == "float":
        if tag not in ("str", "opaque"):
            if isinstance(value, int):
                return float(value) * col.scale, "gauge", None
            return None
        try:
            v = float(bytes(value).decode("ascii").strip())
        except (UnicodeDecodeError, ValueError):
            return None
        if v - v != 0.0:
            return None
        return v * col.scale, "gauge", None
    if not isinstance(value, int) or tag in ("str", "oid", "ip", "opaque"):
        return None
    if kind == "counter" or (kind == "auto" and tag in ("counter32", "counter64")):
        mx = MAX64 if tag == "counter64" else MAX32
        return float(value) * col.scale, "counter", mx
    return float(value) * col.scale, "gauge", None


def _meta(mtype: str, unit: str | None, mx, info: dict) -> dict:
    m = {"mtype": mtype}
    if unit:
        m["unit"] = unit
    if mx is not None:
        m["max"] = str(mx)
    m.update(info)
    return m


class Skipped(dict):
    """Why varbinds did not become lines: reason -> count."""

    def add(self, reason: str, n: int = 1) -> None:
        self[reason] = self.get(reason, 0) + n


def scalar_lines(prefix: str, module: Module, values: dict, now: float,
                 skipped: Skipped) -> list[Line]:
    """Lines for a module's scalars; `values` maps OID tuple -> (tag, value)."""
    info = {}
    for col in module.scalars:
        if col.kind == "info" and col.oid in values:
            tag, v = values[col.oid]
            if tag not in EXCEPTIONS:
                info[col.name.lower()] = text_of(tag, v)
    out = []
    for col in module.scalars:
        if col.kind in ("info", "label"):
            continue
        got = values.get(col.oid)
        if got is None:
            skipped.add("missing")
            continue
        tag, v = got
        if tag in EXCEPTIONS:
            skipped.add(tag)
            continue
        num = number(tag, v, col)
        if num is None:
            skipped.add("not_numeric")
            continue
        value, mtype, mx = num
        out.append(Line(f"{prefix}.{sanitize(col.name)}", value, now,
                        _meta(mtype, col.unit, mx, info)))
    return out


def _instances(table: Table, walked: dict, names: Sanitizer) -> dict:
    """index -> path component, for every index any column of the table has."""
    indexes = {}
    for col_oid in table.walked():
        for idx in walked.get(col_oid, ()):
            indexes.setdefault(idx, None)
    out = {}
    for idx in sorted(indexes):
        label = None
        for lab in table.labels:
            got = walked.get(lab, {}).get(idx)
            if got is not None and got[0] not in EXCEPTIONS:
                t = text_of(*got).strip()
                if t:
                    label = t
                    break
        out[idx] = names(label) if label is not None else names(oid_text(idx))
    return out


def table_lines(prefix: str, table: Table, walked: dict, now: float, names: Sanitizer,
                skipped: Skipped) -> list[Line]:
    """Lines for one table; `walked` maps column OID -> {index tuple: (tag, value)}."""
    inst = _instances(table, walked, names)
    base = f"{prefix}.{sanitize(table.name)}" if table.name else prefix
    out = []
    for col in table.columns:
        if col.kind in ("label", "info"):
            continue
        rows = walked.get(col.oid, {})
        for idx, (tag, v) in rows.items():
            series = f"{base}.{inst[idx]}.{sanitize(col.name)}"
            if tag in EXCEPTIONS:
                skipped.add(tag)
                continue
            if col.kind == "ifstatus":
                if not isinstance(v, int) or tag in ("str", "oid", "ip", "opaque"):
                    skipped.add("not_numeric")
                    continue
                admin = walked.get(col.oid[:-1] + (7,), {}).get(idx)
                admin_v = admin[1] if admin and isinstance(admin[1], int) else None
                code, text = if_state(v, admin_v)
                out.append(Line(series, code, now, {"mtype": "state", "output": text}))
                continue
            num = number(tag, v, col)
            if num is None:
                skipped.add("not_numeric")
                continue
            value, mtype, mx = num
            if col.scale_by is not None:
                by = walked.get(col.scale_by, {}).get(idx)
                if by is None or not isinstance(by[1], int) or by[0] in ("str", "oid", "ip"):
                    skipped.add("no_scale_by")
                    continue
                value *= by[1]
            out.append(Line(series, value, now, _meta(mtype, col.unit, mx, {})))
    return out


def module_lines(host: str, module: Module, scalars: dict, walked: dict, now: float,
                 names: Sanitizer, skipped: Skipped) -> list[Line]:
    """All lines of one module for one target (host is already a path component)."""
    prefix = f"snmp.{host}.{sanitize(module.name)}"
    out = scalar_lines(prefix, module, scalars, now, skipped) if module.scalars else []
    for table in module.tables:
        out.extend(table_lines(prefix, table, walked, now, names, skipped))
    return out


def status_line(host: str, ok: bool, text: str, now: float) -> Line:
    """The agent's availability: 0 UP (answered), 1 DOWN (timeout, refused, bad auth)."""
    return Line(f"snmp.{host}.agent.status", 0 if ok else 1, now,
                {"mtype": "state", "output": text})
