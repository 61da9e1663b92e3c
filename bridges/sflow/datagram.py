"""Decode one sFlow v5 datagram (bytes) into its header and samples.  Pure: no I/O, no clock.

Layout (sFlow v5 spec, sflow_version_5.txt, "sample_datagram_v5"):

    datagram   version=5, agent address (type 1: 4 bytes, type 2: 16 bytes), sub_agent_id,
               sequence_number, uptime (ms), samples<>
    sample     data_format (enterprise << 12 | format), length, body
    record     data_format, length, body                       (inside a sample)

Sample formats (enterprise 0): 1 flow_sample, 2 counters_sample, 3 flow_sample_expanded,
4 counters_sample_expanded, 5 discarded_packet (sFlow drops extension).  Compact samples pack
the data source as `type << 24 | index` in one word; expanded ones use two words.

Strategy for malformed input: every length is checked against what is really there.  The
decoder never raises for bad bytes after the datagram header; it records a `problem` (with
the offending bytes in hex, truncated) and keeps every sample and record that was whole.
A record that does not fit its format is skipped by its length; a record or sample whose
length runs past its container ends the walk of that container.  A record type that is not
in the registry is kept as an `unknown` record and skipped by its length.
"""
from __future__ import annotations

import ipaddress
import struct

from .records import (COUNTER_FORMATS, FLOW_FORMATS, RecordError, decode_record, tag_name)

__all__ = ["SflowError", "Datagram", "FlowSample", "CounterSample", "DiscardSample",
           "decode_datagram", "hexdump", "SAMPLE_NAMES"]

_HEX_LIMIT = 48


def hexdump(data, off: int = 0, n: int = _HEX_LIMIT) -> str:
    """Hex of data[off:off+n], with '...' if there is more."""
    chunk = bytes(data[off:off + n])
    more = "..." if len(data) > off + n else ""
    return chunk.hex() + more


class SflowError(ValueError):
    """A datagram that is not sFlow v5 or whose header is unreadable."""

    def __init__(self, problem: str, data: bytes, reason: str = "bad_header"):
        self.problem = problem
        self.reason = reason
        super().__init__(f"{problem}: {hexdump(data)}")


class Datagram:
    """A decoded datagram: header fields, the samples that were whole, and the problems."""
    __slots__ = ("agent", "sub_agent", "sequence", "uptime", "samples", "problems", "notes",
                 "unknown_records", "declared_samples")

    def __init__(self, agent, sub_agent, sequence, uptime, declared):
        self.agent = agent
        self.sub_agent = sub_agent
        self.sequence = sequence
        self.uptime = uptime
        self.declared_samples = declared
        self.samples: list = []
        self.problems: list[str] = []   # errors: something was lost
        self.notes: list[str] = []      # quirks worked around: nothing was lost
        self.unknown_records = 0

    def __repr__(self):
        return (f"<Datagram agent={self.agent} sub={self.sub_agent} seq={self.sequence} "
                f"samples={len(self.samples)} problems={len(self.problems)}>")


class FlowSample:
    """A flow sample (compact or expanded): one sampled packet and its records."""
    __slots__ = ("expanded", "sequence", "ds_class", "ds_index", "sampling_rate", "sample_pool",
                 "drops", "input_format", "input", "output_format", "output", "records")
    kind = "flow"

    def __init__(self, expanded, sequence, ds_class, ds_index, rate, pool, drops,
                 in_fmt, inp, out_fmt, out, records):
        self.expanded = expanded
        self.sequence = sequence
        self.ds_class = ds_class
        self.ds_index = ds_index
        self.sampling_rate = rate
        self.sample_pool = pool
        self.drops = drops
        self.input_format = in_fmt
        self.input = inp
        self.output_format = out_fmt
        self.output = out
        self.records = records


class CounterSample:
    """A counters sample (compact or expanded): counter records of one data source."""
    __slots__ = ("expanded", "sequence", "ds_class", "ds_index", "records")
    kind = "counters"

    def __init__(self, expanded, sequence, ds_class, ds_index, records):
        self.expanded = expanded
        self.sequence = sequence
        self.ds_class = ds_class
        self.ds_index = ds_index
        self.records = records


class DiscardSample:
    """A discarded-packet sample (sFlow drops extension, format 5)."""
    __slots__ = ("sequence", "ds_class", "ds_index", "drops", "input", "output", "reason",
                 "records")
    kind = "discard"
    expanded = True

    def __init__(self, sequence, ds_class, ds_index, drops, inp, out, reason, records):
        self.sequence = sequence
        self.ds_class = ds_class
        self.ds_index = ds_index
        self.drops = drops
        self.input = inp
        self.output = out
        self.reason = reason
        self.records = records


SAMPLE_NAMES = {1: "flow_sample", 2: "counters_sample", 3: "flow_sample_expanded",
                4: "counters_sample_expanded", 5: "discarded_packet"}

_U32 = struct.Struct(">I")
_II = struct.Struct(">II")
_HDR4 = struct.Struct(">II4sIIII")      # version, type, ip4, sub, seq, uptime, n
_HDR6_TAIL = struct.Struct(">IIII")      # sub, seq, uptime, n (after the 16-byte address)
_FLOW = struct.Struct(">IIIIIIII")       # seq, source_id, rate, pool, drops, in, out, n
_FLOW_X = struct.Struct(">IIIIIIIIIII")  # seq, class, index, rate, pool, drops, in_fmt, in,
#                                          out_fmt, out, n
_CNT = struct.Struct(">III")             # seq, source_id, n
_CNT_X = struct.Struct(">IIII")          # seq, class, index, n
_DISC = struct.Struct(">IIIIIIII")       # seq, class, index, drops, in, out, reason, n

#: bound on records per sample and samples per datagram (a 64 KiB datagram cannot hold more)
_MAX_COUNT = 8192

_agent_cache: dict[bytes, str] = {}


def _agent_text(raw: bytes) -> str:
    s = _agent_cache.get(raw)
    if s is None:
        if len(_agent_cache) > 65536:
            _agent_cache.clear()
        s = str(ipaddress.ip_address(raw))
        _agent_cache[raw] = s
    return s


def decode_datagram(data: bytes) -> Datagram:
    """Decode one UDP payload.  Raises SflowError if it is not an sFlow v5 datagram with a
    readable header; otherwise returns a Datagram (its `problems` list the bad parts)."""
    n = len(data)
    if n < 4:
        raise SflowError(f"datagram of {n} bytes is too short for a version field", data,
                         "too_short")
    version = _U32.unpack_from(data, 0)[0]
    if version != 5:
        # NetFlow v5/v9 and IPFIX (version 10) arrive on 6343 in real captures
        raise SflowError(f"not sFlow v5 (version field {version})", data, "not_sflow5")
    if n < 8:
        raise SflowError("datagram too short for the agent address type", data, "too_short")
    atype = _U32.unpack_from(data, 4)[0]
    if atype == 1:
        if n < 28:
            raise SflowError(f"sFlow v5 header needs 28 bytes, datagram has {n}", data,
                             "too_short")
        _, _, raw, sub, seq, uptime, nsamples = _HDR4.unpack_from(data, 0)
        off = 28
    elif atype == 2:
        if n < 40:
            raise SflowError(f"sFlow v5 IPv6 header needs 40 bytes, datagram has {n}", data,
                             "too_short")
        raw = data[8:24]
        sub, seq, uptime, nsamples = _HDR6_TAIL.unpack_from(data, 24)
        off = 40
    else:
        raise SflowError(f"unknown agent address type {atype}", data, "bad_header")
    dg = Datagram(_agent_text(bytes(raw)), sub, seq, uptime, nsamples)
    if nsamples > _MAX_COUNT:
        dg.problems.append(f"datagram declares {nsamples} samples (implausible); "
                           f"decoding what is there: {hexdump(data, 0, 40)}")
    samples = dg.samples
    problems = dg.problems
    unpack_ii = _II.unpack_from
    i = 0
    while i < nsamples:
        if off + 8 > n:
            problems.append(f"sample {i + 1} of {nsamples}: header past the end of the datagram "
                            f"at offset {off} ({n - off} bytes left): {hexdump(data, off)}")
            break
        stype, slen = unpack_ii(data, off)
        body = off + 8
        end = body + slen
        last = False
        if end > n:
            # keep what can be kept: read the records that are whole in what is there
            problems.append(f"sample {i + 1} of {nsamples} ({_sample_name(stype)}): length {slen} "
                            f"past the end of the datagram ({n - body} bytes left); reading "
                            f"what is there: {hexdump(data, off)}")
            end = n
            last = True
        # the sample header, by format (sFlow v5 section "sample_data"); inlined: hot path
        hsize = _SAMPLE_HEADER_SIZE.get(stype)
        if hsize is None:
            dg.unknown_records += 1
            dg.notes.append(f"unknown sample type {tag_name(stype)} ({slen} bytes) skipped")
        elif body + hsize > end:
            problems.append(f"sample {i + 1} ({_sample_name(stype)}) at offset {off}: header "
                            f"needs {hsize} bytes, sample has {end - body}: "
                            f"{hexdump(data, off)}")
        elif stype == 4:
            seq, dsc, dsi, nrec = _CNT_X.unpack_from(data, body)
            samples.append(CounterSample(True, seq, dsc, dsi, _records(
                dg, COUNTER_FORMATS, data, body + 16, end, n, nrec, "counter")))
        elif stype == 1:
            seq, src, rate, pool, drops, inp, out, nrec = _FLOW.unpack_from(data, body)
            # compact interface format: top 2 bits = format, low 30 bits = value
            samples.append(FlowSample(False, seq, src >> 24, src & 0xFFFFFF, rate, pool, drops,
                                      inp >> 30, inp & 0x3FFFFFFF, out >> 30, out & 0x3FFFFFFF,
                                      _records(dg, FLOW_FORMATS, data, body + 32, end, n, nrec,
                                               "flow")))
        elif stype == 2:
            seq, src, nrec = _CNT.unpack_from(data, body)
            samples.append(CounterSample(False, seq, src >> 24, src & 0xFFFFFF, _records(
                dg, COUNTER_FORMATS, data, body + 12, end, n, nrec, "counter")))
        elif stype == 3:
            seq, dsc, dsi, rate, pool, drops, in_fmt, inp, out_fmt, out, nrec = \
                _FLOW_X.unpack_from(data, body)
            samples.append(FlowSample(True, seq, dsc, dsi, rate, pool, drops, in_fmt, inp,
                                      out_fmt, out, _records(dg, FLOW_FORMATS, data, body + 44,
                                                             end, n, nrec, "flow")))
        else:  # 5
            seq, dsc, dsi, drops, inp, out, reason, nrec = _DISC.unpack_from(data, body)
            samples.append(DiscardSample(seq, dsc, dsi, drops, inp, out, reason, _records(
                dg, FLOW_FORMATS, data, body + 32, end, n, nrec, "flow")))
        off = end
        i += 1
        if last:
            break
    if off < n and not problems:
        dg.notes.append(f"{n - off} bytes after the last sample (ignored): {hexdump(data, off)}")
    return dg


def _sample_name(stype: int) -> str:
    if stype >> 12 == 0 and stype in SAMPLE_NAMES:
        return SAMPLE_NAMES[stype]
    return f"sample type {tag_name(stype)}"


# bytes of each sample format's header, up to and including its record count
_SAMPLE_HEADER_SIZE = {1: 32, 2: 12, 3: 44, 4: 16, 5: 32}


def _records(dg: Datagram, registry, data, off: int, end: int, limit: int, nrec: int,
             what: str) -> list:
    """The records of one sample: list of (format, values, extra).  Unknown formats are
    kept as (None, tag, raw bytes) so a caller can count them.

    Quirk (gopacket vectors, real agents with off-by-some sample lengths): a record may run
    past the end of its sample but still lie inside the datagram.  tshark reads it anyway;
    so do we (reporting the problem), and stop walking that sample after it."""
    out = []
    if nrec > _MAX_COUNT:
        dg.problems.append(f"{what} sample declares {nrec} records (implausible); "
                           f"decoding what is there")
    get = registry.get
    append = out.append
    unpack_ii = _II.unpack_from
    i = 0
    while i < nrec:
        if off + 8 > end:
            dg.problems.append(f"{what} record {i + 1} of {nrec}: header past the end of the "
                               f"sample at offset {off} ({end - off} bytes left): "
                               f"{hexdump(data, off)}")
            return out
        tag, rlen = unpack_ii(data, off)
        body = off + 8
        rend = body + rlen
        rf = get(tag)
        if rend <= end and rf is not None:
            fast = rf.fast
            if fast is not None and rlen >= rf.min_size:
                # the hot path: a whole record of a fixed-size format is one struct call
                append((rf, fast(data, body), None))
                off = rend
                i += 1
                continue
        stop = False
        if rend > end:
            if rend > limit:
                dg.problems.append(f"{what} record {i + 1} of {nrec} ({tag_name(tag)}): length "
                                   f"{rlen} past the end of the datagram ({limit - body} bytes "
                                   f"left): {hexdump(data, off)}")
                return out
            dg.problems.append(f"{what} record {i + 1} of {nrec} ({tag_name(tag)}): length "
                               f"{rlen} past the end of its sample ({end - body} bytes left); "
                               f"read from the bytes that follow: {hexdump(data, off)}")
            stop = True
        if rf is None:
            dg.unknown_records += 1
            append((None, tag, bytes(data[body:rend])))
        elif rf.fast is not None and rlen >= rf.min_size:
            append((rf, rf.fast(data, body), None))
        elif rf.fast_custom is not None and rlen >= rf.min_size:
            try:
                values, extra = rf.fast_custom(data, body, rend)
            except RecordError as e:
                dg.problems.append(f"{what} record {i + 1} of {nrec} ({rf.name}, "
                                   f"{tag_name(tag)}): {e}: {hexdump(data, off)}")
            else:
                append((rf, values, extra))
        else:
            try:
                values, extra, notes = decode_record(rf, data, body, rend)
            except RecordError as e:
                dg.problems.append(f"{what} record {i + 1} of {nrec} ({rf.name}, "
                                   f"{tag_name(tag)}): {e}: {hexdump(data, off)}")
            else:
                if notes:
                    dg.notes.append(f"{what} record {rf.name}: {'; '.join(notes)} "
                                       f"(kept): {hexdump(data, off)}")
                append((rf, values, extra))
        off = rend
        i += 1
        if stop:
            return out
    if off != end:
        # the sample's declared length disagrees with its records; the records were whole,
        # so they are kept (goflow2/gopacket vectors have this)
        dg.notes.append(f"{what} sample has {end - off} bytes after its {nrec} records "
                           f"(kept the records)")
    return out
