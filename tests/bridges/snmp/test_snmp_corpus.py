"""The real captures in tests/data/snmp/ (net-snmp 5.9.3 and nDPI), decoded by the bridge's
pure decoder and checked against independent decoders: TShark's JSON for every varbind,
net-snmp's own snmpbulkwalk text for the values, tcpdump's verdict for the malformed ones."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from helpers import DATA
from monbus.bridges.snmp import modules as M
from monbus.bridges.snmp.samples import Skipped, module_lines
from monbus.bridges.snmp.traps import TrapError, decode_message, decode_packet, trap_lines
from monbus.core.line import Sanitizer, decode, encode

D = DATA / "snmp"
CAPTURES = ["netsnmp593_local_v1_v2c_v3_traps.pcap.tshark.json", "ndpi_snmp.pcap.tshark.json"]


def frames(name):
    """(frame number, UDP payload bytes, tshark snmp layer) for every SNMP frame."""
    for p in json.loads((D / name).read_text()):
        layers = p["_source"]["layers"]
        pay = layers.get("udp", {}).get("udp.payload")
        if pay is not None and "snmp" in layers:
            yield layers["frame"]["frame.number"], bytes.fromhex(pay.replace(":", "")), \
                layers["snmp"]


def _pdu(snmp):
    tree = snmp.get("snmp.data_tree", {})
    return next(iter(tree.items())) if tree else (None, {})


def tshark_varbinds(elem) -> list:
    """[(oid tuple, field, value text)] from TShark's variable_bindings_tree."""
    out = []
    for vb in elem.get("snmp.variable_bindings_tree", {}).values():
        oid = tuple(int(x) for x in vb["snmp.name"].split("."))
        (field, value), = [(k, v) for k, v in vb.items()
                           if k not in ("snmp.name", "snmp.value.octets_tree")]
        # exceptions (noSuchObject...) carry an expert-info dict instead of a value
        out.append((oid, field, "" if isinstance(value, dict) else value))
    return out


def as_tshark(tag, v) -> tuple[str, str]:
    """The bridge's (tag, value) the way TShark prints it."""
    if tag in ("str", "opaque"):
        return "snmp.value.octets", ":".join(f"{b:02x}" for b in v)
    if tag == "ip":
        return "snmp.value.ipv4", ".".join(map(str, v))
    if tag == "oid":
        return "snmp.value.oid", ".".join(map(str, v))
    field = {"int": "snmp.value.int", "uint": "snmp.value.g32", "counter32": "snmp.value.counter",
             "counter64": "snmp.value.counter", "ticks": "snmp.value.timeticks",
             "null": "snmp.value.null", "nosuchobject": "snmp.noSuchObject",
             "nosuchinstance": "snmp.noSuchInstance",
             "endofmibview": "snmp.endOfMibView"}[tag]
    return field, "" if v is None else str(v)


@pytest.mark.parametrize("capture", CAPTURES)
def test_every_v1_v2c_varbind_equals_tshark(capture):
    checked = v3 = 0
    for num, payload, snmp in frames(capture):
        if snmp.get("snmp.msgVersion") == "3" or snmp.get("snmp.version") not in ("0", "1"):
            with pytest.raises(TrapError, match="not v1/v2c"):
                decode_message(payload)
            v3 += 1
            continue
        version, community, kind, vbs = decode_message(payload)
        assert version == {"0": "v1", "1": "v2c"}[snmp["snmp.version"]], num
        assert community == snmp["snmp.community"], num
        name, elem = _pdu(snmp)
        expected = tshark_varbinds(elem)
        mine = [(o, *as_tshark(t, v)) for o, (t, v) in vbs]
        if name == "snmp.trap_element":
            # RFC 3584 3.1, computed here from TShark's fields
            g, s = int(elem["snmp.generic_trap"]), int(elem["snmp.specific_trap"])
            ent = elem["snmp.enterprise"]
            trap_oid = f"{ent}.0.{s}" if g == 6 else f"1.3.6.1.6.3.1.1.5.{g + 1}"
            assert mine[0] == ((1, 3, 6, 1, 2, 1, 1, 3, 0), "snmp.value.timeticks",
                               elem["snmp.time_stamp"]), num
            assert mine[1] == ((1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0), "snmp.value.oid", trap_oid)
            # the trap's own varbinds, in order, plus snmpTrapAddress/Community/Enterprise
            added = {(1, 3, 6, 1, 6, 3, 18, 1, 3, 0), (1, 3, 6, 1, 6, 3, 18, 1, 4, 0),
                     (1, 3, 6, 1, 6, 3, 1, 1, 4, 3, 0)}
            assert [x for x in mine[2:] if x[0] not in added] == expected, num
            extra = dict((o, v) for o, _, v in mine[2:] if o in added)
            assert extra[(1, 3, 6, 1, 6, 3, 18, 1, 3, 0)] == elem["snmp.agent_addr"]
            assert extra[(1, 3, 6, 1, 6, 3, 1, 1, 4, 3, 0)] == ent
        else:
            # TShark keys its tree by "name: value", so a repeated pair shows once
            assert sorted(set(mine)) == sorted(set(expected)), num
        checked += 1
    assert checked >= 30 and v3 >= 4


def test_corpus_traps_to_lines():
    """Both v1 and v2c traps of the net-snmp capture become valid lines with every varbind."""
    got = []
    for cap in CAPTURES:
        for num, payload, snmp in frames(cap):
            try:
                version, community, vbs = decode_packet(payload)
            except TrapError:
                continue
            lines = trap_lines("agent", version, vbs, 1795775845)
            for ln in lines:
                assert decode(encode(ln)) == ln
            got.extend(lines)
    paths = [ln.path for ln in got]
    assert paths.count("snmp.agent.trap.linkDown") == 3   # 1 net-snmp v2c + nDPI's
    v2 = next(ln for ln in got if ln.path == "snmp.agent.trap.linkDown"
              and ln.meta.get("version") == "v2c" and "oid_1_3_6_1_4_1_99999_1" in ln.meta)
    # the values snmptrap was given (netsnmp593_local_cli_outputs.txt, last command)
    assert v2.meta["oid_1_3_6_1_2_1_31_1_1_1_6_2"] == "18446744073709551615"
    assert v2.meta["oid_1_3_6_1_4_1_99999_1"] == "192.0.2.7"
    assert v2.meta["oid_1_3_6_1_4_1_99999_2"] == "4242"
    assert v2.meta["oid_1_3_6_1_4_1_99999_3"] == "1.3.6.1.4.1.8072"
    assert v2.meta["oid_1_3_6_1_4_1_99999_4"] == "deadbeef"
    assert v2.meta["uptime"] == "9876.54"
    states = [ln for ln in got if ln.meta.get("mtype") == "state"]
    assert {ln.path for ln in states} >= {"snmp.agent.interfaces.2.ifOperStatus",
                                          "snmp.agent.interfaces.Ethernet0_1.ifOperStatus"}


def _cli_sections():
    """`### command` -> output text, from net-snmp's own outputs captured with the pcap."""
    out, cur = {}, None
    for line in (D / "netsnmp593_local_cli_outputs.txt").read_text().splitlines():
        if line.startswith("### "):
            cur = line[4:]
            out[cur] = []
        elif cur:
            out[cur].append(line)
    return {k: "\n".join(v) for k, v in out.items()}


def test_captured_bulkwalk_responses_equal_netsnmp_output():
    """The ifTable/ifXTable GETBULK responses in the capture, run through the interfaces
    module, give exactly the values snmpbulkwalk printed for the same requests."""
    walked = {}
    for num, payload, snmp in frames(CAPTURES[0]):
        if snmp.get("snmp.version") != "1":
            continue
        _, _, kind, vbs = decode_message(payload)
        if kind != "response":
            continue
        for o, tv in vbs:
            for t in M.BUILTIN["interfaces"].tables:
                for col in t.walked():
                    if o[:len(col)] == col:
                        walked.setdefault(col, {})[o[len(col):]] = tv
    lines = module_lines("agent", M.BUILTIN["interfaces"], {}, walked, 0, Sanitizer(),
                         Skipped())
    got = {ln.path: ln.value for ln in lines}
    sec = _cli_sections()
    text = sec["snmpbulkwalk -v2c -c public -On udp:127.0.0.1:28161 .1.3.6.1.2.1.2.2"] + "\n" + \
        sec["snmpbulkwalk -v2c -c public -On udp:127.0.0.1:28161 .1.3.6.1.2.1.31.1.1"]
    ref = {}
    for line in text.splitlines():
        oid, _, rest = line.partition(" = ")
        ref[oid] = rest
    names = {1: "lo", 2: "ifb0", 3: "ifb1", 4: "eth0"}
    n = 0
    for t in M.BUILTIN["interfaces"].tables:
        for c in t.columns:
            for idx, name in names.items():
                key = "." + ".".join(map(str, c.oid + (idx,)))
                if key not in ref:
                    continue
                typ, _, val = ref[key].partition(": ")
                path = f"snmp.agent.interfaces.{name}.{c.name}"
                if c.kind == "ifstatus":
                    admin = int(ref[key.rsplit(".", 2)[0] + f".7.{idx}"].split(": ")[1])
                    assert got[path] == (0 if int(val) == 1 or admin == 2 else 2), path
                else:
                    assert got[path] == int(val), (path, got.get(path), val)
                n += 1
    assert n == len(got) == 4 * len(M.BUILTIN["interfaces"].tables[0].columns)


def pcap_payloads(path: Path):
    """The bytes after the IP+UDP headers of each frame of a classic pcap (best effort: the
    malformed cases lie in their own length fields, which is the point)."""
    raw = path.read_bytes()
    magic = raw[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    linktype = struct.unpack(endian + "I", raw[20:24])[0]
    off = 24
    while off + 16 <= len(raw):
        _, _, incl, _ = struct.unpack(endian + "IIII", raw[off:off + 16])
        frame = raw[off + 16:off + 16 + incl]
        off += 16 + incl
        link = {1: 14, 113: 16, 0: 4, 101: 0, 228: 0}.get(linktype, 14)
        ip = frame[link:]
        if ip and ip[0] >> 4 == 6:
            yield ip[40 + 8:]
        elif ip:
            yield ip[(ip[0] & 15) * 4 + 8:]


@pytest.mark.parametrize("name", ["tcpdump_ip-snmp-leftshift-unsigned.pcap",
                                  "tcpdump_ip6-snmp-oid-unsigned.pcap",
                                  "tcpdump_snmp-heapoverflow-2.pcap"])
def test_tcpdump_malformed_cases_are_clear_errors(name):
    """tcpdump marks these [|snmp] / invalid: we raise TrapError quoting the bytes in hex."""
    payloads = list(pcap_payloads(D / name))
    assert payloads
    for p in payloads:
        with pytest.raises(TrapError) as e:
            decode_packet(p)
        assert "bytes)" in str(e.value)
        assert p[:8].hex() in str(e.value) or len(p) == 0
