"""`monbus graphite pull`'s polling logic against a small render-API stand-in (it can fail on
demand and serves plain-path targets from real whisper files, in graphite-web's JSON shape
`[{"target", "tags", "datapoints": [[value, ts], ...]}]`, nulls included).  The real
graphite-web, with Graphite functions, is in test_graphite_pull_web.py."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
import whisper

from helpers import collect, wait_for


class RenderStandIn:
    def __init__(self, root):
        self.root = root
        self.requests = []
        self.fail_next = 0
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                u = urlparse(self.path)
                q = parse_qs(u.query)
                outer.requests.append(q)
                if u.path != "/render" or q.get("format") != ["json"]:
                    self.send_error(404)
                    return
                if outer.fail_next:
                    outer.fail_next -= 1
                    self.send_error(500, "boom")
                    return
                out = []
                for t in q["target"]:
                    path = outer.root / (t.replace(".", "/") + ".wsp")
                    if not path.exists():
                        continue
                    (start, _, step), values = whisper.fetch(str(path), time.time() - 600)
                    out.append({"target": t, "tags": {"name": t},
                                "datapoints": [[v, start + i * step]
                                               for i, v in enumerate(values)]})
                body = json.dumps(out).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def render(tmp_path):
    r = RenderStandIn(tmp_path / "whisper")
    yield r
    r.close()


def write_points(root, series, points):
    path = root / (series.replace(".", "/") + ".wsp")
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        whisper.create(str(path), [(10, 360)])
    whisper.update_many(str(path), points)


def test_pull_publishes_only_new_points(relay, subscribe, daemon, render):
    now = int(time.time()) // 10 * 10
    write_points(render.root, "collectd.web01.load", [(now - 60 + 10 * k, k) for k in range(3)])
    sub = subscribe("graphite.**")
    render.fail_next = 1        # the first poll fails: counted, logged, the loop goes on
    p = daemon("graphite", "pull", "--relay", relay.input, "--url", render.url,
               "--target", "collectd.web01.load", "--target", "no.such.series",
               "--prefix", "graphite.gw", "--interval", "1", "--from", "-10min")
    got = collect(sub, 3, 60)
    assert [(x.series, x.value, x.timestamp) for x in got] == [
        ("graphite.gw.collectd.web01.load", float(k), float(now - 60 + 10 * k))
        for k in range(3)]
    write_points(render.root, "collectd.web01.load", [(now - 30, 7.5)])
    got = collect(sub, 1, 60)
    assert [(x.value, x.timestamp) for x in got] == [(7.5, float(now - 30))]
    n = len(render.requests)
    wait_for(lambda: len(render.requests) >= n + 2, 60, what="more polls")
    assert sub.recv_lines(1.0) is None      # nothing new: nothing published again
    assert "render API" in p.text() and "500" in p.text()
    assert p.stop() == 0


def test_pull_once_sanitises_function_names(relay, subscribe, monbus, render):
    now = int(time.time()) // 10 * 10
    write_points(render.root, "app.web01.req", [(now - 20, 3.0)])
    sub = subscribe("graphite.**")
    # the stand-in names the series after the target: a function expression here
    from monbus.bridges.graphite.render import RenderState
    st = RenderState("graphite.gw")
    body = json.dumps([{"target": "sumSeries(app.*.req)", "datapoints": [[3.0, now - 20],
                                                                          [None, now - 10]]}])
    [line] = st.new_points(body.encode())
    assert line.series == "graphite.gw.sumSeries_app___req_" and line.value == 3.0
    r = monbus("graphite", "pull", "--relay", relay.input, "--url", render.url, "--target",
               "app.web01.req", "--prefix", "graphite.gw", "--once")
    assert r.returncode == 0, r.stderr
    [got] = collect(sub, 1, 60)
    assert (got.series, got.value) == ("graphite.gw.app.web01.req", 3.0)


def test_pull_bad_prefix(monbus):
    r = monbus("graphite", "pull", "--url", "http://127.0.0.1:9", "--target", "x",
               "--prefix", "single", "--once")
    assert r.returncode != 0 and "prefix" in r.stderr and "Traceback" not in r.stderr
