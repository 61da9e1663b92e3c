"""A real collectd 5.12 sends to `monbus collectd listen` (SecurityLevel None, Sign and
Encrypt); the same collectd writes the same values with its csv plugin, and every value that
arrives on the bus must equal the csv one (path built independently from the csv file names
and headers, time to the csv's millisecond)."""
from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest

from helpers import free_port, wait_for
from monbus.bridges.collectd.network import _fastdecode

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
    """{(expected monbus path, csv time text): csv value text} from collectd's csv files.

    The path is built here from the csv layout alone (<host>/<plugin>[-<pi>]/<type>[-<ti>]-
    <date>, header `epoch,<ds>...`), the way write_graphite names it.  collectd writes a row
    as `%.3f` of the time and `%lf` of a gauge (integers as they are): the texts are kept,
    so the comparison is exact.  With one write thread (see conftest.collectd_conf) every
    complete row is a whole row."""
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
        assert lines[0].startswith("epoch,") and dss, (f, lines[0])
        base = "collectd.{}.{}.{}".format(*(x.replace(".", "_").replace(" ", "_")
                                            for x in (host, pdir, tname)))
        for row in lines[1:]:
            cells = row.split(",")
            assert len(cells) == len(dss) + 1 and _CSV_TIME.fullmatch(cells[0]), (f, row)
            for ds, v in zip(dss, cells[1:]):
                path = base if len(dss) == 1 else f"{base}.{ds}"
                out[(path, cells[0])] = v
    return out


_CSV_TIME = re.compile(r"\d{10}\.\d{3}")


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


def _csv_key(line):
    """The csv key of a bus line: its path and its time as collectd's csv plugin prints it
    (`%.3f` of the same double: Python's formatting rounds exactly as C's does)."""
    return line.path, f"{line.timestamp:.3f}"


def _check_against_csv(got, csv_dir: Path):
    """Every bus value is in collectd's csv files (waiting for collectd to write them), with
    the same time to the millisecond and exactly the same value."""
    def all_in_csv():
        csv = read_csv(csv_dir)
        return csv if all(_csv_key(line) in csv for line in got) else None
    try:
        csv = wait_for(all_in_csv, timeout=30, interval=0.2,
                       what="every bus value in the csv files")
    except AssertionError:
        csv = read_csv(csv_dir)
        absent = [line for line in got if _csv_key(line) not in csv]
        raise AssertionError(f"{len(absent)} of {len(got)} bus values not in collectd's csv "
                             f"files: {absent[:5]}") from None
    for line in got:
        want = csv[_csv_key(line)]
        mtype = line.meta["mtype"]
        if mtype == "gauge":  # csv: %lf
            assert f"{line.value:.6f}" == want, (line, want)
        else:  # csv: the integer as it is
            assert mtype in ("derive", "counter", "absolute"), line
            assert line.value == int(want), (line, want)
        assert line.meta["interval"] == "1"
    assert len(got) > 50
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
    # these values went through the C walk where it was built (the payload of signed and
    # encrypted datagrams too)
    assert ("decoder in C" if _fastdecode is not None else "decoder in Python") \
        in err.read_text()


# an organization-local group (RFC 2365), sent and joined on the loopback interface only:
# collectd's Interface sets IP_MULTICAST_IF, the listener's --interface joins on lo, so no
# datagram leaves the host
GROUP = "239.192.74.66"


@pytest.mark.parametrize("how", ["multicast", "ipv6"])
def test_real_collectd_multicast_and_ipv6(how, relay, subscribe, tmp_path, start_collectd,
                                          start_listener):
    """A real collectd sends to a multicast group on the loopback interface (and, the other
    case, to ::1), `monbus collectd listen` joined to the group (bound to ::1) receives it,
    and every value equals collectd's own csv row."""
    if how == "multicast":
        port = free_port(socket.SOCK_DGRAM)
        listen = ["--listen", f"{GROUP}:{port}", "--interface", "lo"]
        server = (f'  TimeToLive 1\n  <Server "{GROUP}" "{port}">\n    Interface "lo"\n'
                  f'  </Server>')
    else:
        port = free_port(socket.SOCK_DGRAM, "::1")
        listen = ["--listen", f"[::1]:{port}"]
        server = f'  <Server "::1" "{port}">\n  </Server>'
    sub = subscribe("collectd.**")
    _, err = start_listener(*listen, "--relay", relay.input)
    csv_dir = tmp_path / "csv"
    start_collectd(tmp_path, PLUGINS.format(csv=csv_dir)
                   + f"LoadPlugin network\n<Plugin network>\n{server}\n</Plugin>\n")
    got = _receive(sub, 3, timeout=60)
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
