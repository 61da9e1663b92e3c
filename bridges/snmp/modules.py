"""What to poll: named modules of scalars and tables, with numeric OIDs.

No MIB compiler runs at run time: every object is named here by its numeric OID and the
name it has in its MIB (IF-MIB, HOST-RESOURCES-MIB, UCD-SNMP-MIB, RFC 1213 MIB-2), and that
name becomes the last path component.  Users add modules of their own in the targets file
(`[module.NAME]`, see contrib/snmp/targets.toml); `parse_module` reads them.

Column kinds:
  auto     the wire type decides: Counter32/64 -> counter, Gauge32/Integer/TimeTicks -> gauge
  gauge    always a gauge (a Counter a device misuses as a level)
  counter  always a counter
  float    an OCTET STRING holding a decimal number (UCD laLoad "0.42")
  label    text naming a table row (ifName); never a line of its own
  info     text added as an annotation to the module's lines (sysName)
  ifstatus IF-MIB ifOperStatus, published as an availability line (mtype=state)
"""
from __future__ import annotations

from dataclasses import dataclass

KINDS = ("auto", "gauge", "counter", "float", "label", "info", "ifstatus")

SYS_UPTIME = (1, 3, 6, 1, 2, 1, 1, 3, 0)


class ModuleError(ValueError):
    """A module definition in the config that cannot work; the message says which."""


@dataclass(frozen=True)
class Column:
    """One object: a scalar (its full OID, instance .0 included) or a table column."""
    name: str
    oid: tuple
    kind: str = "auto"
    scale: float = 1.0
    unit: str | None = None
    scale_by: tuple | None = None  # table columns: multiply by this column's value (same row)


@dataclass(frozen=True)
class Table:
    """A conceptual table: columns joined by their index (they may come from several MIB
    tables sharing one index, as ifTable and ifXTable do).  `labels` are the columns that
    name a row, in order of preference; the index itself is the last resort."""
    name: str
    columns: tuple
    labels: tuple = ()

    def walked(self) -> tuple:
        """Every column OID that must be walked (data, labels, scale_by), de-duplicated."""
        seen = []
        for c in self.columns:
            for oid in (c.oid, c.scale_by):
                if oid is not None and oid not in seen:
                    seen.append(oid)
        for oid in self.labels:
            if oid not in seen:
                seen.append(oid)
        return tuple(seen)


@dataclass(frozen=True)
class Module:
    name: str
    scalars: tuple = ()
    tables: tuple = ()
    interval: float | None = None


def oid(text: str) -> tuple:
    """'1.3.6.1.2.1.1.3.0' or '.1.3.6...' -> (1, 3, 6, ...).  Raises ModuleError."""
    t = str(text).strip().lstrip(".")
    try:
        parts = tuple(int(x) for x in t.split("."))
    except ValueError:
        raise ModuleError(f"not a numeric OID: {text!r}") from None
    if len(parts) < 2 or any(p < 0 or p > 0xFFFFFFFF for p in parts):
        raise ModuleError(f"not a valid OID: {text!r}")
    return parts


def _cols(prefix: str, spec: str, **kw) -> tuple:
    """'2:ifDescr:label 5:ifSpeed ...' under `prefix` -> Columns."""
    out = []
    for item in spec.split():
        sub, name, *rest = item.split(":")
        kind = rest[0] if rest else "auto"
        out.append(Column(name, oid(f"{prefix}.{sub}"), kind, **kw))
    return tuple(out)


_IF = "1.3.6.1.2.1.2.2.1"        # IF-MIB ifEntry
_IFX = "1.3.6.1.2.1.31.1.1.1"    # IF-MIB ifXEntry
_INTERFACES = Table(
    name="",
    columns=(
        _cols(_IF, "5:ifSpeed 7:ifAdminStatus 8:ifOperStatus:ifstatus 4:ifMtu")
        + _cols(_IF, "10:ifInOctets 16:ifOutOctets", unit="B")
        + _cols(_IF, "11:ifInUcastPkts 13:ifInDiscards 14:ifInErrors 15:ifInUnknownProtos "
                     "17:ifOutUcastPkts 19:ifOutDiscards 20:ifOutErrors")
        + _cols(_IFX, "6:ifHCInOctets 10:ifHCOutOctets", unit="B")
        + _cols(_IFX, "7:ifHCInUcastPkts 8:ifHCInMulticastPkts 9:ifHCInBroadcastPkts "
                      "11:ifHCOutUcastPkts 12:ifHCOutMulticastPkts 13:ifHCOutBroadcastPkts")
        + (Column("ifHighSpeed", oid(f"{_IFX}.15"), unit="Mbit/s"),)
    ),
    # ifName, falling back to ifDescr, then the index (IF-MIB recommends ifName as the
    # stable, short name; ifDescr is often a long vendor string)
    labels=(oid(f"{_IFX}.1"), oid(f"{_IF}.2")),
)
# ifSpeed is bit/s and saturates at 4294967295 (ifHighSpeed in Mbit/s is the fix)
_INTERFACES = Table(_INTERFACES.name, tuple(
    Column(c.name, c.oid, c.kind, c.scale, "bit/s") if c.name == "ifSpeed" else c
    for c in _INTERFACES.columns), _INTERFACES.labels)

_HR_STORAGE = "1.3.6.1.2.1.25.2.3.1"
_UCD = "1.3.6.1.4.1.2021"

BUILTIN: dict[str, Module] = {
    "system": Module("system", scalars=(
        Column("sysUpTime", SYS_UPTIME, unit="s", scale=0.01),   # TimeTicks: 1/100 s
        Column("sysName", oid("1.3.6.1.2.1.1.5.0"), "info"),
    )),
    "interfaces": Module("interfaces", tables=(_INTERFACES,)),
    "host-resources": Module("host-resources", scalars=(
        Column("hrSystemNumUsers", oid("1.3.6.1.2.1.25.1.5.0")),
        Column("hrSystemProcesses", oid("1.3.6.1.2.1.25.1.6.0")),
    ), tables=(
        # hrStorageSize/Used are in hrStorageAllocationUnits; published in bytes
        Table("storage", (
            Column("size", oid(f"{_HR_STORAGE}.5"), "gauge", unit="B",
                   scale_by=oid(f"{_HR_STORAGE}.4")),
            Column("used", oid(f"{_HR_STORAGE}.6"), "gauge", unit="B",
                   scale_by=oid(f"{_HR_STORAGE}.4")),
        ), labels=(oid(f"{_HR_STORAGE}.3"),)),
        Table("processor", (
            Column("hrProcessorLoad", oid("1.3.6.1.2.1.25.3.3.1.2"), "gauge", unit="%"),
        )),
    )),
    "ucd": Module("ucd", scalars=(
        # memory (UCD-SNMP-MIB memory group, kB -> bytes)
        _cols(f"{_UCD}.4", "3.0:memTotalSwap 4.0:memAvailSwap 5.0:memTotalReal "
                           "6.0:memAvailReal 11.0:memTotalFree 13.0:memShared "
                           "14.0:memBuffer 15.0:memCached", scale=1024.0, unit="B")
        # raw CPU and system counters (systemStats); ticks of the agent's clock
        + _cols(f"{_UCD}.11", "50.0:ssCpuRawUser 51.0:ssCpuRawNice 52.0:ssCpuRawSystem "
                              "53.0:ssCpuRawIdle 54.0:ssCpuRawWait 55.0:ssCpuRawKernel "
                              "56.0:ssCpuRawInterrupt 61.0:ssCpuRawSoftIRQ "
                              "64.0:ssCpuRawSteal 59.0:ssRawInterrupts 60.0:ssRawContexts "
                              "57.0:ssIORawSent 58.0:ssIORawReceived 62.0:ssRawSwapIn "
                              "63.0:ssRawSwapOut")
    ), tables=(
        # laLoad is an OCTET STRING such as "0.42"; laNames are Load-1/Load-5/Load-15
        Table("load", (Column("laLoad", oid(f"{_UCD}.10.1.3"), "float"),),
              labels=(oid(f"{_UCD}.10.1.2"),)),
    )),
    "ip": Module("ip", scalars=_cols(
        "1.3.6.1.2.1.4", "3.0:ipInReceives 4.0:ipInHdrErrors 5.0:ipInAddrErrors "
        "6.0:ipForwDatagrams 7.0:ipInUnknownProtos 8.0:ipInDiscards 9.0:ipInDelivers "
        "10.0:ipOutRequests 11.0:ipOutDiscards 12.0:ipOutNoRoutes 14.0:ipReasmReqds "
        "15.0:ipReasmOKs 16.0:ipReasmFails 17.0:ipFragOKs 18.0:ipFragFails 19.0:ipFragCreates")),
    "tcp": Module("tcp", scalars=_cols(
        "1.3.6.1.2.1.6", "5.0:tcpActiveOpens 6.0:tcpPassiveOpens 7.0:tcpAttemptFails "
        "8.0:tcpEstabResets 9.0:tcpCurrEstab 10.0:tcpInSegs 11.0:tcpOutSegs "
        "12.0:tcpRetransSegs 14.0:tcpInErrs 15.0:tcpOutRsts")),
    "udp": Module("udp", scalars=_cols(
        "1.3.6.1.2.1.7", "1.0:udpInDatagrams 2.0:udpNoPorts 3.0:udpInErrors "
        "4.0:udpOutDatagrams")),
}
#: convenience alias: every MIB-2 protocol counter group
ALIASES = {"mib2": ("ip", "tcp", "udp"), "ucd-snmp": ("ucd",)}


def _column(spec: dict, where: str, table: bool) -> Column:
    if not isinstance(spec, dict):
        raise ModuleError(f"{where}: expected a table like {{name=..., oid=...}}, got {spec!r}")
    unknown = set(spec) - {"name", "oid", "kind", "type", "scale", "unit", "scale_by"}
    if unknown:
        raise ModuleError(f"{where}: unknown key(s) {sorted(unknown)}")
    name = spec.get("name")
    if not name or not isinstance(name, str):
        raise ModuleError(f"{where}: every column needs a name")
    if "oid" not in spec:
        raise ModuleError(f"{where}.{name}: missing oid")
    kind = spec.get("kind", spec.get("type", "auto"))
    if kind not in KINDS:
        raise ModuleError(f"{where}.{name}: kind {kind!r} is not one of {', '.join(KINDS)}")
    try:
        scale = float(spec.get("scale", 1.0))
    except (TypeError, ValueError):
        raise ModuleError(f"{where}.{name}: scale must be a number") from None
    scale_by = spec.get("scale_by")
    if scale_by is not None and not table:
        raise ModuleError(f"{where}.{name}: scale_by only works in tables")
    return Column(name, oid(spec["oid"]), kind, scale, spec.get("unit"),
                  oid(scale_by) if scale_by is not None else None)


def parse_module(name: str, spec: dict) -> Module:
    """A user module from the targets file: `scalars = [...]`, `tables = [...]`."""
    where = f"module {name!r}"
    if not isinstance(spec, dict):
        raise ModuleError(f"{where}: expected a table")
    unknown = set(spec) - {"scalars", "tables", "interval"}
    if unknown:
        raise ModuleError(f"{where}: unknown key(s) {sorted(unknown)} "
                          f"(expected scalars, tables, interval)")
    scalars = tuple(_column(c, f"{where} scalar", False) for c in spec.get("scalars", ()))
    tables = []
    for i, t in enumerate(spec.get("tables", ())):
        if not isinstance(t, dict):
            raise ModuleError(f"{where} table {i}: expected a table")
        bad = set(t) - {"name", "columns", "label", "labels", "index"}
        if bad:
            raise ModuleError(f"{where} table {i}: unknown key(s) {sorted(bad)}")
        labels = t.get("labels", t.get("label", ()))
        if isinstance(labels, str):
            labels = [labels]
        cols = tuple(_column(c, f"{where} table {t.get('name', i)}", True)
                     for c in t.get("columns", ()))
        if not cols:
            raise ModuleError(f"{where} table {t.get('name', i)}: no columns")
        tables.append(Table(str(t.get("name", "")), cols, tuple(oid(x) for x in labels)))
    if not scalars and not tables:
        raise ModuleError(f"{where}: defines no scalars and no tables")
    interval = spec.get("interval")
    return Module(name, scalars, tuple(tables), float(interval) if interval else None)


def resolve(names, user: dict | None = None) -> list[Module]:
    """Module names (built-in, aliases, or the user's) -> Modules.  Raises ModuleError."""
    user = user or {}
    out = []
    for n in names:
        for m in ALIASES.get(n, (n,)):
            mod = user.get(m) or BUILTIN.get(m)
            if mod is None:
                known = sorted(set(BUILTIN) | set(ALIASES) | set(user))
                raise ModuleError(f"unknown module {m!r} (known: {', '.join(known)})")
            if mod not in out:
                out.append(mod)
    return out
