"""The network-protocol decoder: a table of malformed datagrams (each names what it breaks),
the security levels, the published crypto vectors, write_graphite naming, and fuzzing."""
from __future__ import annotations

import json
import math
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import DATA
from monbus.bridges.collectd import network as nw
from monbus.bridges.collectd.capture import read_pcap
from monbus.bridges.collectd.naming import GraphiteNaming, NamingError
from monbus.bridges.collectd.network import (NetworkDecoder, PacketParser, encode_notification,
                                             encode_values, encrypt_packet, sign_packet)
from monbus.bridges.collectd.security import decrypt, verify_signature
from monbus.bridges.collectd.typesdb import TypesDB, parse_typesdb
from monbus.core.line import decode

D = DATA / "collectd"
DB = TypesDB()
T = 1700000000.5
GOOD = encode_values("web01", "load", "", "load", "", T, 10, [1, 1, 1], [0.5, 0.25, 0.125])
GOOD2 = encode_values("web01", "cpu", "0", "cpu", "idle", T, 10, [2], [12345])


def part(ptype: int, payload: bytes, length: int | None = None) -> bytes:
    return struct.pack(">HH", ptype, 4 + len(payload) if length is None else length) + payload


def run(data: bytes, **kw):
    dec = NetworkDecoder(DB, **kw)
    lines, errors = dec.decode(data)
    for line in lines:
        decode(line)  # always valid monbus syntax
    return lines, errors, dec.counts


def test_good_packet():
    lines, errors, _ = run(GOOD + GOOD2)
    assert errors == []
    assert lines == [
        "collectd.web01.load.load.shortterm 0.5 1700000000.5 mtype=gauge interval=10",
        "collectd.web01.load.load.midterm 0.25 1700000000.5 mtype=gauge interval=10",
        "collectd.web01.load.load.longterm 0.125 1700000000.5 mtype=gauge interval=10",
        "collectd.web01.cpu-0.cpu-idle 12345 1700000000.5 mtype=derive interval=10",
    ]


VALUES_1 = part(nw.TYPE_VALUES, b"\x00\x01\x02" + struct.pack(">q", 7))
# (name, datagram, error kind, lines still decoded)
MALFORMED = [
    ("zero length part would loop forever", GOOD + b"\x00\x05\x00\x00junk", "bad_part_length", 3),
    ("part length 3 (< header)", GOOD + b"\x00\x05\x00\x03junk", "bad_part_length", 3),
    ("part runs past the end", GOOD + part(5, b"idle\0", length=200), "bad_part_length", 3),
    ("VALUES declares 2, holds 1", GOOD + part(6, b"\x00\x02\x02\x02" + bytes(8)) + GOOD2,
     "bad_values", 4),
    ("VALUES with 0 values", part(6, b"\x00\x00") + GOOD, "bad_values", 3),
    ("VALUES shorter than its count", part(6, b"\x00"), "bad_values", 0),
    ("unknown value kind 7", GOOD + part(6, b"\x00\x01\x07" + bytes(8)), "bad_values", 3),
    # a bad name part blanks that name: the values after it are dropped, not mis-labelled
    ("string without NUL", GOOD + part(nw.TYPE_TYPE, b"load") + VALUES_1,
     "bad_string incomplete_values", 3),
    ("string longer than 127 bytes", GOOD + part(nw.TYPE_PLUGIN, b"p" * 200 + b"\0") + VALUES_1,
     "bad_string incomplete_values", 3),
    ("TIME_HR of 8 bytes", part(nw.TYPE_TIME_HR, bytes(4)), "bad_numeric", 0),
    ("values before any host/time", VALUES_1 + GOOD, "incomplete_values", 3),
    ("2 trailing bytes", GOOD + b"\x00\x01", "trailing_bytes", 3),
    ("load with 1 value: types.db says 3", encode_values("h", "load", "", "load", "", T, 1, [1], [1.0]),
     "value_count_mismatch", 0),
    ("notification with severity 3", encode_notification("h", "p", "t", T, 3, "x"),
     "bad_notification", 0),
    ("notification with empty message", encode_notification("h", "p", "t", T, 4, ""),
     "bad_notification", 0),
]


@pytest.mark.parametrize("name,data,kind,n_lines", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed(name, data, kind, n_lines):
    lines, errors, counts = run(data)
    assert [e.kind for e in errors] == kind.split()
    assert len(lines) == n_lines
    assert counts[kind.split()[0]] == 1 and counts["bad_datagrams"] == 1


def test_errors_quote_the_bytes_in_hex():
    _, errors, _ = run(GOOD + b"\x00\x05\x00\x00" + b"\xde\xad" * 100)
    msg = errors[0].message
    assert "00050000dead" in msg and "(204 bytes)" in msg and len(msg) < 250


def test_a_good_name_after_a_bad_one_is_used_again():
    data = GOOD + part(nw.TYPE_TYPE, b"load") + VALUES_1 + part(nw.TYPE_TYPE, b"cpu\0") + VALUES_1
    lines, errors, _ = run(data)
    assert [e.kind for e in errors] == ["bad_string", "incomplete_values"]
    assert lines[-1].startswith("collectd.web01.load.cpu 7 ")


def test_unknown_part_skipped_by_length():
    lines, errors, counts = run(part(0x0777, b"whatever") + GOOD)
    assert errors == [] and len(lines) == 3 and counts["unknown_parts"] == 1


def test_nan_and_infinite_gauges_are_counted_not_sent():
    data = encode_values("h", "p", "", "gauge", "", T, 1, [1], [math.nan]) + \
        encode_values("h", "p", "", "gauge", "", T, 1, [1], [math.inf])
    lines, errors, counts = run(data)
    assert lines == [] and errors == [] and counts["nan_values"] == 2
    lines, errors, counts = run((D / "logstash_nan_gauge.bin").read_bytes())
    assert lines == [] and counts["nan_values"] == 1


def test_unknown_type_is_published_and_counted():
    data = encode_values("h", "p", "", "no_such_type", "x", T, 1, [0, 2], [1, -2])
    lines, errors, counts = run(data)
    assert errors == [] and counts["unknown_type"] == 1
    assert lines == ["collectd.h.p.no_such_type-x.0 1 1700000000.5 mtype=counter interval=1",
                     "collectd.h.p.no_such_type-x.1 -2 1700000000.5 mtype=derive interval=1"]


def test_counter_wrap_keeps_all_64_bits():
    data = encode_values("h", "p", "", "counter", "", T, 1, [0], [2 ** 64 - 1])
    lines, _, _ = run(data)
    assert lines[0].split()[1] == "18446744073709551615"


def test_notification_becomes_availability_line():
    lines, errors, counts = run(encode_notification("web.01", "ping", "ping", T, 1, "host down"))
    assert errors == [] and counts["notifications"] == 1
    line = decode(lines[0])
    assert line.path == "collectd.web_01.ping.ping.notification"
    assert line.value == 2 and line.meta == {"mtype": "state", "output": "host down"}
    lines, _, _ = run((D / "logstash_notification_message_severity.bin").read_bytes())
    note = decode([x for x in lines if "notification" in x][0])
    assert note.value == 1 and note.meta["output"] == "Test Message"


# --- security -----------------------------------------------------------------------------
USERS = {b"alice": b"12345678"}


def test_crypto_vectors():
    vec = json.loads((D / "crypto_vectors.json").read_text())["inline_vectors"]
    raw = bytes.fromhex(vec[0]["sign_part_plus_payload_hex"])
    mac, user, payload = raw[4:36], raw[36:41], raw[41:]
    assert user == b"admin" and payload == b"collectd"
    assert verify_signature(mac, user, b"admin", payload)
    assert not verify_signature(mac, user, b"admim", payload)
    aes = vec[1]
    out = decrypt(b"admin", bytes.fromhex(aes["iv_hex"]), bytes.fromhex(aes["ciphertext_hex"]))
    assert out == b"collectd"
    assert decrypt(b"wrong", bytes.fromhex(aes["iv_hex"]), bytes.fromhex(aes["ciphertext_hex"])) is None


@pytest.mark.parametrize("level,signed_ok,encrypted_ok,plain_ok", [
    ("none", True, True, True), ("sign", True, True, False), ("encrypt", False, True, False)])
def test_security_levels(level, signed_ok, encrypted_ok, plain_ok):
    signed = sign_packet(GOOD, "alice", "12345678")
    encrypted = encrypt_packet(GOOD, "alice", "12345678", b"\x01" * 16)
    for data, ok in ((signed, signed_ok), (encrypted, encrypted_ok), (GOOD, plain_ok)):
        lines, errors, _ = run(data, security_level=level, password_of=USERS.get)
        assert (len(lines) == 3) == ok
        assert ok or [e.kind for e in errors] == ["insecure"]


@pytest.mark.parametrize("data,kind", [
    (sign_packet(GOOD, "mallory", "12345678"), "unknown_user"),
    (sign_packet(GOOD, "alice", "1234567"), "bad_signature"),
    (sign_packet(GOOD, "alice", "12345678")[:-1] + b"\x00", "bad_signature"),
    (encrypt_packet(GOOD, "mallory", "12345678", bytes(16)), "unknown_user"),
    (encrypt_packet(GOOD, "alice", "wrong", bytes(16)), "bad_encryption"),
    (part(nw.TYPE_SIGN_SHA256, bytes(20)), "bad_signature"),
    (part(nw.TYPE_ENCR_AES256, b"\x00\x40alice" + bytes(40)), "bad_encryption"),
], ids=["sign unknown user", "sign wrong password", "sign tampered payload",
        "encrypt unknown user", "encrypt wrong password", "sign part too short",
        "encrypt user length too long"])
def test_rejected_packets_are_never_decoded(data, kind):
    lines, errors, counts = run(data, security_level="none", password_of=USERS.get)
    assert lines == [] and [e.kind for e in errors] == [kind] and counts[kind] == 1
    assert "12345678" not in errors[0].message


def test_signed_without_authfile_is_read_as_collectd_does():
    """collectd at SecurityLevel None with no AuthFile accepts signed packets unverified."""
    lines, errors, counts = run(sign_packet(GOOD, "alice", "x"))
    assert len(lines) == 3 and errors == [] and counts["unverified_signed"] == 1
    lines, errors, _ = run(encrypt_packet(GOOD, "alice", "x", bytes(16)))
    assert lines == [] and [e.kind for e in errors] == ["unknown_user"]


def test_real_signed_and_encrypted_vectors():
    for name, n in (("logstash_signed_pieter_aapje1234.bin", 44),
                    ("logstash_encrypted_pieter_aapje1234.bin", 45)):
        lines, errors, _ = run((D / name).read_bytes(), security_level="sign",
                               password_of={b"pieter": b"aapje1234"}.get)
        assert errors == [] and len(lines) == n
    lines, errors, _ = run((D / "logstash_signed_badsig.bin").read_bytes(),
                           password_of={b"pieter": b"aapje1234"}.get)
    assert lines == [] and [e.kind for e in errors] == ["bad_signature"]


def test_kernel_drops_are_read_from_proc():
    import socket

    from monbus.bridges.collectd.kerneldrops import kernel_drops, parse_proc_net_udp, socket_inodes
    sample = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
              "timeout inode ref pointer drops\n"
              " 1902: 0100007F:8E36 00000000:0000 07 00000000:00000000 00:00000000 00000000     0"
              "        0 110188 2 00000000264251c8 17\n"
              " 2357: 0100007F:CFFD 00000000:0000 07 00000000:00000000 00:00000000 00000000     0"
              "        0 111548 2 00000000987f003b 5\n")
    assert parse_proc_net_udp(sample, {110188}) == 17
    assert parse_proc_net_udp(sample, {110188, 111548}) == 22
    assert parse_proc_net_udp("garbage", {1}) == 0
    # a real socket with the smallest buffer, never read: the kernel drops and counts
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
        s.bind(("127.0.0.1", 0))
        inodes = socket_inodes([s])
        assert kernel_drops(inodes) == 0
        for _ in range(500):
            c.sendto(b"x" * 1000, s.getsockname())
        assert kernel_drops(inodes) > 0


# --- naming ---------------------------------------------------------------------------------
def test_naming_options():
    n = GraphiteNaming()
    assert n.series("a.b c", "df", "/var lib", "df_complex", "used", ("value",)) == \
        ("collectd.a_b_c.df-_var_lib.df_complex-used",)
    assert GraphiteNaming(escape_character="-").series("a.b", "p", "", "t", "", ("value",)) == \
        ("collectd.a-b.p.t",)
    assert GraphiteNaming(drop_duplicate_fields=True).series(
        "h", "memory", "", "memory", "used", ("value",)) == ("collectd.h.memory.used",)
    assert GraphiteNaming(drop_duplicate_fields=True).series(
        "h", "load", "", "load", "", ("shortterm", "midterm")) == \
        ("collectd.h.load.shortterm", "collectd.h.load.midterm")
    assert GraphiteNaming(preserve_separator=True).series("a.b", "p", "", "t", "", ("v",)) == \
        ("collectd.a.b.p.t",)
    # a dot that would leave an empty component is escaped after all
    assert GraphiteNaming(preserve_separator=True).series(".x", "p", "", "t", "", ("v",)) == \
        ("collectd._x.p.t",)
    assert GraphiteNaming(prefix="servers.", postfix=".collectd").series(
        "h", "p", "i", "t", "j", ("value",)) == ("servers.h.collectd.p-i.t-j",)
    assert GraphiteNaming().series("h;x=1", "p", "", "t", "", ("value",)) == ("collectd.h_x=1.p.t",)
    for bad in (".", ";", " ", "ab"):
        with pytest.raises(NamingError):
            GraphiteNaming(escape_character=bad)
    with pytest.raises(NamingError):
        GraphiteNaming(prefix="a..")


def test_naming_reverse_host_and_use_tags():
    """ReverseHost and UseTags as collectd 5.12's write_graphite writes them
    (test_collectd_write_graphite.py compares with the real one), plus what monbus must
    escape beyond it: `;` in a tag value, a leading `~`, a name that would leave an empty
    path component."""
    rev = GraphiteNaming(reverse_host=True)
    assert rev.series("node3.cluster1.example.com", "cpu", "0", "cpu", "idle", ("value",)) == \
        ("collectd.com_example_cluster1_node3.cpu-0.cpu-idle",)
    assert rev.series("h..x", "p", "", "t", "", ("v",)) == ("collectd.x__h.p.t",)
    assert rev.notification_series("a.b", "p", "", "t", "") == "collectd.b_a.p.t.notification"
    tags = GraphiteNaming(use_tags=True)
    assert tags.series("h.x", "load", "", "load", "", ("shortterm", "midterm")) == (
        "collectd.load.load.shortterm;host=h.x;plugin=load;type=load;ds_name=shortterm",
        "collectd.load.load.midterm;host=h.x;plugin=load;type=load;ds_name=midterm")
    assert tags.series("h", "p.x", "i 1", "gauge", "t/y", ("value",)) == \
        ("collectd.p.x.gauge;host=h;plugin=p.x;plugin_instance=i_1;type=gauge;type_instance=t_y",)
    # monbus's own escapes: ';' in a tag value, a leading '~', an empty component
    assert tags.series("a;b", "p", "~i", "t", "", ("value",)) == \
        ("collectd.p.t;host=a_b;plugin=p;plugin_instance=_i;type=t",)
    assert tags.series("h", ".p", "", "t", "", ("value",)) == \
        ("collectd._p.t;host=h;plugin=.p;type=t",)
    both = GraphiteNaming(use_tags=True, reverse_host=True, drop_duplicate_fields=True,
                          always_append_ds=True, prefix="pre.", postfix=";env=prod")
    assert both.series("a.b", "memory", "", "memory", "used", ("value",)) == \
        ("pre.memory.value;env=prod;host=b.a;plugin=memory;type_instance=used;ds_name=value",)
    assert tags.notification_series("h", "p", "", "t", "i") == \
        "collectd.p.t.notification;host=h;plugin=p;type=t;type_instance=i"
    assert tags.notification_series("", "", "", "", "") == "collectd.notification;host=unknown"
    with pytest.raises(NamingError):
        GraphiteNaming(use_tags=True, postfix=";=x")


def test_typesdb_parser():
    types, errors = parse_typesdb("# c\nif_octets rx:DERIVE:0:U, tx:DERIVE:0:U\n"
                                  "bad line\nx y:WHAT:0:1\ngauge value:GAUGE:U:U\n")
    assert [d.name for d in types["if_octets"]] == ["rx", "tx"]
    assert types["gauge"][0].kind == "gauge" and types["gauge"][0].min is None
    assert len(errors) == 2 and "bad line" in errors[0]


# --- fuzzing --------------------------------------------------------------------------------
REAL = read_pcap(str(D / "collectd512_local_plain.pcap"))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_random_bytes_never_raise(data):
    run(data, security_level="none", password_of=USERS.get)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(REAL) - 1), st.lists(st.tuples(st.integers(0, 1400), st.integers(0, 255)),
                                                max_size=8), st.integers(0, 1500))
def test_fuzz_mutated_real_packets_never_raise(i, flips, cut):
    data = bytearray(REAL[i])
    for pos, byte in flips:
        if pos < len(data):
            data[pos] = byte
    run(bytes(data[:cut]))
    run(sign_packet(bytes(data[:cut]), "alice", "12345678"), security_level="sign",
        password_of=USERS.get)


names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
                min_size=1, max_size=20).filter(lambda s: len(s.encode()) < 120)


@settings(max_examples=300, deadline=None)
@given(names, names, st.text(max_size=10).filter(lambda s: "\0" not in s), names,
       st.floats(1, 4e9), st.lists(st.tuples(st.sampled_from([0, 1, 2, 3]), st.integers(0, 2 ** 62)),
                                   min_size=1, max_size=4))
def test_fuzz_round_trip_any_names_give_valid_lines(host, plugin, pinst, type_, t, vals):
    kinds = [k for k, _ in vals]
    values = [float(v) if k == 1 else v for k, v in vals]
    data = encode_values(host, plugin, pinst, type_, "", t, 2, kinds, values)
    [vl] = PacketParser().parse(data).values
    assert (vl.host, vl.plugin, vl.plugin_instance, vl.type) == (host, plugin, pinst, type_)
    assert list(vl.values) == values and abs(vl.time - t) < 1e-6
    lines, errors, _ = run(data)
    if type_ not in DB:
        assert len(lines) == len(values)
        for line, v in zip(map(decode, lines), values):
            assert line.value == float(v) and line.path.startswith("collectd.")


def test_store_rates_counter_wrap_and_old_values():
    dec = NetworkDecoder(DB, store_rates=True)

    def rate(kind_code, type_, value, t):
        lines, _ = dec.decode(encode_values("h", "p", "", type_, "", t, 1, [kind_code], [value]))
        return [decode(x).value for x in lines]
    assert rate(0, "counter", 2 ** 32 - 10, T) == []          # first value: no rate yet
    assert rate(0, "counter", 5, T + 3) == [5.0]              # 32-bit wrap: 15 in 3 s
    assert rate(0, "counter", 5, T + 3) == []                 # not newer: dropped
    assert rate(2, "derive", -10, T) == []
    assert rate(2, "derive", -40, T + 10) == [-3.0]           # derive may go down
    assert rate(3, "absolute", 50, T) == []
    assert rate(3, "absolute", 50, T + 5) == [10.0]
    assert rate(1, "gauge", 7.5, T) == [7.5]                  # gauges unchanged
    assert dec.counts["rate_first"] == 3 and dec.counts["rate_too_old"] == 1


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([nw.TYPE_SIGN_SHA256, nw.TYPE_ENCR_AES256]), st.binary(max_size=300),
       st.sampled_from(["none", "sign", "encrypt"]))
def test_fuzz_security_parts_never_raise(ptype, payload, level):
    lines, errors, _ = run(part(ptype, payload) + GOOD, security_level=level,
                           password_of={b"alice": b"12345678", b"": b""}.get)
    # garbage in a security part never lets the plain parts after it through above level none
    if level != "none":
        assert lines == []


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_fuzz_text_files_never_raise(text):
    """types.db, AuthFile and /proc/net/udp parsers take any text."""
    from monbus.bridges.collectd.kerneldrops import parse_proc_net_udp
    from monbus.bridges.collectd.security import parse_authfile
    types, errors = parse_typesdb(text)
    for dss in types.values():
        assert dss and all(ds.kind in ("gauge", "counter", "derive", "absolute") for ds in dss)
    for user, password in parse_authfile(text).items():
        assert user and b"\n" not in user + password
    assert parse_proc_net_udp(text, {1, 2}) >= 0
