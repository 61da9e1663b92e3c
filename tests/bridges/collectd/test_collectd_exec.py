"""A real collectd runs `monbus collectd exec` under its Exec plugin (as nobody) and stores
bus lines with its csv plugin; a PUTNOTIF it prints becomes a collectd notification that the
NotificationExec plugin hands to `monbus collectd notify`, back onto the bus."""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

from helpers import wait_for


def _exec_line(cmd, *args) -> str:
    return " ".join('"' + a.replace("\\", "\\\\").replace('"', '\\"') + '"'
                    for a in ["nobody:nogroup", *cmd, *args])


def _procs_with(marker: str) -> list[int]:
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline and b"collectd\0exec" in cmdline:
                out.append(int(pid))
    return out


# One csv row: `%.3f` of the time, `%lf` of the value.  The test collectd runs one write
# thread (conftest.collectd_conf), so every complete row of a file is a whole row.
_ROW = re.compile(r"(\d{9,}\.\d{3}),([-+0-9.e]+)\Z")


def _csv_rows(path_glob) -> dict:
    """{time: value} of collectd csv files (complete rows only: collectd may be writing)."""
    rows = {}
    for f in path_glob:
        text = f.read_text()
        lines = text[:text.rfind("\n") + 1].splitlines()
        assert not lines or lines[0] == "epoch,value", (f, text)
        for row in lines[1:]:
            m = _ROW.match(row)
            assert m, (f, row, text)
            rows[round(float(m[1]))] = (float(m[2]), row)
    return rows


def test_collectd_exec_stores_bus_lines_and_notifications_come_back(
        relay, subscribe, open_tmp, start_collectd, start_listener, nobody_monbus):
    import socket

    from helpers import free_port
    from monbus.core.bus import Sender
    csv = open_tmp / "csv"
    port = free_port(socket.SOCK_DGRAM)
    # the same notification also travels through collectd's network plugin to the listener
    start_listener("--listen", f"127.0.0.1:{port}", "--relay", relay.input,
                   "--selfmetrics-interval", "1")
    body = f"""
LoadPlugin network
<Plugin network>
  <Server "127.0.0.1" "{port}">
  </Server>
</Plugin>
LoadPlugin exec
<Plugin exec>
  Exec {_exec_line(nobody_monbus, "collectd", "exec", "--connect", relay.output, "app.**")}
  NotificationExec {_exec_line(nobody_monbus, "collectd", "notify", "--relay", relay.input)}
</Plugin>
LoadPlugin csv
<Plugin csv>
  DataDir "{csv}"
  StoreRates false
</Plugin>
"""
    sub = subscribe("collectd.**")
    selfm = subscribe("monbus.**")
    collectd = start_collectd(open_tmp, body)
    sender = Sender(relay.input)
    sent: dict = {}
    t0 = int(time.time()) - 1000

    def stored():
        # the exec program subscribes some time after collectd starts: keep publishing
        # fresh values until collectd has written some of them
        t = t0 + len(sent)
        sent[t] = (len(sent) * 7, 20.5 + len(sent))
        sender.add(f"app.web01.requests {sent[t][0]} {t} mtype=derive interval=5")
        sender.add(f"app.web01.disk.temp {sent[t][1]} {t}")
        sender.add(f"app.web01.http 2 {t} mtype=state output=CRITICAL%20-%20socket%20timeout")
        sender.tick()
        der = _csv_rows((csv / "web01" / "app").glob("derive-requests-*"))
        gau = _csv_rows((csv / "web01" / "app").glob("gauge-disk.temp-*"))
        return (der, gau) if len(der) >= 2 and len(gau) >= 2 else None

    der, gau = wait_for(stored, timeout=40, interval=0.3, what="bus values in collectd's csv")
    sender.close()
    raw = {f.name: f.read_bytes() for f in (csv / "web01" / "app").iterdir()}
    for t, (v, row) in der.items():
        assert t in sent and sent[t][0] == v, (row, der, raw)
    for t, (v, row) in gau.items():
        assert t in sent and sent[t][1] == v, (row, gau, raw)
    # the PUTNOTIF went through collectd and its NotificationExec back to the bus
    # (and through the network plugin to the listener: both give the same line)
    deadline = time.monotonic() + 30
    notes: list = []
    while len(notes) < 2 and time.monotonic() < deadline:
        notes += [x for x in sub.recv_lines(0.5) or [] if x.path.endswith(".notification")]
    assert len(notes) >= 2, f"notifications: {notes}"

    def listener_saw_one():
        return any(x.path.endswith(".collectd.notifications") and x.value >= 1
                   for x in selfm.recv_lines(0.5) or [])
    wait_for(listener_saw_one, timeout=20, what="a notification through the network plugin")
    for n in notes:
        assert n.path == "collectd.web01.app.http.notification"
        assert n.value == 2 and n.meta == {"mtype": "state", "output": "CRITICAL - socket timeout"}
        assert n.timestamp in sent
    # collectd stops its exec children when it stops
    assert _procs_with(relay.output)
    collectd.terminate()
    collectd.wait(15)
    wait_for(lambda: not _procs_with(relay.output), timeout=15, what="the exec program to end")
