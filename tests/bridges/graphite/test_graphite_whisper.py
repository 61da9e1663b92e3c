"""`monbus carbon` with no --carbon writes whisper files itself, in carbon's layout (checked
against carbon's own TaggedSeries.encode), and the demo feed works without any daemon."""
from __future__ import annotations

import json
import subprocess
import time

import whisper

from helpers import collect, wait_for


def carbon_paths(series: list[str]) -> list[str]:
    """Where carbon-cache itself stores each series (its cache normalises tagged names,
    its database encodes them), computed by the Debian graphite-carbon package."""
    code = ("import json,sys\nfrom carbon.util import TaggedSeries\n"
            "print(json.dumps([TaggedSeries.encode(TaggedSeries.parse(s).path, '/') + '.wsp' "
            "for s in json.load(sys.stdin)]))")
    r = subprocess.run(["/usr/bin/python3", "-c", code], input=json.dumps(series),
                       capture_output=True, text=True, check=True, timeout=60)
    return json.loads(r.stdout)


def test_whisper_mode_writes_carbons_layout(relay, daemon, tmp_path):
    from monbus.core.bus import Sender
    wdir = tmp_path / "whisper"
    p = daemon("carbon", "--connect", relay.output, "--whisper", wdir, "--retention",
               "1s:1h,1m:1d", "--selfmetrics-interval", "0", "--relay", relay.input, "wsp.**")
    wait_for(lambda: relay.relay._subs, 60, what="monbus carbon to subscribe")
    now = int(time.time())
    series = ["wsp.web01.cpu.idle", "wsp.web01.req;env=prod;dc=par.1"]
    s = Sender(relay.input, None, 10.0)
    for k in range(60):
        for i, name in enumerate(series):
            s.add(f"{name} {k * 1.5 + i} {now - 100 + k} mtype=gauge unit=%25")
    assert s.close(30.0)["lost_lines"] == 0
    paths = [wdir / rel for rel in carbon_paths(series)]

    def complete():
        for i, path in enumerate(paths):
            if not path.exists():
                return False
            (start, _, step), values = whisper.fetch(str(path), now - 101, now - 40)
            got = {start + j * step: v for j, v in enumerate(values)}
            if any(got.get(now - 100 + k) != k * 1.5 + i for k in range(60)):
                return False
        return True
    wait_for(complete, 30, interval=0.2, what="all points in whisper")
    info = whisper.info(str(paths[0]))
    assert [(a["secondsPerPoint"], a["points"]) for a in info["archives"]] == [(1, 3600),
                                                                             (60, 1440)]
    assert p.stop() == 0, p.text()


def test_demo_feed(relay, subscribe):
    from monbus.bridges.graphite.demo import feed
    sub = subscribe("collectd.**")
    n = feed(relay.input, None)
    assert n == 350
    got = collect(sub, n, 60)
    assert got[0].series == "collectd.cdhost_monbus_example.load.load.shortterm"
