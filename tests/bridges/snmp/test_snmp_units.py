"""The pure parts: varbinds -> lines, counter rates, targets and modules parsing, trap lines;
each fuzzed with hypothesis."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from helpers import DATA
from monbus.bridges.snmp import modules as M
from monbus.bridges.snmp.rates import CounterState, load, save
from monbus.bridges.snmp.samples import (MAX32, MAX64, Skipped, if_state, module_lines, number,
                                         status_line, text_of)
from monbus.bridges.snmp.targets import Target, TargetError, check, parse, parse_address
from monbus.bridges.snmp.traps import TrapError, decode_message, trap_lines
from monbus.core.line import Line, Sanitizer, decode, encode

COL = M.Column("x", (1, 3, 6, 1, 4, 1, 1, 0))


# --- values ---------------------------------------------------------------------------------
@pytest.mark.parametrize("tag,value,kind,expect", [
    ("counter32", 5, "auto", (5.0, "counter", MAX32)),
    ("counter64", 2 ** 63, "auto", (float(2 ** 63), "counter", MAX64)),
    ("uint", 7, "auto", (7.0, "gauge", None)),          # Gauge32
    ("int", -3, "auto", (-3.0, "gauge", None)),
    ("ticks", 250, "auto", (250.0, "gauge", None)),
    ("counter32", 9, "gauge", (9.0, "gauge", None)),     # a counter a device misuses
    ("str", b" 0.42", "float", (0.42, "gauge", None)),   # UCD laLoad
    ("str", b"nan", "float", None),                      # not finite: not a value
    ("str", b"\xff", "float", None),
    ("str", b"12", "auto", None),                        # text is never a number unasked
    ("oid", (1, 3), "auto", None),
    ("ip", b"\x7f\x00\x00\x01", "auto", None),
    ("nosuchinstance", None, "auto", None),
    ("endofmibview", None, "auto", None),
])
def test_number(tag, value, kind, expect):
    col = M.Column("x", (1, 3), kind)
    assert number(tag, value, col) == expect


@pytest.mark.parametrize("oper,admin,code", [
    (1, 1, 0), (2, 1, 2), (2, 2, 0), (7, 1, 2), (5, 1, 0), (3, 1, 1), (4, 1, 3), (6, 1, 3),
    (6, 2, 0), (2, None, 2),
])
def test_if_state(oper, admin, code):
    assert if_state(oper, admin)[0] == code


def test_text_of():
    assert text_of("str", b"eth0") == "eth0"
    assert text_of("str", b"\x00\x1b\x21") == "001b21"    # a MAC address is hex, not text
    assert text_of("ip", b"\xc0\x00\x02\x07") == "192.0.2.7"
    assert text_of("oid", (1, 3, 6)) == "1.3.6"


def test_table_instances_labels_and_collisions():
    """ifName first, ifDescr when ifName is empty, the index last; two names that
    sanitise alike do not collide."""
    t = M.BUILTIN["interfaces"].tables[0]
    ifname, ifdescr = t.labels
    speed = next(c for c in t.columns if c.name == "ifHighSpeed")
    walked = {
        ifname: {(1,): ("str", b"Gi0/1"), (2,): ("str", b""), (4,): ("str", b"Gi0_1")},
        ifdescr: {(2,): ("str", b"Port two")},
        speed.oid: {(1,): ("uint", 1000), (2,): ("uint", 100), (3,): ("uint", 10),
                    (4,): ("uint", 1)},
    }
    lines = module_lines("h", M.BUILTIN["interfaces"], {}, walked, 5, Sanitizer(), Skipped())
    got = {ln.path: ln.value for ln in lines}
    assert got["snmp.h.interfaces.Gi0_1.ifHighSpeed"] == 1000
    assert got["snmp.h.interfaces.Port_two.ifHighSpeed"] == 100
    assert got["snmp.h.interfaces.3.ifHighSpeed"] == 10
    other = [p for p in got if p.startswith("snmp.h.interfaces.Gi0_1_x")]
    assert len(other) == 1 and got[other[0]] == 1


def test_scale_by_and_missing_scale():
    t = M.BUILTIN["host-resources"].tables[0]
    size = t.columns[0]
    walked = {size.oid: {(1,): ("int", 10), (2,): ("int", 3)},
              size.scale_by: {(1,): ("int", 4096)},
              t.labels[0]: {(1,): ("str", b"/"), (2,): ("str", b"/var")}}
    sk = Skipped()
    lines = module_lines("h", M.BUILTIN["host-resources"], {}, walked, 5, Sanitizer(), sk)
    assert [(ln.path, ln.value) for ln in lines] == [("snmp.h.host-resources.storage._.size",
                                                       40960)]
    assert sk["no_scale_by"] == 1 and sk["missing"] == 2   # the two scalars


def test_scalars_info_annotation_and_exceptions():
    sk = Skipped()
    vals = {M.SYS_UPTIME: ("ticks", 12345), (1, 3, 6, 1, 2, 1, 1, 5, 0): ("str", b"core 1")}
    [ln] = module_lines("h", M.BUILTIN["system"], vals, {}, 7, Sanitizer(), sk)
    assert ln == Line("snmp.h.system.sysUpTime", 123.45, 7,
                      {"mtype": "gauge", "unit": "s", "sysname": "core 1"})
    assert decode(encode(ln)) == ln
    vals = {M.SYS_UPTIME: ("nosuchobject", None)}
    assert module_lines("h", M.BUILTIN["system"], vals, {}, 7, Sanitizer(), sk) == []
    assert sk == {"nosuchobject": 1}


def test_status_line():
    ln = status_line("h", False, "SNMP DOWN - timeout", 3)
    assert (ln.path, ln.value, ln.meta["mtype"]) == ("snmp.h.agent.status", 1, "state")


# --- rates ----------------------------------------------------------------------------------
def _c(series, v, ts, mx=MAX32, unit=None):
    m = {"mtype": "counter", "max": str(mx)}
    if unit:
        m["unit"] = unit
    return Line(series, v, ts, m)


def test_rates_wrap_reset_restart_and_merge(tmp_path):
    s = CounterState()
    assert s.rates("h", [_c("snmp.h.m.a", MAX32 - 9, 100, unit="B"),
                         _c("snmp.h.m.b", 50, 100, MAX64)], 1000, 100) == []
    out = s.rates("h", [_c("snmp.h.m.a", 10, 110, unit="B"),          # Counter32 wrapped
                        _c("snmp.h.m.b", 40, 110, MAX64)], 2000, 110)  # Counter64 went down
    assert [(ln.path, ln.value, ln.meta["unit"]) for ln in out] == \
        [("snmp.h.m.a_rate", 2.0, "B/s")]
    assert s.discontinuities == 1
    # a module polled on its own clock keeps the other module's counters
    assert s.rates("h", [_c("snmp.h.other.c", 1, 115)], 2500, 115) == []
    assert "snmp.h.m.a" in s.data["h"]["c"]
    # the agent restarted (sysUpTime went back): no rates at all this time
    assert s.rates("h", [_c("snmp.h.m.a", 30, 120)], 5, 120) == [] and s.resets == 1
    # state survives a save/load; garbage or a missing file is a fresh start
    f = tmp_path / "st.json"
    save(s, str(f), now=120)
    s2 = load(str(f))
    out = s2.rates("h", [_c("snmp.h.m.a", 50, 130)], 1005, 130)
    assert [ln.value for ln in out] == [2.0]
    f.write_text("{not json")
    assert load(str(f)).data == {}
    assert load(str(tmp_path / "absent")).data == {}
    f.write_text(json.dumps({"h": {"c": {"snmp.h.m.a": "junk"}}}))
    assert load(str(f)).rates("h", [_c("snmp.h.m.a", 1, 1)], None, 1) == []


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, MAX32), st.integers(0, 10 ** 6),
                          st.floats(0.001, 1000)), min_size=1, max_size=8))
def test_rates_fuzz_never_negative(seq):
    s = CounterState()
    t = 0.0
    for v, up, dt in seq:
        t += dt
        for ln in s.rates("h", [_c("snmp.h.m.a", v, t)], up, t):
            assert ln.value >= 0 and decode(encode(ln)) == ln


# --- targets and modules ----------------------------------------------------------------------
def test_targets_file_parse():
    targets, user, traps = parse({
        "defaults": {"community": "s3cret", "timeout": 1.5, "modules": ["system"]},
        "target": [{"name": "r1", "address": "192.0.2.1"},
                   {"address": "192.0.2.2", "port": 1161, "modules": ["mib2", "ups"]},
                   {"address": "192.0.2.3", "version": "3", "user": "u", "level": "authpriv",
                    "auth_protocol": "sha-256", "auth_password": "12345678",
                    "priv_protocol": "aes256", "priv_password": "abcdefgh"}],
        "module": {"ups": {"scalars": [{"name": "charge", "oid": ".1.3.6.1.2.1.33.1.2.4.0",
                                        "unit": "%"}],
                           "tables": [{"name": "in", "label": "1.3.6.1.2.1.33.1.3.3.1.1",
                                       "columns": [{"name": "volts",
                                                    "oid": "1.3.6.1.2.1.33.1.3.3.1.3",
                                                    "scale": 0.1, "kind": "gauge"}]}],
                           "interval": 30}},
    })
    r1, r2, r3 = targets
    assert (r1.host, r1.community, r1.timeout, [m.name for m in r1.modules]) == \
        ("r1", "s3cret", 1.5, ["system"])
    assert r2.host == "192_0_2_2:1161"
    assert [m.name for m in r2.modules] == ["ip", "tcp", "udp", "ups"]
    assert user["ups"].interval == 30 and user["ups"].tables[0].columns[0].scale == 0.1
    assert (r3.level, r3.auth_protocol, r3.priv_protocol) == ("authPriv", "sha256", "aes256")
    assert "s3cret" not in repr(r1) and "12345678" not in repr(r3)


@pytest.mark.parametrize("data,msg", [
    ({"target": [{"address": "h", "version": "4"}]}, "version must be"),
    ({"target": [{"address": "h", "version": "3"}]}, "needs a user"),
    ({"target": [{"address": "h", "version": "3", "user": "u", "auth_password": "short"}]},
     "at least 8"),
    ({"target": [{"address": "h", "version": "3", "user": "u", "auth_password": "12345678",
                  "auth_protocol": "SHA-1024"}]}, "unknown auth protocol"),
    ({"target": [{"address": "h", "modules": ["nope"]}]}, "unknown module 'nope'"),
    ({"target": [{"address": "h"}, {"address": "h"}]}, "two targets named"),
    ({"target": [{"address": "h", "port": 0}]}, "bad port"),
    ({"target": [{"address": a, "version": "3", "user": "u", "auth_password": p, "level":
                  "authNoPriv"} for a, p in (("h1", "password1"), ("h2", "password2"))]},
     "different keys"),
    ({"targets": []}, "unknown top-level"),
    ({"module": {"m": {"scalars": [{"name": "x", "oid": "1.3.six"}]}}}, "not a numeric OID"),
    ({"module": {"m": {"scalars": [{"name": "x", "oid": "1.3.6", "kind": "weird"}]}}},
     "kind 'weird'"),
    ({"module": {"m": {}}}, "defines no scalars"),
    ({"module": {"m": {"scalars": [{"name": "x", "oid": "1.3", "scale_by": "1.3"}]}}},
     "scale_by only works in tables"),
])
def test_targets_file_errors(data, msg):
    with pytest.raises(TargetError, match=msg):
        parse(data)


@pytest.mark.parametrize("text,expect", [
    ("192.0.2.1", ("192.0.2.1", 161)), ("192.0.2.1:1161", ("192.0.2.1", 1161)),
    ("udp:router:162", ("router", 162)), ("[2001:db8::1]:1161", ("2001:db8::1", 1161)),
    ("2001:db8::1", ("2001:db8::1", 161)),
])
def test_parse_address(text, expect):
    assert parse_address(text) == expect


def test_effective_deadline():
    t = check(Target("h", modules=M.resolve(["system", "interfaces"]), timeout=2, retries=1),
              "t")
    assert t.effective_deadline == 2 * 2 * 3
    t.deadline = 5
    assert t.effective_deadline == 5


# --- traps ----------------------------------------------------------------------------------
def test_trap_lines_need_trap_oid_and_keep_reserved_keys():
    with pytest.raises(TrapError, match="snmpTrapOID"):
        trap_lines("a", "v2c", [((1, 3, 6, 1, 2, 1, 1, 3, 0), ("ticks", 1))], 0)
    vbs = [((1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0), ("oid", (1, 3, 6, 1, 4, 1, 9, 0, 1))),
           ((1, 3, 6, 1, 2, 1, 2, 2, 1, 1, 5), ("int", 5)),
           ((1, 3, 6, 1, 2, 1, 2, 2, 1, 1, 6), ("int", 6))]
    [ln] = trap_lines("a", "v2c", vbs, 0)
    assert ln.path == "snmp.a.trap.1_3_6_1_4_1_9_0_1"
    assert ln.meta["ifindex"] == "5" and ln.meta["ifindex_6"] == "6"


_TAGGED = st.one_of(
    st.tuples(st.sampled_from(["int"]), st.integers(-2 ** 31, 2 ** 31 - 1)),
    st.tuples(st.sampled_from(["uint", "counter32", "ticks"]), st.integers(0, MAX32)),
    st.tuples(st.just("counter64"), st.integers(0, MAX64)),
    st.tuples(st.sampled_from(["str", "opaque", "ip"]), st.binary(max_size=40)),
    st.tuples(st.just("oid"), st.lists(st.integers(0, 2 ** 32 - 1), min_size=2,
                                       max_size=12).map(tuple)),
    st.tuples(st.sampled_from(["null", "nosuchobject", "nosuchinstance", "endofmibview"]),
              st.none()),
)
_OID = st.lists(st.integers(0, 2 ** 32 - 1), min_size=2, max_size=14).map(tuple)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_OID, _TAGGED), max_size=12), _OID,
       st.sampled_from(["v1", "v2c", "v3"]))
def test_trap_lines_fuzz(vbs, trap_oid, version):
    vbs = [((1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0), ("oid", trap_oid))] + vbs
    for ln in trap_lines("agent", version, vbs, 1.5, user="u"):
        assert decode(encode(ln)) == ln


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from([c.oid for c in M.BUILTIN["ucd"].scalars]
                                       + [M.SYS_UPTIME]), _TAGGED),
       st.dictionaries(st.sampled_from(M.BUILTIN["interfaces"].tables[0].walked()),
                       st.dictionaries(st.lists(st.integers(0, 99), min_size=1,
                                                max_size=3).map(tuple), _TAGGED, max_size=4)))
def test_module_lines_fuzz(scalars, walked):
    for name in ("system", "ucd", "interfaces"):
        for ln in module_lines("h", M.BUILTIN[name], scalars, walked, 2, Sanitizer(),
                               Skipped()):
            assert decode(encode(ln)) == ln


def _corpus_payloads():
    out = []
    for name in ("netsnmp593_local_v1_v2c_v3_traps.pcap.tshark.json",):
        for p in json.loads((DATA / "snmp" / name).read_text()):
            pay = p["_source"]["layers"].get("udp", {}).get("udp.payload")
            if pay:
                out.append(bytes.fromhex(pay.replace(":", "")))
    return out


_REAL = _corpus_payloads()


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.binary(max_size=300),
    st.tuples(st.sampled_from(_REAL), st.integers(0, 400), st.binary(min_size=1, max_size=4))
    .map(lambda t: t[0][:t[1]] + t[2] + t[0][t[1] + len(t[2]):]),
    st.tuples(st.sampled_from(_REAL), st.integers(0, 400)).map(lambda t: t[0][:t[1]]),
))
def test_decode_message_fuzz(data):
    """Random and mutated real datagrams: a result or a TrapError, nothing else."""
    try:
        version, community, kind, vbs = decode_message(data)
    except TrapError as e:
        assert "bytes)" in str(e)
        return
    for o, (tag, v) in vbs:
        assert isinstance(o, tuple) and tag


def test_contrib_targets_file_parses():
    from pathlib import Path

    from monbus.bridges.snmp.targets import load
    from monbus.bridges.snmp.trapd import parse_users
    targets, user, traps = load(str(Path(__file__).resolve().parents[3] / "contrib" / "snmp"
                                    / "targets.toml"))
    assert [t.host for t in targets] == ["core1", "linux-web1", "ups1"]
    assert [m.name for m in targets[2].modules] == ["system", "ups"]
    [u] = parse_users(traps["user"])
    assert (u["auth"], u["priv"], u["engine_id"]) == ("sha256", "aes", "80001f8880aabbccdd0102")


def test_split_by_interval():
    from monbus.bridges.snmp.service import split_by_interval
    _, user, _ = parse({"module": {"fast": {"interval": 10, "scalars": [
        {"name": "x", "oid": "1.3.6.1.2.1.1.3.0"}]}}})
    t = check(Target("h", interval=60, modules=M.resolve(["system", "fast", "interfaces"],
                                                         user)), "t")
    got = sorted((e.interval, [m.name for m in e.modules]) for e in split_by_interval([t], None))
    assert got == [(10.0, ["fast"]), (60, ["system", "interfaces"])]
    got = sorted((e.interval, [m.name for m in e.modules]) for e in split_by_interval([t], 30))
    assert got == [(10.0, ["fast"]), (30, ["system", "interfaces"])]
