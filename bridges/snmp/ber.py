"""SNMPv1/v2c messages in BER, by hand: requests out, responses in (pure, no I/O).

Why not pyasn1: decoding a response through pysnmp/pyasn1 costs about 0.2 ms per varbind
(generic ASN.1 machinery, an object per value), which caps a poller at a few thousand
varbinds per second per core.  An SNMPv1/v2c message has one fixed shape (RFC 1157
section 4, RFC 3416 section 3), so this module reads it directly: a few microseconds a
varbind.  SNMPv3 (USM security) stays with pysnmp.

    Message  ::= SEQUENCE { version INTEGER, community OCTET STRING, data PDU }
    PDU      ::= [tag] IMPLICIT SEQUENCE { request-id, error-status (non-repeaters),
                                           error-index (max-repetitions), VarBindList }
    VarBind  ::= SEQUENCE { name OBJECT IDENTIFIER, value }

Only the definite-length form is accepted (X.690 section 8.1.3; SNMP forbids the
indefinite form, RFC 3417 section 8).  Values come out as the `(tag, value)` pairs of
samples.py.
"""
from __future__ import annotations

GET, GETNEXT, RESPONSE, GETBULK = 0xA0, 0xA1, 0xA2, 0xA5

# value tags (RFC 2578 section 7.1.x application types, RFC 3416 exceptions)
_TAGS = {0x02: "int", 0x04: "str", 0x05: "null", 0x06: "oid", 0x40: "ip", 0x41: "counter32",
         0x42: "uint", 0x43: "ticks", 0x44: "opaque", 0x46: "counter64",
         0x80: "nosuchobject", 0x81: "nosuchinstance", 0x82: "endofmibview"}
_UNSIGNED = frozenset({0x41, 0x42, 0x43, 0x46})


class BerError(ValueError):
    """A message that is not a well-formed SNMPv1/v2c response; quotes it in hex."""

    def __init__(self, problem: str, data: bytes = b""):
        h = bytes(data[:48]).hex()
        super().__init__(f"{problem}: {h}{'...' if len(data) > 48 else ''} "
                         f"({len(data)} bytes)")


# --- encoding -------------------------------------------------------------------------------
def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(b),)) + b


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes((tag,)) + _len(len(body)) + body


def _int(v: int) -> bytes:
    return _tlv(0x02, v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big", signed=True))


_OID_CACHE: dict = {}


def encode_oid(oid: tuple) -> bytes:
    """An OBJECT IDENTIFIER TLV (X.690 section 8.19)."""
    got = _OID_CACHE.get(oid)
    if got is not None:
        return got
    if len(oid) < 2 or oid[0] > 2 or (oid[0] < 2 and oid[1] > 39):
        raise ValueError(f"cannot encode OID {oid!r}")
    out = bytearray()
    for arc in (oid[0] * 40 + oid[1],) + tuple(oid[2:]):
        if arc < 0:
            raise ValueError(f"cannot encode OID {oid!r}")
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out.extend(reversed(chunk))
    tlv = _tlv(0x06, bytes(out))
    if len(_OID_CACHE) < 100_000:
        _OID_CACHE[oid] = tlv
    return tlv


_NULL = b"\x05\x00"


def encode_request(version: int, community: bytes, pdu: int, request_id: int, oids,
                   non_repeaters: int = 0, max_repetitions: int = 0) -> bytes:
    """A GET / GETNEXT / GETBULK request with NULL values.  version: 0 = v1, 1 = v2c."""
    vbl = b"".join(_tlv(0x30, encode_oid(o) + _NULL) for o in oids)
    body = _int(request_id) + _int(non_repeaters) + _int(max_repetitions) + _tlv(0x30, vbl)
    return _tlv(0x30, _int(version) + _tlv(0x04, community) + _tlv(pdu, body))


# --- decoding -------------------------------------------------------------------------------
def _hdr(data: bytes, i: int, end: int) -> tuple[int, int, int]:
    """(tag, start of contents, end of contents) of the TLV at i."""
    if i + 2 > end:
        raise BerError("truncated TLV header", data)
    tag = data[i]
    if tag & 0x1F == 0x1F:
        raise BerError(f"multi-byte tag at offset {i}", data)
    n = data[i + 1]
    i += 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0:
            raise BerError("indefinite length (forbidden in SNMP)", data)
        if k > 4 or i + k > end:
            raise BerError(f"bad length of length {k} at offset {i - 2}", data)
        n = int.from_bytes(data[i:i + k], "big")
        i += k
    if i + n > end:
        raise BerError(f"length {n} at offset {i} runs past the end", data)
    return tag, i, i + n


def decode_oid(data: bytes, i: int, end: int) -> tuple:
    """OBJECT IDENTIFIER contents -> tuple of arcs."""
    if i >= end:
        raise BerError("empty OID", data)
    arcs = []
    v = 0
    for k in range(i, end):
        b = data[k]
        v = (v << 7) | (b & 0x7F)
        if not b & 0x80:
            arcs.append(v)
            v = 0
    if data[end - 1] & 0x80:
        raise BerError("OID ends inside an arc", data)
    first = arcs[0]
    if first < 80:
        return (first // 40, first % 40, *arcs[1:])
    return (2, first - 80, *arcs[1:])


def decode_response(data: bytes) -> tuple[int, bytes, int, int, int, list]:
    """(version, community, request-id, error-status, error-index, varbinds) of a
    Response-PDU; varbinds are [(oid tuple, (tag, value))].  Raises BerError."""
    data = bytes(data)
    end = len(data)
    tag, i, mend = _hdr(data, 0, end)
    if tag != 0x30:
        raise BerError("not a SEQUENCE", data)
    if mend != end:
        raise BerError(f"{end - mend} bytes after the message", data)
    tag, s, e = _hdr(data, i, mend)
    if tag != 0x02 or e - s > 4:
        raise BerError("bad version field", data)
    version = int.from_bytes(data[s:e], "big", signed=True)
    if version not in (0, 1):
        raise BerError(f"version {version} is not v1/v2c", data)
    tag, s, e = _hdr(data, e, mend)
    if tag != 0x04:
        raise BerError("bad community field", data)
    community = data[s:e]
    tag, s, pend = _hdr(data, e, mend)
    if tag != RESPONSE:
        raise BerError(f"PDU type 0x{tag:02x} is not a Response", data)
    ints = []
    for _ in range(3):
        tag, s, e = _hdr(data, s, pend)
        if tag != 0x02 or e - s > 5 or e == s:
            raise BerError("bad request-id/error field", data)
        ints.append(int.from_bytes(data[s:e], "big", signed=True))
        s = e
    tag, s, lend = _hdr(data, s, pend)
    if tag != 0x30:
        raise BerError("bad varbind list", data)
    vbs = []
    append = vbs.append
    while s < lend:
        tag, vs, ve = _hdr(data, s, lend)
        if tag != 0x30:
            raise BerError(f"bad varbind at offset {s}", data)
        tag, os_, oe = _hdr(data, vs, ve)
        if tag != 0x06:
            raise BerError(f"varbind name at offset {vs} is not an OID", data)
        oid = decode_oid(data, os_, oe)
        vtag, xs, xe = _hdr(data, oe, ve)
        if xe != ve:
            raise BerError(f"junk after the value at offset {xe}", data)
        name = _TAGS.get(vtag)
        if name is None:
            raise BerError(f"unknown value type 0x{vtag:02x} at offset {oe}", data)
        if vtag == 0x02:
            if xe == xs or xe - xs > 9:
                raise BerError(f"bad INTEGER length at offset {oe}", data)
            value = int.from_bytes(data[xs:xe], "big", signed=True)
        elif vtag in _UNSIGNED:
            if xe == xs or xe - xs > 9:
                raise BerError(f"bad unsigned length at offset {oe}", data)
            # unsigned types are INTEGER-encoded; a buggy agent's negative one is taken
            # as its two's complement bits (what net-snmp prints too)
            value = int.from_bytes(data[xs:xe], "big")
            limit = 64 if vtag == 0x46 else 32
            value &= (1 << limit) - 1
        elif vtag == 0x06:
            value = decode_oid(data, xs, xe)
        elif vtag in (0x04, 0x40, 0x44):
            value = data[xs:xe]
        else:
            value = None
        append((oid, (name, value)))
        s = ve
    return version, community, ints[0], ints[1], ints[2], vbs
