"""Polling many agents concurrently from one process (asyncio).

Strategy:
- SNMPv1/v2c: one UDP socket per address family for every target, requests and responses
  in BER by ber.py (pyasn1 would cost ~0.2 ms a varbind, 50 times more).
- SNMPv3 (or everything, with engine="pysnmp"): one pysnmp `SnmpEngine` per process (an
  engine costs tens of milliseconds and megabytes; one multiplexes every target).  Each
  target is configured in it once (pysnmp's LCD) and driven with the single-run command
  generators, so a request is one PDU and one callback: no MIB resolution, no hidden loop.
- Per target: the scalars (always with sysUpTime.0, which doubles as the liveness probe)
  in one GET, then each table's columns walked side by side: GETBULK for v2c/v3 (the
  first column alone to count the rows, then the rest for exactly that many repetitions),
  GETNEXT for v1.  A column ends when the agent leaves its subtree, says endOfMibView, or
  returns an OID that does not increase (RFC 3416 section 4.2.3: a broken agent must not
  make us loop).  The walks are ours, which is what makes them stop.
- Any error (timeout, unknown user, wrong digest...) ends the target's poll at once:
  pysnmp's own bulk walk would keep asking an unreachable host, we never do.
- Every target runs under `asyncio.wait_for(..., deadline)` and a semaphore bounding the
  targets in flight, so a dead or slow device times out on its own and never delays
  the others.
"""
from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass, field

from .ber import GET, GETBULK, GETNEXT
from .modules import SYS_UPTIME
from .udpclient import NoResponse, open_client
from .targets import Target

# cap on varbinds asked for in one GETBULK (repeaters x max-repetitions): keeps responses
# well under common agents' message size limits, so they need not truncate
MAX_BULK_VARBINDS = 250
MAX_GET_VARBINDS = 60
MAX_TABLE_ROWS = 100_000   # per column: an agent that never ends a table is cut off


class PollError(Exception):
    """The agent did not answer usefully (timeout, auth failure, error status)."""


@dataclass
class PollResult:
    target: Target
    ok: bool
    error: str = ""
    scalars: dict = field(default_factory=dict)     # OID -> (tag, value)
    walked: dict = field(default_factory=dict)      # column OID -> {index: (tag, value)}
    varbinds: int = 0
    requests: int = 0
    elapsed: float = 0.0
    uptime: int | None = None                      # sysUpTime.0 in TimeTicks
    problems: list = field(default_factory=list)   # non-fatal: columns cut short...


class _Session:
    """One target: `_request(pdu, oids, reps)` -> (error-status, error-index, varbinds as
    [(oid tuple, (tag, value))]), raising PollError when there is no usable answer; and
    the GET and walk logic on top of it."""

    def __init__(self, target: Target):
        self.t = target
        self.requests = 0

    async def get(self, oids: list) -> dict:
        """GET, in chunks; v1 'noSuchName' drops the named OID and asks again."""
        out = {}
        todo = list(oids)
        while todo:
            chunk, todo = todo[:MAX_GET_VARBINDS], todo[MAX_GET_VARBINDS:]
            while chunk:
                es, ex, vbs = await self._request(GET, chunk, 0)
                if es == 2 and 1 <= ex <= len(chunk):  # noSuchName (SNMPv1, RFC 1157 4.1.2)
                    out[chunk[ex - 1]] = ("nosuchobject", None)
                    chunk = chunk[:ex - 1] + chunk[ex:]
                    continue
                if es:
                    raise PollError(f"GET error-status {_status_text(es)} at index {ex}")
                for o, tv in vbs:
                    out[o] = tv
                break
        return out

    async def walk(self, columns: tuple, result: PollResult) -> dict:
        """Walk the columns of one table; return column -> {index: (tag, value)}.

        GETBULK's cost is overshoot: asking 24 columns for 25 repetitions of a 4-row table
        returns 600 varbinds of which 96 are wanted (and decoding them is what costs).  So
        the first column is walked alone, which counts the rows R, and the others are then
        asked for R+1 repetitions: usually one request, all of it useful.
        """
        if self.t.version == "1" or len(columns) == 1:
            return await self._walk(columns, self.t.max_repetitions, result)
        got = await self._walk(columns[:1], self.t.max_repetitions, result)
        rows = len(got[columns[0]])
        got.update(await self._walk(columns[1:], rows + 1 if rows else self.t.max_repetitions,
                                    result))
        return got

    async def _walk(self, columns: tuple, reps: int, result: PollResult) -> dict:
        """Walk the columns side by side (GETBULK, or GETNEXT for v1)."""
        got = {c: {} for c in columns}
        cursor = {c: c for c in columns}
        active = list(columns)
        bulk = self.t.version != "1"
        while active:
            n = len(active)
            oids = [cursor[c] for c in active]
            if bulk:
                r = max(1, min(reps, MAX_BULK_VARBINDS // n))
                es, ex, vbs = await self._request(GETBULK, oids, r)
                if es == 1 and r > 1:            # tooBig: ask for fewer rows
                    reps = max(1, r // 2)
                    continue
            else:
                es, ex, vbs = await self._request(GETNEXT, oids, 0)
                if es == 2 and 1 <= ex <= n:     # v1 noSuchName: that column is past the end
                    active.pop(ex - 1)
                    continue
            if es:
                raise PollError(f"{'GETBULK' if bulk else 'GETNEXT'} error-status "
                                f"{_status_text(es)} at index {ex}")
            done = set()
            progressed = set()
            for i, (o, (tag, v)) in enumerate(vbs):
                c = active[i % n]
                if c in done:
                    continue
                if tag == "endofmibview" or o[:len(c)] != c:
                    done.add(c)
                    continue
                if o <= cursor[c]:               # not increasing: a broken agent
                    result.problems.append(f"OID not increasing at {'.'.join(map(str, o))}")
                    done.add(c)
                    continue
                rows = got[c]
                rows[o[len(c):]] = (tag, v)
                cursor[c] = o
                progressed.add(c)
                if len(rows) >= MAX_TABLE_ROWS:
                    result.problems.append(f"column {'.'.join(map(str, c))} cut at "
                                           f"{MAX_TABLE_ROWS} rows")
                    done.add(c)
            # a column the response said nothing new about is finished too (an empty or
            # truncated response must not make us ask the same question forever)
            active = [c for c in active if c not in done and c in progressed]
        return got


class _PysnmpSession(_Session):
    """Through the pysnmp engine (every version; the only way for SNMPv3)."""

    def __init__(self, poller: "Poller", target: Target, addr_name: str, context: bytes):
        super().__init__(target)
        self.p = poller
        self.addr = addr_name
        self.context = context

    async def _request(self, pdu: int, oids: list, reps: int) -> tuple:
        from .pysnmp_glue import NULL, ObjectName, neutral
        fut = asyncio.get_running_loop().create_future()

        def cb(engine, handle, error_indication, error_status, error_index, varbinds, ctx):
            if not fut.done():
                fut.set_result((error_indication, int(error_status or 0),
                                int(error_index or 0), varbinds))
        self.requests += 1
        vbs_in = [(ObjectName(o), NULL) for o in oids]
        if pdu == GETBULK:
            self.p.bulk_gen.send_varbinds(self.p.engine, self.addr, None, self.context, 0,
                                          reps, vbs_in, cb)
        else:
            gen = self.p.get_gen if pdu == GET else self.p.next_gen
            gen.send_varbinds(self.p.engine, self.addr, None, self.context, vbs_in, cb)
        ei, es, ex, vbs = await fut
        if ei:
            raise PollError(str(ei))
        return es, ex, [(tuple(name), neutral(val)) for name, val in vbs]


class _CommunitySession(_Session):
    """SNMPv1/v2c through `udpclient.CommunityClient` and the BER codec of ber.py."""

    def __init__(self, client, target: Target, address: tuple):
        super().__init__(target)
        self.client = client
        self.address = address
        self.version = 0 if target.version == "1" else 1
        self.community = target.community.encode()

    async def _request(self, pdu: int, oids: list, reps: int) -> tuple:
        self.requests += 1
        return await self.client.request(self.address, self.version, self.community, pdu,
                                         oids, reps, self.t.timeout, self.t.retries)


_STATUS = {1: "tooBig", 2: "noSuchName", 3: "badValue", 4: "readOnly", 5: "genErr",
           6: "noAccess", 16: "authorizationError"}


def _status_text(es: int) -> str:
    return f"{_STATUS.get(es, 'error')}({es})"


class Poller:
    """Polls targets; `await poll(target)` never raises for the agent's faults (they come
    back as PollResult.ok False) and never outlives the target's deadline.

    SNMPv1/v2c go through one UDP socket per address family and ber.py (fast); SNMPv3,
    or everything with `engine="pysnmp"`, through one pysnmp engine, created on first use.
    """

    def __init__(self, concurrency: int = 100, engine: str = "auto"):
        if engine not in ("auto", "pysnmp"):
            raise ValueError(f"engine must be auto or pysnmp, not {engine!r}")
        self.use_pysnmp = engine == "pysnmp"
        self.sem = asyncio.Semaphore(concurrency)
        self._engine = None
        self._clients: dict = {}
        self._sessions: dict[int, _Session] = {}

    @property
    def engine(self):
        """The process's one pysnmp engine, created on first use (importing pysnmp and
        making an engine cost ~0.4 s, which a v2c-only cron run never pays)."""
        if self._engine is None:
            from . import pysnmp_glue as g
            self._engine = g.SnmpEngine()
            self.lcd = g.CommandGeneratorLcdConfigurator()
            self.get_gen = g.cmdgen.GetCommandGenerator()
            self.next_gen = g.cmdgen.NextCommandGeneratorSingleRun()
            self.bulk_gen = g.cmdgen.BulkCommandGeneratorSingleRun()
        return self._engine

    @property
    def stats(self) -> dict:
        """Responses dropped by the v1/v2c sockets (malformed, or matching no request)."""
        out = {"bad_responses": 0, "unexpected_responses": 0}
        for _, client in self._clients.values():
            for k, v in client.stats.items():
                out[k] += v
        return out


    async def _community_session(self, t: Target) -> _Session:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(t.address, t.port, type=socket.SOCK_DGRAM)
        except OSError as e:
            raise PollError(f"cannot resolve {t.address}: {e}") from None
        fam, _, _, _, addr = infos[0]
        if fam not in self._clients:
            self._clients[fam] = await open_client(fam)
        return _CommunitySession(self._clients[fam][1], t, addr[:2])

    async def _session(self, t: Target) -> _Session:
        s = self._sessions.get(id(t))
        if s is not None:
            return s
        if t.version != "3" and not self.use_pysnmp:
            s = await self._community_session(t)
        else:
            from . import pysnmp_glue as g
            cls = g.Udp6TransportTarget if ":" in t.address else g.UdpTransportTarget
            try:
                tt = await cls.create((t.address, t.port), timeout=t.timeout,
                                      retries=t.retries)
            except Exception as e:  # noqa: BLE001 - resolution failures of every kind
                raise PollError(f"cannot resolve {t.address}: {e}") from None
            engine = self.engine
            addr, _ = self.lcd.configure(engine, g.auth_data(t), tt, t.context.encode())
            s = _PysnmpSession(self, t, addr, t.context.encode())
        self._sessions[id(t)] = s
        return s

    async def _poll(self, t: Target, result: PollResult) -> None:
        s = await self._session(t)
        scalar_oids = [SYS_UPTIME]
        for m in t.modules:
            for c in m.scalars:
                if c.oid not in scalar_oids:
                    scalar_oids.append(c.oid)
        try:
            result.scalars = await s.get(scalar_oids)
            up = result.scalars.get(SYS_UPTIME)
            if up and up[0] == "ticks":
                result.uptime = up[1]
            for m in t.modules:
                for table in m.tables:
                    cols = [c for c in table.walked() if c not in result.walked]
                    if cols:
                        result.walked.update(await s.walk(tuple(cols), result))
        finally:
            result.requests = s.requests
            s.requests = 0

    async def poll(self, t: Target) -> PollResult:
        """Poll every module of one target, within its deadline."""
        result = PollResult(t, False)
        async with self.sem:
            start = time.monotonic()
            try:
                await asyncio.wait_for(self._poll(t, result), t.effective_deadline)
                result.ok = True
            except asyncio.TimeoutError:
                result.error = (f"no complete answer within the deadline of "
                                f"{t.effective_deadline:g} s")
            except (PollError, NoResponse) as e:
                result.error = str(e)
            result.elapsed = time.monotonic() - start
        result.varbinds = len(result.scalars) + sum(len(v) for v in result.walked.values())
        return result

    def close(self) -> None:
        """Close the sockets (and the engine's)."""
        for transport, _ in self._clients.values():
            transport.close()
        self._clients.clear()
        if self._engine is not None:
            try:
                self._engine.close_dispatcher()
            except Exception:  # noqa: BLE001 - best effort at shutdown
                pass
