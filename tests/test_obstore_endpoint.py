"""The fast path resolves endpoints without a botocore client only where it agrees with one."""

from __future__ import annotations

from pathlib import Path

import pytest

from spool_tool.config import S3Options
from spool_tool.destinations.obstore_put import (
    Endpoint,
    endpoint_from_client,
    endpoint_without_client,
)
from spool_tool.destinations.s3 import make_client, make_session


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
