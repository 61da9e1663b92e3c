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

import gc
import hashlib
import re
from typing import Iterable, Iterator, NamedTuple

try:  # the optional C speed-up of group_chunk (core/_fastline.c)
    from . import _fastline
except ImportError:  # built without a compiler: the Python path gives the same result
    _fastline = None

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
_NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
# Annotation values: everything outside this set is percent-encoded (UTF-8).
_ANN_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                      b"-_.~:/@+,;!*()[]{}<>|^$#'?&\"\\`")
_PCT = {b: (chr(b) if b in _ANN_SAFE else f"%{b:02X}") for b in range(256)}
_MAX_SERIES = 4096

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
    # float() also reads '1_000', ' 1', 'Infinity' and non-ASCII digits; the spec does not
    if not field:
        raise LineError(f"empty {what}", text)
    if not _NUMBER_RE.match(field):
        low = field.lower().lstrip("+-")
        if low in ("nan", "inf", "infinity"):
            raise LineError(f"{what} is not finite", text)
        raise LineError(f"{what} is not a number", text)
    v = float(field)
    if v - v != 0.0:  # 1e999
        raise LineError(f"{what} is not finite", text)
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


_tnew = tuple.__new__
_NUMCH = "0123456789.eE+-"
_BIG = 1.7976931348623157e308
_KNOWN_KEYS = frozenset({"mtype", "unit", "warn", "crit", "min", "max", "interval", "output"})


def decode(text: str) -> Line:
    """Decode one line (without its newline).  Raises LineError naming the problem."""
    # Hot path: a known series and plain numbers.  Anything unusual falls through to
    # _decode_checked, which re-does the work slowly and names the exact problem.
    fields = text.split(" ")
    if len(fields) >= 3:
        series, f1, f2 = fields[0], fields[1], fields[2]
        if series in _valid_series and not f1.strip(_NUMCH) and not f2.strip(_NUMCH):
            try:
                value = float(f1)
                ts = float(f2)
            except ValueError:
                pass
            else:
                if -_BIG <= value <= _BIG and 0 <= ts <= _BIG:
                    if len(fields) == 3:
                        return _tnew(Line, (series, value, ts, None))
                    meta = _annotations(text[len(series) + len(f1) + len(f2) + 3:], text)
                    if meta is not None:
                        return _tnew(Line, (series, value, ts, meta))
    return _decode_checked(text, fields)


_ann_cache: dict[str, dict] = {}  # annotation text -> parsed (they repeat: "mtype=derive unit=B")


def _annotations(tail: str, text: str) -> dict | None:
    """The annotations `tail` (the text after the timestamp) of line `text`, or None if any
    is malformed (the slow path explains)."""
    meta = _ann_cache.get(tail)
    if meta is not None:
        return meta.copy()
    meta = {}
    for ann in tail.split(" "):
        key, eq, val = ann.partition("=")
        if not eq or key in meta or (key not in _KNOWN_KEYS and not _ANN_KEY_RE.match(key)):
            return None
        if "%" in val:
            try:
                val = _unquote(val, text)
            except LineError:
                return None
        meta[key] = val
    mtype = meta.get("mtype")
    if mtype is not None and mtype not in MTYPES:
        return None
    if len(tail) < 200:  # long texts (plugin output) rarely repeat
        if len(_ann_cache) >= 10_000:
            _ann_cache.clear()
        _ann_cache[tail] = meta.copy()
    return meta


def _decode_checked(text: str, fields: list) -> Line:
    nf = len(fields)
    if nf < 3:
        if not text.strip():
            raise LineError("empty line", text)
        raise LineError(f"expected at least 3 fields, got {nf}", text)
    series = fields[0]
    if series not in _valid_series:
        _check_series(series, text)
    value = _number(fields[1], "value", text)
    ts = _number(fields[2], "timestamp", text)
    if ts < 0:
        raise LineError("timestamp is negative", text)
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


_CTRL_WS = ("\t", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f")


def decode_batch(text: str, errors: list | None = None) -> list[Line]:
    """Decode many lines; a bad line is appended to `errors` (as LineError) and skipped.

    Strategy: what float() accepts beyond the spec (non-ASCII digits, surrounding whitespace,
    underscores) is ruled out once for the whole text where possible, so the per-line hot
    path is a split, a dict lookup and two float() calls; timestamps, which repeat within a
    batch, are parsed once per distinct string.
    """
    # The cyclic GC would scan the young tuples this loop makes every 700 allocations;
    # none of them can be part of a cycle, so it is paused for the loop.
    gc_was_on = gc.isenabled()
    if gc_was_on:
        gc.disable()
    try:
        return _decode_batch(text, errors, None)
    finally:
        if gc_was_on:
            gc.enable()


def group_by_topic(text: str, errors: list | None = None) -> dict[str, list[str]]:
    """Validate many lines and group the good ones, as text, by bus topic (for senders);
    a bad line is appended to `errors` and skipped."""
    grouped: dict[str, list[str]] = {}
    _decode_batch(text, errors, grouped)
    return grouped


def group_chunk(data: bytes, errors: list | None = None) -> list[tuple[str, str, int]]:
    """Validate raw input (UTF-8 bytes, lines separated by newlines) and group the good
    lines by topic: `[(topic, lines joined by newlines, number of lines)]`; a bad line is
    appended to `errors` and skipped.

    The C module `_fastline` (built from core/_fastline.c when a compiler is there) does it
    for input in which every line is in a conservative subset of the grammar; for anything
    else, or without the module, group_by_topic does it line by line, with the same result.
    """
    if _fastline is not None:
        groups = _fastline.group(data)
        if groups is not None:
            return groups
    grouped = group_by_topic(data.decode("utf-8", "replace"), errors)
    return [(topic, "\n".join(lines), len(lines)) for topic, lines in grouped.items()]


def vouched(data: bytes) -> bool:
    """True if the C fast path vouches that every line of `data` (UTF-8 bytes, lines
    separated by newlines, empty lines ignored) is a valid line; False only means "not
    known": check line by line."""
    return _fastline is not None and _fastline.check(data)


def _decode_batch(text: str, errors: list | None, grouped: dict | None) -> list[Line]:
    out = []
    append = out.append
    valid = _valid_series
    clean = text.isascii() and not any(c in text for c in _CTRL_WS)
    underscores = "_" in text
    tsc: dict[str, float] = {}
    lists: dict[str, list] = {}  # series -> its topic's list in `grouped`
    for raw in text.split("\n"):
        fields = raw.split(" ")
        nf = len(fields)
        if clean and nf >= 3:
            series, f1, f2 = fields[0], fields[1], fields[2]
            if series in valid and not (underscores and ("_" in f1 or "_" in f2)):
                ts = tsc.get(f2)
                try:
                    value = float(f1)
                    if ts is None:
                        ts = float(f2)
                        if 0 <= ts <= _BIG:
                            tsc[f2] = ts
                        else:
                            ts = None
                except ValueError:
                    ts = None
                if ts is not None and -_BIG <= value <= _BIG:
                    if grouped is not None:
                        if nf == 3 or _annotations(
                                raw[len(series) + len(f1) + len(f2) + 3:], raw) is not None:
                            g = lists.get(series)
                            if g is None:
                                g = lists[series] = grouped.setdefault(valid[series], [])
                            g.append(raw)
                            continue
                    elif nf == 3:
                        append(_tnew(Line, (series, value, ts, None)))
                        continue
                    else:
                        meta = _annotations(raw[len(series) + len(f1) + len(f2) + 3:], raw)
                        if meta is not None:
                            append(_tnew(Line, (series, value, ts, meta)))
                            continue
        if not raw or (raw[-1] == "\r" and len(raw) == 1):
            continue
        if raw[-1] == "\r":  # CRLF input
            raw = raw[:-1]
        try:
            line = decode(raw)
        except LineError as e:
            if errors is not None:
                errors.append(e)
            continue
        if grouped is None:
            append(line)
        else:
            grouped.setdefault(_valid_series.get(line.series) or topic_of(line.series),
                               []).append(raw)
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
