"""The one classification of S3 failures, for every S3 engine.

Each engine maps its own exception types onto an ``S3Failure`` (the S3 error code, the HTTP
status, or what went wrong on the connection) and calls ``classify``; this module decides, from
that alone, whether the request is worth another attempt and what the caller does once the
attempts are spent: retry the file in a later run, skip this file, or stop the run. Nothing here
knows botocore or obstore.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from spool_tool.errors import (
    FatalError,
    FileError,
    ObjectExistsError,
    RetryableError,
    SpoolToolError,
    ThrottledError,
)
from spool_tool.throttle import is_throttling

log = logging.getLogger(__name__)

Outcome = Literal["retry", "skip", "stop"]
"""``retry``: the file stays and a later run retries it (RetryableError); ``skip``: this file
cannot be shipped now (FileError); ``stop``: no file of this run can succeed (FatalError)."""

Transport = Literal["refused", "connect", "connect_timeout", "tls", "reset", "read_timeout"]
"""What went wrong on the connection when no S3 answer came back."""


@dataclass(frozen=True, slots=True)
class S3Failure:
    """A failed S3 request in engine-neutral terms (what an engine saw, nothing decided)."""

    code: str | None = None  # S3's error code ("SlowDown"), when an S3 answer came back
    status: int | None = None  # its HTTP status
    message: str | None = None  # S3's own message, when it says more than the code
    transport: Transport | None = None  # no answer: what happened to the connection
    endpoint: str | None = None  # the URL requests went to
    timeout: float | None = None  # the timeout that expired (connect or read), seconds


# S3 error code -> what the caller does once the attempts are spent. A code absent here is
# decided by its HTTP status (``_by_status``).
OUTCOMES: dict[str, Outcome] = {
    # No upload of this run can succeed.
    "InvalidAccessKeyId": "stop",
    "SignatureDoesNotMatch": "stop",
    "ExpiredToken": "stop",
    "InvalidToken": "stop",
    "TokenRefreshRequired": "stop",
    "AccessDenied": "stop",
    "AllAccessDisabled": "stop",
    "AccountProblem": "stop",
    "NoSuchBucket": "stop",
    "InvalidBucketName": "stop",
    "PermanentRedirect": "stop",
    "AuthorizationHeaderMalformed": "stop",
    "RequestTimeTooSkewed": "stop",
    "InvalidSecurity": "stop",
    "NotSignedUp": "stop",
    # Transient: worth another attempt now, and another run later.
    "SlowDown": "retry",
    "Throttling": "retry",
    "ThrottlingException": "retry",
    "RequestTimeout": "retry",
    "RequestThrottled": "retry",
    "ServiceUnavailable": "retry",
    "InternalError": "retry",
    "BadDigest": "retry",  # the body was corrupted on the way: send it again
    "XAmzContentSHA256Mismatch": "retry",
    "InvalidDigest": "retry",
    "IncompleteBody": "retry",
    "OperationAborted": "retry",
    # This object only.
    "PreconditionFailed": "skip",  # --no-clobber: an object is already there
}

HINTS = {
    "RequestTimeTooSkewed": "this machine's clock is off: check NTP / chrony",
    "ExpiredToken": "refresh the session credentials",
    "InvalidAccessKeyId": "check the credentials / --profile",
    "SignatureDoesNotMatch": "check the secret key / --profile",
    "PermanentRedirect": "the bucket is in another region: set --region",
    "AuthorizationHeaderMalformed": "the bucket is in another region: set --region",
}

# What a failed request says when no S3 answer came back (reason, cause), and whether the
# endpoint as a whole is out of reach (stop) or this request was cut off (retry the file later).
_UNREACHABLE = "cannot reach the S3 endpoint"
_TRANSPORT: dict[Transport, tuple[str, str, Outcome]] = {
    "refused": (_UNREACHABLE, "connection refused", "stop"),
    "connect": (_UNREACHABLE, "cannot connect", "stop"),
    "connect_timeout": (_UNREACHABLE, "connect timeout of {timeout:g} s", "stop"),
    "tls": (_UNREACHABLE, "its TLS certificate is not trusted", "stop"),
    "reset": ("lost the connection to the S3 endpoint", "connection reset", "retry"),
    "read_timeout": ("no answer from the S3 endpoint", "read timeout of {timeout:g} s", "retry"),
}

_ERRORS: dict[Outcome, type[SpoolToolError]] = {
    "retry": RetryableError,
    "skip": FileError,
    "stop": FatalError,
}

# What the pre-flight (a GET of a key that cannot exist) accepts: the bucket is there, or a
# PutObject-only policy refused the read. Anything else that outlasts the retries stops the run.
_PREFLIGHT_OK = frozenset({"NoSuchKey", "AccessDenied"})


def _by_status(status: int | None) -> Outcome:
    if status is None or status >= 500 or status == 429:  # noqa: PLR2004 - HTTP statuses
        return "retry"
    if status in {401, 403}:
        return "stop"
    return "skip"


def outcome(failure: S3Failure) -> Outcome:
    if failure.transport is not None:
        return _TRANSPORT[failure.transport][2]
    if failure.code in OUTCOMES:
        return OUTCOMES[failure.code]
    if failure.status == 412:  # noqa: PLR2004 - a 412 without a body (HEAD-like answers)
        return "skip"
    return _by_status(failure.status)


def worth_retrying(failure: S3Failure) -> bool:
    """Whether another attempt of the same request may succeed (for engines that retry in
    Python; botocore decides this itself, with the same answer for these cases)."""
    return outcome(failure) == "retry" or failure.transport in {"refused", "connect"}


def classify(failure: S3Failure, uri: str) -> SpoolToolError:
    """The error the caller raises for ``failure`` of a request on ``uri`` (bucket or object)."""
    return _error(failure, uri, outcome(failure))


def classify_preflight(failure: S3Failure, uri: str) -> SpoolToolError | None:
    """None when the pre-flight's answer means uploads can go ahead; else the error that stops
    the run (a timeout or reset that outlasted the retries stops it too: never swallowed)."""
    if failure.code in _PREFLIGHT_OK:
        return None
    if failure.status == 404 and failure.code != "NoSuchBucket":  # noqa: PLR2004
        return None  # the key is not there: the bucket is
    return _error(failure, uri, "stop")


def _error(failure: S3Failure, uri: str, decided: Outcome) -> SpoolToolError:
    kind = _ERRORS[decided]
    if kind is RetryableError and throttled(failure):
        kind = ThrottledError
    if failure.transport is not None:
        reason, cause, _ = _TRANSPORT[failure.transport]
        return kind(
            reason,
            uri=uri,
            endpoint=failure.endpoint or "(AWS)",
            cause=cause.format(timeout=failure.timeout or 0),
            hint=_TLS_HINT
            if failure.transport == "tls"
            else proxy_hint(failure.endpoint or "https://s3.amazonaws.com", os.environ),
        )
    code = failure.code or (f"HTTP {failure.status}" if failure.status else None)
    if failure.code == "PreconditionFailed" or failure.status == 412:  # noqa: PLR2004
        exists = ObjectExistsError if kind is FileError else kind
        return exists("an object already exists at this key (no-clobber)", uri=uri)
    # Our words for the codes we know, with S3's message as the cause; else S3's message.
    ours = _REASONS.get(failure.code or "")
    reason = ours or failure.message or _reason_by_status(failure.status, decided)
    return kind(
        reason,
        uri=uri,
        code=code,
        cause=failure.message if ours else None,
        hint=HINTS.get(failure.code or ""),
    )


_TLS_HINT = "AWS_CA_BUNDLE, or ca_bundle in the profile, names the file of CAs to trust"


def proxy_hint(endpoint: str, environ: Mapping[str, str]) -> str | None:
    """Both engines send requests through the proxy the environment names for the endpoint's
    scheme (``http_proxy``/``https_proxy``, else ``all_proxy``; lower case wins over upper
    case, as in urllib and reqwest) unless ``no_proxy`` covers its host: a connection error
    then came from the proxy, which the message must say. Its user and password never show."""
    import urllib.request  # noqa: PLC0415 - only on a connection error

    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    found: dict[str, tuple[str, str]] = {}  # scheme -> (variable, value)
    for name in sorted(environ, key=lambda n: n != n.lower()):  # lower case first
        scheme = name.lower().removesuffix("_proxy")
        if name.lower().endswith("_proxy") and environ[name] and scheme not in found:
            found[scheme] = (name, environ[name])
    chosen = found.get(parts.scheme) or found.get("all")
    proxies = {scheme: value for scheme, (_, value) in found.items()}
    # urllib's no_proxy rule (exact host, domain suffix, "*"), which typeshed leaves out.
    bypass: Callable[[str, dict[str, str]], bool] = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
    if chosen is None or bypass(host, proxies):
        return None
    name, proxy = chosen
    shown = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    where = shown.hostname or "?"
    if shown.port is not None:
        where = f"{where}:{shown.port}"
    return f"through the proxy {where} from {name}; NO_PROXY={host} goes around it"


_REASONS = {
    "SlowDown": "S3 is throttling requests (slow down)",
    "NoSuchBucket": "the bucket does not exist",
    "AccessDenied": "access denied",
    "BadDigest": "the body was corrupted in transit",
    "XAmzContentSHA256Mismatch": "the body was corrupted in transit",
    "InvalidDigest": "the body was corrupted in transit",
}


def _reason_by_status(status: int | None, decided: Outcome) -> str:
    if status in {401, 403}:
        return "access denied or bad credentials"
    if decided == "retry":
        return "the server failed" if status else "the request failed"
    return "the request was refused"


def throttled(failure: S3Failure) -> bool:
    """S3 asks us to slow down (``503 SlowDown``, a throttling code, 429): the gate lowers the
    concurrency, the backoff is longer. The codes are ``throttle.THROTTLING_CODES``."""
    return is_throttling(failure.code, failure.status)


# Failures that are over in milliseconds: their retries cost no waiting, and the line that
# reports the outcome says it all. Timeouts, throttling and 5xx make the run wait: say so.
_QUICK: frozenset[Transport | None] = frozenset({"refused", "connect", "reset"})


EPISODE_GAP = 60.0  # seconds without a retry that end an episode


class RetryNotice:
    """Says once per episode that requests are being retried, not once per retry: an episode is
    a run of retries less than ``EPISODE_GAP`` apart, over every thread of one destination (with
    many uploads in flight, one success says little about the next request). The warning names
    the endpoint and what the first retried attempt saw."""

    def __init__(self, endpoint: str | None, max_attempts: int) -> None:
        self.endpoint = endpoint or "(AWS)"
        self.max_attempts = max_attempts
        self._lock = threading.Lock()
        self._last: float | None = None

    def retrying(self, failure: S3Failure) -> None:
        if failure.transport in _QUICK:
            return
        now = time.monotonic()
        with self._lock:
            quiet = self._last is None or now - self._last >= EPISODE_GAP
            self._last = now
        if quiet:
            log.warning(
                "S3 endpoint %s: requests are being retried (%s; up to %d attempts each)",
                self.endpoint,
                describe(failure),
                self.max_attempts,
            )


def describe(failure: S3Failure) -> str:
    """A few words for what one failed attempt saw (for the retry warning)."""
    if failure.transport is not None:
        return _TRANSPORT[failure.transport][1].format(timeout=failure.timeout or 0)
    return failure.code or f"HTTP {failure.status}"
