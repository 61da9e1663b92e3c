"""Carbon's consistent-hashing placement, so sharded series land where carbon-relay puts them.

Placement facts (carbon 1.1 `carbon.hashing` / `carbon.routers.ConsistentHashingRouter`,
also followed by carbon-c-relay's `carbon_ch` cluster type):
- A destination is a node `(server, instance)`; the port plays no part in placement.
- Each node gets 100 replica points on a ring.  With the default hash (`carbon_ch`) the point
  of replica i is the first 4 hex digits of md5 of `str((server, instance)) + ":" + str(i)`,
  i.e. Python's tuple repr, e.g. `('127.0.0.1', 'a'):0` or `('10.0.0.1', None):7`.
  With `fnv1a_ch` it is FNV-1a-32 of `f"{i}-{instance}"`, folded to 16 bits (high ^ low).
- Nodes are added in the order configured; a point already taken is moved up by one until it
  is free (so points may exceed 0xffff).  Entries sort by (point, node).
- A series' key is hashed the same way; it belongs to the first entry whose point is >= its
  own (wrapping to the first entry).  With replication, the following distinct nodes follow.
- carbon-relay hashes the series name as received; with TAG_RELAY_NORMALIZED = True (off by
  default in carbon 1.1.7) it first sorts the tags by key; `normalize_series` does the same.
"""
from __future__ import annotations

import bisect
import hashlib

__all__ = ["ConsistentHashRing", "normalize_series", "HASH_TYPES"]

HASH_TYPES = ("carbon_ch", "fnv1a_ch")
REPLICAS = 100


def _fnv1a_32(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def ring_position(key: str, hash_type: str = "carbon_ch") -> int:
    """The ring point of a key (a series name or a replica key)."""
    if hash_type == "carbon_ch":
        return int(hashlib.md5(key.encode("utf-8")).hexdigest()[:4], 16)
    if hash_type == "fnv1a_ch":
        h = _fnv1a_32(key.encode("utf-8"))
        return (h >> 16) ^ (h & 0xFFFF)
    raise ValueError(f"unknown hash type {hash_type!r} (one of {', '.join(HASH_TYPES)})")


def normalize_series(series: str) -> str:
    """A tagged series as carbon normalises it: tags sorted by key (last one wins)."""
    if ";" not in series:
        return series
    name, *parts = series.split(";")
    tags = {}
    for p in parts:
        k, _, v = p.partition("=")
        tags[k] = v
    tags.pop("name", None)
    return name + "".join(f";{k}={tags[k]}" for k in sorted(tags))


class ConsistentHashRing:
    """A ring of nodes `(server, instance)`; `nodes_for(key, n)` gives n distinct nodes."""

    def __init__(self, nodes=(), hash_type: str = "carbon_ch", replicas: int = REPLICAS):
        if hash_type not in HASH_TYPES:
            raise ValueError(f"unknown hash type {hash_type!r} (one of {', '.join(HASH_TYPES)})")
        self.hash_type = hash_type
        self.replicas = replicas
        self.nodes: list[tuple] = []
        self._points: list[int] = []
        self._entries: list[tuple] = []   # (point, node), sorted
        self._cache: dict[str, tuple] = {}
        for node in nodes:
            self.add_node(node)

    def _replica_key(self, node: tuple, i: int) -> str:
        if self.hash_type == "fnv1a_ch":
            return f"{i}-{node[1]}"
        return f"{node!s}:{i}"

    def add_node(self, node: tuple) -> None:
        """Add a node `(server, instance)`; instance may be None."""
        node = tuple(node)
        if node in self.nodes:
            raise ValueError(f"node {node!r} is already on the ring")
        self.nodes.append(node)
        taken = set(self._points)
        for i in range(self.replicas):
            point = ring_position(self._replica_key(node, i), self.hash_type)
            while point in taken:
                point += 1
            taken.add(point)
            # points are unique after the probing above, so nodes are never compared
            bisect.insort(self._entries, (point, node), key=lambda e: e[0])
        self._points = [p for p, _ in self._entries]
        self._cache.clear()

    def nodes_for(self, key: str, count: int = 1, diverse: bool = False) -> tuple:
        """The first `count` distinct nodes for a key, in ring order; `diverse` skips nodes
        on a server already chosen (carbon's DIVERSE_REPLICAS)."""
        got = self._cache.get(key) if count == 1 else None
        if got is not None:
            return got
        if not self._entries:
            raise ValueError("the ring has no nodes")
        count = min(count, len(self.nodes))
        point = ring_position(key, self.hash_type)
        n = len(self._entries)
        i = bisect.bisect_left(self._points, point) % n
        out = []
        for j in range(n):
            node = self._entries[(i + j) % n][1]
            if node not in out and not (diverse and any(node[0] == o[0] for o in out)):
                out.append(node)
                if len(out) == count:
                    break
        out = tuple(out)
        if count == 1:
            if len(self._cache) > 500_000:
                self._cache.clear()
            self._cache[key] = out
        return out

    def node_for(self, key: str) -> tuple:
        """The one node a key belongs to."""
        return self.nodes_for(key, 1)[0]

