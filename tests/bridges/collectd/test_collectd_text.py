"""PUTVAL / PUTNOTIF / NotificationExec text, the exec formatter, and the CLI commands
(putval, notify, listen) end to end through a real relay."""
from __future__ import annotations

import math
import socket
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import DATA, collect, free_port, wait_for
from monbus.bridges.collectd.capture import read_pcap
from monbus.bridges.collectd.network import encode_values, sign_packet
from monbus.bridges.collectd.putval import (PutvalFormatter, TextError, parse_notification_text,
                                            parse_putnotif, parse_putval, split_fields)
from monbus.bridges.collectd.typesdb import TypesDB
from monbus.core.line import Line

DB = TypesDB()
NOW = 1700000100.0


def test_putval_good():
    [vl] = parse_putval('PUTVAL "web 01/cpu-0/cpu-idle" interval=10 1700000000.5:1234', DB, NOW)
    assert (vl.host, vl.plugin, vl.plugin_instance, vl.type, vl.type_instance) == \
        ("web 01", "cpu", "0", "cpu", "idle")
    assert vl.time == 1700000000.5 and vl.interval == 10 and vl.values == (1234,)
    a, b = parse_putval("putval h/interface-eth0/if_octets N:1:2 1700000000:3:4", DB, NOW)
    assert a.time == NOW and a.values == (1, 2) and b.values == (3, 4)
    [u] = parse_putval("PUTVAL h/load/load N:U:0.5:1", DB, NOW)
    assert math.isnan(u.values[0]) and u.values[1:] == (0.5, 1.0)
    [m] = parse_putval('PUTVAL h/p/gauge meta:x="y z" N:1', DB, NOW)
    assert m.values == (1.0,)


@pytest.mark.parametrize("text,problem", [
    ("PUTVAL h/p/no_such_type N:1", "not in types.db"),
    ("PUTVAL h/load/load N:1:2", "3 data source(s)"),
    ("PUTVAL h/cpu/cpu N:1.5", "bad derive value"),
    ("PUTVAL h/p/counter N:-1", "bad counter value"),
    ("PUTVAL h/p/gauge N:abc", "bad gauge value"),
    ("PUTVAL h/p/gauge x:1", "bad time"),
    ("PUTVAL h/p/gauge", "expected"),
    ("PUTVAL h/p N:1", "host/plugin/type"),
    ("PUTVAL /p/gauge N:1", "empty host"),
    ('PUTVAL "h/p/gauge N:1', "unterminated"),
    ("PUTVAL h/p/gauge interval=-1 N:1", "bad interval"),
    ("PUTVAL h/p/gauge colour=red N:1", "unknown option"),
    ("GETVAL h/p/gauge", "expected"),
])
def test_putval_bad(text, problem):
    with pytest.raises(TextError) as e:
        parse_putval(text, DB, NOW)
    assert problem in str(e.value) and repr(text)[:20] in str(e.value)


def test_split_fields_quotes_and_escapes():
    assert split_fields(r'PUTNOTIF message="a \"quoted\" text" host=x') == \
        ["PUTNOTIF", 'message=a "quoted" text', "host=x"]


def test_putnotif():
    n = parse_putnotif('PUTNOTIF severity=warning time=1700000000 host=web01 plugin=disk '
                       'type_instance=sda message="disk almost full"', NOW)
    assert (n.severity, n.time, n.host, n.plugin, n.type_instance, n.message) == \
        (2, 1700000000.0, "web01", "disk", "sda", "disk almost full")
    for bad in ("PUTNOTIF time=1 message=x", "PUTNOTIF severity=bad message=x",
                "PUTNOTIF severity=okay time=1", "PUTNOTIF severity=okay colour=red message=x"):
        with pytest.raises(TextError):
            parse_putnotif(bad, NOW)


# what collectd 5.12's exec plugin writes to a NotificationExec program (exec.c)
NOTIFICATION = ("Severity: FAILURE\nTime: 1700000000.250\nHost: web.01\nPlugin: ping\n"
                "Type: ping\nTypeInstance: 10.0.0.1\nDataSource: value\n\n"
                "Host web.01, plugin ping type ping (instance 10.0.0.1): Data source \"value\" "
                "is currently 250.000000. That is above the failure threshold of 100.000000.\n")


def test_notification_text():
    n = parse_notification_text(NOTIFICATION)
    assert (n.severity, n.time, n.host, n.plugin, n.type, n.type_instance) == \
        (1, 1700000000.25, "web.01", "ping", "ping", "10.0.0.1")
    assert n.message.startswith("Host web.01") and n.message.endswith("100.000000.")
    for bad in ("", "Severity: FAILURE\n\nmsg", "Time: 1\n\nmsg", "Severity: X\nTime: 1\n\nm",
                "Severity: OKAY\nTime: 1\n\n"):
        with pytest.raises(TextError):
            parse_notification_text(bad)


def test_putval_formatter():
    f = PutvalFormatter(interval=10)
    assert f.format(Line("snmp.router-1.if.eth0.in", 12, 1700000000, {"mtype": "counter"})) == \
        'PUTVAL "router-1/snmp/counter-if.eth0.in" interval=10 1700000000:12'
    assert f.format(Line("app.web01.temp;dc=ams", 21.5, 1700000000.5,
                         {"mtype": "gauge", "interval": "60"})) == \
        'PUTVAL "web01/app/gauge-temp;dc=ams" interval=60 1700000000.5:21.5'
    assert f.format(Line("app.web01.x", 1.5, 1, {"mtype": "derive"})).startswith(
        'PUTVAL "web01/app/gauge-x"')
    assert f.format(Line("nagios.web01.http", 2, 1700000000,
                         {"mtype": "state", "output": 'CRITICAL - "down"'})) == \
        ('PUTNOTIF severity=failure time=1700000000 host=web01 plugin=nagios '
         'type_instance="http" message="CRITICAL - \\"down\\""')
    assert PutvalFormatter(host="local").format(Line("a.b.c", 1, 2)).startswith('PUTVAL "local/a/gauge-c"')


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs", "Zs", "Cc"), blacklist_characters=".;"),
               min_size=1, max_size=200),
       st.sampled_from(["gauge", "derive", "counter", "absolute"]),
       st.integers(0, 2 ** 53), st.floats(1, 4e9))
def test_fuzz_formatter_output_parses_back(name, mtype, v, t):
    line = Line(f"src.host.{name}", float(v), t, {"mtype": mtype})
    text = PutvalFormatter(interval=5).format(line)
    [vl] = parse_putval(text, DB, NOW)
    assert vl.values[0] == v and vl.time == t and vl.type == mtype and vl.host == "host"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_text_parsers_raise_only_texterror(text):
    for parse in (lambda x: parse_putval("PUTVAL " + x, DB, NOW),
                  lambda x: parse_putnotif("PUTNOTIF " + x, NOW), parse_notification_text):
        try:
            parse(text)
        except TextError:
            pass


# --- the commands --------------------------------------------------------------------------
def test_putval_command(relay, subscribe, monbus, tmp_path):
    sub = subscribe("collectd.**")
    f = tmp_path / "in.txt"
    f.write_text("# comment\nPUTVAL web01/interface-eth0/if_octets interval=10 1700000000:100:200\n"
                 "PUTVAL web01/load/load 1700000000:oops\n"
                 'PUTNOTIF severity=okay time=1700000000 host=web01 plugin=load message="back"\n')
    r = monbus("collectd", "putval", f, "--relay", relay.input)
    assert r.returncode == 1 and "line 3" in r.stderr and "oops" in r.stderr
    got = sorted(collect(sub, 3, timeout=30), key=lambda x: x.path)
    assert [(x.path, x.value, x.timestamp) for x in got] == [
        ("collectd.web01.interface-eth0.if_octets.rx", 100, 1700000000),
        ("collectd.web01.interface-eth0.if_octets.tx", 200, 1700000000),
        ("collectd.web01.load.notification", 0, 1700000000)]
    assert got[0].meta == {"mtype": "derive", "interval": "10"}


def test_putval_command_use_tags_reverse_host(relay, subscribe, monbus):
    """--use-tags and --reverse-host reach the naming (write_graphite's UseTags and
    ReverseHost; compared with the real write_graphite in test_collectd_write_graphite.py)."""
    sub = subscribe("collectd.**")
    r = monbus("collectd", "putval", "--relay", relay.input, "--use-tags", "--reverse-host",
               input="PUTVAL web01.example.com/interface-eth0/if_octets 1700000000:100:200\n")
    assert r.returncode == 0, r.stderr
    got = sorted((x.series, x.value) for x in collect(sub, 2, timeout=30))
    tags = ";host=com.example.web01;plugin=interface;plugin_instance=eth0;type=if_octets"
    assert got == [(f"collectd.interface.if_octets.rx{tags};ds_name=rx", 100),
                   (f"collectd.interface.if_octets.tx{tags};ds_name=tx", 200)]


def test_notify_command(relay, subscribe, monbus):
    sub = subscribe("collectd.**")
    r = monbus("collectd", "notify", "--relay", relay.input, input=NOTIFICATION)
    assert r.returncode == 0, r.stderr
    [line] = collect(sub, 1, timeout=30)
    assert line.path == "collectd.web_01.ping.ping-10_0_0_1.notification"
    assert line.value == 2 and line.timestamp == 1700000000.25
    assert line.meta["output"].startswith("Host web.01")
    r = monbus("collectd", "notify", "--relay", relay.input, input="garbage")
    assert r.returncode == 1 and "not a collectd notification" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("args,message", [
    (["listen", "--security-level", "sign"], "needs --auth-file"),
    (["listen", "--auth-file", "/nonexistent/auth"], "cannot read AuthFile"),
    (["listen", "--escape-character", "."], "EscapeCharacter"),
    (["listen", "--listen", "nohostport"], "HOST:PORT"),
    (["listen", "--typesdb", "/nonexistent/types.db"], "cannot read types.db"),
    (["listen", "--listen", "239.192.74.66:25826", "--interface", "nosuchif0"],
     "--interface 'nosuchif0': no such network interface"),
    (["listen", "--use-tags", "--postfix", ";=x"], "give invalid paths"),
    (["exec", "--local-host"], "COLLECTD_HOSTNAME"),
])
def test_bad_options_are_one_line_errors(monbus, args, message):
    r = monbus("collectd", *args, "--relay" if args[0] != "exec" else "--connect",
               "tcp://127.0.0.1:1", env={"COLLECTD_HOSTNAME": ""})
    assert r.returncode != 0 and message in r.stderr and "Traceback" not in r.stderr


def test_listen_replays_a_real_capture_over_ipv4_and_ipv6(relay, subscribe, start_listener):
    sub = subscribe("collectd.**")
    p4 = free_port(socket.SOCK_DGRAM)
    p6 = free_port(socket.SOCK_DGRAM, "::1")
    start_listener("--listen", f"127.0.0.1:{p4}", "--listen", f"[::1]:{p6}",
                   "--relay", relay.input)
    packets = read_pcap(str(DATA / "collectd" / "collectd512_local_plain.pcap"))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s4, \
            socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s6:
        for i, p in enumerate(packets):
            if i % 2:
                s6.sendto(p, ("::1", p6))
            else:
                s4.sendto(p, ("127.0.0.1", p4))
    got = collect(sub, 350, timeout=30)
    want = [row.split() for row in (DATA / "collectd" / "collectd512_write_graphite_raw.txt").open()]
    assert sorted((x.path, x.value, round(x.timestamp)) for x in got) == \
        sorted((p, float(v), int(t)) for p, v, t in want)


def test_listen_rereads_its_authfile(relay, subscribe, start_listener, tmp_path):
    sub = subscribe("collectd.**")
    port = free_port(socket.SOCK_DGRAM)
    auth = tmp_path / "auth"
    auth.write_text("alice: one\n")
    auth.chmod(0o644)  # too open: warned about at start
    _, err = start_listener("--listen", f"127.0.0.1:{port}", "--relay", relay.input,
                            "--security-level", "sign", "--auth-file", auth)
    packet = sign_packet(encode_values("h", "p", "", "gauge", "", time.time(), 1, [1], [42.0]),
                         "bob", "two")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(packet, ("127.0.0.1", port))
        wait_for(lambda: "unknown user 'bob'" in err.read_text(), timeout=30, what="bob refused")
        assert "readable by other users" in err.read_text()
        auth.write_text("alice: one\nbob: two\n")

        def arrived():
            s.sendto(packet, ("127.0.0.1", port))
            return sub.recv_lines(0.3)
        lines = wait_for(arrived, timeout=30, what="bob accepted after the AuthFile changed")
    # (several copies may have got through by the time this one was read)
    assert {(x.path, x.value) for x in lines} == {("collectd.h.p.gauge", 42)}
    assert "two" not in err.read_text()


def test_listener_survives_garbage_and_keeps_the_good_data(relay, subscribe, start_listener):
    """Bad datagrams between good ones: every good value arrives, the process lives on, and
    the bad ones are counted in the self-metrics."""
    import random
    sub = subscribe("collectd.**")
    selfm = subscribe("monbus.**")
    port = free_port(socket.SOCK_DGRAM)
    proc, err = start_listener("--listen", f"127.0.0.1:{port}", "--relay", relay.input,
                               "--selfmetrics-interval", "1")
    good = read_pcap(str(DATA / "collectd" / "collectd512_local_plain.pcap"))
    rnd = random.Random(5)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for p in good:
            s.sendto(bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(1, 300))),
                     ("127.0.0.1", port))
            s.sendto(b"\x00\x00\x00\x00" * 3, ("127.0.0.1", port))  # zero-length parts
            s.sendto(p, ("127.0.0.1", port))
    got = collect(sub, 350, timeout=30)
    assert len({(x.path, x.timestamp) for x in got}) == 350
    counts: dict = {}

    def counted():
        for line in selfm.recv_lines(0.5) or []:
            counts[line.path.rsplit(".", 1)[1]] = line.value
        return counts.get("datagrams", 0) >= 30
    wait_for(counted, timeout=30, what="self-metrics of 30 datagrams")
    assert counts["bad_datagrams"] >= 10 and counts["bad_part_length"] >= 10
    assert proc.poll() is None and "Traceback" not in err.read_text()
