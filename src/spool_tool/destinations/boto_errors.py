"""botocore's exceptions, mapped onto ``s3errors``'s engine-neutral terms (the boto3 engine's
half of error translation; obstore's is in ``obstore_put``)."""

from __future__ import annotations

from dataclasses import dataclass

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
    SSLError,
    TokenRetrievalError,
)

from spool_tool.destinations.s3errors import S3Failure, Transport, classify, classify_preflight
from spool_tool.errors import FatalError, FileError, RetryableError, SpoolToolError

_NO_CREDENTIALS = (
    NoCredentialsError | PartialCredentialsError | CredentialRetrievalError | TokenRetrievalError
)


@dataclass(frozen=True, slots=True)
class BotoContext:
    """What the mapping needs to know about the client: where it sends, its timeouts."""

    endpoint: str | None
    connect_timeout: float
    read_timeout: float


def failure_of(exc: BaseException, ctx: BotoContext) -> S3Failure | None:
    """The S3 request failure ``exc`` stands for; None when it is not one."""
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", "")) or None
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)) or None
        if code is not None and code.isdigit():
            code = None  # a HEAD answer has no body: botocore puts the status in Code
        message = str(err.get("Message", "")) or None
        return S3Failure(code=code, status=status, message=message, endpoint=ctx.endpoint)
    transport = _transport(exc)
    if transport is None:
        return None
    timeout = ctx.connect_timeout if transport == "connect_timeout" else ctx.read_timeout
    return S3Failure(transport=transport, endpoint=ctx.endpoint, timeout=timeout)


def _transport(exc: BaseException) -> Transport | None:
    if isinstance(exc, SSLError) and "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return "tls"  # as obstore's InvalidCertificate: the CA is not trusted
    if isinstance(exc, ConnectTimeoutError):
        return "connect_timeout"
    if isinstance(exc, ReadTimeoutError):
        return "read_timeout"
    if isinstance(exc, ConnectionClosedError):
        return "reset"
    if isinstance(exc, EndpointConnectionError | ProxyConnectionError):
        # A reset while the request is sent can surface as a failed connection too.
        if _caused_by(exc, ConnectionResetError | BrokenPipeError):
            return "reset"
        return "refused" if _caused_by(exc, ConnectionRefusedError) else "connect"
    return None


def _caused_by(exc: BaseException, kind: type[BaseException] | object) -> bool:
    """Whether ``kind`` is among the exceptions underneath ``exc`` (botocore keeps urllib3's
    in ``kwargs["error"]``, urllib3 keeps the OS error in its arguments or its context)."""
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo:
        current = todo.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, kind):  # type: ignore[arg-type]
            return True
        wrapped = getattr(current, "kwargs", {}).get("error")
        todo += [current.__cause__, current.__context__, wrapped, *current.args]
    return False


def translate(exc: Exception, uri: str, ctx: BotoContext) -> SpoolToolError:
    """Classify ``exc`` (raised while working on ``uri``: a bucket or an object).

    The original exception is kept as ``__cause__`` by the caller's ``raise ... from exc``.
    """
    if isinstance(exc, SpoolToolError):
        return exc
    failure = failure_of(exc, ctx)
    if failure is not None:
        return classify(failure, uri)
    return _not_a_request_failure(exc, uri)


def translate_preflight(exc: Exception, uri: str, ctx: BotoContext) -> SpoolToolError | None:
    """None when the pre-flight's failure means uploads can go ahead."""
    failure = failure_of(exc, ctx)
    if failure is not None:
        return classify_preflight(failure, uri)
    error = translate(exc, uri, ctx)
    return error if isinstance(error, FatalError) else FatalError(error.detail(), uri=uri)


def _not_a_request_failure(exc: Exception, uri: str) -> SpoolToolError:
    if isinstance(exc, _NO_CREDENTIALS):
        return FatalError("no usable AWS credentials", uri=uri, cause=str(exc))
    if isinstance(exc, NoRegionError):
        return FatalError("no AWS region configured", uri=uri, hint="use --region")
    if isinstance(exc, BotoCoreError):
        return RetryableError(type(exc).__name__, uri=uri, cause=str(exc))
    if isinstance(exc, OSError):
        return FileError(exc.strerror or type(exc).__name__, uri=uri)
    return RetryableError(f"unexpected {type(exc).__name__}", uri=uri, cause=str(exc))
