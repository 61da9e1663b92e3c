"""Datagrams the kernel dropped before monbus could read them (Linux /proc/net/udp[6]).

A UDP receiver that falls behind loses datagrams in the kernel, where the process never sees
them.  Linux counts them per socket: the last column (`drops`) of /proc/net/udp and
/proc/net/udp6, on the row whose `inode` is the socket's.  `monbus collectd listen` publishes
their sum as the `kernel_drops` self-metric.
"""
from __future__ import annotations

import os

PROC_FILES = ("/proc/net/udp", "/proc/net/udp6")


def parse_proc_net_udp(text: str, inodes: set[int]) -> int:
    """The summed `drops` of the rows of these socket inodes in /proc/net/udp text.  Pure."""
    total = 0
    lines = text.splitlines()
    if not lines:
        return 0
    header = lines[0].split()
    try:
        i_inode = header.index("inode") - 2    # the header's "tx_queue rx_queue" and
        i_drops = header.index("drops") - 2    # "tr tm->when" are single columns in rows
    except ValueError:
        return 0
    for row in lines[1:]:
        cols = row.split()
        if len(cols) > i_drops:
            try:
                if int(cols[i_inode]) in inodes:
                    total += int(cols[i_drops])
            except ValueError:
                continue
    return total


def socket_inodes(sockets) -> set[int]:
    """The inode numbers of these sockets (what /proc/net/udp lists)."""
    return {os.fstat(s.fileno()).st_ino for s in sockets}


def kernel_drops(inodes: set[int]) -> int | None:
    """Datagrams dropped by the kernel on these sockets, or None where /proc is unavailable."""
    total = 0
    seen = False
    for path in PROC_FILES:
        try:
            with open(path, encoding="ascii", errors="replace") as f:
                total += parse_proc_net_udp(f.read(), inodes)
            seen = True
        except OSError:
            continue
    return total if seen else None
