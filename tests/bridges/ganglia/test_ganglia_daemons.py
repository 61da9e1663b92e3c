"""Against the real Ganglia: gmond 3.7.2 and gmetad from Debian, gmetric, on loopback."""
from __future__ import annotations

import socket
import subprocess
import time
import xml.etree.ElementTree as ET

from helpers import collect, free_port, monbus_cmd, wait_for, stop_process


def expected_from_xml(xml: bytes) -> dict:
    """Independent decode (ElementTree) of a dump: {series path: (value, timestamp)} for the
    numeric metrics monbus must publish, and the heartbeat lines' string tags."""
    out = {}
    root = ET.fromstring(xml)
    for cl in root.iter("CLUSTER"):
        for h in cl.iter("HOST"):
            pre = f"ganglia.{cl.get('NAME')}.{h.get('NAME').replace('.', '_')}."
            tags = {}
            for m in h.iter("METRIC"):
                if m.get("TYPE") == "string":
                    tags[m.get("NAME")] = m.get("VAL").replace(" ", "_")
                elif int(m.get("TN")) <= int(m.get("TMAX")):
                    out[pre + m.get("NAME")] = (float(m.get("VAL")), float(h.get("REPORTED")))
            out[pre + "heartbeat"] = (0.0, float(h.get("REPORTED")), tags)
    return out


def check_fast_path(data: bytes) -> None:
    """The daemon's bytes take the XML parser's fast path, with the exact path's lines."""
    from monbus.bridges.ganglia.naming import Namer
    from monbus.bridges.ganglia.xmldump import XmlDumpParser
    got = {}
    for fast in (True, False):
        for chunk in (len(data), 1000):
            p = XmlDumpParser(1.0, Namer(), fast=fast)
            lines = []
            for i in range(0, len(data), chunk):
                lines += p.feed(data[i:i + chunk])
            lines += p.close()
            got[fast, chunk] = (lines, p.stats)
            assert p.path == ("fast" if fast else "exact"), p.fallback
    assert len({repr(v) for v in got.values()}) == 1
    assert got[True, len(data)][0]


def check_poll_lines(lines, xml, grid=None):
    want = expected_from_xml(xml)
    got = {ln.path: ln for ln in lines}
    assert set(got) == set(want)
    for path, w in want.items():
        ln = got[path]
        assert (ln.value, ln.timestamp) == w[:2], path
        if grid:
            assert ln.tags.get("grid") == grid
        if path.endswith(".heartbeat"):
            assert {k: v for k, v in ln.tags.items() if k != "grid"} == w[2]
            assert ln.meta["mtype"] == "state"


def test_poll_gmond_every_metric_equal_values(gmond, relay, subscribe, monbus, gtools):
    g = gmond()
    # wait until gmond's own XML has its metrics from all modules (sent at start)
    wait_for(lambda: g.xml().count(b"<METRIC ") >= 30, timeout=30, what="gmond's metrics")
    sub = subscribe("ganglia.**")
    proxy = gtools.TeeProxy(g.tcp_port)
    r = monbus("ganglia", "poll", f"127.0.0.1:{proxy.port}", "--once", "--relay", relay.input)
    assert r.returncode == 0, r.stderr
    proxy.done.wait(10)
    n = len(expected_from_xml(proxy.data))
    assert n >= 30
    lines = collect(sub, n, timeout=20)
    check_poll_lines(lines, proxy.data)
    check_fast_path(proxy.data)
    # the cpu_num metric says it is a constant; bytes_in a float rate
    meta = {ln.path.rsplit(".", 1)[1]: ln.meta for ln in lines}
    assert meta["cpu_num"]["slope"] == "zero" and meta["cpu_num"]["unit"] == "CPUs"
    assert meta["heartbeat"]["mtype"] == "state"


def test_poll_gmond_gzip_output(gmond, relay, subscribe, monbus, gtools):
    """gmond's tcp_accept_channel with gzip_output = yes: the poller gunzips the stream."""
    import gzip
    g = gmond(gzip_output=True)
    wait_for(lambda: g.xml().count(b"<METRIC ") >= 30, timeout=30, what="gmond's metrics")
    sub = subscribe("ganglia.**")
    proxy = gtools.TeeProxy(g.tcp_port)
    r = monbus("ganglia", "poll", f"127.0.0.1:{proxy.port}", "--once", "--relay", relay.input)
    assert r.returncode == 0, r.stderr
    proxy.done.wait(10)
    assert proxy.data[:2] == b"\x1f\x8b"
    xml = gzip.decompress(proxy.data)
    lines = collect(sub, len(expected_from_xml(xml)), timeout=20)
    check_poll_lines(lines, xml)
    check_fast_path(proxy.data)


def test_poll_gmetad_xml_and_query_ports(gmond, gmetad, relay, subscribe, monbus, gtools):
    g = gmond()
    xml_port, q_port = gmetad(g)
    sub = subscribe("ganglia.**")
    for port, query in ((xml_port, ""), (q_port, "/monbus-test")):
        proxy = gtools.TeeProxy(port)
        r = monbus("ganglia", "poll", f"127.0.0.1:{proxy.port}{query}", "--once",
                   "--relay", relay.input)
        assert r.returncode == 0, r.stderr
        proxy.done.wait(10)
        assert b'<GRID NAME="monbus-grid"' in proxy.data
        n = len(expected_from_xml(proxy.data))
        lines = collect(sub, n, timeout=20)
        check_poll_lines(lines, proxy.data, grid="monbus-grid")
        check_fast_path(proxy.data)
    # the summary filter: per-grid and per-cluster HOSTS and METRICS sums
    proxy = gtools.TeeProxy(q_port)
    r = monbus("ganglia", "poll", f"127.0.0.1:{proxy.port}/?filter=summary", "--once",
               "--relay", relay.input)
    assert r.returncode == 0, r.stderr
    proxy.done.wait(10)
    check_fast_path(proxy.data)
    root = ET.fromstring(proxy.data)
    want = {}
    for parent, pre in [(root.find("GRID"), "ganglia.monbus-grid._grid_summary."),
                        (root.find("GRID/CLUSTER"), "ganglia.monbus-test._summary.")]:
        want[pre + "hosts_up"] = float(parent.find("HOSTS").get("UP"))
        want[pre + "hosts_down"] = float(parent.find("HOSTS").get("DOWN"))
        for m in parent.findall("METRICS"):
            want[pre + m.get("NAME") + ".sum"] = float(m.get("SUM"))
            want[pre + m.get("NAME") + ".num"] = float(m.get("NUM"))
    assert len(want) > 10
    got = {ln.path: ln.value for ln in collect(sub, len(want), timeout=20)}
    assert got == want


def test_poll_bad_source_is_reported_and_others_still_published(gmond, relay, subscribe,
                                                                  monbus):
    g = gmond(modules=False)
    # a "gmond" that sends an entity bomb
    evil = socket.socket()
    evil.bind(("127.0.0.1", 0))
    evil.listen(1)
    import threading

    def serve():
        c, _ = evil.accept()
        c.sendall(b'<!DOCTYPE GANGLIA_XML [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
                  b'<GANGLIA_XML>&b;</GANGLIA_XML>')
        c.close()
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    sub = subscribe("ganglia.**")
    selfm = subscribe("monbus.*.ganglia_poll.*")
    r = monbus("ganglia", "poll", f"127.0.0.1:{evil.getsockname()[1]}",
               f"127.0.0.1:{g.tcp_port}", "--once", "--relay", relay.input)
    assert r.returncode == 1
    assert "entity declaration refused" in r.stderr and "1 of 2 sources failed" in r.stderr
    lines = collect(sub, 1, timeout=20)
    assert lines[0].path == "ganglia.monbus-test.node01_monbus_test.heartbeat"
    # the run's self-metrics count the failure
    counts = {ln.path.rsplit(".", 1)[1]: ln.value for ln in collect(selfm, 5, timeout=20)}
    assert counts["polls"] == 2 and counts["poll_errors"] == 1
    evil.close()


def _start_listener(relay, *args):
    port = free_port(socket.SOCK_DGRAM)
    proc = subprocess.Popen(monbus_cmd() + ["ganglia", "listen", "--listen", f"127.0.0.1:{port}",
                                            "--relay", relay.input, "--cluster", "monbus-test",
                                            *args],
                            stderr=subprocess.PIPE, text=True)
    first = proc.stderr.readline()   # printed once the sockets are bound
    assert "monbus ganglia listen" in first, first + proc.stderr.read()
    return proc, port


GMETRICS = [  # (gmetric arguments, expected path tail, value, unit, mtype)
    (["-n", "t_int8", "-v", "-12", "-t", "int8", "-u", "items"], "node01_monbus_test.t_int8",
     -12, "items", "gauge"),
    (["-n", "t_uint8", "-v", "250", "-t", "uint8"], "node01_monbus_test.t_uint8", 250, None,
     "gauge"),
    (["-n", "t_int16", "-v", "-31000", "-t", "int16"], "node01_monbus_test.t_int16", -31000,
     None, "gauge"),
    (["-n", "t_uint16", "-v", "65000", "-t", "uint16", "-u", "conns"],
     "node01_monbus_test.t_uint16", 65000, "conns", "gauge"),
    (["-n", "t_int32", "-v", "-2000000000", "-t", "int32"], "node01_monbus_test.t_int32",
     -2000000000, None, "gauge"),
    (["-n", "t_uint32", "-v", "4000000000", "-t", "uint32", "-u", "bytes", "-s", "positive"],
     "node01_monbus_test.t_uint32", 4000000000, "bytes", "counter"),
    (["-n", "t_float", "-v", "3.14159", "-t", "float", "-u", "ms"],
     "node01_monbus_test.t_float", 3.14159, "ms", "gauge"),
    (["-n", "t_double", "-v", "1.0e100", "-t", "double"], "node01_monbus_test.t_double",
     1e100, None, "gauge"),
    (["-n", "t_spoofed", "-v", "7", "-t", "uint32", "-u", "req/s", "-S",
      "10.1.2.3:spoofed-host.example"], "spoofed-host_example.t_spoofed", 7, "req/s", "gauge"),
]


def test_listen_gmetric_every_type_units_and_spoofing(tmp_path, relay, subscribe, gtools):
    binary = gtools.need("gmetric")
    sub = subscribe("ganglia.**")
    proc, port = _start_listener(relay)
    try:
        conf = tmp_path / "gmetric.conf"
        conf.write_text(gtools.gmetric_conf(port))
        for args, *_ in GMETRICS:
            subprocess.run([binary, "-c", str(conf), *args], check=True, timeout=20)
        subprocess.run([binary, "-c", str(conf), "-n", "t_string", "-v", "hello world", "-t",
                        "string"], check=True, timeout=20)
        subprocess.run([binary, "-c", str(conf), "-n", "hb", "-H", "-S",
                        "10.1.2.4:spoofed-hb.example"], check=True, timeout=20)
        # a heartbeat for node01 itself (gmetric spoofs it with override_hostname): its
        # availability line carries the string metric as a tag
        subprocess.run([binary, "-c", str(conf), "-n", "hb", "-H", "-S", "127.0.0.1:node01.monbus.test"],
                       check=True, timeout=20)
        want = {f"ganglia.monbus-test.{tail}": (v, u, m) for _, tail, v, u, m in GMETRICS}
        got = {}
        deadline = time.monotonic() + 30
        while set(want) - set(got) or "hb" not in got or "node_hb" not in got:
            assert time.monotonic() < deadline, f"missing {set(want) - set(got)}"
            for ln in sub.recv_lines(0.5) or []:
                if ln.path.startswith("ganglia.monbus-test.spoofed-hb_example.heartbeat"):
                    got["hb"] = ln
                elif ln.path == "ganglia.monbus-test.node01_monbus_test.heartbeat":
                    got["node_hb"] = ln
                else:
                    got[ln.path] = ln
        for path, (value, unit, mtype) in want.items():
            ln = got[path]
            assert ln.value == value, path
            assert ln.meta.get("unit") == unit and ln.meta["mtype"] == mtype, ln
        assert got["hb"].value == 0 and got["hb"].meta["mtype"] == "state"
        assert got["node_hb"].tags == {"t_string": "hello_world"}
    finally:
        stop_process(proc)


def test_listen_to_gmond_core_metrics_equal_its_xml(gmond, relay, subscribe):
    sub = subscribe("ganglia.**")
    proc, port = _start_listener(relay)
    try:
        # collected every second and metadata resent every 2 s (gmond 3.7 was seen to resend
        # its values with its metadata), so the heartbeat that carries the string metrics as
        # tags comes soon after them rather than 16 s later
        names = ["cpu_num", "cpu_speed", "mem_total", "boottime", "os_name", "machine_type",
                 "os_release"]
        groups = ('collection_group {\n  collect_every = 1\n  time_threshold = 2\n'
                  '  metric {\n    name = "heartbeat"\n  }\n}\n'
                  'collection_group {\n  collect_every = 1\n  time_threshold = 2\n'
                  + "".join(f'  metric {{\n    name = "{n}"\n  }}\n' for n in names) + "}\n")
        g = gmond(send_ports=[port], groups=groups, metadata_interval=2)
        want_paths = {"cpu_num", "cpu_speed", "mem_total", "boottime", "heartbeat"}
        got = {}
        deadline = time.monotonic() + 40
        while not want_paths <= set(got) or "os_name" not in got["heartbeat"].tags:
            assert time.monotonic() < deadline, f"got {sorted(got)}"
            for ln in sub.recv_lines(0.5) or []:
                got[ln.path.rsplit(".", 1)[1]] = ln
        # constants (slope zero) must equal what the same gmond's XML shows
        root = ET.fromstring(g.xml())
        xml = {m.get("NAME"): m.get("VAL") for m in root.iter("METRIC")}
        # (not cpu_speed: on a VM the reported MHz can move between two sends)
        for name in ("cpu_num", "mem_total", "boottime"):
            assert got[name].value == float(xml[name]), name
        tags = got["heartbeat"].tags
        for name in ("os_name", "machine_type", "os_release"):
            assert tags[name] == xml[name].replace(" ", "_")
        assert got["cpu_num"].path == "ganglia.monbus-test.node01_monbus_test.cpu_num"
    finally:
        stop_process(proc)


def test_listen_requests_missing_metadata_from_gmond(gmond, relay, subscribe):
    """Started after gmond sent its metadata: the listener asks gmond for it (message 136),
    gmond answers, and the waiting values are published."""
    port = free_port(socket.SOCK_DGRAM)
    groups = ('collection_group {\n  collect_every = 1\n  time_threshold = 1\n'
              '  metric {\n    name = "cpu_num"\n  }\n}\n')
    g = gmond(send_ports=[port], metadata_interval=3600, groups=groups)
    wait_for(lambda: b'NAME="cpu_num"' in g.xml(), timeout=20, what="cpu_num in gmond's XML")
    sub = subscribe("ganglia.**")
    proc = subprocess.Popen(monbus_cmd() + [
        "ganglia", "listen", "--listen", f"127.0.0.1:{port}", "--relay", relay.input,
        "--cluster", "monbus-test", "--request-to", f"127.0.0.1:{g.recv_port}"],
        stderr=subprocess.PIPE, text=True)
    try:
        assert "monbus ganglia listen" in proc.stderr.readline()
        deadline = time.monotonic() + 30
        found = None
        while found is None:
            assert time.monotonic() < deadline, "no cpu_num line: metadata never came"
            for ln in sub.recv_lines(0.5) or []:
                if ln.path.endswith(".cpu_num"):
                    found = ln
        assert found.meta["unit"] == "CPUs" and found.meta["type"] == "uint16"
    finally:
        stop_process(proc)


def test_emit_send_lines_appear_in_gmond_xml(gmond, relay, subscribe, monbus):
    g = gmond(modules=False)
    selfmetrics = subscribe("monbus.*.ganglia_emit.*")
    proc = subprocess.Popen(monbus_cmd() + [
        "ganglia", "emit", "app.**", "--connect", relay.output,
        "--gmond", f"127.0.0.1:{g.recv_port}", "--count", "3", "--relay", relay.input],
        stderr=subprocess.PIPE, text=True)
    try:
        assert "monbus ganglia emit" in proc.stderr.readline()
        wait_for(lambda: any(p.startswith(b"app") for p in relay.relay._subs),
                 what="emit's subscription at the relay")
        now = int(time.time())
        r = monbus("send", "--relay", relay.input,
                   f"app.web01.requests 42 {now} mtype=counter unit=req",
                   f"app.db02.latency 0.25 {now} unit=s",
                   f"app.db02.queue;dc=eu 17 {now}")
        assert r.returncode == 0, r.stderr

        def hosts():
            root = ET.fromstring(g.xml())
            return {h.get("NAME"): {m.get("NAME"): m.attrib for m in h.iter("METRIC")}
                    for h in root.iter("HOST")}
        got = wait_for(lambda: (lambda h: h if {"web01", "db02"} <= set(h) and
                                len(h["db02"]) == 2 else None)(hosts()),
                       timeout=20, what="emitted metrics in gmond's XML")
        req = got["web01"]["app.requests"]
        assert (req["VAL"], req["UNITS"], req["SLOPE"], req["TYPE"]) == \
            ("42", "req", "positive", "double")
        lat = got["db02"]["app.latency"]
        assert (lat["VAL"], lat["UNITS"], lat["SLOPE"]) == ("0.25", "s", "both")
        assert got["db02"]["app.queue;dc=eu"]["VAL"] == "17"
        proc.wait(20)
        assert proc.returncode == 0
        # on exit it publishes its counters: 3 values, 3 metadata packets, 6 datagrams
        got = {}
        deadline = time.monotonic() + 20
        while "packets" not in got:
            assert time.monotonic() < deadline, got
            for ln in selfmetrics.recv_lines(0.5) or []:
                got[ln.path.rsplit(".", 1)[1]] = ln.value
        assert (got["values"], got["metadata"], got["packets"]) == (3, 3, 6)
        assert got["too_long"] == 0
        # and what the bus did: nothing lost, nothing to repair (repair is on by default)
        assert got["bus_lost_messages"] == 0 and got["bus_repaired_messages"] == 0
        assert got["bus_repair_missing"] == 0 and got["bad_bus_messages"] == 0
    finally:
        stop_process(proc)


def test_emit_reaches_gmetad_and_its_rrds(gmond, gmetad, relay, monbus, gtools, tmp_path):
    """Through gmond to gmetad: the emitted host and metric are in gmetad's grid XML, and
    gmetad writes the metric's RRD file, as it does for any gmond metric."""
    g = gmond(modules=False)
    xml_port, _ = gmetad(g)
    proc = subprocess.Popen(monbus_cmd() + [
        "ganglia", "emit", "app.**", "--connect", relay.output,
        "--gmond", f"127.0.0.1:{g.recv_port}", "--count", "1", "--relay", relay.input],
        stderr=subprocess.PIPE, text=True)
    try:
        assert "monbus ganglia emit" in proc.stderr.readline()
        wait_for(lambda: any(p.startswith(b"app") for p in relay.relay._subs),
                 what="emit's subscription at the relay")
        r = monbus("send", "--relay", relay.input, f"app.web07.temp 21.5 {int(time.time())}")
        assert r.returncode == 0, r.stderr

        def in_gmetad():
            root = ET.fromstring(gtools.read_xml(xml_port))
            for h in root.iter("HOST"):
                if h.get("NAME") == "web07":
                    return {m.get("NAME"): m.get("VAL") for m in h.iter("METRIC")}
        got = wait_for(in_gmetad, timeout=30, what="web07 in gmetad's XML")
        assert got == {"app.temp": "21.5"}
        rrd = wait_for(lambda: list((tmp_path / "gmetad0" / "rrds").rglob("app.temp.rrd")),
                       timeout=30, what="gmetad's RRD for app.temp")[0]
        assert rrd.parent.name == "web07" and rrd.parent.parent.name == "monbus-test"
    finally:
        stop_process(proc)


def test_poll_string_value_gmond_escapes_takes_the_fast_path(gmond, relay, subscribe, monbus,
                                                             gtools, tmp_path):
    """gmond writes a string metric's VAL with XML's entities (`a&amp;b&lt;c&gt;d`): the fast
    path reads them (no fallback) and the heartbeat's tag is the text gmetric sent."""
    g = gmond(modules=False)
    binary = gtools.need("gmetric")
    conf = tmp_path / "gmetric.conf"
    conf.write_text(gtools.gmetric_conf(g.recv_port))
    subprocess.run([binary, "-c", str(conf), "-n", "note", "-v", "a&b<c>d", "-t", "string"],
                   check=True, timeout=20)
    xml = wait_for(lambda: (lambda x: x if b"a&amp;b&lt;c&gt;d" in x else None)(g.xml()),
                   timeout=20, what="the escaped string in gmond's XML")
    check_fast_path(xml)
    sub = subscribe("ganglia.*.node01_monbus_test.heartbeat")
    proxy = gtools.TeeProxy(g.tcp_port)
    r = monbus("ganglia", "poll", f"127.0.0.1:{proxy.port}", "--once", "--relay", relay.input)
    assert r.returncode == 0, r.stderr
    assert collect(sub, 1, timeout=20)[0].tags["note"] == "a&b<c>d"
    proxy.done.wait(10)
    check_fast_path(proxy.data)
