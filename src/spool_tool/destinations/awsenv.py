"""Credentials and region from the environment alone, where botocore's chain would find exactly
these: importing botocore and building its session costs most of a run that has nothing to do
(issue 10: <= 0.15 s). Anything that could change botocore's answer (a profile, a non-empty
AWS config or credentials file, expiring environment credentials) returns None and the caller
asks botocore.

``tests/test_obstore_endpoint.py`` checks that this agrees with botocore.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from spool_tool.options import BY_NAME, parse_setting

if TYPE_CHECKING:
    from collections.abc import Mapping

    from spool_tool.config import S3Options

# botocore's EnvProvider reads the token from the first of these that is set.
_TOKENS = ("AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN")
# Variables that make botocore's answer depend on more than the keys and the region.
_AMBIGUOUS = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CREDENTIAL_EXPIRATION")


@dataclass(frozen=True)
class StaticAws:
    """Keys and region as botocore would resolve them; also answers the two questions
    ``obstore_put.endpoint_without_client`` asks a botocore session."""

    access_key: str
    secret_key: str
    token: str | None
    region: str | None
    ca_bundle: str | None = None  # AWS_CA_BUNDLE: the CA file TLS trusts (botocore's ca_bundle)

    def get_scoped_config(self) -> dict[str, Any]:
        return {}  # no AWS config file (or an empty one): no profile settings

    def get_config_variable(self, name: str) -> Any:
        return {"region": self.region, "ca_bundle": self.ca_bundle}.get(name)


def static_aws(options: S3Options, env: Mapping[str, str] = os.environ) -> StaticAws | None:
    """The environment's keys and region, or None when only botocore can say."""
    if options.profile is not None or any(env.get(name) for name in _AMBIGUOUS):
        return None
    access_key = env.get("AWS_ACCESS_KEY_ID", "")
    secret_key = env.get("AWS_SECRET_ACCESS_KEY", "")
    if not access_key or not secret_key or not all(map(_empty, _config_files(env))):
        return None
    token = next((env[name] for name in _TOKENS if name in env), None)
    region = options.region or env.get("AWS_DEFAULT_REGION") or None
    return StaticAws(
        access_key, secret_key, token or None, region, env.get("AWS_CA_BUNDLE") or None
    )


def _config_files(env: Mapping[str, str]) -> tuple[str, str]:
    """The files botocore reads profile settings from (it merges the credentials file's
    sections into the config's, so a region there counts too)."""
    config = env.get("AWS_CONFIG_FILE") or "~/.aws/config"
    credentials = env.get("AWS_SHARED_CREDENTIALS_FILE") or "~/.aws/credentials"
    return os.path.expanduser(config), os.path.expanduser(credentials)


def _empty(path: str) -> bool:
    """Whether ``path`` is absent or empty (``/dev/null``)."""
    try:
        return os.stat(path).st_size == 0
    except FileNotFoundError:
        return True
    except OSError:
        return False  # unreadable: botocore decides (and reports it)


# The variables that name a custom S3 endpoint, in botocore's order (the S3 one wins).
ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")  # botocore's order


def configured_endpoint(options: S3Options, env: Mapping[str, str] = os.environ) -> str | None:
    """The custom endpoint URL from ``--endpoint-url`` or the environment (None: AWS, or one
    only botocore finds in a profile). A malformed variable is a ConfigError naming it, checked
    as ``--endpoint-url`` is, before any file is touched: obstore would panic on it and
    botocore would fail only at the first request."""
    if options.endpoint_url:
        return options.endpoint_url
    if env.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() == "true":
        return None
    for name in ENDPOINT_VARIABLES:
        if env.get(name):
            return str(parse_setting(BY_NAME["endpoint_url"], env[name], name).value)
    return None
