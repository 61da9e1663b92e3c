"""The `monbus` command as a user runs it: help, errors, config precedence, tail, keygen."""
from __future__ import annotations

import json
import subprocess
import time

from helpers import collect, monbus_cmd, wait_for
from monbus.core.bus import Sender


def test_help_lists_every_registered_command_without_importing_them(monbus):
    from monbus.core.cli import COMMANDS
    r = monbus("--help")
    assert r.returncode == 0
    for name in COMMANDS:
        assert name in r.stdout
    # the help is built from the registry: no bridge module (nor zmq) is imported for it
    code = ("import sys; from monbus.core.cli import main\n"
            "try: main(['--help'])\nexcept SystemExit: pass\n"
            "print(sorted(m for m in sys.modules if m.startswith(('monbus.bridges.', 'zmq'))))")
    out = subprocess.run([monbus_cmd()[0].replace("monbus", "python")] if False else
                         [__import__("sys").executable, "-c", code],
                         capture_output=True, text=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_every_core_command_documents_its_options(monbus):
    for cmd, opts in {"relay": ["--input", "--output", "--spool", "--curve-secret"],
                      "send": ["--relay", "--spool", "--timeout", "MONBUS_RELAY"],
                      "tail": ["--connect", "--count", "--timeout", "--format", "MONBUS_CONNECT"],
                      "keygen": ["DIRECTORY"]}.items():
        r = monbus(cmd, "--help")
        assert r.returncode == 0
        for o in opts:
            assert o in r.stdout, (cmd, o)


def test_bad_input_gives_one_line_error_not_a_traceback(monbus, tmp_path):
    cases = [
        ("send", "--relay", "not-an-endpoint", "a.b 1 2"),
        ("send", "--timeout", "abc", "a.b 1 2"),
        ("tail", "--connect", "bogus://x", "--timeout", "0.1"),
        ("relay", "--input", "tcp://256.1.1.1:1"),
        ("--config", str(tmp_path / "missing.toml"), "send", "a.b 1 2"),
        ("nosuchcommand",),
    ]
    for args in cases:
        r = monbus(*args, timeout=30)
        assert r.returncode != 0, args
        assert "Traceback" not in r.stderr, (args, r.stderr)
        assert r.stderr.strip(), args
    bad = tmp_path / "bad.toml"
    bad.write_text("relay = [unclosed\n")
    r = monbus("--config", bad, "send", "a.b 1 2")
    assert r.returncode != 0 and "cannot read config" in r.stderr and "Traceback" not in r.stderr


def test_send_reports_bad_lines_and_sends_the_good_ones(relay, subscribe, monbus):
    sub = subscribe("app.**")
    r = monbus("send", "--relay", relay.input, input="app.h.a 1 2\nrubbish\napp.h.b nan 3\napp.h.c 4 5\n")
    assert r.returncode == 1
    assert "'rubbish'" in r.stderr and "not finite" in r.stderr
    got = collect(sub, 2)
    assert [x.path for x in got] == ["app.h.a", "app.h.c"]


def test_config_file_then_env_then_flags(relay, subscribe, monbus, tmp_path):
    sub = subscribe("cfg.**")
    cfg = tmp_path / "monbus.toml"
    cfg.write_text(f'[global]\nrelay = "{relay.input}"\ntimeout = 1.5\n\n[send]\nprefix = "cfg.fromfile"\n')
    r = monbus("--config", cfg, "send", "x 1 1700000000")
    assert r.returncode == 0, r.stderr
    assert collect(sub, 1)[0].path == "cfg.fromfile.x"
    # env beats the file: a relay that does not exist, so the line is spooled
    spool = tmp_path / "sender-spool"  # not the fixture relay's spool, which it drains
    r = monbus("--config", cfg, "send", "--spool", spool, "x 2 1700000000",
               env={"MONBUS_RELAY": "tcp://127.0.0.1:9", "MONBUS_TIMEOUT": "0.2"})
    assert r.returncode == 0 and len(list(spool.iterdir())) == 1
    # a flag beats both
    r = monbus("--config", cfg, "send", "--relay", relay.input, "--prefix", "cfg.flag",
               "x 3 1700000000", env={"MONBUS_RELAY": "tcp://127.0.0.1:9"})
    assert r.returncode == 0, r.stderr
    assert collect(sub, 1)[0].path == "cfg.flag.x"
    cfg.write_text("bogus_key = 1\n")
    r = monbus("--config", cfg, "send", "a.b 1 2")
    assert r.returncode != 0 and "unknown top-level key 'bogus_key'" in r.stderr
    cfg.write_text("[global]\nbogus = 1\n")
    r = monbus("--config", cfg, "send", "a.b 1 2")
    assert r.returncode != 0 and "unknown key 'bogus' in [global]" in r.stderr


def test_tail_is_live_counts_and_json(relay, monbus):
    p = subprocess.Popen(monbus_cmd() + ["tail", "--connect", relay.output, "--count", "3",
                                         "--format", "json", "--timeout", "30", "tail.**"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: relay.relay._subs, what="tail's subscription")
        with Sender(relay.input, None) as s:
            s.add("other.h.x 0 1700000000")
            for i in range(5):
                s.add(f"tail.h.x;k=v {i} 1700000000 unit=B")
        out, err = p.communicate(timeout=30)
    finally:
        p.kill()
    rows = [json.loads(x) for x in out.splitlines()]
    assert p.returncode == 0, err
    assert [r["value"] for r in rows] == [0, 1, 2]
    assert rows[0] == {"path": "tail.h.x", "tags": {"k": "v"}, "value": 0.0,
                       "timestamp": 1700000000.0, "meta": {"unit": "B"}}


def test_tail_output_is_flushed_per_message(relay):
    p = subprocess.Popen(monbus_cmd() + ["tail", "--connect", relay.output, "--timeout", "30"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: relay.relay._subs, what="tail's subscription")
        t0 = time.monotonic()
        with Sender(relay.input, None) as s:
            s.add("live.h.x 1 1700000000")
        assert p.stdout.readline().strip() == "live.h.x 1 1700000000"
        assert time.monotonic() - t0 < 10
    finally:
        p.terminate()
        p.wait(10)


def test_keygen_and_unavailable_bridge_message(monbus, tmp_path):
    r = monbus("keygen", tmp_path, "relay1")
    assert r.returncode == 0
    assert (tmp_path / "relay1.key").exists() and (tmp_path / "relay1.key_secret").exists()
    assert oct((tmp_path / "relay1.key_secret").stat().st_mode)[-3:] == "600"


def test_self_metrics_are_published(tmp_path):
    import threading
    from monbus.core.bus import Subscriber
    from monbus.core.relay import Relay
    r = Relay(["tcp://127.0.0.1:*"], ["tcp://127.0.0.1:*"], str(tmp_path), selfmetrics_interval=0.2,
              host="testhost")
    th = threading.Thread(target=r.run, kwargs={"install_signals": False}, daemon=True)
    th.start()
    sub = Subscriber([r.endpoints_out[0]], ["monbus.testhost.relay.**"])
    try:
        with Sender(r.endpoints_in[0], None) as s:
            s.add("x.h.y 1 2")
        want = {"lines_in", "lines_out", "messages_in", "spool_bytes", "subscriptions"}
        seen = {}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not want <= set(seen):
            for line in sub.recv_lines(0.5) or ():
                seen[line.path.rsplit(".", 1)[1]] = line
        assert want <= set(seen)
        assert seen["lines_in"].meta["mtype"] == "counter" and seen["lines_in"].value >= 1
        assert seen["spool_bytes"].meta["mtype"] == "gauge"
    finally:
        sub.close()
        r.stop()
        th.join(5)


def test_contrib_config_example_is_valid(monkeypatch):
    from helpers import ROOT
    from monbus.core.cli import load_config
    for k in ("MONBUS_RELAY", "MONBUS_CONNECT", "MONBUS_SPOOL", "MONBUS_TIMEOUT"):
        monkeypatch.delenv(k, raising=False)
    dm = load_config(str(ROOT / "contrib" / "monbus" / "monbus.toml"))
    import os
    assert os.environ["MONBUS_RELAY"] == "tcp://127.0.0.1:7701"
    assert os.environ["MONBUS_CONNECT"] == "tcp://127.0.0.1:7702"
    assert dm["relay"]["input"] == ["tcp://127.0.0.1:7701"] and dm["relay"]["spool_max"] == "1G"
    # the [relay] keys are the relay command's parameter names
    from monbus.core.commands import relay
    names = {p.name for p in relay.params}
    assert set(dm["relay"]) <= names
