from helpers import collect


def test_send_reaches_subscriber(relay, subscribe, monbus):
    sub = subscribe("app.**")
    r = monbus("send", "--relay", relay.input, "app.web01.cpu 1.5 1700000000 unit=%25")
    assert r.returncode == 0, r.stderr
    [line] = collect(sub, 1)
    assert line.path == "app.web01.cpu" and line.value == 1.5 and line.meta == {"unit": "%"}
