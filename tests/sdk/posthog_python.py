"""Sends events to a collector with the stock posthog SDK from PyPI.

Usage: posthog_python.py URL TOKEN. Prints {"sent": [...], "errors": [...]} as JSON.
"""

import json
import sys

from posthog import Posthog

url, token = sys.argv[1], sys.argv[2]
sent, errors = [], []


def on_error(error, batch):
    errors.append(f"{error} ({len(batch)} events)")


def run(client, count, tag):
    for i in range(count):
        uuid = client.capture(
            "sdk_event",
            distinct_id=f"machine-{i % 3}",
            properties={"tag": tag, "i": i, "nested": {"list": [1, 2, 3]}, "$ip": "198.51.100.23"},
        )
        sent.append({"uuid": uuid, "tag": tag, "i": i})
    client.flush()
    client.shutdown()


run(Posthog(token, host=url, sync_mode=True, on_error=on_error), 5, "single")
run(Posthog(token, host=url, flush_at=25, flush_interval=0.2, on_error=on_error), 60, "batched")
run(Posthog(token, host=url, flush_at=20, gzip=True, on_error=on_error), 40, "gzip")
print(json.dumps({"sent": sent, "errors": errors}))
