"""Errors as values (issue 8.2): fields on the exception, one sentence built in one place, and
one S3 classification table for every engine."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest

from spool_tool.destinations.s3errors import (
    OUTCOMES,
    S3Failure,
    classify,
    classify_preflight,
    outcome,
    proxy_hint,
)
from spool_tool.errors import (
    FatalError,
    FileError,
    ObjectExistsError,
    RetryableError,
    ThrottledError,
)
from spool_tool.events import FileFailed
from spool_tool.observe.logs import LogHandler, LogWriter


def test_the_sentence_is_built_from_fields() -> None:
    error = FatalError(
        "cannot reach the S3 endpoint",
        uri="s3://bucket",
        endpoint="http://127.0.0.1:9",
        cause="connection refused",
    )
    detail = "cannot reach the S3 endpoint http://127.0.0.1:9: connection refused"
    assert error.detail() == detail
    assert str(error) == f"s3://bucket: {detail}"
    assert error.uri == "s3://bucket"


def test_the_local_path_is_the_subject_and_is_escaped() -> None:
    error = FileError("cannot open", path=Path("/spool/new/evil\nname"), cause="Permission denied")
    assert str(error) == "/spool/new/evil\\nname: cannot open: Permission denied"
    assert "\n" not in str(error)


def test_code_and_hint_have_their_places() -> None:
    failure = S3Failure(code="ExpiredToken", status=400, message="token expired")
    error = classify(failure, "s3://b/k")
    assert isinstance(error, FatalError)
    assert error.code == "ExpiredToken"
    assert error.hint == "refresh the session credentials"
    assert str(error) == "s3://b/k: ExpiredToken: token expired (refresh the session credentials)"


def test_failed_file_line_names_path_and_uri_once_without_cutting_strings() -> None:
    """logs.py shows the event's path and URI and the error's detail: nothing is stripped off
    a message, so a detail that happens to start with the path stays whole."""
    stream = io.StringIO()
    path = Path("/spool/new/f\x1b[31m.dat")
    error = RetryableError("the server failed", uri="s3://b/k", code="SlowDown")
    LogWriter(stream=stream)(FileFailed(path, "s3://b/k", "retryable", error.detail()))
    line = stream.getvalue().rstrip("\n")
    shown = "/spool/new/f\\x1b[31m.dat"
    assert line.endswith(f"ERROR failed {shown} -> s3://b/k: SlowDown: the server failed")
    assert line.count("s3://b/k") == 1


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (S3Failure(code="SlowDown", status=503), "retry"),
        (S3Failure(status=500), "retry"),
        (S3Failure(status=429), "retry"),
        (S3Failure(code="BadDigest", status=400), "retry"),
        (S3Failure(code="SignatureDoesNotMatch", status=403), "stop"),
        (S3Failure(status=403), "stop"),
        (S3Failure(code="NoSuchBucket", status=404), "stop"),
        (S3Failure(code="PreconditionFailed", status=412), "skip"),
        (S3Failure(status=412), "skip"),
        (S3Failure(code="InvalidArgument", status=400), "skip"),
        (S3Failure(transport="refused"), "stop"),
        (S3Failure(transport="connect_timeout", timeout=10), "stop"),
        (S3Failure(transport="reset"), "retry"),
        (S3Failure(transport="read_timeout", timeout=60), "retry"),
    ],
)
def test_one_table_decides_retry_skip_or_stop(failure: S3Failure, expected: str) -> None:
    assert outcome(failure) == expected
    error = classify(failure, "s3://b/k")
    kind = {"retry": RetryableError, "skip": FileError, "stop": FatalError}[expected]
    assert isinstance(error, kind)
    assert type(error) in {kind, ThrottledError, ObjectExistsError}


def test_every_code_in_the_table_has_a_known_outcome() -> None:
    assert set(OUTCOMES.values()) <= {"retry", "skip", "stop"}


@pytest.mark.parametrize(
    ("failure", "passes"),
    [
        (S3Failure(code="NoSuchKey", status=404), True),
        (S3Failure(status=404), True),
        (S3Failure(code="AccessDenied", status=403), True),
        (S3Failure(code="NoSuchBucket", status=404), False),
        (S3Failure(code="SignatureDoesNotMatch", status=403), False),
        (S3Failure(transport="read_timeout", timeout=60, endpoint="http://e"), False),
        (S3Failure(transport="reset", endpoint="http://e"), False),
        (S3Failure(code="SlowDown", status=503), False),
    ],
)
def test_the_preflight_never_swallows_a_failure(failure: S3Failure, passes: bool) -> None:
    error = classify_preflight(failure, "s3://b")
    assert (error is None) == passes
    if error is not None:
        assert isinstance(error, FatalError)  # it stops the run, one line


def test_read_timeout_sentence_names_the_endpoint_and_the_timeout() -> None:
    failure = S3Failure(transport="read_timeout", endpoint="http://127.0.0.1:1", timeout=60)
    assert str(classify_preflight(failure, "s3://b")) == (
        "s3://b: no answer from the S3 endpoint http://127.0.0.1:1: read timeout of 60 s"
    )


def test_a_warning_that_cannot_be_written_never_fails_the_request_that_logged_it() -> None:
    """The retry warning is logged from inside an upload: a closed or broken log stream must
    not become that upload's failure."""
    stream = io.StringIO()
    stream.close()
    handler = LogHandler(LogWriter(stream=stream))
    record = logging.LogRecord("spool_tool.x", logging.WARNING, __file__, 1, "retrying", (), None)
    handler.emit(record)  # no exception


@pytest.mark.parametrize(
    ("failure", "throttling"),
    [
        (S3Failure(code="SlowDown", status=503), True),
        (S3Failure(code="Throttling", status=400), True),
        (S3Failure(status=429), True),
        (S3Failure(code="ServiceUnavailable", status=503), False),
        (S3Failure(code="InternalError", status=500), False),
        (S3Failure(status=503), False),
    ],
)
def test_throttling_answers_are_throttled_errors(failure: S3Failure, throttling: bool) -> None:
    error = classify(failure, "s3://b/k")
    assert isinstance(error, RetryableError)
    assert isinstance(error, ThrottledError) is throttling


@pytest.mark.parametrize(
    ("endpoint", "environ", "hint"),
    [
        ("http://h:9000", {}, None),
        ("http://h:9000", {"http_proxy": "http://u:pw@p:3128"}, "p:3128 from http_proxy"),
        ("http://h:9000", {"HTTP_PROXY": "p:8080", "http_proxy": "q:1"}, "q:1 from http_proxy"),
        ("https://s3.amazonaws.com", {"http_proxy": "p:1"}, None),
        ("https://s3.amazonaws.com", {"HTTPS_PROXY": "p:1"}, "p:1 from HTTPS_PROXY"),
        ("http://h:9000", {"ALL_PROXY": "socks5://p:1080"}, "p:1080 from ALL_PROXY"),
        ("http://h:9000", {"http_proxy": "p:1", "no_proxy": "h"}, None),
        ("http://h.corp:9000", {"http_proxy": "p:1", "NO_PROXY": ".corp"}, None),
        ("http://h:9000", {"http_proxy": ""}, None),
    ],
)
def test_a_connection_error_through_a_proxy_names_it(
    endpoint: str, environ: dict[str, str], hint: str | None
) -> None:
    found = proxy_hint(endpoint, environ)
    if hint is None:
        assert found is None
    else:
        assert found is not None
        assert f"through the proxy {hint}; NO_PROXY=" in found
        assert "pw" not in found
