"""`monbus demo` for the Nagios bridge: a real Nagios 4 perfdata file through `monbus nagios spool`'s
decoder to the relay.  data/nagios4-perfdata.txt was written by Nagios 4.4.6 (Debian nagios4-core)
running monitoring-plugins 2.3.3 check_disk/check_load/check_procs/check_users and check_dummy with
hand-made edge cases, with the perfdata-file template of contrib/nagios/nagios.cfg."""
from __future__ import annotations

import re
from importlib.resources import files

from monbus.core.bus import Sender
from monbus.core.selfmetrics import Counters

from .perffiles import FileProcessor, wait_delivered


def feed(relay: str, spool: str | None) -> int:
    """Send the sample perfdata file's lines (re-stamped to now) to `relay`; return how many."""
    import time
    text = files("monbus.bridges.nagios").joinpath("data/nagios4-perfdata.txt").read_text("utf-8")
    text = re.sub(r"TIMET::\d+", "TIMET::", text)  # no TIMET: the decoder uses `now`
    sender = Sender(relay, spool, 2.0)
    counters = Counters("nagios_demo")
    FileProcessor(sender, counters).feed_text(text, time.time(), "demo")
    wait_delivered(sender)
    sender.close()
    return int(counters["lines"])
