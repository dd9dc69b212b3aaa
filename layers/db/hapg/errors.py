"""One error hierarchy. Class names are the ASL contract.

Step Functions sees `type(exc).__name__` as the error name. The state machines Retry on
the names in `retryable_names()` and Catch everything else, so a new subclass here changes
ASL behaviour without touching the definitions.
"""


class HapgError(Exception):
    """Base of every error we raise on purpose. Messages never contain secrets."""


class RetryableError(HapgError):
    """Transient: the same call may succeed later."""


class FatalError(HapgError):
    """Retrying will not help; the workflow notifies and ends."""


# -- retryable ---------------------------------------------------------------------------
class DatabaseUnavailable(RetryableError):
    """Could not connect, or the connection broke."""


class WriterReadOnly(DatabaseUnavailable):
    """The writer endpoint reached a node in recovery or read-only (DNS not yet moved after a failover)."""


class DatabaseTimeout(RetryableError):
    """A connect or statement exceeded its deadline."""


class AwsThrottled(RetryableError):
    """An AWS API throttled us."""


class AwsUnavailable(RetryableError):
    """An AWS API returned a 5xx or could not be reached."""


class LockHeld(RetryableError):
    """The failover lock is held; try again after it is released or expires."""


class NotReady(RetryableError):
    """A resource is not yet in the state this step needs (e.g. cluster modifying)."""


# -- fatal --------------------------------------------------------------------------------
class InvalidInput(FatalError):
    """The event or step input is malformed."""


class ConfigError(FatalError):
    """The function's environment is missing or malformed."""


class AwsRequestFailed(FatalError):
    """An AWS API rejected the request (access denied, validation, not found)."""


class AuthenticationFailed(FatalError):
    """The server rejected the credentials."""


class DatabaseError(FatalError):
    """SQL failed for a non-transient reason (permissions, missing object, bad data)."""


class PromotionTimedOut(FatalError):
    """The target did not become the writer before the deadline."""


class VerificationFailed(FatalError):
    """The post-promotion checks did not pass."""


class RotationError(FatalError):
    """A secret rotation step found an invariant broken; nothing was changed."""


class BackupCheckFailed(FatalError):
    """A backup or restore verification check failed."""


def _subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_subclasses(sub))
    return out


def retryable_names() -> list[str]:
    """Names the ASL retries: RetryableError and all its subclasses."""
    return sorted([RetryableError.__name__] + [c.__name__ for c in _subclasses(RetryableError)])


def fatal_names() -> list[str]:
    return sorted([FatalError.__name__] + [c.__name__ for c in _subclasses(FatalError)])
