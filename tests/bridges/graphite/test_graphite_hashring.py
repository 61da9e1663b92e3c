"""The consistent-hashing ring places series exactly where carbon's own
ConsistentHashingRouter (Debian graphite-carbon) and carbon-c-relay's carbon_ch put them;
and `monbus carbon --mode shard` sends each series to that node."""
from __future__ import annotations

import json
import socket
import subprocess

import pytest

from helpers import wait_for
from monbus.bridges.graphite.hashring import ConsistentHashRing

# carbon's ConsistentHashingRouter, run by Debian's /usr/bin/python3 with graphite-carbon
CARBON_RING_REFERENCE = r'''"""carbon's own ConsistentHashingRouter (Debian graphite-carbon, run with /usr/bin/python3) as
the reference placement.  argv: JSON [[server, port, instance], ...], hash type, replication.
stdin: one key per line.  stdout: one JSON list of [server, instance] per key."""
import json
import sys

from carbon.routers import ConsistentHashingRouter


class Settings(dict):
    __getattr__ = dict.__getitem__


dests = [tuple(d) for d in json.loads(sys.argv[1])]
router = ConsistentHashingRouter(Settings(REPLICATION_FACTOR=int(sys.argv[3]),
                                          DIVERSE_REPLICAS=True,
                                          ROUTER_HASH_TYPE=sys.argv[2]))
for d in dests:
    router.addDestination(d)
for key in sys.stdin.read().split("\n"):
    if key:
        print(json.dumps([[s, i] for (s, _, i) in router.getDestinations(key)]))
'''
KEYS = ([f"collectd.web{i:03d}.cpu-{i % 8}.cpu-idle" for i in range(2000)]
        + [f"snmp.router{i}.ifHCInOctets.eth{i % 4}" for i in range(1000)]
        + ["app.web01.req;dc=par;env=prod", "app.web01.req;env=prod;dc=par", "жопа.x.y"])


def reference(dests, hash_type, replication):
    r = subprocess.run(["/usr/bin/python3", "-c", CARBON_RING_REFERENCE,
                        json.dumps(dests), hash_type, str(replication)],
                       input="\n".join(KEYS), capture_output=True, text=True, timeout=120,
                       check=True)
    return [[tuple(n) for n in json.loads(x)] for x in r.stdout.splitlines()]


@pytest.mark.parametrize("hash_type", ["carbon_ch", "fnv1a_ch"])
@pytest.mark.parametrize("replication", [1, 2])
def test_ring_agrees_with_carbon(hash_type, replication):
    dests = [["127.0.0.1", 2004, "a"], ["127.0.0.1", 2104, "b"], ["10.0.0.2", 2004, None],
             ["carbon-3.example", 2004, "c"]]
    ref = reference(dests, hash_type, replication)
    ring = ConsistentHashRing([(d[0], d[2]) for d in dests], hash_type)
    mine = [list(ring.nodes_for(k, replication, diverse=True)) for k in KEYS]
    assert len(ref) == len(KEYS)
    assert mine == ref
    # and the keys really spread over every node
    assert {n[0] for n in mine} == {(d[0], d[2]) for d in dests}


def test_shard_mode_matches_carbon_c_relay(relay, daemon, line_counter, tmp_path):
    """The same lines through a real carbon-c-relay (cluster carbon_ch) and through
    `monbus carbon --mode shard` land on the same receivers."""
    from helpers import free_port
    from monbus.core.bus import Sender
    n = 3
    via_relay = [line_counter() for _ in range(n)]
    via_monbus = [line_counter() for _ in range(n)]
    keys = [f"shard.web{i % 7}.metric{i}" for i in range(600)]
    lines = [f"{k} {i} 1700000000" for i, k in enumerate(keys)]
    # carbon-c-relay: carbon_ch cluster with instances a, b, c on 127.0.0.1
    in_port = free_port()
    conf = tmp_path / "relay.conf"
    members = " ".join(f"127.0.0.1:{lc.port}={name}" for lc, name in zip(via_relay, "abc"))
    conf.write_text(f"cluster ch carbon_ch replication 1 {members};\n"
                    f"match * send to ch stop;\n")
    ccr = subprocess.Popen(["carbon-c-relay", "-f", str(conf), "-p", str(in_port), "-w", "1",
                            "-T", "10000"],   # a generous IO timeout for loaded hosts
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def up():
            try:
                socket.create_connection(("127.0.0.1", in_port), 0.2).close()
                return True
            except OSError:
                return False
        wait_for(up, 60, what="carbon-c-relay")
        with socket.create_connection(("127.0.0.1", in_port)) as s:
            s.sendall(("\n".join(lines) + "\n").encode())
        wait_for(lambda: sum(len(lc.lines) for lc in via_relay) == len(lines), 30,
                 what="carbon-c-relay to deliver")
    finally:
        ccr.kill()
        ccr.wait(10)
    # monbus carbon, shard mode, same instances
    args = ["carbon", "--connect", relay.output, "--mode", "shard", "--selfmetrics-interval",
            "0", "--relay", relay.input]
    for lc, name in zip(via_monbus, "abc"):
        args += ["--carbon", f"127.0.0.1:{lc.port}:{name}"]
    p = daemon(*args, "shard.**")
    wait_for(lambda: relay.relay._subs, 60, what="monbus carbon to subscribe")
    s = Sender(relay.input, None, 10.0)
    for x in lines:
        s.add(x)
    assert s.close(30.0)["lost_lines"] == 0
    wait_for(lambda: sum(len(lc.lines) for lc in via_monbus) == len(lines), 30,
             what="monbus carbon to deliver")
    for a, b in zip(via_relay, via_monbus):
        assert sorted(a.lines) == sorted(b.lines)
        assert a.lines          # every node got some
    assert p.stop() == 0
