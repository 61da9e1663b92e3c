"""`monbus demo` for SNMP: real net-snmp 5.9.3 responses and a real linkDown trap, replayed
through the bridge's decoders (no agent needed).

The datagrams in data/netsnmp593_v2c_responses_and_trap.hex are the SNMPv2c responses
(ifTable and ifXTable GETBULK walks, UCD load and memory) and the
linkDown trap of a capture of a real snmpd on 127.0.0.1 (tests/data/snmp/README.md).
"""
from __future__ import annotations

from importlib import resources

from monbus.core.line import Sanitizer, encode
from monbus.core.options import make_sender

from .modules import BUILTIN
from .samples import Skipped, module_lines, status_line
from .traps import TrapError, decode_message, trap_lines

SAMPLE = "netsnmp593_v2c_responses_and_trap.hex"
HOST = "demo-agent"
NOW = 1795775845.0   # the capture's time


def sample_lines() -> list:
    """The monbus lines of the sample capture."""
    text = resources.files("monbus.bridges.snmp").joinpath("data", SAMPLE).read_text()
    scalars, walked, traps = {}, {}, []
    mods = [BUILTIN[m] for m in ("interfaces", "ucd")]
    columns = [c for m in mods for t in m.tables for c in t.walked()]
    for raw in text.splitlines():
        if not raw or raw.startswith("#"):
            continue
        payload = bytes.fromhex(raw.split()[1])
        try:
            version, community, kind, vbs = decode_message(payload)
        except TrapError:
            continue
        if kind == "trap":
            traps.extend(trap_lines(HOST, version, vbs, NOW))
            continue
        for o, tv in vbs:
            for col in columns:
                if o[:len(col)] == col and len(o) > len(col):
                    walked.setdefault(col, {})[o[len(col):]] = tv
                    break
            else:
                scalars[o] = tv
    names = Sanitizer()
    out = []
    for m in mods:
        out.extend(module_lines(HOST, m, scalars, walked, NOW, names, Skipped()))
    out.append(status_line(HOST, True, "SNMP OK - replayed from a net-snmp 5.9.3 capture", NOW))
    return out + traps


def feed(relay: str, spool: str | None) -> int:
    """Send the sample's lines to the relay; return how many."""
    sender = make_sender(relay, spool, 2.0)
    lines = sample_lines()
    for ln in lines:
        sender.add(encode(ln), ln.topic)
    sender.close()
    return len(lines)
