"""Errors, classified by what the caller should do about them.

* ``ConfigError``  -- the invocation is wrong; nothing was touched; exit 2.
* ``FileError``    -- this one file cannot be shipped now (bad name, key too long, unreadable,
  changed during upload); report it, leave the file in ``new/``, carry on with the others.
* ``RetryableError`` -- a transient failure (5xx, throttling, reset, timeout) that outlasted the
  retries; the file stays in ``new/`` and the next run retries it under the same key.
* ``FatalError``   -- the run cannot succeed for any file (bad credentials, no such bucket,
  access denied, clock skew, endpoint unreachable); stop claiming, report once, exit 1.

Errors are values: the raise site fills in fields (the local ``path``, the object's ``uri``, the
S3 ``endpoint``, the S3 error ``code``, the ``cause`` underneath, a ``hint`` for the operator)
and ``message()`` builds the one-line sentence, here and nowhere else. Readers that show the
path or URI themselves (the log line of a failed file) take ``detail()``, the sentence without
its subject, instead of cutting the subject off a string.
"""

from __future__ import annotations

import os

from spool_tool.display import display_name


class SpoolToolError(Exception):
    """Base of every error spool_tool raises on purpose.

    ``reason`` says what went wrong in our words ("cannot reach the S3 endpoint"); ``cause`` is
    the text underneath (S3's own message, an OS error) when it adds something.
    """

    def __init__(
        self,
        reason: str,
        *,
        path: str | os.PathLike[str] | None = None,
        uri: str | None = None,
        endpoint: str | None = None,
        code: str | None = None,
        cause: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path = path
        self.uri = uri
        self.endpoint = endpoint
        self.code = code
        self.cause = cause
        self.hint = hint

    def subject(self) -> str | None:
        """What the sentence is about: the local file, else the object or bucket URI."""
        if self.path is not None:
            return display_name(self.path)
        return display_name(self.uri) if self.uri is not None else None

    def detail(self) -> str:
        """``[CODE: ]reason[ ENDPOINT][: cause][ (hint)]``: the sentence without its subject."""
        text = f"{self.code}: {self.reason}" if self.code else self.reason
        if self.endpoint:
            text = f"{text} {self.endpoint}"
        if self.cause and self.cause != self.reason:
            text = f"{text}: {self.cause}"
        return f"{text} ({self.hint})" if self.hint else text

    def message(self) -> str:
        """The one line shown to people: ``SUBJECT: detail``."""
        subject = self.subject()
        return f"{subject}: {self.detail()}" if subject else self.detail()

    def __str__(self) -> str:
        return self.message()


class ConfigError(SpoolToolError):
    """Bad command line, template, destination or option value (exit 2).

    Fields, never parsed back out of the message: ``reason`` (what is wrong), ``option`` (the
    schema name, e.g. ``"part_size"``, when one option is at fault), ``value`` (as given),
    ``where`` (``"FILE:LINE"`` or ``"FILE"`` when it comes from a config file) and ``spelled``
    (how the user wrote the option: ``--part-size``, ``part_size``, ``SPOOL_TOOL_PART_SIZE``).
    ``str()`` builds the one-line sentence, here and nowhere else.
    """

    def __init__(
        self,
        reason: str,
        *,
        option: str | None = None,
        value: object = None,
        where: str | None = None,
        spelled: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason, self.option, self.value = reason, option, value
        self.where, self.spelled = where, spelled

    def located(self, where: str | None, spelled: str | None) -> ConfigError:
        """The same error, attributed to where the value came from."""
        return ConfigError(
            self.reason, option=self.option, value=self.value, where=where, spelled=spelled
        )

    def message(self) -> str:
        text = self.reason
        if self.option is not None:
            subject = self.spelled or "--" + self.option.replace("_", "-")
            shown = "" if self.value is None else f" {self.value!r}"
            text = f"invalid {subject}{shown}: {self.reason}"
        return text if self.where is None else f"{self.where}: {text}"


class FileError(SpoolToolError):
    """A per-file, non-transient failure: report it and leave the file where it is."""


class ObjectExistsError(FileError):
    """``--no-clobber``: S3 answered 412, an object is already at the key."""


class RetryableError(SpoolToolError):
    """A transient failure that outlasted the retries; the next run tries again."""


class ThrottledError(RetryableError):
    """S3 was throttling (``503 SlowDown``...) through every attempt: retry later, slower."""


class FatalError(SpoolToolError):
    """A failure that dooms every upload of this run; stop early with one clear message."""


class ChangedDuringUploadError(FileError):
    """The source changed (size, mtime, inode) while it was being uploaded."""


class OutputError(SpoolToolError):
    """The command's own output (dry-run lines, ``--status``) cannot be written to stdout: a
    full disk or ``/dev/full`` (``errno`` ENOSPC), an I/O error, or a reader that went away
    (EPIPE, ``| head``). Fields: ``errno``, ``cause`` (the OS's words)."""

    def __init__(self, errno: int | None, cause: str) -> None:
        super().__init__("cannot write to standard output", cause=cause)
        self.errno = errno
