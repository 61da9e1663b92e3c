"""`monbus graphite pull` against a real graphite-web (Debian `graphite-web` 1.1.8, Django's
server on loopback) reading whisper files in a temp dir: targets with Graphite functions, as
a user writes them, give on the bus exactly the datapoints graphite-web's own
/render?format=json gives."""
from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.parse
import urllib.request

import pytest
import whisper

from helpers import collect, free_port, stop_process, wait_for

GRAPHITE_PY = "/usr/bin/python3"   # graphite-web is a Debian package for the system Python

SETTINGS = '''
from graphite.settings import *  # noqa: F401,F403
import os
_T = os.environ["MONBUS_TEST_GRAPHITE_DIR"]
STORAGE_DIR = _T
WHISPER_DIR = os.path.join(_T, "whisper")
STANDARD_DIRS = [WHISPER_DIR]
CERES_DIR = os.path.join(_T, "ceres")
LOG_DIR = _T
INDEX_FILE = os.path.join(_T, "index")
DATABASES = {"default": {"NAME": os.path.join(_T, "graphite.db"),
                         "ENGINE": "django.db.backends.sqlite3"}}
SECRET_KEY = "monbus-tests-only"
'''


@pytest.fixture
def graphite_web(tmp_path):
    """graphite-web on 127.0.0.1:<free port> over tmp_path/whisper; yields (url, whisper dir)."""
    if not os.path.exists("/usr/lib/python3/dist-packages/graphite/render"):
        pytest.skip("Debian graphite-web not installed (.ci/apt.d/graphite.txt lists it)")
    (tmp_path / "whisper").mkdir()
    (tmp_path / "monbus_gw_settings.py").write_text(SETTINGS)
    env = dict(os.environ, MONBUS_TEST_GRAPHITE_DIR=str(tmp_path), PYTHONPATH=str(tmp_path),
               DJANGO_SETTINGS_MODULE="monbus_gw_settings")
    env.pop("PYTHONHOME", None)
    subprocess.run([GRAPHITE_PY, "-m", "django", "migrate", "--run-syncdb", "-v0"], env=env,
                   check=True, capture_output=True, timeout=120)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([GRAPHITE_PY, "-m", "django", "runserver", f"127.0.0.1:{port}",
                             "--noreload"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)

    def up():
        try:
            urllib.request.urlopen(f"{url}/render?target=x&format=json", timeout=2).read()
            return True
        except OSError:
            return False
    try:
        wait_for(up, 60, what="graphite-web answering")
        yield url, tmp_path / "whisper"
    finally:
        stop_process(proc)


def _write(root, path, points):
    f = root.joinpath(*path.split(".")).with_suffix(".wsp")
    f.parent.mkdir(parents=True, exist_ok=True)
    whisper.create(str(f), [(10, 360)])
    whisper.update_many(str(f), [(t, v) for t, v in points])


def _render(url, target):
    q = urllib.parse.urlencode({"target": target, "format": "json", "from": "-10min"})
    return json.loads(urllib.request.urlopen(f"{url}/render?{q}", timeout=30).read())


def test_pull_from_real_graphite_web_with_functions(graphite_web, relay, subscribe, monbus):
    url, root = graphite_web
    now = int(time.time()) // 10 * 10
    _write(root, "app.web01.req", [(now - 60 + 10 * i, 1.5 * i) for i in range(5)])
    _write(root, "app.web02.req", [(now - 60 + 10 * i, 10.0 + i) for i in range(5)])
    targets = ["sumSeries(app.*.req)", "alias(scale(app.web01.req,2),'web01 doubled')"]
    want = {}
    for target in targets:
        for series in _render(url, target):
            pts = [(v, t) for v, t in series["datapoints"] if v is not None]
            want[series["target"]] = pts
    assert want["sumSeries(app.*.req)"][:5] == [(10.0 + 2.5 * i, now - 60 + 10 * i)
                                                  for i in range(5)]
    sub = subscribe("graphite.**")
    args = ["graphite", "pull", "--relay", relay.input, "--url", url, "--prefix", "graphite.gw",
            "--from", "-10min", "--once"]
    for t in targets:
        args += ["--target", t]
    r = monbus(*args)
    assert r.returncode == 0, r.stderr
    n = sum(len(v) for v in want.values())
    got = collect(sub, n, 60)
    by = {}
    for ln in got:
        by.setdefault(ln.series, []).append((ln.value, ln.timestamp))
    assert sorted(by) == ["graphite.gw.sumSeries_app___req_", "graphite.gw.web01_doubled"]
    assert sorted(by["graphite.gw.sumSeries_app___req_"], key=lambda p: p[1]) == \
        want["sumSeries(app.*.req)"]
    assert sorted(by["graphite.gw.web01_doubled"], key=lambda p: p[1]) == \
        want["web01 doubled"]
