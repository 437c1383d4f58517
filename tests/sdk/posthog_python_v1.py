"""Sends events to a collector with the stock posthog SDK from PyPI in capture V1 mode.

Usage: posthog_python_v1.py URL TOKEN. Prints {"sent": [...], "drops": [...],
"errors": [...]} as JSON: the events sent, the (uuid, details) the collector dropped,
and any other error the SDK reported.
"""

import json
import sys

from posthog import Posthog
from posthog.capture_v1 import CaptureV1Error

url, token = sys.argv[1], sys.argv[2]
sent, drops, errors = [], [], []


def on_error(error, batch):
    if isinstance(error, CaptureV1Error) and error.drops and not error.retry_exhausted:
        drops.extend([uuid, details] for uuid, details in error.drops)
    else:
        errors.append(f"{error} ({len(batch)} events)")


def run(client, count, tag, bad=False):
    for i in range(count):
        uuid = client.capture(
            "sdk_event",
            distinct_id=f"machine-{i % 3}",
            properties={"tag": tag, "i": i, "nested": {"list": [1, 2, 3]}, "$ip": "198.51.100.23"},
        )
        sent.append({"uuid": uuid, "tag": tag, "i": i})
    if bad:
        # A control character in the name: refused for good, the rest of the batch stored.
        uuid = client.capture("bad\u0001name", distinct_id="machine-0")
        sent.append({"uuid": uuid, "tag": tag, "bad": True})
    client.flush()
    client.shutdown()


def v1(**options):
    return Posthog(token, host=url, capture_mode="v1", on_error=on_error, **options)


run(v1(sync_mode=True), 5, "single")
run(v1(flush_at=25, flush_interval=0.2), 60, "batched")
run(v1(flush_at=20, capture_compression="gzip"), 40, "gzip")
run(v1(flush_at=20, capture_compression="deflate"), 40, "deflate", bad=True)
print(json.dumps({"sent": sent, "drops": drops, "errors": errors}))
