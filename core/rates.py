"""Counter-to-rate conversion for any subscriber (pure: no I/O, no clock, no logging).

Lines with `mtype=counter` carry an unsigned, monotonically increasing count that wraps at
2**32 or 2**64 (SNMP Counter32/Counter64, collectd COUNTER); `mtype=derive` carries a count that
only a reset makes go down (collectd DERIVE, Nagios `c` perfdata).  A subscriber that wants
per-second rates feeds every sample to a `RateConverter` and gets the rate back, or None when
there is no rate to give (first sample of a series, a reset, a rate over the maximum, a
timestamp that did not advance).  Each None is counted by reason in `stats`.

Strategy for a decrease of the raw value:
- `derive`: always a reset (device reboot, daemon restart): no rate for this interval, the new
  value becomes the base.
- `counter`: either a wrap or a reset.  The counter width is the smallest of 32/64 bits that
  holds both values.  A wrap is assumed only when the wrapped delta is less than half of the
  counter range (the old value was near the top, the new one near the bottom), and, if a
  maximum rate is set, the resulting rate does not exceed it.  Otherwise it is a reset.  So a
  reboot of a device whose 64-bit counter was at 10**12 never becomes a 2**64-sized spike.
- Any rate above `max_rate` is dropped (counted as `over_max`), never emitted.

It imports nothing: the Graphite sink uses it (`monbus carbon --rates`), and so can any subscriber.
"""
from __future__ import annotations

from typing import NamedTuple

__all__ = ["RateConverter", "Rate", "RATE_MTYPES"]

#: the mtypes a RateConverter turns into rates
RATE_MTYPES = frozenset({"counter", "derive"})

_W32 = 2 ** 32
_W64 = 2 ** 64


class Rate(NamedTuple):
    """One converted sample: the per-second rate at `timestamp`."""
    value: float
    timestamp: float


class RateConverter:
    """Turns successive samples of counters into per-second rates, per series.

    `max_rate`: rates above it are dropped (None = no limit).  `max_series`: bound on the
    remembered series (the state is cleared, and counted in `stats['evictions']`, when full).
    """

    def __init__(self, max_rate: float | None = None, max_series: int = 1_000_000):
        if max_rate is not None and not max_rate > 0:
            raise ValueError(f"max_rate must be positive, got {max_rate!r}")
        self.max_rate = max_rate
        self.max_series = max_series
        self._last: dict[str, tuple[float, float]] = {}
        self.stats = {"rates": 0, "first": 0, "resets": 0, "wraps": 0, "over_max": 0,
                      "not_advancing": 0, "evictions": 0}

    def __len__(self) -> int:
        return len(self._last)

    def feed(self, series: str, value: float, timestamp: float, mtype: str = "counter"):
        """Feed one sample; return a Rate, or None if this sample yields no rate."""
        last = self._last.get(series)
        if last is None and len(self._last) >= self.max_series:
            self._last.clear()
            self.stats["evictions"] += 1
        if last is None:
            self._last[series] = (value, timestamp)
            self.stats["first"] += 1
            return None
        last_value, last_ts = last
        dt = timestamp - last_ts
        if dt <= 0:
            # a repeated or out-of-order sample: keep the newer base, give no rate
            self.stats["not_advancing"] += 1
            return None
        self._last[series] = (value, timestamp)
        delta = value - last_value
        if delta < 0:
            delta = self._wrapped_delta(last_value, value, dt) if mtype == "counter" else None
            if delta is None:
                self.stats["resets"] += 1
                return None
            self.stats["wraps"] += 1
        rate = delta / dt
        if self.max_rate is not None and rate > self.max_rate:
            self.stats["over_max"] += 1
            return None
        self.stats["rates"] += 1
        return Rate(rate, timestamp)

    def _wrapped_delta(self, last: float, value: float, dt: float) -> float | None:
        """The delta if `last -> value` is a plausible wrap of an unsigned counter, else None."""
        if last < 0 or value < 0:
            return None  # a signed value is no wrapping counter
        width = _W32 if last < _W32 else _W64
        if last >= _W64:
            return None
        delta = width - last + value
        if delta >= width / 2:
            return None
        if self.max_rate is not None and delta / dt > self.max_rate:
            return None
        return delta

    def forget(self, series: str) -> None:
        """Drop the state of one series (its next sample is a first sample again)."""
        self._last.pop(series, None)
