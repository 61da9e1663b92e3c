"""Every field of every datagram in the real captures and vectors, checked against tshark's
independent decode of the same bytes (tests/data/sflow/*.tshark.json, TShark 4.0.17)."""
from __future__ import annotations

import ipaddress
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from sflow_testlib import CAPTURES, get, subtrees, tshark_frames  # noqa: E402

from monbus.bridges.sflow.datagram import SflowError, decode_datagram  # noqa: E402
from monbus.bridges.sflow.headers import parse_header  # noqa: E402


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _mac(v):
    return ":".join(f"{b:02x}" for b in v)


# tshark record title -> (monbus record name, {tshark field: monbus field or function})
_GENERIC = {
    "sflow_245.ifindex": "index", "sflow_245.iftype": "type", "sflow_245.ifspeed": "speed",
    "sflow_245.ifdirection": "direction",
    "sflow_245.ifadmin_status": lambda r: r["status"] & 1,
    "sflow_245.ifoper_status": lambda r: (r["status"] >> 1) & 1,
    "sflow_245.ifinoct": "in_octets", "sflow_245.ifinpkt": "in_ucast_pkts",
    "sflow_245.ifinmcast": "in_multicast_pkts", "sflow_245.ifinbcast": "in_broadcast_pkts",
    "sflow_245.ifindisc": "in_discards", "sflow_245.ifinerr": "in_errors",
    "sflow_245.ifinunk": "in_unknown_protos", "sflow_245.ifoutoct": "out_octets",
    "sflow_245.ifoutpkt": "out_ucast_pkts", "sflow_245.ifoutmcast": "out_multicast_pkts",
    "sflow_245.ifoutbcast": "out_broadcast_pkts", "sflow_245.ifoutdisc": "out_discards",
    "sflow_245.ifouterr": "out_errors", "sflow_245.ifpromisc": "promiscuous_mode",
}
_DOT3 = ["AlignmentErrors", "FCSErrors", "SingleCollisionFrames", "MultipleCollisionFrames",
         "SQETestErrors", "DeferredTransmissions", "LateCollisions", "ExcessiveCollisions",
         "InternalMacTransmitErrors", "CarrierSenseErrors", "FrameTooLongs",
         "InternalMacReceiveErrors", "SymbolErrors"]
_ETH = {f"sflow_245.dot3Stats{n}": n for n in _DOT3}
_ETH_NAMES = {"AlignmentErrors": "alignment_errors", "FCSErrors": "fcs_errors",
              "SQETestErrors": "sqe_test_errors"}
_ETH = {k: _ETH_NAMES.get(v, _snake(v)) for k, v in _ETH.items()}
_VG = ["InHighPriorityFrames", "InHighPriorityOctets", "InNormPriorityFrames",
       "InNormPriorityOctets", "InIPMErrors", "InOversizeFrameErrors", "InDataErrors",
       "InNullAddressedFrames", "OutHighPriorityFrames", "OutHighPriorityOctets",
       "TransitionIntoTrainings", "HCInHighPriorityOctets", "HCInNormPriorityOctets",
       "HCOutHighPriorityOctets"]
_VG_MAP = {f"sflow_245.dot12{n}": _snake(n).replace("i_p_m", "ipm").replace("h_c", "hc")
           for n in _VG}
_LAG_STATE = ("actor_admin_state", "actor_oper_state", "partner_admin_state",
              "partner_oper_state")

COUNTERS = {
    "Generic interface counters": ("if", _GENERIC),
    "Ethernet interface counters": ("eth", _ETH),
    "100 Base VG interface counters": ("vg", _VG_MAP),
    "VLAN counters": ("vlan", {
        "sflow_245.vlan_id": "vlan_id", "sflow_245.octets": "octets",
        "sflow_245.ucastPkts": "ucast_pkts", "sflow_245.multicastPkts": "multicast_pkts",
        "sflow_245.broadcastPkts": "broadcast_pkts", "sflow_245.discards": "discards"}),
    "Processor information": ("processor", {
        "sflow_5.cpu_5s": "cpu_5s", "sflow_5.cpu_1m": "cpu_1m", "sflow_5.cpu_5m": "cpu_5m",
        "sflow_5.total_memory": "total_memory", "sflow_5.free_memory": "free_memory"}),
    "LAG counters": ("lag", {
        "sflow.lag_port.actor_system_id": lambda r: _mac(r["actor_system_id"]),
        "sflow.lag_port.partner_oper_system_id": lambda r: _mac(r["partner_system_id"]),
        "sflow.lag_port.attached_agg_id": "attached_agg_id",
        "sflow.lag_port.state": lambda r: "0x" + bytes(r["port_state"]).hex(),
        "sflow.lag_port.lacpdus.rx": "lacpdus_rx", "sflow.lag_port.marker_pdus.rx":
        "marker_pdus_rx", "sflow.lag_port.marker_response_pdus.rx": "marker_response_pdus_rx",
        "sflow.lag_port.unknown.rx": "unknown_rx", "sflow.lag_port.illegal.rx": "illegal_rx",
        "sflow.lag_port.lacpdus.tx": "lacpdus_tx", "sflow.lag_port.marker_pdus.tx":
        "marker_pdus_tx", "sflow.lag_port.marker_response_pdus.tx": "marker_response_pdus_tx"}),
}

FLOWS = {
    "Raw packet header": ("sampled_header", {
        "sflow_245.header_protocol": "protocol", "sflow_245.header.frame_length": "frame_length",
        "sflow_245.header.payload_stripped": "stripped",
        "sflow_245.header.sampled_header_length": "header_length"}),
    "Ethernet frame data": ("sampled_ethernet", {
        "sflow_245.ethernet.length": "length",
        "sflow_245.ethernet.source_mac_address": lambda r: _mac(r["src_mac"]),
        "sflow_245.ethernet.destination_mac_address": lambda r: _mac(r["dst_mac"]),
        "sflow_245.ethernet.packet_type": "type"}),
    "Extended switch data": ("extended_switch", {
        "sflow_245.vlan.in": "src_vlan", "sflow_245.pri.in": "src_priority",
        "sflow_245.vlan.out": "dst_vlan", "sflow_245.pri.out": "dst_priority"}),
    "Extended router data": ("extended_router", {
        "sflow_245.nexthop": "next_hop", "sflow_245.nexthop.v6": "next_hop",
        "sflow_245.nexthop.src_mask": "src_mask_len",
        "sflow_245.nexthop.dst_mask": "dst_mask_len"}),
    "Extended gateway data": ("extended_gateway", {
        "sflow_245.nexthop": "next_hop", "sflow_245.as": "as", "sflow_245.srcAS": "src_as",
        "sflow_245.peerAS": "src_peer_as", "sflow_245.localpref": lambda r: r["localpref"],
        "sflow_245.communityEntries": lambda r: len(r["communities"])}),
    "Extended user data": ("extended_user", {
        "sflow_5.extended_user.source_character_set": "src_charset",
        "sflow_5.extended_user.source_user": "src_user",
        "sflow_5.extended_user.destination_character_set": "dst_charset",
        "sflow_5.extended_user.destination_user": "dst_user"}),
    "Extended URL data": ("extended_url", {
        "sflow_5.extended_url.direction": "direction", "sflow_5.extended_url.url": "url",
        "sflow_5.extended_url.host": "host"}),
}


def _record_view(rec) -> dict:
    rf, values, extra = rec
    d = {f.name: v for f, v in zip(rf.fields, values)}
    if extra:
        d.update(extra)
    return d


def _same(expected: str, got) -> bool:
    if isinstance(got, (bytes, bytearray)):
        return False
    if isinstance(got, int):
        return int(expected, 0) == got
    return str(got) == expected


def _check_record(title, tree, rec, where):
    name, mapping = (COUNTERS.get(title) or FLOWS.get(title))
    assert rec[0] is not None and rec[0].name == name, f"{where}: {title} vs {rec[0]}"
    view = _record_view(rec)
    checked = 0
    for key, value in tree:
        if key not in mapping or isinstance(value, list):
            continue
        m = mapping[key]
        got = m(view) if callable(m) else view[m]
        assert _same(value, got), f"{where} {title} {key}: tshark {value!r}, monbus {got!r}"
        checked += 1
    return checked


def _sample_checks(tree, s, where):
    st = int(get(tree, "sflow_245.sampletype"))
    kind = {1: "flow", 3: "flow", 2: "counters", 4: "counters"}[st]
    assert s.kind == kind and s.expanded == (st in (3, 4)), where
    if kind == "counters":
        assert s.sequence == int(get(tree, "sflow.counters_sample.sequence_number"))
        assert s.ds_class == int(get(tree, "sflow.counters_sample.source_id_type"))
        assert s.ds_index == int(get(tree, "sflow.counters_sample.source_id_index"))
    else:
        assert s.sequence == int(get(tree, "sflow.flow_sample.sequence_number"))
        assert s.sampling_rate == int(get(tree, "sflow.flow_sample.sampling_rate"))
        assert s.sample_pool == int(get(tree, "sflow.flow_sample.sample_pool"))
        assert s.drops == int(get(tree, "sflow.flow_sample.dropped_packets"))
        if st == 1:
            assert s.ds_class == int(get(tree, "sflow.flow_sample.source_id_class"))
            assert s.ds_index == int(get(tree, "sflow.flow_sample.index"))
            raw_in = int(get(tree, "sflow.flow_sample.input_interface"))
            assert (s.input_format << 30) | s.input == raw_in, where
            out_tree = get(tree, "sflow.flow_sample.output_interface_tree")
            assert s.output_format == int(get(out_tree, "sflow.flow_sample.output_interface_format"))
            assert s.output == int(get(out_tree, "sflow.flow_sample.output_interface_value"))
        else:
            assert s.ds_class == int(get(tree, "sflow.flow_sample.source_id_type"))
            assert s.ds_index == int(get(tree, "sflow.flow_sample.source_id_index"))
            assert s.input_format == int(get(tree, "sflow.flow_sample.input_interface_format"))
            assert s.input == int(get(tree, "sflow.flow_sample.input_interface_value"))
            assert s.output == int(get(tree, "sflow.flow_sample.output_interface_value"))


def _find_sample(unused, tree, st):
    if st in (2, 4):
        seq = int(get(tree, "sflow.counters_sample.sequence_number"))
        idx = int(get(tree, "sflow.counters_sample.source_id_index"))
        kind = "counters"
    else:
        seq = int(get(tree, "sflow.flow_sample.sequence_number"))
        idx = int(get(tree, "sflow.flow_sample.index" if st == 1
                      else "sflow.flow_sample.source_id_index"))
        kind = "flow"
    for s in unused:
        if s.kind == kind and s.sequence == seq and s.ds_index == idx:
            return s
    return None


def _check_header_tree(rec, tree, where):
    """The sampled header as tshark dissected it: ethertype, VLANs, IPs, protocol, ports."""
    header_tree = get(tree, "sflow_245.header_tree")
    if not header_tree:
        return 0
    rf, values, extra = rec
    info = parse_header(values[0], extra["header"])
    checks = 0
    eth = get(header_tree, "eth")
    vlans = [get(v, "vlan.id") for k, v in header_tree if k == "vlan"]
    if vlans:
        assert [int(v) for v in vlans] == list(info.vlans[:len(vlans)]), where
        checks += 1
    ip = get(header_tree, "ip")
    if ip and get(ip, "ip.src"):
        assert str(ipaddress.ip_address(info.src)) == get(ip, "ip.src"), where
        assert str(ipaddress.ip_address(info.dst)) == get(ip, "ip.dst"), where
        assert info.protocol == int(get(ip, "ip.proto")), where
        checks += 3
    ip6 = get(header_tree, "ipv6")
    if ip6 and get(ip6, "ipv6.src"):
        assert str(ipaddress.ip_address(info.src)) == get(ip6, "ipv6.src"), where
        checks += 1
    for l4 in ("tcp", "udp"):
        t = get(header_tree, l4)
        if t and get(t, f"{l4}.srcport") and info.src_port is not None:
            assert info.src_port == int(get(t, f"{l4}.srcport")), where
            assert info.dst_port == int(get(t, f"{l4}.dstport")), where
            checks += 2
    if eth and get(eth, "eth.type") and not vlans:
        assert info.ethertype == int(get(eth, "eth.type"), 16), where
        checks += 1
    return checks


@pytest.mark.parametrize("capture", CAPTURES)
def test_every_field_matches_tshark(capture):
    frames = tshark_frames(capture)
    assert frames
    checked = 0
    for num, payload, sflow, layers in frames:
        where = f"{capture} frame {num}"
        if sflow is None:
            # tshark did not see sFlow (NetFlow sent to 6343): we must refuse it too
            with pytest.raises(SflowError):
                decode_datagram(payload)
            continue
        udp_len = int(get(get(layers, "udp"), "udp.length"))
        if udp_len - 8 < len(payload):
            # tcpdump_sflow_print-segv: the UDP length field says 8 bytes of payload; tshark
            # and tcpdump ("[length 8 < 28] (invalid)") stop there, and so must we ...
            with pytest.raises(SflowError) as err:
                decode_datagram(payload[:udp_len - 8])
            assert err.value.reason == "too_short"
            assert get(sflow, "sflow_245.agent") is None
            # ... and the whole frame (a fuzzed datagram) gives problems, not a crash
            dg = decode_datagram(payload)
            assert dg.problems
            checked += 1
            continue
        try:
            dg = decode_datagram(payload)
        except SflowError as e:
            # only a header tshark could not read either may be refused
            assert get(sflow, "sflow_245.numsamples") in (None, "0") or "_ws.malformed" in dict(
                layers), f"{where}: {e}"
            assert e.reason in ("too_short", "bad_header", "not_sflow5")
            continue
        agent = get(sflow, "sflow_245.agent") or get(sflow, "sflow_245.agent.v6")
        assert dg.agent == agent, where
        assert dg.sub_agent == int(get(sflow, "sflow_245.sub_agent_id"))
        assert dg.sequence == int(get(sflow, "sflow_245.sequence_number"))
        assert dg.uptime == int(get(sflow, "sflow_245.sysuptime"))
        assert dg.declared_samples == int(get(sflow, "sflow_245.numsamples"))
        samples = [(t, v) for t, v in subtrees(sflow) if get(v, "sflow_245.sampletype")]
        tshark_malformed = any(k == "_ws.malformed" for k, _ in layers)
        unused = list(dg.samples)
        for title, tree in samples:
            st = int(get(tree, "sflow_245.sampletype"))
            if st == 5 or title.startswith("Unknown"):
                # tshark 4.0 does not decode discarded-packet samples
                assert any(s.kind == "discard" for s in unused), where
                continue
            s = _find_sample(unused, tree, st)
            if s is None:
                assert dg.problems, f"{where}: sample {title} missing without a problem"
                continue
            unused.remove(s)
            _sample_checks(tree, s, f"{where} {title}")
            by_tag = {}
            tshark_lost = False
            for rec in s.records:
                tag = rec[0].tag if rec[0] is not None else rec[1]
                by_tag.setdefault(tag, []).append(rec)
            for rtitle, rtree in subtrees(tree):
                fmt = (get(rtree, "sflow_245.counters_record_format")
                       or get(rtree, "sflow_245.flow_record_format"))
                if fmt is None:
                    continue
                if int(get(rtree, "sflow_5.flow_data_length") or 0) > \
                        int(get(tree, "sflow_5.sample_length")):
                    # tshark 4.0 mis-reads port_name (1005) and then decodes the bytes after
                    # it as a record of impossible length; Telegraf's decode of the same vector
                    # agrees with ours (test_sflow_telegraf)
                    tshark_lost = True
                    continue
                tag = (int(get(rtree, "sflow.enterprise") or 0) << 12) | int(fmt)
                lst = by_tag.get(tag)
                if not lst:
                    # tshark 4.0 mis-walks host_adapters (2001) and flags the frame malformed;
                    # what it "finds" after that is not in the datagram (tcpdump agrees
                    # with us: see test_sflow_tcpdump)
                    assert dg.problems or tshark_malformed, \
                        f"{where}: record {rtitle} missing without a problem"
                    continue
                rec = lst.pop(0)
                if rec[0] is None:
                    continue
                if rtitle in COUNTERS or rtitle in FLOWS:
                    checked += _check_record(rtitle, rtree, rec, f"{where} {title}")
                if rtitle == "Raw packet header":
                    checked += _check_header_tree(rec, rtree, f"{where} {title}")
            left = [r for v in by_tag.values() for r in v if r[0] is not None]
            if tshark_malformed or tshark_lost:
                continue
            # records tshark 4.0 cannot decode show up as "Unknown" subtrees without a format
            assert all(r[0].name not in {n for n, _ in list(COUNTERS.values())
                                         + list(FLOWS.values())} for r in left), where
    assert checked > 0


def test_counts_match_the_corpus_summary():
    """Totals from SUMMARIES.md (an independent walker) for the 30-PDU capture."""
    counts = {}
    not_sflow = 0
    for _, payload, _, _ in tshark_frames("tcpdump_sflow_multiple_counter_30_pdus.pcap"):
        try:
            dg = decode_datagram(payload)
        except SflowError as e:
            assert e.reason == "not_sflow5"
            not_sflow += 1
            continue
        for s in dg.samples:
            key = f"{s.kind}{'_expanded' if s.expanded else ''}"
            counts[key] = counts.get(key, 0) + 1
            for rf, _, _ in s.records:
                counts[rf.name] = counts.get(rf.name, 0) + 1
    assert not_sflow == 5
    assert counts["counters_expanded"] == 142 and counts["counters"] == 2
    assert counts["if"] == 142 and counts["eth"] == 142
    for name in ("host_descr", "adapters", "cpu", "mem", "disk", "net"):
        assert counts[name] == 2, name
