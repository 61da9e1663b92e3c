"""`monbus snmp traps`: a pysnmp notification receiver feeding `traps.trap_lines`.

The engine does what only it can: community checks, SNMPv3 USM (authentication,
decryption, time windows) and answering Informs.  Users for v3 traps must be configured
with the sending engine's ID (the agent is authoritative for traps, RFC 3414 section 4;
snmptrapd's `createUser -e ENGINEID` is the same rule).  What the engine drops (bad BER,
unknown community, wrong digest...) is read from its own statistics MIB objects and
published as self-metrics.
"""
from __future__ import annotations

import logging
import socket
import time

from pysnmp.carrier.asyncio.dgram import udp, udp6
from pysnmp.entity import config as pconfig
from pysnmp.entity.engine import SnmpEngine
from pysnmp.entity.rfc3413 import ntfrcv
from pysnmp.proto import rfc1902

from monbus.core.line import encode, sanitize
from monbus.core.options import stop_event, tick_until

from .pysnmp_glue import AUTH_PROTOCOLS, PRIV_PROTOCOLS, neutral
from .targets import AUTH, PRIV, TargetError, _norm_choice
from .traps import TrapError, trap_lines

log = logging.getLogger("monbus.snmp.traps")

# the engine's drop statistics (RFC 3418 snmpIn*, RFC 3414 usmStats*)
DROP_STATS = {
    "__SNMPv2-MIB": ("snmpInASNParseErrs", "snmpInBadVersions", "snmpInBadCommunityNames",
                     "snmpInBadCommunityUses", "snmpSilentDrops"),
    "__SNMP-USER-BASED-SM-MIB": ("usmStatsUnknownUserNames", "usmStatsUnknownEngineIDs",
                                 "usmStatsWrongDigests", "usmStatsDecryptionErrors",
                                 "usmStatsNotInTimeWindows", "usmStatsUnsupportedSecLevels"),
}


def parse_users(specs) -> list[dict]:
    """[[traps.user]] tables -> normalised dicts.  Raises TargetError."""
    out = []
    for i, u in enumerate(specs or []):
        where = f"[[traps.user]] {u.get('name', i) if isinstance(u, dict) else i}"
        if not isinstance(u, dict) or not u.get("name"):
            raise TargetError(f"{where}: needs a name")
        bad = set(u) - {"name", "engine_id", "auth_protocol", "auth_password",
                        "priv_protocol", "priv_password"}
        if bad:
            raise TargetError(f"{where}: unknown key(s) {sorted(bad)}")
        eid = str(u.get("engine_id", "")).lower().removeprefix("0x")
        try:
            bytes.fromhex(eid)
        except ValueError:
            raise TargetError(f"{where}: engine_id must be hex (like 0x8000000001020304)") \
                from None
        if not 5 <= len(eid) // 2 <= 32:
            raise TargetError(f"{where}: engine_id of the sending agent is required "
                              f"(5 to 32 bytes in hex)")
        d = {"name": u["name"], "engine_id": eid, "auth": None, "priv": None}
        if u.get("auth_password"):
            d["auth"] = _norm_choice(u.get("auth_protocol", "SHA"), AUTH, "auth protocol", where)
            d["auth_password"] = u["auth_password"]
        if u.get("priv_password"):
            if not d["auth"]:
                raise TargetError(f"{where}: privacy needs authentication too")
            d["priv"] = _norm_choice(u.get("priv_protocol", "AES"), PRIV, "privacy protocol",
                                     where)
            d["priv_password"] = u["priv_password"]
        out.append(d)
    return out


class TrapReceiver:
    """Listens on UDP, turns each notification into lines, hands them to `emit`."""

    def __init__(self, socks, communities, users, names: dict, emit, counters):
        """`socks`: bound UDP sockets (bound by the caller, so a port in use is an error
        at start-up, not a silent failure inside pysnmp's transport)."""
        self.engine = SnmpEngine()
        self.emit = emit
        self.counters = counters
        self.names = names
        for i, sock in enumerate(socks):
            mod = udp6 if sock.family == socket.AF_INET6 else udp
            transport = mod.UdpAsyncioTransport().open_server_mode(sock=sock)
            pconfig.add_transport(self.engine, mod.DOMAIN_NAME + (i + 1,), transport)
        for i, community in enumerate(communities):
            pconfig.add_v1_system(self.engine, f"monbus-c{i}", community)
        for u in users:
            # traps: keys localised to the sending agent's engine ID; informs: the receiver
            # is authoritative (RFC 3414 section 4), so also to our own engine ID
            for engine_id in (rfc1902.OctetString(hexValue=u["engine_id"]), None):
                pconfig.add_v3_user(
                    self.engine, u["name"],
                    AUTH_PROTOCOLS[u["auth"]] if u["auth"] else pconfig.USM_AUTH_NONE,
                    u.get("auth_password"),
                    PRIV_PROTOCOLS[u["priv"]] if u["priv"] else pconfig.USM_PRIV_NONE,
                    u.get("priv_password"), securityEngineId=engine_id)
        ntfrcv.NotificationReceiver(self.engine, self._on_notification)

    def _agent(self, address) -> str:
        host = str(address[0]) if address else "unknown"
        return self.names.get(host) or sanitize(host)

    def _on_notification(self, engine, state_ref, ctx_engine_id, ctx_name, varbinds, cb_ctx):
        ctx = engine.observer.get_execution_context("rfc3412.receiveMessage:request") or {}
        mp = ctx.get("messageProcessingModel")
        version = {0: "v1", 1: "v2c", 3: "v3"}.get(int(mp) if mp is not None else -1, "v?")
        user = str(ctx.get("securityName", "")) if version == "v3" else None
        try:
            _, address = engine.message_dispatcher.get_transport_info(state_ref)
        except Exception:  # noqa: BLE001 - the state may be gone; fall back to the context
            address = ctx.get("transportAddress")
        try:
            vbs = [(tuple(o), neutral(v)) for o, v in varbinds]
            lines = trap_lines(self._agent(address), version, vbs, round(time.time(), 3),
                               user)
        except TrapError as e:
            self.counters.inc("bad_notifications")
            log.warning("dropped a notification from %s: %s", address, e)
            return
        except Exception:  # noqa: BLE001 - a bug must not stop the receiver; it is loud
            self.counters.inc("notification_errors")
            log.exception("cannot convert a notification from %s", address)
            return
        self.counters.inc(f"traps_{version}")
        for ln in lines:
            self.emit(encode(ln), ln.topic)

    def drop_stats(self) -> dict:
        """The engine's counts of what it dropped, by MIB object name."""
        out = {}
        mib = self.engine.get_mib_builder()
        for module, names in DROP_STATS.items():
            for n in names:
                try:
                    (sym,) = mib.import_symbols(module, n)
                    out[n] = int(sym.syntax)
                except Exception:  # noqa: BLE001 - an object pysnmp does not implement
                    continue
        return out

    def close(self) -> None:
        try:
            self.engine.close_dispatcher()
        except Exception:  # noqa: BLE001
            pass


async def run(socks, communities, users, names, sender, counters,
              metrics_interval: float = 10.0, ready=None) -> None:
    """Receive on the bound sockets until SIGTERM/SIGINT; tick the sender; publish
    self-metrics."""
    rx = TrapReceiver(socks, communities, users, names, sender.add, counters)
    stop = stop_event()

    def drop_stats():
        for k, v in rx.drop_stats().items():
            counters.set(f"dropped_{k}", v)
    if ready:
        ready()
    try:
        await tick_until(stop, sender, counters, metrics_interval, drop_stats)
    finally:
        rx.close()
