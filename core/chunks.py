"""Reading line-oriented input in large chunks that end on a line boundary."""
from __future__ import annotations

from typing import BinaryIO, Iterator


def line_chunks(f: BinaryIO, size: int = 1 << 20) -> Iterator[bytes]:
    """Chunks of about `size` bytes of `f`, each ending at a newline (which is dropped);
    the last one holds what follows the final newline, if anything."""
    read = getattr(f, "read1", None) or f.read
    rest = b""
    while True:
        chunk = read(size)
        if not chunk:
            break
        chunk = rest + chunk
        cut = chunk.rfind(b"\n")
        if cut < 0:
            rest = chunk
            continue
        rest = chunk[cut + 1:]
        yield chunk[:cut]
    if rest:
        yield rest
