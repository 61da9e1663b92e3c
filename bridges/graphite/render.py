"""graphite-web's render API (`format=json`) decoded into new monbus lines (pure).

The JSON is a list of series `{"target": NAME, "datapoints": [[value, timestamp], ...],
"tags": {...}}`; a value is null where Graphite has no data.  NAME is the series' path, or
the expression that computed it (`sumSeries(collectd.*.load)`), or its alias.  It becomes
`<prefix>.<name>`: a plain dotted name (letters, digits, `_-+:@#%` per component) keeps its
components, anything else is sanitised into one component (never colliding silently; core
Sanitizer).

`RenderState` remembers the newest timestamp published per series, so each poll (which
reads a window like `from=-10min`) publishes only datapoints not published before.
"""
from __future__ import annotations

import json

from monbus.core.line import Line, LineError, Sanitizer, decode, format_number, sanitize

__all__ = ["RenderState", "RenderError"]


class RenderError(ValueError):
    """A render API answer that is not the expected JSON."""


class RenderState:
    """Per-series high-water marks; `new_points(body)` -> the Lines not published yet."""

    def __init__(self, prefix: str, max_series: int = 100_000):
        prefix = prefix.strip(".")
        try:
            decode(f"{prefix}.x 0 0")
        except LineError:
            raise ValueError(f"--prefix must be a path <source>.<host>, got {prefix!r}") from None
        if "." not in prefix:
            raise ValueError(f"--prefix needs at least <source>.<host>, got {prefix!r}")
        self.prefix = prefix
        self.last: dict[str, float] = {}
        self._san = Sanitizer()
        self._names: dict[str, str] = {}
        self.max_series = max_series
        self.bad_points = 0

    def series_name(self, target: str) -> str:
        """The monbus series for a graphite target name."""
        got = self._names.get(target)
        if got is None:
            comps = target.split(".")
            # a plain path keeps its components; an expression (`sumSeries(a.*.b)`, with
            # wildcards that would confuse every subscriber's patterns) becomes one component
            if all(c and sanitize(c) == c for c in comps):
                got = f"{self.prefix}.{target}"
            else:
                got = f"{self.prefix}.{self._san(target)}"
            self._names[target] = got
        return got

    def new_points(self, body: bytes | str) -> list[Line]:
        """Lines for the datapoints newer than those already seen.  Raises RenderError."""
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as e:
            raise RenderError(f"not JSON: {e}: {body[:80]!r}") from None
        if not isinstance(data, list):
            raise RenderError(f"expected a list of series, got {type(data).__name__}")
        out = []
        for s in data:
            if not isinstance(s, dict) or not isinstance(s.get("target"), str) \
                    or not isinstance(s.get("datapoints"), list):
                raise RenderError(f"not a series: {str(s)[:80]!r}")
            name = self.series_name(s["target"])
            last = self.last.get(name, float("-inf"))
            newest = last
            for dp in s["datapoints"]:
                if not (isinstance(dp, list) and len(dp) == 2):
                    self.bad_points += 1
                    continue
                value, ts = dp
                if value is None:
                    continue
                if isinstance(value, bool) or not isinstance(value, (int, float)) \
                        or not isinstance(ts, (int, float)) or isinstance(ts, bool):
                    self.bad_points += 1
                    continue
                if ts <= last:
                    continue
                try:
                    out.append(decode(f"{name} {format_number(float(value))} "
                                      f"{format_number(float(ts))}"))
                except (LineError, OverflowError, ValueError):
                    self.bad_points += 1
                    continue
                newest = max(newest, ts)
            if newest > last:
                if len(self.last) >= self.max_series and name not in self.last:
                    self.last.clear()
                self.last[name] = newest
        return out
