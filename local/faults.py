"""Faults for rehearsals and chaos: AWS API throttling bursts and an unreachable instance endpoint."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import boto3
from botocore.awsrequest import AWSResponse
from hapg import aws

THROTTLE_BODY = {
    "Error": {"Code": "Throttling", "Message": "Rate exceeded"},
    "ResponseMetadata": {"HTTPStatusCode": 400},
}


@contextmanager
def throttle(service: str, calls: int) -> Iterator[dict[str, int]]:
    """The next `calls` API calls to `service` get a Throttling response (botocore retries them
    like real ones, so a burst longer than its retries reaches our code as AwsThrottled)."""
    counter = {"throttled": 0, "seen": 0}
    lock = threading.Lock()

    def before_call(**kwargs):
        with lock:
            counter["seen"] += 1
            if counter["throttled"] >= calls:
                return None
            counter["throttled"] += 1
        return AWSResponse("https://throttled.local", 400, {}, None), dict(THROTTLE_BODY)

    events = boto3._get_default_session().events  # the session behind hapg.aws clients
    events.register(f"before-call.{service}", before_call, unique_id="hapg-throttle")
    aws.reset_clients()  # clients copy the session's handlers when created: make new ones
    try:
        yield counter
    finally:
        events.unregister(f"before-call.{service}", unique_id="hapg-throttle")
        aws.reset_clients()
