"""One step shared by `listen`, `decode` and the demo: payload in, lines and error texts out,
everything counted.  Pure (the caller passes `now`; nothing is logged here)."""
from __future__ import annotations

from .datagram import SflowError, decode_datagram
from .metrics import Converter

__all__ = ["Pipeline"]


class Pipeline:
    """Decode datagrams, convert them, count what happened (in `counts`, for self-metrics)."""

    def __init__(self, interval: float = 10.0, prefix: str = "sflow", max_flow_keys: int = 2000):
        self.counts: dict[str, float] = {}
        self.converter = Converter(interval, prefix, max_flow_keys, counts=self.counts)

    def _inc(self, name, n=1):
        self.counts[name] = self.counts.get(name, 0) + n

    def feed(self, payload: bytes, now: float, source: str = "?") -> tuple[list[str], list[str]]:
        """(lines, problems) for one UDP payload from `source`."""
        self._inc("datagrams")
        try:
            dg = decode_datagram(payload)
        except SflowError as e:
            self._inc(e.reason)  # not_sflow5 / too_short / bad_header
            self._inc("dropped_datagrams")
            return [], [f"from {source}: {e}"]
        problems = []
        if dg.problems:
            self._inc("datagrams_with_errors")
            self._inc("errors", len(dg.problems))
            problems = [f"from {source} (agent {dg.agent} seq {dg.sequence}): {p}"
                        for p in dg.problems]
        if dg.notes:
            self._inc("quirks", len(dg.notes))
        lines = self.converter.datagram(dg, now)
        return lines, problems

    def flush(self, now: float, final: bool = False) -> list[str]:
        """Lines of the aggregation windows that ended (and agent loss counters)."""
        lines = self.converter.flush(now, final)
        self.counts["lost_datagrams"] = self.converter.lost_datagrams
        return lines
