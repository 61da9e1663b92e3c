"""The spool directory: atomic files, oldest first, bounded with counted drops."""
import os

import pytest

from monbus.core.spool import Spool, SpoolError


def test_write_read_remove_oldest_first(tmp_path):
    sp = Spool(str(tmp_path))
    names = [sp.write(b"a.b.", f"a.b.c {i} 1".encode()) for i in range(5)]
    listed = [n for n, _ in sp.list()]
    assert listed == names == sorted(names)
    assert sp.read(names[0]) == (b"a.b.", b"a.b.c 0 1")
    sp.remove(names[0])
    assert sp.read(names[0]) is None
    assert len(sp.list()) == 4


def test_bounded_spool_drops_the_oldest_and_counts(tmp_path):
    sp = Spool(str(tmp_path), max_bytes=1000)
    body = b"\n".join(b"x.h.m %d 1700000000" % i for i in range(5))  # ~100 bytes
    for _ in range(30):
        sp.write(b"x.h.", body)
    assert sp.size() <= 1000
    assert sp.dropped_messages >= 20 and sp.dropped_lines == sp.dropped_messages * 5
    # another process's writes are seen too (the size is re-read from disk)
    other = Spool(str(tmp_path), max_bytes=1000)
    other.write(b"x.h.", body)
    assert other.size() <= 1000


def test_half_written_files_are_invisible(tmp_path):
    sp = Spool(str(tmp_path))
    (tmp_path / ".123-1-1.msg.tmp").write_bytes(b"x.h.\nx.h.m 1")
    assert sp.list() == []


def test_unwritable_spool_is_a_clear_error(tmp_path):
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(SpoolError, match="cannot create spool directory"):
        Spool(str(f / "sub"))
    if os.geteuid() != 0:  # root writes anywhere
        d = tmp_path / "ro"
        d.mkdir(mode=0o500)
        with pytest.raises(SpoolError):
            Spool(str(d)).write(b"a.b.", b"a.b.c 1 2")
