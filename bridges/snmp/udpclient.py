"""One UDP socket for every SNMPv1/v2c target: send requests, match responses.

A response is accepted only if its request-id is one we are waiting for, it comes from the
address the request went to and carries the same community (RFC 3416 section 4.1: the
request-id is what pairs them); anything else is counted and dropped, never an error.
Retries re-send the same request-id, so a late answer to the first try still counts.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import random

from .ber import BerError, decode_response, encode_request

log = logging.getLogger("monbus.snmp.poll")


class NoResponse(Exception):
    """No answer after every retry."""


def _norm(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host.split("%", 1)[0]))
    except ValueError:
        return host


class CommunityClient(asyncio.DatagramProtocol):
    """The protocol of one UDP socket (per address family)."""

    def __init__(self):
        self.transport = None
        self.pending: dict[int, tuple] = {}   # request-id -> (future, (host, port), community)
        self.stats = {"bad_responses": 0, "unexpected_responses": 0}
        self.last_error = ""

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        try:
            version, community, rid, es, ex, vbs = decode_response(data)
        except BerError as e:
            self.stats["bad_responses"] += 1
            self.last_error = f"from {addr[0]}:{addr[1]}: {e}"
            log.warning("bad SNMP response %s", self.last_error)
            return
        p = self.pending.get(rid)
        if p is None or p[1] != (_norm(addr[0]), addr[1]) or p[2] != community:
            self.stats["unexpected_responses"] += 1
            return
        if not p[0].done():
            p[0].set_result((es, ex, vbs))

    def error_received(self, exc) -> None:  # ICMP errors on Linux: ignored, the timeout acts
        pass

    async def request(self, address: tuple, version: int, community: bytes, pdu: int, oids,
                      reps: int, timeout: float, retries: int) -> tuple:
        """(error-status, error-index, varbinds); raises NoResponse."""
        rid = random.getrandbits(31)
        while rid in self.pending:
            rid = random.getrandbits(31)
        payload = encode_request(version, community, pdu, rid, oids, 0, reps)
        fut = asyncio.get_running_loop().create_future()
        self.pending[rid] = (fut, (_norm(address[0]), address[1]), community)
        try:
            for _ in range(retries + 1):
                self.transport.sendto(payload, address)
                try:
                    return await asyncio.wait_for(asyncio.shield(fut), timeout)
                except asyncio.TimeoutError:
                    continue
            raise NoResponse("No SNMP response received before timeout")
        finally:
            self.pending.pop(rid, None)
            if not fut.done():
                fut.cancel()


async def open_client(family) -> tuple:
    """(transport, CommunityClient) on an ephemeral port of `family`."""
    import socket
    loop = asyncio.get_running_loop()
    local = ("::", 0) if family == socket.AF_INET6 else ("0.0.0.0", 0)
    return await loop.create_datagram_endpoint(CommunityClient, local_addr=local,
                                               family=family)
