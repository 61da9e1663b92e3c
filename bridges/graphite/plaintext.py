"""Carbon's input protocols, decoded into monbus lines (pure: no sockets, no clock, no logging).

Plaintext (carbon `MetricLineReceiver` / `MetricDatagramReceiver`): one metric per line,
`<series> <value> <timestamp>`, fields separated by any whitespace, UTF-8.  Carbon's quirks
that a Graphite speaker may rely on, kept here:
- a timestamp of -1 means "now" (carbon issue #54); `now` is passed in;
- values and timestamps are anything Python's float() reads, including `4.2e-10`;
  NaN is silently ignored by carbon: here it is dropped and counted (reason `nan`), since a
  monbus line cannot carry it; infinities are rejected;
- a series may carry tags (`name;tag=value`); carbon rejects bad tag syntax, so does this.

Pickle (carbon `MetricPickleReceiver`): frames of a 4-byte big-endian length and a pickle of
a list of `(path, (timestamp, value))`.  Pickle can run code; this decoder's unpickler refuses
every global (so no class, no function can be named, let alone called) and then accepts only
that exact shape of lists, tuples, str/bytes and numbers.

monbus paths need at least `<source>.<host>`; a `prefix` (e.g. `graphite.web01`) lets
single-component carbon names (`uptime 5 1700000000`) in.
"""
from __future__ import annotations

import io
import pickle
import struct

from monbus.core.line import Line, LineError, decode, format_number

__all__ = ["decode_plaintext", "decode_datagram", "LineBuffer", "PickleFrames",
           "decode_pickle", "MAX_LINE", "MAX_PICKLE"]

#: longest line kept; longer ones are rejected (carbon's LineOnlyReceiver allows 16384)
MAX_LINE = 16384
#: largest pickle frame (carbon's Int32StringReceiver.MAX_LENGTH is 2**20)
MAX_PICKLE = 1 << 20


class CarbonError(LineError):
    """A carbon line or pickle that cannot become a monbus line."""


def _from_fields(name: str, value: float, ts: float, text, now: float, prefix: str) -> Line:
    if value != value:
        raise CarbonError("value is NaN (carbon ignores these)", text)
    if ts == -1:
        ts = float(int(now))
    series = prefix + name if prefix else name
    # build the monbus text and let the core codec validate it (it names the problem)
    try:
        return decode(f"{series} {format_number(value)} {format_number(ts)}")
    except LineError as e:
        raise CarbonError(e.problem, text) from None
    except (OverflowError, ValueError):
        raise CarbonError("value out of range", text) from None


def decode_plaintext(text: str, now: float, prefix: str = "") -> Line:
    """One carbon plaintext line (without newline) -> Line.  Raises CarbonError."""
    fields = text.split()
    if len(fields) != 3:
        if not fields:
            raise CarbonError("empty line", text)
        raise CarbonError(f"expected 3 fields (series value timestamp), got {len(fields)}", text)
    name, v, t = fields
    try:
        value = float(v)
    except ValueError:
        raise CarbonError("value is not a number", text) from None
    try:
        ts = float(t)
    except ValueError:
        raise CarbonError("timestamp is not a number", text) from None
    return _from_fields(name, value, ts, text, now, prefix)


def decode_datagram(data: bytes, now: float, prefix: str = "",
                    errors: list | None = None) -> list[Line]:
    """All lines of a UDP datagram (or a complete TCP chunk); bad ones go to `errors`."""
    out = []
    text = data.decode("utf-8", "surrogateescape")
    for raw in text.split("\n"):
        if not raw.strip():
            continue
        try:
            if len(raw) > MAX_LINE:
                raise CarbonError(f"line longer than {MAX_LINE} bytes", raw)
            try:
                raw.encode("utf-8")
            except UnicodeEncodeError:  # undecodable bytes, kept as surrogates above
                raise CarbonError("line is not UTF-8",
                                  raw.encode("utf-8", "surrogateescape")) from None
            out.append(decode_plaintext(raw, now, prefix))
        except CarbonError as e:
            if errors is not None:
                errors.append(e)
    return out


class LineBuffer:
    """Reassembles lines from a TCP stream: feed() bytes, get the complete lines' bytes."""

    def __init__(self, max_line: int = MAX_LINE):
        self.max_line = max_line
        self._rest = b""
        self.overlong = 0

    def feed(self, data: bytes) -> bytes:
        """Return the complete lines in rest+data (up to the last newline); keep the rest."""
        buf = self._rest + data if self._rest else data
        cut = buf.rfind(b"\n")
        if cut < 0:
            self._rest = buf
            if len(buf) > self.max_line:  # a line that never ends: drop it, count it
                self._rest = b""
                self.overlong += 1
            return b""
        self._rest = buf[cut + 1:]
        return buf[:cut + 1]

    def finish(self) -> bytes:
        """The last, unterminated line at end of stream (carbon drops it; we keep it)."""
        rest, self._rest = self._rest, b""
        return rest


# --- pickle ---------------------------------------------------------------------------------
class _NoGlobals(pickle.Unpickler):
    """An unpickler that can build only built-in containers and scalars."""

    def find_class(self, module, name):
        """Refuse every global: no class or function can be named."""
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")

    def persistent_load(self, pid):
        """Refuse persistent ids."""
        raise pickle.UnpicklingError("persistent ids are not allowed")


def decode_pickle(payload: bytes, now: float, prefix: str = "",
                  errors: list | None = None) -> list[Line]:
    """One pickle frame's payload: a list of (path, (timestamp, value)).  Raises CarbonError
    if the frame is not that shape; a bad item inside goes to `errors`."""
    try:
        data = _NoGlobals(io.BytesIO(payload)).load()
    except Exception as e:  # pickle raises nearly anything on garbage
        raise CarbonError(f"invalid pickle ({type(e).__name__}: {str(e)[:60]})",
                          payload[:64]) from None
    if not isinstance(data, (list, tuple)):
        raise CarbonError(f"pickle holds a {type(data).__name__}, not a list", payload[:64])
    out = []
    for item in data:
        try:
            if not (isinstance(item, (list, tuple)) and len(item) == 2
                    and isinstance(item[1], (list, tuple)) and len(item[1]) == 2):
                raise CarbonError("item is not (path, (timestamp, value))", repr(item)[:100])
            path, (ts, value) = item
            if isinstance(path, bytes):
                path = path.decode("utf-8")
            if not isinstance(path, str) or any(c.isspace() for c in path):
                raise CarbonError("path is not a string without whitespace", repr(item)[:100])
            if isinstance(ts, bool) or isinstance(value, bool):
                raise CarbonError("boolean timestamp or value", repr(item)[:100])
            try:
                ts = float(ts)
                value = float(value)
            except (TypeError, ValueError):
                raise CarbonError("timestamp or value is not a number", repr(item)[:100]) from None
            out.append(_from_fields(path, value, ts, repr(item)[:100], now, prefix))
        except (CarbonError, UnicodeDecodeError) as e:
            if errors is not None:
                errors.append(e if isinstance(e, CarbonError)
                              else CarbonError("path is not UTF-8", repr(item)[:100]))
    return out


class PickleFrames:
    """Reassembles carbon pickle frames (4-byte big-endian length + payload) from a stream."""

    def __init__(self, max_frame: int = MAX_PICKLE):
        self.max_frame = max_frame
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Return the complete payloads; raises CarbonError on an oversized frame (the
        connection should then be closed: the stream cannot be resynchronised)."""
        self._buf += data
        out = []
        while len(self._buf) >= 4:
            (n,) = struct.unpack_from("!L", self._buf)
            if n > self.max_frame:
                raise CarbonError(f"pickle frame of {n} bytes exceeds {self.max_frame}",
                                  bytes(self._buf[:16]))
            if len(self._buf) < 4 + n:
                break
            out.append(bytes(self._buf[4:4 + n]))
            del self._buf[:4 + n]
        return out
