"""carbon's own ConsistentHashingRouter (Debian graphite-carbon, run with /usr/bin/python3) as
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
