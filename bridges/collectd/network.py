"""collectd's binary network protocol (collectd 4.x / 5.x network plugin): datagrams -> lines.

A datagram is a sequence of parts, each `[u16 type][u16 length][payload]`, big-endian, the
length counting the 4-byte header.  Parts set the fields of a running "value list" (host,
time, plugin, ...) and every VALUES part dispatches one value list with the fields as they
are at that point (collectd's network.c, parse_packet).  Part types:

    0x0000 HOST  0x0002 PLUGIN  0x0003 PLUGIN_INSTANCE  0x0004 TYPE  0x0005 TYPE_INSTANCE
        strings, NUL-terminated, at most 128 bytes with the NUL (DATA_MAX_NAME_LEN)
    0x0001 TIME  0x0007 INTERVAL             u64 seconds (collectd 4)
    0x0008 TIME_HR  0x0009 INTERVAL_HR       u64 in 2^-30 s (collectd 5)
    0x0006 VALUES   u16 n, n kind bytes (0 COUNTER, 1 GAUGE, 2 DERIVE, 3 ABSOLUTE), n 8-byte
                    values: COUNTER/ABSOLUTE u64 and DERIVE i64 big-endian, but GAUGE a
                    little-endian IEEE double (collectd writes x86 byte order on purpose)
    0x0100 MESSAGE  0x0101 SEVERITY (1 FAILURE, 2 WARNING, 4 OKAY): a notification
    0x0200 SIGN_SHA256  0x0210 ENCR_AES256   see security.py
    anything else: skipped by its length

Strategy: `NetworkDecoder.decode(datagram)` is pure (bytes in, lines out; no clock, socket
or logging).  It walks the parts once; the expensive per-identifier work (types.db lookup,
write_graphite naming, annotation text) is cached per identifier, so the hot path per value
is one struct unpack and one f-string.  Where the optional C module `_fastdecode`
(_fastdecode.c) was built, the walk over a clean datagram (and over the payload of a
verified Sign part or a decrypted Encrypt part) and the number and time text are done in
C, from the same cached per-identifier plans; everything else takes the Python paths.  Errors never stop the walk where the protocol lets
it go on: a part with a bad payload but a sane length is reported and skipped (a bad name
part also blanks that name, so the values after it are dropped rather than mis-labelled); a
length that is < 4 (0 would loop forever) or runs past the end ends the datagram, keeping
everything decoded before it.
"""
from __future__ import annotations

import struct
from typing import Callable, NamedTuple

from monbus.core.line import Line, encode, format_number

from .naming import GraphiteNaming
from .security import IV_LEN, SHA1_LEN, SIGN_HASH_LEN, decrypt, verify_signature
from .typesdb import KINDS, TypesDB

try:  # the optional C speed-up of the fused walk (_fastdecode.c)
    from . import _fastdecode
except ImportError:  # built without a compiler: the Python walk gives the same lines
    _fastdecode = None

TYPE_HOST = 0x0000
TYPE_TIME = 0x0001
TYPE_PLUGIN = 0x0002
TYPE_PLUGIN_INSTANCE = 0x0003
TYPE_TYPE = 0x0004
TYPE_TYPE_INSTANCE = 0x0005
TYPE_VALUES = 0x0006
TYPE_INTERVAL = 0x0007
TYPE_TIME_HR = 0x0008
TYPE_INTERVAL_HR = 0x0009
TYPE_MESSAGE = 0x0100
TYPE_SEVERITY = 0x0101
TYPE_SIGN_SHA256 = 0x0200
TYPE_ENCR_AES256 = 0x0210

#: collectd's SecurityLevel values
SECURITY_LEVELS = ("none", "sign", "encrypt")

#: notification severities (collectd NOTIF_*) -> monbus availability state
SEVERITY_STATE = {4: 0, 2: 1, 1: 2}

_NAME_MAX = 128       # DATA_MAX_NAME_LEN, with the NUL
_MESSAGE_MAX = 256    # NOTIF_MAX_MSG_LEN, with the NUL
_HR = 1.0 / (1 << 30)
_HEX_LIMIT = 48
_MAX_DEPTH = 2        # Sign/Encrypt parts inside Encrypt parts: collectd never nests deeper

_HEAD = struct.Struct(">HH")
_U16 = struct.Struct(">H")
_U64 = struct.Struct(">Q")
_FLAG_SIGNED = 1
_FLAG_ENCRYPTED = 2


class ValueList(NamedTuple):
    """One dispatched VALUES part with the fields in force at that point."""
    host: str
    plugin: str
    plugin_instance: str
    type: str
    type_instance: str
    time: float          # seconds since the epoch
    interval: float      # seconds, 0 if no interval part was seen
    kinds: bytes         # wire kind codes, one per value (0 counter, 1 gauge, 2 derive, 3 absolute)
    values: tuple        # ints for counter/derive/absolute, floats for gauge


class Notification(NamedTuple):
    """One MESSAGE part (with the SEVERITY and fields in force at that point)."""
    host: str
    plugin: str
    plugin_instance: str
    type: str
    type_instance: str
    time: float
    severity: int        # 1 FAILURE, 2 WARNING, 4 OKAY
    message: str


class PacketError(NamedTuple):
    """A problem in one datagram: `kind` (the self-metric it counts in) and a message that
    names the part and quotes the offending bytes in hex (truncated)."""
    kind: str
    message: str

    def __str__(self):
        return self.message


def hexdump(data: bytes, limit: int = _HEX_LIMIT) -> str:
    """Bytes as hex for error messages, truncated to `limit` bytes."""
    data = bytes(data)
    if len(data) <= limit:
        return data.hex()
    return f"{data[:limit].hex()}... ({len(data)} bytes)"


def _unpacker(kinds: bytes):
    """A function (buf, offset) -> values for this sequence of kind codes (cached by caller)."""
    n = len(kinds)
    if any(k > 3 for k in kinds):
        return None
    if all(k == 1 for k in kinds):
        return struct.Struct(f"<{n}d").unpack_from
    if 1 not in kinds:
        return struct.Struct(">" + "".join("QdqQ"[k] for k in kinds)).unpack_from
    singles = [struct.Struct("<d" if k == 1 else (">q" if k == 2 else ">Q")).unpack_from
               for k in kinds]

    def mixed(buf, off):
        return tuple(s(buf, off + 8 * i)[0] for i, s in enumerate(singles))
    return mixed


class ParseResult:
    """What one datagram held: value lists, notifications and errors, plus counts."""
    __slots__ = ("values", "notifications", "errors", "counts")

    def __init__(self):
        self.values: list = []
        self.notifications: list = []
        self.errors: list = []
        self.counts: dict = {}

    def count(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n


class PacketParser:
    """Parses datagrams into ValueList / Notification records (no naming, no types.db).

    `security_level`: "none" accepts everything; "sign" only signed or encrypted parts;
    "encrypt" only encrypted parts (collectd's SecurityLevel).  `password_of(user: bytes)`
    returns the password (bytes) or None; None for the callable itself means no AuthFile:
    then signed packets are taken as unsigned (collectd does the same) and encrypted parts
    are dropped.
    """

    def __init__(self, security_level: str = "none",
                 password_of: Callable[[bytes], bytes | None] | None = None):
        if security_level not in SECURITY_LEVELS:
            raise ValueError(f"security level must be one of {SECURITY_LEVELS}: {security_level!r}")
        self.level = SECURITY_LEVELS.index(security_level)
        self.password_of = password_of
        self._unpackers: dict = {}
        self._strings: dict = {}

    def parse(self, data: bytes) -> ParseResult:
        """Parse one datagram.  Never raises on bad input."""
        res = ParseResult()
        self._walk(memoryview(data).tobytes() if not isinstance(data, bytes) else data,
                   0, 0, res)
        return res

    # -- the walk ------------------------------------------------------------------------
    def _string(self, raw: bytes, limit: int):
        """A NUL-terminated string part payload -> (str, None) or (None, problem)."""
        if not raw or raw[-1] != 0:
            return None, "does not end with a NUL byte"
        if len(raw) > limit:
            return None, f"is longer than {limit - 1} bytes"
        s = raw[:raw.index(0)].decode("utf-8", "replace")
        if limit == _NAME_MAX:  # the cache holds valid names only (see _walk)
            if len(self._strings) > 50_000:
                self._strings.clear()
            self._strings[raw] = s
        return s, None

    def _walk(self, buf: bytes, flags: int, depth: int, res: ParseResult) -> None:
        # Strategy: the parts are tested most frequent first (TIME_HR, VALUES, the names);
        # valid name strings come from a cache keyed by their raw bytes; the flags (signed,
        # encrypted) are fixed for one walk, so the security check is made once.  The
        # running names are '' when not set and None after a bad part of that name, which
        # drops the values until a good one resets it.
        host = plugin = pinst = type_ = tinst = ""
        time = 0.0
        interval = 0.0
        severity = 0
        pos = 0
        end = len(buf)
        head = _HEAD.unpack_from
        u64 = _U64.unpack_from
        u16 = _U16.unpack_from
        unpackers = self._unpackers
        strings = self._strings
        values_out = res.values
        errors = res.errors
        new_vl = tuple.__new__
        level = self.level
        accepted = not level or flags & (_FLAG_ENCRYPTED if level == 2
                                         else _FLAG_ENCRYPTED | _FLAG_SIGNED)
        insecure = 0
        hr = _HR
        last = end - 4
        # part type numbers are literals in this loop (constants are cheaper than globals):
        # 8 TIME_HR, 6 VALUES, 0-5 HOST/TIME/PLUGIN/PLUGIN_INSTANCE/TYPE/TYPE_INSTANCE,
        # 0x0200 SIGN_SHA256, 0x0210 ENCR_AES256
        while pos <= last:
            ptype, plen = head(buf, pos)
            if plen < 4 or plen > end - pos:
                what = "0 (would loop forever)" if plen == 0 else str(plen)
                errors.append(PacketError(
                    "bad_part_length",
                    f"part type 0x{ptype:04x} at offset {pos} has length {what} but "
                    f"{end - pos} bytes remain; rest of datagram dropped: "
                    f"{hexdump(buf[pos:])}"))
                return self._finish(res, insecure)
            nxt = pos + plen
            if not accepted and ptype != 0x0210 and ptype != 0x0200:
                insecure += 1
                pos = nxt
                continue

            if ptype == 8 and plen == 12:
                time = u64(buf, pos + 4)[0] * hr
                pos = nxt
                continue

            if ptype == 6:
                n = u16(buf, pos + 4)[0] if plen >= 6 else -1
                if n <= 0 or plen != 6 + 9 * n:
                    errors.append(PacketError(
                        "bad_values", f"VALUES part at offset {pos} declares {max(n, 0)} values "
                        f"but its length {plen} needs {6 + 9 * max(n, 1)}: "
                        f"{hexdump(buf[pos:nxt])}"))
                    pos = nxt
                    continue
                kinds = buf[pos + 6:pos + 6 + n]
                unpack = unpackers.get(kinds)
                if unpack is None:
                    unpack = _unpacker(kinds)
                    if unpack is None:
                        errors.append(PacketError(
                            "bad_values", f"VALUES part at offset {pos} has an unknown value "
                            f"kind in {kinds.hex()}: {hexdump(buf[pos:nxt])}"))
                        pos = nxt
                        continue
                    if len(unpackers) < 4096:
                        unpackers[kinds] = unpack
                if host and plugin and type_ and time and pinst is not None \
                        and tinst is not None:
                    values_out.append(new_vl(ValueList, (host, plugin, pinst, type_, tinst, time,
                                                         interval, kinds,
                                                         unpack(buf, pos + 6 + n))))
                else:
                    missing = [w for w, v in (("host", host), ("plugin", plugin),
                                              ("type", type_), ("time", time)) if not v]
                    missing += [w for w, v in (("plugin instance", pinst),
                                               ("type instance", tinst)) if v is None]
                    errors.append(PacketError(
                        "incomplete_values", f"VALUES part at offset {pos} without a valid "
                        f"{', '.join(missing)}: {hexdump(buf[pos:nxt])}"))
                pos = nxt
                continue

            if ptype <= 5 and ptype != 1:
                raw = buf[pos + 4:nxt]
                s = strings.get(raw)
                if s is None:
                    s, problem = self._string(raw, _NAME_MAX)
                    if problem:
                        errors.append(PacketError(
                            "bad_string", f"{_PART_NAMES[ptype]} part at offset {pos} {problem}: "
                            f"{hexdump(buf[pos:nxt])}"))
                if ptype == 5:
                    tinst = s
                elif ptype == 3:
                    pinst = s
                elif ptype == 4:
                    type_ = s
                elif ptype == 2:
                    plugin = s
                else:
                    host = s
                pos = nxt
                continue

            if ptype == TYPE_ENCR_AES256:
                self._encrypted(buf, pos, nxt, flags, depth, res)
            elif ptype == TYPE_SIGN_SHA256:
                if not self._signed(buf, pos, nxt, flags, depth, res):
                    return self._finish(res, insecure)
            elif ptype in (TYPE_TIME_HR, TYPE_TIME, TYPE_INTERVAL_HR, TYPE_INTERVAL,
                           TYPE_SEVERITY):
                if plen != 12:
                    errors.append(PacketError(
                        "bad_numeric", f"{_PART_NAMES[ptype]} part at offset {pos} has length "
                        f"{plen}, not 12: {hexdump(buf[pos:nxt])}"))
                    if ptype in (TYPE_TIME, TYPE_TIME_HR):
                        time = 0.0
                else:
                    v = u64(buf, pos + 4)[0]
                    if ptype == TYPE_INTERVAL_HR:
                        interval = v * _HR
                    elif ptype == TYPE_TIME:
                        time = float(v)
                    elif ptype == TYPE_INTERVAL:
                        interval = float(v)
                    else:
                        severity = v
            elif ptype == TYPE_MESSAGE:
                s, problem = self._string(buf[pos + 4:nxt], _MESSAGE_MAX)
                if problem:
                    problem = f"MESSAGE part at offset {pos} {problem}"
                elif severity not in SEVERITY_STATE:
                    problem = f"notification with unknown severity {severity}"
                elif not time:
                    problem = "notification without a time"
                elif not s:
                    problem = "notification with an empty message"
                elif host is None or plugin is None or pinst is None or type_ is None \
                        or tinst is None:
                    problem = "notification after a bad name part"
                if problem:
                    errors.append(PacketError("bad_notification",
                                              f"{problem}: {hexdump(buf[pos:nxt])}"))
                else:
                    res.notifications.append(Notification(host, plugin, pinst, type_, tinst,
                                                          time, severity, s))
            else:
                res.count("unknown_parts")
            pos = nxt
        if pos < end:
            errors.append(PacketError(
                "trailing_bytes", f"{end - pos} bytes after the last part: {hexdump(buf[pos:])}"))
        self._finish(res, insecure)

    def _finish(self, res, insecure):
        if insecure:
            need = "encrypted" if self.level == 2 else "signed or encrypted"
            res.errors.append(PacketError(
                "insecure", f"{insecure} part(s) not {need}, below security level "
                f"{SECURITY_LEVELS[self.level]}; dropped"))

    def _signed(self, buf, pos, nxt, flags, depth, res) -> bool:
        """A Sign part.  True to go on with the parts after it (unverifiable at level none,
        with no AuthFile); False when the rest was handled (verified: parsed as signed) or
        rejected."""
        plen = nxt - pos
        if plen <= 4 + SIGN_HASH_LEN:
            res.errors.append(PacketError(
                "bad_signature", f"Sign part at offset {pos} too short ({plen} bytes): "
                f"{hexdump(buf[pos:nxt])}"))
            return False
        mac = buf[pos + 4:pos + 4 + SIGN_HASH_LEN]
        user = buf[pos + 4 + SIGN_HASH_LEN:nxt]
        payload = buf[nxt:]
        if self.password_of is None:
            # collectd: "Received signed network packet but can't verify it because no
            # user DB has been configured. Will accept it." (only security level none)
            res.count("unverified_signed")
            return True
        if depth >= _MAX_DEPTH:
            res.errors.append(PacketError("bad_signature", "Sign part nested too deep"))
            return False
        password = self.password_of(user)
        if password is None:
            res.errors.append(PacketError(
                "unknown_user", f"signed packet from unknown user {_user(user)}; dropped"))
            return False
        if not verify_signature(mac, user, password, payload):
            res.errors.append(PacketError(
                "bad_signature", f"signature of user {_user(user)} does not verify; "
                f"{len(payload)} bytes dropped: {hexdump(buf[pos:pos + 4 + SIGN_HASH_LEN])}"))
            return False
        res.count("signed_packets")
        self._walk(payload, flags | _FLAG_SIGNED, depth + 1, res)
        return False

    def _encrypted(self, buf, pos, nxt, flags, depth, res) -> None:
        """An Encrypt part: decrypt, check the SHA-1, parse the payload as encrypted."""
        plen = nxt - pos
        if plen < 6:
            res.errors.append(PacketError("bad_encryption", f"Encrypt part at offset {pos} too "
                                          f"short: {hexdump(buf[pos:nxt])}"))
            return
        ulen = _U16.unpack_from(buf, pos + 4)[0]
        if ulen == 0 or 6 + ulen + IV_LEN + SHA1_LEN > plen:
            res.errors.append(PacketError(
                "bad_encryption", f"Encrypt part at offset {pos}: user name length {ulen} does "
                f"not fit in {plen} bytes: {hexdump(buf[pos:nxt])}"))
            return
        user = buf[pos + 6:pos + 6 + ulen]
        if self.password_of is None:
            res.errors.append(PacketError(
                "unknown_user", f"encrypted part from user {_user(user)} but no AuthFile; "
                f"dropped"))
            return
        if depth >= _MAX_DEPTH:
            res.errors.append(PacketError("bad_encryption", "Encrypt part nested too deep"))
            return
        password = self.password_of(user)
        if password is None:
            res.errors.append(PacketError(
                "unknown_user", f"encrypted part from unknown user {_user(user)}; dropped"))
            return
        iv = buf[pos + 6 + ulen:pos + 6 + ulen + IV_LEN]
        payload = decrypt(password, iv, buf[pos + 6 + ulen + IV_LEN:nxt])
        if payload is None:
            res.errors.append(PacketError(
                "bad_encryption", f"encrypted part of user {_user(user)} fails its SHA-1 check "
                f"(wrong password or corrupted); dropped: {hexdump(buf[pos:nxt])}"))
            return
        res.count("encrypted_packets")
        self._walk(payload, flags | _FLAG_ENCRYPTED, depth + 1, res)


_PART_NAMES = {TYPE_HOST: "HOST", TYPE_PLUGIN: "PLUGIN", TYPE_PLUGIN_INSTANCE: "PLUGIN_INSTANCE",
               TYPE_TYPE: "TYPE", TYPE_TYPE_INSTANCE: "TYPE_INSTANCE", TYPE_TIME: "TIME",
               TYPE_TIME_HR: "TIME_HR", TYPE_INTERVAL: "INTERVAL", TYPE_INTERVAL_HR: "INTERVAL_HR",
               TYPE_SEVERITY: "SEVERITY", TYPE_MESSAGE: "MESSAGE"}


def _user(user: bytes) -> str:
    """A user name for a log message (quoted, truncated; never a password)."""
    return repr(user[:64].decode("utf-8", "replace"))


class LineMaker:
    """ValueList / Notification records -> monbus line texts (write_graphite paths).

    Data-source names and kinds come from types.db.  A type types.db does not know is still
    published (its values named `value`, or `0`, `1`, ... for several) and counted; a value
    count that contradicts types.db is dropped, as collectd drops it.  NaN or infinite gauges
    (collectd's "unknown" value) cannot be a monbus value: they are dropped and counted.
    """

    def __init__(self, typesdb: TypesDB | None = None, naming: GraphiteNaming | None = None,
                 store_rates: bool = False):
        self.typesdb = typesdb if typesdb is not None else TypesDB()
        self.naming = naming or GraphiteNaming()
        self.store_rates = store_rates
        self._cache: dict = {}
        self._last: dict = {}  # StoreRates: series -> (raw value, time)

    def _plan(self, vl: ValueList, errors, counts):
        """(series prefixes, annotation suffixes, any gauge) for a value list, or None to
        drop it."""
        dss = self.typesdb.get(vl.type)
        n = len(vl.kinds)
        if dss is None:
            counts["unknown_type"] = counts.get("unknown_type", 0) + 1
            names = ("value",) if n == 1 else tuple(str(i) for i in range(n))
            mtypes = tuple(KINDS[k] for k in vl.kinds)
        elif len(dss) != n:
            errors.append(PacketError(
                "value_count_mismatch", f"{vl.host}/{vl.plugin}/{vl.type}: types.db gives "
                f"{len(dss)} data sources, the packet {n} values; dropped"))
            return None
        else:
            names = tuple(ds.name for ds in dss)
            mtypes = tuple(ds.kind for ds in dss)
        series = self.naming.series(vl.host, vl.plugin, vl.plugin_instance, vl.type,
                                    vl.type_instance, names)
        if len(series) == 1 and n > 1:  # unknown multi-value type: always name the DS
            series = tuple(f"{series[0]}.{x}" for x in names)
        iv = f" interval={format_number(vl.interval)}" if vl.interval else ""
        rates = None
        if self.store_rates and any(m != "gauge" for m in mtypes):
            rates, mtypes = mtypes, ("gauge",) * n
        return (tuple(f"{s} " for s in series), tuple(f" mtype={m}{iv}" for m in mtypes),
                1 in vl.kinds, rates)

    def lines(self, records, errors: list, counts: dict) -> list[str]:
        """Line texts for value lists; problems go to `errors` / `counts`."""
        # Strategy: everything but the value and the time is precomputed per identifier
        # (the plan), so a value costs one f-string; integer kinds format themselves.
        out = []
        append = out.append
        cache = self._cache
        for host, plugin, pinst, type_, tinst, ts, interval, kinds, values in records:
            key = (host, plugin, pinst, type_, tinst, kinds, interval)
            plan = cache.get(key)
            if plan is None:
                plan = self._plan(ValueList(*key[:5], ts, interval, kinds, values), errors,
                                  counts)
                if plan is None:
                    continue
                if len(cache) > 200_000:
                    cache.clear()
                cache[key] = plan
            pres, sufs, gauges, rates = plan
            t = ts
            ts = str(int(ts)) if ts.is_integer() else repr(ts)
            if rates is not None:
                self._rate_lines(pres, sufs, rates, values, t, ts, append, counts)
                continue
            if not gauges:
                if len(values) == 1:
                    append(f"{pres[0]}{values[0]} {ts}{sufs[0]}")
                else:
                    for pre, v, suf in zip(pres, values, sufs):
                        append(f"{pre}{v} {ts}{suf}")
                continue
            for pre, v, suf, k in zip(pres, values, sufs, kinds):
                if k == 1:
                    if v - v != 0.0:  # NaN (collectd's "U") or infinite
                        counts["nan_values"] = counts.get("nan_values", 0) + 1
                        continue
                    v = str(int(v)) if v.is_integer() and -1e16 < v < 1e16 else repr(v)
                append(f"{pre}{v} {ts}{suf}")
        return out

    def _rate_lines(self, pres, sufs, rates, values, t, ts, append, counts):
        """write_graphite's StoreRates (collectd's uc_update): counter, derive and absolute
        values become per-second rates against the previous value of the same series.  The
        first value of a series has no rate (write_graphite writes `nan`): counted in
        `rate_first`.  A value not newer than the last one is dropped (`rate_too_old`), as
        collectd's cache drops it."""
        last = self._last
        if len(last) > 200_000:
            last.clear()
        for pre, suf, kind, v in zip(pres, sufs, rates, values):
            if kind == "gauge":
                if v - v != 0.0:
                    counts["nan_values"] = counts.get("nan_values", 0) + 1
                    continue
                append(f"{pre}{format_number(float(v))} {ts}{suf}")
                continue
            prev = last.get(pre)
            if prev is not None and t <= prev[1]:
                counts["rate_too_old"] = counts.get("rate_too_old", 0) + 1
                continue
            last[pre] = (v, t)
            if prev is None:
                counts["rate_first"] = counts.get("rate_first", 0) + 1
                continue
            pv, pt = prev
            if kind == "absolute":
                diff = v
            elif kind == "counter" and v < pv:
                # a counter wrap: collectd assumes 32 bits if the old value fitted in 32
                diff = ((1 << 32) if pv <= 0xFFFFFFFF else (1 << 64)) - pv + v
            else:
                diff = v - pv
            rate = diff / (t - pt)
            if rate - rate != 0.0:
                counts["nan_values"] = counts.get("nan_values", 0) + 1
                continue
            append(f"{pre}{format_number(rate)} {ts}{suf}")

    def notification_line(self, n: Notification) -> str:
        """The availability line of a notification (mtype=state, message in `output`)."""
        series = self.naming.notification_series(n.host, n.plugin, n.plugin_instance, n.type,
                                                 n.type_instance)
        return encode(Line(series, SEVERITY_STATE[n.severity], n.time,
                           {"mtype": "state", "output": n.message}))


class NetworkDecoder:
    """Datagram -> (lines, errors): PacketParser plus LineMaker, with running counts.

    `counts` accumulates per-kind counts over the decoder's life (datagrams, values, lines,
    notifications and every error kind) for the self-metrics.
    """

    def __init__(self, typesdb: TypesDB | None = None, naming: GraphiteNaming | None = None,
                 security_level: str = "none", password_of=None, store_rates: bool = False):
        self.parser = PacketParser(security_level, password_of)
        self.maker = LineMaker(typesdb, naming, store_rates)
        self.counts: dict[str, int] = {}
        # the fused walk handles plain datagrams without StoreRates (see decode), in C where
        # it was built (_fastdecode.c), and in C also the payload of a datagram that is one
        # Sign part (verified) or one Encrypt part (decrypted)
        self._plain = self.parser.level == 0
        self._c = _fastdecode is not None
        self._fast = not store_rates and (self._plain or (self._c and password_of is not None))
        self._cplans: dict = {}  # the C walk's plans, by the key it makes
        self._fplans: dict = {}
        # the fused walk's cached runs (see _decode_fast)
        self._state_ids: dict = {}  # raw names and interval -> state number
        self._states: list = []  # state number -> raw names and interval
        self._state_runs: list = []  # state number -> {run bytes: (state number after, plan)}
        self._nruns = 0

    def decode(self, data: bytes) -> tuple[list[str], list[PacketError]]:
        """Decode one datagram into line texts and the errors found in it."""
        # Strategy: a clean plain datagram (the usual case) takes the fused walk below,
        # which makes the lines as it walks (no records in between).  Anything it does not
        # handle itself (security levels, StoreRates, Sign/Encrypt parts, notifications,
        # unknown parts, any error) sends the whole datagram to the general path, which
        # gives the same lines for clean datagrams (tests/bridges/collectd/
        # test_collectd_fastpath.py and test_collectd_fastdecode.py check the paths agree).
        # `_fast` False turns every fused walk off: the general path alone.
        if self._fast and isinstance(data, bytes):
            if self._c:
                got = self._decode_c(data)
                if got is not None:
                    return got
            elif self._plain:
                lines = self._decode_fast(data)
                if lines is not None:
                    return lines, []
        return self._decode_general(data)

    def _decode_c(self, buf: bytes):
        """The fused walk in C (_fastdecode.walk): (lines, []) for a clean plain datagram or
        a clean signed or encrypted one, or None (nothing counted) if it needs the general
        path."""
        # Strategy: the C walk makes the lines of value lists whose plan it is given (keyed
        # by the raw name parts, the kinds and the interval); a value list it has no plan
        # for sends its datagram through the general path once (which makes and caches
        # LineMaker's plan, counting as it always does, in the order it always does), and
        # its plan for C is then made from LineMaker's cache.
        plans = self._cplans
        if len(plans) > 200_000:
            plans.clear()
        got = _fastdecode.walk(buf, plans) if self._plain else None
        secured = None
        if got is None:
            if buf[:1] != b"\2" or self.parser.password_of is None:
                return None
            inner = self._secured_payload(buf)
            if inner is None:
                return None
            payload, secured = inner
            got = _fastdecode.walk(payload, plans)
            if got is None:
                return None
        if type(got) is list:  # value lists without a plan
            result = self._decode_general(buf)
            for *rawkey, key in got:
                plan = self._c_plan(rawkey)
                if plan is not False:
                    plans[key] = plan
            return result
        lines, nvl, nan = got
        self._count_walk(nan, nvl, len(lines))
        if secured:
            self.counts[secured] = self.counts.get(secured, 0) + 1
        return lines, []

    def _secured_payload(self, buf: bytes):
        """(payload, "signed_packets" or "encrypted_packets") of a datagram that is one Sign
        part with a signature that verifies, then the payload (at security level none or
        sign), or one Encrypt part that decrypts (any level); None for anything else,
        which the general path (PacketParser._signed / _encrypted) handles and reports."""
        ptype, plen = _HEAD.unpack_from(buf) if len(buf) >= 4 else (None, 0)
        if plen < 4 or plen > len(buf):
            return None
        password_of = self.parser.password_of
        if ptype == TYPE_SIGN_SHA256 and self.parser.level < 2:
            if plen <= 4 + SIGN_HASH_LEN:
                return None
            user = buf[4 + SIGN_HASH_LEN:plen]
            password = password_of(user)
            payload = buf[plen:]
            if password is None or not verify_signature(buf[4:4 + SIGN_HASH_LEN], user,
                                                        password, payload):
                return None
            return payload, "signed_packets"
        if ptype == TYPE_ENCR_AES256 and plen == len(buf) and plen >= 6:
            ulen = _U16.unpack_from(buf, 4)[0]
            if ulen == 0 or 6 + ulen + IV_LEN + SHA1_LEN > plen:
                return None
            password = password_of(buf[6:6 + ulen])
            if password is None:
                return None
            payload = decrypt(password, buf[6 + ulen:6 + ulen + IV_LEN],
                              buf[6 + ulen + IV_LEN:plen])
            if payload is None:
                return None
            return payload, "encrypted_packets"
        return None

    def _names_of(self, raws) -> list[str] | None:
        """The raw name parts' texts, or None if one is bad (the general path reports it)."""
        names = []
        for raw in raws:
            s, problem = self.parser._string(raw, _NAME_MAX)
            if problem:
                return None
            names.append(s)
        return names

    def _c_plan(self, rawkey):
        """The C walk's plan for a value list (see _fastdecode.c) from LineMaker's cached
        plan: (ascii, prefix, suffix, ...) in UTF-8; None if the general path must always
        handle it (a value count types.db contradicts, StoreRates); False if LineMaker has
        no plan cached (yet)."""
        *raws, counted, interval = rawkey
        kinds = counted[2:]
        names = self._names_of(raws)
        if names is None:
            return None
        key = (*names, kinds, interval)
        if key not in self.maker._cache:
            # never made (an error: value count mismatch) or evicted since: decided by the
            # general path, which runs for this value list's datagram again
            return None if self._plan_fails(key) else False
        pres, sufs, _gauges, rates = self.maker._cache[key]
        if rates is not None or len(pres) != len(kinds):
            return None
        try:
            parts = [t.encode("utf-8") for pair in zip(pres, sufs) for t in pair]
        except UnicodeEncodeError:  # a lone surrogate (a prefix from a byte command line)
            return None
        return (all(p.isascii() for p in parts), *parts)

    def _plan_fails(self, key) -> bool:
        """True if LineMaker drops a value list of this identity (its plan is None)."""
        host, plugin, pinst, type_, tinst, kinds, interval = key
        return self.maker._plan(ValueList(host, plugin, pinst, type_, tinst, 1.0, interval,
                                          kinds, ()), [], {}) is None

    def _decode_fast(self, buf: bytes) -> list[str] | None:
        """The fused walk: lines for a clean plain datagram, or None (nothing counted) if
        the datagram needs the general path."""
        # Strategy: the name parts are kept as their raw payloads (NUL included) and the
        # plan of an identifier is cached under the raw names, so a name part costs one
        # slice; the names are decoded and checked (as PacketParser does) only when an
        # identifier is first seen.  An unset name is b"\0", which decodes to "" as the
        # general path's unset name is.
        #
        # Most value lists after the first of a datagram are written by collectd's
        # network plugin as TIME_HR, the name parts that changed, VALUES.  Everything in
        # such a value list but the time and the values repeats from interval to interval,
        # so the bytes between them (the "run": name parts, VALUES header, value kinds)
        # together with the names in force before it (a state number) are a cache key for
        # the names after it and the value list's plan.  The run ends at the first
        # b"\0\6\0" after the time (a VALUES header of fewer than 28 values); the run is
        # checked part by part by length the first time it is seen (_run_plan), so a
        # cached run is one whose parts end exactly there.  Anything else takes the part
        # by part walk below, which is exact for any layout.
        if self._nruns > 100_000 or len(self._states) > 100_000:
            self._state_ids.clear()
            self._states.clear()
            self._state_runs.clear()
            self._nruns = 0
        host = plugin = pinst = type_ = tinst = b"\0"
        time = 0.0
        interval = 0.0
        ts = None  # the time as line text, made when the first value needs it
        sid = -1  # the number of the names (and interval) in force; -1: not looked up
        stale = False  # the names above are older than sid (a cached run was taken)
        at_vl = True  # a value list may start here
        pos = 0
        end = len(buf)
        last = end - 4
        head = _HEAD.unpack_from
        u64 = _U64.unpack_from
        u16 = _U16.unpack_from
        startswith = buf.startswith
        find = buf.find
        hr = _HR
        fplans = self._fplans
        state_runs = self._state_runs
        out = []
        append = out.append
        nvl = 0
        nan = 0
        while pos <= last:
            if at_vl:
                fplan = None
                if pos <= end - 12 and startswith(b"\0\x08\0\x0c", pos):  # TIME_HR, ...
                    start = pos + 12
                    t = u64(buf, pos + 4)[0] * hr
                else:  # a value list with the time of the one before
                    start = pos
                    t = time
                vpos = find(b"\0\x06\0", start)
                if 0 < vpos <= end - 6 and t:
                    nxt = vpos + u16(buf, vpos + 2)[0]
                    voff = vpos + 6 + (nxt - vpos - 6) // 9
                    if sid < 0:
                        sid = self._state_id((host, plugin, pinst, type_, tinst, interval))
                    run = buf[start:voff]
                    got = state_runs[sid].get(run)
                    if got is None:
                        got = self._run_plan(sid, run)
                    if got is not None and nxt <= end:
                        sid, fplan = got
                        stale = True
                        if t is not time or ts is None:
                            time = t
                            ts = str(int(t)) if t.is_integer() else repr(t)
                if fplan is None:
                    at_vl = False
                    if stale:
                        host, plugin, pinst, type_, tinst, interval = self._states[sid]
                        stale = False
                    continue
            else:
                ptype, plen = head(buf, pos)
                if plen < 4 or plen > end - pos:
                    return None
                nxt = pos + plen
                if ptype == 6:
                    # the value count follows from the length; the count field is part of
                    # the plan key (with the kinds), so a plan exists only for a count that
                    # agrees
                    n = (plen - 6) // 9
                    if n <= 0 or plen != 6 + 9 * n:
                        return None
                    voff = nxt - 8 * n
                    key = (host, plugin, pinst, type_, tinst, buf[pos + 4:voff], interval)
                    fplan = fplans.get(key)
                    if fplan is None:
                        fplan = self._fast_plan(key, time)
                        if fplan is None:
                            return None
                    if ts is None:
                        if not time:
                            return None
                        ts = str(int(time)) if time.is_integer() else repr(time)
                    at_vl = True
                else:
                    if ptype == 8:
                        if plen != 12:
                            return None
                        time = u64(buf, pos + 4)[0] * hr
                        ts = None
                    elif ptype <= 5 and ptype != 1:
                        # a name part the general path would report (empty, no NUL at the
                        # end, longer than DATA_MAX_NAME_LEN) must be reported even when a
                        # good part replaces it before the next VALUES part
                        if plen == 4 or plen > 4 + _NAME_MAX or buf[nxt - 1]:
                            return None
                        if ptype == 5:
                            tinst = buf[pos + 4:nxt]
                        elif ptype == 3:
                            pinst = buf[pos + 4:nxt]
                        elif ptype == 4:
                            type_ = buf[pos + 4:nxt]
                        elif ptype == 2:
                            plugin = buf[pos + 4:nxt]
                        else:
                            host = buf[pos + 4:nxt]
                        sid = -1
                    elif plen != 12:
                        return None
                    elif ptype == 9:
                        interval = u64(buf, pos + 4)[0] * hr
                        sid = -1
                    elif ptype == 1:
                        time = float(u64(buf, pos + 4)[0])
                        ts = None
                    elif ptype == 7:
                        interval = float(u64(buf, pos + 4)[0])
                        sid = -1
                    else:
                        return None
                    pos = nxt
                    continue
            # one value list: fplan, the values at voff, the time text ts
            unpack, single, pre, suf, pres, sufs, kinds = fplan
            nvl += 1
            if single == 1:  # one integer value: the common case
                append(f"{pre}{unpack(buf, voff)[0]} {ts}{suf}")
            elif single == 2:  # one gauge
                v = unpack(buf, voff)[0]
                if v - v != 0.0:  # NaN (collectd's "U") or infinite
                    nan += 1
                elif v.is_integer() and -1e16 < v < 1e16:
                    append(f"{pre}{int(v)} {ts}{suf}")
                else:
                    append(f"{pre}{v!r} {ts}{suf}")
            elif single == 3:  # several integer values
                for p, v, s in zip(pres, unpack(buf, voff), sufs):
                    append(f"{p}{v} {ts}{s}")
            else:
                for p, v, s, k in zip(pres, unpack(buf, voff), sufs, kinds):
                    if k == 1:
                        if v - v != 0.0:  # NaN (collectd's "U") or infinite
                            nan += 1
                            continue
                        v = str(int(v)) if v.is_integer() and -1e16 < v < 1e16 else repr(v)
                    append(f"{p}{v} {ts}{s}")
            pos = nxt
        if pos < end:
            return None
        self._count_walk(nan, nvl, len(out))
        return out

    def _count_walk(self, nan: int, nvl: int, nlines: int) -> None:
        """A datagram a fused walk (C or Python) decoded, counted as the general path counts
        it (the same keys in the same order)."""
        counts = self.counts
        if nan:
            counts["nan_values"] = counts.get("nan_values", 0) + nan
        counts["datagrams"] = counts.get("datagrams", 0) + 1
        counts["value_lists"] = counts.get("value_lists", 0) + nvl
        counts["notifications"] = counts.get("notifications", 0)
        counts["lines"] = counts.get("lines", 0) + nlines

    def _state_id(self, names: tuple) -> int:
        """The number of a (host, plugin, plugin instance, type, type instance, interval)
        state of the fused walk (raw names)."""
        sid = self._state_ids.get(names)
        if sid is None:
            sid = self._state_ids[names] = len(self._states)
            self._states.append(names)
            self._state_runs.append({})
        return sid

    def _run_plan(self, sid: int, run: bytes):
        """(state after, plan) for a run (see _decode_fast) after state `sid`, cached; None
        if the run is not name and interval parts ending in a VALUES header at its first
        b"\\0\\6\\0", or its value list needs the part by part walk."""
        host, plugin, pinst, type_, tinst, interval = self._states[sid]
        vpos = run.find(b"\0\x06\0")
        pos = 0
        while pos < vpos:
            if vpos - pos < 4:
                return None
            ptype, plen = _HEAD.unpack_from(run, pos)
            nxt = pos + plen
            if plen < 4 or nxt > vpos:
                return None
            if ptype <= 5 and ptype != 1:
                if plen == 4 or plen > 4 + _NAME_MAX or run[nxt - 1]:
                    return None
                raw = run[pos + 4:nxt]
                if ptype == 0:
                    host = raw
                elif ptype == 2:
                    plugin = raw
                elif ptype == 3:
                    pinst = raw
                elif ptype == 4:
                    type_ = raw
                else:
                    tinst = raw
            elif ptype in (7, 9) and plen == 12:
                v = _U64.unpack_from(run, pos + 4)[0]
                interval = v * _HR if ptype == 9 else float(v)
            else:
                return None
            pos = nxt
        if pos != vpos or vpos < 0 or len(run) < vpos + 6:
            return None
        plen = _U16.unpack_from(run, vpos + 2)[0]
        n = (plen - 6) // 9
        if n <= 0 or plen != 6 + 9 * n or len(run) != vpos + 6 + n:
            return None
        rawkey = (host, plugin, pinst, type_, tinst, run[vpos + 4:], interval)
        fplan = self._fplans.get(rawkey)
        if fplan is None:
            fplan = self._fast_plan(rawkey, 1.0)
            if fplan is None:
                return None
        got = self._state_runs[sid][run] = (
            self._state_id((host, plugin, pinst, type_, tinst, interval)), fplan)
        self._nruns += 1
        return got

    def _fast_plan(self, rawkey, time):
        """The fused walk's plan for an identifier (names still raw): LineMaker's plan (made
        and cached the way LineMaker.lines does, counting unknown types once) in the shape
        the walk wants; None if the general path must handle it (a bad or missing name, an
        unknown kind code, a value count types.db contradicts)."""
        *raws, counted, interval = rawkey
        kinds = counted[2:]
        if _U16.unpack_from(counted)[0] != len(kinds):
            return None  # a wrong value count: reported by the general path
        names = self._names_of(raws)
        if names is None:
            return None
        host, plugin, pinst, type_, tinst = names
        if not (host and plugin and type_ and time):
            return None
        unpack = self.parser._unpackers.get(kinds)
        if unpack is None:
            return None  # unknown kind code, or first sight: the general path makes it
        key = (host, plugin, pinst, type_, tinst, kinds, interval)
        cache = self.maker._cache
        plan = cache.get(key)
        if plan is None:
            plan = self.maker._plan(ValueList(host, plugin, pinst, type_, tinst, time,
                                              interval, kinds, ()), [], self.counts)
            if plan is None:
                return None  # an error: reported by the general path
            if len(cache) > 200_000:
                cache.clear()
            cache[key] = plan
        pres, sufs, gauges, rates = plan
        if rates is not None:
            return None
        if len(kinds) == 1:
            fplan = (unpack, 2 if gauges else 1, pres[0], sufs[0], pres, sufs, kinds)
        else:
            fplan = (unpack, 4 if gauges else 3, None, None, pres, sufs, kinds)
        if len(self._fplans) > 200_000:
            self._fplans.clear()
        self._fplans[rawkey] = fplan
        return fplan

    def _decode_general(self, data: bytes) -> tuple[list[str], list[PacketError]]:
        """Any datagram: PacketParser records, then LineMaker lines."""
        res = self.parser.parse(data)
        counts = self.counts
        lines = self.maker.lines(res.values, res.errors, counts)
        for n in res.notifications:
            lines.append(self.maker.notification_line(n))
        counts["datagrams"] = counts.get("datagrams", 0) + 1
        counts["value_lists"] = counts.get("value_lists", 0) + len(res.values)
        counts["notifications"] = counts.get("notifications", 0) + len(res.notifications)
        counts["lines"] = counts.get("lines", 0) + len(lines)
        for k, v in res.counts.items():
            counts[k] = counts.get(k, 0) + v
        for e in res.errors:
            counts[e.kind] = counts.get(e.kind, 0) + 1
        if res.errors:
            counts["bad_datagrams"] = counts.get("bad_datagrams", 0) + 1
        return lines, res.errors


# --- encoding (what collectd's client does; for tests, benchmarks and the exec round trip) ---
def _part_string(ptype: int, s: str) -> bytes:
    b = s.encode("utf-8") + b"\0"
    return _HEAD.pack(ptype, 4 + len(b)) + b


def _part_u64(ptype: int, v: int) -> bytes:
    return _HEAD.pack(ptype, 12) + _U64.pack(v)


def encode_values(host: str, plugin: str, plugin_instance: str, type_: str, type_instance: str,
                  time: float, interval: float, kinds, values) -> bytes:
    """The parts of one value list, with high-resolution time and interval (collectd 5)."""
    out = [_part_string(TYPE_HOST, host), _part_u64(TYPE_TIME_HR, round(time * (1 << 30))),
           _part_u64(TYPE_INTERVAL_HR, round(interval * (1 << 30))),
           _part_string(TYPE_PLUGIN, plugin)]
    if plugin_instance:
        out.append(_part_string(TYPE_PLUGIN_INSTANCE, plugin_instance))
    out.append(_part_string(TYPE_TYPE, type_))
    if type_instance:
        out.append(_part_string(TYPE_TYPE_INSTANCE, type_instance))
    kinds = bytes(kinds)
    body = [_HEAD.pack(TYPE_VALUES, 6 + 9 * len(kinds)), _U16.pack(len(kinds)), kinds]
    for k, v in zip(kinds, values):
        body.append(struct.pack("<d", v) if k == 1 else struct.pack(">q" if k == 2 else ">Q", v))
    return b"".join(out + body)


def encode_notification(host: str, plugin: str, type_: str, time: float, severity: int,
                        message: str) -> bytes:
    """The parts of one notification."""
    return b"".join([_part_string(TYPE_HOST, host), _part_u64(TYPE_TIME_HR, round(time * (1 << 30))),
                     _part_string(TYPE_PLUGIN, plugin), _part_string(TYPE_TYPE, type_),
                     _part_u64(TYPE_SEVERITY, severity), _part_string(TYPE_MESSAGE, message)])


def sign_packet(payload: bytes, user: str, password: str) -> bytes:
    """A signed datagram: Sign part + payload."""
    from .security import sign_mac
    u = user.encode("utf-8")
    mac = sign_mac(u, password.encode("utf-8"), payload)
    return _HEAD.pack(TYPE_SIGN_SHA256, 4 + SIGN_HASH_LEN + len(u)) + mac + u + payload


def encrypt_packet(payload: bytes, user: str, password: str, iv: bytes) -> bytes:
    """An encrypted datagram: one Encrypt part holding the payload."""
    from .security import encrypt
    u = user.encode("utf-8")
    ct = encrypt(password.encode("utf-8"), iv, payload)
    return (_HEAD.pack(TYPE_ENCR_AES256, 6 + len(u) + IV_LEN + len(ct)) + _U16.pack(len(u))
            + u + iv + ct)
