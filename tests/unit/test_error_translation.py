"""Driver and botocore errors become our hierarchy at the edge."""

import psycopg2
import psycopg2.errors
import pytest
from botocore.exceptions import ClientError, ConnectTimeoutError
from hapg import aws, errors, pg


def client_error(code, status=400):
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (
            psycopg2.errors.QueryCanceled("canceling statement due to statement timeout"),
            errors.DatabaseTimeout,
        ),
        (psycopg2.errors.AdminShutdown("terminating connection"), errors.DatabaseUnavailable),
        (psycopg2.errors.ReadOnlySqlTransaction("read-only"), errors.WriterReadOnly),
        (
            psycopg2.OperationalError('connection to server at "h", port 5432 failed: session is read-only'),
            errors.WriterReadOnly,
        ),
        (
            psycopg2.OperationalError('FATAL:  password authentication failed for user "a"'),
            errors.AuthenticationFailed,
        ),
        (
            psycopg2.OperationalError("could not connect to server: Connection refused"),
            errors.DatabaseUnavailable,
        ),
        (psycopg2.errors.InsufficientPrivilege("permission denied"), errors.DatabaseError),
        (psycopg2.InterfaceError("connection already closed"), errors.DatabaseUnavailable),
    ],
)
def test_pg_translation(exc, expected):
    out = pg.translate(exc, "w:5432")
    assert type(out) is expected
    assert str(out).startswith("w:5432")


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (client_error("Throttling"), errors.AwsThrottled),
        (client_error("ThrottlingException"), errors.AwsThrottled),
        (client_error("InternalFailure", 500), errors.AwsUnavailable),
        (client_error("AccessDenied", 403), errors.AwsRequestFailed),
        (client_error("DBClusterNotFoundFault", 404), errors.AwsRequestFailed),
        (ConnectTimeoutError(endpoint_url="https://rds"), errors.AwsUnavailable),
    ],
)
def test_aws_translation(exc, expected):
    with pytest.raises(expected) as info, aws.call("rds:DescribeDBClusters"):
        raise exc
    assert info.value.__cause__ is exc
    assert str(info.value).startswith("rds:DescribeDBClusters")


def test_unrelated_exceptions_pass_through_untouched():
    with pytest.raises(KeyError), aws.call("x"):
        raise KeyError("bug")
