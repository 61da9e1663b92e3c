"""`monbus snmp traps` receiving real traps sent by net-snmp's snmptrap (v1, v2c, v3)."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

from helpers import free_port, monbus_cmd, wait_for

ENGINE_ID = "0x80001f8880aabbccdd0102"
TRAP_USER, TRAP_AUTH, TRAP_PRIV = "trapper", "trap-auth-pass", "trap-priv-pass"


@pytest.fixture
def trapd(relay, tmp_path):
    """A running `monbus snmp traps` on an ephemeral port; (port, env) for snmptrap."""
    if not shutil.which("snmptrap"):
        pytest.skip("snmptrap not installed (Debian package snmp: .ci/apt.d/snmp.txt)")
    port = free_port(socket.SOCK_DGRAM)
    f = tmp_path / "targets.toml"
    f.write_text(f"""
[[target]]
name = "router1"
address = "127.0.0.2"

[traps]
communities = ["public", "second"]

[[traps.user]]
name = "{TRAP_USER}"
engine_id = "{ENGINE_ID}"
auth_protocol = "SHA-256"
auth_password = "{TRAP_AUTH}"
priv_protocol = "AES"
priv_password = "{TRAP_PRIV}"
""")
    p = subprocess.Popen(monbus_cmd() + ["snmp", "traps", "--listen", f"127.0.0.1:{port}",
                                         "--relay", relay.input, "--targets", str(f)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err_lines = []

    def listening():
        assert p.poll() is None, p.stderr.read()
        line = p.stderr.readline()
        err_lines.append(line)
        return "listening on" in line
    wait_for(listening, timeout=30, what="monbus snmp traps to listen")
    env = dict(os.environ, MIBS="", MIBDIRS=str(tmp_path / "nomibs"),
               SNMP_PERSISTENT_DIR=str(tmp_path / "netsnmp"), SNMPCONFPATH=str(tmp_path))
    yield port, env
    p.send_signal(signal.SIGTERM)
    try:
        p.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
    assert p.returncode == 0


def snmptrap(env, *args):
    r = subprocess.run(["snmptrap", *args], capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 0, r.stderr


def wait_lines(sub, pred, timeout=20.0):
    got = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got.extend(sub.recv_lines(0.3) or [])
        hit = [ln for ln in got if pred(ln)]
        if hit:
            return hit, got
    raise AssertionError(f"no matching line in {got}")


def test_v1_trap(trapd, subscribe):
    port, env = trapd
    sub = subscribe("snmp.**")
    snmptrap(env, "-v1", "-c", "public", f"udp:127.0.0.1:{port}", ".1.3.6.1.4.1.8072.2.3.1",
             "127.0.0.1", "6", "17", "12345", ".1.3.6.1.2.1.2.2.1.10.1", "c", "4000000000",
             ".1.3.6.1.2.1.1.5.0", "s", "trap-host")
    [ln], _ = wait_lines(sub, lambda ln: ".trap." in ln.path)
    # RFC 3584 3.1: enterpriseSpecific -> <enterprise>.0.<specific>
    assert ln.path == "snmp.127_0_0_1.trap.1_3_6_1_4_1_8072_2_3_1_0_17"
    m = ln.meta
    assert m["version"] == "v1" and m["trap_oid"] == "1.3.6.1.4.1.8072.2.3.1.0.17"
    assert m["uptime"] == "123.45"
    assert m["oid_1_3_6_1_2_1_2_2_1_10_1"] == "4000000000"
    assert m["sysname"] == "trap-host" and m["snmptrapaddress"] == "127.0.0.1"
    assert m["snmptrapenterprise"] == "1.3.6.1.4.1.8072.2.3.1"


def test_v2c_linkdown_trap_is_also_availability(trapd, subscribe):
    port, env = trapd
    sub = subscribe("snmp.**")
    snmptrap(env, "-v2c", "-c", "second", f"udp:127.0.0.1:{port}", "987654",
             ".1.3.6.1.6.3.1.1.5.3", ".1.3.6.1.2.1.2.2.1.1.2", "i", "2",
             ".1.3.6.1.2.1.2.2.1.7.2", "i", "1", ".1.3.6.1.2.1.2.2.1.8.2", "i", "2",
             ".1.3.6.1.2.1.31.1.1.1.1.2", "s", "eth1",
             ".1.3.6.1.2.1.31.1.1.1.6.2", "C", "18446744073709551615",
             ".1.3.6.1.4.1.99999.1", "a", "192.0.2.7", ".1.3.6.1.4.1.99999.4", "x", "DEADBEEF")
    hits, got = wait_lines(sub, lambda ln: ln.path.endswith("ifOperStatus"))
    trap = next(ln for ln in got if ln.path == "snmp.127_0_0_1.trap.linkDown")
    m = trap.meta
    assert m["version"] == "v2c" and m["uptime"] == "9876.54"
    assert (m["ifindex"], m["ifadminstatus"], m["ifoperstatus"], m["ifname"]) == \
        ("2", "1", "2", "eth1")
    assert m["oid_1_3_6_1_2_1_31_1_1_1_6_2"] == "18446744073709551615"
    assert m["oid_1_3_6_1_4_1_99999_1"] == "192.0.2.7"
    assert m["oid_1_3_6_1_4_1_99999_4"] == "deadbeef"
    [state] = hits
    assert state.path == "snmp.127_0_0_1.interfaces.eth1.ifOperStatus"
    assert state.value == 2 and state.meta["mtype"] == "state"


def test_v3_authpriv_trap_and_bad_community_dropped(trapd, subscribe):
    port, env = trapd
    sub = subscribe("snmp.**")
    # a community the receiver does not accept: dropped (and counted by the engine)
    snmptrap(env, "-v2c", "-c", "intruder", f"udp:127.0.0.1:{port}", "1",
             ".1.3.6.1.6.3.1.1.5.1")
    snmptrap(env, "-v3", "-e", ENGINE_ID, "-u", TRAP_USER, "-l", "authPriv", "-a", "SHA-256",
             "-A", TRAP_AUTH, "-x", "AES", "-X", TRAP_PRIV, f"udp:127.0.0.1:{port}", "4242",
             ".1.3.6.1.6.3.1.1.5.4", ".1.3.6.1.2.1.2.2.1.1.3", "i", "3",
             ".1.3.6.1.2.1.2.2.1.2.3", "s", "uplink")
    hits, got = wait_lines(sub, lambda ln: ln.path.endswith("ifOperStatus"))
    traps = [ln for ln in got if ".trap." in ln.path]
    assert [ln.path for ln in traps] == ["snmp.127_0_0_1.trap.linkUp"], got
    assert traps[0].meta["version"] == "v3" and traps[0].meta["user"] == TRAP_USER
    assert traps[0].meta["ifdescr"] == "uplink"
    assert hits[0].path == "snmp.127_0_0_1.interfaces.uplink.ifOperStatus"
    assert hits[0].value == 0
    # a v3 trap with the wrong pass phrase never reaches the bus
    snmptrap(env, "-v3", "-e", ENGINE_ID, "-u", TRAP_USER, "-l", "authPriv", "-a", "SHA-256",
             "-A", "not-the-password", "-x", "AES", "-X", TRAP_PRIV, f"udp:127.0.0.1:{port}",
             "1", ".1.3.6.1.6.3.1.1.5.2")
    snmptrap(env, "-v2c", "-c", "public", f"udp:127.0.0.1:{port}", "1", ".1.3.6.1.6.3.1.1.5.1")
    hits, got = wait_lines(sub, lambda ln: ln.path.endswith("trap.coldStart"))
    assert not any("warmStart" in ln.path for ln in got)


def test_trap_from_a_known_target_carries_its_name(trapd, subscribe):
    """The targets file names 127.0.0.2 'router1': its traps are snmp.router1.trap.*."""
    port, env = trapd
    sub = subscribe("snmp.**")
    snmptrap(env, "--clientaddr=127.0.0.2", "-v2c", "-c", "public", f"udp:127.0.0.1:{port}",
             "77", ".1.3.6.1.6.3.1.1.5.1")
    [ln], _ = wait_lines(sub, lambda ln: ".trap." in ln.path)
    assert ln.path == "snmp.router1.trap.coldStart" and ln.meta["uptime"] == "0.77"


def test_v2c_inform_is_acknowledged(trapd, subscribe):
    """snmpinform waits for the receiver's Response: it exits 0 only if we answered."""
    port, env = trapd
    sub = subscribe("snmp.**")
    snmptrap_cmd = ["snmpinform", "-v2c", "-c", "public", "-t", "3", "-r", "1",
                    f"udp:127.0.0.1:{port}", "55", ".1.3.6.1.6.3.1.1.5.2"]
    r = subprocess.run(snmptrap_cmd, capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 0, r.stderr
    [ln], _ = wait_lines(sub, lambda ln: ".trap." in ln.path)
    assert ln.path == "snmp.127_0_0_1.trap.warmStart" and ln.meta["version"] == "v2c"


def test_dropped_datagrams_are_counted_in_self_metrics(relay, subscribe, tmp_path):
    """Garbage and a wrong community never reach the bus as traps; the engine's drop
    counters are published as monbus.<host>.snmp_traps.dropped_* self-metrics."""
    if not shutil.which("snmptrap"):
        pytest.skip("snmptrap not installed")
    port = free_port(socket.SOCK_DGRAM)
    p = subprocess.Popen(monbus_cmd() + ["snmp", "traps", "--listen", f"127.0.0.1:{port}",
                                         "--relay", relay.input],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: "listening on" in p.stderr.readline(), timeout=30, what="listening")
    sub = subscribe("**")
    env = dict(os.environ, MIBS="", SNMP_PERSISTENT_DIR=str(tmp_path), SNMPCONFPATH=str(tmp_path))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"\x30\x03\x02\x01", ("127.0.0.1", port))          # truncated BER
    snmptrap(env, "-v2c", "-c", "wrong", f"udp:127.0.0.1:{port}", "1", ".1.3.6.1.6.3.1.1.5.1")
    snmptrap(env, "-v2c", "-c", "public", f"udp:127.0.0.1:{port}", "1", ".1.3.6.1.6.3.1.1.5.1")
    _, before = wait_lines(sub, lambda ln: ln.path.endswith("trap.coldStart"))
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=20)
    assert p.returncode == 0
    hits, got = wait_lines(sub, lambda ln: ".snmp_traps.dropped_snmpInBadCommunityNames"
                           in ln.path)
    m = {ln.path.rsplit(".", 1)[1]: ln.value for ln in got if ".snmp_traps." in ln.path}
    assert m["dropped_snmpInBadCommunityNames"] == 1
    assert m["dropped_snmpInASNParseErrs"] == 1
    assert m["traps_v2c"] == 1
    assert m["lost_lines"] == 0 and m["spooled_lines"] == 0 and "in_flight" in m
    assert sum(1 for ln in before + got if ".trap." in ln.path) == 1


def test_v3_inform_is_acknowledged(trapd, subscribe):
    """A v3 inform: snmpinform discovers our engine ID and waits for our Response."""
    port, env = trapd
    sub = subscribe("snmp.**")
    r = subprocess.run(["snmpinform", "-v3", "-u", TRAP_USER, "-l", "authPriv", "-a", "SHA-256",
                        "-A", TRAP_AUTH, "-x", "AES", "-X", TRAP_PRIV, "-t", "3", "-r", "1",
                        f"udp:127.0.0.1:{port}", "66", ".1.3.6.1.6.3.1.1.5.5"],
                       capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 0, r.stderr
    [ln], _ = wait_lines(sub, lambda ln: ".trap." in ln.path)
    assert ln.path == "snmp.127_0_0_1.trap.authenticationFailure"
    assert ln.meta["version"] == "v3" and ln.meta["user"] == TRAP_USER


def test_port_in_use_is_a_one_line_error(monbus):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        r = monbus("snmp", "traps", "--listen", f"127.0.0.1:{s.getsockname()[1]}",
                   "--relay", "tcp://127.0.0.1:9", "--timeout", "0.1", timeout=30)
    assert r.returncode == 1 and "Address already in use" in r.stderr
    assert "Traceback" not in r.stderr
