"""What `monbus carbon` sends: bus message bodies turned into carbon plaintext (pure).

A bus line is `<series> <value> <timestamp>[ <annotation>]...`; carbon gets the first three
fields only (annotations never reach carbon), with the series rewritten by the options:
- tags `keep` (carbon >= 1.1 stores tagged series), `drop` (the bare path), or `fold`
  (tags appended as path components, sorted by key: `cpu;core=0;dc=par` -> `cpu.core.0.dc.par`,
  each component sanitised, for carbons without tag support);
- an optional prefix;
- with a RateConverter, `mtype=counter`/`derive` lines become per-second rates.

Strategy for speed: when no option needs the parsed line (tags kept or dropped, a prefix,
no rates, patterns that the message's topic decides), the whole message is handled by a few
regular expressions in C: annotations cut, the shape of every line checked in one pass, tags
cut, prefix added; no Python work per line.  A message with a line of the wrong shape, or
options that need each line, goes line by line: `encoded` (a regular expression extracts the
fields, one dict lookup per line) or, with rates, the core codec; bad lines are counted and
quoted.

With rates, where the C module `_fastrates` is built, `encoded_data` hands the body to it: it
does the lines of a conservative subset of the grammar (printable ASCII, plain numbers, the
usual annotations) in C on the RateConverter's own state, and stops at any other line, which
`lines` (the reference) then does before C goes on; the output and every count are the same.
"""
from __future__ import annotations

import re

from monbus.core.line import LineError, decode, format_number, sanitize, topic_of, vouched

from monbus.core.rates import RATE_MTYPES, RateConverter

try:  # the optional C speed-up of --rates (bridges/graphite/_fastrates.c)
    from . import _fastrates
except ImportError:  # built without a compiler: Formatter.lines gives the same result
    _fastrates = None

__all__ = ["Formatter", "TAG_MODES", "exact_by_topic", "decided_by_topic"]

TAG_MODES = ("keep", "drop", "fold")
# the RateConverter stats that _fastrates.convert counts, in its order
_RATE_COUNTS = ("rates", "first", "resets", "wraps", "over_max", "not_advancing", "evictions")
# the annotations of a line: from the first " key=" to the end of the line.  Only an
# annotation can hold " key=" (a series has no space, a tag's '=' follows ';', numbers have
# no '='), and a pattern that starts with a literal space is searched fast.
_ANNOTATIONS = re.compile(rb" [a-z][a-z0-9_]*=[^\n]*")
_TAGS = re.compile(rb";[^ \n]*")
# the shape of a whole body of carbon lines (annotations already cut): a path of at least
# two components, well-formed tags, a plain finite value, a plain non-negative timestamp.
# One fullmatch walks the body once, in C.  (Control characters U+0080-U+009F, U+2028/9
# and over-long names are caught only by the per-line path, which the core codec drives.)
_C = rb"\x00-\x20\x7f"
_SHAPE = re.compile(
    rb"(?:[^" + _C + rb".;]+(?:\.[^" + _C + rb".;]+)+"
    rb"(?:;[^" + _C + rb";!^=]+=[^" + _C + rb";~][^" + _C + rb";]*)*"
    rb" -?(?:[0-9]{1,300}(?:\.[0-9]*)?|\.[0-9]+)"
    rb" (?:[0-9]{1,300}(?:\.[0-9]*)?|\.[0-9]+)\n)*")
_SHAPE_CHUNK = 256 * 1024


def _shape_ok(body: bytes) -> bool:
    """True if every line of `body` (newline-terminated, annotations cut) has carbon's
    shape; checked in pieces, since one huge repetition gets slow."""
    start, n = 0, len(body)
    while start < n:
        end = body.rfind(b"\n", start, start + _SHAPE_CHUNK) if n - start > _SHAPE_CHUNK \
            else n - 1
        if end < start:
            end = body.find(b"\n", start + _SHAPE_CHUNK)
            end = n - 1 if end < 0 else end
        if _SHAPE.fullmatch(body, start, end + 1) is None:
            return False
        start = end + 1
    return True
_WILD = re.compile(r"[*?\[{]")
# a line whose value and timestamp are plain decimal numbers without exponent (so always
# finite: at most 300 integer digits), the timestamp without sign; with or without
# annotations.  Bytes patterns match ASCII digits only.
_CARBON_LINE = re.compile(rb"^([^ \n]+) (-?(?:[0-9]{1,300}(?:\.[0-9]*)?|\.[0-9]+)) "
                          rb"((?:[0-9]{1,300}(?:\.[0-9]*)?|\.[0-9]+))(?: [^\n]*)?$", re.M)
# the same lines, with value and timestamp in one group (" <value> <timestamp>"), for
# building the carbon text with one concatenation per line
_CARBON_REST = re.compile(rb"^([^ \n]+)( -?(?:[0-9]{1,300}(?:\.[0-9]*)?|\.[0-9]+) "
                          rb"(?:[0-9]{1,300}(?:\.[0-9]*)?|\.[0-9]+))(?: [^\n]*)?$", re.M)


def decided_by_topic(patterns) -> bool:
    """True if whether a line matches these patterns depends on its topic alone: each is a
    literal prefix of at most two components, or at most two components (wildcards allowed)
    followed only by `**`, like `collectd.**` or `collectd.web*.**`.  Then a whole bus
    message (one topic, `<source>.<host>.`) matches or not."""
    for p in patterns:
        if p in ("", "*", "**"):
            continue
        comps = p.split(".")
        k = comps.index("**") if "**" in comps else len(comps)
        if k == len(comps):       # no `**`: only a literal prefix is decided by the topic
            if _WILD.search(p) or len(comps) > 2:
                return False
        elif k == 0 or k > 2 or any(c != "**" for c in comps[k:]):
            return False
    return True


def exact_by_topic(patterns) -> bool:
    """True if ZeroMQ's topic filter alone applies these patterns exactly (no wildcards,
    at most `<source>.<host>`), so no line needs matching again."""
    for p in patterns:
        if p in ("", "*", "**"):
            continue
        if _WILD.search(p) or len(p.rstrip(".").split(".")) > 2:
            return False
    return True


def fold_tags(series: str) -> str:
    """`path;b=2;a=1` -> `path.a.1.b.2` (tags sorted by key, each part sanitised)."""
    path, *tags = series.split(";")
    parts = [path]
    for t in sorted(tags):
        k, _, v = t.partition("=")
        parts.append(sanitize(k))
        parts.append(sanitize(v))
    return ".".join(parts)


class Formatter:
    """Turns bus bodies into carbon plaintext; counts bad and skipped lines in `stats`."""

    def __init__(self, tags: str = "keep", prefix: str = "", rates: RateConverter | None = None,
                 matcher=None, check: bool = True):
        if tags not in TAG_MODES:
            raise ValueError(f"tags must be one of {TAG_MODES}, got {tags!r}")
        self.tags = tags
        self.prefix = (prefix.strip(".") + ".") if prefix and prefix.strip(".") else ""
        self.rates = rates
        self.matcher = matcher      # None: every line of a received message matches
        self.fast = tags in ("keep", "drop") and rates is None and matcher is None
        self.check = check          # False: the fast path trusts the bus (no shape check)
        self.stats = {"bad_lines": 0, "unmatched_lines": 0, "no_rate_lines": 0}
        self.errors: list[LineError] = []
        self._names: dict[str, str] = {}
        self._bnames: dict[bytes, bytes | None] = {}   # series -> carbon name, None: skip
        self._rnames: dict[str, bytes | bool] = {}     # the C rates path's names (_rname)

    def fast_body(self, body: bytes) -> bytes | None:
        """The whole body as carbon lines (newline-terminated), without per-line work in
        Python; None if some line is not well-formed (then use `encoded`, which finds,
        counts and quotes the bad lines)."""
        # the core's C fast path, where built, vouches for whole bodies of valid lines
        # (annotations included) at C speed; the shape expression is the fallback check
        # (it skips empty lines, which carbon would log as invalid: those bodies go the
        # other way)
        sure = (self.check and b"\n\n" not in body and not body.startswith(b"\n")
                and vouched(body))
        if b"=" in body:
            body = _ANNOTATIONS.sub(b"", body)
        if body and not body.endswith(b"\n"):
            body += b"\n"
        if self.check and not sure and not _shape_ok(body):
            return None
        if self.tags == "drop" and b";" in body:
            body = _TAGS.sub(b"", body)     # after the annotations, only a series has ';'
        if self.prefix and body:
            pre = self.prefix.encode("utf-8")
            body = pre + body[:-1].replace(b"\n", b"\n" + pre) + b"\n"
        return body

    def _name(self, series: str) -> str:
        got = self._names.get(series)
        if got is None:
            name = series
            if ";" in name:
                if self.tags == "drop":
                    name = name.split(";", 1)[0]
                elif self.tags == "fold":
                    name = fold_tags(name)
            got = self.prefix + name
            if len(self._names) > 500_000:
                self._names.clear()
            self._names[series] = got
        return got

    def lines(self, body: bytes) -> list[tuple[str, str]]:
        """(carbon series, carbon line without newline) for each good line of a body."""
        if self.rates is None:
            return self._lines_no_rates(body)
        out = []
        matcher = self.matcher
        rates = self.rates
        stats = self.stats
        for raw in body.decode("utf-8", "replace").split("\n"):
            if not raw:
                continue
            try:
                line = decode(raw)
            except LineError as e:
                stats["bad_lines"] += 1
                self.errors.append(e)
                del self.errors[:-100]
                continue
            series, value, ts, meta = line
            if matcher is not None and not matcher(series.split(";", 1)[0]):
                stats["unmatched_lines"] += 1
                continue
            if rates is not None and meta and meta.get("mtype") in RATE_MTYPES:
                r = rates.feed(series, value, ts, meta["mtype"])
                if r is None:
                    stats["no_rate_lines"] += 1
                    continue
                value = r.value
            name = self._name(series)
            out.append((name, f"{name} {format_number(value)} {format_number(ts)}"))
        return out

    def _lines_no_rates(self, body: bytes) -> list[tuple[str, str]]:
        # Without rates only the series is rewritten: value and timestamp pass through as
        # written (after a check that they are finite numbers), and the series name is
        # validated once per name (the core's cache of valid names).  A line failing any
        # check goes through the full decoder, which names the problem.  Annotations are
        # not checked: they never reach carbon.
        out = []
        append = out.append
        matcher = self.matcher
        stats = self.stats
        names = self._names
        for raw in body.decode("utf-8", "replace").split("\n"):
            if not raw:
                continue
            parts = raw.split(" ", 3)
            try:
                series, v, t = parts[0], parts[1], parts[2]
                topic_of(series)
                fv, ft = float(v), float(t)
                if fv - fv != 0.0 or ft - ft != 0.0 or ft < 0 or "_" in v or "_" in t \
                        or not (v.isascii() and t.isascii()):
                    raise ValueError
            except (IndexError, ValueError):
                try:
                    decode(" ".join(parts[:3]))
                except LineError as e:
                    stats["bad_lines"] += 1
                    self.errors.append(e)
                    del self.errors[:-100]
                    continue
                series, v, t = parts[0], parts[1], parts[2]
            if matcher is not None and not matcher(series.split(";", 1)[0]):
                stats["unmatched_lines"] += 1
                continue
            name = names.get(series) or self._name(series)
            append((name, f"{name} {v} {t}"))
        return out

    def encoded(self, body: bytes) -> list[tuple[bytes, bytes]]:
        """(carbon series, carbon line without newline) as bytes, for each good line."""
        if self.rates is not None:
            if _fastrates is not None and self._c_rates_ok() and "\n" not in self.prefix:
                # the C text, line by line; the name is what precedes the two numbers (a
                # prefix with a newline, which would cut the text wrongly, goes by `lines`)
                data, n = self._c_rates_data(body)
                return [(t.rsplit(b" ", 2)[0], t) for t in data.split(b"\n")[:-1]] if n else []
            return [(n.encode("utf-8"), t.encode("utf-8")) for n, t in self.lines(body)]
        # Strategy: one regular expression pulls (series, value, timestamp) out of the whole
        # body in C; Python then does one dict lookup per line (the series' carbon name,
        # decided once per series).  A body with any line the expression rejects (a bad
        # line, or merely an exponent, a '+' or a signed timestamp) takes the per-line path
        # instead, which accepts exactly what the core codec accepts and names the problem.
        found = _CARBON_LINE.findall(body)
        parts = body.split(b"\n")
        if len(found) != len(parts) - parts.count(b""):
            return [(n.encode("utf-8"), t.encode("utf-8")) for n, t in self._lines_no_rates(body)]
        out = []
        append = out.append
        names = self._bnames
        stats = self.stats
        for series, v, t in found:
            name = names.get(series)
            if name is None:
                name = self._bname(series)
            if not name:   # invalid (None) or not matching the patterns (False)
                if name is False:
                    stats["unmatched_lines"] += 1
                continue
            append((name, name + b" " + v + b" " + t))
        return out

    def encoded_data(self, body: bytes) -> tuple[bytes, int]:
        """The good lines of a body as carbon text (newline-terminated) and their number:
        the same bytes as joining `encoded`, built without a tuple per line (the per-line
        path of replicate mode: --tags fold, patterns deeper than the host)."""
        if self.rates is not None and _fastrates is not None and self._c_rates_ok():
            return self._c_rates_data(body)
        found = None if self.rates is not None else _CARBON_REST.findall(body)
        if found is not None:
            parts = body.split(b"\n")
            if len(found) != len(parts) - parts.count(b""):
                found = None
        if found is None:
            lines = self.encoded(body)
            return (b"\n".join([t for _, t in lines]) + b"\n" if lines else b""), len(lines)
        out = []
        append = out.append
        get = self._bnames.get
        unmatched = 0
        for series, rest in found:
            name = get(series)
            if name is None:
                name = self._bname(series)
            if name:
                append(name + rest)
            elif name is False:
                unmatched += 1
        self.stats["unmatched_lines"] += unmatched
        return (b"\n".join(out) + b"\n" if out else b""), len(out)

    def _c_rates_ok(self) -> bool:
        """True if the C module can do this RateConverter's work exactly (a plain
        RateConverter, its state a dict, max_rate None or a float (or an int a float holds
        exactly), max_series an int of 63 bits)."""
        r = self.rates
        m = r.max_rate
        return (type(r) is RateConverter and type(r._last) is dict
                and type(r.max_series) is int and -2 ** 62 < r.max_series < 2 ** 62
                and (m is None or type(m) is float
                     or (type(m) is int and -2 ** 53 <= m <= 2 ** 53)))

    def _c_rates_data(self, body: bytes) -> tuple[bytes, int]:
        """encoded_data with rates, by the C module; each line it leaves goes through
        `lines`, in order, and the C module goes on after it."""
        if type(body) is not bytes:
            body = bytes(body)
        rates = self.rates
        state = rates._last
        rstats = rates.stats
        stats = self.stats
        max_rate = None if rates.max_rate is None else float(rates.max_rate)
        direct = self.matcher is None and self.tags != "fold"
        names = None if direct else self._rnames
        prefix = self.prefix.encode("utf-8")
        drop = self.tags == "drop"
        out = []
        nlines = 0
        start, n = 0, len(body)
        while start < n:
            data, k, stop, c = _fastrates.convert(body, start, state, prefix, drop, names,
                                                  self._rname, max_rate, rates.max_series)
            if k:
                out.append(data)
                nlines += k
            stats["no_rate_lines"] += c[0]
            stats["unmatched_lines"] += c[1]
            for key, v in zip(_RATE_COUNTS, c[2:]):
                if v:
                    rstats[key] += v
            if stop >= n:
                break
            end = body.find(b"\n", stop)
            end = n if end < 0 else end
            for _, text in self.lines(body[stop:end]):
                out.append(text.encode("utf-8") + b"\n")
                nlines += 1
            start = end + 1
        return b"".join(out), nlines

    def _carbon_name(self, text: str):
        """The carbon name of a series, or False if the patterns exclude it; raises
        LineError if the series is invalid."""
        topic_of(text)
        if self.matcher is not None and not self.matcher(text.split(";", 1)[0]):
            return False
        return self._name(text).encode("utf-8")

    @staticmethod
    def _remember(cache: dict, key, name):
        if len(cache) > 500_000:
            cache.clear()
        cache[key] = name
        return name

    def _rname(self, series: str):
        """The carbon name of a series for the C rates path (remembered in `_rnames`), False
        if the patterns exclude it, None if it is invalid (the line then goes to `lines`)."""
        try:
            name = self._carbon_name(series)
        except LineError:
            return None
        return self._remember(self._rnames, series, name)

    def _bname(self, series: bytes):
        """The carbon name of a series (remembered), False if the patterns exclude it, None
        (not remembered, so every such line is counted) if it is invalid."""
        try:
            name = self._carbon_name(series.decode("utf-8", "replace"))
        except LineError as e:
            self.stats["bad_lines"] += 1
            self.errors.append(e)
            del self.errors[:-100]
            return None
        return self._remember(self._bnames, series, name)
