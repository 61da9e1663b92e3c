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
import operator
import struct

from .records import (COUNTER_FORMATS, FLOW_FORMATS, SAMPLED_HEADER, RecordError, decode_record,
                      tag_name)

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
    if n >= 28:
        # the usual case, an IPv4 agent: the whole header in one struct call
        version, atype, raw, sub, seq, uptime, nsamples = _HDR4.unpack_from(data, 0)
        if version == 5 and atype == 1:
            return _samples(Datagram(_agent_text(raw), sub, seq, uptime, nsamples), data, 28,
                            n, nsamples)
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
    return _samples(Datagram(_agent_text(bytes(raw)), sub, seq, uptime, nsamples), data, off,
                    n, nsamples)


def _samples(dg: Datagram, data, off: int, n: int, nsamples: int) -> Datagram:
    """Decode the samples that follow the datagram header (at `off`) into `dg`."""
    if nsamples > _MAX_COUNT:
        dg.problems.append(f"datagram declares {nsamples} samples (implausible); "
                           f"decoding what is there: {hexdump(data, 0, 40)}")
    samples = dg.samples
    problems = dg.problems
    unpack_ii = _II.unpack_from
    unpack_key = _U64.unpack_from
    shapes = _SHAPES
    seen = _SEEN
    notes = dg.notes
    i = 0
    while i < nsamples:
        if off + 8 > n:
            problems.append(f"sample {i + 1} of {nsamples}: header past the end of the datagram "
                            f"at offset {off} ({n - off} bytes left): {hexdump(data, off)}")
            break
        # The hot path: a sample whose layout (format, length, record types and lengths) was
        # seen before is read with one struct call, then checked (see _Shape).
        key = unpack_key(data, off)[0]   # data_format << 32 | length
        shape = shapes.get(key)
        if shape:
            end = off + shape.total
            if end <= n:
                vals = shape.unpack(data, off + 8)
                if shape.check(vals) == shape.expected:
                    smp = shape.make(vals)
                    if smp is not None:
                        samples.append(smp)
                        off = end
                        i += 1
                        continue
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
        nproblems = len(problems)
        nnotes = len(notes)
        # the sample header, by format (sFlow v5 section "sample_data")
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
        if shape is None and not last and len(problems) == nproblems \
                and len(notes) == nnotes:
            # a clean sample of a layout not compiled yet: compile it if seen before
            if key in seen:
                _learn(key, stype, slen, data, off, samples[-1])
            elif len(seen) < _MAX_SHAPES:
                seen.add(key)
            else:
                seen.clear()   # layouts come from the payload: bound what a flood can create
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
# their struct codes (the same layouts as _FLOW, _CNT, _FLOW_X, _CNT_X, _DISC)
_SAMPLE_HEADER_CODES = {1: "8I", 2: "3I", 3: "11I", 4: "4I", 5: "8I"}
_U64 = struct.Struct(">Q")


class _Shape:
    """The layout of a sample seen before: its header and every record in one struct.

    Agents send the same samples every interval (the same interface counters, the same
    flow records), so a sample's layout repeats.  The first time a sample of a given
    (format, length) decodes cleanly and holds only fixed-size records, its layout is
    compiled here; later samples with the same (format, length) are unpacked in one struct
    call, and the record count, record tags and record lengths read by that call are
    compared with the layout's before anything is kept.  If they differ (another mix of
    records with the same total length) the sample takes the field-by-field path."""
    __slots__ = ("total", "unpack", "check", "expected", "make")

    def __init__(self, stype: int, slen: int, hsize: int, recs: list):
        codes = [_SAMPLE_HEADER_CODES[stype]]
        nhead = int(codes[0][:-1])
        idx = [nhead - 1]                       # the record count
        expected = [len(recs)]
        spans = []
        pos = nhead
        for rf, rlen in recs:
            idx += [pos, pos + 1]
            expected += [rf.tag, rlen]
            if rf is SAMPLED_HEADER:
                # protocol, frame_length, stripped, header length, then the header bytes
                # with their padding; the header length is checked when the sample is built
                codes.append(f"II4I{rlen - 16}s")
                spans.append((rf, pos + 2, -(rlen - 16)))
                pos += 2 + 5
                continue
            codes.append("II" + rf.fixed.format.lstrip("<>!=@"))
            pad = rlen - rf.fixed.size
            if pad:
                codes.append(f"{pad}x")         # a longer (newer) structure: the tail is skipped
            nvals = len(rf.fields)
            spans.append((rf, pos + 2, pos + 2 + nvals))
            pos += 2 + nvals
        st = struct.Struct(">" + "".join(codes))
        assert st.size == slen, (st.size, slen)
        self.total = 8 + slen
        self.unpack = st.unpack_from
        self.check = operator.itemgetter(*idx) if len(idx) > 1 else _one(idx[0])
        self.expected = tuple(expected)
        self.make = _maker(stype, tuple(spans))


def _one(i):
    return lambda v: (v[i],)


# How each sample format's object is built from its header values v[0], v[1], ... (the
# compact formats pack class and index, and format and value, in one word each).
_MAKERS = {
    1: "FlowSample(False, v[0], v[1] >> 24, v[1] & 0xFFFFFF, v[2], v[3], v[4], v[5] >> 30, "
       "v[5] & 0x3FFFFFFF, v[6] >> 30, v[6] & 0x3FFFFFFF, {records})",
    2: "CounterSample(False, v[0], v[1] >> 24, v[1] & 0xFFFFFF, {records})",
    3: "FlowSample(True, v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], {records})",
    4: "CounterSample(True, v[0], v[1], v[2], {records})",
    5: "DiscardSample(v[0], v[1], v[2], v[3], v[4], v[5], v[6], {records})",
}


def _maker(stype: int, spans: tuple):
    """The function that builds a sample object from one layout's unpacked values, or
    returns None if a sampled header's length does not fit its record (the field-by-field
    path then reports it).

    It is generated (as collections.namedtuple does) because this is the innermost step of
    the hot path: a literal list of (format, values slice, None) per record costs a third of
    a loop or comprehension over the records."""
    items, checks = [], []
    for j, (_, a, b) in enumerate(spans):
        if b < 0:   # sampled_header: b = -(bytes for the header and its padding)
            checks.append(f"v[{a + 3}] > {-b}")
            items.append(f"(r{j}, v[{a}:{a + 4}], {{'header': v[{a + 4}][:v[{a + 3}]]}})")
        else:
            items.append(f"(r{j}, v[{a}:{b}], None)")
    records = "[" + ", ".join(items) + "]"
    env = {"FlowSample": FlowSample, "CounterSample": CounterSample,
           "DiscardSample": DiscardSample}
    env.update((f"r{j}", rf) for j, (rf, _, _) in enumerate(spans))
    check = f"    if {' or '.join(checks)}:\n        return None\n" if checks else ""
    exec(f"def make(v):\n{check}    return {_MAKERS[stype].format(records=records)}\n", env)
    return env["make"]


#: (data_format << 32 | length) -> _Shape, or False for a layout that cannot be compiled
_SHAPES: dict[int, "_Shape | bool"] = {}
_MAX_SHAPES = 4096


#: (data_format << 32 | length) of clean samples seen once: compiling a layout costs about
#: as much as decoding 25 samples field by field (~0.2 ms), so it waits for a second
#: sighting (a layout that repeats) and random or one-off layouts never pay for it
_SEEN: set[int] = set()


def _learn(key: int, stype: int, slen: int, data, off: int, sample) -> None:
    """Compile the layout of a sample that decoded cleanly (no problem, no note) and was
    seen before (see _SEEN), if every record in it is a fixed-size one or a sampled
    header; else remember that this layout is not one."""
    _SEEN.discard(key)
    if len(_SHAPES) >= _MAX_SHAPES:
        _SHAPES.clear()   # layouts come from the payload: bound what a flood can create
    recs = []
    roff = off + 8 + _SAMPLE_HEADER_SIZE[stype]
    for rf, _, extra in sample.records:
        if rf is None or (rf.fast is None or extra is not None) and rf is not SAMPLED_HEADER:
            _SHAPES[key] = False
            return
        tag, rlen = _II.unpack_from(data, roff)
        if tag != rf.tag or rlen < rf.min_size or rf is SAMPLED_HEADER and rlen < 16:
            _SHAPES[key] = False
            return
        recs.append((rf, rlen))
        roff += 8 + rlen
    if roff != off + 8 + slen:
        _SHAPES[key] = False
        return
    _SHAPES[key] = _Shape(stype, slen, _SAMPLE_HEADER_SIZE[stype], recs)


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
        if rend <= end and rf is not None and rlen >= rf.min_size:
            fast = rf.fast
            if fast is not None:
                # the hot path: a whole record of a fixed-size format is one struct call
                append((rf, fast(data, body), None))
                off = rend
                i += 1
                continue
            fast = rf.fast_custom
            if fast is not None:
                # a fixed prefix then a custom tail (sampled_header); if the tail is bad, the
                # slow path below reads it again and reports the problem
                try:
                    append((rf,) + fast(data, body, rend))
                except RecordError:
                    pass
                else:
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
