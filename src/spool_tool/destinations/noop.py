"""``noop://``: pretend every upload succeeded (files still move to ``completed/``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from spool_tool.destinations.base import (
    NO_HEADERS,
    ObjectHeaders,
    ObjectInfo,
    UploadIdRecorder,
    UploadResult,
)

if TYPE_CHECKING:
    from spool_tool.config import DestinationURI
    from spool_tool.spoolfs import Source


class NoopDestination:
    def __init__(self, uri: DestinationURI) -> None:
        self.uri = uri

    def preflight(self) -> None:
        return None

    def upload(
        self,
        source: Source,
        key: str,
        record_upload_id: UploadIdRecorder,
        headers: ObjectHeaders = NO_HEADERS,
    ) -> UploadResult:
        del record_upload_id, headers  # never multipart, nothing to send
        return UploadResult(key=key, size=source.size)

    def abort_upload(self, key: str, upload_id: str) -> None:
        del key, upload_id

    def head(self, key: str) -> ObjectInfo | None:
        del key
        return None

    def cancel(self) -> None:
        return None

    def close(self) -> None:
        return None
