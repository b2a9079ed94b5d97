"""The botocore engine: single PUTs for options obstore cannot send, and the client every
engine shares for multipart uploads, HEADs and aborts.

Request shape: ``UNSIGNED-PAYLOAD`` with a checksum header S3 verifies (``x-amz-checksum-*``,
or ``Content-MD5`` with ``--checksum off``). botocore signs the body over plain HTTP unless told
not to (``payload_signing_enabled``), which makes the client *and* the server SHA-256 every
byte on top of the checksum: 0.9 s of client CPU per GiB (notes in BENCHMARKS.md).
"""

from __future__ import annotations

import base64
import hashlib
import threading
import urllib.parse
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from spool_tool.destinations.engines import Confirmed, PutSpec, botocore_checksum
from spool_tool.errors import ConfigError, SpoolToolError

if TYPE_CHECKING:
    import botocore.session
    from mypy_boto3_s3 import S3Client

    from spool_tool.config import S3Options
    from spool_tool.destinations.boto_errors import BotoContext
    from spool_tool.destinations.gated import GatedRequests

_T = TypeVar("_T")


def make_client(session: botocore.session.Session, options: S3Options, pool_size: int) -> S3Client:
    import botocore.config  # noqa: PLC0415 - botocore only where needed (start-up, issue 10)
    from botocore.exceptions import BotoCoreError  # noqa: PLC0415

    config = botocore.config.Config(
        # One attempt per call: destinations/gated.py retries, through the gate.
        retries={"mode": "standard", "total_max_attempts": 1},
        connect_timeout=options.connect_timeout,
        read_timeout=options.read_timeout,
        max_pool_connections=pool_size,
        # Every request with a body carries a checksum S3 verifies: no SHA-256 of the body.
        s3={"addressing_style": options.addressing_style, "payload_signing_enabled": False},
        request_checksum_calculation="when_required" if options.checksum == "off" else None,
        user_agent_extra="spool_tool",
    )
    try:
        client = session.create_client("s3", endpoint_url=options.endpoint_url, config=config)
    except (BotoCoreError, ValueError) as exc:
        raise ConfigError(f"cannot configure the S3 client: {exc}") from exc
    return cast("S3Client", client)


class BotoClient:
    """botocore's session and client, each created on first use (``make_session`` builds the
    session: botocore is imported only when a request needs it, issue 10); its requests
    retried through the destination's gate (``call``), and the translation of its errors."""

    def __init__(
        self,
        make_session: Callable[[], botocore.session.Session],
        options: S3Options,
        pool_size: int,
        requests: GatedRequests,
    ) -> None:
        self._make_session = make_session
        self.options = options
        self.pool_size = pool_size
        self.requests = requests
        self._ctx: BotoContext | None = None
        self._session: botocore.session.Session | None = None
        self._client: S3Client | None = None
        self._lock = threading.RLock()  # ``client`` builds the session under it

    @property
    def session(self) -> botocore.session.Session:
        with self._lock:
            if self._session is None:
                self._session = self._make_session()
            return self._session

    @property
    def client(self) -> S3Client:
        with self._lock:
            if self._client is None:
                from spool_tool.destinations.boto_errors import BotoContext  # noqa: PLC0415

                client = make_client(self.session, self.options, self.pool_size)
                options = self.options
                self._ctx = BotoContext(
                    client.meta.endpoint_url, options.connect_timeout, options.read_timeout
                )
                self._client = client
            return self._client

    @property
    def ctx(self) -> BotoContext:
        """Where errors say the requests went: the client's endpoint once it exists."""
        with self._lock:
            if self._ctx is None:
                from spool_tool.destinations.boto_errors import BotoContext  # noqa: PLC0415

                options = self.options
                self._ctx = BotoContext(
                    options.endpoint_url, options.connect_timeout, options.read_timeout
                )
            return self._ctx

    def call(self, send: Callable[[], _T], *, body: int = 0) -> _T:
        """One botocore request, retried through the gate (``gated.py``); raises what the last
        attempt raised, for the caller to translate."""
        from spool_tool.destinations.boto_errors import failure_of  # noqa: PLC0415

        return self.requests.call(send, lambda exc: failure_of(exc, self.ctx), body=body)

    def translate(self, exc: Exception, uri: str) -> SpoolToolError:
        from spool_tool.destinations.boto_errors import translate  # noqa: PLC0415

        return translate(exc, uri, self.ctx)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def md5_b64(data: bytes | bytearray | memoryview) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


def boto3_algorithm(checksum: str | None) -> str | None:
    """botocore's spelling of an algorithm from ``engines.checksum_for`` (None: Content-MD5)."""
    return None if checksum is None else checksum.upper()


def checksum_args(algorithm: str | None, data: bytes | bytearray | memoryview) -> dict[str, str]:
    if algorithm is None:
        return {"ContentMD5": md5_b64(data)}
    return {"ChecksumAlgorithm": algorithm}


def confirmed_checksum(algorithm: str | None, response: Any) -> str | None:
    if algorithm is None:
        return None
    value = response.get(f"Checksum{algorithm}")
    return f"{algorithm}:{value}" if value else None


def object_args(options: S3Options) -> dict[str, Any]:
    """PutObject / CreateMultipartUpload arguments that are the same for every object."""
    args: dict[str, Any] = {}
    if options.storage_class:
        args["StorageClass"] = options.storage_class
    if options.sse:
        args["ServerSideEncryption"] = options.sse
    if options.sse_kms_key_id:
        args["SSEKMSKeyId"] = options.sse_kms_key_id
    if options.acl:
        args["ACL"] = options.acl
    if options.metadata:
        args["Metadata"] = dict(options.metadata)
    if options.tags:
        args["Tagging"] = urllib.parse.urlencode(options.tags)
    return args


def header_args(content_type: str | None, content_encoding: str | None) -> dict[str, str]:
    args = {}
    if content_type:
        args["ContentType"] = content_type
    if content_encoding:
        args["ContentEncoding"] = content_encoding
    return args


class BotoEngine:
    """Single PUTs through botocore: every option, ~10x the CPU of obstore per PUT."""

    name = "boto3"

    def __init__(self, boto: BotoClient, options: S3Options, bucket: str) -> None:
        self.boto = boto
        self.bucket = bucket
        self.algorithm = boto3_algorithm(botocore_checksum(options.checksum, "single"))
        self.object_args = object_args(options)

    def preflight(self, uri: str) -> None:
        """GET a key that cannot exist: ``s3errors.classify_preflight`` reads the answer."""
        key = f".spool_tool-preflight/{uuid.uuid4()}"
        try:
            self.boto.call(lambda: self.boto.client.get_object(Bucket=self.bucket, Key=key))
        except Exception as exc:
            from spool_tool.destinations.boto_errors import translate_preflight  # noqa: PLC0415

            error = translate_preflight(exc, uri, self.boto.ctx)
            if error is not None:
                raise error from exc

    def put(self, data: bytes, spec: PutSpec) -> Confirmed:
        extra: dict[str, Any] = {
            **self.object_args,
            **header_args(spec.content_type, spec.content_encoding),
            **checksum_args(self.algorithm, data),
        }
        if spec.metadata:
            extra["Metadata"] = {**extra.get("Metadata", {}), **dict(spec.metadata)}
        if spec.no_clobber:
            extra["IfNoneMatch"] = "*"
        try:
            response = self.boto.call(
                lambda: self.boto.client.put_object(
                    Bucket=self.bucket, Key=spec.key, Body=data, **extra
                ),
                body=len(data),
            )
        except Exception as exc:
            raise self.boto.translate(exc, spec.uri) from exc
        return Confirmed(response.get("ETag"), confirmed_checksum(self.algorithm, response))

    def close(self) -> None:
        """The shared client is closed by its owner (the destination)."""
