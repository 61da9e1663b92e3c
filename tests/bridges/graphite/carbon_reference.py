"""Carbon's own acceptance rule for plaintext lines, run with Debian's /usr/bin/python3 and the
graphite-carbon package, as an independent reference for `monbus graphite listen`.

Input: JSON list of hex datagrams on stdin.  Output: JSON list of accepted
[metric, value, timestamp] in order (carbon's MetricDatagramReceiver.datagramReceived:
utf-8 decode, splitlines, `line.strip().split()` into 3 fields, float(); then
MetricReceiver.metricReceived drops NaN; tagged names must parse as carbon's TaggedSeries).
"""
import json
import sys

from carbon.util import TaggedSeries

out = []
for hexdata in json.load(sys.stdin):
    try:
        data = bytes.fromhex(hexdata).decode("utf-8")
    except UnicodeDecodeError:
        continue  # carbon's datagramReceived raises here: the whole datagram is dropped
    for line in data.splitlines():
        try:
            metric, value, timestamp = line.strip().split()
            datapoint = (float(timestamp), float(value))
        except ValueError:
            continue
        if datapoint[1] != datapoint[1]:
            continue
        if ";" in metric:
            try:
                TaggedSeries.parse(metric)
            except Exception:
                continue
        out.append([metric, datapoint[1], datapoint[0]])
json.dump(out, sys.stdout)
