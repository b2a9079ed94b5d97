"""``s3://BUCKET/PREFIX/`` through boto3: credentials, checksums, multipart, error translation.

Single PUTs carry a checksum S3 verifies (``x-amz-checksum-*``, or ``Content-MD5`` when the
checksum is ``off`` for stores that reject the newer headers). Large files use multipart with
per-part checksums; the UploadId is handed to the journal before any part is sent and the upload
is aborted on any failure.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import threading
import urllib.parse
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any, TypeVar, cast

import botocore.config
import botocore.session
from botocore.compat import HAS_CRT
from botocore.exceptions import BotoCoreError, ClientError, ConfigParseError, ProfileNotFound

from spool_tool.budget import ByteBudget
from spool_tool.destinations import obstore_put
from spool_tool.destinations.base import (
    NO_HEADERS,
    ObjectHeaders,
    ObjectInfo,
    UploadIdRecorder,
    UploadResult,
)
from spool_tool.destinations.boto_errors import (
    BotoContext,
    failure_of,
    translate,
    translate_preflight,
)
from spool_tool.destinations.gated import GatedRequests
from spool_tool.destinations.s3errors import RetryNotice
from spool_tool.display import display_name
from spool_tool.errors import ConfigError, FileError, RetryableError, SpoolToolError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from spool_tool.config import DestinationURI, S3Options
    from spool_tool.spoolfs import Source
    from spool_tool.throttle import ConcurrencyGate

_T = TypeVar("_T")
PARTS_IN_FLIGHT_PER_FILE = 4
# Checksums botocore computes only with awscrt (a dependency; checked in case it is missing).
CRT_CHECKSUMS = frozenset({"crc32c", "crc64nvme"})


def make_session(options: S3Options) -> botocore.session.Session:
    """boto3's own credential and configuration chain (boto3.Session wraps exactly this),
    without importing boto3 and s3transfer, which costs ~0.1 s per run (BENCHMARKS.md)."""
    try:
        session = botocore.session.Session(profile=options.profile)
        if options.region:
            session.set_config_variable("region", options.region)
        session.get_scoped_config()  # raises ProfileNotFound now rather than mid-run
    except ProfileNotFound as exc:
        raise ConfigError(f"--profile {options.profile!r}: no such AWS profile") from exc
    except ConfigParseError as exc:
        raise ConfigError(_config_parse_reason(exc)) from exc
    return session


def _config_parse_reason(exc: ConfigParseError) -> str:
    """Name the AWS config or credentials file botocore could not parse, and the line."""
    where = display_name(str(exc.kwargs.get("path", "?")))
    parsing = exc.__context__
    line = getattr(parsing, "lineno", None)
    errors = getattr(parsing, "errors", None)
    if line is None and errors:
        line = errors[0][0]
    at = f", line {line}" if line is not None else ""
    return f"cannot parse the AWS config file {where}{at} (a [section] header is malformed?)"


def check_checksum_support(options: S3Options) -> None:
    """Refuse, before any file is touched, a checksum botocore cannot compute here (botocore
    sends every multipart upload, whichever engine sends the single PUTs)."""
    if options.checksum in CRT_CHECKSUMS and not HAS_CRT:
        raise ConfigError(
            f"--checksum {options.checksum} needs the awscrt package on the boto3 path "
            "(pip install awscrt)"
        )


def make_client(session: botocore.session.Session, options: S3Options, pool_size: int) -> S3Client:
    config = botocore.config.Config(
        # One attempt per call: destinations/gated.py retries, through the gate.
        retries={"mode": "standard", "total_max_attempts": 1},
        connect_timeout=options.connect_timeout,
        read_timeout=options.read_timeout,
        max_pool_connections=pool_size,
        s3={"addressing_style": options.addressing_style},
        request_checksum_calculation="when_required" if options.checksum == "off" else None,
        user_agent_extra="spool_tool",
    )
    try:
        client = session.create_client("s3", endpoint_url=options.endpoint_url, config=config)
    except (BotoCoreError, ValueError) as exc:
        raise ConfigError(f"cannot configure the S3 client: {exc}") from exc
    return cast("S3Client", client)


def _md5_b64(data: bytes | memoryview) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


class S3Destination:
    """Every request goes through ``self.requests`` (``gated.py``): one retry loop for both
    engines, whose ``gate`` bounds the requests in flight (1..``concurrency``, lowered while S3
    throttles unless ``--concurrency-mode fixed``) and whose ``limiter`` is ``--bwlimit``."""

    def __init__(
        self,
        uri: DestinationURI,
        options: S3Options,
        *,
        concurrency: int,
    ) -> None:
        self.uri = uri
        self.options = options
        self.bucket = uri.bucket
        self.session = make_session(options)
        self._pool_size = concurrency + PARTS_IN_FLIGHT_PER_FILE * 4
        self._client: S3Client | None = None
        self._boto = BotoContext(
            options.endpoint_url, options.connect_timeout, options.read_timeout
        )
        self._client_lock = threading.Lock()
        self.requests = GatedRequests(
            concurrency,
            max_attempts=options.max_attempts,
            notice=RetryNotice(options.endpoint_url, options.max_attempts),
            adaptive=options.concurrency_mode == "adaptive",
        )  # the runner sets requests.limiter (--bwlimit: one for the whole run)
        self._cancelled = self.requests.stop
        self._store = self._fast_path(options)
        self._parts = ThreadPoolExecutor(
            max_workers=PARTS_IN_FLIGHT_PER_FILE * 4, thread_name_prefix="s3-part"
        )
        self._algorithm = boto3_algorithm(options.checksum)
        self._preflight_passed = False
        self._object_args = object_args(options)
        self.budget = ByteBudget()  # file data in memory at once, over all uploads
        check_checksum_support(options)

    @property
    def client(self) -> S3Client:
        """The botocore client, created on first use (multipart, HEAD, abort, boto3 engine)."""
        with self._client_lock:
            if self._client is None:
                client = make_client(self.session, self.options, self._pool_size)
                options = self.options
                self._boto = BotoContext(
                    client.meta.endpoint_url, options.connect_timeout, options.read_timeout
                )
                self._client = client
            return self._client

    def _translate(self, exc: Exception, uri: str) -> SpoolToolError:
        return translate(exc, uri, self._boto)

    def _call(self, send: Callable[[], _T], *, body: int = 0) -> _T:
        """One boto3 request, retried through the gate (``gated.py``); raises what the last
        attempt raised, for the caller to translate."""
        return self.requests.call(send, lambda exc: failure_of(exc, self._boto), body=body)

    @property
    def gate(self) -> ConcurrencyGate:
        return self.requests.gate

    def cancel(self) -> None:
        """Stop multipart uploads between parts (they are aborted), and every retry backoff and
        bandwidth wait; a request already sent finishes."""
        self.requests.cancel()

    def _fast_path(self, options: S3Options) -> obstore_put.ObstorePuts | None:
        """The obstore store for single PUTs, or None to send everything through boto3."""
        if options.engine == "boto3":
            return None
        if not obstore_put.supports(options):
            if options.engine == "obstore":
                raise ConfigError(
                    "--engine obstore supports --checksum auto|crc64nvme|sha256 without "
                    "--storage-class, "
                    "--acl, --sse, --metadata or --tag; use --engine boto3"
                )
            return None
        try:
            endpoint = obstore_put.endpoint_without_client(self.session, options, self.bucket)
            if endpoint is None:
                endpoint = obstore_put.endpoint_from_client(self.client)
            store = obstore_put.make_store(self.session, endpoint, self.bucket, options)
            return obstore_put.ObstorePuts(store, endpoint, options, self.requests)
        except ImportError:
            if options.engine == "obstore":
                raise ConfigError(
                    "--engine obstore: the obstore package is not installed"
                ) from None
            return None
        except SpoolToolError:
            raise
        except Exception as exc:
            raise ConfigError(f"cannot configure the S3 client: {exc}") from exc

    def preflight(self) -> None:
        if self._preflight_passed:
            return
        self._check_destination()
        self._preflight_passed = True

    def _check_destination(self) -> None:
        """GET a key that cannot exist, through the engine that sends the PUTs: the answer
        (``s3errors.classify_preflight``) says whether uploads can succeed. Only FatalError
        comes out: a timeout or reset that outlasted the retries stops the run too."""
        where = f"s3://{self.bucket}"
        if self._store is not None:
            self._store.preflight(where)
            return
        key = f".spool_tool-preflight/{uuid.uuid4()}"
        try:
            self._call(lambda: self.client.get_object(Bucket=self.bucket, Key=key))
        except Exception as exc:
            error = translate_preflight(exc, where, self._boto)
            if error is not None:
                raise error from exc

    def upload(
        self,
        source: Source,
        key: str,
        record_upload_id: UploadIdRecorder,
        headers: ObjectHeaders = NO_HEADERS,
    ) -> UploadResult:
        args = self._args_for(headers)
        if source.size >= self.options.multipart_threshold:
            return self._multipart(source, key, record_upload_id, args)
        return self._put(source, key, args)

    def _args_for(self, headers: ObjectHeaders) -> dict[str, Any]:
        args = dict(self._object_args)
        content_type = self.options.content_type or headers.content_type
        if content_type:
            args["ContentType"] = content_type
        if headers.content_encoding:
            args["ContentEncoding"] = headers.content_encoding
        if headers.metadata:  # on every data path: put_object, multipart, obstore attributes
            args["Metadata"] = {**args.get("Metadata", {}), **dict(headers.metadata)}
        return args

    def _checksum_args(self, data: bytes | memoryview) -> dict[str, str]:
        if self._algorithm is None:
            return {"ContentMD5": _md5_b64(data)}
        return {"ChecksumAlgorithm": self._algorithm}

    def _confirmed_checksum(self, response: Any) -> str | None:
        if self._algorithm is None:
            return None
        value = response.get(f"Checksum{self._algorithm}")
        return f"{self._algorithm}:{value}" if value else None

    def _put(self, source: Source, key: str, args: dict[str, Any]) -> UploadResult:
        with self.budget.hold(source.size):
            return self._put_in_memory(source, key, args)

    def _put_in_memory(self, source: Source, key: str, args: dict[str, Any]) -> UploadResult:
        if self._store is not None:
            return self._put_fast(self._store, source, key, args)
        where = self.uri.uri_for(key)
        try:
            data = source.read_all()
            extra: dict[str, Any] = {**args, **self._checksum_args(data)}
            if self.options.no_clobber:
                extra["IfNoneMatch"] = "*"
            response = self._call(
                lambda: self.client.put_object(Bucket=self.bucket, Key=key, Body=data, **extra),
                body=len(data),
            )
        except Exception as exc:
            raise self._translate(exc, where) from exc
        return UploadResult(
            key, len(data), response.get("ETag"), self._confirmed_checksum(response)
        )

    def _put_fast(
        self, store: obstore_put.ObstorePuts, source: Source, key: str, args: dict[str, Any]
    ) -> UploadResult:
        where = self.uri.uri_for(key)
        data = source.read_all()
        result = store.put(
            key, data, obstore_put.attributes_for(args), where, no_clobber=self.options.no_clobber
        )
        # S3 verified the body against our x-amz-checksum-*; the ETag (the body's MD5 for
        # a single PUT) is what --verify-before-delete compares later.
        return UploadResult(key, len(data), result.get("e_tag"), None)

    def _multipart(
        self,
        source: Source,
        key: str,
        record_upload_id: UploadIdRecorder,
        args: dict[str, Any],
    ) -> UploadResult:
        where = self.uri.uri_for(key)
        extra: dict[str, Any] = dict(args)
        if self._algorithm is not None:
            extra["ChecksumAlgorithm"] = self._algorithm
        try:
            created = self._call(
                lambda: self.client.create_multipart_upload(Bucket=self.bucket, Key=key, **extra)
            )
        except Exception as exc:
            raise self._translate(exc, where) from exc
        upload_id = created["UploadId"]
        record_upload_id(upload_id)
        try:
            parts = self._send_parts(source, key, upload_id)
            complete: dict[str, Any] = {}
            if self.options.no_clobber:
                complete["IfNoneMatch"] = "*"
            response = self._call(
                lambda: self.client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
                    **complete,
                )
            )
        except BaseException as exc:
            self._abort_quietly(key, upload_id)
            record_upload_id(None)
            if isinstance(exc, Exception):
                raise self._translate(exc, where) from exc
            raise
        record_upload_id(None)
        return UploadResult(
            key, source.size, response.get("ETag"), self._confirmed_checksum(response)
        )

    def _send_parts(self, source: Source, key: str, upload_id: str) -> list[dict[str, Any]]:
        """Send every part, keeping ``PARTS_IN_FLIGHT_PER_FILE`` in flight (a sliding window:
        a slow part does not hold the others back); memory stays at window * part size."""
        part_size = self.options.part_size
        offsets = iter(enumerate(range(0, max(source.size, 1), part_size), start=1))
        parts: dict[int, dict[str, Any]] = {}
        pending: dict[Future[dict[str, Any]], int] = {}
        try:
            while True:
                while len(pending) < PARTS_IN_FLIGHT_PER_FILE:
                    number, offset = next(offsets, (0, 0))
                    if not number:
                        break
                    if self._cancelled.is_set():
                        raise RetryableError(
                            "interrupted; multipart upload aborted", path=source.path
                        )
                    future = self._parts.submit(
                        self._send_part, source, key, upload_id, number, offset
                    )
                    pending[future] = number
                if not pending:
                    return [parts[n] for n in sorted(parts)]
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    parts[pending.pop(future)] = future.result()
        finally:
            for future in pending:
                future.cancel()
            wait(pending)

    def _send_part(
        self, source: Source, key: str, upload_id: str, number: int, offset: int
    ) -> dict[str, Any]:
        length = min(self.options.part_size, source.size - offset)
        with self.budget.hold(length):
            part = self._send_part_in_memory(source, key, upload_id, number, offset, length)
        if source.on_sent is not None:
            source.on_sent(length)  # progress: bytes of a file still in flight
        return part

    def _send_part_in_memory(
        self, source: Source, key: str, upload_id: str, number: int, offset: int, length: int
    ) -> dict[str, Any]:
        data = os.pread(source.fd, length, offset)
        if len(data) != length:
            raise FileError("file shrank while uploading", path=source.path)
        checksum = self._checksum_args(data)
        try:
            response = self._call(
                lambda: self.client.upload_part(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=data,
                    **checksum,  # type: ignore[arg-type]
                ),
                body=length,
            )
        except Exception as exc:
            raise self._translate(exc, self.uri.uri_for(key)) from exc
        part: dict[str, Any] = {"PartNumber": number, "ETag": response["ETag"]}
        if self._algorithm is not None:
            field = f"Checksum{self._algorithm}"
            part[field] = response[field]  # type: ignore[literal-required]
        return part

    def _abort_quietly(self, key: str, upload_id: str) -> None:
        # On failure the journal still holds the id and the next run retries the abort.
        # One attempt, outside the gate: after a signal the gate admits nothing, and the abort
        # must still go out (SIGTERM mid-multipart leaves no open upload).
        with contextlib.suppress(BotoCoreError, ClientError):
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)

    def abort_upload(self, key: str, upload_id: str) -> None:
        try:
            self._call(
                lambda: self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id
                )
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "NoSuchUpload":
                return  # already gone: completed or aborted
            raise self._translate(exc, self.uri.uri_for(key)) from exc
        except Exception as exc:
            raise self._translate(exc, self.uri.uri_for(key)) from exc

    def head(self, key: str) -> ObjectInfo | None:
        try:
            response = self._call(
                lambda: self.client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
            )
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if status == 404:  # noqa: PLR2004
                return None
            raise self._translate(exc, self.uri.uri_for(key)) from exc
        except Exception as exc:
            raise self._translate(exc, self.uri.uri_for(key)) from exc
        checksum = None
        if self._algorithm is not None:
            value = response.get(f"Checksum{self._algorithm}")
            checksum = f"{self._algorithm}:{value}" if value else None
        return ObjectInfo(key, response["ContentLength"], response.get("ETag"), checksum)

    def close(self) -> None:
        self._parts.shutdown(wait=True, cancel_futures=True)
        if self._client is not None:
            self._client.close()


def boto3_algorithm(checksum: str) -> str | None:
    """The x-amz-checksum algorithm for botocore requests; None means Content-MD5 instead.

    "auto" is CRC32, botocore's own default: full-body verification at the lowest cost to the
    server, which decides multipart throughput here (SHA-256 parts were 17% slower in W3)."""
    if checksum == "off":
        return None
    return "CRC32" if checksum == "auto" else checksum.upper()


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


__all__ = ["S3Destination", "SpoolToolError"]
