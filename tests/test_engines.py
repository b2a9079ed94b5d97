"""The single-PUT engines (``destinations/engines.py``): which engine ``--engine auto`` picks,
the object options each engine sends (read back from the server), and the request shape and
parts in flight of multipart uploads (botocore, every engine)."""

from __future__ import annotations

import gzip
import http.server
import os
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

from spool_tool.config import Config, S3Options, parse_destination
from spool_tool.destinations import make_destination, s3
from spool_tool.destinations.engines import ENGINES, PutSpec, choose_engine
from spool_tool.destinations.obstore_put import OBSTORE_ONLY_VARIABLES, check_environment
from spool_tool.errors import ConfigError
from spool_tool.spoolfs import open_source
from tests.helpers import get_body, run_cli

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from devtools.seaweed import SeaweedServer
    from spool_tool.config import ChecksumName, EngineName
    from spool_tool.destinations.engines import PutEngine

MiB = 1024 * 1024
ENGINE_NAMES: list[EngineName] = [engine.name for engine in ENGINES]
OBJECT_OPTIONS = [
    "--metadata", "source=app1", "--metadata", "team=data=eng",
    "--tag", "retention=30d", "--tag", "pii=no",
    "--storage-class", "STANDARD_IA", "--sse", "AES256",
]  # fmt: skip


@pytest.mark.parametrize(
    "options",
    [
        S3Options(metadata=(("a", "b"),)),
        S3Options(tags=(("a", "b"),)),
        S3Options(storage_class="STANDARD_IA"),
        S3Options(sse="AES256"),
        S3Options(sse="aws:kms", sse_kms_key_id="alias/k"),
        S3Options(content_type="text/plain", compress="gzip"),
    ],
)
def test_auto_keeps_the_fast_engine_for_the_options_production_sets(options: S3Options) -> None:
    assert choose_engine(options).name == "obstore"


@pytest.mark.parametrize("options", [S3Options(acl="private"), S3Options(checksum="crc32")])
def test_auto_falls_back_to_boto3_only_for_what_obstore_cannot_send(options: S3Options) -> None:
    assert choose_engine(options).name == "boto3"
    with pytest.raises(ConfigError, match="cannot send"):
        choose_engine(replace(options, engine="obstore"))


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_every_object_option_is_read_back_from_seaweedfs(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, engine: str
) -> None:
    data = b"line of text\n" * 5000
    (spool_dir / "new" / "log.txt").write_bytes(data)
    result = run_cli(
        "--engine", engine, *OBJECT_OPTIONS, "--compress", "gzip",
        spool_dir, f"s3://{s3_bucket}/o/", env=seaweed.env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    client = seaweed.client()
    head = client.head_object(Bucket=s3_bucket, Key="o/log.txt.gz")
    assert head["Metadata"] == {"source": "app1", "team": "data=eng"}
    assert head.get("StorageClass") == "STANDARD_IA"
    assert head.get("ServerSideEncryption") == "AES256"
    assert head["ContentType"] == "text/plain"
    assert head["ContentEncoding"] == "gzip"
    tags = client.get_object_tagging(Bucket=s3_bucket, Key="o/log.txt.gz")["TagSet"]
    assert {t["Key"]: t["Value"] for t in tags} == {"retention": "30d", "pii": "no"}
    assert gzip.decompress(get_body(client, s3_bucket, "o/log.txt.gz")) == data


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_virtual_addressing_on_an_ip_endpoint_is_path_style_as_botocore_does(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, engine: str
) -> None:
    """``BUCKET.127.0.0.1`` is no host name: botocore sends path-style there, and so must
    obstore (whose URL parser panicked on it: a traceback, the file never shipped)."""
    (spool_dir / "new" / "a.txt").write_text("a")
    result = run_cli(
        "--engine", engine, "--addressing-style", "virtual", "--max-attempts", "1",
        spool_dir, f"s3://{s3_bucket}/", env=seaweed.env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert get_body(seaweed.client(), s3_bucket, "a.txt") == b"a"


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_sse_kms_with_key_id_is_read_back_on_moto(
    moto_bucket: str, moto_client: S3Client, moto_env: dict[str, str], spool_dir: Path, engine: str
) -> None:
    """SeaweedFS has no KMS configured here (it answers InternalError to both engines)."""
    (spool_dir / "new" / "a.txt").write_text("secret")
    result = run_cli(
        "--engine", engine, "--sse", "aws:kms", "--sse-kms-key-id", "alias/spool",
        "--addressing-style", "path", spool_dir, f"s3://{moto_bucket}/o/", env=moto_env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    head = moto_client.head_object(Bucket=moto_bucket, Key="o/a.txt")
    assert head["ServerSideEncryption"] == "aws:kms"
    assert "alias/spool" in head["SSEKMSKeyId"]


def test_acl_falls_back_to_boto3_and_says_so_once_at_debug(
    moto_bucket: str, moto_client: S3Client, moto_env: dict[str, str], spool_dir: Path
) -> None:
    for name in ("a.txt", "b.txt", "c.txt"):
        (spool_dir / "new" / name).write_text(name)
    result = run_cli(
        "-v", "--acl", "public-read", "--addressing-style", "path",
        spool_dir, f"s3://{moto_bucket}/o/", env=moto_env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("engine obstore cannot send --acl") == 1, result.stderr
    grants = moto_client.get_object_acl(Bucket=moto_bucket, Key="o/a.txt")["Grants"]
    assert any(g["Grantee"].get("URI", "").endswith("/global/AllUsers") for g in grants)


def test_engine_obstore_with_acl_is_a_usage_error(spool_dir: Path) -> None:
    result = run_cli(
        "--engine", "obstore", "--acl", "private", "--endpoint-url", "http://127.0.0.1:9",
        spool_dir, "s3://bucket",
    )  # fmt: skip
    assert result.returncode == 2
    assert "invalid --engine 'obstore': cannot send --acl" in result.stderr


class _RecordingS3(http.server.BaseHTTPRequestHandler):
    """Answers every PUT 200 and records its headers (the request shape, nothing else)."""

    seen: ClassVar[list[dict[str, str]]] = []

    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.seen.append({k.lower(): v for k, v in self.headers.items()})
        self.send_response(200)
        self.send_header("ETag", '"e"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        """Quiet."""


@pytest.mark.parametrize("checksum", ["auto", "sha256"])
def test_obstore_puts_are_unsigned_with_a_checksum_s3_verifies(
    monkeypatch: pytest.MonkeyPatch, checksum: ChecksumName
) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RecordingS3)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "a")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "b")
    options = S3Options(
        endpoint_url=f"http://127.0.0.1:{server.server_port}", region="us-east-1",
        addressing_style="path", engine="obstore", checksum=checksum, max_attempts=1,
    )  # fmt: skip
    config = Config(
        spool_dirs=(Path("/s"),), destination=parse_destination("s3://bkt/"), s3=options
    )
    destination = make_destination(config)
    try:
        engine: PutEngine = destination.engine  # type: ignore[attr-defined]
        engine.put(b"hello", PutSpec("k", "s3://bkt/k"))
    finally:
        destination.close()
        server.shutdown()
        server.server_close()
    headers = _RecordingS3.seen[-1]
    assert headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
    algorithm = "crc64nvme" if checksum == "auto" else "sha256"
    assert headers[f"x-amz-checksum-{algorithm}"]


# ------------------------------------------------------------------ multipart request shape


def _config(seaweed: SeaweedServer, bucket: str, tmp_path: Path, engine: EngineName) -> Config:
    options = S3Options(
        multipart_threshold=5 * MiB, part_size=5 * MiB, addressing_style="path", engine=engine
    )
    destination = parse_destination(f"s3://{bucket}/m/")
    return Config(spool_dirs=(tmp_path / "spool",), destination=destination, s3=options)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


class PartWatch:
    """Records the headers of every UploadPart and the most parts in flight at once."""

    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []
        self.in_flight = 0
        self.most = 0
        self._lock = threading.Lock()

    def before_send(self, request: Any, **_: Any) -> None:
        with self._lock:
            self.headers.append({k.lower(): _text(v) for k, v in request.headers.items()})
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)

    def after_call(self, **_: Any) -> None:
        with self._lock:
            self.in_flight -= 1


def _watch(client: Any) -> PartWatch:
    watch = PartWatch()
    client.meta.events.register("before-send.s3.UploadPart", watch.before_send)
    client.meta.events.register("after-call.s3.UploadPart", watch.after_call)
    return watch


@pytest.mark.parametrize("engine", ENGINE_NAMES)
@pytest.mark.parametrize(("crt", "algorithm"), [(True, "crc32c"), (False, "crc32")])
def test_parts_are_sent_unsigned_with_a_checksum_s3_verifies(
    seaweed: SeaweedServer,
    s3_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    engine: EngineName,
    crt: bool,
    algorithm: str,
) -> None:
    """``--checksum auto`` on multipart parts: CRC32C, or CRC32 where botocore has no awscrt to
    compute CRC32C with."""
    for name, value in seaweed.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("botocore.compat.HAS_CRT", crt)  # what botocore_checksum reads
    destination = make_destination(_config(seaweed, s3_bucket, tmp_path, engine))
    watch = _watch(destination.client)  # type: ignore[attr-defined]
    path = tmp_path / "big"
    data = os.urandom(11 * MiB)
    path.write_bytes(data)
    source = open_source(path)
    try:
        result = destination.upload(source, "m/big", lambda _: None)
    finally:
        source.close()
        destination.close()
    assert len(watch.headers) == 3
    for headers in watch.headers:
        assert headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
        assert headers[f"x-amz-checksum-{algorithm}"]  # S3 checks every part against it
    assert result.checksum is not None
    assert result.checksum.startswith(f"{algorithm.upper()}:")
    assert get_body(seaweed.client(), s3_bucket, "m/big") == data


def test_parts_in_flight_over_all_files_stay_at_part_concurrency(
    seaweed: SeaweedServer,
    s3_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Three 20 MiB files at once, 5 MiB parts, ``--part-concurrency 3``: never more than 3
    parts (12 in all) on the server at once, and all of them sent."""
    for name, value in seaweed.env().items():
        monkeypatch.setenv(name, value)
    config = _config(seaweed, s3_bucket, tmp_path, "auto")
    config = replace(config, s3=replace(config.s3, part_concurrency=3))
    destination = make_destination(config)
    watch = _watch(destination.client)  # type: ignore[attr-defined]
    errors: list[BaseException] = []

    def ship(name: str) -> None:
        path = tmp_path / name
        path.write_bytes(os.urandom(20 * MiB))
        source = open_source(path)
        try:
            destination.upload(source, f"m/{name}", lambda _: None)
        except BaseException as exc:  # handed to the main thread
            errors.append(exc)
        finally:
            source.close()

    threads = [threading.Thread(target=ship, args=(f"f{i}",)) for i in range(3)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        destination.close()
    assert errors == []
    assert len(watch.headers) == 12
    assert 2 <= watch.most <= 3


def test_a_file_too_large_for_10000_parts_gets_larger_parts() -> None:
    """S3 takes at most 10,000 parts: at 8 MiB that is 78 GiB. A larger file gets the smallest
    whole MiB that fits it; every file that fits keeps --part-size."""
    mib = 1024 * 1024
    assert s3.part_size_for(10_000 * 8 * mib, 8 * mib) == 8 * mib
    assert s3.part_size_for(10_000 * 8 * mib + 1, 8 * mib) == 9 * mib
    grown = s3.part_size_for(5 * 1024**4, 8 * mib)  # S3's largest object, 5 TiB
    assert grown % mib == 0
    assert -(-5 * 1024**4 // grown) <= s3.MAX_PARTS
    assert s3.part_size_for(100 * mib, 16 * mib) == 16 * mib


# ------------------------------------------------------------------ a panic in obstore


def _real_panic() -> BaseException:
    """A real ``pyo3_runtime.PanicException``: obstore's URL parser panics on this endpoint
    (our option parser refuses it; here the store is made directly) at the first request."""
    import obstore  # noqa: PLC0415
    from obstore.store import S3Store  # noqa: PLC0415

    try:
        store = S3Store("b", endpoint="http://[::1", region="us-east-1", skip_signature=True)
        obstore.put(store, "k", b"x")
    except BaseException as exc:  # the panic is what we came for
        return exc
    pytest.fail("obstore no longer panics on a bad endpoint: find another real panic")


def test_a_panic_in_obstore_fails_that_file_and_the_others_ship(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, s3_env: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """A Rust panic is a BaseException (``except Exception`` lets it through as a traceback):
    the obstore engine makes it one file's error, so that file stays in new/ and the run goes
    on; in the pre-flight it is one fatal line."""
    import obstore  # noqa: PLC0415

    from spool_tool.run import run  # noqa: PLC0415
    from tests.faults.runs import make_config  # noqa: PLC0415
    from tests.helpers import list_objects, make_files  # noqa: PLC0415

    with monkeypatch.context() as env:  # obstore would take AWS_ENDPOINT_URL instead
        for name in [name for name in os.environ if name.startswith("AWS_")]:
            env.delenv(name)
        panic = _real_panic()
    real_put = obstore.put
    assert not isinstance(panic, Exception)

    def put(store: object, key: str, *args: Any, **kwargs: Any) -> Any:
        if key.endswith("f00001.dat"):
            raise panic
        return real_put(store, key, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(obstore, "put", put)
    make_files(spool_dir / "new", 3)
    config = make_config(spool_dir, s3_bucket, seaweed.endpoint_url, engine="obstore")
    summary = run(config, [])
    names = sorted(key.rsplit("/", 1)[-1] for key in list_objects(seaweed.client(), s3_bucket))
    assert names == ["f00000.dat", "f00002.dat"]
    assert sorted(p.name for p in (spool_dir / "new").iterdir()) == ["f00001.dat"]
    [failure] = summary.failures
    assert "the S3 client library (obstore) failed" in str(failure), failure

    def get(*_: object, **__: object) -> Any:
        raise panic

    monkeypatch.setattr(obstore, "get", get)
    summary = run(config, [])
    assert summary.stopped is not None
    assert "the S3 client library (obstore) failed" in summary.stopped
    assert sorted(p.name for p in (spool_dir / "new").iterdir()) == ["f00001.dat"]


# ------------------------------------------------------- what obstore's runtime reads at start


@pytest.mark.parametrize("value", ["", "0", "two", " 2", "-1", "99999999999999999999"])
def test_a_tokio_worker_count_obstore_would_panic_on_is_one_line_and_nothing_moves(
    spool_dir: Path, value: str
) -> None:
    """tokio reads TOKIO_WORKER_THREADS when obstore's runtime starts (the first request) and
    panics on anything but a positive integer: a Rust backtrace on stderr, every file failed."""
    (spool_dir / "new" / "a.dat").write_bytes(b"a")
    result = run_cli(
        "--endpoint-url", "http://127.0.0.1:9", spool_dir, "s3://bucket",
        env={"TOKIO_WORKER_THREADS": value, "RUST_BACKTRACE": "1"},
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"TOKIO_WORKER_THREADS={value!r} is not a positive integer" in lines[0]
    assert "panicked" not in result.stderr
    assert (spool_dir / "new" / "a.dat").read_bytes() == b"a"


@pytest.mark.parametrize("value", [None, "1", "4", "+2"])
def test_a_tokio_worker_count_tokio_accepts_is_left_alone(value: str | None) -> None:
    environ = {} if value is None else {"TOKIO_WORKER_THREADS": value}
    check_environment(environ)  # no ConfigError


# Variables obstore would obey and botocore ignores: each set to what changes a request.
OBSTORE_ONLY_PINNED = {
    "AWS_SKIP_SIGNATURE": "true",
    "AWS_DISABLE_TAGGING": "true",
    "AWS_S3_EXPRESS": "true",
    "AWS_REQUEST_PAYER": "true",
    "AWS_CONDITIONAL_PUT": "dynamo:no-such-table",
    "AWS_CHECKSUM_ALGORITHM": "sha256",
    "AWS_UNSIGNED_PAYLOAD": "false",
    "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "true",
    "AWS_PROXY_URL": "http://127.0.0.1:9",  # a client option: the engine passes its own
    "AWS_TIMEOUT": "1ms",
}


def test_aws_variables_only_obstore_reads_do_not_change_its_requests(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path
) -> None:
    """obstore starts its store from the environment (object_store's ``from_env``); the
    options of the run decide the requests, as on botocore: signed, tagged, no-clobber as
    If-None-Match, path-style, through no proxy, with the run's timeouts."""
    (spool_dir / "new" / "a.txt").write_bytes(b"a")
    result = run_cli(
        "--engine", "obstore", "--tag", "team=data", "--no-clobber", "--max-attempts", "1",
        spool_dir, f"s3://{s3_bucket}/pinned/",
        env={**seaweed.env(), **OBSTORE_ONLY_PINNED},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    client = seaweed.client()
    assert get_body(client, s3_bucket, "pinned/a.txt") == b"a"
    tags = client.get_object_tagging(Bucket=s3_bucket, Key="pinned/a.txt")["TagSet"]
    assert tags == [{"Key": "team", "Value": "data"}]


@pytest.mark.parametrize(
    ("name", "instead"),
    [
        ("AWS_ENDPOINT", "use --endpoint-url or AWS_ENDPOINT_URL"),
        ("AWS_Token", "use AWS_SESSION_TOKEN"),
        ("AWS_SERVER_SIDE_ENCRYPTION", "use --sse"),
        ("AWS_SSE_KMS_KEY_ID", "use --sse-kms-key-id"),
        ("AWS_SSE_CUSTOMER_KEY_BASE64", "use the bucket's default encryption"),
    ],
)
def test_an_aws_variable_only_obstore_would_obey_is_one_line_and_nothing_moves(
    spool_dir: Path, name: str, instead: str
) -> None:
    (spool_dir / "new" / "a.dat").write_bytes(b"a")
    result = run_cli(
        "--endpoint-url", "http://127.0.0.1:9", spool_dir, "s3://bucket",
        env={name: "http://127.0.0.1:9"},
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"environment variable {name} is read by the obstore engine only" in lines[0]
    assert instead in lines[0]
    assert (spool_dir / "new" / "a.dat").read_bytes() == b"a"


def test_the_readme_names_every_aws_variable_obstore_pins_or_refuses() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    refused = [name.upper() for name in OBSTORE_ONLY_VARIABLES]
    pinned = [name for name in OBSTORE_ONLY_PINNED if name not in {"AWS_PROXY_URL", "AWS_TIMEOUT"}]
    for name in [*refused, *pinned, "TOKIO_WORKER_THREADS"]:
        assert f"`{name}`" in readme, name


def test_an_endpoint_botocore_is_told_to_ignore_is_refused_on_the_obstore_engine(
    spool_dir: Path,
) -> None:
    """``AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true``: botocore (multipart uploads) sends to
    AWS, obstore's store would still read ``AWS_ENDPOINT_URL`` and send single PUTs there."""
    (spool_dir / "new" / "a.dat").write_bytes(b"a")
    env = {
        "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true", "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
    }  # fmt: skip
    result = run_cli(spool_dir, "s3://bucket", env=env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "environment variable AWS_ENDPOINT_URL is ignored by botocore" in lines[0]
    assert (spool_dir / "new" / "a.dat").read_bytes() == b"a"
