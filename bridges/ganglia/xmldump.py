"""gmond's and gmetad's XML dump, parsed as a stream and turned into monbus lines.

Pure: bytes in (in chunks, as they come off the socket), lines out; no socket, no clock (the
dump's own LOCALTIME is the clock; `now` is only the fallback), no logging.

The dump (gmond 3.7 lib/gm_protocol.x DTD, gmetad's xml output):

    GANGLIA_XML > GRID* > (GRID | CLUSTER)* > HOST* > METRIC* > EXTRA_DATA > EXTRA_ELEMENT*
    (gmond: GANGLIA_XML > CLUSTER > HOST ...; gmetad summaries: CLUSTER > HOSTS, METRICS)

Strategy: two parsers, one answer.
- The exact path (`_ExpatDump`) is expat, fed chunk by chunk, with only start and end
  handlers and no tree.  A METRIC's attributes say everything (NAME VAL TYPE UNITS TN TMAX
  DMAX SLOPE), so a metric becomes a line in its start handler; a host's lines are handed out
  once its HOST has ended (when the next element starts, or at the end), so a truncated
  stream never yields half a host.  It takes any well-formed dump, and it is the reference.
- The fast path (`_FastDump`) exists because expat calls Python five times per gmond METRIC
  (METRIC, EXTRA_DATA and three EXTRA_ELEMENTs), which caps that design at about a third of
  a bare expat parse.  It reads only the canonical form gmond and gmetad write: compiled
  regular expressions match a whole `<METRIC ...>...</METRIC>` block (its start tag, with
  the attributes a line needs captured, then its EXTRA_DATA and end tag), or one start or
  end tag of
  GANGLIA_XML/GRID/CLUSTER/HOST (and gmetad's HOSTS/METRICS summaries); the matches are made
  with `pattern.match(text, pos)` so they must tile the document exactly, with nothing but
  XML whitespace between them.  One Python step per METRIC instead of five callbacks; a
  METRIC's EXTRA_DATA equal to one already matched for that metric name (gmond writes the
  same GROUP/DESC/TITLE on every host) is compared with `startswith`, not matched again.
- The fast path proves well-formedness itself, narrowly: the XML declaration (version 1.0,
  ISO-8859-1 or UTF-8) and the DOCTYPE (byte for byte gmond 3.7's, or none) are known ones;
  attribute values hold no '<', no control character, no U+FFFE/U+FFFF and no '&' (no
  reference at all), except a METRIC's VAL, where XML's five predefined entities are read
  (gmond escapes string values; nothing is ever expanded from a DTD); a UTF-8 document
  decodes strictly; every end tag
  closes the innermost open element, each element appears only where gmond and gmetad put it
  (METRIC in HOST, HOST in CLUSTER, ...), no attribute is repeated, and `</GANGLIA_XML>`
  ends the document with only whitespace after it.  Anything else it meets (other attribute
  orders, single quotes, entities, comments, processing instructions, CDATA, unknown
  elements, another DOCTYPE, a truncated stream) hands the whole response to the exact path,
  which parses the bytes kept so far from the start and skips the lines the fast path
  already handed out (both produce the same lines in the same order, which the tests check
  on real, generated and corrupted dumps; the fast path hands a host's lines out when the
  next element starts, as the exact path does).  Well-formedness is a property of the whole
  response, so a response is all-or-nothing for its caller (the poller publishes nothing
  of a response that raises XmlDumpError), whichever path read it.
- Staleness (gmetad's rules): a METRIC whose TN > TMAX is not republished (counted); a HOST
  whose TN > 4 x TMAX is down: its metrics are skipped and its heartbeat line says DOWN.
- String metrics (os_name, gexec, ...) become tags of the host's heartbeat line.
- Hardening: the exact path accepts as DTD only an internal subset of GANGLIA_XML (gmond's
  own ELEMENT and ATTLIST declarations): any ENTITY or NOTATION declaration, any external
  DTD or entity, parameter-entity parsing and nesting deeper than 64 raise XmlDumpError at
  once, so an entity bomb never expands; ATTLIST defaults are ignored (no amplification
  through them).  The fast path expands nothing.  Both run behind the same size limit per
  response, `max_bytes` (after gzip, which gmond's `gzip_output` uses); the fast path keeps
  the response's bytes (within that limit) until it has vouched for all of them.
"""
from __future__ import annotations

import codecs
import hashlib
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


class _DumpState:
    """What both parsers share: the open grid/cluster/host, and how a host, a cluster, a grid
    and a summary become lines (so both give the very same lines)."""

    def __init__(self, now: float, namer: Namer, grid_tag: bool):
        self.now = float(now)  # format_number takes floats (an int `now` broke it)
        self.namer = namer
        self.grid_tag = grid_tag
        self.stats = {k: 0 for k in _STATS}
        self.errors: list[str] = []     # bad values: reported, the rest of the dump goes on
        self._out: list[str] = []
        self._host_lines: list[str] | None = None
        self._mcache = namer._metrics   # the Namer's cache, read directly on the hot path
        self._host = None               # (prefix, ts, down, strings, tn, tmax, local, tags,
                                        #  lines)
        self._grids: list[str] = []
        self._grid_times: list = []
        self._tags = ""                 # ";grid=<name>" of the innermost grid, or ""
        self._cluster = None            # (name, localtime as text)
        self._started = False

    def _where(self) -> str:
        raise NotImplementedError

    def _begin_cluster(self, a):
        self.stats["clusters"] += 1
        self._cluster = (a.get("NAME") or "unspecified", a.get("LOCALTIME"))

    def _begin_grid(self, a):
        self.stats["grids"] += 1
        self._grids.append(a.get("NAME") or "unspecified")
        self._grid_times.append(a.get("LOCALTIME"))
        self._set_tags()

    def _end_grid(self):
        if self._grids:
            self._grids.pop()
            self._grid_times.pop()
        self._set_tags()

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
                raise XmlDumpError(f"METRICS without NAME at {self._where()}")
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
            raise XmlDumpError(f"HOST outside a CLUSTER at {self._where()}")
        name = a.get("NAME")
        if not name:
            raise XmlDumpError(f"HOST without NAME at {self._where()}")
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


class _ExpatDump(_DumpState):
    """The exact path: expat, element by element (see the module's Strategy)."""

    def __init__(self, now: float, namer: Namer, grid_tag: bool):
        super().__init__(now, namer, grid_tag)
        self._open: list[str] = []     # the structural (GANGLIA_XML/GRID/CLUSTER/HOST)
                                       # elements open, outermost first, as caught up
        self._seen = 0
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

    def _where(self) -> str:
        return f"line {self._p.CurrentLineNumber}"

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
                self._begin_cluster(a)
            elif tag == "GRID":
                self._begin_grid(a)
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
                self._end_grid()
            elif tag == "CLUSTER":
                self._cluster = None

    # -- feeding ----------------------------------------------------------------------------
    def _fail(self, e: ExpatError, data: bytes):
        tail = bytes(data[-60:])
        raise XmlDumpError(f"bad XML: {errors.messages[e.code]} at line {e.lineno} column "
                           f"{e.offset} (after {self._seen} bytes; last bytes {tail!r})") from None

    def feed(self, data: bytes) -> list[str]:
        """Parse the next chunk (gunzipped, within the size limit); the lines of the hosts
        completed so far.  Raises XmlDumpError."""
        self._seen += len(data)
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


# --- the fast path ---------------------------------------------------------------------------
class _NotCanonical(Exception):
    """The fast path cannot vouch for this response (the message says why): the exact path
    parses it instead."""


_WS = r"[ \t\r\n]"                                   # XML's whitespace (str's \s is wider)
# an attribute value with nothing expat would change or refuse: no reference (&), no '<', no
# TAB/CR/LF (expat turns them into spaces); the characters XML has no place for anywhere
# (the other C0 controls, U+FFFE, U+FFFF) are looked for in each whole chunk instead (a
# smaller class here makes the regex a third faster)
_VALUE = r'"([^"<&\t\n\r]*+)"'
_VALUE_ = r'"[^"<&\t\n\r]*+"'                       # the same, not captured
_NOT_XML_BYTES = bytes(c for c in range(32) if c not in b"\t\n\r")
# TYPE and SLOPE are enumerations in gmond's DTD, so expat would strip and collapse spaces
# in them: the fast path takes only values with no space at all
_ENUM = r'"([A-Za-z0-9_]*+)"'
_ENUM_TEXT = re.compile(r"[A-Za-z0-9_]*").fullmatch
_XNAME = r"[A-Za-z_:][-A-Za-z0-9_.:]*+"
_EXTRA_DATA = (rf"<EXTRA_DATA{_WS}*+(?:/>|>{_WS}*+(?:<EXTRA_ELEMENT NAME={_VALUE_} "
               rf"VAL={_VALUE_}{_WS}*+/>{_WS}*+)*+</EXTRA_DATA{_WS}*+>)")
# A METRIC's start tag in gmond's attribute order (gmetad adds SOURCE); groups: NAME VAL TYPE
# UNITS TN TMAX SLOPE, and '/' if the element is empty.  Every quantifier is possessive: a
# failed match never backtracks through a long value.
# VAL comes in group 2 if its text is already what the line needs (the exact path's test:
# at most 15 ASCII digits, or a _CANONICAL_FLOAT of at most 16 characters), else in group 3,
# where it may hold XML's five predefined entities: gmond escapes a string metric's VAL
# (`gmetric -v 'a&b'` gives VAL="a&amp;b"; it writes names, units and EXTRA_DATA raw)
_CANONICAL_VAL = (r'[0-9]{1,15}|(?=[-0-9.]{1,16}")'
                  r'-?(?:[1-9][0-9]*+\.[0-9]*[1-9]|0\.(?!0000)[0-9]*[1-9])')
_METRIC = re.compile(
    rf"{_WS}*+<METRIC NAME={_VALUE} "
    rf'VAL="(?:({_CANONICAL_VAL})"|((?:[^"<&\t\n\r]++|&(?:amp|lt|gt|quot|apos);)*+)") '
    rf"TYPE={_ENUM} UNITS={_VALUE} TN={_VALUE} "
    rf"TMAX={_VALUE} DMAX={_VALUE_} SLOPE={_ENUM}(?: SOURCE={_VALUE_})?{_WS}*+(/?)>")
# the rest of a METRIC that is not empty: its EXTRA_DATA and its end tag
_METRIC_REST = re.compile(rf"{_WS}*+(?:{_EXTRA_DATA}{_WS}*+)*+</METRIC{_WS}*+>")
_MAX_TAILS = 10_000  # METRIC rests remembered per response (see _FastDump._metrics),
_MAX_TAIL = 4096     # each at most this long
# Any other token of the canonical form; `m.lastindex` says which:
#   3  a start tag (1: name, 2: its attributes, parsed apart, 3: '/' if it is empty)
#   4  an end tag (4: name)
#   5  an EXTRA_DATA on its own (in gmetad's METRICS summaries)
_TOKEN = re.compile(
    rf"{_WS}*+(?:"
    rf"<(HOST|CLUSTER|GRID|HOSTS|METRICS)((?:{_WS}++{_XNAME}{_WS}*+={_WS}*+{_VALUE_})*+)"
    rf"{_WS}*+(/?)>"
    rf"|</(HOST|CLUSTER|GRID|HOSTS|METRICS|GANGLIA_XML){_WS}*+>"
    rf"|({_EXTRA_DATA}))")
_ATTR = re.compile(rf"({_XNAME}){_WS}*+={_WS}*+{_VALUE}")
# the XML declaration gmond and gmetad write (the encoding decides the decoding)
_XML_DECL = re.compile(rb'<\?xml[ \t\r\n]+version="1\.0"(?:[ \t\r\n]+encoding='
                       rb'"(ISO-8859-1|UTF-8)")?(?:[ \t\r\n]+standalone="(?:yes|no)")?'
                       rb'[ \t\r\n]*\?>')
_PROLOG = re.compile(rf"{_WS}*+(?:(<!DOCTYPE[^\[>]*+\[[^\]]*+\]{_WS}*+>){_WS}*+)?"
                     rf"<GANGLIA_XML((?:{_WS}++{_XNAME}{_WS}*+={_WS}*+{_VALUE_})*+){_WS}*+>")
# SHA-256 of the DOCTYPEs the fast path knows, '<!DOCTYPE' to ']>': gmond 3.7.2 and gmetad
# 3.7.2 write the same one (ELEMENT and ATTLIST declarations only; TYPE, SLOPE and SOURCE
# are its only non-CDATA attributes).  Any other DOCTYPE goes to the exact path.
_KNOWN_DOCTYPES = frozenset({
    "8f87aa8702fd4029ea72f586e89ae286ee5b901c20f7989b38d72eddfc7f115d",
})
# where gmond and gmetad put each element (the fast path takes nothing else)
_CHILDREN = {"GANGLIA_XML": frozenset({"GRID", "CLUSTER"}),
             "GRID": frozenset({"GRID", "CLUSTER", "HOSTS", "METRICS"}),
             "CLUSTER": frozenset({"HOST", "HOSTS", "METRICS"})}
_MAX_PENDING = 1 << 18  # the longest token the fast path waits for (a METRIC is ~300 bytes)


_OPENERS = ("<METRIC ", "<HOST", "<CLUSTER", "<GRID", "<METRICS", "<EXTRA_DATA", "</")


def _may_complete(rest: str) -> bool:
    """Whether text no token matched may still become one when more data comes (the end of
    a chunk cut it), rather than being something the fast path does not read."""
    s = rest.lstrip(" \t\r\n")
    head = s[:12]
    if not any(head.startswith(o) or o.startswith(head) for o in _OPENERS):
        return False
    for tag in ("METRIC", "EXTRA_DATA"):  # the tokens that hold elements
        if s.startswith(f"<{tag}") and not s.startswith("<METRICS"):
            end = s.find(">")
            if end < 0:
                return True
            if s[end - 1] == "/":   # an empty one, whole, and not matched
                return False
            close = s.find(f"</{tag}")
            return close < 0 or s.find(">", close) < 0
    return ">" not in s


def _unescape(text: str) -> str:
    """XML's five predefined entities (the only references the fast path reads), '&amp;'
    last so that '&amp;lt;' stays '&lt;'."""
    return (text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"')
            .replace("&apos;", "'").replace("&amp;", "&"))


def _latin1(data: bytes, final: bool = False) -> str:
    return data.decode("latin-1")


class _FastDump(_DumpState):
    """The fast path for the canonical form (see the module's Strategy).  `feed` and `close`
    raise _NotCanonical for anything it cannot vouch for."""

    def __init__(self, now: float, namer: Namer, grid_tag: bool):
        super().__init__(now, namer, grid_tag)
        self._head = b""                # the first bytes, until the encoding is known
        self._decode = None             # bytes -> str once it is
        self._text = ""                 # decoded, not matched yet (less than one token)
        self._stack: list[str] = []     # open elements, outermost first
        self._tails: dict[str, str] = {}  # METRIC name -> the text of a rest already matched

    def _where(self) -> str:
        return "the fast path"  # not reached: the fast path checks before it calls

    def _decoded(self, data: bytes, final: bool = False) -> str:
        """The next chunk as text; _NotCanonical if it holds a character XML refuses."""
        if len(data.translate(None, _NOT_XML_BYTES)) != len(data):
            raise _NotCanonical("a control character")
        try:
            text = self._decode(data, final)
        except UnicodeDecodeError as e:
            raise _NotCanonical(f"not UTF-8: {e}") from None
        if self._decode is not _latin1 and ("\ufffe" in text or "\uffff" in text):
            raise _NotCanonical("U+FFFE or U+FFFF")
        return text

    def _prolog_bytes(self, head: bytes, final: bool) -> str | None:
        """The XML declaration: choose the decoding; the text after it, or None (wait)."""
        if len(head) < 6 and not final:
            return None
        if head.startswith(b"<?xml"):
            end = head.find(b"?>")
            if end < 0:
                if final or len(head) > 512:
                    raise _NotCanonical(f"XML declaration {head[:100]!r}")
                return None
            m = _XML_DECL.fullmatch(head, 0, end + 2)
            if m is None:
                raise _NotCanonical(f"XML declaration {head[:end + 2][:100]!r}")
            enc, body = m.group(1), head[end + 2:]
        elif head[:1] == b"<":
            enc, body = None, head
        else:
            raise _NotCanonical(f"starts with {head[:20]!r}")
        if enc == b"ISO-8859-1":
            self._decode = _latin1
        else:  # no declaration: UTF-8 (a UTF-16 document starts with a BOM: refused above)
            self._decode = codecs.getincrementaldecoder("utf-8")("strict").decode
        return self._decoded(body, final)

    def feed(self, data: bytes) -> list[str]:
        if self._decode is None:
            self._head += data
            text = self._prolog_bytes(self._head, False)
            if text is None:
                return []
            self._head = b""
        else:
            text = self._decoded(data)
            if self._text:
                if ">" not in text:  # every token ends with '>': none can be complete yet
                    if len(self._text) + len(text) > _MAX_PENDING:
                        raise _NotCanonical(f"no token in {self._text[:100]!r}...")
                    self._text += text
                    return []
                text = self._text + text
        self._run(text, False)
        out, self._out = self._out, []
        return out

    def close(self) -> list[str]:
        if self._decode is None:
            text = self._prolog_bytes(self._head, True)
        else:
            text = self._text + self._decoded(b"", True)
        self._run(text, True)
        if self._stack or not self._started:
            raise _NotCanonical("the document ends before </GANGLIA_XML>")
        if self._host is not None:
            self._end_host()
        out, self._out = self._out, []
        return out

    def _attributes(self, text: str) -> dict:
        pairs = _ATTR.findall(text)
        a = dict(pairs)
        if len(a) != len(pairs):
            raise _NotCanonical(f"an attribute repeated in {text[:100]!r}")
        return a

    def _run(self, text: str, final: bool) -> None:
        """Match tokens from the start of `text`; keep what is left for the next chunk."""
        pos = 0
        stack = self._stack
        if not self._started:
            m = _PROLOG.match(text)
            if m is None:
                if final or len(text) > _MAX_PENDING:
                    raise _NotCanonical(f"prolog {text[:100]!r}")
                self._text = text
                return
            doctype = m.group(1)
            if doctype is not None and hashlib.sha256(
                    doctype.encode("utf-8")).hexdigest() not in _KNOWN_DOCTYPES:
                raise _NotCanonical(f"unknown DOCTYPE {doctype[:60]!r}")
            self._attributes(m.group(2))
            self._started = True
            stack.append("GANGLIA_XML")
            pos = m.end()
        top = stack[-1] if stack else None
        match = _TOKEN.match
        while True:
            if top == "HOST":
                pos = self._metrics(text, pos)
            m = match(text, pos)
            if m is None:
                break
            pos = m.end()
            k = m.lastindex
            if k == 3:
                tag = m.group(1)
                if tag not in _CHILDREN.get(top, ()):
                    raise _NotCanonical(f"{tag} inside {top}")
                if len(stack) >= _MAX_DEPTH - 4:
                    raise _NotCanonical("nested deep")
                a = self._attributes(m.group(2))
                if self._host is not None:  # the host that ended before this start
                    self._end_host()
                if tag == "HOST":
                    if not a.get("NAME"):
                        raise _NotCanonical("HOST without NAME")
                    self._begin_host(a)
                elif tag == "CLUSTER":
                    self._begin_cluster(a)
                elif tag == "GRID":
                    self._begin_grid(a)
                else:
                    if not all(_ENUM_TEXT(a.get(n, "")) for n in ("TYPE", "SLOPE", "SOURCE")):
                        raise _NotCanonical(f"{tag} TYPE, SLOPE or SOURCE with a space")
                    if tag == "METRICS" and not a.get("NAME"):
                        raise _NotCanonical("METRICS without NAME")
                    self._summary(tag, a)
                if m.group(3):  # <TAG .../>: ended at once
                    self._end(tag)
                else:
                    stack.append(tag)
                    top = tag
            elif k == 4:
                tag = m.group(4)
                if tag != top:
                    raise _NotCanonical(f"</{tag}> closes {top}")
                stack.pop()
                self._end(tag)
                top = stack[-1] if stack else None
            elif top != "METRICS":  # k == 5
                raise _NotCanonical(f"EXTRA_DATA inside {top}")
        rest = text[pos:] if pos else text
        if not stack:  # after </GANGLIA_XML>: only whitespace
            if rest.strip(" \t\r\n"):
                raise _NotCanonical(f"after </GANGLIA_XML>: {rest[:60]!r}")
            self._text = ""
        elif final or len(rest) > _MAX_PENDING or not _may_complete(rest):
            raise _NotCanonical(f"cannot read {rest[:100]!r}" if rest else "truncated")
        else:
            self._text = rest

    def _metrics(self, text: str, pos: int) -> int:
        """The hot loop: the METRICs of the open host from `pos`, one regex match and one
        Python step each; where they end (at the start of the first one not read whole).
        It is the exact path's METRIC branch on the same values (both must give the very
        same lines).

        A METRIC's rest (EXTRA_DATA and end tag) is what gmond writes for that metric on
        every host (GROUP, DESC, TITLE): text equal to a rest already matched is as good,
        and a memory comparison (`startswith`) is far cheaper than matching it again."""
        h = self._host
        match = _METRIC.match
        rest = _METRIC_REST.match
        tails = self._tails
        if h[2]:  # a host that is down: its metrics are counted, not published
            while True:
                m = match(text, pos)
                if m is None:
                    return pos
                end = m.end()
                if not m.group(9):
                    r = rest(text, end)
                    if r is None:
                        return pos
                    end = r.end()
                self.stats["down_host_metrics"] += 1
                pos = end
        stats = self.stats
        errors = self.errors
        mcache = self._mcache
        prefix, ts, _, strings, _, _, _, tags, lines = h
        append = lines.append
        while True:
            m = match(text, pos)
            if m is None:
                return pos
            name, val, other, vtype, units, tn, tmax, slope, empty = m.groups()
            end = m.end()
            if not empty:
                tail = tails.get(name)
                if tail is not None and text.startswith(tail, end):
                    end += len(tail)
                else:
                    r = rest(text, end)
                    if r is None:  # not (yet) readable: the caller goes on from its start
                        return pos
                    end = r.end()
                    if len(tails) < _MAX_TAILS and end - m.end() < _MAX_TAIL:
                        tails[name] = r.group()
            pos = end
            if len(tn) >= len(tmax) and (len(tn) > len(tmax) or tn > tmax):
                try:
                    if int(tn) > int(tmax) > 0:
                        stats["stale_metrics"] += 1
                        continue
                except ValueError:
                    pass
            if val is None:
                val = other
                if "&" in val:
                    val = _unescape(val)
                if vtype == "string":
                    stats["string_metrics"] += 1
                    strings[name] = val
                    continue
                try:
                    v = float(val)
                    if v - v != 0.0:
                        raise ValueError
                    val = str(int(v)) if v.is_integer() and -1e16 < v < 1e16 else repr(v)
                except ValueError:
                    stats["bad_values"] += 1
                    if len(errors) < 20:
                        errors.append(f"{prefix}{name}: {vtype} VAL is not a finite "
                                      f"number: {val[:60]!r}")
                    continue
            elif vtype == "string":
                stats["string_metrics"] += 1
                strings[name] = val
                continue
            key = (name, units, vtype, slope, tmax)
            got = mcache.get(key)
            if got is None:
                got = self.namer.metric(*key)
            append(f"{prefix}{got[0]}{tags} {val} {ts}{got[1]}")

    def _end(self, tag: str) -> None:
        # a host's lines are handed out when the next element starts (or at the end), not
        # at </HOST>, exactly when the exact path hands them out: had something the fast
        # path does not read come in between, the exact path (which would then, like expat's
        # lazy ends, still count a stray METRIC to that host) gives the host instead
        if tag == "GRID":
            self._end_grid()
        elif tag == "CLUSTER":
            self._cluster = None


# --- the parser ------------------------------------------------------------------------------
class XmlDumpParser:
    """Feed a response's bytes in chunks; `feed` and `close` return the completed lines.

    `namer` keeps names stable across polls.  The fast path reads the response unless
    `fast=False` or it meets something it cannot vouch for; then the exact (expat) path
    parses the whole response from its first byte (`path` says which one answered, and
    `fallback` why the fast path gave up).  Both give the same lines.
    """

    def __init__(self, now: float, namer: Namer | None = None, *,
                 max_bytes: int = DEFAULT_MAX_BYTES, grid_tag: bool = True, fast: bool = True):
        self.now = now
        self.namer = namer or Namer()
        self.max_bytes = max_bytes
        self.grid_tag = grid_tag
        self.fallback: str | None = None
        self._seen = 0
        self._gunzip = None
        self._closed = False
        self._raw: list[bytes] = []     # the response so far, while the fast path reads it
        self._skip = 0                  # lines the fast path handed out: the exact path,
                                        # parsing from the start, gives them again
        self._fast = _FastDump(now, self.namer, grid_tag) if fast else None
        self._exact = None if fast else _ExpatDump(now, self.namer, grid_tag)

    @property
    def path(self) -> str:
        """'fast' or 'exact': which parser is reading (or read) this response."""
        return "fast" if self._exact is None else "exact"

    @property
    def stats(self) -> dict:
        return (self._fast if self._exact is None else self._exact).stats

    @property
    def errors(self) -> list[str]:
        """Bad values (reported; the rest of the dump goes on)."""
        return (self._fast if self._exact is None else self._exact).errors

    def _to_exact(self, reason: str) -> list[str]:
        """The fast path gave up: parse everything so far with expat."""
        self.fallback = reason[:200]
        self._exact = _ExpatDump(self.now, self.namer, self.grid_tag)
        self._fast = None
        raw, self._raw = self._raw, []
        out: list[str] = []
        for chunk in raw:
            out += self._exact_feed(chunk)
        return out

    def _unseen(self, out: list[str]) -> list[str]:
        if self._skip:
            n = min(self._skip, len(out))
            self._skip -= n
            del out[:n]
        return out

    def _exact_feed(self, data: bytes) -> list[str]:
        out = self._exact.feed(data)
        self._exact.stats["bytes"] = self._exact._seen
        return self._unseen(out)

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
        if not data:
            return []
        if self._exact is not None:
            return self._exact_feed(data)
        self._raw.append(data)
        try:
            out = self._fast.feed(data)
        except (_NotCanonical, XmlDumpError) as e:
            return self._to_exact(str(e))
        self._skip += len(out)
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
        out: list[str] = []
        if self._exact is None:
            try:
                out = self._fast.close()
            except (_NotCanonical, XmlDumpError) as e:
                out = self._to_exact(str(e))
            else:
                self._raw = []
                return out
        return out + self._unseen(self._exact.close())


def parse_dump(data: bytes, now: float, namer: Namer | None = None, **kw) -> tuple[list, dict]:
    """A whole response at once -> (lines, stats).  Raises XmlDumpError."""
    p = XmlDumpParser(now, namer, **kw)
    lines = p.feed(data)
    lines += p.close()
    return lines, p.stats
