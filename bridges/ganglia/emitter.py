"""monbus lines -> gmetric XDR datagrams for a gmond (`monbus ganglia emit`).  Pure.

Each line becomes what `gmetric -S ip:host -t double` would send: a gmetadata_full (128)
the first time a (host, metric) is seen and again every `metadata_interval` seconds (a
restarted gmond forgets metadata, and values without metadata are dropped by gmond), then a
gmetric_string (133) value.  Every metric is spoofed (`spoof=1`, host `name:name`, extra
SPOOF_HOST) so gmond files it under the bus host it came from, not under monbus's host.

Naming: `<source>.<host>.<rest>[;tags]` -> host `<host>`, metric `<source>.<rest>[;tags]`;
lines that came from Ganglia (`ganglia.<cluster>.<host>.<metric>`) keep their own host and
metric name.  Slope from mtype: counter/derive -> positive, otherwise both; the unit
annotation becomes UNITS.
"""
from __future__ import annotations

from monbus.core.line import Line, format_number

from . import xdr

__all__ = ["GmetricEmitter"]


class GmetricEmitter:
    """Turns Lines into datagrams; remembers when each metric's metadata was last sent."""

    def __init__(self, *, tmax: int = 60, dmax: int = 0, metadata_interval: float = 30.0,
                 group: str | None = None, max_packet: int = xdr.MAX_PACKET,
                 max_metrics: int = 100_000):
        self.tmax = tmax
        self.dmax = dmax
        self.metadata_interval = metadata_interval
        self.group = group
        self.max_packet = max_packet
        self.max_metrics = max_metrics
        self._sent: dict[tuple, float] = {}
        self.stats = {"lines": 0, "values": 0, "metadata": 0, "too_long": 0}
        self.errors: list[str] = []

    @staticmethod
    def names(line: Line) -> tuple[str, str, str]:
        """(host, metric name, group) of a line, following the naming rule above."""
        series = line.series
        path, sep, tags = series.partition(";")
        parts = path.split(".")
        if parts[0] == "ganglia" and len(parts) >= 4:
            host, name = parts[2], ".".join(parts[3:])
        else:
            host, name = parts[1], ".".join([parts[0]] + parts[2:])
        if sep:
            name = f"{name};{tags}"
        return host, name, parts[0]

    def packets(self, line: Line, now: float) -> list[bytes]:
        """The datagrams for one line (metadata first when due); [] if it cannot fit."""
        self.stats["lines"] += 1
        host, name, source = self.names(line)
        spoof_host = f"{host}:{host}"
        meta = line.meta or {}
        key = (host, name)
        out = []
        last = self._sent.get(key)
        if last is None or now - last >= self.metadata_interval:
            mtype = meta.get("mtype", "gauge")
            slope = xdr.SLOPE_IDS["positive" if mtype in ("counter", "derive") else "both"]
            extra = {"GROUP": self.group or source, "SPOOF_HOST": spoof_host}
            md = xdr.encode_metadata(spoof_host, name, "double", meta.get("unit", ""), slope,
                                     self.tmax, self.dmax, extra, spoof=True)
            if len(md) > self.max_packet:
                self.stats["too_long"] += 1
                if len(self.errors) < 20:
                    self.errors.append(f"metadata for {_series_short(line)} is {len(md)} bytes, "
                                       f"more than gmond's {self.max_packet}")
                return []
            if len(self._sent) >= self.max_metrics and key not in self._sent:
                self._sent.clear()
            self._sent[key] = now
            self.stats["metadata"] += 1
            out.append(md)
        out.append(xdr.encode_value(spoof_host, name, xdr.STRING, format_number(line.value),
                                    spoof=True))
        self.stats["values"] += 1
        return out


def _series_short(line: Line) -> str:
    s = line.series
    return repr(s if len(s) <= 80 else s[:77] + "...")
