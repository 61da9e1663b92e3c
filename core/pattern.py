"""Graphite-style patterns for subscribers.

A pattern without wildcard characters is a prefix on whole path components:
`snmp.router1` matches `snmp.router1.ifHCInOctets.eth0` but not `snmp.router10.x`.

A pattern with wildcards matches the whole path, component by component:
`*` any characters within one component, `?` one character, `[a-z]` a character class,
`{a,b}` alternatives, and `**` as a whole component any number (zero or more) of
components: `collectd.web*.cpu-*.**`.

ZeroMQ filters by byte prefix on the topic `<source>.<host>.`; `zmq_prefix` gives the longest
literal prefix of a pattern that ZeroMQ can filter on, the rest is matched client-side.
"""
from __future__ import annotations

import re

_WILD = re.compile(r"[*?\[{]")


class PatternError(ValueError):
    pass


def _component_regex(comp: str, pattern: str) -> str:
    out = []
    i, n = 0, len(comp)
    while i < n:
        c = comp[i]
        if c == "*":
            out.append(r"[^.]*")
        elif c == "?":
            out.append(r"[^.]")
        elif c == "[":
            j = comp.find("]", i + 1)
            if j < 0:
                raise PatternError(f"unclosed '[' in pattern {pattern!r}")
            body = comp[i + 1:j]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = j
        elif c == "{":
            j = comp.find("}", i + 1)
            if j < 0:
                raise PatternError(f"unclosed '{{' in pattern {pattern!r}")
            alts = comp[i + 1:j].split(",")
            out.append("(?:" + "|".join(_component_regex(a, pattern) for a in alts) + ")")
            i = j
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def compile_pattern(pattern: str):
    """A predicate path -> bool for one pattern."""
    if pattern in ("", "*", "**"):
        return lambda path: True
    if not _WILD.search(pattern):
        pre = pattern.rstrip(".")
        dotted = pre + "."
        return lambda path: path == pre or path.startswith(dotted)
    # Matched against "." + path: each component is "\.<component>", and `**` is any
    # number of those, so it may also match none.
    rx = []
    for comp in pattern.split("."):
        if comp == "**":
            rx.append(r"(?:\.[^.]+)*")
        else:
            rx.append(r"\." + _component_regex(comp, pattern))
    regex = re.compile("".join(rx) + r"\Z")
    return lambda path: regex.match("." + path) is not None


def zmq_prefix(pattern: str) -> bytes:
    """The literal prefix of a pattern, cut to at most the topic `<source>.<host>.`."""
    m = _WILD.search(pattern)
    lit = pattern if m is None else pattern[:m.start()]
    if m is None:
        comps = pattern.rstrip(".").split(".")
        lit = ".".join(comps[:2]) + "." if pattern else ""
        if len(comps) == 1 and comps[0] == "":
            lit = ""
    else:
        first = lit.find(".")
        second = lit.find(".", first + 1) if first >= 0 else -1
        if second >= 0:
            lit = lit[:second + 1]
    return lit.encode("utf-8")


class Matcher:
    """Matches a path against any of several patterns, remembering answers per path."""

    def __init__(self, patterns):
        self.patterns = list(patterns) or ["**"]
        self._preds = [compile_pattern(p) for p in self.patterns]
        self.match_all = any(p in ("", "*", "**") for p in self.patterns)
        self._cache: dict[str, bool] = {}

    def __call__(self, path: str) -> bool:
        if self.match_all:
            return True
        hit = self._cache.get(path)
        if hit is None:
            hit = any(p(path) for p in self._preds)
            if len(self._cache) > 200_000:
                self._cache.clear()
            self._cache[path] = hit
        return hit

    def zmq_prefixes(self) -> list[bytes]:
        prefixes = sorted({zmq_prefix(p) for p in self.patterns})
        if b"" in prefixes:
            return [b""]
        # drop prefixes covered by a shorter one
        out = []
        for p in prefixes:
            if not any(p.startswith(q) for q in out):
                out.append(p)
        return out
