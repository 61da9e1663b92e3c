"""How Ganglia's names, types and slopes become monbus series and annotations.

Shared by the XML poller and the XDR listener so both give the same line for the same metric:

    ganglia.<cluster>.<host>.<metric>[;grid=<grid>] <value> <ts> mtype=.. unit=.. type=.. slope=.. tmax=..
    ganglia.<cluster>.<host>.heartbeat[;grid=..][;<string metric>=<value>]... <0|1> <ts> mtype=state output=..

Host names such as `node01.example.org` keep their dots out of the path (`node01_example_org`),
as in gmetad's own Graphite export; a `Sanitizer` makes sure two names never collide silently.
"""
from __future__ import annotations

import hashlib
import re

from monbus.core.line import Line, Sanitizer, encode

__all__ = ["Namer", "tag_value", "mtype_of", "NUMERIC_TYPES", "STRING_TYPES", "TAGS_MAX"]

#: gmond's metric types (the XML DTD's TYPE enumeration); `timestamp` is numeric seconds
NUMERIC_TYPES = frozenset({"int8", "uint8", "int16", "uint16", "int32", "uint32", "float",
                           "double", "timestamp"})
STRING_TYPES = frozenset({"string"})
_TAG_BAD = re.compile(r"[\s;\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_TAG_MAX = 200
_COMPONENT_MAX = 200
#: the string-metric tags of one heartbeat line stay within this many characters, so the
#: series stays well inside the line syntax's 4096 (the rest are left out and counted)
TAGS_MAX = 2000


def tag_value(text: str) -> str:
    """A string metric's value as a tag value: whitespace and ';' become '_', bounded length;
    '' if nothing is left (the tag is then left out)."""
    v = _TAG_BAD.sub("_", text.strip())[:_TAG_MAX]
    return v.lstrip("~")


def mtype_of(slope: str) -> str:
    """Ganglia slope -> monbus mtype: a positive slope is a counter, `derivative` a derive,
    anything else (zero, both, negative, unspecified) a gauge."""
    if slope == "positive":
        return "counter"
    if slope == "derivative":
        return "derive"
    return "gauge"


class Namer:
    """Remembers the path prefix of each (cluster, host) and the name and annotation suffix
    of each metric description, so the hot path is a few dict lookups and one f-string."""

    def __init__(self, source: str = "ganglia", sanitizer: Sanitizer | None = None):
        self.source = source
        self.san = sanitizer or Sanitizer()
        self._hosts: dict = {}
        self._metrics: dict = {}

    def host_prefix(self, cluster: str, host: str) -> str:
        """`ganglia.<cluster>.<host>.`"""
        key = (cluster, host)
        p = self._hosts.get(key)
        if p is None:
            if len(self._hosts) > 200_000:
                self._hosts.clear()
            p = self._hosts[key] = f"{self.source}.{self._san(cluster)}.{self._san(host)}."
        return p

    def metric(self, name: str, units: str, vtype: str, slope: str, tmax: str):
        """(path component, annotation suffix starting with a space) of one metric."""
        key = (name, units, vtype, slope, tmax)
        got = self._metrics.get(key)
        if got is None:
            if len(self._metrics) > 200_000:
                self._metrics.clear()
            meta = {"mtype": mtype_of(slope)}
            if units.strip():
                meta["unit"] = units.strip()
            if vtype:
                meta["type"] = vtype
            if slope:
                meta["slope"] = slope
            if tmax:
                meta["tmax"] = tmax
            # the public encoder percent-encodes the annotations; keep what follows "a.b 0 0"
            suffix = encode(Line("a.b", 0.0, 0.0, meta))[len("a.b 0 0"):]
            got = self._metrics[key] = (self._san(name), suffix)
        return got

    def tag_key(self, name: str) -> str:
        """A string metric's name as a tag key."""
        return self._san(name)

    def _san(self, name: str) -> str:
        """A path component of bounded length: a very long name is cut and given a hash of
        the whole name, so it stays distinct."""
        comp = self.san(name)
        if len(comp) > _COMPONENT_MAX:
            digest = hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
            comp = f"{comp[:_COMPONENT_MAX - 10]}_x{digest}"
        return comp

    def tags(self, strings: dict) -> tuple[str, int]:
        """`;key=value...` for a host's string metrics (sorted, empty values left out) and
        how many were left out for length (TAGS_MAX)."""
        out = []
        size = 0
        dropped = 0
        for k, v in sorted(strings.items()):
            tv = tag_value(v)
            if not tv:
                continue
            t = f";{self.tag_key(k)}={tv}"
            if size + len(t) > TAGS_MAX:
                dropped += 1
                continue
            size += len(t)
            out.append(t)
        return "".join(out), dropped
