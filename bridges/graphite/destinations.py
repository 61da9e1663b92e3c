"""Where `monbus carbon` delivers: carbon over TCP or UDP, or whisper files directly.

Each destination has one method, `send(data)`, that either returns once the destination took
the whole chunk of plaintext lines, or raises OSError (the chunk stays in the spool).

TCP transports (carbon's plaintext protocol has no acknowledgement of its own):
- `tcp` (default): a connection per chunk; after sending, the write side is shut down and
  the send counts only once carbon closes the connection in return.  Carbon (Twisted) and
  carbon-c-relay close a connection after reading it to its end, so that close proves the
  carbon process read every byte; a carbon that died or reset the connection meanwhile makes
  the send fail and the chunk is sent again.
- `graphyte`: graphyte's own `Sender.send_message` (connection per chunk, `raise_send_errors`):
  fails when carbon refuses the connection, but counts a chunk as taken once it is in the
  kernel's send buffer.
- `udp`: graphyte over UDP, one datagram per group of whole lines under `udp_size` bytes; no
  delivery guarantee (UDP has none), only ordering and bounded datagrams.

`WhisperDestination` writes straight into whisper files (the embedded default).
"""
from __future__ import annotations

import os
import socket

__all__ = ["TcpDestination", "GraphyteDestination", "UdpDestination", "WhisperDestination",
           "TRANSPORTS", "parse_carbon", "DEFAULT_RETENTION"]

TRANSPORTS = ("tcp", "graphyte", "udp")
UDP_MAX = 65000
DEFAULT_RETENTION = "10s:6h,1m:7d,10m:5y"


def parse_carbon(text: str) -> tuple[str, int, str | None]:
    """`host:port[:instance]` (IPv6 as `[::1]:2003:a`) -> (host, port, instance)."""
    t = text.strip()
    if t.startswith("["):
        host, sep, rest = t[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"expected [IPv6]:PORT[:INSTANCE], got {text!r}")
        fields = rest[1:].split(":")
    else:
        host, *fields = t.split(":")
    if not host or not 1 <= len(fields) <= 2 or not fields[0].isdigit():
        raise ValueError(f"expected HOST:PORT[:INSTANCE], got {text!r}")
    port = int(fields[0])
    if not 0 < port < 65536:
        raise ValueError(f"bad port in {text!r}")
    instance = fields[1] if len(fields) == 2 and fields[1] else None
    return host, port, instance


class TcpDestination:
    """Carbon plaintext over TCP, a connection per chunk, delivery confirmed by carbon's close."""

    def __init__(self, host: str, port: int, timeout: float = 10.0, instance: str | None = None):
        self.host, self.port, self.instance, self.timeout = host, port, instance, timeout
        self.name = f"{host}:{port}" + (f":{instance}" if instance else "")

    def send(self, data: bytes) -> None:
        """Deliver a chunk of whole lines; raise OSError if it was not taken."""
        with socket.create_connection((self.host, self.port), self.timeout) as s:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            # carbon reads to the end of our stream, then closes: b"" proves it read it all.
            # Anything it might send back (nothing, in the plaintext protocol) is discarded.
            while s.recv(65536):
                pass


class GraphyteDestination:
    """Carbon plaintext over TCP through graphyte (no delivery confirmation)."""

    def __init__(self, host: str, port: int, timeout: float = 10.0, instance: str | None = None):
        import graphyte
        self.host, self.port, self.instance = host, port, instance
        self.name = f"{host}:{port}" + (f":{instance}" if instance else "")
        self._g = graphyte.Sender(host, port, timeout=timeout, raise_send_errors=True)

    def send(self, data: bytes) -> None:
        """Deliver a chunk of whole lines; raise OSError if it was not taken."""
        self._g.send_message(data)


class UdpDestination:
    """Carbon plaintext over UDP through graphyte, datagrams of whole lines under udp_size."""

    def __init__(self, host: str, port: int, timeout: float = 10.0, instance: str | None = None,
                 udp_size: int = UDP_MAX):
        import graphyte
        self.host, self.port, self.instance = host, port, instance
        self.udp_size = min(udp_size, UDP_MAX)
        self.name = f"udp:{host}:{port}" + (f":{instance}" if instance else "")
        self._g = graphyte.Sender(host, port, timeout=timeout, protocol="udp",
                                  raise_send_errors=True)

    def send(self, data: bytes) -> None:
        """Deliver a chunk of whole lines; raise OSError if it was not taken."""
        for dgram in split_datagrams(data, self.udp_size):
            self._g.send_message(dgram)


def split_datagrams(data: bytes, size: int) -> list[bytes]:
    """Whole lines grouped into pieces of at most `size` bytes (a longer line stays alone)."""
    out = []
    start, n = 0, len(data)
    while start < n:
        end = start + size
        if end >= n:
            out.append(data[start:])
            break
        cut = data.rfind(b"\n", start, end)
        if cut < 0:
            cut = data.find(b"\n", end)
            if cut < 0:
                cut = n - 1
        out.append(data[start:cut + 1])
        start = cut + 1
    return out


def parse_retention(text: str) -> list[tuple[int, int]]:
    """`10s:6h,1m:7d` -> whisper archive list [(seconds per point, points)]."""
    import whisper
    try:
        archives = [whisper.parseRetentionDef(r.strip()) for r in text.split(",") if r.strip()]
        whisper.validateArchiveList(archives)
    except (ValueError, whisper.InvalidConfiguration) as e:
        raise ValueError(f"bad retention {text!r}: {e}") from None
    return archives


def whisper_path(root: str, series: str) -> str:
    """The file carbon would use for a series: dots are directories; tagged series are first
    normalised (tags sorted, as carbon's cache does) and go under
    `_tagged/<sha256[0:3]>/<sha256[3:6]>/<name with . as _DOT_>` as carbon 1.1 does."""
    if ";" in series:
        import hashlib

        from .hashring import normalize_series
        series = normalize_series(series)
        h = hashlib.sha256(series.encode("utf-8")).hexdigest()
        rel = os.path.join("_tagged", h[0:3], h[3:6], series.replace(".", "_DOT_"))
    else:
        rel = series.replace(".", os.sep)
    return os.path.join(root, rel + ".wsp")


class WhisperDestination:
    """Writes lines into whisper files under `root` (created with `retention`)."""

    def __init__(self, root: str, retention: str = DEFAULT_RETENTION,
                 x_files_factor: float = 0.0, aggregation: str = "average"):
        import whisper
        self._whisper = whisper
        self.root = root
        self.name = f"whisper:{root}"
        self.instance = None
        self.archives = parse_retention(retention)
        self.xff = x_files_factor
        self.aggregation = aggregation
        os.makedirs(root, exist_ok=True)
        self.bad_lines = 0
        self.file_errors = 0
        self.last_error = None

    def send(self, data: bytes) -> None:
        """Deliver a chunk of whole lines; raise OSError if it was not taken."""
        whisper = self._whisper
        by_series: dict[str, list] = {}
        for raw in data.decode("utf-8", "replace").split("\n"):
            fields = raw.split(" ")
            if len(fields) < 3:
                if raw:
                    self.bad_lines += 1
                continue
            try:
                point = (int(float(fields[2])), float(fields[1]))
            except ValueError:
                self.bad_lines += 1
                continue
            by_series.setdefault(fields[0], []).append(point)
        for series, points in by_series.items():
            path = whisper_path(self.root, series)
            if not os.path.exists(path):
                os.makedirs(os.path.dirname(path), exist_ok=True)
                try:
                    whisper.create(path, self.archives, self.xff, self.aggregation)
                except whisper.InvalidConfiguration:
                    pass  # created meanwhile by someone else
            try:
                whisper.update_many(path, points)
            except whisper.WhisperException as e:
                # a corrupt or foreign file will not get better by retrying: count, go on.
                # (OSError, e.g. a full disk, propagates: the chunk is retried later.)
                self.file_errors += 1
                self.last_error = f"{path}: {e}"
