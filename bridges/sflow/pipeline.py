"""One step shared by `listen`, `decode` and the demo: payload in, lines and error texts out,
everything counted.  Pure (the caller passes `now`; nothing is logged here)."""
from __future__ import annotations

from .datagram import SflowError, decode_datagram
from .metrics import Converter
from .records import tag_name

__all__ = ["Pipeline"]


class Pipeline:
    """Decode datagrams, convert them, count what happened (in `counts`, for self-metrics)."""

    def __init__(self, interval: float = 10.0, prefix: str = "sflow", max_flow_keys: int = 2000):
        self.counts: dict[str, float] = {}
        self.converter = Converter(interval, prefix, max_flow_keys, counts=self.counts)
        #: one message per record type monbus does not know, the first time it is seen
        #: (the caller logs and clears them; every occurrence is counted in unknown_records)
        self.notices: list[str] = []
        self._unknown_seen: set = set()

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
        if dg.unknown_records and len(self._unknown_seen) < 1000:
            for smp in dg.samples:
                for rec in smp.records:
                    if rec[0] is None and (smp.kind, rec[1]) not in self._unknown_seen:
                        self._unknown_seen.add((smp.kind, rec[1]))
                        self.notices.append(
                            f"{smp.kind} record type {tag_name(rec[1])} from agent {dg.agent} "
                            f"is not known to monbus: skipped by its length and counted in "
                            f"unknown_records ({len(rec[2])} bytes: {rec[2][:32].hex()})")
        lines = self.converter.datagram(dg, now)
        return lines, problems

    def flush(self, now: float, final: bool = False) -> list[str]:
        """Lines of the aggregation windows that ended (and agent loss counters)."""
        lines = self.converter.flush(now, final)
        self.counts["lost_datagrams"] = self.converter.lost_datagrams
        return lines
