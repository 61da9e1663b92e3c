"""The gmond UDP protocol (Ganglia 3.1 and later): XDR messages, decoded and encoded.

Pure: bytes in, messages out (and back); no sockets, no clock, no logging.

Wire format (Ganglia's lib/gm_protocol.x, RFC 4506 XDR, big-endian, 4-byte aligned):

    message   = id:uint32  body
    metric_id = host:string  name:string  spoof:bool
    128 gmetadata_full     metric_id  type:string name:string units:string
                           slope:uint32 tmax:uint32 dmax:uint32
                           extra<>: {name:string data:string}
    129 gmetric_ushort     metric_id  fmt:string  value:uint32 (must fit 16 bits)
    130 gmetric_short      metric_id  fmt:string  value:int32  (must fit 16 bits)
    131 gmetric_int        metric_id  fmt:string  value:int32
    132 gmetric_uint       metric_id  fmt:string  value:uint32
    133 gmetric_string     metric_id  fmt:string  value:string
    134 gmetric_float      metric_id  fmt:string  value:float (IEEE single)
    135 gmetric_double     metric_id  fmt:string  value:double
    136 gmetadata_request  metric_id

An XDR string is a uint32 length, the bytes, and zero padding to a multiple of 4.  A bool is
a uint32 that must be 0 or 1.  XDR has no 16-bit type: `unsigned short` travels as 32 bits.

Quirks: gmetric always sends the value as a string (133) whatever its `-t` type; the real
type is only in the metadata.  Spoofed metrics carry `host = "ip:name"` and spoof=1, plus an
extra element SPOOF_HOST; a spoofed heartbeat (`gmetric -H -S ...`) also has
SPOOF_HEARTBEAT.  gmond with `override_hostname` spoofs its own metrics the same way.
Ids below 128 are the Ganglia 2.5/3.0 format, which 3.1+ gmond ignores; so do we (reported).
"""
from __future__ import annotations

import struct
from typing import NamedTuple

__all__ = [
    "XdrError", "MetricId", "Metadata", "Value", "MetadataRequest",
    "decode", "encode_metadata", "encode_value", "encode_request",
    "METADATA", "USHORT", "SHORT", "INT", "UINT", "STRING", "FLOAT", "DOUBLE", "REQUEST",
    "SLOPES", "SLOPE_IDS", "MAX_PACKET",
]

METADATA, USHORT, SHORT, INT, UINT, STRING, FLOAT, DOUBLE, REQUEST = range(128, 137)
MESSAGE_NAMES = {METADATA: "gmetadata_full", USHORT: "gmetric_ushort", SHORT: "gmetric_short",
                 INT: "gmetric_int", UINT: "gmetric_uint", STRING: "gmetric_string",
                 FLOAT: "gmetric_float", DOUBLE: "gmetric_double", REQUEST: "gmetadata_request"}
#: ganglia_slope_t (lib/ganglia.h); `derivative` exists since 3.4
SLOPES = ("zero", "positive", "negative", "both", "unspecified", "derivative")
SLOPE_IDS = {name: i for i, name in enumerate(SLOPES)}
#: gmond's default max_udp_msg_len; a bigger datagram is never sent by gmond
MAX_PACKET = 1472

_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")
_F32 = struct.Struct(">f")
_F64 = struct.Struct(">d")
_HEX_LIMIT = 64


class XdrError(ValueError):
    """A datagram that is not a valid gmond message; the message quotes it in hex."""

    def __init__(self, problem: str, data: bytes, offset: int | None = None):
        self.problem = problem
        self.data = bytes(data)
        self.offset = offset
        shown = self.data[:_HEX_LIMIT].hex()
        more = f"... ({len(self.data)} bytes)" if len(self.data) > _HEX_LIMIT else ""
        at = f" at byte {offset}" if offset is not None else ""
        super().__init__(f"{problem}{at}: {shown}{more}")


class MetricId(NamedTuple):
    """Who a message is about: the host field (`ip:name` when spoofed), metric, spoof flag."""
    host: str
    name: str
    spoof: bool


class Metadata(NamedTuple):
    """A gmetadata_full message (128)."""
    id: MetricId
    type: str
    name: str
    units: str
    slope: int
    tmax: int
    dmax: int
    extra: dict


class Value(NamedTuple):
    """A gmetric value message (129-135); `value` is int, float or str per `kind`."""
    id: MetricId
    kind: int
    fmt: str
    value: object


class _Trailing(Value):
    """A Value followed by bytes it does not use (gmond ignores them too); never memoised."""
    __slots__ = ()


class MetadataRequest(NamedTuple):
    """A gmetadata_request (136): a gmond asking the metric's owner to resend metadata."""
    id: MetricId


class _Reader:
    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0
        self.end = len(data)

    def u32(self) -> int:
        p = self.pos
        if p + 4 > self.end:
            raise XdrError("truncated: 4-byte field past the end", self.data, p)
        self.pos = p + 4
        return _U32.unpack_from(self.data, p)[0]

    def i32(self) -> int:
        p = self.pos
        if p + 4 > self.end:
            raise XdrError("truncated: 4-byte field past the end", self.data, p)
        self.pos = p + 4
        return _I32.unpack_from(self.data, p)[0]

    def string(self) -> str:
        p = self.pos
        n = self.u32()
        start = self.pos
        stop = start + n
        if stop > self.end:
            raise XdrError(f"string length {n} past the end ({self.end - start} bytes left)",
                           self.data, p)
        self.pos = stop + (-n & 3)  # padding to 4; a missing final pad is tolerated
        if self.pos > self.end:
            self.pos = self.end
        # names are ASCII in practice; anything else is kept visible, never fatal
        return self.data[start:stop].decode("utf-8", "replace")

    def boolean(self) -> bool:
        p = self.pos
        v = self.u32()
        if v > 1:
            raise XdrError(f"bool is {v}, not 0 or 1", self.data, p)
        return bool(v)

    def metric_id(self) -> MetricId:
        return MetricId(self.string(), self.string(), self.boolean())


# Strategy for speed: gmond sends the same metric id and format again and again, and for
# the fixed-size value types everything but the last 4 (8 for double) bytes of a datagram is
# the same from one send to the next.  Those leading bytes of every datagram decoded in full
# (and consumed exactly) are remembered (bounded), so a repeat is one dict lookup and one
# unpack; metadata datagrams, resent unchanged, are remembered whole.  A memo, not state:
# the result is the same with or without it.
_SEEN: dict[bytes, tuple] = {}
_SEEN_MAX = 50_000
_FIXED = {USHORT: (_U32, 4), SHORT: (_I32, 4), INT: (_I32, 4), UINT: (_U32, 4),
          FLOAT: (_F32, 4), DOUBLE: (_F64, 8)}


def decode(data: bytes):
    """Decode one datagram into Metadata, Value or MetadataRequest (treat them as read-only:
    repeats share one object).  Raises XdrError."""
    if len(data) > 8 and data[:3] == b"\0\0\0":
        if data[3] == METADATA:  # metadata is resent unchanged every send_metadata_interval
            hit = _SEEN.get(data)
            if hit is not None:
                return hit
            msg = _decode(data)
            if len(_SEEN) >= _SEEN_MAX:
                _SEEN.clear()
            _SEEN[bytes(data)] = msg
            return msg
        fixed = _FIXED.get(data[3])
        if fixed is not None:
            hit = _SEEN.get(data[:-fixed[1]])
            if hit is not None:
                kind = data[3]
                value = fixed[0].unpack_from(data, len(data) - fixed[1])[0]
                if kind == USHORT and value > 0xFFFF or kind == SHORT and not \
                        -0x8000 <= value <= 0x7FFF:
                    pass  # out of range: the full decode below reports it
                else:
                    return Value(hit[0], kind, hit[1], value)
    msg = _decode(data)
    if type(msg) is _Trailing:
        return Value(*msg)
    if type(msg) is Value and msg.kind in _FIXED:
        size = _FIXED[msg.kind][1]
        if len(_SEEN) >= _SEEN_MAX:
            _SEEN.clear()
        _SEEN[bytes(data[:-size])] = (msg.id, msg.fmt)
    return msg


def _decode(data: bytes):
    r = _Reader(data)
    msg = r.u32()
    if msg == METADATA:
        mid = r.metric_id()
        vtype, name, units = r.string(), r.string(), r.string()
        slope, tmax, dmax = r.u32(), r.u32(), r.u32()
        p = r.pos
        n = r.u32()
        if n * 8 > r.end - r.pos:  # each element is at least two empty strings
            raise XdrError(f"{n} extra-data elements cannot fit in the packet", data, p)
        extra = {}
        for _ in range(n):
            k = r.string()
            extra[k] = r.string()
        if slope >= len(SLOPES):
            raise XdrError(f"unknown slope {slope}", data)
        return Metadata(mid, vtype, name, units, slope, tmax, dmax, extra)
    if USHORT <= msg <= DOUBLE:
        mid = r.metric_id()
        fmt = r.string()
        p = r.pos
        if msg == STRING:
            value = r.string()
        elif msg == UINT:
            value = r.u32()
        elif msg == INT:
            value = r.i32()
        elif msg == FLOAT:
            if p + 4 > r.end:
                raise XdrError("truncated: float past the end", data, p)
            value = _F32.unpack_from(data, p)[0]
        elif msg == DOUBLE:
            if p + 8 > r.end:
                raise XdrError("truncated: double past the end", data, p)
            value = _F64.unpack_from(data, p)[0]
        elif msg == USHORT:
            value = r.u32()
            if value > 0xFFFF:
                raise XdrError(f"unsigned short value {value} does not fit 16 bits", data, p)
        else:  # SHORT
            value = r.i32()
            if not -0x8000 <= value <= 0x7FFF:
                raise XdrError(f"short value {value} does not fit 16 bits", data, p)
        if msg != STRING:
            end = p + (8 if msg == DOUBLE else 4)
            if end != r.end:  # trailing bytes: decoded, but not the shape the memo assumes
                return _Trailing(mid, msg, fmt, value)
        return Value(mid, msg, fmt, value)
    if msg == REQUEST:
        return MetadataRequest(r.metric_id())
    if msg < 128:
        raise XdrError(f"message id {msg}: Ganglia 2.5/3.0 format, not supported", data, 0)
    raise XdrError(f"unknown message id {msg}", data, 0)


# --- encoding ------------------------------------------------------------------------------
def _xstr(text: str) -> bytes:
    b = text.encode("utf-8")
    return _U32.pack(len(b)) + b + b"\0" * (-len(b) & 3)


def _xid(host: str, name: str, spoof: bool) -> bytes:
    return _xstr(host) + _xstr(name) + _U32.pack(1 if spoof else 0)


def encode_metadata(host: str, name: str, vtype: str, units: str = "", slope: int = 3,
                    tmax: int = 60, dmax: int = 0, extra: dict | None = None,
                    spoof: bool = False) -> bytes:
    """A gmetadata_full datagram, as gmetric sends it (extra: GROUP, SPOOF_HOST, ...)."""
    out = [_U32.pack(METADATA), _xid(host, name, spoof), _xstr(vtype), _xstr(name),
           _xstr(units), _U32.pack(slope), _U32.pack(tmax), _U32.pack(dmax)]
    extra = extra or {}
    out.append(_U32.pack(len(extra)))
    for k, v in extra.items():
        out.append(_xstr(k))
        out.append(_xstr(v))
    return b"".join(out)


def encode_value(host: str, name: str, kind: int, value, fmt: str = "%s",
                 spoof: bool = False) -> bytes:
    """A value datagram of message id `kind` (STRING is what gmetric sends)."""
    head = _U32.pack(kind) + _xid(host, name, spoof) + _xstr(fmt)
    if kind == STRING:
        return head + _xstr(str(value))
    if kind in (USHORT, UINT):
        return head + _U32.pack(int(value))
    if kind in (SHORT, INT):
        return head + _I32.pack(int(value))
    if kind == FLOAT:
        return head + _F32.pack(float(value))
    if kind == DOUBLE:
        return head + _F64.pack(float(value))
    raise ValueError(f"not a value message id: {kind}")


def encode_request(host: str, name: str, spoof: bool = False) -> bytes:
    """A gmetadata_request datagram: asks the owner of host/name to resend its metadata."""
    return _U32.pack(REQUEST) + _xid(host, name, spoof)
