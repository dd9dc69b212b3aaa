from hapg import errors


def test_retryable_and_fatal_names_partition_the_hierarchy():
    retryable, fatal = set(errors.retryable_names()), set(errors.fatal_names())
    assert not retryable & fatal
    assert {
        "RetryableError",
        "DatabaseUnavailable",
        "DatabaseTimeout",
        "AwsThrottled",
        "LockHeld",
    } <= retryable
    assert {"FatalError", "InvalidInput", "PromotionTimedOut", "VerificationFailed"} <= fatal
    every = {c.__name__ for c in errors.HapgError.__subclasses__()}
    assert every == {"RetryableError", "FatalError"}, "every error must be retryable or fatal"


def test_names_are_class_names_so_asl_matches_them():
    for name in errors.retryable_names() + errors.fatal_names():
        assert issubclass(getattr(errors, name), errors.HapgError)
