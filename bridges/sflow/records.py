"""The registry of sFlow v5 record formats: one table, one entry per (enterprise, format).

Every counter record and flow record monbus knows is declared here, in a small text table of
fields (name, wire type, what kind of metric it is, unit).  `compile` turns each table into a
list of decoding steps once, at import; `decode_record` runs them.  Adding a structure is one
`_counter(...)` or `_flow(...)` call with its table.

Wire types (XDR, RFC 4506; all big-endian, everything padded to 4 bytes):
    u32 i32 u64 f32      unsigned/signed 32-bit, unsigned 64-bit, IEEE float
    pct                  sFlow `percentage`: i32 in hundredths of a percent, -1 = unknown
    mac                  6-byte MAC address padded to 8 bytes (sFlow's `mac`)
    ip4 ip6 uuid         4, 16, 16 opaque bytes
    state4               4 bytes of LACP port state (one byte each, not byte-swapped)
    str                  XDR string: u32 length, bytes, padding to 4
    addr                 sFlow `address`: u32 type (1 = IPv4, 2 = IPv6) then 4 or 16 bytes
    custom               the rest of the record is read by the entry's `parse` function

Kinds (what the metrics layer does with the value):
    counter  monotonically increasing (mtype=counter)     gauge  a level (mtype=gauge)
    label    identifies or describes (not a metric)       skip   decoded but not published

"Unknown" values: sFlow sends 2**32-1 (2**64-1 for 64-bit) for a counter the agent does not
have, and -1 for an unknown percentage (sFlow v5 spec, "counter_data"); `is_unknown` tells.

Sources of the layouts: sflow.org sFlow v5 (sflow_version_5.txt), the host (sflow_host.txt),
host-sflow virtual/JVM/HTTP/memcache/application, LAG, SFP/optical, 802.11, OpenFlow and
NVML structure specifications; field orders cross-checked against tshark and sflowtool.
"""
from __future__ import annotations

import ipaddress
import struct
from typing import Callable, NamedTuple

__all__ = ["RecordFormat", "Field", "RecordError", "COUNTER_FORMATS", "FLOW_FORMATS",
           "decode_record", "is_unknown", "tag_name", "read_string", "read_address"]

U32_MAX = 0xFFFFFFFF
U64_MAX = 0xFFFFFFFFFFFFFFFF
MAX_STRING = 4096  # no sFlow string is longer (the longest, url, is <= 255 by spec)


class RecordError(ValueError):
    """A record whose bytes do not fit its format; the message says where and why."""


class Field(NamedTuple):
    """One field of a record format."""
    name: str
    wire: str
    kind: str
    unit: str | None


class RecordFormat:
    """One record structure: where it lives (tag), what it is called, how to read it."""
    __slots__ = ("tag", "enterprise", "format", "name", "title", "fields", "steps",
                 "fixed", "min_size", "variants", "parse", "numeric", "fast", "fast_custom")

    def __init__(self, enterprise: int, fmt: int, name: str, title: str, fields: list[Field],
                 parse: Callable | None = None, optional_from: str | None = None):
        self.enterprise = enterprise
        self.format = fmt
        self.tag = (enterprise << 12) | fmt
        self.name = name
        self.title = title
        self.fields = tuple(fields)
        self.parse = parse
        self.steps = _compile(self.fields)
        # a format made only of fixed-size fields is read with one struct call
        self.fixed = self.steps[0][1] if len(self.steps) == 1 and self.steps[0][0] == "fixed" \
            else None
        self.min_size = self.fixed.size if self.fixed else 0
        # Some structures grew at their end (host_cpu got steal/guest/guest_nice in 2014,
        # jvm_statistics got fds_open/fds_max): an agent may send the older, shorter form.
        self.variants = None
        if optional_from and self.fixed:
            cut = [f.name for f in self.fields].index(optional_from)
            short = struct.Struct(">" + "".join(_WIRE[f.wire][0] for f in self.fields[:cut]))
            self.variants = ((self.fixed.size, self.fixed, len(self.fields)),
                             (short.size, short, cut))
            self.min_size = short.size
        # the decoder's hot path: one bound struct call for a plain fixed-size record
        self.fast = self.fixed.unpack_from if self.fixed and not self.variants else None
        # and for a fixed prefix followed by a custom tail (sampled_header, sfp, ...)
        self.fast_custom = None
        if (len(self.steps) == 2 and self.steps[0][0] == "fixed"
                and self.steps[1][0] == "custom"):
            head = self.steps[0][1]
            self.min_size = head.size
            self.fast_custom = _prefix_then_custom(head.unpack_from, head.size, parse)
        # indices of the fields published as metrics, with their kinds and units
        self.numeric = tuple((i, f) for i, f in enumerate(self.fields)
                             if f.kind in ("counter", "gauge"))

    def __repr__(self):
        return f"<sFlow record {self.enterprise}:{self.format} {self.name}>"


def _prefix_then_custom(unpack, size, parse):
    def fast(data, off, end):
        v, extra = parse(data, off + size, end, None)
        return unpack(data, off) + (v,), extra
    return fast


# wire type -> (struct code, size)
_WIRE = {
    "u32": ("I", 4), "i32": ("i", 4), "u64": ("Q", 8), "f32": ("f", 4), "pct": ("i", 4),
    "mac": ("6s2x", 8), "ip4": ("4s", 4), "ip6": ("16s", 16), "uuid": ("16s", 16),
    "state4": ("4s", 4),
}
_VARIABLE = ("str", "addr", "custom")
_KINDS = ("counter", "gauge", "label", "skip")


def _compile(fields) -> list:
    """Group runs of fixed-size fields into one struct each; strings/addresses are steps."""
    steps, run = [], []
    for f in fields:
        if f.wire in _VARIABLE:
            if run:
                steps.append(("fixed", struct.Struct(">" + "".join(run)), len(run)))
                run = []
            steps.append((f.wire, None, 1))
        else:
            run.append(_WIRE[f.wire][0])
    if run:
        steps.append(("fixed", struct.Struct(">" + "".join(run)), len(run)))
    return steps


def _table(text: str) -> list[Field]:
    """Parse a field table: `name wire kind [unit]` per line."""
    out = []
    for raw in text.strip().splitlines():
        parts = raw.split()
        if not parts or parts[0].startswith("#"):
            continue
        name, wire, kind = parts[:3]
        unit = parts[3] if len(parts) > 3 else None
        if wire not in _WIRE and wire not in _VARIABLE:
            raise ValueError(f"unknown wire type {wire!r} for field {name}")
        if kind not in _KINDS:
            raise ValueError(f"unknown kind {kind!r} for field {name}")
        out.append(Field(name, wire, kind, unit))
    return out


COUNTER_FORMATS: dict[int, RecordFormat] = {}
FLOW_FORMATS: dict[int, RecordFormat] = {}


def _counter(enterprise, fmt, name, title, table, parse=None, optional_from=None):
    rf = RecordFormat(enterprise, fmt, name, title, _table(table), parse, optional_from)
    assert rf.tag not in COUNTER_FORMATS, rf
    COUNTER_FORMATS[rf.tag] = rf
    return rf


def _flow(enterprise, fmt, name, title, table, parse=None):
    rf = RecordFormat(enterprise, fmt, name, title, _table(table), parse)
    assert rf.tag not in FLOW_FORMATS, rf
    FLOW_FORMATS[rf.tag] = rf
    return rf


def tag_name(tag: int) -> str:
    """'enterprise:format' of a record or sample tag."""
    return f"{tag >> 12}:{tag & 0xFFF}"


def is_unknown(wire: str, value) -> bool:
    """True for sFlow's 'value not available' markers (all ones; -1 for percentages)."""
    if wire == "u32":
        return value == U32_MAX
    if wire == "u64":
        return value == U64_MAX
    if wire == "pct":
        return value < 0
    return False


# --- variable-length pieces ----------------------------------------------------------------
_U32 = struct.Struct(">I")


def read_string(data, off: int, end: int, notes: list | None = None) -> tuple[str, int]:
    """An XDR string at `off`; returns (text, next offset).

    Quirk seen in the wild (goflow2 test vector, extended_function): the string is the last
    thing in the record and is not padded to 4 bytes.  The record length is then not a
    multiple of 4; we accept it (clipping the padding at `end`) and add a note."""
    if off + 4 > end:
        raise RecordError(f"string length past the end of the record at offset {off}")
    n = _U32.unpack_from(data, off)[0]
    off += 4
    if n > end - off or n > MAX_STRING:
        raise RecordError(f"string of length {n} past the end of the record "
                          f"({end - off} bytes left)")
    text = bytes(data[off:off + n]).decode("utf-8", "replace")
    nxt = off + ((n + 3) & ~3)
    if nxt > end:
        if notes is not None:
            notes.append("string not padded to 4 bytes")
        nxt = end
    return text, nxt


def read_address(data, off: int, end: int) -> tuple[str, int]:
    """An sFlow `address` (type, then 4 or 16 bytes); returns (text, next offset)."""
    if off + 4 > end:
        raise RecordError(f"address type past the end of the record at offset {off}")
    t = _U32.unpack_from(data, off)[0]
    off += 4
    if t == 1:
        if off + 4 > end:
            raise RecordError("IPv4 address past the end of the record")
        return str(ipaddress.IPv4Address(bytes(data[off:off + 4]))), off + 4
    if t == 2:
        if off + 16 > end:
            raise RecordError("IPv6 address past the end of the record")
        return str(ipaddress.IPv6Address(bytes(data[off:off + 16]))), off + 16
    if t == 0:
        return "", off  # UNKNOWN address type: no bytes follow
    raise RecordError(f"unknown address type {t}")


def _u32_array(data, off, end, what, limit=4096) -> tuple[list[int], int]:
    if off + 4 > end:
        raise RecordError(f"{what} count past the end of the record")
    n = _U32.unpack_from(data, off)[0]
    off += 4
    if n > limit or off + 4 * n > end:
        raise RecordError(f"{what} of {n} entries past the end of the record")
    return list(struct.unpack_from(f">{n}I", data, off)), off + 4 * n


def decode_record(rf: RecordFormat, data, off: int, end: int):
    """Decode one record body data[off:end] by its format.

    Returns (values tuple aligned with rf.fields, extra dict or None, notes list or None).
    Raises RecordError if the body is too short for the format (extra bytes at the end are
    allowed: sFlow structures may be extended at their end)."""
    fixed = rf.fixed
    length = end - off
    if fixed is not None:
        if rf.variants is None:
            if length < fixed.size:
                raise RecordError(f"{rf.name} ({tag_name(rf.tag)}) needs {fixed.size} bytes, "
                                  f"record has {length}")
            return fixed.unpack_from(data, off), None, None
        for size, st, n in rf.variants:
            if length >= size:
                vals = st.unpack_from(data, off)
                if n < len(rf.fields):
                    vals = vals + (None,) * (len(rf.fields) - n)
                return vals, None, None
        raise RecordError(f"{rf.name} ({tag_name(rf.tag)}) needs at least {rf.min_size} bytes, "
                          f"record has {length}")
    values: list = []
    notes: list = []
    extra = None
    for kind, st, _ in rf.steps:
        if kind == "fixed":
            if off + st.size > end:
                raise RecordError(f"{rf.name} ({tag_name(rf.tag)}) truncated: needs {st.size} "
                                  f"more bytes at offset {off}, record ends at {end}")
            values.extend(st.unpack_from(data, off))
            off += st.size
        elif kind == "str":
            s, off = read_string(data, off, end, notes)
            values.append(s)
        elif kind == "addr":
            a, off = read_address(data, off, end)
            values.append(a)
        else:  # custom: the entry's parser reads the rest
            v, extra = rf.parse(data, off, end, notes)
            values.append(v)
            off = end
    return tuple(values), extra, (notes or None)


# --- custom parsers ----------------------------------------------------------------------
def _mac(b) -> str:
    return ":".join(f"{x:02x}" for x in bytes(b))


def _parse_adapters(data, off, end, notes):
    """host_adapters (0:2001): adapters<> of {ifIndex, mac_address<>}."""
    if off + 4 > end:
        raise RecordError("adapter count past the end of the record")
    n = _U32.unpack_from(data, off)[0]
    off += 4
    if n > 1024:
        raise RecordError(f"implausible adapter count {n}")
    adapters = []
    for _ in range(n):
        if off + 8 > end:
            raise RecordError("adapter entry past the end of the record")
        ifindex, nmacs = struct.unpack_from(">II", data, off)
        off += 8
        if nmacs > 256 or off + 8 * nmacs > end:
            raise RecordError(f"adapter with {nmacs} MACs past the end of the record")
        macs = [_mac(data[off + 8 * i:off + 8 * i + 6]) for i in range(nmacs)]
        off += 8 * nmacs
        adapters.append((ifindex, macs))
    return n, {"adapters": adapters}


_SFP_LANE = struct.Struct(">10I")
SFP_LANE_FIELDS = _table("""
    index            u32 label
    tx_bias_current  u32 gauge uA
    tx_power         u32 gauge uW
    tx_power_min     u32 gauge uW
    tx_power_max     u32 gauge uW
    tx_wavelength    u32 gauge nm
    rx_power         u32 gauge uW
    rx_power_min     u32 gauge uW
    rx_power_max     u32 gauge uW
    rx_wavelength    u32 gauge nm
""")


def _parse_sfp_lanes(data, off, end, notes):
    """sfp (0:10) lanes<>: one 40-byte entry per optical lane."""
    if off + 4 > end:
        raise RecordError("SFP lane count past the end of the record")
    n = _U32.unpack_from(data, off)[0]
    off += 4
    if n > 64 or off + _SFP_LANE.size * n > end:
        raise RecordError(f"SFP record with {n} lanes past the end of the record")
    lanes = [_SFP_LANE.unpack_from(data, off + _SFP_LANE.size * i) for i in range(n)]
    return n, {"lanes": lanes}


def _parse_gateway(data, off, end, notes):
    """extended_gateway (0:1003) after src_peer_as: dst_as_path<> of segments,
    communities<>, localpref."""
    if off + 4 > end:
        raise RecordError("AS path segment count past the end of the record")
    nseg = _U32.unpack_from(data, off)[0]
    off += 4
    if nseg > 256:
        raise RecordError(f"implausible AS path segment count {nseg}")
    path = []
    for _ in range(nseg):
        if off + 4 > end:
            raise RecordError("AS path segment past the end of the record")
        seg_type = _U32.unpack_from(data, off)[0]
        asns, off = _u32_array(data, off + 4, end, "AS path segment")
        path.append((seg_type, asns))
    communities, off = _u32_array(data, off, end, "communities")
    if off + 4 > end:
        raise RecordError("localpref past the end of the record")
    localpref = _U32.unpack_from(data, off)[0]
    flat = [a for _, seg in path for a in seg]
    return nseg, {"as_path": path, "dst_as": flat[-1] if flat else 0,
                  "dst_peer_as": flat[0] if flat else 0,
                  "communities": communities, "localpref": localpref}


def _parse_u32_stack(what):
    def parse(data, off, end, notes):
        stack, _ = _u32_array(data, off, end, what)
        return len(stack), {what: stack}
    parse.__doc__ = f"a u32 array ({what})"
    return parse


def _parse_header(data, off, end, notes):
    """sampled_header (0:1) body after header_protocol/frame_length/stripped: opaque<>."""
    if off + 4 > end:
        raise RecordError("sampled header length past the end of the record")
    n = _U32.unpack_from(data, off)[0]
    if n > end - off - 4:
        raise RecordError(f"sampled header of {n} bytes past the end of the record "
                          f"({end - off - 4} bytes left)")
    return n, {"header": bytes(data[off + 4:off + 4 + n])}


# =========================================================================================
# Counter records (sample type 2 / 4).  Names: short, lower case; they become path parts.
# =========================================================================================
GENERIC = _counter(0, 1, "if", "generic interface counters (sFlow v5)", """
    index               u32 label
    type                u32 gauge
    speed               u64 gauge   bit/s
    direction           u32 gauge
    status              u32 label
    in_octets           u64 counter bytes
    in_ucast_pkts       u32 counter packets
    in_multicast_pkts   u32 counter packets
    in_broadcast_pkts   u32 counter packets
    in_discards         u32 counter packets
    in_errors           u32 counter packets
    in_unknown_protos   u32 counter packets
    out_octets          u64 counter bytes
    out_ucast_pkts      u32 counter packets
    out_multicast_pkts  u32 counter packets
    out_broadcast_pkts  u32 counter packets
    out_discards        u32 counter packets
    out_errors          u32 counter packets
    promiscuous_mode    u32 gauge
""")

_counter(0, 2, "eth", "ethernet interface counters (dot3Stats, RFC 2358)", """
    alignment_errors            u32 counter frames
    fcs_errors                  u32 counter frames
    single_collision_frames     u32 counter frames
    multiple_collision_frames   u32 counter frames
    sqe_test_errors             u32 counter
    deferred_transmissions      u32 counter frames
    late_collisions             u32 counter
    excessive_collisions        u32 counter frames
    internal_mac_transmit_errors u32 counter frames
    carrier_sense_errors        u32 counter
    frame_too_longs             u32 counter frames
    internal_mac_receive_errors u32 counter frames
    symbol_errors               u32 counter
""")

_counter(0, 3, "tokenring", "token ring counters (dot5Stats, RFC 1748)", """
    line_errors          u32 counter
    burst_errors         u32 counter
    ac_errors            u32 counter
    abort_trans_errors   u32 counter
    internal_errors      u32 counter
    lost_frame_errors    u32 counter
    receive_congestions  u32 counter
    frame_copied_errors  u32 counter
    token_errors         u32 counter
    soft_errors          u32 counter
    hard_errors          u32 counter
    signal_loss          u32 counter
    transmit_beacons     u32 counter
    recoverys            u32 counter
    lobe_wires           u32 counter
    removes              u32 counter
    singles              u32 counter
    freq_errors          u32 counter
""")

_counter(0, 4, "vg", "100BaseVG interface counters (dot12, RFC 2020)", """
    in_high_priority_frames       u32 counter frames
    in_high_priority_octets       u64 counter bytes
    in_norm_priority_frames       u32 counter frames
    in_norm_priority_octets       u64 counter bytes
    in_ipm_errors                 u32 counter frames
    in_oversize_frame_errors      u32 counter frames
    in_data_errors                u32 counter frames
    in_null_addressed_frames      u32 counter frames
    out_high_priority_frames      u32 counter frames
    out_high_priority_octets      u64 counter bytes
    transition_into_trainings     u32 counter
    hc_in_high_priority_octets    u64 counter bytes
    hc_in_norm_priority_octets    u64 counter bytes
    hc_out_high_priority_octets   u64 counter bytes
""")

_counter(0, 5, "vlan", "VLAN counters", """
    vlan_id         u32 label
    octets          u64 counter bytes
    ucast_pkts      u32 counter packets
    multicast_pkts  u32 counter packets
    broadcast_pkts  u32 counter packets
    discards        u32 counter packets
""")

_counter(0, 6, "wifi", "IEEE 802.11 counters (dot11, sFlow 802.11 structures)", """
    transmitted_fragment_count         u32 counter
    multicast_transmitted_frame_count  u32 counter frames
    failed_count                       u32 counter
    retry_count                        u32 counter
    multiple_retry_count               u32 counter
    frame_duplicate_count              u32 counter frames
    rts_success_count                  u32 counter
    rts_failure_count                  u32 counter
    ack_failure_count                  u32 counter
    received_fragment_count            u32 counter
    multicast_received_frame_count     u32 counter frames
    fcs_error_count                    u32 counter
    transmitted_frame_count            u32 counter frames
    wep_undecryptable_count            u32 counter
    qos_discarded_fragment_count       u32 counter
    associated_station_count           u32 gauge
    qos_cf_polls_received_count        u32 counter
    qos_cf_polls_unused_count          u32 counter
    qos_cf_polls_unusable_count        u32 counter
    qos_cf_polls_lost_count            u32 counter
""")

_counter(0, 7, "lag", "LAG port statistics (IEEE 802.3ad, sFlow LAG structures)", """
    actor_system_id          mac    label
    partner_system_id        mac    label
    attached_agg_id          u32    gauge
    port_state               state4 label
    lacpdus_rx               u32 counter
    marker_pdus_rx           u32 counter
    marker_response_pdus_rx  u32 counter
    unknown_rx               u32 counter
    illegal_rx               u32 counter
    lacpdus_tx               u32 counter
    marker_pdus_tx           u32 counter
    marker_response_pdus_tx  u32 counter
""")

_counter(0, 10, "sfp", "optical SFP/QSFP module (sFlow optical interface structures)", """
    module_id            u32 label
    module_total_lanes   u32 gauge
    module_supply_voltage u32 gauge mV
    module_temperature   i32 gauge  mC
    lanes                custom skip
""", parse=_parse_sfp_lanes)

_counter(0, 11, "pfc", "priority flow control counters", """
    requests         u32 counter
    indications      u32 counter
    pause_duration   u32 counter
    storm_detected   u32 counter
    storm_restored   u32 counter
""")

_counter(0, 1001, "processor", "processor information (switch CPU and memory)", """
    cpu_5s        pct gauge percent
    cpu_1m        pct gauge percent
    cpu_5m        pct gauge percent
    total_memory  u64 gauge bytes
    free_memory   u64 gauge bytes
""")

_counter(0, 1002, "radio", "802.11 radio utilization", """
    elapsed_time          u32 counter ms
    on_channel_time       u32 counter ms
    on_channel_busy_time  u32 counter ms
""")

OPENFLOW = _counter(0, 1004, "openflow", "OpenFlow port", """
    datapath_id  u64 label
    port_no      u32 label
""")

PORT_NAME = _counter(0, 1005, "port_name", "port name (ifName)", """
    name  str label
""")

HOST_DESCR = _counter(0, 2000, "host_descr", "host description (sFlow host structures)", """
    hostname      str   label
    uuid          uuid  label
    machine_type  u32   label
    os_name       u32   label
    os_release    str   label
""")

_counter(0, 2001, "adapters", "host adapters (interfaces and their MAC addresses)", """
    count  custom gauge
""", parse=_parse_adapters)

HOST_PARENT = _counter(0, 2002, "host_parent", "host parent (virtual machine's hypervisor)", """
    container_type   u32 label
    container_index  u32 label
""")

_counter(0, 2003, "cpu", "host CPU", """
    load_one      f32 gauge
    load_five     f32 gauge
    load_fifteen  f32 gauge
    proc_run      u32 gauge
    proc_total    u32 gauge
    cpu_num       u32 gauge
    cpu_speed     u32 gauge   MHz
    uptime        u32 gauge   s
    cpu_user      u32 counter ms
    cpu_nice      u32 counter ms
    cpu_system    u32 counter ms
    cpu_idle      u32 counter ms
    cpu_wio       u32 counter ms
    cpu_intr      u32 counter ms
    cpu_sintr     u32 counter ms
    interrupts    u32 counter
    contexts      u32 counter
    cpu_steal     u32 counter ms
    cpu_guest     u32 counter ms
    cpu_guest_nice u32 counter ms
""", optional_from="cpu_steal")

_counter(0, 2004, "mem", "host memory", """
    mem_total    u64 gauge bytes
    mem_free     u64 gauge bytes
    mem_shared   u64 gauge bytes
    mem_buffers  u64 gauge bytes
    mem_cached   u64 gauge bytes
    swap_total   u64 gauge bytes
    swap_free    u64 gauge bytes
    page_in      u32 counter pages
    page_out     u32 counter pages
    swap_in      u32 counter pages
    swap_out     u32 counter pages
""")

_counter(0, 2005, "disk", "host disk I/O", """
    disk_total      u64 gauge   bytes
    disk_free       u64 gauge   bytes
    part_max_used   pct gauge   percent
    reads           u32 counter
    bytes_read      u64 counter bytes
    read_time       u32 counter ms
    writes          u32 counter
    bytes_written   u64 counter bytes
    write_time      u32 counter ms
""")

_counter(0, 2006, "net", "host network I/O", """
    bytes_in   u64 counter bytes
    pkts_in    u32 counter packets
    errs_in    u32 counter
    drops_in   u32 counter packets
    bytes_out  u64 counter bytes
    pkts_out   u32 counter packets
    errs_out   u32 counter
    drops_out  u32 counter packets
""")

_counter(0, 2007, "ip", "host MIB-2 IP group (RFC 4293)", """
    forwarding        u32 gauge
    default_ttl       u32 gauge
    in_receives       u32 counter
    in_hdr_errors     u32 counter
    in_addr_errors    u32 counter
    forw_datagrams    u32 counter
    in_unknown_protos u32 counter
    in_discards       u32 counter
    in_delivers       u32 counter
    out_requests      u32 counter
    out_discards      u32 counter
    out_no_routes     u32 counter
    reasm_timeout     u32 gauge s
    reasm_reqds       u32 counter
    reasm_oks         u32 counter
    reasm_fails       u32 counter
    frag_oks          u32 counter
    frag_fails        u32 counter
    frag_creates      u32 counter
""")

# Quirk: the sFlow structure has no icmpInTimestampReps (MIB-2 has it); 25 fields.
_counter(0, 2008, "icmp", "host MIB-2 ICMP group (RFC 4293)", """
    in_msgs             u32 counter
    in_errors           u32 counter
    in_dest_unreachs    u32 counter
    in_time_excds       u32 counter
    in_parm_probs       u32 counter
    in_src_quenchs      u32 counter
    in_redirects        u32 counter
    in_echos            u32 counter
    in_echo_reps        u32 counter
    in_timestamps       u32 counter
    in_addr_masks       u32 counter
    in_addr_mask_reps   u32 counter
    out_msgs            u32 counter
    out_errors          u32 counter
    out_dest_unreachs   u32 counter
    out_time_excds      u32 counter
    out_parm_probs      u32 counter
    out_src_quenchs     u32 counter
    out_redirects       u32 counter
    out_echos           u32 counter
    out_echo_reps       u32 counter
    out_timestamps      u32 counter
    out_timestamp_reps  u32 counter
    out_addr_masks      u32 counter
    out_addr_mask_reps  u32 counter
""")

_counter(0, 2009, "tcp", "host MIB-2 TCP group (RFC 4022)", """
    rto_algorithm   u32 gauge
    rto_min         u32 gauge ms
    rto_max         u32 gauge ms
    max_conn        i32 gauge
    active_opens    u32 counter
    passive_opens   u32 counter
    attempt_fails   u32 counter
    estab_resets    u32 counter
    curr_estab      u32 gauge
    in_segs         u32 counter
    out_segs        u32 counter
    retrans_segs    u32 counter
    in_errs         u32 counter
    out_rsts        u32 counter
    in_csum_errors  u32 counter
""")

_counter(0, 2010, "udp", "host MIB-2 UDP group (RFC 4113)", """
    in_datagrams    u32 counter
    no_ports        u32 counter
    in_errors       u32 counter
    out_datagrams   u32 counter
    rcvbuf_errors   u32 counter
    sndbuf_errors   u32 counter
    in_csum_errors  u32 counter
""")

_counter(0, 2100, "vnode", "virtual node (hypervisor)", """
    mhz          u32 gauge MHz
    cpus         u32 gauge
    memory       u64 gauge bytes
    memory_free  u64 gauge bytes
    num_domains  u32 gauge
""")

_counter(0, 2101, "vcpu", "virtual machine CPU", """
    state     u32 gauge
    cpu_time  u32 counter ms
    nr_vcpu   u32 gauge
""")

_counter(0, 2102, "vmem", "virtual machine memory", """
    memory      u64 gauge bytes
    max_memory  u64 gauge bytes
""")

_counter(0, 2103, "vdisk", "virtual machine disk I/O", """
    capacity    u64 gauge   bytes
    allocation  u64 gauge   bytes
    available   u64 gauge   bytes
    rd_req      u32 counter
    rd_bytes    u64 counter bytes
    wr_req      u32 counter
    wr_bytes    u64 counter bytes
    errs        u32 counter
""")

_counter(0, 2104, "vnet", "virtual machine network I/O", """
    rx_bytes    u64 counter bytes
    rx_packets  u32 counter packets
    rx_errs     u32 counter
    rx_drop     u32 counter packets
    tx_bytes    u64 counter bytes
    tx_packets  u32 counter packets
    tx_errs     u32 counter
    tx_drop     u32 counter packets
""")

JVM_RUNTIME = _counter(0, 2105, "jvm_runtime", "Java virtual machine description", """
    vm_name     str label
    vm_vendor   str label
    vm_version  str label
""")

_counter(0, 2106, "jvm", "Java virtual machine statistics (JMX)", """
    heap_initial         u64 gauge bytes
    heap_used            u64 gauge bytes
    heap_committed       u64 gauge bytes
    heap_max             u64 gauge bytes
    non_heap_initial     u64 gauge bytes
    non_heap_used        u64 gauge bytes
    non_heap_committed   u64 gauge bytes
    non_heap_max         u64 gauge bytes
    gc_count             u32 counter
    gc_time              u32 counter ms
    classes_loaded       u32 gauge
    classes_total        u32 counter
    classes_unloaded     u32 counter
    compilation_time     u32 counter ms
    threads_live         u32 gauge
    threads_daemon       u32 gauge
    threads_started      u32 counter
    fds_open             u32 gauge
    fds_max              u32 gauge
""", optional_from="fds_open")

_counter(0, 2200, "memcache_v1", "memcached counters (deprecated 2200 structure)", """
    uptime                u32 gauge s
    rusage_user           u32 counter ms
    rusage_system         u32 counter ms
    curr_connections      u32 gauge
    total_connections     u32 counter
    connection_structures u32 gauge
    cmd_get               u32 counter
    cmd_set               u32 counter
    cmd_flush             u32 counter
    get_hits              u32 counter
    get_misses            u32 counter
    delete_misses         u32 counter
    delete_hits           u32 counter
    incr_misses           u32 counter
    incr_hits             u32 counter
    decr_misses           u32 counter
    decr_hits             u32 counter
    cas_misses            u32 counter
    cas_hits              u32 counter
    cas_badval            u32 counter
    auth_cmds             u32 counter
    auth_errors           u32 counter
    bytes_read            u64 counter bytes
    bytes_written         u64 counter bytes
    limit_maxbytes        u32 gauge bytes
    accepting_conns       u32 gauge
    listen_disabled_num   u32 counter
    threads               u32 gauge
    conn_yields           u32 counter
    bytes                 u64 gauge bytes
    curr_items            u32 gauge
    total_items           u32 counter
    evictions             u32 counter
""")

_counter(0, 2201, "http", "HTTP counters", """
    method_option_count   u32 counter requests
    method_get_count      u32 counter requests
    method_head_count     u32 counter requests
    method_post_count     u32 counter requests
    method_put_count      u32 counter requests
    method_delete_count   u32 counter requests
    method_trace_count    u32 counter requests
    method_connect_count  u32 counter requests
    method_other_count    u32 counter requests
    status_1xx_count      u32 counter requests
    status_2xx_count      u32 counter requests
    status_3xx_count      u32 counter requests
    status_4xx_count      u32 counter requests
    status_5xx_count      u32 counter requests
    status_other_count    u32 counter requests
""")

APP_OPERATIONS = _counter(0, 2202, "app", "application operations", """
    application      str label
    success          u32 counter
    other            u32 counter
    timeout          u32 counter
    internal_error   u32 counter
    bad_request      u32 counter
    forbidden        u32 counter
    too_large        u32 counter
    not_implemented  u32 counter
    not_found        u32 counter
    unavailable      u32 counter
    unauthorized     u32 counter
""")

_counter(0, 2203, "app_resources", "application resources", """
    user_time    u32 counter ms
    system_time  u32 counter ms
    mem_used     u64 gauge bytes
    mem_max      u64 gauge bytes
    fd_open      u32 gauge
    fd_max       u32 gauge
    conn_open    u32 gauge
    conn_max     u32 gauge
""")

_counter(0, 2204, "memcache", "memcached counters", """
    cmd_set                u32 counter
    cmd_touch              u32 counter
    cmd_flush              u32 counter
    get_hits               u32 counter
    get_misses             u32 counter
    delete_hits            u32 counter
    delete_misses          u32 counter
    incr_hits              u32 counter
    incr_misses            u32 counter
    decr_hits              u32 counter
    decr_misses            u32 counter
    cas_hits               u32 counter
    cas_misses             u32 counter
    cas_badval             u32 counter
    auth_cmds              u32 counter
    auth_errors            u32 counter
    threads                u32 gauge
    conn_yields            u32 counter
    listen_disabled_num    u32 counter
    curr_connections       u32 gauge
    rejected_connections   u32 counter
    total_connections      u32 counter
    connection_structures  u32 gauge
    evictions              u32 counter
    reclaimed              u32 counter
    curr_items             u32 gauge
    total_items            u32 counter
    bytes_read             u64 counter bytes
    bytes_written          u64 counter bytes
    bytes                  u64 gauge bytes
    limit_maxbytes         u64 gauge bytes
""")

_counter(0, 2205, "vdi", "virtual desktop (VDI) counters", """
    sessions_current   u32 gauge
    sessions_total     u32 counter
    sessions_duration  u32 counter s
    rx_bytes           u32 counter bytes
    tx_bytes           u32 counter bytes
    rx_packets         u32 counter packets
    tx_packets         u32 counter packets
    rx_packets_lost    u32 counter packets
    tx_packets_lost    u32 counter packets
    rtt_min            u32 gauge ms
    rtt_max            u32 gauge ms
    rtt_avg            u32 gauge ms
    audio_rx_bytes     u32 counter bytes
    audio_tx_bytes     u32 counter bytes
    audio_tx_limit     u32 gauge
    img_rx_bytes       u32 counter bytes
    img_tx_bytes       u32 counter bytes
    img_frames         u32 counter frames
    img_qual_min       u32 gauge
    img_qual_max       u32 gauge
    img_qual_avg       u32 gauge
    usb_rx_bytes       u32 counter bytes
    usb_tx_bytes       u32 counter bytes
""")

_counter(0, 2206, "app_workers", "application worker pool", """
    workers_active    u32 gauge
    workers_idle      u32 gauge
    workers_max       u32 gauge
    req_delayed       u32 counter requests
    req_dropped       u32 counter requests
""")

_counter(0, 2207, "ovs_dp", "Open vSwitch datapath statistics", """
    hits       u32 counter packets
    misses     u32 counter packets
    lost       u32 counter packets
    mask_hits  u32 counter packets
    flows      u32 gauge
    masks      u32 gauge
""")

# enterprise 5703 = NVIDIA
_counter(5703, 1, "gpu", "NVIDIA GPU (NVML) statistics", """
    device_count  u32 gauge
    processes     u32 gauge
    gpu_time      u32 counter ms
    mem_time      u32 counter ms
    mem_total     u64 gauge bytes
    mem_free      u64 gauge bytes
    ecc_errors    u32 counter
    energy        u32 counter mJ
    temperature   u32 gauge C
    fan_speed     u32 gauge percent
""")

# enterprise 4413 = Broadcom
_counter(4413, 3, "bcm_tables", "Broadcom switch ASIC table utilisation", """
    host_entries            u32 gauge
    host_entries_max        u32 gauge
    ipv4_entries            u32 gauge
    ipv4_entries_max        u32 gauge
    ipv6_entries            u32 gauge
    ipv6_entries_max        u32 gauge
    ipv4_ipv6_entries       u32 gauge
    ipv4_ipv6_entries_max   u32 gauge
    long_ipv6_entries       u32 gauge
    long_ipv6_entries_max   u32 gauge
    total_routes            u32 gauge
    total_routes_max        u32 gauge
    ecmp_nexthops           u32 gauge
    ecmp_nexthops_max       u32 gauge
    mac_entries             u32 gauge
    mac_entries_max         u32 gauge
    ipv4_neighbors          u32 gauge
    ipv6_neighbors          u32 gauge
    ipv4_routes             u32 gauge
    ipv6_routes             u32 gauge
    acl_ingress_entries     u32 gauge
    acl_ingress_entries_max u32 gauge
    acl_ingress_counters    u32 gauge
    acl_ingress_counters_max u32 gauge
    acl_ingress_meters      u32 gauge
    acl_ingress_meters_max  u32 gauge
    acl_ingress_slices      u32 gauge
    acl_ingress_slices_max  u32 gauge
    acl_egress_entries      u32 gauge
    acl_egress_entries_max  u32 gauge
    acl_egress_counters     u32 gauge
    acl_egress_counters_max u32 gauge
    acl_egress_meters       u32 gauge
    acl_egress_meters_max   u32 gauge
    acl_egress_slices       u32 gauge
    acl_egress_slices_max   u32 gauge
""")

# =========================================================================================
# Flow records (inside flow samples 1/3 and discarded-packet samples 5).
# =========================================================================================
SAMPLED_HEADER = _flow(0, 1, "sampled_header", "raw packet header", """
    protocol      u32 label
    frame_length  u32 label
    stripped      u32 label
    header_length custom label
""", parse=_parse_header)

SAMPLED_ETHERNET = _flow(0, 2, "sampled_ethernet", "ethernet frame data", """
    length    u32 label
    src_mac   mac label
    dst_mac   mac label
    type      u32 label
""")

SAMPLED_IPV4 = _flow(0, 3, "sampled_ipv4", "IPv4 packet data", """
    length     u32 label
    protocol   u32 label
    src_ip     ip4 label
    dst_ip     ip4 label
    src_port   u32 label
    dst_port   u32 label
    tcp_flags  u32 label
    tos        u32 label
""")

SAMPLED_IPV6 = _flow(0, 4, "sampled_ipv6", "IPv6 packet data", """
    length     u32 label
    protocol   u32 label
    src_ip     ip6 label
    dst_ip     ip6 label
    src_port   u32 label
    dst_port   u32 label
    tcp_flags  u32 label
    priority   u32 label
""")

EXTENDED_SWITCH = _flow(0, 1001, "extended_switch", "extended switch data", """
    src_vlan      u32 label
    src_priority  u32 label
    dst_vlan      u32 label
    dst_priority  u32 label
""")

_flow(0, 1002, "extended_router", "extended router data", """
    next_hop       addr label
    src_mask_len   u32  label
    dst_mask_len   u32  label
""")

_flow(0, 1003, "extended_gateway", "extended BGP gateway data", """
    next_hop       addr   label
    as             u32    label
    src_as         u32    label
    src_peer_as    u32    label
    segments       custom label
""", parse=_parse_gateway)

_flow(0, 1004, "extended_user", "extended user data", """
    src_charset  u32 label
    src_user     str label
    dst_charset  u32 label
    dst_user     str label
""")

_flow(0, 1005, "extended_url", "extended URL data", """
    direction  u32 label
    url        str label
    host       str label
""")

_flow(0, 1006, "extended_mpls", "extended MPLS data", """
    next_hop   addr   label
    in_stack   custom label
""", parse=_parse_u32_stack("labels"))

_flow(0, 1007, "extended_nat", "extended NAT data", """
    src_address  addr label
    dst_address  addr label
""")

_flow(0, 1012, "extended_vlantunnel", "extended VLAN tunnel (stacked tags)", """
    stack  custom label
""", parse=_parse_u32_stack("stack"))

_flow(0, 1020, "extended_nat_port", "extended NAT port data", """
    src_port  u32 label
    dst_port  u32 label
""")

for _fmt, _name, _base in ((1021, "extended_l2_tunnel_egress", SAMPLED_ETHERNET),
                           (1022, "extended_l2_tunnel_ingress", SAMPLED_ETHERNET),
                           (1023, "extended_ipv4_tunnel_egress", SAMPLED_IPV4),
                           (1024, "extended_ipv4_tunnel_ingress", SAMPLED_IPV4),
                           (1025, "extended_ipv6_tunnel_egress", SAMPLED_IPV6),
                           (1026, "extended_ipv6_tunnel_ingress", SAMPLED_IPV6)):
    _rf = RecordFormat(0, _fmt, _name, f"tunnel header ({_base.name} layout)", list(_base.fields))
    FLOW_FORMATS[_rf.tag] = _rf

_flow(0, 1027, "extended_decapsulate_egress", "decapsulation offset", """
    inner_header_offset u32 label
""")
_flow(0, 1028, "extended_decapsulate_ingress", "decapsulation offset", """
    inner_header_offset u32 label
""")
_flow(0, 1029, "extended_vni_egress", "VXLAN network identifier", """
    vni u32 label
""")
_flow(0, 1030, "extended_vni_ingress", "VXLAN network identifier", """
    vni u32 label
""")
_flow(0, 1036, "extended_egress_queue", "egress queue", """
    queue u32 label
""")
_flow(0, 1037, "extended_acl", "ACL that dropped the packet", """
    number     u32 label
    name       str label
    direction  u32 label
""")
_flow(0, 1038, "extended_function", "function that dropped the packet", """
    symbol str label
""")
_flow(0, 1039, "extended_transit", "transit delay", """
    delay u32 label
""")
_flow(0, 1040, "extended_queue", "queue depth", """
    depth u32 label
""")
_flow(0, 1041, "extended_hw_trap", "hardware trap", """
    group str label
    trap  str label
""")
_flow(0, 1042, "extended_linux_drop_reason", "Linux drop reason", """
    reason str label
""")
_flow(0, 1043, "extended_timestamp", "timestamp", """
    nanoseconds u64 label
""")
_flow(0, 2209, "extended_tcp_info", "TCP connection state", """
    direction           u32 label
    snd_mss             u32 label
    rcv_mss             u32 label
    unacked             u32 label
    lost                u32 label
    retrans             u32 label
    pmtu                u32 label
    rtt                 u32 label
    rttvar              u32 label
    snd_cwnd            u32 label
    reordering          u32 label
    min_rtt             u32 label
""")
_flow(0, 2210, "extended_entities", "source and destination entities", """
    src_ds_class  u32 label
    src_ds_index  u32 label
    dst_ds_class  u32 label
    dst_ds_index  u32 label
""")

# host_descr enumerations (sFlow host structures)
MACHINE_TYPES = ("unknown", "other", "x86", "x86_64", "ia64", "sparc", "alpha", "powerpc",
                 "m68k", "mips", "arm", "hppa", "s390")
OS_NAMES = ("unknown", "other", "linux", "windows", "darwin", "hpux", "aix", "dragonfly",
            "freebsd", "netbsd", "openbsd", "osf", "solaris")
