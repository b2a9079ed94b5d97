"""``s3://BUCKET/PREFIX/``: credentials, engine choice, multipart, HEAD, abort.

Single PUTs go through the run's engine (``engines.ENGINES``: obstore where it can send the
options, else botocore) and carry a checksum S3 verifies. Large files use multipart through
botocore with per-part checksums; the UploadId is handed to the journal before any part is sent
and the upload is aborted on any failure. Parts in flight over all files are
``--part-concurrency`` (4 x 8 MiB by default): the server holds every body in flight, and on
SeaweedFS its CPU per byte rose with the bytes in flight (4 x 8 MiB against 8 x 16 MiB: W3
1.13x faster, BENCHMARKS.md); a file that would need more than S3's 10,000 parts gets larger ones.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any, TypeVar

from spool_tool.budget import ByteBudget, PartBuffers
from spool_tool.destinations.awsenv import configured_endpoint, static_aws
from spool_tool.destinations.base import (
    NO_HEADERS,
    ObjectHeaders,
    ObjectInfo,
    UploadIdRecorder,
    UploadResult,
)
from spool_tool.destinations.boto_put import (
    BotoClient,
    boto3_algorithm,
    checksum_args,
    confirmed_checksum,
    header_args,
    make_client,
    object_args,
)
from spool_tool.destinations.engines import (
    EngineContext,
    PutSpec,
    botocore_checksum,
    choose_engine,
)
from spool_tool.destinations.gated import GatedRequests
from spool_tool.destinations.s3errors import RetryNotice
from spool_tool.display import display_name
from spool_tool.errors import ConfigError, FileError, RetryableError, SpoolToolError

if TYPE_CHECKING:
    import botocore.session
    from botocore.exceptions import ConfigParseError
    from mypy_boto3_s3 import S3Client

    from spool_tool.config import DestinationURI, S3Options
    from spool_tool.destinations.engines import PutEngine
    from spool_tool.spoolfs import Source
    from spool_tool.throttle import ConcurrencyGate

_T = TypeVar("_T")
MAX_PARTS = 10_000  # S3's limit per multipart upload
MIB = 1024 * 1024
STORED_CHECKSUMS = ("CRC64NVME", "CRC32", "CRC32C", "SHA256", "SHA1")


def part_size_for(size: int, part_size: int) -> int:
    """``--part-size``, or for a file that would need more than S3's 10,000 parts the smallest
    whole number of MiB that fits it in 10,000 (as the AWS CLI grows its parts)."""
    if size <= part_size * MAX_PARTS:
        return part_size
    return -(-size // (MAX_PARTS * MIB)) * MIB


def make_session(options: S3Options) -> botocore.session.Session:
    """boto3's own credential and configuration chain (boto3.Session wraps exactly this),
    without importing boto3 and s3transfer, which costs ~0.1 s per run (BENCHMARKS.md)."""
    import botocore.session  # noqa: PLC0415 - botocore only where needed (start-up, issue 10)
    from botocore.exceptions import ConfigParseError, ProfileNotFound  # noqa: PLC0415

    try:
        session = botocore.session.Session(profile=options.profile)
        if options.region:
            session.set_config_variable("region", options.region)
        session.get_scoped_config()  # raises ProfileNotFound now rather than mid-run
    except ProfileNotFound as exc:
        raise ConfigError("no such AWS profile", option="profile", value=options.profile) from exc
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
        report_checksums: bool = False,
    ) -> None:
        """``report_checksums`` (``--manifest``): every single PUT's result carries its
        checksum, on engines whose library does not return it too."""
        self.uri = uri
        self.report_checksums = report_checksums
        self.options = options
        self.bucket = uri.bucket
        # Keys and region from the environment where botocore could not answer otherwise (no
        # botocore import on the obstore fast path); else botocore's session now, so that a bad
        # --profile or config file fails before any file moves.
        static = static_aws(options) if options.engine != "boto3" else None
        in_flight = options.part_concurrency
        self.requests = GatedRequests(
            concurrency,
            max_attempts=options.max_attempts,
            notice=RetryNotice(configured_endpoint(options), options.max_attempts),
            adaptive=options.concurrency_mode == "adaptive",
        )  # the runner sets requests.limiter (--bwlimit: one for the whole run)
        self._cancelled = self.requests.stop
        self.boto = BotoClient(
            lambda: make_session(options), options, concurrency + in_flight, self.requests
        )
        if static is None:
            self.boto.session  # noqa: B018 - built now: its errors before any file is touched
        self._parts = ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="s3-part")
        self._preflight_passed = False
        self._object_args = object_args(options)
        self.budget = ByteBudget()  # file data in memory at once, over all uploads
        self._buffers = PartBuffers(in_flight)
        context = EngineContext(static, options, self.bucket, self.boto, self.requests)
        self.engine: PutEngine = choose_engine(options).build(context)

    @property
    def session(self) -> botocore.session.Session:
        """botocore's session, built on first use when the environment gave the keys."""
        return self.boto.session

    @property
    def client(self) -> S3Client:
        """The botocore client, created on first use (multipart, HEAD, abort, boto3 engine)."""
        return self.boto.client

    def _translate(self, exc: Exception, uri: str) -> SpoolToolError:
        return self.boto.translate(exc, uri)

    def _call(self, send: Callable[[], _T], *, body: int = 0) -> _T:
        return self.boto.call(send, body=body)

    @property
    def gate(self) -> ConcurrencyGate:
        return self.requests.gate

    def cancel(self) -> None:
        """Stop multipart uploads between parts (they are aborted), and every retry backoff and
        bandwidth wait; a request already sent finishes."""
        self.requests.cancel()

    def preflight(self) -> None:
        """GET a key that cannot exist, through the engine that sends the PUTs
        (``s3errors.classify_preflight`` reads the answer). Only FatalError comes out: a timeout
        or reset that outlasted the retries stops the run too."""
        if self._preflight_passed:
            return
        self.engine.preflight(f"s3://{self.bucket}")
        self._preflight_passed = True

    def upload(
        self,
        source: Source,
        key: str,
        record_upload_id: UploadIdRecorder,
        headers: ObjectHeaders = NO_HEADERS,
    ) -> UploadResult:
        content_type = self.options.content_type or headers.content_type
        if source.size >= self.options.multipart_threshold:
            args = {**self._object_args, **header_args(content_type, headers.content_encoding)}
            if headers.metadata:  # on every data path: put_object, multipart, obstore
                args["Metadata"] = {**args.get("Metadata", {}), **dict(headers.metadata)}
            return self._multipart(source, key, record_upload_id, args)
        spec = PutSpec(
            key,
            self.uri.uri_for(key),
            content_type,
            headers.content_encoding,
            no_clobber=self.options.no_clobber,
            metadata=headers.metadata,
            report_checksum=self.report_checksums,
        )
        with self.budget.hold(source.size):
            data = source.read_all()
            confirmed = self.engine.put(data, spec)
        return UploadResult(key, len(data), confirmed.etag, confirmed.checksum)

    @functools.cached_property
    def _algorithm(self) -> str | None:
        """The multipart checksum in botocore's spelling (None: Content-MD5), decided at the
        first multipart upload: ``botocore_checksum`` imports awscrt, which the obstore path
        does not otherwise load (start-up)."""
        return boto3_algorithm(botocore_checksum(self.options.checksum, "part"))

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
            with self._buffers.using():
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
        checksum = confirmed_checksum(self._algorithm, response)
        return UploadResult(key, source.size, response.get("ETag"), checksum)

    def _send_parts(self, source: Source, key: str, upload_id: str) -> list[dict[str, Any]]:
        """Send every part, keeping up to ``--part-concurrency`` of this file queued (a sliding
        window: a slow part does not hold the others back). The part pool sends at most
        ``--part-concurrency`` over all files, so memory stays at that many parts."""
        part_size = part_size_for(source.size, self.options.part_size)
        window = self.options.part_concurrency
        offsets = iter(enumerate(range(0, max(source.size, 1), part_size), start=1))
        parts: dict[int, dict[str, Any]] = {}
        pending: dict[Future[dict[str, Any]], int] = {}
        try:
            while True:
                while len(pending) < window:
                    number, offset = next(offsets, (0, 0))
                    if not number:
                        break
                    if self._cancelled.is_set():
                        raise RetryableError(
                            "interrupted; multipart upload aborted", path=source.path
                        )
                    future = self._parts.submit(
                        self._send_part, source, key, upload_id, number, offset, part_size
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
        self, source: Source, key: str, upload_id: str, number: int, offset: int, part_size: int
    ) -> dict[str, Any]:
        length = min(part_size, source.size - offset)
        with self.budget.hold(length):
            part = self._send_part_in_memory(source, key, upload_id, number, offset, length)
        if source.on_sent is not None:
            source.on_sent(length)  # progress: bytes of a file still in flight
        return part

    def _send_part_in_memory(
        self, source: Source, key: str, upload_id: str, number: int, offset: int, length: int
    ) -> dict[str, Any]:
        with self._buffers.buffer(length) as data:
            if os.preadv(source.fd, [data], offset) != length:
                raise FileError("file shrank while uploading", path=source.path)
            return self._send_part_buffer(data, key, upload_id, number)

    def _send_part_buffer(
        self, data: bytearray, key: str, upload_id: str, number: int
    ) -> dict[str, Any]:
        checksum = checksum_args(self._algorithm, data)
        try:
            response = self._call(
                lambda: self.client.upload_part(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=data,  # type: ignore[arg-type] # botocore takes a bytearray as a blob
                    **checksum,  # type: ignore[arg-type]
                ),
                body=len(data),
            )
        except Exception as exc:
            raise self._translate(exc, self.uri.uri_for(key)) from exc
        part: dict[str, Any] = {"PartNumber": number, "ETag": response["ETag"]}
        if self._algorithm is not None:
            field = f"Checksum{self._algorithm}"
            part[field] = response[field]  # type: ignore[literal-required]
        return part

    def _abort_quietly(self, key: str, upload_id: str) -> None:
        """Abort an upload that failed or was interrupted. After a signal the gate refuses new
        requests (``cancel``), so the abort goes out once outside it: an interrupted upload is
        aborted, never left open. On failure the next run retries it (orphan cleanup)."""

        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

        def send() -> object:
            return self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id
            )

        with contextlib.suppress(SpoolToolError, BotoCoreError, ClientError):
            if self._cancelled.is_set():
                send()
            else:
                self._call(send)

    def abort_upload(self, key: str, upload_id: str) -> None:
        from botocore.exceptions import ClientError  # noqa: PLC0415 - botocore sends it anyway

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
        from botocore.exceptions import ClientError  # noqa: PLC0415 - botocore sends it anyway

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
        # The checksum of whichever kind of upload stored it (single PUT or multipart).
        checksum = next(
            (
                f"{name}:{value}"
                for name in STORED_CHECKSUMS
                if (value := response.get(f"Checksum{name}"))
            ),
            None,
        )
        return ObjectInfo(key, response["ContentLength"], response.get("ETag"), checksum)

    def close(self) -> None:
        self._parts.shutdown(wait=True, cancel_futures=True)
        self.engine.close()
        self.boto.close()


__all__ = ["S3Destination", "SpoolToolError", "make_client", "make_session"]
