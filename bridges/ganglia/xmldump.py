"""gmond's and gmetad's XML dump, parsed as a stream with expat and turned into monbus lines.

Pure: bytes in (in chunks, as they come off the socket), lines out; no socket, no clock (the
dump's own LOCALTIME is the clock; `now` is only the fallback), no logging.

The dump (gmond 3.7 lib/gm_protocol.x DTD, gmetad's xml output):

    GANGLIA_XML > GRID* > (GRID | CLUSTER)* > HOST* > METRIC* > EXTRA_DATA > EXTRA_ELEMENT*
    (gmond: GANGLIA_XML > CLUSTER > HOST ...; gmetad summaries: CLUSTER > HOSTS, METRICS)

Strategy:
- One expat parser per response, fed chunk by chunk; only start and end handlers, no tree.
  A METRIC's attributes say everything (NAME VAL TYPE UNITS TN TMAX DMAX SLOPE), so a metric
  becomes a line in its start handler; a host's lines are handed out when its HOST ends, so
  a truncated stream never yields half a host.
- Staleness (gmetad's rules): a METRIC whose TN > TMAX is not republished (counted); a HOST
  whose TN > 4 x TMAX is down: its metrics are skipped and its heartbeat line says DOWN.
- String metrics (os_name, gexec, ...) become tags of the host's heartbeat line.
- Hardening: the only DTD accepted is an internal subset of GANGLIA_XML (gmond's own ELEMENT
  and ATTLIST declarations): any ENTITY or NOTATION declaration, any external DTD or entity,
  parameter-entity parsing, nesting deeper than 64 and a response bigger than `max_bytes`
  (after gzip, which gmond's `gzip_output` uses) raise XmlDumpError at once, so an entity
  bomb never expands.  ATTLIST defaults are ignored (no amplification through them).
"""
from __future__ import annotations

import re
import zlib
from pyexpat import ExpatError, ParserCreate, XML_PARAM_ENTITY_PARSING_NEVER, errors

from monbus.core.line import format_number

from .naming import Namer, tag_value

__all__ = ["XmlDumpError", "XmlDumpParser", "parse_dump", "DEFAULT_MAX_BYTES"]

DEFAULT_MAX_BYTES = 256 * 1024 * 1024
_MAX_DEPTH = 64
_GZIP_MAGIC = b"\x1f\x8b"
_STRUCTURAL = frozenset({"GANGLIA_XML", "GRID", "CLUSTER", "HOST"})
_SLICE = 1 << 20  # expat is fed at most this much at once (bounds the recorded ends)
# expat's element and attribute names are interned through this dict, so they are the very
# objects of the literals below and every `tag == "METRIC"` is an identity hit
_NAMES = ("GANGLIA_XML", "GRID", "CLUSTER", "HOST", "METRIC", "EXTRA_DATA", "EXTRA_ELEMENT",
          "HOSTS", "METRICS", "NAME", "VAL", "TYPE", "UNITS", "TN", "TMAX", "DMAX", "SLOPE",
          "SOURCE", "LOCALTIME", "REPORTED", "UP", "DOWN", "SUM", "NUM")
# the attributes of a METRIC as gmond and gmetad write them (gmetad adds SOURCE after them)
_GMOND_ORDER = ["NAME", "VAL", "TYPE", "UNITS", "TN", "TMAX", "DMAX", "SLOPE"]
# a VAL whose text is already what format_number(float(VAL)) gives: at most 15 significant
# digits (so the double prints back as the same digits), no trailing zero, no exponent
# (repr switches to one below 1e-4), not integral.  Anything else goes through float().
_CANONICAL_FLOAT = re.compile(r"-?(?:[1-9][0-9]*\.[0-9]*[1-9]|0\.(?!0000)[0-9]*[1-9])").fullmatch
_STATS = ("hosts", "hosts_up", "hosts_down", "metrics", "string_metrics", "stale_metrics",
          "down_host_metrics", "bad_values", "clusters", "grids", "summaries", "bytes",
          "tags_dropped")


def _positive(text, default: float) -> float:
    """A positive finite number from an attribute, else `default`."""
    try:
        v = float(text)
        if v > 0 and v - v == 0.0:
            return v
    except (TypeError, ValueError):
        pass
    return default


class XmlDumpError(ValueError):
    """A response that is not acceptable Ganglia XML; the message says where and why."""


class XmlDumpParser:
    """Feed a response's bytes in chunks; `feed` and `close` return the completed lines.

    `source` is the first path component; `namer` keeps names stable across polls.
    """

    def __init__(self, now: float, namer: Namer | None = None, *,
                 max_bytes: int = DEFAULT_MAX_BYTES, grid_tag: bool = True):
        self.now = now
        self.namer = namer or Namer()
        self.max_bytes = max_bytes
        self.grid_tag = grid_tag
        self.stats = {k: 0 for k in _STATS}
        self.errors: list[str] = []     # bad values: reported, the rest of the dump goes on
        self._out: list[str] = []
        self._host_lines: list[str] | None = None
        self._mcache = self.namer._metrics  # the Namer's cache, read directly on the hot path
        self._host = None               # (prefix, ts, down, strings, tn, tmax, reported)
        self._grids: list[str] = []
        self._grid_times: list = []
        self._tags = ""                 # ";grid=<name>" of the innermost grid, or ""
        self._cluster = None            # (name, localtime as text)
        self._open: list[str] = []     # the structural (GANGLIA_XML/GRID/CLUSTER/HOST)
                                       # elements open, outermost first, as caught up
        self._seen = 0
        self._gunzip = None
        self._started = False
        self._closed = False
        p = self._p = ParserCreate(intern={n: n for n in _NAMES})
        p.StartElementHandler = self._start
        # Strategy for speed: a Python call per element end would double the cost of the
        # parse; the end handler is the C-level list.append, and the ends are looked at only
        # when the next HOST/CLUSTER/GRID starts (or at close).  METRIC and EXTRA_* ends
        # carry nothing we need.
        self._ends: list[str] = []
        p.EndElementHandler = self._ends.append
        p.StartDoctypeDeclHandler = self._doctype
        p.EntityDeclHandler = self._entity
        p.UnparsedEntityDeclHandler = self._entity
        p.NotationDeclHandler = self._notation
        p.ExternalEntityRefHandler = self._external
        p.SetParamEntityParsing(XML_PARAM_ENTITY_PARSING_NEVER)
        # attribute defaults from the DTD are not handed over: gmond's only one is SOURCE,
        # which nothing here reads, and a hostile ATTLIST default (a megabyte copied into
        # every element) would otherwise be an amplification
        p.specified_attributes = True
        p.ordered_attributes = True

    # -- hardening handlers -----------------------------------------------------------------
    def _doctype(self, name, system_id, public_id, has_internal_subset):
        if name != "GANGLIA_XML":
            raise XmlDumpError(f"DOCTYPE {name[:40]!r} is not GANGLIA_XML")
        if system_id or public_id:
            raise XmlDumpError(f"external DTD refused: {(system_id or public_id)[:80]!r}")

    def _entity(self, name, *_):
        raise XmlDumpError(f"entity declaration refused: {str(name)[:40]!r}")

    def _notation(self, name, *_):
        raise XmlDumpError(f"notation declaration refused: {str(name)[:40]!r}")

    def _external(self, context, base, system_id, public_id):
        raise XmlDumpError(f"external entity refused: {str(system_id)[:80]!r}")

    # -- the document -----------------------------------------------------------------------
    def _start(self, tag, a):
        # Called for every element start; four of a gmond METRIC's five elements are its
        # EXTRA_DATA and EXTRA_ELEMENTs (GROUP, DESC, TITLE), which carry nothing a line
        # needs: they cost one comparison each (the tag names are interned, see _NAMES).
        if tag == "METRIC":
            # the hot path: one call per metric, so everything is inlined
            h = self._host
            if h is None or h[2]:
                if h is not None:
                    self.stats["down_host_metrics"] += 1
                return
            # attributes come as [name, value, ...] (ordered_attributes: no dict per element);
            # gmond and gmetad always write them in this order, anything else takes a dict
            if a[0:16:2] == _GMOND_ORDER:  # one C-level list comparison (interned names)
                name, val, vtype, units, tn, tmax, _, slope = a[1:16:2]
            else:
                d = dict(zip(a[::2], a[1::2]))
                try:
                    name = d["NAME"]
                    val = d["VAL"]
                    vtype = d["TYPE"]
                except KeyError as e:
                    raise XmlDumpError(f"METRIC without {e.args[0]} at line "
                                       f"{self._p.CurrentLineNumber}") from None
                units, tn, tmax = d.get("UNITS", ""), d.get("TN", "0"), d.get("TMAX", "0")
                slope = d.get("SLOPE", "")
            # TN > TMAX, without int() in the usual case: gmond prints both as %u, and a
            # shorter (or equal-length, smaller) digit string is the smaller number
            if len(tn) >= len(tmax) and (len(tn) > len(tmax) or tn > tmax):
                try:
                    if int(tn) > int(tmax) > 0:
                        self.stats["stale_metrics"] += 1
                        return
                except ValueError:
                    pass
            if vtype == "string":
                self.stats["string_metrics"] += 1
                h[3][name] = val
                return
            # the value as a monbus number: gmond's integers and most of its floats (%.2f and
            # the like) are already printed the way format_number prints them
            if not ((val.isdigit() and val.isascii() and len(val) < 16) or
                    (len(val) < 17 and _CANONICAL_FLOAT(val))):
                try:
                    v = float(val)
                    if v - v != 0.0:
                        raise ValueError
                    # format_number, inlined
                    val = str(int(v)) if v.is_integer() and -1e16 < v < 1e16 else repr(v)
                except ValueError:
                    self.stats["bad_values"] += 1
                    if len(self.errors) < 20:
                        self.errors.append(f"{h[0]}{name}: {vtype} VAL is not a finite "
                                           f"number: {val[:60]!r}")
                    return
            key = (name, units, vtype, slope, tmax)
            got = self._mcache.get(key)
            if got is None:
                got = self.namer.metric(*key)
            h[8].append(f"{h[0]}{got[0]}{h[7]} {val} {h[1]}{got[1]}")
            return
        if tag == "EXTRA_ELEMENT" or tag == "EXTRA_DATA":
            return
        # any other element: first catch up with the ends seen since the last one
        if self._ends:
            self._catch_up()
        a = dict(zip(a[::2], a[1::2]))
        if tag in _STRUCTURAL:
            self._open.append(tag)
            if len(self._open) > _MAX_DEPTH:
                raise XmlDumpError(f"GRID/CLUSTER/HOST elements nested deeper than "
                                   f"{_MAX_DEPTH}")
            if tag == "HOST":
                self._begin_host(a)
            elif tag == "CLUSTER":
                self.stats["clusters"] += 1
                self._cluster = (a.get("NAME") or "unspecified", a.get("LOCALTIME"))
            elif tag == "GRID":
                self.stats["grids"] += 1
                self._grids.append(a.get("NAME") or "unspecified")
                self._grid_times.append(a.get("LOCALTIME"))
                self._set_tags()
            else:  # GANGLIA_XML
                self._started = True
        elif tag == "HOSTS" or tag == "METRICS":
            self._summary(tag, a)
        # an element Ganglia 3.7 does not write: ignored, like its end

    def _catch_up(self):
        """Apply the element ends recorded (by the C-level list.append end handler) since
        the last structural start: end a host, leave a cluster or a grid.

        expat has checked that every end matches its start, so the structural ends among
        them close the innermost open structural elements: only their number matters, and
        list.count finds it without a Python step per recorded end."""
        ends = self._ends
        n = (ends.count("HOST") + ends.count("CLUSTER") + ends.count("GRID") +
             ends.count("GANGLIA_XML"))
        ends.clear()
        opened = self._open
        for _ in range(min(n, len(opened))):
            tag = opened.pop()
            if tag == "HOST":
                self._end_host()
            elif tag == "GRID":
                if self._grids:
                    self._grids.pop()
                    self._grid_times.pop()
                self._set_tags()
            elif tag == "CLUSTER":
                self._cluster = None

    def _summary(self, tag, a):
        """gmetad's summaries (`?filter=summary` on the query port, and remote grids):
        HOSTS UP/DOWN and METRICS SUM/NUM, per cluster or per grid."""
        if self._cluster is not None:
            prefix = self.namer.host_prefix(self._cluster[0], "_summary")
            ts = self._localtime()
        elif self._grids:
            prefix = self.namer.host_prefix(self._grids[-1], "_grid_summary")
            ts = _positive(self._grid_times[-1], self.now)
        else:
            return
        ts = format_number(ts)
        tags = self._tags
        if tag == "HOSTS":
            pairs = [("hosts_up", a.get("UP"), ""), ("hosts_down", a.get("DOWN"), "")]
        else:
            name = a.get("NAME")
            if not name:
                raise XmlDumpError(f"METRICS without NAME at line {self._p.CurrentLineNumber}")
            comp, suffix = self.namer.metric(name, a.get("UNITS", ""), a.get("TYPE", ""),
                                             a.get("SLOPE", ""), "")
            pairs = [(f"{comp}.sum", a.get("SUM"), suffix), (f"{comp}.num", a.get("NUM"), "")]
        for comp, val, suffix in pairs:
            try:
                v = float(val)
                if v - v != 0.0:
                    raise ValueError
            except (TypeError, ValueError):
                self.stats["bad_values"] += 1
                if len(self.errors) < 20:
                    self.errors.append(f"{prefix}{comp}: summary value is not a finite "
                                       f"number: {str(val)[:60]!r}")
                continue
            self._out.append(f"{prefix}{comp}{tags} {format_number(v)} {ts}"
                             f"{suffix or ' mtype=gauge'}")
            self.stats["summaries"] += 1

    def _set_tags(self):
        g = tag_value(self._grids[-1]) if (self._grids and self.grid_tag) else ""
        self._tags = f";grid={g}" if g else ""

    def _localtime(self) -> float:
        return _positive(self._cluster[1] if self._cluster else None, self.now)

    def _begin_host(self, a):
        if self._cluster is None:
            raise XmlDumpError(f"HOST outside a CLUSTER at line {self._p.CurrentLineNumber}")
        name = a.get("NAME")
        if not name:
            raise XmlDumpError(f"HOST without NAME at line {self._p.CurrentLineNumber}")
        self.stats["hosts"] += 1
        local = self._localtime()
        try:
            reported = float(a.get("REPORTED", ""))
            if not (reported > 0 and reported - reported == 0.0):
                raise ValueError
        except ValueError:
            reported = local
        try:
            tn = int(a.get("TN", "0"))
            tmax = int(a.get("TMAX", "0"))
        except ValueError:
            tn = tmax = 0
        down = tmax > 0 and tn > 4 * tmax  # gmetad: a host is down after 4 x TMAX
        prefix = self.namer.host_prefix(self._cluster[0], name)
        self._host_lines = []
        self._host = (prefix, format_number(reported), down, {}, tn, tmax, local, self._tags,
                      self._host_lines)

    def _end_host(self):
        h = self._host
        if h is None:
            return
        prefix, ts, down, strings, tn, tmax, local, tags, _ = h
        if strings:
            more, dropped = self.namer.tags(strings)
            tags += more
            self.stats["tags_dropped"] += dropped
        if down:
            self.stats["hosts_down"] += 1
            line = (f"{prefix}heartbeat{tags} 1 {format_number(local)} mtype=state "
                    f"output=DOWN:%20no%20report%20for%20{tn}%20s%20(TMAX%20{tmax})")
        else:
            self.stats["hosts_up"] += 1
            line = (f"{prefix}heartbeat{tags} 0 {ts} mtype=state "
                    f"output=UP:%20reported%20{tn}%20s%20ago")
        self.stats["metrics"] += len(self._host_lines)
        self._host_lines.append(line)
        self._out.extend(self._host_lines)
        self._host = None
        self._host_lines = None

    # -- feeding ----------------------------------------------------------------------------
    def _fail(self, e: ExpatError, data: bytes):
        tail = bytes(data[-60:])
        raise XmlDumpError(f"bad XML: {errors.messages[e.code]} at line {e.lineno} column "
                           f"{e.offset} (after {self._seen} bytes; last bytes {tail!r})") from None

    def feed(self, data: bytes) -> list[str]:
        """Parse the next chunk; return the lines of the hosts completed so far.
        Raises XmlDumpError (the caller drops the rest of this response)."""
        if self._closed:
            raise XmlDumpError("feed after close")
        if self._seen == 0 and self._gunzip is None and data[:2] == _GZIP_MAGIC:
            self._gunzip = zlib.decompressobj(16 + zlib.MAX_WBITS)
        if self._gunzip is not None:
            room = self.max_bytes - self._seen + 1
            try:
                data = self._gunzip.decompress(data, room)
            except zlib.error as e:
                raise XmlDumpError(f"bad gzip stream: {e}") from None
            if self._gunzip.unconsumed_tail:
                raise XmlDumpError(f"response larger than {self.max_bytes} bytes (gunzipped)")
        self._seen += len(data)
        self.stats["bytes"] = self._seen
        if self._seen > self.max_bytes:
            raise XmlDumpError(f"response larger than {self.max_bytes} bytes")
        try:
            for i in range(0, len(data), _SLICE):
                self._p.Parse(data[i:i + _SLICE], False)
                if len(self._ends) > 100_000:  # a flood of elements inside one host
                    self._ends[:] = [t for t in self._ends if t in _STRUCTURAL]
        except ExpatError as e:
            self._fail(e, data)
        except LookupError as e:  # pyexpat asks Python's codecs for an unknown encoding
            raise XmlDumpError(f"bad XML: {str(e)[:80]} (in the XML declaration)") from None
        out, self._out = self._out, []
        return out

    def close(self) -> list[str]:
        """End of the response: the last lines, or XmlDumpError if it was cut short."""
        if self._closed:
            return []
        self._closed = True
        if self._gunzip is not None and not self._gunzip.eof:
            raise XmlDumpError("bad gzip stream: it ends before its end marker")
        if self._seen == 0:
            raise XmlDumpError("empty response")
        try:
            self._p.Parse(b"", True)
        except ExpatError as e:
            self._fail(e, b"")
        except LookupError as e:
            raise XmlDumpError(f"bad XML: {str(e)[:80]} (in the XML declaration)") from None
        self._catch_up()
        if not self._started:
            raise XmlDumpError("no GANGLIA_XML element")
        out, self._out = self._out, []
        return out


def parse_dump(data: bytes, now: float, namer: Namer | None = None, **kw) -> tuple[list, dict]:
    """A whole response at once -> (lines, stats).  Raises XmlDumpError."""
    p = XmlDumpParser(now, namer, **kw)
    lines = p.feed(data)
    lines += p.close()
    return lines, p.stats
