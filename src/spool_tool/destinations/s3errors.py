"""Translate botocore exceptions into spool_tool's error classes, at the S3 boundary."""

from __future__ import annotations

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProxyConnectionError,
    ReadTimeoutError,
    TokenRetrievalError,
)

from spool_tool.errors import FatalError, FileError, RetryableError, SpoolToolError

# Codes after which no upload of this run can succeed.
FATAL_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "AccessDenied",
        "AllAccessDisabled",
        "AccountProblem",
        "NoSuchBucket",
        "InvalidBucketName",
        "PermanentRedirect",
        "AuthorizationHeaderMalformed",
        "RequestTimeTooSkewed",
        "InvalidSecurity",
        "NotSignedUp",
        "403",
    }
)
RETRYABLE_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "RequestThrottled",
        "ServiceUnavailable",
        "InternalError",
        "BadDigest",  # the body was corrupted on the way: send it again
        "XAmzContentSHA256Mismatch",
        "InvalidDigest",
        "IncompleteBody",
        "OperationAborted",
    }
)
HINTS = {
    "RequestTimeTooSkewed": " (this machine's clock is off: check NTP / chrony)",
    "ExpiredToken": " (refresh the session credentials)",
    "InvalidAccessKeyId": " (check the credentials / --profile)",
    "SignatureDoesNotMatch": " (check the secret key / --profile)",
    "PermanentRedirect": " (the bucket is in another region: set --region)",
    "AuthorizationHeaderMalformed": " (the bucket is in another region: set --region)",
}


def translate(exc: Exception, where: str) -> SpoolToolError:
    """Classify ``exc`` (raised while working on ``where``: a bucket or a URI).

    The original exception is kept as ``__cause__`` by the caller's ``raise ... from exc``.
    """
    if isinstance(exc, SpoolToolError):
        return exc
    if isinstance(exc, ClientError):
        return _client_error(exc, where)
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError | ProxyConnectionError):
        return FatalError(f"{where}: cannot reach the S3 endpoint: {exc}")
    if isinstance(exc, ConnectionClosedError | ReadTimeoutError):
        return RetryableError(f"{where}: connection failed: {exc}")
    if isinstance(
        exc,
        NoCredentialsError
        | PartialCredentialsError
        | CredentialRetrievalError
        | TokenRetrievalError,
    ):
        return FatalError(f"{where}: no usable AWS credentials: {exc}")
    if isinstance(exc, NoRegionError):
        return FatalError(f"{where}: no AWS region configured (use --region)")
    if isinstance(exc, BotoCoreError):
        return RetryableError(f"{where}: {exc}")
    if isinstance(exc, OSError):
        return FileError(f"{where}: {exc}")
    return RetryableError(f"{where}: unexpected {type(exc).__name__}: {exc}")


def _client_error(exc: ClientError, where: str) -> SpoolToolError:
    err = exc.response.get("Error", {})
    code = str(err.get("Code", "Unknown"))
    message = str(err.get("Message", "")) or code
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    text = f"{where}: {code}: {message}{HINTS.get(code, '')}"
    if code == "PreconditionFailed" or status == 412:  # noqa: PLR2004 - HTTP status
        return FileError(f"{where}: an object already exists at this key (no-clobber): {message}")
    if code in FATAL_CODES:
        return FatalError(text)
    if code in RETRYABLE_CODES or status >= 500 or status == 429:  # noqa: PLR2004
        return RetryableError(text)
    return FileError(text)
