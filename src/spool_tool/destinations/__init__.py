"""Destinations, found by URI scheme."""

from __future__ import annotations

from typing import TYPE_CHECKING

from spool_tool.destinations.noop import NoopDestination

if TYPE_CHECKING:
    from spool_tool.config import Config
    from spool_tool.destinations.base import Destination


def make_destination(config: Config) -> Destination:
    if config.destination.scheme == "noop":
        return NoopDestination(config.destination)
    from spool_tool.destinations.s3 import S3Destination  # noqa: PLC0415 - boto3 is slow to import

    return S3Destination(
        config.destination,
        config.s3,
        concurrency=config.concurrency,
        report_checksums=config.manifest is not None,
    )
