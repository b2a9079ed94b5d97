"""The obstore engine (``engines.PutEngine``): single PUTs through Rust ``object_store``, fed
botocore's configuration.

boto3 spends ~2 ms of CPU per PUT; obstore ~0.2 ms, which decides small-file throughput on a
host whose CPU is shared with the producer (see BENCHMARKS.md). Only the data path moves:
credentials, region, endpoint and addressing style come from botocore's chain (the endpoint is
resolved without building a client where that is unambiguous), and multipart uploads, aborts
and HEADs stay on botocore (obstore does not expose the UploadId we must journal). The
pre-flight is a GET of a key that cannot exist, through obstore.

Safety notes, measured on obstore 0.12.1:
* Every PUT carries ``x-amz-checksum-crc64nvme`` (or ``-sha256``); S3 rejects a corrupted body
  (``BadDigest``).
* Only the *synchronous* ``obstore.put`` is used, from a thread pool: ``put_async`` can abort
  the interpreter at exit (a tokio thread racing Python finalisation; pyo3-async-runtimes #40).
* obstore raises few typed errors: status, S3 code and connection error kind are read from
  its message (``ObstoreEngine.failure_of``, this engine's half of ``s3errors``).
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from spool_tool.destinations.awsenv import ENDPOINT_VARIABLES, StaticAws, configured_endpoint
from spool_tool.destinations.engines import Confirmed, PutSpec, body_checksum, checksum_for
from spool_tool.destinations.s3errors import (
    S3Failure,
    Transport,
    classify,
    classify_preflight,
)
from spool_tool.errors import ConfigError, FatalError, FileError, RetryableError, SpoolToolError

if TYPE_CHECKING:
    import botocore.session
    from mypy_boto3_s3 import S3Client
    from obstore import Attributes, PutResult
    from obstore.store import ClientConfig, RetryConfig, S3Config, S3Credential, S3Store

    from spool_tool.config import S3Options
    from spool_tool.destinations.engines import EngineContext
    from spool_tool.destinations.gated import GatedRequests

_AWS_SUFFIXES = (".amazonaws.com", ".amazonaws.com.cn")
_STATUS = re.compile(r"non-2xx status code: (\d{3})")
_CODE = re.compile(r"<Code>([^<]+)</Code>")
_MESSAGE = re.compile(r"<Message>([^<]+)</Message>")
_HTTP_KIND = re.compile(r"HttpError \{\s*kind: (\w+)")
CREDENTIAL_TTL = timedelta(minutes=10)
# The checksums obstore can send (what ``--checksum auto`` means: ``engines.checksum_for``).
OBSTORE_CHECKSUMS = frozenset({"crc64nvme", "sha256"})


def unsupported(options: S3Options) -> str | None:
    """What of these options obstore cannot send (None: all of them). ``--acl``: object_store
    has no canned-ACL setting, and a default ``x-amz-acl`` header would go out unsigned, which
    AWS rejects. Checksums: obstore sends CRC64NVME and SHA-256 only."""
    if checksum_for(options.checksum, "single") not in OBSTORE_CHECKSUMS:
        return f"--checksum {options.checksum} (only auto, crc64nvme, sha256)"
    if options.acl is not None:
        return "--acl"
    return None


class BotoCredentials:
    """obstore credential provider backed by botocore's chain (refreshing credentials refresh
    inside ``get_frozen_credentials``). Reports the real expiry, capped, so obstore asks again
    before short-lived credentials lapse."""

    def __init__(self, session: botocore.session.Session) -> None:
        credentials = session.get_credentials()
        if credentials is None:
            raise FatalError("no usable AWS credentials found (environment, profile, role)")
        self._credentials = credentials

    def __call__(self) -> S3Credential:
        frozen = self._credentials.get_frozen_credentials()
        expires = datetime.now(UTC) + CREDENTIAL_TTL
        real: datetime | None = getattr(self._credentials, "_expiry_time", None)
        if real is not None:
            expires = min(expires, real)
        return {
            "access_key_id": frozen.access_key or "",
            "secret_access_key": frozen.secret_key or "",
            "token": frozen.token,
            "expires_at": expires,
        }


class Settings(Protocol):
    """What endpoint resolution reads from botocore's session (``awsenv.StaticAws`` answers
    the same two questions without botocore)."""

    def get_scoped_config(self) -> dict[str, Any]: ...
    def get_config_variable(self, logical_name: str) -> Any: ...


@dataclass(frozen=True)
class Endpoint:
    """Where obstore sends requests: ``url`` None means AWS's own endpoint for ``region``."""

    url: str | None
    region: str
    addressing_style: str


_CLIENT_ONLY_ENV = (
    "AWS_USE_FIPS_ENDPOINT",
    "AWS_USE_DUALSTACK_ENDPOINT",
    "AWS_S3_US_EAST_1_REGIONAL_ENDPOINT",
)
_CLIENT_ONLY_CONFIG = (
    "services",
    "endpoint_url",
    "s3",
    "use_fips_endpoint",
    "use_dualstack_endpoint",
)


def endpoint_without_client(session: Settings, options: S3Options, bucket: str) -> Endpoint | None:
    """Resolve the endpoint as botocore would, for the common cases only: an explicit
    ``--endpoint-url``, ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``, or plain AWS. Anything
    subtler (profile endpoint settings, FIPS, dual-stack, dotted bucket names) returns None and
    the caller asks a real botocore client. Creating that client costs ~0.1 s per run."""
    env = os.environ
    if any(env.get(name) for name in _CLIENT_ONLY_ENV) or "." in bucket:
        return None
    if any(key in session.get_scoped_config() for key in _CLIENT_ONLY_CONFIG):
        return None
    region = session.get_config_variable("region")
    url = configured_endpoint(options, env)
    if url is None and not region:
        return None  # let botocore raise its own NoRegionError
    return Endpoint(url, region or "us-east-1", options.addressing_style)


def endpoint_from_client(client: S3Client) -> Endpoint:
    resolved = client.meta.endpoint_url
    aws = (urlsplit(resolved).hostname or "").endswith(_AWS_SUFFIXES)
    style = (client.meta.config.s3 or {}).get("addressing_style", "auto")  # type: ignore[attr-defined]
    return Endpoint(None if aws else resolved, client.meta.region_name or "us-east-1", style)


def make_store(
    credentials: botocore.session.Session | StaticAws,
    endpoint: Endpoint,
    bucket: str,
    options: S3Options,
    trusted_pem: str | None = None,
) -> S3Store:
    """The store; keys from the environment go into its configuration (no Python call per
    request), anything else through ``BotoCredentials``, which follows refreshes.
    ``trusted_pem``: the CAs of botocore's bundle (``AWS_CA_BUNDLE``, a profile's
    ``ca_bundle``; ``read_ca_bundle``), which TLS then trusts too, as botocore's requests do
    (a private CA in front of MinIO)."""
    from obstore.store import S3Store  # noqa: PLC0415 - optional fast path

    custom = endpoint.url is not None
    style = endpoint.addressing_style
    # botocore's rule: a custom endpoint is path-style unless "virtual"; AWS is virtual unless
    # "path"; an IP address endpoint is always path-style (BUCKET.10.0.0.1 names no host).
    virtual = (style == "virtual") if custom else (style != "path")
    if custom and _is_ip_endpoint(str(endpoint.url)):
        virtual = False
    config: S3Config = {
        **PINNED_AGAINST_ENVIRONMENT,  # type: ignore[typeddict-item]
        "region": endpoint.region,
        "virtual_hosted_style_request": virtual,
        "checksum_algorithm": checksum_for(options.checksum, "single") or "crc64nvme",
        # The checksum header protects the body (S3 verifies it): no SHA-256 of it in SigV4.
        "unsigned_payload": True,
    }
    if options.sse is not None:
        config["server_side_encryption"] = options.sse
    if options.sse_kms_key_id is not None:
        config["sse_kms_key_id"] = options.sse_kms_key_id
    if endpoint.url is not None:
        url = endpoint.url.rstrip("/")
        if virtual:
            parts = urlsplit(url)
            url = f"{parts.scheme}://{bucket}.{parts.netloc}{parts.path}"
        config["endpoint"] = url
        config["aws_endpoint_url_s3"] = url  # obstore reads AWS_* env too: pin it
    client_options: ClientConfig = {
        "timeout": f"{round(options.read_timeout * 1000)}ms",
        "connect_timeout": f"{round(options.connect_timeout * 1000)}ms",
        "pool_max_idle_per_host": "64",
    }
    if (endpoint.url or "").startswith("http://"):
        client_options["allow_http"] = True
    if trusted_pem is not None:
        client_options["root_certificate"] = trusted_pem
    # Retries are the destination's (gated.py: seen, paced by the gate, bounded): none here.
    retry_config: RetryConfig = {"max_retries": 0}
    if isinstance(credentials, StaticAws):
        config["access_key_id"] = credentials.access_key
        config["secret_access_key"] = credentials.secret_key
        if credentials.token is not None:
            config["session_token"] = credentials.token
        return S3Store(
            bucket, config=config, client_options=client_options, retry_config=retry_config
        )
    return S3Store(
        bucket,
        config=config,
        client_options=client_options,
        retry_config=retry_config,
        credential_provider=BotoCredentials(credentials),
    )


RUNTIME_THREADS_VARIABLE = "TOKIO_WORKER_THREADS"

# obstore's S3Store starts from every AWS_* variable object_store knows
# (``AmazonS3Builder::from_env``) before our configuration; botocore, which sends the multipart
# uploads and HEADs, reads none of these. Where a configuration value undoes one, it is pinned
# to what the variable's absence means (the store's config wins over the environment)...
PINNED_AGAINST_ENVIRONMENT: dict[str, object] = {
    "skip_signature": False,  # AWS_SKIP_SIGNATURE: unsigned requests
    "disable_tagging": False,  # AWS_DISABLE_TAGGING: --tag silently dropped
    "s3_express": False,  # AWS_S3_EXPRESS
    "request_payer": False,  # AWS_REQUEST_PAYER, AWS_REQUESTER_PAYS
    "conditional_put": "etag",  # AWS_CONDITIONAL_PUT: how --no-clobber is sent
}
# ...and where none can (only a value, never "unset", can be configured), it is refused.
# Lower case, as object_store matches them (AWS_ prefix, then case-insensitive).
OBSTORE_ONLY_VARIABLES: dict[str, str] = {
    "aws_endpoint": "--endpoint-url or AWS_ENDPOINT_URL",
    "aws_token": "AWS_SESSION_TOKEN",
    "aws_server_side_encryption": "--sse",
    "aws_sse_kms_key_id": "--sse-kms-key-id",
    "aws_sse_bucket_key_enabled": "the bucket's default encryption",
    "aws_sse_customer_key_base64": "the bucket's default encryption",
}


def check_environment(environ: Mapping[str, str]) -> None:
    """What the obstore engine cannot run with, refused before any request as one line
    (ConfigError, exit 2):

    * ``TOKIO_WORKER_THREADS``: obstore's async runtime (tokio) reads it when it starts, at
      the first request, and panics on anything but a positive integer (empty included);
    * an AWS_* variable obstore would obey and botocore ignore (``OBSTORE_ONLY_VARIABLES``):
      single PUTs and multipart uploads would go out differently (another endpoint, other
      encryption)."""
    value = environ.get(RUNTIME_THREADS_VARIABLE)
    digits = value.removeprefix("+") if value is not None else ""
    if value is not None and not (
        digits.isascii() and digits.isdigit() and 0 < int(digits) < 2**64  # Rust's usize
    ):
        raise ConfigError(
            f"environment variable {RUNTIME_THREADS_VARIABLE}={value!r} is not a positive "
            "integer: the obstore engine's runtime cannot start with it (unset it, or use "
            "--engine boto3)"
        )
    for name in sorted(environ):
        instead = OBSTORE_ONLY_VARIABLES.get(name.lower()) if name.startswith("AWS_") else None
        if instead is not None:
            raise ConfigError(
                f"environment variable {name} is read by the obstore engine only (botocore, "
                f"which sends multipart uploads, ignores it): use {instead}, or unset it"
            )


def check_no_ignored_endpoint(environ: Mapping[str, str]) -> None:
    """For a run that sends to AWS's own endpoint: ``AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true``
    makes botocore ignore ``AWS_ENDPOINT_URL(_S3)``, but obstore's store would still read it
    (no configuration value unsets an endpoint) and send the single PUTs elsewhere than the
    multipart uploads: refused as one line (ConfigError, exit 2)."""
    for name in ENDPOINT_VARIABLES:
        if environ.get(name):
            raise ConfigError(
                f"environment variable {name} is ignored by botocore "
                "(AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true) but not by the obstore engine: "
                "unset one of them, or name the endpoint with --endpoint-url"
            )


def read_ca_bundle(path: str) -> str:
    """The PEM text of botocore's CA bundle file (ConfigError when it cannot be read)."""
    try:
        with open(os.path.expanduser(path), encoding="ascii", errors="replace") as file:
            return file.read()
    except OSError as exc:
        raise ConfigError(f"cannot read the CA bundle {path}: {exc.strerror}") from exc


def _is_ip_endpoint(url: str) -> bool:
    try:
        ipaddress.ip_address(urlsplit(url).hostname or "")
    except ValueError:
        return False
    return True


class ObstoreEngine:
    """Single PUTs and the pre-flight through obstore, retried by the destination's one loop
    (``gated.GatedRequests``: obstore's own retries are off, so that every attempt is seen,
    takes a slot of the gate and is bounded like botocore's).

    Every option production sets goes with each PUT: content type and encoding, ``--metadata``
    (``x-amz-meta-*``), ``--storage-class`` and ``--tag`` as obstore attributes and tags;
    ``--sse`` / ``--sse-kms-key-id`` in the store's configuration. ``--acl`` cannot
    (``unsupported``).

    A request gives up after ``max_attempts`` attempts of at most ``read_timeout`` each (obstore's
    ``timeout`` covers the whole request), plus the backoff between them; a signal
    (``GatedRequests.cancel``) ends the backoff and the attempts."""

    name = "obstore"

    def __init__(
        self,
        make: Callable[[], S3Store],
        endpoint: Endpoint,
        options: S3Options,
        requests: GatedRequests,
    ) -> None:
        """``make`` builds the store, at the first request: importing obstore and building
        its client (the system's root certificates) cost ~20 ms, which a run with nothing to
        upload never needs (issue 10: <= 0.15 s)."""
        self._make = make
        self._store: S3Store | None = None
        self._store_lock = threading.Lock()
        self.requests = requests
        self.endpoint = endpoint.url or f"https://s3.{endpoint.region}.amazonaws.com"
        self.options = options
        self.attributes = object_attributes(options)
        self.tags = dict(options.tags) or None

    @classmethod
    def build(cls, context: EngineContext) -> ObstoreEngine:
        """The store for ``context``'s bucket, endpoint resolved as botocore would; with keys
        from the environment (``context.static``) botocore is not asked, or imported."""
        options, static = context.options, context.static
        check_environment(os.environ)
        try:
            settings = static if static is not None else context.boto.session
            endpoint = endpoint_without_client(settings, options, context.bucket)
            if endpoint is None:
                endpoint = endpoint_from_client(context.boto.client)
            credentials = static if static is not None else context.boto.session
            ca_bundle = settings.get_config_variable("ca_bundle")
        except SpoolToolError:
            raise
        except Exception as exc:
            raise ConfigError(f"cannot configure the S3 client: {exc}") from exc
        if endpoint.url is None:
            check_no_ignored_endpoint(os.environ)
        pem = None if ca_bundle is None else read_ca_bundle(ca_bundle)
        make = functools.partial(make_store, credentials, endpoint, context.bucket, options, pem)
        return cls(make, endpoint, options, context.requests)

    @property
    def store(self) -> S3Store:
        """The store, built at the first request (the pre-flight, before any file is
        claimed): what obstore refuses in its configuration is a usage error then."""
        if self._store is not None:
            return self._store  # every PUT after the first: no lock
        with self._store_lock:
            if self._store is None:
                try:
                    self._store = self._make()
                except SpoolToolError:
                    raise
                except Exception as exc:
                    raise ConfigError(f"cannot configure the S3 client: {exc}") from exc
                except BaseException as exc:
                    if not is_panic(exc):
                        raise
                    message = f"cannot configure the S3 client: {first_line(exc)}"
                    raise ConfigError(message) from exc
            return self._store

    def put(self, data: bytes, spec: PutSpec) -> Confirmed:
        import obstore  # noqa: PLC0415

        attributes = dict(self.attributes)
        attributes.update(spec.metadata)  # per object (--preserve-mtime): x-amz-meta-*
        if spec.content_type:
            attributes["Content-Type"] = spec.content_type
        if spec.content_encoding:
            attributes["Content-Encoding"] = spec.content_encoding
        store = self.store  # its ConfigError as it is, not as a failed request

        def send() -> PutResult:
            return obstore.put(
                store,
                spec.key,
                data,
                use_multipart=False,
                attributes=attributes or None,
                tags=self.tags,
                mode="create" if spec.no_clobber else "overwrite",
            )

        try:
            result = self.requests.call(send, self.failure_of, body=len(data))
        except Exception as exc:
            raise self.translate(exc, spec.uri) from exc
        except BaseException as exc:  # a panic: this object fails, the others go on
            if not is_panic(exc):
                raise
            raise FileError(PANIC, uri=spec.uri, cause=first_line(exc)) from exc
        # S3 verified the body against our x-amz-checksum-*; the ETag (the body's MD5 for a
        # single PUT) is what --verify-before-delete compares later. obstore does not say the
        # checksum: where it is recorded (--manifest), it is the value obstore sent.
        checksum = None
        if spec.report_checksum:
            checksum = body_checksum(
                checksum_for(self.options.checksum, "single") or "crc64nvme", data
            )
        return Confirmed(result.get("e_tag"), checksum)

    def close(self) -> None:
        """Nothing to release: obstore's connections go with the store."""

    def preflight(self, uri: str) -> None:
        """Fail fast when no PUT can succeed: GET a key that cannot exist (the answer is read by
        ``s3errors.classify_preflight``, as on the boto3 path)."""
        import obstore  # noqa: PLC0415

        store = self.store  # a configuration obstore refuses: a usage error, before any file
        try:
            self.requests.call(
                lambda: obstore.get(store, f".spool_tool-preflight/{uuid.uuid4()}"),
                self.failure_of,
            )
        except Exception as exc:
            failure = self.failure_of(exc)
            if failure is None:
                raise FatalError(self.translate(exc, uri).detail(), uri=uri) from exc
            error = classify_preflight(failure, uri)
            if error is not None:
                raise error from exc
        except BaseException as exc:
            if not is_panic(exc):
                raise
            raise FatalError(PANIC, uri=uri, cause=first_line(exc)) from exc

    def failure_of(self, exc: BaseException) -> S3Failure | None:
        """What the request saw, from obstore's exception: its class and, since obstore has no
        typed fields for them, the status, S3 code and connection error kind in its text."""
        from obstore.exceptions import (  # noqa: PLC0415
            AlreadyExistsError,
            BaseError,
            PermissionDeniedError,
            PreconditionError,
            UnauthenticatedError,
        )

        if isinstance(exc, AlreadyExistsError | PreconditionError):
            return S3Failure(code="PreconditionFailed", status=412, endpoint=self.endpoint)
        if not isinstance(exc, BaseError | FileNotFoundError):
            return None
        text = str(exc)
        status = int(m.group(1)) if (m := _STATUS.search(text)) else None
        if status is None and isinstance(exc, FileNotFoundError):
            status = 404
        if status is None and isinstance(exc, PermissionDeniedError | UnauthenticatedError):
            status = 403
        code = m.group(1) if (m := _CODE.search(text)) else None
        message = m.group(1) if (m := _MESSAGE.search(text)) else None
        if status is not None or code is not None:
            return S3Failure(code=code, status=status, message=message, endpoint=self.endpoint)
        transport = _transport(text)
        if transport is None:
            return None
        timeout = self.options.read_timeout
        if transport == "connect_timeout":
            timeout = self.options.connect_timeout
        return S3Failure(transport=transport, endpoint=self.endpoint, timeout=timeout)

    def translate(self, exc: BaseException, uri: str) -> SpoolToolError:
        """Classify an obstore exception raised while working on ``uri``."""
        if isinstance(exc, SpoolToolError):
            return exc  # already ours (interrupted by a signal)
        failure = self.failure_of(exc)
        if failure is not None:
            return classify(failure, uri)
        if isinstance(exc, ValueError):
            return FileError("invalid key", uri=uri, cause=str(exc))
        return RetryableError(type(exc).__name__, uri=uri, cause=first_line(exc))


PANIC = "the S3 client library (obstore) failed"


def is_panic(exc: BaseException) -> bool:
    """A panic in obstore's Rust code, for input no check of ours refused: pyo3 raises
    ``pyo3_runtime.PanicException``, a BaseException, which ``except Exception`` lets through
    as a traceback. It becomes one of our errors (the backstop; the parsers refuse what is
    known to panic, e.g. an endpoint URL that does not parse)."""
    return type(exc).__module__ == "pyo3_runtime"


def first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _transport(text: str) -> Transport | None:
    kind = m.group(1) if (m := _HTTP_KIND.search(text)) else None
    if kind is None:
        return None
    if "InvalidCertificate" in text:  # rustls: UnknownIssuer, NotValidForName, Expired...
        return "tls"
    if "kind: ConnectionReset" in text or "kind: BrokenPipe" in text:
        return "reset"  # even while connecting: the peer accepted, then reset
    if kind == "Connect":
        if "kind: ConnectionRefused" in text:
            return "refused"
        return "connect_timeout" if "TimedOut" in text else "connect"
    if kind == "Timeout":
        return "read_timeout"
    return "reset"  # Interrupted, Request, Decode...: the connection broke mid-request


def object_attributes(options: S3Options) -> Attributes:
    """The obstore attributes every object of the run carries: metadata (any key that is not
    an HTTP attribute obstore knows is sent as ``x-amz-meta-KEY``) and the storage class."""
    attributes: Attributes = {}
    for name, value in options.metadata:
        attributes[name] = value
    if options.storage_class:
        attributes["Storage-Class"] = options.storage_class
    return attributes
