"""`monbus graphite listen` with real carbon speakers: the shared corpus (checked against
carbon's own parsing rule), collectd's write_graphite output, carbon-c-relay forwarding, and
the pickle protocol with a hostile pickle."""
from __future__ import annotations

import json
import pickle
import shutil
import socket
import struct
import subprocess
import time

import pytest

from helpers import DATA, collect, free_port, wait_for

CARBON_C_RELAY = shutil.which("carbon-c-relay") or "/usr/bin/carbon-c-relay"

GDATA = DATA / "graphite"

# Carbon's own acceptance rule, run by Debian's /usr/bin/python3 with graphite-carbon, as an
# independent reference (see the docstring inside).
CARBON_REFERENCE = r'''"""Carbon's own acceptance rule for plaintext lines, run with Debian's /usr/bin/python3 and the
graphite-carbon package, as an independent reference for `monbus graphite listen`.

Input: JSON list of hex datagrams on stdin.  Output: JSON list of accepted
[metric, value, timestamp] in order (carbon's MetricDatagramReceiver.datagramReceived:
utf-8 decode, splitlines, `line.strip().split()` into 3 fields, float(); then
MetricReceiver.metricReceived drops NaN; tagged names must parse as carbon's TaggedSeries).
"""
import json
import sys

from carbon.util import TaggedSeries

out = []
for hexdata in json.load(sys.stdin):
    try:
        data = bytes.fromhex(hexdata).decode("utf-8")
    except UnicodeDecodeError:
        continue  # carbon's datagramReceived raises here: the whole datagram is dropped
    for line in data.splitlines():
        try:
            metric, value, timestamp = line.strip().split()
            datapoint = (float(timestamp), float(value))
        except ValueError:
            continue
        if datapoint[1] != datapoint[1]:
            continue
        if ";" in metric:
            try:
                TaggedSeries.parse(metric)
            except Exception:
                continue
        out.append([metric, datapoint[1], datapoint[0]])
json.dump(out, sys.stdout)
'''


def start_listener(daemon, relay, *extra):
    port = free_port()
    p = daemon("graphite", "listen", "--relay", relay.input, "--listen", f"127.0.0.1:{port}",
               "--selfmetrics-interval", "1", *extra)

    def up():
        assert p.proc.poll() is None, p.text()
        return "monbus graphite listen:" in p.text()   # printed once every socket is bound
    wait_for(up, 60, what="the listener")
    return p, port


def carbon_reference(datagrams: list[bytes]) -> list:
    r = subprocess.run(["/usr/bin/python3", "-c", CARBON_REFERENCE],
                       input=json.dumps([d.hex() for d in datagrams]), capture_output=True,
                       text=True, timeout=60, check=True)
    return json.loads(r.stdout)


def selfmetric(sub, name, timeout=15):
    """The latest value of a listener self-metric (waits for the next publication)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in sub.recv_lines(0.5) or ():
            if line.path.endswith(".graphite." + name):
                return line.value
    raise AssertionError(f"no self-metric {name}")


def test_corpus_datagrams_match_carbon(relay, subscribe, daemon):
    """Every corpus case as one UDP datagram: exactly the lines carbon itself accepts come
    out (prefixed), the rest are counted; the listener survives all of them."""
    cases = [json.loads(x) for x in (GDATA / "plaintext_samples.jsonl").read_text().splitlines()]
    datagrams = [bytes.fromhex(c["line_hex"]) for c in cases]
    expected = carbon_reference(datagrams)
    assert len(expected) >= 8          # the reference accepts the valid lines of the corpus
    sub = subscribe("graphite.**")
    msub = subscribe("monbus.**")
    p, port = start_listener(daemon, relay, "--prefix", "graphite.test")
    before = time.time()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for d in datagrams:
            s.sendto(d, ("127.0.0.1", port))
    got = collect(sub, len(expected), 60)
    after = time.time()
    assert len(got) == len(expected)
    for line, (metric, value, ts) in zip(got, expected):
        assert line.series == "graphite.test." + metric
        assert line.value == value
        if ts == -1:      # carbon: -1 means "now"
            assert int(before) <= line.timestamp <= after
        else:
            assert line.timestamp == ts
    total_lines = sum(len([x for x in d.split(b"\n") if x.strip()]) for d in datagrams)
    # every line the reference rejected was counted as bad (the invalid-UTF-8 datagram is
    # one line); self-metrics are cumulative, so wait for the count to settle at its total
    wait_for(lambda: selfmetric(msub, "bad_lines") == total_lines - len(expected), 60,
             what="bad_lines self-metric")
    assert p.proc.poll() is None
    assert "expected 3 fields" in p.text()       # bad lines are quoted in the log


def test_collectd_write_graphite_over_tcp(relay, subscribe, daemon):
    """collectd 5.12's write_graphite output (corpus capture), streamed over TCP in odd
    chunks, comes out line for line."""
    raw = (GDATA / "collectd512_write_graphite_raw.txt").read_bytes()
    want = [x.split() for x in raw.decode().splitlines()]
    sub = subscribe("collectd.**")
    p, port = start_listener(daemon, relay)
    with socket.create_connection(("127.0.0.1", port)) as s:
        for k in range(0, len(raw), 777):   # lines split across TCP segments
            s.sendall(raw[k:k + 777])
    got = collect(sub, len(want), 60)
    assert [(x.series, x.value, x.timestamp) for x in got] == \
        [(a, float(b), float(c)) for a, b, c in want]
    assert p.stop() == 0, p.text()      # SIGTERM: a clean stop


def test_ipv6_loopback(relay, subscribe, daemon):
    port = free_port(host="::1")
    sub = subscribe("v6.**")
    p = daemon("graphite", "listen", "--relay", relay.input, "--listen", f"[::1]:{port}")
    wait_for(lambda: "monbus graphite listen:" in p.text(), 60, what="the listener")
    with socket.create_connection(("::1", port)) as s:
        s.sendall(b"v6.host.x 1 1700000000\n")
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as u:
        u.sendto(b"v6.host.y 2 1700000000\n", ("::1", port))
    got = collect(sub, 2, 60)
    assert sorted((x.series, x.value) for x in got) == [("v6.host.x", 1.0), ("v6.host.y", 2.0)]


def test_carbon_c_relay_forwards_into_listener(relay, subscribe, daemon, tmp_path):
    """A real carbon-c-relay, configured to forward everything to the listener as it would
    to carbon, delivers the corpus rates capture onto the bus."""
    raw = (GDATA / "collectd512_write_graphite_rates_separate_instances.txt").read_bytes()
    # collectd writes `nan` for a rate it cannot compute yet; carbon ignores those lines
    want = [x.split() for x in raw.decode().splitlines() if x.split()[1] != "nan"]
    assert len(want) == 302
    sub = subscribe("collectd2.**")
    p, port = start_listener(daemon, relay)
    in_port = free_port()
    conf = tmp_path / "relay.conf"
    conf.write_text(f"cluster out forward 127.0.0.1:{port};\nmatch * send to out stop;\n")
    ccr = subprocess.Popen([CARBON_C_RELAY, "-f", str(conf), "-p", str(in_port), "-w", "1",
                            "-H", "monbus-test", "-T", "10000"],  # IO timeout: loaded CI hosts
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def relay_up():
            try:
                socket.create_connection(("127.0.0.1", in_port), 0.2).close()
                return True
            except OSError:
                return False
        wait_for(relay_up, 60, what="carbon-c-relay")
        with socket.create_connection(("127.0.0.1", in_port)) as s:
            s.sendall(raw)
        got = collect(sub, len(want), 60)
    finally:
        ccr.kill()
        ccr.wait(10)
    assert sorted((x.series, x.value, x.timestamp) for x in got) == \
        sorted((a, float(b), float(c)) for a, b, c in want)
    assert 20 <= p.text().count("value is NaN") <= 48   # logged up to 20 per second


def _frame(obj, protocol=2) -> bytes:
    payload = pickle.dumps(obj, protocol=protocol)
    return struct.pack("!L", len(payload)) + payload


def test_pickle_receiver_is_restricted(relay, subscribe, daemon, tmp_path):
    """The pickle protocol takes lists of (path, (timestamp, value)); a pickle naming any
    global (here: a call of subprocess.call) is refused, counted, and the connection's
    earlier good frame is still published; the listener goes on."""
    pport = free_port()
    sub = subscribe("pickled.**")
    p, _ = start_listener(daemon, relay, "--pickle", f"127.0.0.1:{pport}")
    good = [("pickled.web01.cpu", (1700000000, 1.5)), ("pickled.web01.mem", (1700000001, 42))]
    marker = tmp_path / "pwned"

    class _Evil:   # unpickling this would run `touch <marker>`
        def __reduce__(self):
            return (subprocess.call, (["touch", str(marker)],))
    with socket.create_connection(("127.0.0.1", pport)) as s:
        s.sendall(_frame(good) + _frame([_Evil()]) + _frame(good[:1], protocol=4))
    got = collect(sub, 3, 60)
    assert [(x.series, x.value, x.timestamp) for x in got] == [
        ("pickled.web01.cpu", 1.5, 1700000000.0), ("pickled.web01.mem", 42.0, 1700000001.0),
        ("pickled.web01.cpu", 1.5, 1700000000.0)]
    assert not marker.exists()
    assert "not allowed" in p.text()
    assert p.proc.poll() is None


def test_real_collectd_write_graphite(relay, subscribe, daemon, tmp_path):
    """A real collectd 5.12 (write_graphite over TCP, Interval 1) writes to the listener; its
    load values agree with what the same collectd writes through its csv plugin."""
    collectd = shutil.which("collectd") or "/usr/sbin/collectd"
    sub = subscribe("collectd.**")
    p, port = start_listener(daemon, relay)
    csv = tmp_path / "csv"
    conf = tmp_path / "collectd.conf"
    conf.write_text(f"""Hostname "monbus-test"
FQDNLookup false
BaseDir "{tmp_path}"
PIDFile "{tmp_path}/collectd.pid"
TypesDB "/usr/share/collectd/types.db"
Interval 1
LoadPlugin load
LoadPlugin csv
LoadPlugin write_graphite
<Plugin csv>
  DataDir "{csv}"
  StoreRates false
</Plugin>
<Plugin write_graphite>
  <Node "monbus">
    Host "127.0.0.1"
    Port "{port}"
    Protocol "tcp"
    Prefix "collectd."
    EscapeCharacter "_"
    StoreRates false
  </Node>
</Plugin>
""")
    cd = subprocess.Popen([collectd, "-C", str(conf), "-f"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    try:
        got = []

        def three_loads():
            got.extend(sub.recv_lines(0.5) or ())
            return len([x for x in got if x.path.endswith("load.load.shortterm")]) >= 3
        wait_for(three_loads, 40, what="three load samples from collectd")
    finally:
        cd.terminate()
        cd.wait(20)
    loads = [x for x in got if x.series == "collectd.monbus-test.load.load.shortterm"]
    assert len(loads) >= 3
    rows = []
    for f in csv.glob("monbus-test/load/load-*"):
        for row in f.read_text().splitlines()[1:]:
            t, short, *_ = row.split(",")
            rows.append((float(t), float(short)))
    # csv keeps collectd's sub-second times, write_graphite whole seconds: the same sample
    # is the csv row less than a second away with the same value
    matched = [x for x in loads
               if any(abs(t - x.timestamp) < 1 and v == pytest.approx(x.value, rel=1e-6)
                      for t, v in rows)]
    assert len(matched) >= len(loads) - 1, (loads, rows)   # the csv may lag by one write
