"""Turn decoded sFlow datagrams into monbus lines.  No I/O, no clock: `now` is passed in.

Counters (counter samples) become one line per field as they arrive:

    sflow.<host>.<instance>.<structure>.<field>[;tags] <value> <ts> mtype=counter|gauge [unit=]
                                                                    [max=<wrap value>]

    <host>      the hostname from a host_descr record (hsflowd) when the agent sends one,
                else the agent address (IPv4 dots become '_'; IPv6 keeps its ':')
    <instance>  the data source: if<ifIndex> (class 0), vlan<id> (class 1), entity<index>
                (class 2), logical<index> (class 3); `host` for the sample that carries the
                host's own host_descr; vlan counters use vlan<vlan_id>
    tags        agent=<address> when <host> is a hostname; uuid= and os= from host_descr;
                ifname= from a port_name record; app= from an application record;
                of_dpid= and of_port= from an OpenFlow port record; jvm= from jvm_runtime

Flow samples and discarded-packet samples are aggregated in fixed windows of `interval`
seconds (aligned to the epoch) and published when the window has ended:

    sflow.<host>.if<N>.flow.{bytes,frames}   estimated rate in the window (B/s, frames/s):
                                             sum of frame_length x sampling_rate / interval
    sflow.<host>.if<N>.flow.samples          flow samples received in the window
    sflow.<host>.vlan<V>.flow.{bytes,frames,samples}        by VLAN (802.1Q tag or ext. switch)
    sflow.<host>.proto.<l3>[.<l4>[.<port>]].{bytes,frames,samples}   by protocol, where
        l3 = ipv4 / ipv6 / arp / ... , l4 = tcp / udp / icmp / ..., port = the lower of the
        two ports if below 32768 (the service), else `high`
    sflow.<host>.if<N>.discards.<reason>     discarded-packet samples by reason (count)
    sflow.<host>.if<N>.flow.{sample_pool,sampler_drops}  the agent's own cumulative counters
    sflow.<host>.agent.sub<S>.{datagrams,lost_datagrams,out_of_order,resets,uptime}

Lost datagrams come from the agent's datagram sequence numbers (per agent and sub-agent).
"""
from __future__ import annotations

import uuid as _uuid

from monbus.core.line import Sanitizer, format_number, sanitize

from .datagram import CounterSample, Datagram, DiscardSample, FlowSample
from .headers import ETHERTYPES, IP_PROTOCOLS, parse_header
from .records import (APP_OPERATIONS, EXTENDED_SWITCH, GENERIC, HOST_DESCR, HOST_PARENT,
                      JVM_RUNTIME, OPENFLOW, OS_NAMES, PORT_NAME, SAMPLED_ETHERNET, SAMPLED_HEADER, SAMPLED_IPV4,
                      SAMPLED_IPV6, SFP_LANE_FIELDS, is_unknown)

__all__ = ["Converter", "DISCARD_REASONS"]

# Discard reason codes (sFlow drops extension, sflow_drops.txt): 0-15 follow ICMP
# destination-unreachable codes, 256+ are the switch/Linux drop points.
_REASONS = """
0 net_unreachable 1 host_unreachable 2 protocol_unreachable 3 port_unreachable 4 frag_needed
5 src_route_failed 6 dst_net_unknown 7 dst_host_unknown 8 src_host_isolated
9 dst_net_prohibited 10 dst_host_prohibited 11 dst_net_tos_unreachable
12 dst_host_tos_unreachable 13 comm_admin_prohibited 14 host_precedence_violation
15 precedence_cutoff 256 unknown 257 ttl_exceeded 258 acl 259 no_buffer_space 260 red
261 traffic_shaping 262 pkt_too_big 263 src_mac_is_multicast 264 vlan_tag_mismatch
265 ingress_vlan_filter 266 ingress_spanning_tree_filter 267 port_list_is_empty
268 port_loopback_filter 269 blackhole_route 270 non_ip 271 uc_dip_over_mc_dmac
272 dip_is_loopback_address 273 sip_is_mc 274 sip_is_loopback_address 275 ip_header_corrupted
276 ipv4_sip_is_limited_bc 277 ipv6_mc_dip_reserved_scope 278 ipv6_mc_dip_interface_local_scope
279 unresolved_neigh 280 mc_reverse_path_forwarding 281 non_routable_packet 282 decap_error
283 overlay_smac_is_mc 284 unknown_l2 285 unknown_l3 286 unknown_l3_exception
287 unknown_buffer 288 unknown_tunnel 289 unknown_l4 290 sip_is_unspecified
291 mlag_port_isolation 292 blackhole_arp_neigh 293 src_mac_is_dmac 294 dmac_is_reserved
295 sip_is_class_e 296 mc_dmac_mismatch 297 sip_is_dip 298 dip_is_local_network
299 dip_is_link_local 300 overlay_smac_is_dmac 301 egress_vlan_filter
302 uc_reverse_path_forwarding 303 split_horizon 304 locked_port 305 dmac_filter
306 blackhole_nexthop 307 vxlan_parsing 308 llc_snap_parsing 309 vlan_parsing
310 pppoe_ppp_parsing 311 mpls_parsing 312 arp_parsing 313 ip_1_parsing 314 ip_n_parsing
315 gre_parsing 316 udp_parsing 317 tcp_parsing 318 ipsec_parsing 319 sctp_parsing
320 dccp_parsing 321 gtp_parsing 322 esp_parsing 323 unknown_parsing 324 pkt_too_small
325 unhandled_proto 326 ipv6disabled 327 invalid_proto 328 ip_noproto 329 skb_csum
330 skb_ucopy_fault 331 dev_ready 332 dev_hdr 333 dup_frag 334 skb_gso_seg
335 reverse_path_forwarding 336 icmp_parsing 337 tcp_md5notfound 338 tcp_md5unexpected
339 tcp_md5failure 340 tcp_flags 341 tcp_zerowindow 342 tcp_old_data 343 tcp_overwindow
344 tcp_ofomerge 345 tcp_rfc7323_paws 346 tcp_invalid_sequence 347 tcp_reset
348 tcp_invalid_syn 349 tcp_close 350 tcp_fastopen 351 tcp_old_ack 352 tcp_too_old_ack
353 tcp_ack_unsent_data 354 tcp_ofo_queue_prune 355 tcp_ofo_drop 356 tcp_minttl
357 ipv6_bad_exthdr 358 ipv6_ndisc_frag 359 ipv6_ndisc_hop_limit 360 ipv6_ndisc_bad_code
361 ipv6_ndisc_bad_options 362 ipv6_ndisc_ns_otherhost 363 tap_filter 364 tap_txfilter
365 tc_ingress 366 tc_egress 367 xdp 368 cpu_backlog 369 bpf_cgroup_egress 370 xfrm_policy
371 socket_filter
"""
_r = _REASONS.split()
DISCARD_REASONS: dict[int, str] = {int(_r[i]): _r[i + 1] for i in range(0, len(_r), 2)}

_INSTANCE = {0: "if", 1: "vlan", 2: "entity", 3: "logical"}
_HIGH_PORT = 32768
_MAX_AGENTS = 65536


class _Agent:
    __slots__ = ("host", "tags", "seq", "uptime", "datagrams", "lost", "out_of_order", "resets",
                 "sub")

    def __init__(self, sub):
        self.sub = sub
        self.host = None
        self.tags = ""
        self.seq = None
        self.uptime = 0
        self.datagrams = 0
        self.lost = 0
        self.out_of_order = 0
        self.resets = 0


class Converter:
    """Stateful converter: `datagram(dg, now)` returns the counter lines of one datagram and
    accumulates its flows; `flush(now)` returns the lines of the windows that have ended."""

    def __init__(self, interval: float = 10.0, prefix: str = "sflow", max_flow_keys: int = 2000,
                 counts: dict | None = None):
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.interval = float(interval)
        self.prefix = sanitize(prefix)
        self.max_flow_keys = max_flow_keys
        self.counts = counts if counts is not None else {}
        self._agents: dict[tuple, _Agent] = {}
        self._hostnames: dict[str, tuple[str, str]] = {}  # agent address -> (host, tags)
        self._windows: dict[float, dict] = {}              # window start -> key -> [s, f, b]
        self._cumulative: dict[tuple, list] = {}           # (host, tags, inst) -> [pool, drops]
        self._san = Sanitizer()
        self._agent_names: dict[str, str] = {}
        self._meta: dict = {}
        self._next_report = 0.0
        self._last_now = 0.0

    # --- helpers -----------------------------------------------------------------------
    def _inc(self, name, n=1):
        self.counts[name] = self.counts.get(name, 0) + n

    def _agent_component(self, agent: str) -> str:
        c = self._agent_names.get(agent)
        if c is None:
            c = self._san(agent)
            self._agent_names[agent] = c
        return c

    def _suffix(self, kind, unit):
        key = (kind, unit)
        s = self._meta.get(key)
        if s is None:
            s = f" mtype={kind}" + (f" unit={unit}" if unit else "")
            self._meta[key] = s
        return s

    # --- datagrams ---------------------------------------------------------------------
    def datagram(self, dg: Datagram, now: float) -> list[str]:
        """Lines for one decoded datagram (counters now; flows go into the window)."""
        ts = format_number(float(int(now)))
        if now > self._last_now:
            self._last_now = now
        out: list[str] = []
        key = (dg.agent, dg.sub_agent)
        st = self._agents.get(key)
        if st is None:
            if len(self._agents) >= _MAX_AGENTS:
                # agent addresses come from the payload: bound the state a flood can create
                self._inc("agent_table_resets")
                self._agents.clear()
                self._hostnames.clear()
                self._cumulative.clear()
            st = self._agents[key] = _Agent(dg.sub_agent)
        self._sequence(st, dg)
        agent_host = self._agent_component(dg.agent)
        # pre-pass: a host_descr of the physical host names every sample of this agent
        for s in dg.samples:
            if s.kind == "counters":
                hd = _host_descr(s)
                if hd is not None and not _has_parent(s):
                    self._hostnames[dg.agent] = self._host_identity(hd, dg.agent)
        host, tags = self._hostnames.get(dg.agent, (agent_host, ""))
        st.host, st.tags = host, tags
        for s in dg.samples:
            kind = s.kind
            if kind == "counters":
                self._counters(s, dg, host, tags, ts, out)
            elif kind == "flow":
                self._flow(s, host, tags, now)
            else:
                self._discard(s, host, tags, now)
        self._inc("samples", len(dg.samples))
        self._inc("unknown_records", dg.unknown_records)
        return out

    def _sequence(self, st: _Agent, dg: Datagram):
        """Lost datagrams from the agent's sequence numbers (sFlow v5: one sequence per
        agent and sub-agent, incremented by one per datagram)."""
        st.datagrams += 1
        seq = dg.sequence
        if st.seq is None:
            st.seq, st.uptime = seq, dg.uptime
            return
        diff = (seq - st.seq) & 0xFFFFFFFF
        if diff >= 0x80000000 and dg.uptime + 60_000 < st.uptime:
            # sequence and uptime (by more than a reordering could) both went back: the
            # agent restarted.  Uptime alone goes back when its 32-bit milliseconds wrap
            # (49.7 days); sequence alone when a datagram is reordered.
            st.resets += 1
            st.seq = seq
        elif diff == 0:
            self._inc("duplicate_datagrams")
        elif diff < 0x80000000:
            st.lost += diff - 1
            st.seq = seq
        else:
            # older than the newest seen: a reordered datagram that was counted as lost
            st.out_of_order += 1
            if st.lost:
                st.lost -= 1
        st.uptime = dg.uptime

    def _host_identity(self, hd, agent: str) -> tuple[str, str]:
        values = hd[1]
        hostname = values[0]
        if not hostname:
            return self._agent_component(agent), ""
        tags = f";agent={self._agent_component(agent)}"
        raw_uuid = values[1]
        if any(raw_uuid):
            tags += f";uuid={_uuid.UUID(bytes=bytes(raw_uuid))}"
        os_name = values[3]
        if 0 < os_name < len(OS_NAMES):
            tags += f";os={OS_NAMES[os_name]}"
        return self._san(hostname), tags

    # --- counters ----------------------------------------------------------------------
    def _counters(self, s: CounterSample, dg, host, tags, ts, out):
        inst = f"{_INSTANCE.get(s.ds_class, f'ds{s.ds_class}_')}{s.ds_index}"
        hd = _host_descr(s)
        if hd is not None:
            if _has_parent(s):
                host, tags = self._host_identity(hd, dg.agent)
            inst = "host"
        extra_tags = ""
        for rf, values, _ in s.records:
            if rf is PORT_NAME and values[0]:
                extra_tags += f";ifname={sanitize(values[0])}"
            elif rf is APP_OPERATIONS and values[0]:
                extra_tags += f";app={sanitize(values[0])}"
            elif rf is OPENFLOW:
                extra_tags += f";of_dpid={values[0]:016x};of_port={values[1]}"
            elif rf is JVM_RUNTIME and values[0]:
                extra_tags += f";jvm={sanitize(values[0])}"
        base = f"{self.prefix}.{host}.{inst}."
        alltags = tags + extra_tags
        nlines = 0
        for rf, values, extra in s.records:
            if rf is None:
                continue
            name = rf.name
            if rf is GENERIC:
                status = values[4]
                pre = base + "if."
                sfx = self._suffix("gauge", None)
                out.append(f"{pre}admin_up{alltags} {status & 1} {ts}{sfx}")
                out.append(f"{pre}oper_up{alltags} {(status >> 1) & 1} {ts}{sfx}")
                nlines += 2
            elif name == "lag":
                st4 = bytes(values[3])
                pre = base + "lag."
                sfx = self._suffix("gauge", None)
                for j, part in enumerate(("actor_admin_state", "actor_oper_state",
                                          "partner_admin_state", "partner_oper_state")):
                    out.append(f"{pre}{part}{alltags} {st4[j]} {ts}{sfx}")
                nlines += 4
            elif name == "sfp" and extra:
                for lane in extra["lanes"]:
                    pre = f"{base}sfp.lane{lane[0]}."
                    for j, f in enumerate(SFP_LANE_FIELDS):
                        if j and not is_unknown(f.wire, lane[j]):
                            out.append(f"{pre}{f.name}{alltags} {lane[j]} {ts}"
                                       f"{self._suffix(f.kind, f.unit)}")
                            nlines += 1
            if name == "vlan":  # VLAN counters: under the VLAN, whatever the data source
                pre = f"{self.prefix}.{host}.vlan{values[0]}.vlan."
            else:
                pre = base + name + "."
            plan = _PLANS.get(rf.tag)
            if plan is None:
                plan = _PLANS[rf.tag] = _plan(rf)
            for i, fname, unknown, conv, sfx in plan:
                v = values[i]
                if v == unknown or v is None:
                    continue
                if conv is not None:
                    v = conv(v)
                    if v is None:
                        continue
                out.append(f"{pre}{fname}{alltags} {v} {ts}{sfx}")
                nlines += 1
        self._inc("counter_samples")
        self._inc("lines", nlines)

    # --- flows -------------------------------------------------------------------------
    def _window(self, now: float) -> dict:
        start = (now // self.interval) * self.interval
        w = self._windows.get(start)
        if w is None:
            w = self._windows[start] = {}
        return w

    def _add(self, w: dict, key, frames, nbytes, capped: bool = False):
        acc = w.get(key)
        if acc is None:
            # Interfaces and VLANs are bounded by the agents' topology; protocol keys (ports)
            # are bounded by traffic, so they are capped per window and per host.
            if capped:
                nkey = (key[0], key[1], None)
                n = w.get(nkey, 0)
                if n >= self.max_flow_keys:
                    self._inc("flow_keys_overflow")
                    key = (key[0], key[1], "proto.overflow")
                    acc = w.get(key)
                else:
                    w[nkey] = n + 1
            if acc is None:
                acc = w[key] = [0, 0, 0]
        acc[0] += 1
        acc[1] += frames
        acc[2] += nbytes

    def _flow(self, s: FlowSample, host, tags, now):
        rate = s.sampling_rate or 1
        length = None
        info = None
        vlan = None
        l3 = l4 = port = None
        for rf, values, extra in s.records:
            if rf is SAMPLED_HEADER:
                length = values[1]
                info = parse_header(values[0], extra["header"])
            elif rf is SAMPLED_ETHERNET:
                if length is None:
                    length = values[0]
                if l3 is None:
                    l3 = ETHERTYPES.get(values[3], f"ethertype_{values[3]:04x}")
            elif rf is SAMPLED_IPV4 or rf is SAMPLED_IPV6:
                if length is None:
                    length = values[0]
                l3 = "ipv4" if rf is SAMPLED_IPV4 else "ipv6"
                l4 = IP_PROTOCOLS.get(values[1], f"ip{values[1]}")
                if values[1] in (6, 17, 132):
                    port = _service_port(values[4], values[5])
            elif rf is EXTENDED_SWITCH:
                if 0 < values[0] < 4096:
                    vlan = values[0]
        if info is not None:
            if info.ethertype is not None:
                l3 = ETHERTYPES.get(info.ethertype, f"ethertype_{info.ethertype:04x}")
            if info.protocol is not None:
                l4 = IP_PROTOCOLS.get(info.protocol, f"ip{info.protocol}")
                port = _service_port(info.src_port, info.dst_port) \
                    if info.src_port is not None else None
            if vlan is None and info.vlans:
                vlan = info.vlans[0] or None
        if length is None:
            length = 0
            self._inc("flow_samples_without_length")
        frames = rate
        nbytes = length * rate
        w = self._window(now)
        inst = f"{_INSTANCE.get(s.ds_class, f'ds{s.ds_class}_')}{s.ds_index}"
        self._add(w, (host, tags, inst + ".flow"), frames, nbytes)
        if vlan is not None:
            self._add(w, (host, tags, f"vlan{vlan}.flow"), frames, nbytes)
        proto = "proto." + (l3 or "unknown")
        if l4 is not None:
            proto += "." + l4
            if port is not None:
                proto += "." + port
        self._add(w, (host, tags, proto), frames, nbytes, capped=True)
        cum = self._cumulative.get((host, tags, inst))
        if cum is None:
            cum = self._cumulative[(host, tags, inst)] = [0, 0]
        cum[0] = s.sample_pool
        cum[1] = s.drops
        self._inc("flow_samples")

    def _discard(self, s: DiscardSample, host, tags, now):
        w = self._window(now)
        inst = f"{_INSTANCE.get(s.ds_class, f'ds{s.ds_class}_')}{s.ds_index}"
        reason = DISCARD_REASONS.get(s.reason, f"reason_{s.reason}")
        key = (host, tags, f"{inst}.discards.{reason}", "discard")
        acc = w.get(key)
        if acc is None:
            nkey = (host, tags, None)
            nk = w.get(nkey, 0)
            if nk >= self.max_flow_keys:
                self._inc("flow_keys_overflow")
                key = (host, tags, f"{inst}.discards.overflow", "discard")
                acc = w.get(key)
            else:
                w[nkey] = nk + 1
            if acc is None:
                acc = w[key] = [0, 0, 0]
        acc[0] += 1
        self._inc("discard_samples")

    # --- windows -----------------------------------------------------------------------
    def flush(self, now: float, final: bool = False) -> list[str]:
        """Lines of every window that ended by `now` (all of them if `final`), and the
        agents' datagram/loss counters."""
        out: list[str] = []
        ended = [w for w in self._windows if final or w + self.interval <= now]
        report = final or now >= self._next_report
        if not ended and not report:
            return out
        iv = self.interval
        ivs = format_number(iv)
        g_bytes = f" mtype=gauge unit=B/s interval={ivs}"
        g_frames = f" mtype=gauge unit=frames/s interval={ivs}"
        a_samples = f" mtype=absolute interval={ivs}"
        p = self.prefix
        for start in sorted(ended):
            w = self._windows.pop(start)
            ts = format_number(start)
            for key, acc in w.items():
                host, tags, path = key[0], key[1], key[2]
                if path is None:  # the per-host count of protocol keys
                    continue
                n, frames, nbytes = acc
                if len(key) == 4:  # discards
                    out.append(f"{p}.{host}.{path}{tags} {n} {ts} mtype=absolute "
                               f"unit=packets interval={ivs}")
                    continue
                pre = f"{p}.{host}.{path}."
                out.append(f"{pre}bytes{tags} {format_number(nbytes / iv)} {ts}{g_bytes}")
                out.append(f"{pre}frames{tags} {format_number(frames / iv)} {ts}{g_frames}")
                out.append(f"{pre}samples{tags} {n} {ts}{a_samples}")
        if not report:
            self._inc("lines", len(out))
            return out
        # the agents' own cumulative counters, once per interval
        self._next_report = (now // iv + 1) * iv
        ts = format_number(float(int(max(now, self._last_now))))
        for (host, tags, inst), (pool, drops) in self._cumulative.items():
            # the agent's 32-bit cumulative counters (they wrap at max)
            out.append(f"{p}.{host}.{inst}.flow.sample_pool{tags} {pool} {ts} mtype=counter "
                       f"unit=frames max=4294967295")
            out.append(f"{p}.{host}.{inst}.flow.sampler_drops{tags} {drops} {ts} mtype=counter "
                       f"unit=frames max=4294967295")
        for st in self._agents.values():
            if st.host is None:
                continue
            pre = f"{p}.{st.host}.agent.sub{st.sub}."
            t = st.tags
            out.append(f"{pre}datagrams{t} {st.datagrams} {ts} mtype=counter")
            out.append(f"{pre}lost_datagrams{t} {st.lost} {ts} mtype=counter")
            out.append(f"{pre}out_of_order{t} {st.out_of_order} {ts} mtype=counter")
            out.append(f"{pre}resets{t} {st.resets} {ts} mtype=counter")
            out.append(f"{pre}uptime{t} {format_number(st.uptime / 1000.0)} {ts} mtype=gauge "
                       f"unit=s")
        self._inc("lines", len(out))
        return out

    @property
    def lost_datagrams(self) -> int:
        """Datagrams lost across all agents (from their sequence numbers)."""
        return sum(a.lost for a in self._agents.values())


_PLANS: dict[int, list] = {}
_WRAP = {"u32": 2**32 - 1, "u64": 2**64 - 1}
_NO_SENTINEL = object()


def _pct(v):
    """sFlow percentage: hundredths of a percent; negative = unknown."""
    return None if v < 0 else format_number(v / 100.0)


def _f32(v):
    """A float32 gauge, shown with the 6 significant digits it really has."""
    if v != v or v in (float("inf"), float("-inf")):
        return None
    return format_number(float(f"{v:.6g}"))


def _plan(rf) -> list:
    """How to publish each numeric field of a record format: (index, name, the value that
    means 'unknown', converter, annotation suffix); computed once per format."""
    plan = []
    for i, f in rf.numeric:
        unknown = {"u32": 0xFFFFFFFF, "u64": 0xFFFFFFFFFFFFFFFF}.get(f.wire, _NO_SENTINEL)
        conv = {"pct": _pct, "f32": _f32}.get(f.wire)
        sfx = f" mtype={f.kind}" + (f" unit={f.unit}" if f.unit else "")
        if f.kind == "counter" and f.wire in _WRAP:
            # where the counter wraps: sFlow counters are 32 or 64 bits wide
            sfx += f" max={_WRAP[f.wire]}"
        plan.append((i, f.name, unknown, conv, sfx))
    return plan


def _host_descr(s: CounterSample):
    for r in s.records:
        if r[0] is HOST_DESCR:
            return r
    return None


def _has_parent(s: CounterSample) -> bool:
    return any(r[0] is HOST_PARENT for r in s.records)


def _service_port(a, b) -> str | None:
    if a is None or b is None:
        return None
    lo = a if a < b else b
    return str(lo) if lo < _HIGH_PORT else "high"
