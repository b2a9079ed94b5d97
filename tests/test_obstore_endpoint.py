"""The fast path resolves endpoints without a botocore client only where it agrees with one."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spool_tool.config import S3Options
from spool_tool.destinations.awsenv import static_aws
from spool_tool.destinations.obstore_put import (
    Endpoint,
    endpoint_from_client,
    endpoint_without_client,
)
from spool_tool.destinations.s3 import make_client, make_session
from tests.helpers import run_cli


def both(options: S3Options, bucket: str = "bucket") -> tuple[Endpoint | None, Endpoint]:
    session = make_session(options)
    cheap = endpoint_without_client(session, options, bucket)
    client = make_client(session, options, pool_size=1)
    return cheap, endpoint_from_client(client)


@pytest.fixture(autouse=True)
def _credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AK")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "SK")


@pytest.mark.parametrize(
    ("env", "options"),
    [
        ({}, S3Options(region="eu-west-1")),
        ({}, S3Options(region="us-east-1", endpoint_url="http://127.0.0.1:9000")),
        ({"AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9001"}, S3Options(region="us-east-1")),
        ({"AWS_ENDPOINT_URL": "http://127.0.0.1:9002"}, S3Options(region="us-east-1")),
        (
            {"AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9001", "AWS_ENDPOINT_URL": "http://x:1"},
            S3Options(region="us-east-1"),
        ),
        ({"AWS_DEFAULT_REGION": "ap-south-1"}, S3Options()),
    ],
)
def test_cheap_resolution_agrees_with_botocore(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], options: S3Options
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    cheap, real = both(options)
    assert cheap is not None
    assert cheap.region == real.region
    assert cheap.url == real.url


@pytest.mark.parametrize("variable", ["AWS_USE_FIPS_ENDPOINT", "AWS_USE_DUALSTACK_ENDPOINT"])
def test_special_endpoints_are_left_to_botocore(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "true")
    options = S3Options(region="us-east-1")
    assert endpoint_without_client(make_session(options), options, "bucket") is None


def test_dotted_bucket_is_left_to_botocore() -> None:
    options = S3Options(region="us-east-1")
    assert endpoint_without_client(make_session(options), options, "my.bucket") is None


def test_profile_endpoint_is_left_to_botocore(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "config"
    config.write_text("[profile p]\nregion = us-east-1\nendpoint_url = http://127.0.0.1:9003\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    options = S3Options(profile="p")
    session = make_session(options)
    assert endpoint_without_client(session, options, "bucket") is None
    real = endpoint_from_client(make_client(session, options, pool_size=1))
    assert real.url == "http://127.0.0.1:9003"


# -- keys and region without botocore (awsenv) ------------------------------------------------


@pytest.fixture
def no_aws_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Point botocore at files that do not exist (as on a host with no ~/.aws)."""
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_DEFAULT_REGION", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AWS_SECURITY_TOKEN", raising=False)
    return tmp_path


@pytest.mark.parametrize(
    ("env", "options"),
    [
        ({}, S3Options(endpoint_url="http://127.0.0.1:9000")),
        ({}, S3Options(region="eu-west-1")),
        ({"AWS_DEFAULT_REGION": "ap-south-1"}, S3Options()),
        ({"AWS_DEFAULT_REGION": "ap-south-1"}, S3Options(region="eu-west-1")),
        ({"AWS_SESSION_TOKEN": "TOK"}, S3Options(region="us-east-1")),
        ({"AWS_SECURITY_TOKEN": "OLD", "AWS_SESSION_TOKEN": "NEW"}, S3Options(region="us-east-1")),
        ({"AWS_CONFIG_FILE": os.devnull}, S3Options(region="us-east-1")),
        ({"AWS_ENDPOINT_URL": "http://127.0.0.1:9002"}, S3Options()),
        ({"AWS_CA_BUNDLE": "/etc/ssl/private-ca.pem"}, S3Options(region="us-east-1")),
    ],
)
def test_environment_keys_agree_with_botocore(
    monkeypatch: pytest.MonkeyPatch,
    no_aws_files: Path,
    env: dict[str, str],
    options: S3Options,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    static = static_aws(options)
    assert static is not None
    session = make_session(options)
    credentials = session.get_credentials()
    assert credentials is not None
    frozen = credentials.get_frozen_credentials()
    assert (static.access_key, static.secret_key, static.token) == (
        frozen.access_key,
        frozen.secret_key,
        frozen.token,
    )
    assert static.region == session.get_config_variable("region")
    assert static.get_config_variable("ca_bundle") == session.get_config_variable("ca_bundle")
    assert endpoint_without_client(static, options, "bucket") == endpoint_without_client(
        session, options, "bucket"
    )


@pytest.mark.parametrize(
    ("env", "options", "config"),
    [
        ({}, S3Options(profile="p"), ""),
        ({"AWS_PROFILE": "p"}, S3Options(), ""),
        ({"AWS_CREDENTIAL_EXPIRATION": "2099-01-01T00:00:00Z"}, S3Options(), ""),
        ({"AWS_SECRET_ACCESS_KEY": ""}, S3Options(), ""),
        ({}, S3Options(), "[default]\nregion = eu-north-1\n"),
    ],
)
def test_anything_else_is_left_to_botocore(
    monkeypatch: pytest.MonkeyPatch,
    no_aws_files: Path,
    env: dict[str, str],
    options: S3Options,
    config: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if config:
        (no_aws_files / "config").write_text(config)
    assert static_aws(options) is None


def test_region_in_the_credentials_file_is_left_to_botocore(no_aws_files: Path) -> None:
    (no_aws_files / "credentials").write_text("[default]\nregion = eu-north-1\n")
    options = S3Options()
    assert static_aws(options) is None
    assert make_session(options).get_config_variable("region") == "eu-north-1"


def test_fast_path_start_imports_no_botocore(no_aws_files: Path) -> None:
    """A run that sends single PUTs through obstore with keys from the environment builds its
    destination without importing botocore (most of the start-up time; issue 10)."""
    code = (
        "import sys\n"
        "from spool_tool.config import S3Options, parse_destination\n"
        "from spool_tool.destinations.s3 import S3Destination\n"
        "d = S3Destination(parse_destination('s3://bucket/p/'),"
        " S3Options(endpoint_url='http://127.0.0.1:9'), concurrency=4)\n"
        "assert d.engine.name == 'obstore'\n"
    )
    assert _modules_loaded_by(code, ("botocore", "awscrt")) == []


def test_a_run_with_nothing_to_upload_never_imports_obstore(
    no_aws_files: Path, tmp_path: Path
) -> None:
    """The destination is set up (its configuration checked) but obstore's store is built at
    the first request: an empty spool sends none, and importing obstore and building its
    client cost ~20 ms of a run that should take <= 0.15 s (issue 10)."""
    spool = tmp_path / "spool"
    (spool / "new").mkdir(parents=True)
    code = (
        "import sys\n"
        "from spool_tool.__main__ import entry\n"
        f"sys.argv = ['spool_tool', '-q', '--endpoint-url', 'http://127.0.0.1:9', {str(spool)!r},"
        " 's3://bucket/p/']\n"
        "try:\n"
        "    entry()\n"
        "except SystemExit as exc:\n"
        "    assert exc.code in (0, None), exc.code\n"
    )
    assert _modules_loaded_by(code, ("obstore", "botocore")) == []


def _modules_loaded_by(code: str, prefixes: tuple[str, ...]) -> list[str]:
    """The modules named like ``prefixes`` that ``code`` loads in a fresh interpreter."""
    report = f"\nimport sys\nprint(sorted(m for m in sys.modules if m.startswith({prefixes!r})))"
    out = subprocess.run(
        [sys.executable, "-c", code + report],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    loaded: list[str] = ast.literal_eval(out.stdout.strip().splitlines()[-1])
    return loaded


def test_a_configuration_obstore_refuses_is_a_usage_error_at_the_first_request(
    no_aws_files: Path, tmp_path: Path
) -> None:
    """The store is built at the pre-flight: what obstore refuses then (here a CA bundle that
    is no PEM) is still one usage line, before any file is claimed or moved."""
    spool = tmp_path / "spool"
    (spool / "new").mkdir(parents=True)
    (spool / "new" / "a.dat").write_bytes(b"a")
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    result = run_cli(
        "--endpoint-url", "https://127.0.0.1:9", spool, "s3://bucket",
        env={"AWS_CA_BUNDLE": str(bundle)},
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "cannot configure the S3 client" in lines[0]
    assert (spool / "new" / "a.dat").read_bytes() == b"a"
    assert not (spool / "completed" / "a.dat").exists()
