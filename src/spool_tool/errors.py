"""Errors, classified by what the caller should do about them.

* ``ConfigError``  -- the invocation is wrong; nothing was touched; exit 2.
* ``FileError``    -- this one file cannot be shipped now (bad name, key too long, unreadable,
  changed during upload); report it, leave the file in ``new/``, carry on with the others.
* ``RetryableError`` -- a transient failure (5xx, throttling, reset, timeout) that outlasted the
  retries; the file stays in ``new/`` and the next run retries it under the same key.
* ``FatalError``   -- the run cannot succeed for any file (bad credentials, no such bucket,
  access denied, clock skew, endpoint unreachable); stop claiming, report once, exit 1.
"""

from __future__ import annotations


class SpoolToolError(Exception):
    """Base of every error spool_tool raises on purpose."""


class ConfigError(SpoolToolError):
    """Bad command line, template, destination or option value (exit 2)."""


class FileError(SpoolToolError):
    """A per-file, non-transient failure: report it and leave the file where it is."""


class RetryableError(SpoolToolError):
    """A transient failure that outlasted the retries; the next run tries again."""


class FatalError(SpoolToolError):
    """A failure that dooms every upload of this run; stop early with one clear message."""


class ChangedDuringUploadError(FileError):
    """The source changed (size, mtime, inode) while it was being uploaded."""
