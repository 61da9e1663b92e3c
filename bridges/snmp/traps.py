"""SNMP notifications (v1 Trap, v2c/v3 SNMPv2-Trap and Inform) -> monbus lines.

Every notification is handled in its SNMPv2 form (RFC 3416 section 4.2.6: sysUpTime.0,
snmpTrapOID.0, then the varbinds); SNMPv1 traps are converted the RFC 3584 section 3.1
way (snmpTrapOID = 1.3.6.1.6.3.1.1.5.<generic+1>, or <enterprise>.0.<specific> for
enterpriseSpecific, plus snmpTrapAddress.0 and snmpTrapEnterprise.0), which pysnmp does.

  snmp.<agent>.trap.<name>   1  mtype=gauge version=v2c trap_oid=... <varbind>=<value>...
  snmp.<agent>.interfaces.<if>.ifOperStatus  0|2  mtype=state   (linkUp / linkDown)

`trap_lines` and `decode_packet` are pure; `TrapReceiver` is the pysnmp engine around them.
"""
from __future__ import annotations

from monbus.core.line import Line, sanitize

from .samples import EXCEPTIONS, if_state, oid_text, text_of

SNMP_TRAP_OID = (1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0)
SYS_UPTIME = (1, 3, 6, 1, 2, 1, 1, 3, 0)
GENERIC = {(1, 3, 6, 1, 6, 3, 1, 1, 5, i + 1): n for i, n in enumerate(
    ("coldStart", "warmStart", "linkDown", "linkUp", "authenticationFailure",
     "egpNeighborLoss"))}
LINK_DOWN = (1, 3, 6, 1, 6, 3, 1, 1, 5, 3)
LINK_UP = (1, 3, 6, 1, 6, 3, 1, 1, 5, 4)

_IF = (1, 3, 6, 1, 2, 1, 2, 2, 1)
_IFX = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1)
# well-known objects in notifications -> annotation names (column -> name, index dropped)
KNOWN = {
    _IF + (1,): "ifindex", _IF + (2,): "ifdescr", _IF + (3,): "iftype",
    _IF + (7,): "ifadminstatus", _IF + (8,): "ifoperstatus", _IFX + (1,): "ifname",
    _IFX + (18,): "ifalias",
    (1, 3, 6, 1, 2, 1, 1, 5): "sysname", (1, 3, 6, 1, 2, 1, 1, 1): "sysdescr",
    (1, 3, 6, 1, 6, 3, 18, 1, 3): "snmptrapaddress",
    (1, 3, 6, 1, 6, 3, 18, 1, 4): "snmptrapcommunity",
    (1, 3, 6, 1, 6, 3, 1, 1, 4, 3): "snmptrapenterprise",
}
# annotation keys monbus itself uses: a varbind never overwrites them
_RESERVED = {"mtype", "unit", "warn", "crit", "min", "max", "interval", "output", "version",
             "trap_oid", "uptime", "user"}
MAX_OUTPUT = 1000


class TrapError(ValueError):
    """A datagram that is not a usable notification; the message quotes it (hex)."""

    def __init__(self, problem: str, data: bytes = b""):
        h = bytes(data[:48]).hex()
        super().__init__(f"{problem}: {h}{'...' if len(data) > 48 else ''}"
                         f" ({len(data)} bytes)")


def _key(o: tuple, used: dict) -> tuple[str, str]:
    """(annotation key, printable name) for a varbind OID."""
    for n in range(len(o), 1, -1):
        name = KNOWN.get(o[:n])
        if name is not None:
            idx = o[n:]
            label = name + ("." + oid_text(idx) if idx and idx != (0,) else "")
            key = name if name not in used and name not in _RESERVED else \
                f"{name}_{'_'.join(map(str, idx)) or 'x'}"
            return key, label
    return "oid_" + "_".join(map(str, o)), oid_text(o)


def trap_name(trap_oid: tuple) -> str:
    """coldStart ... egpNeighborLoss for the generic traps, else the OID with '_'."""
    return GENERIC.get(trap_oid) or "_".join(map(str, trap_oid))


def trap_lines(agent: str, version: str, varbinds: list, now: float,
               user: str | None = None) -> list[Line]:
    """Lines for one notification in SNMPv2 form; `agent` is already a path component.
    Raises TrapError if snmpTrapOID.0 is missing (RFC 3416 requires it second)."""
    trap_oid = None
    uptime = None
    rest = []
    for o, (tag, v) in varbinds:
        if o == SNMP_TRAP_OID and tag == "oid":
            trap_oid = v
        elif o == SYS_UPTIME and tag == "ticks":
            uptime = v
        else:
            rest.append((o, tag, v))
    if trap_oid is None:
        raise TrapError("notification without snmpTrapOID.0")
    meta = {"mtype": "gauge", "version": version, "trap_oid": oid_text(trap_oid)}
    if uptime is not None:
        meta["uptime"] = f"{uptime / 100:.2f}"
    if user:
        meta["user"] = user
    name = trap_name(trap_oid)
    words = [f"{name} from {agent}"]
    by_column = {}
    for o, tag, v in rest:
        key, label = _key(o, meta)
        text = text_of(tag, v)
        meta[key] = text
        words.append(f"{label}={text}")
        for col in (_IF + (2,), _IF + (7,), _IF + (8,), _IFX + (1,), _IF + (1,)):
            if o[:len(col)] == col and tag not in EXCEPTIONS:
                by_column[col] = (o[len(col):], v, text)
    output = " ".join(words)
    if len(output) > MAX_OUTPUT:
        output = output[:MAX_OUTPUT - 3] + "..."
    meta["output"] = output
    out = [Line(f"snmp.{agent}.trap.{sanitize(name)}", 1, now, meta)]
    if trap_oid in (LINK_UP, LINK_DOWN):
        # the interface: ifName, else ifDescr, else the index (ifIndex value or suffix)
        inst = None
        for col in (_IFX + (1,), _IF + (2,)):
            if col in by_column and by_column[col][2]:
                inst = by_column[col][2]
                break
        if inst is None:
            for col in (_IF + (1,), _IF + (8,), _IF + (7,)):
                if col in by_column:
                    idx = by_column[col][0]
                    inst = str(by_column[col][1]) if col == _IF + (1,) else oid_text(idx)
                    break
        if inst is not None:
            oper = by_column.get(_IF + (8,))
            admin = by_column.get(_IF + (7,))
            oper_v = oper[1] if oper and isinstance(oper[1], int) else \
                (1 if trap_oid == LINK_UP else 2)
            admin_v = admin[1] if admin and isinstance(admin[1], int) else None
            code, text = if_state(oper_v, admin_v)
            out.append(Line(f"snmp.{agent}.interfaces.{sanitize(inst)}.ifOperStatus", code,
                            now, {"mtype": "state",
                                  "output": f"{trap_name(trap_oid)} trap: {text}"}))
    return out


_PDU_NAMES = {0: "get", 1: "getnext", 2: "response", 3: "set", 4: "trap", 5: "getbulk",
              6: "inform", 7: "trap", 8: "report"}


def decode_message(data: bytes) -> tuple[str, str, str, list]:
    """(version, community, PDU type, varbinds) of any v1/v2c message; v1 Traps come back
    in their SNMPv2 form.  PDU type is get/getnext/response/set/trap/getbulk/inform/report.

    Pure (pyasn1 BER decoding through pysnmp's protocol API).  Raises TrapError for
    garbage, truncated BER, trailing bytes and SNMPv3 (which needs the engine's USM).
    """
    from pyasn1.codec.ber import decoder
    from pysnmp.proto import api
    from pysnmp.proto.api import v2c
    from pysnmp.proto.proxy import rfc2576

    from .pysnmp_glue import neutral
    try:
        ver = int(api.decodeMessageVersion(bytes(data)))
    except Exception as e:  # noqa: BLE001 - pyasn1 raises assorted errors on garbage
        raise TrapError(f"not an SNMP message ({type(e).__name__})", data) from None
    if ver not in api.PROTOCOL_MODULES:
        raise TrapError(f"SNMP version field {ver} is not v1/v2c", data)
    pmod = api.PROTOCOL_MODULES[ver]
    try:
        msg, rest = decoder.decode(bytes(data), asn1Spec=pmod.Message())
        community = bytes(pmod.apiMessage.get_community(msg)).decode("utf-8", "replace")
        pdu = pmod.apiMessage.get_pdu(msg)
        kind = _PDU_NAMES.get(pdu.tagSet[0][2] if pdu.tagSet else -1, "?")
        if ver == 0 and kind == "trap":
            pdu = rfc2576.v1_to_v2(pdu, snmpTrapCommunity=community)
        vbs = [(tuple(o), neutral(v)) for o, v in v2c.apiPDU.get_varbinds(pdu)]
    except Exception as e:  # noqa: BLE001 - malformed BER surfaces as many exception types
        raise TrapError(f"malformed SNMP message ({type(e).__name__}: "
                        f"{str(e)[:80]})", data) from None
    if rest:
        raise TrapError(f"{len(rest)} bytes after the SNMP message", data)
    return ("v1" if ver == 0 else "v2c"), community, kind, vbs


def decode_packet(data: bytes) -> tuple[str, str, list]:
    """(version, community, varbinds in SNMPv2 form) of a v1/v2c notification datagram.
    Raises TrapError for anything else."""
    version, community, kind, vbs = decode_message(data)
    if kind not in ("trap", "inform"):
        raise TrapError(f"{version} {kind} PDU is not a notification", data)
    return version, community, vbs
