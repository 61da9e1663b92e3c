"""The monbus line: Graphite's tagged plaintext plus percent-encoded annotations.

    <path>[;<tag>=<value>]... <value> <timestamp>[ <key>=<value>]...

The specification is docs/line-syntax.md; this module is its only implementation.
Everything here is pure: no I/O, no clock, no logging.

Strategy for speed: a monitoring stream repeats the same few thousand series names over and
over, so the (comparatively expensive) validation of the first field is remembered in a bounded
cache of names already known to be valid.  The hot path of `decode` is then one `split`, two
`float` calls, a finiteness check and a dict lookup.
"""
from __future__ import annotations

import hashlib
import re
from typing import Iterable, Iterator, NamedTuple

__all__ = [
    "Line", "LineError", "decode", "encode", "decode_batch", "format_number",
    "sanitize", "Sanitizer", "topic_of", "MTYPES", "STATE_NAMES",
]

#: metric types a line may carry in its `mtype` annotation
MTYPES = frozenset({"gauge", "counter", "derive", "absolute", "state"})
#: Nagios service states and host states, as availability values
STATE_NAMES = {0: "OK", 1: "WARNING", 2: "CRITICAL", 3: "UNKNOWN"}
HOST_STATE_NAMES = {0: "UP", 1: "DOWN", 2: "UNREACHABLE"}

_QUOTE_LIMIT = 120


def _quote(text) -> str:
    """repr() of the input, truncated, for error messages."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text)
    r = repr(text)
    if len(r) > _QUOTE_LIMIT:
        r = r[:_QUOTE_LIMIT - 3] + "..."
    return r


class LineError(ValueError):
    """A line that does not follow the syntax; the message names the problem and quotes it."""

    def __init__(self, problem: str, text):
        self.problem = problem
        self.text = text
        super().__init__(f"{problem}: {_quote(text)}")


class Line(NamedTuple):
    """One decoded line.  `series` is the first field exactly as carbon sees it."""
    series: str
    value: float
    timestamp: float
    meta: dict | None = None

    @property
    def path(self) -> str:
        """The dotted path, without tags."""
        return self.series.split(";", 1)[0]

    @property
    def tags(self) -> dict:
        """Tags as a dict, in the order they appear."""
        parts = self.series.split(";")
        return dict(p.split("=", 1) for p in parts[1:])

    @property
    def topic(self) -> str:
        """The bus topic: `<source>.<host>.`"""
        return topic_of(self.series)

    def carbon(self) -> str:
        """The first three fields: a carbon plaintext line (no newline)."""
        return f"{self.series} {format_number(self.value)} {format_number(self.timestamp)}"


# --- characters -----------------------------------------------------------------------------
# A path component is any run of printable characters except the separator `.`, the tag
# separator `;`, whitespace and control characters.  Tag keys additionally exclude `!^=`
# (carbon's rule), tag values exclude nothing more but may not start with `~`.
_WS_CTRL = "\x00-\x20\x7f-\x9f\u2028\u2029"
_PATH_RE = re.compile(rf"[^{_WS_CTRL}.;]+(?:\.[^{_WS_CTRL}.;]+)*\Z")
_TAG_KEY_RE = re.compile(rf"[^{_WS_CTRL};!^=]+\Z")
_TAG_VALUE_RE = re.compile(rf"[^{_WS_CTRL};~][^{_WS_CTRL};]*\Z")
_ANN_KEY_RE = re.compile(r"[a-z][a-z0-9_]*\Z")
_NUMBER_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\Z")
# Annotation values: everything outside this set is percent-encoded (UTF-8).
_ANN_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                      b"-_.~:/@+,;!*()[]{}<>|^$#'?&\"\\`")
_PCT = {b: (chr(b) if b in _ANN_SAFE else f"%{b:02X}") for b in range(256)}
_MAX_SERIES = 4096
_END = frozenset("0123456789.")

_valid_series: dict[str, str] = {}  # series -> topic, for names already validated
_CACHE_MAX = 200_000


def _check_series(series: str, text) -> str:
    """Validate a series name; return its topic.  Raises LineError."""
    if not series:
        raise LineError("empty path", text)
    if len(series) > _MAX_SERIES:
        raise LineError(f"series name longer than {_MAX_SERIES} characters", text)
    path, _, tagpart = series.partition(";")
    if not path:
        raise LineError("empty path", text)
    if not _PATH_RE.match(path):
        if path.startswith(".") or path.endswith(".") or ".." in path:
            raise LineError("empty path component", text)
        raise LineError("invalid character in path", text)
    if tagpart or series.endswith(";"):
        for tag in tagpart.split(";"):
            key, eq, val = tag.partition("=")
            if not eq:
                raise LineError("tag without '='", text)
            if not key:
                raise LineError("empty tag key", text)
            if not val:
                raise LineError("empty tag value", text)
            if not _TAG_KEY_RE.match(key):
                raise LineError(f"invalid character in tag key {key!r}", text)
            if not _TAG_VALUE_RE.match(val):
                if val.startswith("~"):
                    raise LineError("tag value starts with '~'", text)
                raise LineError(f"invalid character in tag value {val!r}", text)
    dot = path.find(".")
    if dot < 0:
        raise LineError("path needs at least <source>.<host>", text)
    dot2 = path.find(".", dot + 1)
    topic = path + "." if dot2 < 0 else path[:dot2 + 1]
    if len(_valid_series) >= _CACHE_MAX:
        _valid_series.clear()
    _valid_series[series] = topic
    return topic


def topic_of(series: str) -> str:
    """The bus topic of a series name (validating it if not seen before)."""
    topic = _valid_series.get(series)
    if topic is None:
        topic = _check_series(series, series)
    return topic


def _number(field: str, what: str, text) -> float:
    try:
        v = float(field)
    except ValueError:
        raise LineError(f"{what} is not a number", text) from None
    if v - v != 0.0:  # NaN or +-inf
        raise LineError(f"{what} is not finite", text)
    if not _NUMBER_RE.match(field):
        raise LineError(f"{what} is not a plain number", text)
    return v


def _unquote(value: str, text) -> str:
    """Percent-decoding; a '%' not followed by two hex digits is kept as it is (so a
    hand-written `unit=%` works), which never changes what `encode` wrote."""
    if "%" not in value:
        return value
    raw = value.encode("utf-8")
    out = bytearray()
    i, n = 0, len(raw)
    while i < n:
        c = raw[i]
        if c == 0x25 and _is_hex2(raw[i + 1:i + 3]):
            out.append(int(raw[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(c)
            i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise LineError("annotation is not UTF-8 after unescaping", text) from None


_HEX = frozenset(b"0123456789abcdefABCDEF")


def _is_hex2(b: bytes) -> bool:
    return len(b) == 2 and b[0] in _HEX and b[1] in _HEX


def _quote_ann(value: str) -> str:
    b = value.encode("utf-8")
    if all(c in _ANN_SAFE for c in b):
        return value
    return "".join(_PCT[c] for c in b)


def decode(text: str) -> Line:
    """Decode one line (without its newline).  Raises LineError naming the problem."""
    fields = text.split(" ")
    nf = len(fields)
    if nf < 3:
        if not text.strip():
            raise LineError("empty line", text)
        raise LineError(f"expected at least 3 fields, got {nf}", text)
    series = fields[0]
    if series not in _valid_series:
        _check_series(series, text)
    try:
        value = float(fields[1])
        ts = float(fields[2])
    except ValueError:
        value = _number(fields[1], "value", text)
        ts = _number(fields[2], "timestamp", text)
    if value - value != 0.0:
        raise LineError("value is not finite", text)
    if ts - ts != 0.0:
        raise LineError("timestamp is not finite", text)
    if ts < 0:
        raise LineError("timestamp is negative", text)
    # float() also reads '1_000', 'Infinity' and non-ASCII digits; the spec does not
    f1 = fields[1]
    if f1[-1] not in _END or "_" in f1 or not f1.isascii():
        _number(f1, "value", text)
    f2 = fields[2]
    if f2[-1] not in _END or "_" in f2 or not f2.isascii():
        _number(f2, "timestamp", text)
    if nf == 3:
        return Line(series, value, ts)
    meta = {}
    for ann in fields[3:]:
        key, eq, val = ann.partition("=")
        if not eq:
            raise LineError(f"annotation without '=': {ann[:40]!r}", text)
        if not _ANN_KEY_RE.match(key):
            raise LineError(f"invalid annotation key {key[:40]!r}", text)
        if key in meta:
            raise LineError(f"duplicate annotation {key!r}", text)
        meta[key] = _unquote(val, text)
    mtype = meta.get("mtype")
    if mtype is not None and mtype not in MTYPES:
        raise LineError(f"unknown mtype {mtype[:20]!r}", text)
    return Line(series, value, ts, meta)


def format_number(v: float) -> str:
    """Shortest text that float() reads back as exactly `v` (integers without '.0')."""
    if v.is_integer() and -1e16 < v < 1e16:
        return str(int(v))
    return repr(v)


def encode(line: Line) -> str:
    """Encode a Line (validating it).  The inverse of `decode`, byte for byte."""
    series, value, ts, meta = line
    value = float(value)
    ts = float(ts)
    if series not in _valid_series:
        _check_series(series, series)
    if value - value != 0.0:
        raise LineError("value is not finite", f"{series} {value}")
    if ts - ts != 0.0 or ts < 0:
        raise LineError("timestamp is not finite and non-negative", f"{series} {value} {ts}")
    out = f"{series} {format_number(value)} {format_number(ts)}"
    if meta:
        parts = [out]
        for key, val in meta.items():
            if not _ANN_KEY_RE.match(key):
                raise LineError("invalid annotation key", key)
            if key == "mtype" and val not in MTYPES:
                raise LineError("unknown mtype", val)
            if not isinstance(val, str):
                val = format_number(float(val)) if isinstance(val, (int, float)) else str(val)
            parts.append(f"{key}={_quote_ann(val)}")
        out = " ".join(parts)
    return out


def decode_batch(text: str, errors: list | None = None) -> list[Line]:
    """Decode many lines; a bad line is appended to `errors` (as LineError) and skipped."""
    out = []
    append = out.append
    for raw in text.split("\n"):
        if not raw:
            continue
        if raw[-1] == "\r":
            raw = raw[:-1]
            if not raw:
                continue
        try:
            append(decode(raw))
        except LineError as e:
            if errors is not None:
                errors.append(e)
    return out


def iter_decode(lines: Iterable[str], errors: list | None = None) -> Iterator[Line]:
    """Like decode_batch over an iterable of lines (each with or without newline)."""
    for raw in lines:
        raw = raw.rstrip("\r\n")
        if not raw:
            continue
        try:
            yield decode(raw)
        except LineError as e:
            if errors is not None:
                errors.append(e)


# --- turning foreign names into path components ------------------------------------------
_UNSAFE_COMPONENT = re.compile(r"[^\w\-+:@#%]", re.UNICODE)


def sanitize(name: str, replacement: str = "_") -> str:
    """Turn any foreign name into one path component (stateless; may collide, see Sanitizer).

    Every character other than letters, digits, `_ - + : @ # %` becomes `replacement`;
    an empty name becomes the replacement character itself.
    """
    if not name:
        return replacement or "_"
    return _UNSAFE_COMPONENT.sub(replacement, name)


class Sanitizer:
    """`sanitize` that never lets two different foreign names collide silently.

    The first name to produce a given component keeps it; a later, different name that
    sanitises to the same component gets a stable suffix `<replacement>x<8 hex of sha1>` and is
    counted in `collisions` (and passed to `on_collision`, if set).  The mapping is remembered
    (bounded), so a name always gives the same component within a process, and the suffix is
    a pure function of the name, so it is the same across processes and restarts.
    """

    def __init__(self, replacement: str = "_", on_collision=None, max_names: int = 100_000):
        if replacement and not _UNSAFE_COMPONENT.sub("", replacement) == replacement:
            raise ValueError(f"replacement {replacement!r} is not itself a safe character")
        self.replacement = replacement
        self.on_collision = on_collision
        self.collisions = 0
        self._forward: dict[str, str] = {}
        self._owner: dict[str, str] = {}
        self._max = max_names

    def __call__(self, name: str) -> str:
        got = self._forward.get(name)
        if got is not None:
            return got
        comp = sanitize(name, self.replacement)
        owner = self._owner.get(comp)
        if owner is not None and owner != name:
            digest = hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
            comp = f"{comp}{self.replacement or '_'}x{digest}"
            self.collisions += 1
            if self.on_collision:
                self.on_collision(name, owner, comp)
        if len(self._forward) >= self._max:
            self._forward.clear()
            self._owner.clear()
        self._forward[name] = comp
        self._owner.setdefault(comp, name)
        return comp
