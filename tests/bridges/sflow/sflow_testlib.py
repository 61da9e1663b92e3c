"""Helpers for the sFlow tests: the corpus files and their tshark decodes."""
from __future__ import annotations

import json
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "data" / "sflow"

CAPTURES = [
    "tcpdump_sflow_multiple_counter_30_pdus.pcap",
    "tcpdump_sflow-print-v6.pcap",
    "tcpdump_sflow_expanded.pcap",
    "tcpdump_sflow_print-segv.pcap",
    "ndpi_sflow.pcap",
    "vectors/all_vectors.wrapped.pcap",
]


def pairs_tree(path: Path):
    """tshark JSON with objects as lists of (key, value) pairs: tshark repeats keys."""
    with open(path) as f:
        return json.load(f, object_pairs_hook=lambda p: p)


def get(pairs, key, default=None):
    for k, v in pairs:
        if k == key:
            return v
    return default


def _is_obj(v):
    return isinstance(v, list) and v and isinstance(v[0], tuple)


def subtrees(pairs):
    """(title, pairs) for every nested object.  tshark -T json groups objects with the same
    title into one array (so their order relative to other titles is lost)."""
    out = []
    for k, v in pairs:
        if _is_obj(v):
            out.append((k, v))
        elif isinstance(v, list) and v and all(_is_obj(x) for x in v):
            out.extend((k, x) for x in v)
    return out


def tshark_frames(capture: str):
    """(frame number, udp payload bytes, sflow layer pairs or None) per frame of a capture."""
    out = []
    for pkt in pairs_tree(DATA / (capture + ".tshark.json")):
        layers = get(get(pkt, "_source"), "layers")
        frame = get(layers, "frame")
        udp = get(layers, "udp")
        payload = get(udp, "udp.payload") if udp else None
        if payload is None:
            continue
        out.append((int(get(frame, "frame.number")), bytes.fromhex(payload.replace(":", "")),
                    get(layers, "sflow"), layers))
    return out


def all_datagrams():
    """Every UDP payload of every capture (tshark's extraction), with where it came from."""
    out = []
    for cap in CAPTURES:
        for num, payload, _, _ in tshark_frames(cap):
            out.append((f"{cap}#{num}", payload))
    for f in sorted((DATA / "vectors").glob("*.bin")):
        data = f.read_bytes()
        if f.name.endswith(".ethframe.bin"):
            data = data[42:]  # Ethernet + IPv4 + UDP headers of the original frame
        out.append((f.name, data))
    return out


def wait_listening(listener, sub, payload, timeout=30.0):
    """Send `payload` until lines come back on `sub` (the listener is up); return them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert listener.proc.poll() is None, listener.proc.communicate()[1]
        listener.send(payload)
        got = sub.recv_lines(0.5)
        if got:
            return got
    raise AssertionError("the listener never answered")
