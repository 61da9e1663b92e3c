"""Golden tests on real captures and published vectors (tests/data/collectd/README.md):

- the collectd 5.12 captures give exactly the paths and values of collectd's own
  write_graphite output from the same run (plain, signed and encrypted);
- every value of every capture equals TShark's independent decode (run here, since the
  corpus's .tshark.json files lost repeated keys);
- InfluxDB's expected points for its Wireshark capture;
- the `.expected.lines` goldens (regressions: any change in output must be deliberate).
"""
from __future__ import annotations

import datetime
import json
import math
import shutil
import subprocess

import pytest

from helpers import DATA
from monbus.bridges.collectd.capture import read_pcap, read_pkts
from monbus.bridges.collectd.naming import GraphiteNaming
from monbus.bridges.collectd.network import NetworkDecoder, PacketParser
from monbus.bridges.collectd.typesdb import TypesDB
from monbus.core.line import decode

D = DATA / "collectd"
CREDS = {b"pieter": b"aapje1234", b"alice": b"12345678"}
LOCAL = {"plain": (None, "none"), "signed": (b"s3cr3t-sign", "sign"),
         "encrypted": (b"s3cr3t-encrypt", "encrypt")}
# data-source names from the system's types.db (collectd-core), as the bridge reads them
TYPESDB = TypesDB()


def _packets(path):
    name = str(path)
    if name.endswith(".pkts"):
        return read_pkts(name)
    if name.endswith(".pcap"):
        return read_pcap(name)
    return [path.read_bytes()]


def _decode_all(path, decoder):
    lines, errors = [], []
    for p in _packets(path):
        got, errs = decoder.decode(p)
        lines += got
        errors += errs
    return lines, errors


@pytest.mark.parametrize("mode", list(LOCAL))
def test_local_capture_equals_write_graphite(mode):
    password, level = LOCAL[mode]
    users = {b"monbus": password} if password else {}
    dec = NetworkDecoder(TYPESDB, security_level=level,
                         password_of=users.get if password else None)
    lines, errors = _decode_all(D / f"collectd512_local_{mode}.pcap", dec)
    assert errors == []
    ours = sorted((x.path, x.value, round(x.timestamp)) for x in map(decode, lines))
    wg = sorted((p, float(v), int(t)) for p, v, t in
                (row.split() for row in (D / "collectd512_write_graphite_raw.txt").open()))
    assert len(ours) == len(wg) == 350
    assert ours == wg


def test_write_graphite_options_separate_instances_always_append_ds():
    """The 2nd write_graphite node of the same run: Prefix collectd2., SeparateInstances,
    AlwaysAppendDS (its values are rates, so only the paths are compared)."""
    naming = GraphiteNaming(prefix="collectd2.", separate_instances=True, always_append_ds=True)
    lines, _ = _decode_all(D / "collectd512_local_plain.pcap", NetworkDecoder(TYPESDB, naming))
    wg = [row.split()[0] for row in (D / "collectd512_write_graphite_rates_separate_instances.txt").open()]
    assert sorted(decode(x).path for x in lines) == sorted(wg)


def test_encrypted_and_signed_payloads_equal_plain():
    plain = PacketParser().parse
    signed = PacketParser("sign", {b"monbus": b"s3cr3t-sign"}.get).parse
    enc = PacketParser("encrypt", {b"monbus": b"s3cr3t-encrypt"}.get).parse
    for a, b, c in zip(read_pcap(str(D / "collectd512_local_plain.pcap")),
                       read_pcap(str(D / "collectd512_local_signed.pcap")),
                       read_pcap(str(D / "collectd512_local_encrypted.pcap"))):
        ra, rb, rc = plain(a), signed(b), enc(c)
        assert ra.values == rb.values == rc.values and ra.values
        assert rb.counts == {"signed_packets": 1} and rc.counts == {"encrypted_packets": 1}


# --- TShark -----------------------------------------------------------------------------------
def _tshark_records(path):
    """(host, plugin, plugin instance, type, type instance, time, [(kind, text)]) per VALUES
    segment, per frame, from `tshark -T json` (parsed keeping repeated keys)."""
    out = subprocess.run(["tshark", "-r", str(path), "-T", "json", "-J", "collectd"],
                         capture_output=True, text=True, check=True).stdout
    frames = json.loads(out, object_pairs_hook=lambda pairs: pairs)
    result = []
    for frame in frames:
        layers = dict(dict(dict(frame)["_source"])["layers"])
        cd = layers.get("collectd")
        recs = []
        if isinstance(cd, list):
            for key, seg in cd:
                if not key.startswith("collectd VALUES segment") or not isinstance(seg, list):
                    continue
                asm = dict(next((v for k, v in seg if k == "Assembled metric"), []))
                vals = next((v for k, v in seg if k.endswith((" values", " value"))), None)
                if not asm or vals is None:
                    continue
                vs = []
                for _, v in vals:
                    field = next(k for k, _ in v if k != "collectd.val.type")
                    vs.append((field.rsplit(".", 1)[1], dict(v)[field]))
                recs.append((asm.get("collectd.data.host", ""), asm.get("collectd.data.plugin", ""),
                             asm.get("collectd.data.plugin.inst", ""),
                             asm.get("collectd.data.type", ""),
                             asm.get("collectd.data.type.inst", ""),
                             asm.get("collectd.data.time"), vs))
        result.append(recs)
    return result


def _tshark_time(text: str) -> float:
    main, frac = text.replace(" UTC", "").rsplit(".", 1)
    t = datetime.datetime.strptime(main, "%b %d, %Y %H:%M:%S")
    return t.replace(tzinfo=datetime.timezone.utc).timestamp() + int(frac) / 10 ** len(frac)


KIND_NAMES = {0: "counter", 1: "gauge", 2: "derive", 3: "absolute"}


@pytest.mark.parametrize("capture", ["collectd512_local_plain.pcap", "collectd512_local_signed.pcap",
                                     "all_vectors.wrapped.pcap", "ndpi_collectd.pcap"])
def test_every_value_equals_tshark(capture):
    if not shutil.which("tshark"):
        pytest.skip("tshark is not installed (.ci/apt.d/collectd.txt)")
    parser = PacketParser()  # no credentials: signed packets are read as collectd does then
    n = 0
    for i, (data, expected) in enumerate(zip(read_pcap(str(D / capture)), _tshark_records(D / capture))):
        # collectd (and monbus) refuse values without a plugin name; TShark shows them
        expected = [e for e in expected if e[1] not in ("", "(null)")]
        got = parser.parse(data).values
        assert len(got) == len(expected), f"frame {i + 1}"
        for g, e in zip(got, expected):
            assert (g.host, g.plugin, g.plugin_instance, g.type, g.type_instance) == e[:5]
            assert abs(g.time - _tshark_time(e[5])) < 2e-6
            assert [KIND_NAMES[k] for k in g.kinds] == [k for k, _ in e[6]]
            for v, (_, text) in zip(g.values, e[6]):
                if math.isnan(v):
                    assert text.lower() == "nan"
                else:
                    assert math.isclose(v, float(text), rel_tol=1e-9), (g, e)
            n += len(g.values)
    assert n > 300


def test_influxdb_expected_points():
    """InfluxDB's collectd service test: 26 points from its Wireshark capture.  The path is
    built here from the point's tags, the way write_graphite names it."""
    want = set()
    for row in (D / "influxdb_wireshark_capture.expected_influx_lines.txt").read_text().splitlines():
        if not row or row.startswith("#"):
            continue
        key, field, ns = row.split(" ")
        measurement, *tags = key.split(",")
        tags = dict(t.split("=", 1) for t in tags)
        plugin, ds = measurement.split("_", 1)
        host = tags["host"].replace(".", "_")
        p = plugin + (f"-{tags['instance']}" if "instance" in tags else "")
        t = tags["type"] + (f"-{tags['type_instance']}" if "type_instance" in tags else "")
        path = f"collectd.{host}.{p}.{t}" + ("" if ds == "value" else f".{ds}")
        want.add((path, float(field.split("=", 1)[1]), int(ns) / 1e9))
    lines, errors = _decode_all(D / "influxdb_wireshark_capture.bin", NetworkDecoder(TYPESDB))
    assert errors == [] and len(want) == 26
    assert {(x.path, x.value, x.timestamp) for x in map(decode, lines)} == want


GOLDEN = sorted(p for p in D.glob("*.expected.lines"))


@pytest.mark.parametrize("golden", GOLDEN, ids=lambda p: p.name.removesuffix(".expected.lines"))
def test_golden_lines(golden):
    stem = golden.name.removesuffix(".expected.lines")
    source = next(p for p in D.glob(stem + ".*") if p.suffix in (".bin", ".pkts", ".pcap"))
    creds = dict(CREDS, monbus=b"s3cr3t-sign")
    creds = {k.encode() if isinstance(k, str) else k: v for k, v in creds.items()}
    lines, errors = _decode_all(source, NetworkDecoder(TYPESDB, password_of=creds.get))
    got = lines + [f"# error {e.kind}: {e.message}" for e in errors]
    want = [x for x in golden.read_text().splitlines() if x]
    assert sorted(got) == sorted(want)
    for line in lines:
        decode(line)  # every line is valid monbus syntax


def test_store_rates_equals_write_graphite_rates():
    """--store-rates against the 2nd write_graphite node of the same run (StoreRates true):
    every rate equals write_graphite's (printed with %f); its `nan` first values are the
    ones monbus counts in rate_first instead of publishing."""
    naming = GraphiteNaming(prefix="collectd2.", separate_instances=True, always_append_ds=True)
    dec = NetworkDecoder(TYPESDB, naming, store_rates=True)
    lines, errors = _decode_all(D / "collectd512_local_plain.pcap", dec)
    assert errors == []
    ours = {(x.path, round(x.timestamp)): x for x in map(decode, lines)}
    wg = {}
    for row in (D / "collectd512_write_graphite_rates_separate_instances.txt").open():
        p, v, t = row.split()
        wg[(p, int(t))] = v
    real = {k: float(v) for k, v in wg.items() if v != "nan"}
    assert set(ours) == set(real)
    for k, v in real.items():
        assert math.isclose(ours[k].value, v, rel_tol=1e-6, abs_tol=1e-6), (k, ours[k], v)
        assert ours[k].meta["mtype"] == "gauge"
    assert dec.counts["rate_first"] == len(wg) - len(real) == 48
