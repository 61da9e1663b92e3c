"""Nagios plugin output and performance data, parsed exactly; pure functions, no I/O.

The grammar is the one of the monitoring-plugins development guidelines, section "Performance
data" (https://www.monitoring-plugins.org/doc/guidelines.html#AEN200):

    'label'=value[UOM];[warn];[crit];[min];[max]

- items are separated by spaces; a label with spaces or `=` is quoted with `'`, and a quote
  inside a quoted label is doubled (`'it''s'`);
- trailing fields may be omitted, and a trailing `;` is allowed;
- UOM: none, `s ms us`, `%`, `B KB MB GB TB`, `c` (a continuous counter); plugins also print
  `ns`, `PB EB`, `KiB`..., and anything else (`dBm`, `GBP`), which is kept as it is;
- the value `U` means the plugin could not get a value;
- warn/crit are ranges (guidelines, "Threshold and ranges"): `10` is 0..10, `10:` is 10..inf,
  `~:10` is -inf..10, `10:20`, and `@10:20` alerts *inside* the range.

Beyond the letter of the guidelines, as real plugins print it (each case is in the test corpus):
decimal commas (`1,391ms`, German locales), scientific notation (`1.2e-05`), an unquoted label
with spaces (`a used=4`: taken whole up to the `=`, as Nagflux and PNP4Nagios do), `~` as the
upper end of a range (`10:~`), and check_multi's `name::check::label` prefix, which names the
child check of that item *and of the items after it* until the next prefix.

Units are normalised to the base unit (s, B, %): `0.013ms` becomes `1.3e-05` with `unit=s`.
Decimal prefixes are applied to the decimal text (`0.013e-3`), never by a float multiplication,
so the result is the double nearest to the true value; binary prefixes (KB = 1024 B, as
monitoring-plugins' check_disk means it, and KiB) are exact powers of two.

Nothing here imports the monbus core (its regexes cost ~10 ms to compile): `monbus nagios hook`
runs once per check result and must start fast.  The series-name rule below is the core's
`sanitize` rule; tests/bridges/nagios checks that the two agree.
"""
from __future__ import annotations

import operator
import re

__all__ = ["PerfItem", "Range", "ItemError", "parse_perfdata", "parse_range", "split_output",
           "parse_state", "sanitize", "Namer", "quote", "CheckResult", "LineMaker", "check_lines",
           "parse_record", "record_result", "RecordError", "format_number"]

INF = float("inf")

# --- numbers ---------------------------------------------------------------------------------
# A number as plugins print it: sign, digits with '.' or ',' as the decimal mark, exponent.
_NUM = r"[-+]?(?:\d+(?:[.,]\d*)?|[.,]\d+)(?:[eE][-+]?\d+)?"
_NUM_RE = re.compile(_NUM + r"\Z")
# value + UOM; the UOM is letters (any script: `µs`), `%`, `/` or `°` - never digits, so
# `123_456` and `1800,600,300` are errors, not a number with a strange unit.
_VALUE_RE = re.compile(rf"({_NUM}|U)((?:[^\W\d_]|[%/°])*)\Z")
# one item: a quoted label (quotes doubled inside) or an unquoted one up to the first '='
# (lenient: spaces allowed, as Nagflux and PNP4Nagios read `a used=4`, but then at most 256
# characters, so garbage without any '=' costs linear time, not quadratic), then the data up
# to the next whitespace.
_ITEM_RE = re.compile(r"\s*(?:'((?:[^']|'')*)'|([^'=\s](?:[^=\s]*|[^=]{0,255}?)))=(\S*)")
_WS_RE = re.compile(r"\s*")
_TOKEN_RE = re.compile(r"\S+")


def _number(text: str) -> float:
    """A plugin number (decimal comma allowed) as a float; ValueError if it is not one."""
    if not _NUM_RE.match(text):
        raise ValueError
    return float(text.replace(",", "."))


def _scaled(text: str, shift: int) -> float:
    """float(text * 10**shift), rounded once, from the decimal text (no float product)."""
    text = text.replace(",", ".")
    if not shift:
        return float(text)
    mant, e, exp = text.replace("E", "e").partition("e")
    return float(f"{mant}e{(int(exp) if e else 0) + shift}")


# UOM -> (base unit, decimal shift, binary factor).  Time and bytes per the guidelines plus the
# prefixes plugins print; m/h/d are minutes/hours/days as Icinga 2 reads them.
_UNITS: dict[str, tuple[str, int, float]] = {
    "": ("", 0, 1.0), "%": ("%", 0, 1.0), "c": ("", 0, 1.0),
    "s": ("s", 0, 1.0), "ms": ("s", -3, 1.0), "us": ("s", -6, 1.0), "ns": ("s", -9, 1.0),
    "\u00b5s": ("s", -6, 1.0), "\u03bcs": ("s", -6, 1.0),
    "m": ("s", 0, 60.0), "min": ("s", 0, 60.0), "h": ("s", 0, 3600.0), "d": ("s", 0, 86400.0),
    "B": ("B", 0, 1.0),
}
for _i, _p in enumerate("KMGTPE", 1):
    _UNITS[_p + "B"] = _UNITS[_p + "iB"] = ("B", 0, float(1024 ** _i))
_UNITS["kB"] = _UNITS["kiB"] = ("B", 0, 1024.0)


def _convert(text: str, uom: str) -> float:
    """The number `text` in `uom`, in the base unit of `uom` (unknown units: unchanged)."""
    base = _UNITS.get(uom)
    if base is None:
        return float(text.replace(",", "."))
    _, shift, factor = base
    v = _scaled(text, shift)
    return v * factor if factor != 1.0 else v


_END = frozenset("0123456789.")
# what rstrip takes off a value to find its UOM (ASCII letters and %; anything else, e.g. µs,
# goes through the full parser)
_UOM_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ%/"


def format_number(v: float) -> str:
    """Shortest text float() reads back as exactly `v` (the core's rule, integers without .0)."""
    if v.is_integer() and -1e16 < v < 1e16:
        return str(int(v))
    return repr(v)


# --- ranges ----------------------------------------------------------------------------------
class Range:
    """A Nagios threshold range; `alerts(v)` is the guidelines' rule."""
    __slots__ = ("start", "end", "inside")

    def __init__(self, start: float, end: float, inside: bool = False):
        self.start, self.end, self.inside = start, end, inside

    def alerts(self, value: float) -> bool:
        """True if `value` raises an alert: outside start..end, or inside with '@'."""
        within = self.start <= value <= self.end
        return within if self.inside else not within

    def __str__(self) -> str:
        """Canonical text: `10`, `10:`, `~:10`, `10:20`, `@10:20`."""
        s = "@" if self.inside else ""
        if self.start == -INF:
            s += "~:"
        elif self.start != 0 or self.end == INF:
            s += format_number(self.start) + ":"
        if self.end != INF:
            s += format_number(self.end)
        return s

    def __eq__(self, other):
        return isinstance(other, Range) and (self.start, self.end, self.inside) == (
            other.start, other.end, other.inside)

    def __repr__(self):
        return f"Range({self!s})"


def parse_range(text: str, uom: str = "") -> Range:
    """Parse a threshold range, normalising its ends like a value in `uom`.  ValueError."""
    t = text
    inside = t.startswith("@")
    if inside:
        t = t[1:]
    lo, colon, hi = t.partition(":")
    if not colon:
        lo, hi = "", t
        if not hi:
            raise ValueError(f"empty range {text!r}")
    if lo == "~":
        start = -INF
    elif lo == "":
        start = 0.0
    else:
        if not _NUM_RE.match(lo):
            raise ValueError(f"range start {lo!r} is not a number")
        start = _convert(lo, uom)
    if hi == "" or hi == "~":
        end = INF
    else:
        if not _NUM_RE.match(hi):
            raise ValueError(f"range end {hi!r} is not a number")
        end = _convert(hi, uom)
    if start > end:
        raise ValueError(f"range {text!r} starts after it ends")
    if start != start or end != end or start == INF or end == -INF:
        raise ValueError(f"range {text!r} is not finite")
    return Range(start, end, inside)


# --- items -----------------------------------------------------------------------------------
class PerfItem:
    """One perfdata item, its numbers in the base unit (`value` None for `U`)."""
    __slots__ = ("label", "group", "check", "value", "unit", "counter", "warn", "crit",
                 "min", "max")

    def __init__(self, label, value, unit="", counter=False, warn=None, crit=None, min=None,
                 max=None, group=None, check=None):
        self.label, self.value, self.unit, self.counter = label, value, unit, counter
        self.warn, self.crit, self.min, self.max = warn, crit, min, max
        self.group, self.check = group, check

    def __repr__(self):
        f = [f"{k}={getattr(self, k)!r}" for k in self.__slots__ if getattr(self, k) not in
             (None, "", False)]
        return f"PerfItem({', '.join(f)})"

    def __eq__(self, other):
        return isinstance(other, PerfItem) and all(
            getattr(self, k) == getattr(other, k) for k in self.__slots__)


class ItemError:
    """A perfdata item that was skipped (or a field of it that was dropped), and why."""
    __slots__ = ("item", "problem")

    def __init__(self, item: str, problem: str):
        self.item, self.problem = item, problem

    def __str__(self):
        it = self.item if len(self.item) <= 80 else self.item[:77] + "..."
        return f"perfdata item {it!r}: {self.problem}"

    __repr__ = __str__


def _parse_data(label: str, data: str, errors: list, item_text: str):
    """value[UOM];warn;crit;min;max -> PerfItem or None (error appended)."""
    fields = data.split(";")
    if len(fields) > 5:
        if any(fields[5:]):
            errors.append(ItemError(item_text, f"{len(fields)} fields, at most 5 allowed"))
            return None
    m = _VALUE_RE.match(fields[0])
    if m is None:
        if not fields[0]:
            errors.append(ItemError(item_text, "empty value"))
        else:
            errors.append(ItemError(item_text, f"value {fields[0]!r} is not a number"))
        return None
    num, uom = m.groups()
    base = _UNITS.get(uom)
    if num == "U":
        value = None
    else:
        value = _convert(num, uom)
        if value - value != 0.0:  # overflow to inf (1e999)
            errors.append(ItemError(item_text, f"value {fields[0]!r} is not finite"))
            return None
    unit = uom if base is None else base[0]
    item = PerfItem(label, value, unit, uom == "c")
    n = len(fields)
    for i, name in ((1, "warn"), (2, "crit")):
        if i < n and fields[i]:
            try:
                setattr(item, name, parse_range(fields[i], uom))
            except ValueError as e:
                errors.append(ItemError(item_text, f"{name} threshold dropped: {e}"))
    for i, name in ((3, "min"), (4, "max")):
        if i < n and fields[i]:
            f = fields[i]
            if _NUM_RE.match(f):
                v = _convert(f, uom)
                if v - v == 0.0:
                    setattr(item, name, v)
                    continue
            errors.append(ItemError(item_text, f"{name} dropped: {f!r} is not a number"))
    return item


def parse_perfdata(text: str) -> tuple[list[PerfItem], list[ItemError]]:
    """All items of a perfdata string; malformed ones are skipped and reported, never raised."""
    items: list[PerfItem] = []
    errors: list[ItemError] = []
    group = check = None
    pos, n = 0, len(text)
    match, ws = _ITEM_RE.match, _WS_RE.match
    while True:
        pos = ws(text, pos).end()
        if pos >= n:
            break
        m = match(text, pos)
        if m is None:
            tok = _TOKEN_RE.match(text, pos).group()
            if tok.startswith("'") and "'" not in tok[1:]:
                errors.append(ItemError(text[pos:], "unterminated quoted label"))
                break
            if tok.startswith("="):
                errors.append(ItemError(tok, "empty label"))
            else:
                errors.append(ItemError(tok, "no '=' (expected label=value)"))
            pos += len(tok)
            continue
        quoted, plain, data = m.groups()
        item_text = m.group().strip()
        pos = m.end()
        label = quoted.replace("''", "'") if quoted is not None else plain.rstrip()
        if "::" in label:
            # check_multi: `child::plugin::label` (or `child::label`) starts a new child check
            parts = label.split("::")
            group, check, label = parts[0], (parts[1] if len(parts) > 2 else None), parts[-1]
        if not label.strip():
            errors.append(ItemError(item_text, "empty label"))
            continue
        item = _parse_data(label, data, errors, item_text)
        if item is not None:
            item.group, item.check = group, check
            items.append(item)
    return items, errors


# --- plugin output ---------------------------------------------------------------------------
def split_output(text: str) -> tuple[str, str, str]:
    """(output, long output, perfdata) of a plugin's whole output, split as Nagios does.

    Line 1 is the output up to its first `|`, perfdata after it; the following lines are long
    output until one holds a `|`: text after that `|` and every later line is perfdata too
    (Nagios plugin API, "Plugin Output Spec").  Perfdata pieces are joined by spaces.
    """
    lines = text.replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        return "", "", ""
    first, _, perf = lines[0].partition("|")
    perf_parts = [perf.strip()] if perf.strip() else []
    long_parts: list[str] = []
    in_perf = False
    for ln in lines[1:]:
        if in_perf:
            perf_parts.append(ln.strip())
            continue
        before, bar, after = ln.partition("|")
        if bar:
            if before:
                long_parts.append(before)
            if after.strip():
                perf_parts.append(after.strip())
            in_perf = True
        else:
            long_parts.append(ln)
    return first.strip(), "\n".join(long_parts), " ".join(p for p in perf_parts if p)


_STATE_NAMES = {"OK": 0, "WARNING": 1, "CRITICAL": 2, "UNKNOWN": 3,
                "UP": 0, "DOWN": 1, "UNREACHABLE": 2, "PENDING": None}


def parse_state(text: str | None) -> int | None:
    """A state as Nagios/Icinga write it (`0`..`3`, `OK`, `DOWN`...) as its code; ValueError."""
    if text is None:
        return None
    t = text.strip()
    if not t:
        return None
    if t.isdigit() and len(t) == 1 and t in "0123":
        return int(t)
    code = _STATE_NAMES.get(t.upper(), -1)
    if code == -1:
        raise ValueError(f"unknown state {text[:40]!r} (expected 0-3 or OK/WARNING/CRITICAL/"
                         f"UNKNOWN/UP/DOWN/UNREACHABLE)")
    return code


# --- names -----------------------------------------------------------------------------------
# The core rule (monbus.core.line.sanitize): every character other than letters, digits and
# `_ - + : @ # %` becomes `_`.
_UNSAFE = re.compile(r"[^\w\-+:@#%]")


def sanitize(name: str) -> str:
    """One path component from a foreign name (the core's `sanitize` rule)."""
    return _UNSAFE.sub("_", name) if name else "_"


class Namer:
    """Foreign names -> path components that never collide silently (the core Sanitizer's
    scheme: a later name that sanitises to a taken component gets `_x<8 hex of sha1>`)."""
    __slots__ = ("_forward", "_owner", "_reserved", "collisions", "generation", "_max")

    def __init__(self, reserved=(), max_names: int = 100_000):
        self._forward: dict[str, str] = {}
        self._owner: dict[str, str] = {r: "\0reserved" for r in reserved}
        self._reserved = tuple(reserved)
        self.collisions = 0
        self.generation = 0  # bumped when the mapping is forgotten (callers' caches too)
        self._max = max_names

    def __call__(self, name: str) -> str:
        got = self._forward.get(name)
        if got is not None:
            return got
        comp = _UNSAFE.sub("_", name) if name else "_"
        owner = self._owner.get(comp)
        if owner is not None and owner != name:
            import hashlib  # only on a collision: it costs ms to import
            comp = f"{comp}_x{hashlib.sha1(name.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"
            self.collisions += 1
        if len(self._forward) >= self._max:
            self._forward.clear()
            self._owner = {r: "\0reserved" for r in self._reserved}
            self.generation += 1
        self._forward[name] = comp
        self._owner.setdefault(comp, name)
        return comp


# --- annotations -----------------------------------------------------------------------------
# Bytes that may stay as they are in an annotation value (a subset of the core's safe set, so
# the core decodes exactly what is written here); everything else is %XX of its UTF-8.
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                  b"-_.~:/@+,;!*()[]{}<>|^$#'?&\"\\`")


_ASCII_QUOTE = {c: f"%{c:02X}" for c in range(128) if c not in _SAFE}


def quote(value: str) -> str:
    """Percent-encode an annotation value as the line syntax wants it."""
    if value.isascii():
        # the only printable ASCII characters to escape are space, % and =
        if value.isprintable():  # (for ASCII: no control character)
            return value.replace("%", "%25").replace(" ", "%20").replace("=", "%3D")
        return value.translate(_ASCII_QUOTE)
    return "".join(chr(b) if b in _SAFE else f"%{b:02X}"
                   for b in value.encode("utf-8", "surrogatepass"))


# --- check results -> lines ------------------------------------------------------------------
MAX_OUTPUT = 1024       # characters of `output` kept (the first line)
MAX_LABEL = 512         # longer labels are reported, not sent (a series name has 4096 at most)
MAX_NAME = 1024         # longer host or service names: the check result is refused
MAX_LONG_OUTPUT = 4096  # characters of `long_output` kept


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


class CheckResult:
    """One check result as Nagios hands it over (macros or a perfdata-file record)."""
    __slots__ = ("host", "service", "state", "output", "long_output", "perfdata", "timestamp",
                 "state_type", "tags")

    def __init__(self, host, service=None, state=None, output=None, long_output=None,
                 perfdata="", timestamp=0.0, state_type=None, tags=None):
        self.host, self.service, self.state = host, service, state
        self.output, self.long_output, self.perfdata = output, long_output, perfdata
        self.timestamp, self.state_type, self.tags = timestamp, state_type, tags


class LineMaker:
    """Turns check results into monbus lines, remembering names and annotation suffixes
    across calls (a perfdata file repeats the same few thousand items)."""

    def __init__(self, source: str = "nagios", fast: bool = True):
        self.source = sanitize(source)
        self.hosts = Namer()
        self._services: dict[str, Namer] = {}      # host -> service namer ("host" reserved)
        self._labels: dict[tuple, Namer] = {}       # (host, service) -> label namer
        self._prefix: dict[tuple, tuple] = {}       # (host, service, tags) -> (prefix, topic)
        self._suffix: dict[tuple, str] = {}         # item annotations -> text
        self._spec: dict[tuple, tuple] = {}         # (uom, thresholds text) -> see _make_spec
        self._shapes: list = []                     # [(field names, regex match, plan)]
        self._checks: dict[tuple, list] = {}        # (host, service) -> see _new_check
        self._skeletons: dict[str, object] = {}     # perfdata skeleton regex -> its match
        self._chunk_plans: dict[int, tuple] = {}    # id(shape match) -> see _chunk_plan
        self._chunk_checks: dict[str, list] = {}    # check key (_chunk_plan) -> _checks' entry
        self._rec_t, self._rec_ts = False, ""      # last TIMET text (False: none) and its
                                                    # line text
        self._last_ts: float | None = None
        self._last_ts_text = ""
        self.unknown_values = 0
        self.fast = fast
        self.use_c = True  # the C module, when built (feed; tests switch it off)

    def prefix(self, host: str, service: str | None, tags: str = "") -> tuple[str, str, Namer]:
        """('nagios.<host>.<service>.', topic, label namer) for a check."""
        key = (host, service, tags)
        got = self._prefix.get(key)
        if got is None:
            if len(host) > MAX_NAME or len(service or "") > MAX_NAME:
                raise RecordError(f"host or service name longer than {MAX_NAME} characters: "
                                  f"{(host + '/' + (service or ''))[:60]!r}...")
            h = self.hosts(host)
            sn = self._services.get(h)
            if sn is None:
                sn = self._services[h] = Namer(reserved=("host",))
            s = "host" if service is None else sn(service)
            labels = self._labels.get((h, s))
            if labels is None:
                labels = self._labels[(h, s)] = Namer(reserved=("state",))
            got = (f"{self.source}.{h}.{s}.", f"{self.source}.{h}.", labels)
            if len(self._prefix) > 100_000:
                self._prefix.clear()
                self._checks.clear()
                self._chunk_checks.clear()
            self._prefix[key] = got
        return got

    def _item_suffix(self, item: PerfItem) -> str:
        key = (item.unit, item.counter, None if item.warn is None else str(item.warn),
               None if item.crit is None else str(item.crit), item.min, item.max)
        got = self._suffix.get(key)
        if got is None:
            parts = [" mtype=counter" if item.counter else " mtype=gauge"]
            if item.unit:
                parts.append(f" unit={quote(item.unit)}")
            if key[2] is not None:
                parts.append(f" warn={key[2]}")
            if key[3] is not None:
                parts.append(f" crit={key[3]}")
            if item.min is not None:
                parts.append(f" min={format_number(item.min)}")
            if item.max is not None:
                parts.append(f" max={format_number(item.max)}")
            got = "".join(parts)
            if len(self._suffix) > 100_000:
                self._suffix.clear()
            self._suffix[key] = got
        return got

    def _exact_lines(self, perf, prefix, tags, ts, labels, errors, out) -> None:
        """Lines of a perfdata string through the full parser."""
        items, errs = parse_perfdata(perf)
        if errs:
            errors.extend(errs)
        for it in items:
            if it.value is None:
                self.unknown_values += 1
                continue
            if len(it.label) > MAX_LABEL or len(it.group or "") > MAX_LABEL:
                errors.append(ItemError(f"{it.label[:60]}...", f"label longer than {MAX_LABEL} "
                                                               f"characters"))
                continue
            name = labels(it.label)
            if it.group is not None:
                name = f"{labels(it.group)}.{sanitize(it.label)}"
            out.append(f"{prefix}{name}{tags} {format_number(it.value)} {ts}"
                       f"{self._item_suffix(it)}")

    def _fast_lines(self, perf, prefix, tags, ts, labels, errors, out, learn=None) -> bool:
        """The common case (no quotes, no check_multi, every token `label=number...`) without
        the general parser: the thresholds part of an item (`;5;10;0;`) repeats from check to
        check, so its annotations are computed once and remembered.  Returns False, having
        added nothing, when the string needs the full parser; the result is always the same
        (tests/bridges/nagios compare the two on random input).  With `learn`, each item's
        (token, label, number text, name, spec) is appended to it, for _learn."""
        if "'" in perf or "::" in perf:
            return False
        n_out, n_err = len(out), len(errors)
        spec_get = self._spec.get
        fwd = labels._forward
        for tok in perf.split():
            label, eq, data = tok.partition("=")
            valpart, _, tail = data.partition(";")
            num = valpart.rstrip(_UOM_CHARS)
            if not label or not num or num[-1] not in _END or "_" in num or not num.isascii() \
                    or len(label) > MAX_LABEL:
                break
            try:
                value = float(num)
            except ValueError:
                break
            uom = valpart[len(num):]
            spec = spec_get((uom, tail))
            if spec is None:
                spec = self._make_spec(uom, tail)
                if spec is None:
                    break
            if spec[1]:
                value = _convert(num, uom)
            if value - value != 0.0:
                break
            # (a token accepted here is an item the full parser reads the same way, so names
            # handed out before a `break` are the ones it hands out too)
            name = fwd.get(label) or labels(label)
            v = str(int(value)) if value.is_integer() and -1e16 < value < 1e16 else repr(value)
            out.append(f"{prefix}{name}{tags} {v} {ts}{spec[0]}")
            if learn is not None:
                learn.append((tok, label, num, name, spec))
            if spec[2]:
                errors.extend(ItemError(tok, p) for p in spec[2])
        else:
            return True
        del out[n_out:]
        del errors[n_err:]
        return False

    def _make_spec(self, uom: str, tail: str):
        """(annotation suffix, needs scaling, problems) for an item's unit and thresholds."""
        if len(tail) > 200:
            return None
        errs: list = []
        item = _parse_data("x", f"0{uom};{tail}" if tail else f"0{uom}", errs, "")
        if item is None or len(self._spec) > 100_000:
            return None
        base = _UNITS.get(uom)
        spec = (self._item_suffix(item), base is not None and base[1:] != (0, 1.0),
                tuple(e.problem for e in errs))
        self._spec[(uom, tail)] = spec
        return spec

    def record(self, raw: str, now: float, errors: list) -> tuple[str, list[str]]:
        """(topic, lines) of one perfdata-file line.  Raises RecordError.

        A perfdata file repeats one or two templates, so the field names of a line are
        remembered as a regex of its shape: the next line of that shape is split in one C call
        instead of a loop over its fields, and, for the usual Nagios/Icinga templates, turned
        into lines by _planned without building a dict or a CheckResult (the result is always
        the one record_result + lines give; anything unusual goes that way)."""
        for keys, match, plan in self._shapes:
            m = match(raw)
            if m is not None:
                g = m.groups()
                if plan is not None:
                    got = self._planned(g, plan, now, errors)
                    if got is not None:
                        return got
                fields = dict(zip(keys, g))
                break
        else:
            fields = parse_record(raw)
            if len(self._shapes) < 8 and fields and raw.count("\t") + 1 == len(fields):
                keys = list(_FIELD_KEYS.findall(raw))
                if len(keys) == len(fields):
                    # the last group, `(?!)()`, never takes part: it is the None of a field
                    # the shape does not have (see _plan)
                    rx = "\t".join(re.escape(k) + "::([^\t]*+)" for k in keys) + r"(?:(?!)())?\Z"
                    self._shapes.insert(0, (keys, re.compile(rx).match, _plan(keys)))
        return self.lines(record_result(fields, now), errors)

    def feed(self, text: str, now: float, errors: list, emit, bad: list,
             marks: list, emit_body=None) -> tuple[int, int]:
        """Every record of a chunk of perfdata-file text: emit(topic, lines) for good ones (or
        emit_body(topic, lines joined by newlines, number of lines), if given); (record text,
        problem) appended to `bad` for each unusable one; item problems appended to `errors`,
        and (topic, first, end) of them to `marks`.  Returns (records, lines).  The lines of a
        topic come in the order of the records; those of different topics may be reordered
        (each call emits a window's lines topic by topic).

        Strategy: a chunk of a perfdata file is thousands of lines of one template.  When its
        first line has a remembered shape (see record), one C call (findall of the shape as a
        multi-line regex) splits 64 KB of it at a time into fields, and a loop that is
        _planned inlined turns each record of a known check whose perfdata matches the check's
        skeleton (_learn) into lines.  Any other record takes the way of record() (which learns
        the check); a window the regex does not account for line by line (an empty line, a
        line of another shape), or a chunk with a `\r`, goes line by line through record().
        The lines are the same either way (tests/bridges/nagios/test_nagios_records_fast.py).

        With the C module (_fastspool.c, when built), the records of a chunk with a known shape
        go through _feed_c instead: the same lines, made in C for the records the loop of
        _feed_window would make at once, and by record() for any other."""
        chunk = None
        matched = False
        if self.fast and "\r" not in text:
            nl = text.find("\n")
            first = text[:nl] if nl >= 0 else text
            for keys, match, plan in self._shapes:
                if match(first) is not None:
                    matched = True
                    chunk = self._chunk_plans.get(id(match), 0)
                    if chunk == 0:
                        chunk = self._chunk_plans[id(match)] = _chunk_plan(keys, plan)
                    break
            if not matched and 0 <= nl < len(text) - 1 and len(self._shapes) < 8:
                # (the first chunk of a file: its first line teaches record() the shape, so
                # that the rest of the chunk need not go line by line)
                r, n = self._feed_lines([first], now, errors, emit, bad, marks)
                if any(m(first) is not None for _, m, _ in self._shapes):
                    r2, n2 = self.feed(text[nl + 1:], now, errors, emit, bad, marks, emit_body)
                    return r + r2, n + n2
                r2, n2 = self._feed_lines(text[nl + 1:].split("\n"), now, errors, emit, bad,
                                          marks)
                return r + r2, n + n2
        if chunk is None:
            return self._feed_lines(text.split("\n"), now, errors, emit, bad, marks)
        # in windows of about 64 KB, cut at line ends, so that the rows of a window stay in
        # the CPU's caches while they are turned into lines
        end = len(text) - 1 if text.endswith("\n") else len(text)
        records = lines_out = start = 0
        now_ts = format_number(float(int(now)))
        fast = _fastspool_module() if chunk[4] is not None and self.use_c else None
        if fast is not None:
            if emit_body is None:
                def emit_body(topic, body, n):
                    emit(topic, body.split("\n"))
            got = self._feed_c(fast.run, text, 0, end, chunk, now, now_ts, errors, emit,
                               emit_body, bad, marks)
            if got is not None:
                return got
        while start < end:
            stop = text.find("\n", start + _WINDOW, end)
            if stop < 0:
                stop = end
            got = None
            if fast is not None:
                # (a text of chars beyond U+00FF: a window of it may be all Latin-1)
                part = text[start:stop]
                got = self._feed_c(fast.run, part, 0, len(part), chunk, now, now_ts, errors,
                                   emit, emit_body, bad, marks)
            if got is None:
                got = self._feed_window(text, start, stop, chunk, now, now_ts, errors, emit, bad,
                                        marks)
            records += got[0]
            lines_out += got[1]
            start = stop + 1
        return records, lines_out

    def _feed_c(self, run, text, pos, end, chunk, now, now_ts, errors, emit, emit_body, bad,
                marks):
        """feed() for the lines of text[pos:end] through the C module: (records, lines), or
        None (nothing done) when the text is not one the C module reads (chars beyond U+00FF).
        The C module stops at each record it does not make lines of; record() does that one."""
        checks = self._chunk_checks
        cplan, is_host = chunk[4], chunk[3]
        records = lines_out = 0
        while True:
            got = run(text, pos, end, cplan, checks, now_ts)
            if got is None:
                return None
            pos, r, n, bodies, key = got
            records += r
            lines_out += n
            for topic, body, k in bodies:
                emit_body(topic, body, k)
            if pos >= end:
                return records, lines_out
            nl = text.find("\n", pos, end)
            if nl < 0:
                nl = end
            raw = text[pos:nl]
            pos = nl + 1
            if raw:
                records += 1
                n_err = len(errors)
                try:
                    topic, out = self.record(raw, now, errors)
                except RecordError as e:
                    bad.append((raw, str(e)))
                    out = None
                else:
                    if len(errors) > n_err:
                        marks.append((topic, n_err, len(errors)))
                    if out:
                        emit(topic, out)
                        lines_out += len(out)
                if key is not None and key not in checks:
                    # the check record() made (or had), for the next record of it
                    c = self._checks.get((key, None) if is_host else
                                         tuple(key.split("\tSERVICEDESC::", 1)))
                    if c is not None:
                        if len(checks) >= 100_000:
                            checks.clear()
                        checks[key] = c
            if pos >= end:
                return records, lines_out

    def _feed_window(self, text, start, stop, chunk, now, now_ts, errors, emit, bad, marks):
        """feed() for the lines of text[start:stop]."""
        rows = chunk[0](text, start, stop)
        if len(rows) != text.count("\n", start, stop) + 1:
            return self._feed_lines(text[start:stop].split("\n"), now, errors, emit, bad, marks)
        getter, want = chunk[1], chunk[2]
        record = self.record
        checks = self._chunk_checks
        lines_out = 0
        raws = None
        # the window's lines by topic, emitted at its end: one call per topic, not per record
        by_topic: dict = {}
        pending = by_topic.get
        for i, (dtype, key, perf, st, stype, output, long_output, t, t_other) in enumerate(
                map(getter, rows)):
            # _planned's rules for the usual record; anything else is left to record()
            c = checks.get(key)
            state = _STATE_TEXT.get(st)
            st_sfx = _STATE_TYPE_SUFFIX.get(stype)
            ts = t or (None if t_other else now_ts)
            out = None
            if c is not None and state is not None and st_sfx is not None and ts is not None \
                    and output and dtype == want and not long_output \
                    and len(output) <= MAX_OUTPUT and output.isascii() and output.isprintable():
                # the state line, quote's printable-ASCII way inline
                o = output.replace("%", "%25").replace(" ", "%20").replace("=", "%3D")
                sl = f"{c[0]}state {state} {ts} mtype=state{st_sfx} output={o}"
                if not perf:
                    out = [sl]
                elif c[3] is not None and c[5] == c[2].generation:
                    m = c[3](perf)
                    if m is not None:
                        # the same items as when the skeleton was learnt; only the numbers
                        # differ (see _learn); the lines for 1-4 items written out, for speed
                        g = m.groups()
                        v = g[0::2]
                        if None in v:
                            v = _number_texts(c[4][2], g)
                        if v is not None:
                            h, tl = c[4][0], c[4][1]
                            n = len(v)
                            if n == 1:
                                out = [f"{h[0]}{v[0]} {ts}{tl[0]}", sl]
                            elif n == 2:
                                out = [f"{h[0]}{v[0]} {ts}{tl[0]}", f"{h[1]}{v[1]} {ts}{tl[1]}",
                                       sl]
                            elif n == 3:
                                out = [f"{h[0]}{v[0]} {ts}{tl[0]}", f"{h[1]}{v[1]} {ts}{tl[1]}",
                                       f"{h[2]}{v[2]} {ts}{tl[2]}", sl]
                            elif n == 4:
                                out = [f"{h[0]}{v[0]} {ts}{tl[0]}", f"{h[1]}{v[1]} {ts}{tl[1]}",
                                       f"{h[2]}{v[2]} {ts}{tl[2]}", f"{h[3]}{v[3]} {ts}{tl[3]}",
                                       sl]
                            else:
                                out = [f"{a}{b} {ts}{d}" for a, b, d in zip(h, v, tl)]
                                out.append(sl)
            if out is None:
                if raws is None:
                    raws = text[start:stop].split("\n")
                n_err = len(errors)
                try:
                    topic, out = record(raws[i], now, errors)
                except RecordError as e:
                    bad.append((raws[i], str(e)))
                    continue
                if len(errors) > n_err:
                    marks.append((topic, n_err, len(errors)))
                if key not in checks:
                    # the check record() made (or had), for the next record of it
                    c = self._checks.get((key, None) if chunk[3] else
                                         tuple(key.split("\tSERVICEDESC::", 1)))
                    if c is not None:
                        if len(checks) >= 100_000:
                            checks.clear()
                        checks[key] = c
                if out:
                    have = pending(topic)
                    if have is None:
                        by_topic[topic] = out
                    else:
                        have += out
                    lines_out += len(out)
                continue
            have = pending(c[1])
            if have is None:
                by_topic[c[1]] = out
            else:
                have += out
            lines_out += len(out)
        for topic, out in by_topic.items():
            emit(topic, out)
        return len(rows), lines_out

    def _feed_lines(self, raws, now: float, errors: list, emit, bad: list,
                    marks: list) -> tuple[int, int]:
        """feed(), line by line."""
        record = self.record
        records = lines_out = 0
        for raw in raws:
            if not raw or raw == "\r":
                continue
            records += 1
            n_err = len(errors)
            try:
                topic, lines = record(raw.rstrip("\r") if raw[-1] == "\r" else raw, now, errors)
            except RecordError as e:
                bad.append((raw, str(e)))
                continue
            if len(errors) > n_err:
                marks.append((topic, n_err, len(errors)))
            if lines:
                emit(topic, lines)
                lines_out += len(lines)
        return records, lines_out

    def _planned(self, g: tuple, plan: tuple, now: float, errors: list):
        """record() for a known shape: (topic, lines), or None to take the general way (which
        then raises the error, if any).  Nothing is remembered before the record is known to
        be good, so names are handed out in the same order either way."""
        kd, ks, svc, hst = plan
        dtype = g[kd]
        service = g[ks]
        # record_result's rules: DATATYPE decides; without it, a SERVICEDESC makes a service
        if dtype == "SERVICEPERFDATA" or (not dtype and service):
            if not service:
                return None
            host, perf, st, stype, output, long_output, t = svc(g)
        elif not dtype or dtype == "HOSTPERFDATA":
            host, perf, st, stype, output, long_output, t = hst(g)
            service = None
        else:
            return None
        if not host:
            return None
        if t != self._rec_t:
            # plain Unix seconds are their own line text (format_number(float(int(t))))
            if t and t.isdigit() and t.isascii() and len(t) < 16 and (t[0] != "0" or len(t) == 1):
                self._rec_t = self._rec_ts = t
            elif not t:  # (not remembered: `now` changes from call to call)
                self._rec_t, self._rec_ts = False, format_number(float(int(now)))
            else:
                return None
        ts = self._rec_ts
        state = _STATE_CODES.get(st, -1)
        if state == -1:
            return None
        st_sfx = _STATE_TYPE_SUFFIX.get(stype)
        if st_sfx is None:
            st_type = _STATE_TYPES.get(stype.strip().upper())
            st_sfx = f" state_type={st_type}" if st_type else ""
        c = self._checks.get((host, service))
        if c is None:
            try:
                c = self._new_check(host, service)
            except RecordError:
                return None
        out: list[str] = []
        if perf:
            sm = c[3]
            # (a skeleton of an earlier generation of the label names is stale: relearnt)
            m = sm(perf) if sm is not None and c[5] == c[2].generation else None
            if m is not None:
                # the same items as last time, only the numbers differ (see _learn)
                out = _skeleton_lines(c[4], m.groups(), ts)
                if out is None:
                    out = []
                    m = None
            if m is None:
                prefix, labels = c[0], c[2]
                # (long strings are not learnt: a regex of thousands of groups costs more to
                # compile than it saves)
                learn = [] if self.fast and c[6] < 16 and len(perf) <= 4096 else None
                n_err = len(errors)
                if self.fast and self._fast_lines(perf, prefix, "", ts, labels, errors, out,
                                                  learn):
                    if learn is not None and len(errors) == n_err:
                        self._learn(c, perf, learn, out, ts)
                else:
                    self._exact_lines(perf, prefix, "", ts, labels, errors, out)
        if state is not None:
            if output and not long_output and len(output) <= MAX_OUTPUT and output.isascii() \
                    and output.isprintable():
                # the usual state line in one piece (quote's printable-ASCII way, inline)
                out.append(f"{c[0]}state {state} {ts} mtype=state{st_sfx} output="
                           f"{output.replace('%', '%25').replace(' ', '%20').replace('=', '%3D')}")
                return c[1], out
            s = f"{c[0]}state {state} {ts} mtype=state{st_sfx}"
            if output:
                s += f" output={quote(_clip(output, MAX_OUTPUT))}"
            if long_output:
                long_output = long_output.replace("\\n", "\n")
                if long_output:
                    s += f" long_output={quote(_clip(long_output, MAX_LONG_OUTPUT))}"
            out.append(s)
        return c[1], out

    def _new_check(self, host: str, service: str | None) -> list:
        """[prefix, topic, label namer, skeleton match, skeleton items, namer generation,
        skeletons learnt, the skeleton for the C module (see _learn)] of a check, for
        _planned."""
        prefix, topic, labels = self.prefix(host, service, "")
        c = [prefix, topic, labels, None, (), 0, 0, None]
        if len(self._checks) >= 100_000:
            self._checks.clear()
            self._chunk_checks.clear()
        self._checks[(host, service)] = c
        return c

    def _learn(self, c: list, perf: str, learn: list, out: list, ts: str) -> None:
        """Remember the skeleton of a perfdata string the fast path read without a problem:
        a regex of it with each number replaced by a group.  A later string it matches has the
        same tokens but for the numbers, so _fast_lines would give the same names and
        annotations; only the numbers are converted again.  (A check whose items change all the
        time stops learning after 16 skeletons.)"""
        c[6] += 1
        parts, convs, pos = [], [], 0
        lits, c_convs, lit = [], [], ""  # the text between the numbers, for the C module
        for m, (tok, label, num, name, spec) in zip(_TOKEN_RE.finditer(perf), learn):
            start, end = m.span()
            at = start + len(label) + 1  # where the number starts
            if m.group() != tok or perf[at:at + len(num)] != num:
                return
            conv = None
            if spec[1]:
                uom = tok[len(label) + 1 + len(num):].partition(";")[0]
                _, shift, factor = _UNITS[uom]
                conv = (f"e{shift}" if shift else "", factor, uom)
            parts += (re.escape(perf[pos:at]), _SKELETON_NUM if conv is None else _SKELETON_SCALED,
                      re.escape(perf[at + len(num):end]))
            convs.append(conv)
            lits.append(lit + perf[pos:at])
            lit = perf[at + len(num):end]
            c_convs.append(None if conv is None else (_UNITS[conv[2]][1], conv[1]))
            pos = end
        if len(convs) != len(learn) or len(out) != len(learn):
            return
        lits.append(lit + perf[pos:])
        parts.append(re.escape(perf[pos:]) + r"\Z")
        rx = "".join(parts)
        match = self._skeletons.get(rx)
        if match is None:
            match = re.compile(rx).match
            if len(self._skeletons) >= 10_000:
                self._skeletons.clear()
            self._skeletons[rx] = match
        # each line is `<head><number> <time><tail>`, the number as _fast_lines wrote it
        heads, tails = [], []
        for tok, label, num, name, spec in learn:
            heads.append(f"{c[0]}{name} ")
            tails.append(spec[0])
        skeleton = (tuple(heads), tuple(tails), tuple(convs))
        # proof on the string it was made of: the skeleton gives the very lines _fast_lines gave
        m = match(perf)
        if m is None or _skeleton_lines(skeleton, m.groups(), ts) != out:
            return
        c[3], c[4], c[5] = match, skeleton, c[2].generation
        c[7] = _c_skeleton(c[0], c[1], lits, skeleton[0], skeleton[1], c_convs)

    def lines(self, r: CheckResult, errors: list) -> tuple[str, list[str]]:
        """(topic, lines) for one check result; perfdata problems are appended to `errors`."""
        tags = r.tags or ""
        got = self._prefix.get((r.host, r.service, tags))
        prefix, topic, labels = got if got is not None else self.prefix(r.host, r.service, tags)
        if r.timestamp == self._last_ts:
            ts = self._last_ts_text
        else:
            ts = self._last_ts_text = format_number(float(r.timestamp))
            self._last_ts = r.timestamp
        out: list[str] = []
        perf = r.perfdata
        if perf and not (self.fast and self._fast_lines(perf, prefix, tags, ts, labels, errors,
                                                        out)):
            self._exact_lines(perf, prefix, tags, ts, labels, errors, out)
        if r.state is not None:
            s = f"{prefix}state{tags} {r.state} {ts} mtype=state"
            st = r.state_type
            if st:
                s += (" state_type=hard" if st == "hard" else " state_type=soft" if st == "soft"
                      else f" state_type={quote(st.lower())}")
            if r.output:
                o = r.output
                s += f" output={quote(o if len(o) <= MAX_OUTPUT else _clip(o, MAX_OUTPUT))}"
            if r.long_output:
                s += f" long_output={quote(_clip(r.long_output, MAX_LONG_OUTPUT))}"
            out.append(s)
        return topic, out


def check_lines(r: CheckResult, errors: list | None = None, source: str = "nagios"):
    """The monbus lines of one check result (a convenience over LineMaker)."""
    return LineMaker(source).lines(r, errors if errors is not None else [])[1]


# --- perfdata files (service_perfdata_file / Icinga 2 PerfdataWriter / Nagflux spool) --------
def parse_record(text: str) -> dict[str, str]:
    """One `KEY::VALUE<TAB>KEY::VALUE...` line as a dict (a field without `::` is ignored)."""
    out = {}
    for field in text.split("\t"):
        key, sep, value = field.partition("::")
        if sep:
            out[key] = value
    return out


_FIELD_KEYS = re.compile(r"(?:^|\t)([^\t]*?)::")


# A number in a perfdata skeleton (LineMaker._learn): a subset of what float() reads and of what
# _fast_lines accepts, ending in a digit or '.', so a UOM after it is never split differently.
_ANY_NUM = r"([-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)"
# The same number when its text already is the line's text (format_number(float(text)) but for
# trailing zeros and a trailing '.'), in the first group, which then holds the line's text: `0`,
# an integer of at most 15 digits without leading zeros, or a decimal whose last fraction digit
# is not 0, of at most 15 digits (up to 8 before the point and 7 after it, or `0.` and at most
# 3 zeros and 14 digits: at least 0.0001, the smallest repr() writes without an exponent).  Any
# such decimal is read as the double nearest to it, and repr() of that double gives back the
# shortest text that reads as it: these digits (two different decimals of at most 15 digits are
# never read as the same double).  What follows the group is only the zeros (and '.') that
# format_number would not write; a skeleton's text after a number never starts with a digit or
# '.'.  Anything else (`-0`, `+1`, `007`, `1e3`, `.5`, `0.00001`, more digits) goes to the
# second group, _ANY_NUM, read with float().  (tests/bridges/nagios/test_nagios_records_fast.py
# checks the first group against format_number.)
_TEXT_NUM = (r"(-?(?:0\.0{0,3}(?=[1-9])[0-9]{0,13}[1-9](?!\.)"
             r"|[1-9][0-9]{0,7}\.[0-9]{0,6}[1-9](?!\.)"
             r"|[1-9][0-9]{0,14}(?![0-9]))"
             r"|0(?![0-9]))\.?0*")
_SKELETON_NUM = rf"(?:{_TEXT_NUM}|{_ANY_NUM})"
# an item whose unit scales it (ms, KB...): its first group never takes part
_SKELETON_SCALED = rf"(?:((?!)))?{_ANY_NUM}"


def _number_texts(convs: tuple, groups: tuple):
    """The line texts of a skeleton's numbers (two groups per item, see _SKELETON_NUM), or
    None when one overflows (the general way reports it)."""
    vals = list(groups[0::2])
    for i, conv in enumerate(convs):
        if vals[i] is None:
            num = groups[2 * i + 1]
            if conv is None:
                v = float(num)
            elif "e" in num or "E" in num:
                v = _convert(num, conv[2])
            else:  # _convert without its partition: the decimal shift as an exponent
                v = float(num + conv[0]) * conv[1]
            if v - v != 0.0:
                return None
            vals[i] = str(int(v)) if v.is_integer() and -1e16 < v < 1e16 else repr(v)
    return vals


def _c_skeleton(prefix: str, topic: str, lits: list, heads: tuple, tails: tuple,
                convs: list) -> bytes | None:
    """A check's skeleton as the C module reads it (_fastspool.c do_record: one object, so a
    record costs few memory reads): item count, prefix, topic, literal 0, then per item its
    head, tail, scaled?, decimal shift, binary factor and the literal after it; strings as
    4-byte length + text.  None if a name is not ASCII or a literal not Latin-1 (the C module
    then leaves the check to Python)."""
    import struct

    def text(s: str, enc: str = "ascii") -> bytes:
        b = s.encode(enc)
        return len(b).to_bytes(4, "little") + b

    try:
        out = [len(heads).to_bytes(4, "little"), text(prefix), text(topic), text(lits[0], "latin-1")]
        for head, tail, conv, lit in zip(heads, tails, convs, lits[1:]):
            out += (text(head), text(tail),
                    struct.pack("<Bid", 0, 0, 1.0) if conv is None else struct.pack("<Bid", 1, *conv),
                    text(lit, "latin-1"))
    except UnicodeEncodeError:
        return None
    return b"".join(out)


def _skeleton_lines(skeleton: tuple, groups: tuple, ts: str):
    """The lines of a perfdata string matched by a learnt skeleton (LineMaker._learn), or None
    when a number overflows (the general way reports it)."""
    heads, tails, convs = skeleton
    vals = groups[0::2]
    if None in vals:
        vals = _number_texts(convs, groups)
        if vals is None:
            return None
    return [f"{h}{v} {ts}{t}" for h, v, t in zip(heads, vals, tails)]


def _plan(keys: list) -> tuple | None:
    """Where LineMaker._planned finds each field of a record of this shape (field index; a
    missing field is the always-None last group), or None to leave the shape to record_result
    (Nagflux tags)."""
    if "NAGFLUX:TAG" in keys:
        return None
    n = len(keys)
    ix = {k: i for i, k in enumerate(keys)}

    def getter(kind: str, long_kind: str):
        return operator.itemgetter(
            ix.get("HOSTNAME", n), ix.get(f"{kind}PERFDATA", n),
            ix.get(f"{kind}STATEID", ix.get(f"{kind}STATE", n)), ix.get(f"{kind}STATETYPE", n),
            ix.get(f"{kind}OUTPUT", n), ix.get(f"LONG{long_kind}OUTPUT", n), ix.get("TIMET", n))

    return (ix.get("DATATYPE", n), ix.get("SERVICEDESC", n), getter("SERVICE", "SERVICE"),
            getter("HOST", "HOST"))


_WINDOW = 65536  # characters of a chunk LineMaker.feed splits at once (at least)
_FASTSPOOL: list = []


def _fastspool_module():
    """The optional C module (bridges/nagios/_fastspool.c), or None if it was not built;
    imported on first use (`monbus nagios hook` never needs it)."""
    if not _FASTSPOOL:
        try:
            from . import _fastspool
        except ImportError:
            _fastspool = None
        _FASTSPOOL.append(_fastspool)
    return _FASTSPOOL[0]


def _chunk_plan(keys: list, plan: tuple | None) -> tuple | None:
    """(findall of the shape over a chunk, getter of (DATATYPE, check key, perfdata, state,
    state type, output, long output, TIMET when it is a plain Unix time, TIMET otherwise),
    the DATATYPE LineMaker.feed takes, host records?) for a shape with DATATYPE and HOSTNAME
    fields (and SERVICEDESC right after HOSTNAME, if any), or None (feed goes line by line).
    The check key is the host name, or the text `<host>\tSERVICEDESC::<service>`.  A field the
    shape lacks is the empty last group ("" is what record_result makes of a missing field)."""
    if plan is None or "DATATYPE" not in keys or "HOSTNAME" not in keys:
        return None
    is_host = "SERVICEDESC" not in keys
    if not is_host and (keys.index("SERVICEDESC") != keys.index("HOSTNAME") + 1
                        or keys[-1] == "SERVICEDESC"):
        return None
    kind = "HOST" if is_host else "SERVICE"
    wanted = {"DATATYPE", "HOSTNAME", f"{kind}PERFDATA", f"{kind}STATETYPE", f"{kind}OUTPUT",
              f"LONG{kind}OUTPUT", "TIMET",
              f"{kind}STATEID" if f"{kind}STATEID" in keys else f"{kind}STATE"}
    parts, groups = [], {}
    for i, k in enumerate(keys):
        last = i == len(keys) - 1
        # `[^\t]` can run over a line's end, but then the chunk has fewer matches than lines
        # and feed goes line by line (a match starts at a line's start, so a chunk of n lines
        # with n matches has every match within its line).  The first field stops at the
        # line's end (`[^\t\n]` costs the regex engine more per character), so a run over
        # line ends starts on a line with a tab and stops at the next tab: it never crosses the
        # same lines twice (linear time on any text).  The last field stops at the line's end
        # too; the output, when it is the last field, is taken up to there, tabs and all: feed
        # wants it printable (no tab), or else takes the way of record().
        if last:
            value = ".*" if k == f"{kind}OUTPUT" else "[^\t\n]*+"
        else:
            value = "[^\t\n]*+" if i == 0 else "[^\t]*+"
        if k == "SERVICEDESC":
            continue  # (in HOSTNAME's group)
        if k == "HOSTNAME" and not is_host:
            value = f"{value}\tSERVICEDESC::[^\t]*+"
        if k == "TIMET":
            end = r"(?=\n|\Z)" if last else r"(?=\t)"
            parts.append(f"TIMET::(?:([1-9][0-9]{{0,14}}|0){end}|({value}))")
            groups["TIMET"] = len(groups)
            groups["TIMET other"] = len(groups)
        elif k in wanted:
            parts.append(f"{re.escape(k)}::({value})")
            groups[k] = len(groups)
        else:
            parts.append(f"{re.escape(k)}::{value}")
    n = len(groups)  # the empty last group
    cplan = None
    if len(set(keys)) == len(keys) and len(keys) <= 64 and all(k.isascii() for k in keys):
        # the same fields for the C module (_fastspool.c run()): `KEY::` of each field, the
        # DATATYPE it takes, and where the fields are (-1: absent)
        st_key = f"{kind}STATEID" if f"{kind}STATEID" in keys else f"{kind}STATE"
        cplan = (tuple(f"{k}::" for k in keys), f"{kind}PERFDATA") + tuple(
            keys.index(k) if k in keys else -1
            for k in ("DATATYPE", "HOSTNAME", "SERVICEDESC", f"{kind}PERFDATA", st_key,
                      f"{kind}STATETYPE", f"{kind}OUTPUT", f"LONG{kind}OUTPUT", "TIMET"))
    getter = operator.itemgetter(
        groups["DATATYPE"], groups["HOSTNAME"], groups.get(f"{kind}PERFDATA", n),
        groups.get(f"{kind}STATEID", groups.get(f"{kind}STATE", n)),
        groups.get(f"{kind}STATETYPE", n), groups.get(f"{kind}OUTPUT", n),
        groups.get(f"LONG{kind}OUTPUT", n), groups.get("TIMET", n), groups.get("TIMET other", n))
    rx = "^" + "\t".join(parts) + "()$"
    return re.compile(rx, re.M).findall, getter, f"{kind}PERFDATA", is_host, cplan


class RecordError(ValueError):
    """A perfdata-file line that cannot be used at all."""


def record_result(fields: dict[str, str], now: float) -> CheckResult:
    """A CheckResult from a parsed perfdata-file line.  Raises RecordError."""
    host = fields.get("HOSTNAME")
    if not host:
        raise RecordError("no HOSTNAME:: field")
    dtype = fields.get("DATATYPE", "")
    service = fields.get("SERVICEDESC")
    is_host = dtype == "HOSTPERFDATA" or (not dtype and not service)
    if is_host:
        service = None
        perf = fields.get("HOSTPERFDATA", "")
        state_text = fields.get("HOSTSTATEID", fields.get("HOSTSTATE"))
        state_type = fields.get("HOSTSTATETYPE")
        output = fields.get("HOSTOUTPUT")
        long_output = fields.get("LONGHOSTOUTPUT")
    else:
        if dtype and dtype != "SERVICEPERFDATA":
            raise RecordError(f"unknown DATATYPE {dtype[:40]!r}")
        if not service:
            raise RecordError("no SERVICEDESC:: field in a service record")
        perf = fields.get("SERVICEPERFDATA", "")
        state_text = fields.get("SERVICESTATEID", fields.get("SERVICESTATE"))
        state_type = fields.get("SERVICESTATETYPE")
        output = fields.get("SERVICEOUTPUT")
        long_output = fields.get("LONGSERVICEOUTPUT")
    t = fields.get("TIMET", "").strip()
    if t:
        try:
            ts = float(int(t))
        except ValueError:
            raise RecordError(f"TIMET {t[:40]!r} is not a Unix time") from None
    else:
        ts = float(int(now))
    state = _STATE_CODES.get(state_text, -1)
    if state == -1:
        try:
            state = parse_state(state_text)
        except ValueError as e:
            raise RecordError(str(e)) from None
    if state_type is not None:
        state_type = _STATE_TYPES.get(state_type) or _STATE_TYPES.get(state_type.strip().upper())
    if long_output:
        long_output = long_output.replace("\\n", "\n") or None
    tag = fields.get("NAGFLUX:TAG")
    return CheckResult(host, service, state, output or None, long_output or None, perf, ts,
                       state_type, _nagflux_tags(tag) if tag else "")


_STATE_TYPES = {"0": "soft", "1": "hard", "SOFT": "soft", "HARD": "hard"}
_STATE_TYPE_SUFFIX = {None: "", "": "", "0": " state_type=soft", "1": " state_type=hard",
                      "SOFT": " state_type=soft", "HARD": " state_type=hard"}
# the spellings Nagios and Icinga write, for a lookup before parse_state
_STATE_CODES = {None: None, "": None, "0": 0, "1": 1, "2": 2, "3": 3, "OK": 0, "WARNING": 1,
                "CRITICAL": 2, "UNKNOWN": 3, "UP": 0, "DOWN": 1, "UNREACHABLE": 2}
# the state code's line text, for the spellings that make a state line
_STATE_TEXT = {k: str(v) for k, v in _STATE_CODES.items() if v is not None}


def _nagflux_tags(text: str | None) -> str:
    """Nagflux's `NAGFLUX:TAG::k=v,k2=v2` as `;k=v;k2=v2` (an unexpanded `$..$` macro or an
    empty field gives none)."""
    if not text or (text.startswith("$") and text.endswith("$")):
        return ""
    out = []
    for pair in text.split(","):
        k, eq, v = pair.partition("=")
        if eq and k.strip() and v.strip():
            out.append(f";{sanitize(k.strip())}={sanitize(v.strip())}")
    return "".join(out)
