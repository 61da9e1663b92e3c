"""write_graphite's naming options against the real write_graphite of collectd 5.12.

One collectd runs its cpu, load, memory and df plugins and also receives value lists with
awkward names from this test (network plugin <Listen>: dots, spaces, `/ : ! ( ) =`, UTF-8,
a type equal to its plugin).  It writes every value with write_graphite to several nodes,
one per option set, each a TCP socket of this test, and forwards every value with its
network plugin to a UDP socket of this test.  Every forwarded datagram is decoded here with
the same options: the paths, values and times must be exactly the lines write_graphite
wrote, node by node.
"""
from __future__ import annotations

import math
import socket
import threading
import time

from helpers import free_port, wait_for
from monbus.bridges.collectd.naming import GraphiteNaming
from monbus.bridges.collectd.network import NetworkDecoder, encode_values
from monbus.bridges.collectd.typesdb import TypesDB

# write_graphite options (as in collectd.conf) -> the same GraphiteNaming options
NODES = {
    "default": ({}, {}),
    "reverse": ({"ReverseHost": "true"}, {"reverse_host": True}),
    "reverse_preserve": (
        {"ReverseHost": "true", "PreserveSeparator": "true", "SeparateInstances": "true",
         "DropDuplicateFields": "true"},
        {"reverse_host": True, "preserve_separator": True, "separate_instances": True,
         "drop_duplicate_fields": True}),
    "escape": ({"EscapeCharacter": '"-"', "AlwaysAppendDS": "true"},
               {"escape_character": "-", "always_append_ds": True}),
    "tags": ({"UseTags": "true"}, {"use_tags": True}),
    "tags_all": (
        {"UseTags": "true", "ReverseHost": "true", "DropDuplicateFields": "true",
         "AlwaysAppendDS": "true", "Prefix": '"pre."', "Postfix": '";env=test"'},
        {"use_tags": True, "reverse_host": True, "drop_duplicate_fields": True,
         "always_append_ds": True, "prefix": "pre.", "postfix": ";env=test"}),
}

# (host, plugin, plugin instance, type, type instance): what the test sends to collectd
NAMES = [
    ("a.b c/d", "p.x", "i.1 2", "gauge", "t.y/z=w"),
    ("web01.example.com", "app", "", "load", ""),
    ("ñ.ü", "pl", "0", "if_octets", "a:b!c(d)"),
    ("h1", "gauge", "", "gauge", "gauge"),
    ("h1", "memory", "", "memory", "used"),
]


class _Catcher:
    """A TCP server collecting everything write_graphite sends to one node."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.data = bytearray()
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            t = threading.Thread(target=self._read, args=(conn,), daemon=True)
            self.threads.append(t)
            t.start()

    def _read(self, conn):
        with conn:
            while chunk := conn.recv(65536):
                self.data += chunk

    def close(self):
        self.sock.close()
        for t in self.threads[1:]:
            t.join(10)


def _node_block(name, port, options):
    opts = "".join(f"    {k} {v}\n" for k, v in {"Prefix": '"collectd."', **options}.items())
    return (f'  <Node "{name}">\n    Host "127.0.0.1"\n    Port "{port}"\n'
            f'    Protocol "tcp"\n    StoreRates false\n{opts}  </Node>\n')


def _monbus(datagrams, options) -> set:
    """(series, value text as write_graphite prints it, time in s) of the decoded lines."""
    dec = NetworkDecoder(TypesDB(), GraphiteNaming(**{"prefix": "collectd.", **options}))
    out = set()
    for d in datagrams:
        lines, errors = dec.decode(d)
        assert errors == [], errors
        for text in lines:
            series, value, ts, *meta = text.split(" ")
            if "mtype=gauge" in meta:
                value = f"{float(value):.15g}"  # write_graphite: GAUGE_FORMAT %.15g
            out.add((series, value, math.floor(float(ts) + 0.5)))
    return out


def _write_graphite(text: str) -> tuple[set, int]:
    out = set()
    nan = 0
    for row in text.split("\r\n"):
        if row:
            series, value, ts = row.split(" ")
            if value == "nan":  # monbus drops NaN gauges (counted as nan_values)
                nan += 1
                continue
            out.add((series, value, int(ts)))
    return out, nan


def test_write_graphite_options_equal_real_write_graphite(tmp_path, start_collectd):
    catchers = {name: _Catcher() for name in NODES}
    fwd = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    fwd.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
    fwd.bind(("127.0.0.1", 0))
    fwd.settimeout(0.2)
    inport = free_port(socket.SOCK_DGRAM)
    nodes = "".join(_node_block(n, catchers[n].port, NODES[n][0]) for n in NODES)
    collectd = start_collectd(tmp_path, f"""
LoadPlugin cpu
LoadPlugin load
LoadPlugin memory
LoadPlugin df
<Plugin df>
  MountPoint "/"
  IgnoreSelected false
</Plugin>
LoadPlugin network
<Plugin network>
  Listen "127.0.0.1" "{inport}"
  Server "127.0.0.1" "{fwd.getsockname()[1]}"
  Forward true
</Plugin>
LoadPlugin write_graphite
<Plugin write_graphite>
{nodes}</Plugin>
""")
    datagrams: list[bytes] = []
    send = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rounds = [0]

    def forwarded_all():
        # a new round of the awkward names each call (newer times: collectd drops values
        # not newer than the last of their series), until all came back three times
        t = time.time()
        for host, plugin, pinst, type_, tinst in NAMES:
            n = {"load": 3, "if_octets": 2}.get(type_, 1)
            kinds = [2] * n if type_ == "if_octets" else [1] * n
            values = [rounds[0] * 7 + i for i in range(n)] if type_ == "if_octets" else \
                [1.5 + rounds[0] + i / 3 for i in range(n)]
            send.sendto(encode_values(host, plugin, pinst, type_, tinst, t, 1.0, kinds, values),
                        ("127.0.0.1", inport))
        rounds[0] += 1
        try:
            while True:
                datagrams.append(fwd.recv(65536))
        except OSError:
            pass
        seen: dict = {}
        dec = NetworkDecoder(TypesDB())
        for d in datagrams:
            for line in dec.parser.parse(d).values:
                seen[(line.host, line.plugin)] = seen.get((line.host, line.plugin), 0) + 1
        # (collectd's network plugin turns a `/` in a received name into `_`)
        return all(seen.get((h.replace("/", "_"), p), 0) >= 3 for h, p, *_ in NAMES) \
            and seen.get(("cdtest.monbus.example", "load"), 0) >= 3
    wait_for(forwarded_all, timeout=60, interval=0.5, what="the test's values forwarded")
    collectd.terminate()  # write_graphite and the network plugin flush at shutdown
    collectd.wait(30)
    try:
        while True:
            datagrams.append(fwd.recv(65536))
    except OSError:
        pass
    send.close()
    fwd.close()
    for c in catchers.values():
        c.close()

    for name, (_, options) in NODES.items():
        wg, nan = _write_graphite(catchers[name].data.decode("utf-8"))
        ours = _monbus(datagrams, options)
        assert len(wg) > 50, (name, len(wg))
        assert ours == wg, (name, sorted(ours - wg)[:5], sorted(wg - ours)[:5])
    # the awkward names, as write_graphite wrote them (and monbus, per the comparison above)
    tags, _ = _write_graphite(catchers["tags_all"].data.decode("utf-8"))
    assert any(s.startswith("pre.p.x.gauge.value;env=test;host=b_c_d.a;plugin=p.x;"
                            "plugin_instance=i.1_2;type=gauge;type_instance=t.y_z=w;"
                            "ds_name=value") for s, _, _ in tags)
    assert any(s == "pre.gauge.value;env=test;host=h1;plugin=gauge;type_instance=gauge;"
                    "ds_name=value" for s, _, _ in tags)  # DropDuplicateFields
    rev, _ = _write_graphite(catchers["reverse"].data.decode("utf-8"))
    assert any(s == "collectd.com_example_web01.app.load.shortterm" for s, _, _ in rev)
    rev, _ = _write_graphite(catchers["reverse_preserve"].data.decode("utf-8"))
    assert any(s == "collectd.ü.ñ.pl.0.if_octets.a_b_c_d_.rx" for s, _, _ in rev)
    assert any(s == "collectd.h1.memory.used" for s, _, _ in rev)  # DropDuplicateFields
