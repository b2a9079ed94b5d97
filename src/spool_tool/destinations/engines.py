"""The single-PUT engines of the S3 destination: one protocol, the implementations in a list.

An engine sends single PUTs and the pre-flight, and maps its library's exceptions onto the one
classification table (``s3errors``). Multipart uploads, HEADs and aborts go through botocore
whichever engine is chosen: botocore hands out the UploadId the journal must hold before the
first part. ``ENGINES`` is ordered by cost: ``--engine auto`` takes the first engine that can
send everything the options ask for (``unsupported`` says why not, and ``-v`` shows it once).
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from spool_tool.config import CRT_CHECKSUMS
from spool_tool.errors import ConfigError

if TYPE_CHECKING:
    from spool_tool.config import ChecksumName, EngineName, S3Options
    from spool_tool.destinations.awsenv import StaticAws
    from spool_tool.destinations.boto_put import BotoClient
    from spool_tool.destinations.gated import GatedRequests

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PutSpec:
    """What one single PUT carries besides its body (the per-run options are the engine's)."""

    key: str
    uri: str  # s3://bucket/key, for errors
    content_type: str | None = None
    content_encoding: str | None = None
    no_clobber: bool = False
    metadata: tuple[tuple[str, str], ...] = ()  # per object (--preserve-mtime), beside --metadata
    # The caller records the checksum (--manifest): an engine that S3 does not tell it computes
    # the value it sent and S3 verified.
    report_checksum: bool = False


def body_checksum(algorithm: str, data: bytes) -> str:
    """``ALGORITHM:base64`` of ``data``, as S3 computes it for ``x-amz-checksum-*`` (``sha256``
    or ``crc64nvme``, the algorithms obstore sends): what S3 verified the body against."""
    import base64  # noqa: PLC0415 - only with --manifest on the obstore path

    if algorithm == "sha256":
        import hashlib  # noqa: PLC0415

        digest = hashlib.sha256(data).digest()
    else:
        from awscrt import checksums  # type: ignore[import-untyped]  # noqa: PLC0415 - no stubs

        digest = checksums.crc64nvme(data).to_bytes(8, "big")
    return f"{algorithm.upper()}:{base64.b64encode(digest).decode('ascii')}"


@dataclass(frozen=True, slots=True)
class Confirmed:
    """What S3 confirmed for a single PUT: the ETag and, where returned, the checksum."""

    etag: str | None
    checksum: str | None = None  # "ALGORITHM:base64value"


class PutEngine(Protocol):
    """Sends single PUTs (``put`` returns only once S3 confirmed the object, whose body it
    verified against the checksum header) and the pre-flight. Errors raised are spool_tool's
    own classes, decided by ``s3errors.classify`` on what the engine's library saw. Safe to
    call from many threads at once."""

    name: str

    def preflight(self, uri: str) -> None:
        """FatalError when no PUT can succeed (no bucket, unreachable, bad credentials)."""

    def put(self, data: bytes, spec: PutSpec) -> Confirmed: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class EngineContext:
    """What every engine is built from: the keys and region from the environment where
    botocore could not answer otherwise (``awsenv``), else botocore's chain (``boto.session``)."""

    static: StaticAws | None
    options: S3Options
    bucket: str
    boto: BotoClient  # the lazily created botocore session and client (multipart, HEAD, abort)
    requests: GatedRequests  # the one retry loop, gate and bandwidth limit of the destination


@dataclass(frozen=True, slots=True)
class EngineKind:
    name: EngineName
    unsupported: Callable[[S3Options], str | None]  # None: can send all the options ask for
    build: Callable[[EngineContext], PutEngine]


def _obstore_unsupported(options: S3Options) -> str | None:
    from spool_tool.destinations import obstore_put  # noqa: PLC0415 - light, no obstore import

    if importlib.util.find_spec("obstore") is None:
        return "anything: the obstore package is not installed"
    return obstore_put.unsupported(options)


def _build_obstore(context: EngineContext) -> PutEngine:
    from spool_tool.destinations import obstore_put  # noqa: PLC0415

    return obstore_put.ObstoreEngine.build(context)


def _build_boto3(context: EngineContext) -> PutEngine:
    from spool_tool.destinations import boto_put  # noqa: PLC0415

    return boto_put.BotoEngine(context.boto, context.options, context.bucket)


ENGINES: tuple[EngineKind, ...] = (
    EngineKind("obstore", _obstore_unsupported, _build_obstore),  # ~0.3 ms CPU per PUT
    EngineKind("boto3", lambda _: None, _build_boto3),  # ~2-3 ms CPU per PUT, sends anything
)

_said: set[tuple[str, str]] = set()


def choose_engine(options: S3Options) -> EngineKind:
    """The engine ``--engine`` names, or for ``auto`` the first in ``ENGINES`` that supports
    the options. A named engine that cannot send them is a ConfigError (exit 2)."""
    if options.engine != "auto":
        kind = next(k for k in ENGINES if k.name == options.engine)
        reason = kind.unsupported(options)
        if reason is not None:
            others = " or ".join(f"--engine {k.name}" for k in ENGINES if k is not kind)
            raise ConfigError(
                f"cannot send {reason}; use {others} or auto", option="engine", value=kind.name
            )
        return kind
    for kind in ENGINES:
        reason = kind.unsupported(options)
        if reason is None:
            return kind
        if (kind.name, reason) not in _said:
            _said.add((kind.name, reason))
            log.debug("engine %s cannot send %s: trying the next engine", kind.name, reason)
    raise AssertionError("the last engine supports every option")  # pragma: no cover


# ``--checksum auto``, one meaning for every engine: the cheapest full-body check S3 verifies
# for the kind of request. CRC64NVME for a single PUT (both ends compute it fastest); CRC32C for
# multipart parts (S3 combines the parts' CRC32Cs; awscrt computes it 1.75x as fast as CRC32
# and SeaweedFS verifies either at the same cost: 14% less client CPU on W3, BENCHMARKS.md).
AUTO_CHECKSUM = {"single": "crc64nvme", "part": "crc32c"}
# botocore computes CRC32C and CRC64NVME only with awscrt (a dependency, checked in case it is
# missing): ``auto`` on a request botocore sends then means CRC32, which botocore always has.
AUTO_WITHOUT_CRT = "crc32"


def checksum_for(name: ChecksumName, request: str) -> str | None:
    """The checksum algorithm (lower case) a ``request`` ("single" or "part") carries, or None
    for ``--checksum off`` (Content-MD5 instead, still verified by S3)."""
    if name == "off":
        return None
    return AUTO_CHECKSUM[request] if name == "auto" else name


def botocore_checksum(name: ChecksumName, request: str) -> str | None:
    """``checksum_for`` a request botocore sends (the boto3 engine's PUTs, every multipart
    request): ``auto`` without awscrt is ``AUTO_WITHOUT_CRT``. Imports botocore and awscrt."""
    algorithm = checksum_for(name, request)
    if name == "auto" and algorithm in CRT_CHECKSUMS:
        from botocore.compat import HAS_CRT  # noqa: PLC0415 - only where botocore sends

        if not HAS_CRT:
            return AUTO_WITHOUT_CRT
    return algorithm


__all__ = [
    "ENGINES",
    "Confirmed",
    "EngineContext",
    "EngineKind",
    "PutEngine",
    "PutSpec",
    "botocore_checksum",
    "checksum_for",
    "choose_engine",
]
