"""What a gmond does with the UDP packets it hears, minus the XML: a metadata cache and the
turning of value messages into monbus lines.  Pure: datagrams and `now` in, lines out (and
the metadata-request datagrams to send, which the daemon around it sends).

Strategy (following gmond 3.7's own receive path, gmond.c):
- Metadata (128) is cached per (host, metric).  The host is the metric id's host field; a
  spoofed id (`spoof=1`) carries `ip:name` and only the name is kept, as gmond's XML shows it.
- A value (129-135) is typed by its metadata, not by its message id: gmetric always sends a
  string (133) whatever `-t` said.  Numeric types become metric lines; `string` values are
  kept per host and become tags of the host's `heartbeat` availability line.
- A value whose metadata has not arrived yet waits (the latest one per metric, bounded, for
  `pending_ttl` seconds) and a gmetadata_request (136) for it is produced, at most once per
  `request_interval` per metric: the metric's owner then resends its metadata, as between
  gmonds.  When the metadata arrives the waiting value is published.
- The `heartbeat` metric (gmond's, or a spoofed `gmetric -H`) publishes the host's
  availability line, state UP.  A host silent for more than 4 x host_tmax (gmetad's rule) is
  published DOWN once by `expire`; its next packet publishes UP again.
"""
from __future__ import annotations

from monbus.core.line import format_number

from . import xdr
from .naming import NUMERIC_TYPES, Namer, tag_value

__all__ = ["GmondListener"]

_ERRORS_KEPT = 20


class _Host:
    __slots__ = ("last_seen", "down", "strings", "tags", "started")

    def __init__(self, now):
        self.last_seen = now
        self.down = False
        self.strings: dict[str, str] = {}
        self.tags: str | None = ""
        self.started = None


class GmondListener:
    """Feed it datagrams; get lines back.  One instance per listening socket set."""

    def __init__(self, cluster: str = "unspecified", *, host_tmax: float = 20.0,
                 namer: Namer | None = None, max_metrics: int = 100_000,
                 max_hosts: int = 50_000, pending_ttl: float = 60.0,
                 request_interval: float = 10.0):
        self.cluster = cluster
        self.host_tmax = host_tmax
        self.namer = namer or Namer()
        self.max_metrics = max_metrics
        self.max_hosts = max_hosts
        self.pending_ttl = pending_ttl
        self.request_interval = request_interval
        self.meta: dict[tuple, tuple] = {}      # (host, metric) -> (type, slope, units, tmax)
        self.pending: dict[tuple, tuple] = {}   # (host, metric) -> (Value, received at)
        self.requested: dict[tuple, float] = {}  # (host, metric) -> last request time
        self.hosts: dict[str, _Host] = {}
        self.stats = {k: 0 for k in (
            "packets", "metadata", "values", "lines", "string_values", "heartbeats",
            "bad_packets", "bad_values", "pending", "pending_published", "pending_expired",
            "metadata_requests_sent", "metadata_requests_seen", "metadata_evicted",
            "hosts_evicted", "hosts_down", "hosts_up", "tags_dropped")}
        self.errors: list[str] = []

    # -- helpers ----------------------------------------------------------------------------
    def _error(self, kind: str, msg: str) -> None:
        self.stats[kind] += 1
        self.errors.append(msg)
        del self.errors[:-_ERRORS_KEPT]

    @staticmethod
    def host_name(mid: xdr.MetricId) -> str:
        """The host a metric id is about: the name part of a spoofed `ip:name`."""
        if mid.spoof:
            ip, sep, name = mid.host.partition(":")
            return name if sep and name else mid.host
        return mid.host

    def _host(self, name: str, now: float, out: list) -> _Host:
        h = self.hosts.get(name)
        if h is None:
            if len(self.hosts) >= self.max_hosts:
                del self.hosts[next(iter(self.hosts))]
                self.stats["hosts_evicted"] += 1
            h = self.hosts[name] = _Host(now)
        else:
            h.last_seen = now
            if h.down:  # back from the dead: say so at once
                h.down = False
                self.stats["hosts_up"] += 1
                out.append(self._heartbeat(name, h, now, 0, "UP: packets again"))
        return h

    def _heartbeat(self, name: str, h: _Host, now: float, state: int, text: str) -> str:
        if h.tags is None:
            h.tags, dropped = self.namer.tags(h.strings)
            self.stats["tags_dropped"] += dropped
        pre = self.namer.host_prefix(self.cluster, name)
        out = text.replace("%", "%25").replace(" ", "%20")
        return f"{pre}heartbeat{h.tags} {state} {format_number(now)} mtype=state output={out}"

    # -- the entry points -------------------------------------------------------------------
    def feed(self, data: bytes, now: float) -> tuple[list[str], list[bytes]]:
        """One datagram -> (lines, metadata-request datagrams to send).  Bad packets are
        counted and kept in `errors`, never raised."""
        self.stats["packets"] += 1
        lines: list[str] = []
        requests: list[bytes] = []
        try:
            msg = xdr.decode(data)
        except xdr.XdrError as e:
            self._error("bad_packets", str(e))
            return lines, requests
        now = round(now, 3)
        if isinstance(msg, xdr.Value):
            self._value(msg, now, lines, requests)
        elif isinstance(msg, xdr.Metadata):
            self._metadata(msg, now, lines)
        else:
            self.stats["metadata_requests_seen"] += 1
        self.stats["lines"] += len(lines)
        return lines, requests

    def expire(self, now: float) -> list[str]:
        """Hosts silent past 4 x host_tmax -> DOWN lines (once); old waiting values dropped."""
        lines = []
        limit = 4 * self.host_tmax
        for name, h in self.hosts.items():
            if not h.down and now - h.last_seen > limit:
                h.down = True
                self.stats["hosts_down"] += 1
                lines.append(self._heartbeat(name, h, round(now, 3), 1,
                                             f"DOWN: no packet for {int(now - h.last_seen)} s"))
        if self.pending:
            old = [k for k, (_, t) in self.pending.items() if now - t > self.pending_ttl]
            for k in old:
                del self.pending[k]
                self.stats["pending_expired"] += 1
        if len(self.requested) > self.max_metrics:
            self.requested.clear()
        self.stats["lines"] += len(lines)
        return lines

    # -- message kinds ----------------------------------------------------------------------
    def _metadata(self, msg: xdr.Metadata, now: float, lines: list) -> None:
        self.stats["metadata"] += 1
        name = self.host_name(msg.id)
        key = (name, msg.id.name)
        if key not in self.meta and len(self.meta) >= self.max_metrics:
            del self.meta[next(iter(self.meta))]
            self.stats["metadata_evicted"] += 1
        self.meta[key] = (msg.type, xdr.SLOPES[msg.slope], msg.units, str(msg.tmax))
        self.requested.pop(key, None)
        h = self._host(name, now, lines)
        waiting = self.pending.pop(key, None)
        if waiting is not None:
            self.stats["pending_published"] += 1
            self._publish(waiting[0], name, h, self.meta[key], waiting[1], lines)

    def _value(self, msg: xdr.Value, now: float, lines: list, requests: list) -> None:
        self.stats["values"] += 1
        name = self.host_name(msg.id)
        key = (name, msg.id.name)
        h = self._host(name, now, lines)
        meta = self.meta.get(key)
        if meta is None:
            if key not in self.pending and len(self.pending) >= self.max_metrics:
                del self.pending[next(iter(self.pending))]
                self.stats["pending_expired"] += 1
            self.pending[key] = (msg, now)
            self.stats["pending"] += 1
            last = self.requested.get(key)
            if last is None or now - last >= self.request_interval:
                self.requested[key] = now
                # gmond answers a request naming its host plainly (spoof=0), also when its
                # own metrics are spoofed through override_hostname (tried on gmond 3.7.2)
                requests.append(xdr.encode_request(name, msg.id.name, False))
                self.stats["metadata_requests_sent"] += 1
            return
        self._publish(msg, name, h, meta, now, lines)

    def _publish(self, msg: xdr.Value, name: str, h: _Host, meta: tuple, now: float,
                 lines: list) -> None:
        vtype, slope, units, tmax = meta
        metric = msg.id.name
        if metric == "heartbeat":
            self.stats["heartbeats"] += 1
            h.started = msg.value
            lines.append(self._heartbeat(name, h, now, 0, f"UP: heartbeat {msg.value}"))
            return
        if vtype in NUMERIC_TYPES:
            v = msg.value
            if msg.kind == xdr.STRING or isinstance(v, str):
                try:
                    v = float(v)
                except ValueError:
                    self._error("bad_values", f"{name}/{metric}: {vtype} value is not a "
                                              f"number: {str(msg.value)[:80]!r}")
                    return
            if v - v != 0.0:
                self._error("bad_values", f"{name}/{metric}: value is not finite: {v!r}")
                return
            comp, suffix = self.namer.metric(metric, units, vtype, slope, tmax)
            pre = self.namer.host_prefix(self.cluster, name)
            lines.append(f"{pre}{comp} {format_number(float(v))} {format_number(now)}{suffix}")
            return
        # a string (or unknown) type: a tag of the heartbeat line
        self.stats["string_values"] += 1
        text = tag_value(str(msg.value))
        if h.strings.get(metric) != text:
            if metric not in h.strings and len(h.strings) >= 64:
                self._error("bad_values", f"{name}/{metric}: more than 64 string metrics "
                                          f"on one host; not kept")
                return
            h.strings[metric] = text
            h.tags = None
