"""Everything that touches pysnmp, in one module imported only when needed (SNMPv3,
`--engine pysnmp`, the trap receiver, the pure trap decoder): importing pysnmp costs
~0.3 s, which a cron run polling v2c devices should not pay."""
from __future__ import annotations

from pysnmp.entity.engine import SnmpEngine
from pysnmp.entity.rfc3413 import cmdgen
from pysnmp.hlapi.v3arch.asyncio import (CommunityData, Udp6TransportTarget,
                                         UdpTransportTarget, UsmUserData)
from pysnmp.hlapi.v3arch.asyncio.lcd import CommandGeneratorLcdConfigurator
from pysnmp.proto import rfc1902, rfc1905
from pyasn1.type import univ

from pysnmp.entity import config as pconfig

AUTH_PROTOCOLS = {
    "md5": pconfig.USM_AUTH_HMAC96_MD5, "sha": pconfig.USM_AUTH_HMAC96_SHA,
    "sha224": pconfig.USM_AUTH_HMAC128_SHA224, "sha256": pconfig.USM_AUTH_HMAC192_SHA256,
    "sha384": pconfig.USM_AUTH_HMAC256_SHA384, "sha512": pconfig.USM_AUTH_HMAC384_SHA512,
}
PRIV_PROTOCOLS = {
    "des": pconfig.USM_PRIV_CBC56_DES, "aes": pconfig.USM_PRIV_CFB128_AES,
    "aes192": pconfig.USM_PRIV_CFB192_AES_BLUMENTHAL,
    "aes256": pconfig.USM_PRIV_CFB256_AES_BLUMENTHAL,
    "aes192c": pconfig.USM_PRIV_CFB192_AES, "aes256c": pconfig.USM_PRIV_CFB256_AES,
}

# pysnmp value classes -> the neutral tags of samples.py, by BER tag set
_TAGS = {
    rfc1902.Integer32.tagSet: "int", rfc1902.Integer.tagSet: "int",
    rfc1902.Gauge32.tagSet: "uint", rfc1902.Unsigned32.tagSet: "uint",
    rfc1902.Counter32.tagSet: "counter32", rfc1902.Counter64.tagSet: "counter64",
    rfc1902.TimeTicks.tagSet: "ticks", rfc1902.OctetString.tagSet: "str",
    rfc1902.ObjectIdentifier.tagSet: "oid", rfc1902.IpAddress.tagSet: "ip",
    rfc1902.Opaque.tagSet: "opaque", univ.Null.tagSet: "null",
    rfc1905.NoSuchObject.tagSet: "nosuchobject", rfc1905.NoSuchInstance.tagSet: "nosuchinstance",
    rfc1905.EndOfMibView.tagSet: "endofmibview",
}
NULL = univ.Null("")
ObjectName = rfc1902.ObjectName


def neutral(value) -> tuple[str, object]:
    """A pysnmp value as (tag, python value)."""
    tag = _TAGS.get(value.tagSet)
    if tag is None:
        return "opaque", bytes(value.asOctets()) if hasattr(value, "asOctets") else b""
    if tag in ("str", "opaque", "ip"):
        return tag, bytes(value.asOctets())
    if tag == "oid":
        return tag, tuple(value)
    if tag in ("null", "nosuchobject", "nosuchinstance", "endofmibview"):
        return tag, None
    return tag, int(value)




def auth_data(t):
    """pysnmp's CommunityData / UsmUserData for a Target."""
    if t.version in ("1", "2c"):
        return CommunityData(t.community, mpModel=0 if t.version == "1" else 1)
    kw = {}
    if t.level in ("authNoPriv", "authPriv"):
        kw["authKey"] = t.auth_password
        kw["authProtocol"] = AUTH_PROTOCOLS[t.auth_protocol]
    if t.level == "authPriv":
        kw["privKey"] = t.priv_password
        kw["privProtocol"] = PRIV_PROTOCOLS[t.priv_protocol]
    return UsmUserData(t.user, **kw)
