"""The README's first command runs `monbus demo`: it must show every bridge's real sample data."""
import importlib.util
import re

from monbus.core.demo import BRIDGES


def test_demo_shows_every_bridge_that_exists(monbus):
    r = monbus("demo", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    counts = dict(re.findall(r"(\w+)=(\d+)", r.stdout.splitlines()[-1].split(";")[0]))
    assert int(counts.get("demo", 0)) == 1
    for name in BRIDGES:
        if importlib.util.find_spec(f"monbus.bridges.{name}.demo") is None:
            continue
        m = re.search(rf"^# {name}: sent (\d+) lines", r.stdout, re.M)
        assert m, f"{name} demo did not run:\n{r.stdout[-2000:]}"
        assert int(m.group(1)) > 0
    assert "lost (sequence gaps): 0" in r.stdout
