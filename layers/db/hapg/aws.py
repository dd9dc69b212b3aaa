"""boto3 clients with deadlines, and botocore errors translated at the edge."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

from hapg import errors

THROTTLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "ProvisionedThroughputExceededException",
        "SlowDown",
    }
)


@cache
def client(service: str) -> Any:
    """A client with short timeouts and standard retries (each call bounded in time)."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=3,
        read_timeout=10,
        retries={"mode": "standard", "max_attempts": 3},
        user_agent_extra="hapg",
    )
    return boto3.client(service, config=config)


def reset_clients() -> None:
    """Forget cached clients (tests start a fresh moto backend per test)."""
    client.cache_clear()


def translate(exc: BaseException, op: str) -> errors.HapgError:
    from botocore.exceptions import (
        ClientError,
        ConnectionError,
        ConnectTimeoutError,
        ReadTimeoutError,
    )

    if isinstance(exc, errors.HapgError):
        return exc
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = err.get("Code", "Unknown")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in THROTTLE_CODES:
            return errors.AwsThrottled(f"{op}: throttled ({code})")
        if status >= 500:
            return errors.AwsUnavailable(f"{op}: {code} (HTTP {status})")
        return errors.AwsRequestFailed(f"{op}: {code}: {err.get('Message', '')}".rstrip(": "))
    if isinstance(exc, ConnectTimeoutError | ReadTimeoutError | ConnectionError):
        return errors.AwsUnavailable(f"{op}: {type(exc).__name__}")
    return errors.AwsRequestFailed(f"{op}: {type(exc).__name__}: {exc}")


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ClientError (via __cause__ too), else None."""
    for candidate in (exc, exc.__cause__):
        response = getattr(candidate, "response", None)
        if isinstance(response, dict):
            return response.get("Error", {}).get("Code")
    return None


@contextmanager
def call(op: str) -> Iterator[None]:
    """`with aws.call("rds:FailoverDBCluster"): ...` raises our errors, chained."""
    try:
        yield
    except errors.HapgError:
        raise
    except Exception as exc:
        if type(exc).__module__.startswith(("botocore", "boto3")) or hasattr(exc, "response"):
            raise translate(exc, op) from exc
        raise
