"""``noop://``: pretend every upload succeeded (files still move to ``completed/``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from spool_tool.destinations.base import UploadIdRecorder, UploadResult

if TYPE_CHECKING:
    from spool_tool.config import DestinationURI
    from spool_tool.spoolfs import Source


class NoopDestination:
    def __init__(self, uri: DestinationURI) -> None:
        self.uri = uri

    async def preflight(self) -> None:
        return None

    async def upload(
        self, source: Source, key: str, record_upload_id: UploadIdRecorder
    ) -> UploadResult:
        del record_upload_id  # never multipart
        return UploadResult(key=key, size=source.size)

    async def abort_upload(self, key: str, upload_id: str) -> None:
        del key, upload_id

    def cancel(self) -> None:
        return None

    async def close(self) -> None:
        return None
