"""In-process botocore fault injection through the ``before-send`` event.

A handler registered on ``before-send.s3`` may return a ``botocore.awsrequest.AWSResponse``;
botocore then skips the network and treats that response as what the server said, so its real
parsing and retry logic (legacy, standard or adaptive) runs on it::

    plan = FaultPlan(status=503, code="SlowDown", operations={"PutObject"}, first_n=2)
    with install_faults(client, plan) as faults:
        client.put_object(Bucket="b", Key="k", Body=b"x")   # two 503s, then the real PUT
    assert faults.injected == 2

The attempt number comes from the ``amz-sdk-request: attempt=N`` header that botocore adds to
every request (1 for the first try of an API call, 2 for its first retry, ...).
"""

from __future__ import annotations

import itertools
import random
import re
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self

from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders

from tests.faults.proxy import s3_error_body

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from types import TracebackType

# Common canned faults: (status, code).
SLOW_DOWN = (503, "SlowDown")
INTERNAL_ERROR = (500, "InternalError")
REQUEST_TIME_TOO_SKEWED = (403, "RequestTimeTooSkewed")
EXPIRED_TOKEN = (400, "ExpiredToken")
INVALID_ACCESS_KEY_ID = (403, "InvalidAccessKeyId")

_ATTEMPT_RE = re.compile(r"attempt=(\d+)")
_ids = itertools.count(1)


@dataclass(frozen=True)
class RequestInfo:
    operation: str  # e.g. "PutObject", "UploadPart", "CompleteMultipartUpload"
    attempt: int  # 1-based attempt of this API call (botocore's amz-sdk-request header)
    method: str
    url: str


@dataclass
class FaultPlan:
    """Decides per request whether to answer with a canned S3 error.

    A request is eligible when its operation is in ``operations`` (``None`` = every operation)
    and its attempt is in ``attempts`` (``None`` = every attempt).  Of the eligible requests:

    - ``first_n``: only the first N eligible requests (counted across all calls) are faulted;
    - ``probability``: each eligible request is faulted with this probability, drawn from
      ``random.Random(seed)`` for reproducibility;
    - ``max_faults``: stop injecting after this many faults;
    - ``decide``: an arbitrary predicate on :class:`RequestInfo`, checked last.

    ``status=200`` with an error ``code`` yields a 200 response with an S3 error body (what
    CompleteMultipartUpload can return).  ``body`` overrides the generated XML body.
    """

    status: int = 503
    code: str = "SlowDown"
    message: str = "Injected by tests.faults.hooks"
    operations: frozenset[str] | set[str] | None = None
    attempts: frozenset[int] | set[int] | None = None
    first_n: int | None = None
    probability: float = 1.0
    seed: int = 0
    max_faults: int | None = None
    decide: Callable[[RequestInfo], bool] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None

    injected: int = field(default=0, init=False)
    eligible_seen: int = field(default=0, init=False)
    _rng: random.Random = field(init=False, repr=False)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"probability must be in [0, 1], got {self.probability}")
        self._rng = random.Random(self.seed)

    def should_fault(self, info: RequestInfo) -> bool:
        """Thread-safe decision; counts the fault when it returns True."""
        with self._lock:
            eligible = (self.operations is None or info.operation in self.operations) and (
                self.attempts is None or info.attempt in self.attempts
            )
            if not eligible:
                return False
            self.eligible_seen += 1
            fires = (
                (self.first_n is None or self.eligible_seen <= self.first_n)
                and (self.max_faults is None or self.injected < self.max_faults)
                and (self.probability >= 1.0 or self._rng.random() < self.probability)
                and (self.decide is None or self.decide(info))
            )
            if fires:
                self.injected += 1
            return fires

    def response(self, info: RequestInfo, request_id: str) -> AWSResponse:
        resource = info.url.split("?", 1)[0]
        body = (
            self.body
            if self.body is not None
            else s3_error_body(self.code, self.message, request_id, resource)
        )
        if info.method == "HEAD":
            body = b""  # S3 sends no body for HEAD; botocore maps the status to a code
        headers = HTTPHeaders()
        for name, value in {
            "Content-Type": "application/xml",
            "Content-Length": str(len(body)),
            "x-amz-request-id": request_id,
            "Server": "tests.faults.hooks",
            **self.headers,
        }.items():
            headers[name] = value
        return AWSResponse(info.url, self.status, headers, _RawBody(body))


class _RawBody:
    """The minimal ``raw`` object AWSResponse needs (``stream()``, plus ``read()``)."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data

    def read(self, *_: Any, **__: Any) -> bytes:
        data, self._data = self._data, b""
        return data

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class SeenCall:
    operation: str
    attempt: int
    injected: int | None  # the canned status, or None when passed through


class InstalledFaults:
    """Handle returned by :func:`install_faults`; a context manager that uninstalls on exit."""

    def __init__(self, client: Any, plans: Sequence[FaultPlan]) -> None:
        self.client = client
        self.plans = list(plans)
        self._unique_id = f"tests.faults.hooks-{next(_ids)}"
        self._lock = threading.Lock()
        self._seen: list[SeenCall] = []
        self._installed = False

    @property
    def injected(self) -> int:
        """Faults injected so far, over all plans."""
        with self._lock:
            return sum(1 for call in self._seen if call.injected is not None)

    @property
    def calls(self) -> list[SeenCall]:
        """Every request seen by the hook, in order."""
        with self._lock:
            return list(self._seen)

    def attempts_of(self, operation: str) -> int:
        """How many requests (attempts) of ``operation`` were sent or faulted."""
        with self._lock:
            return sum(1 for call in self._seen if call.operation == operation)

    def install(self) -> None:
        if not self._installed:
            self.client.meta.events.register(
                "before-send.s3", self._before_send, unique_id=self._unique_id
            )
            self._installed = True

    def uninstall(self) -> None:
        if self._installed:
            self.client.meta.events.unregister(
                "before-send.s3", self._before_send, unique_id=self._unique_id
            )
            self._installed = False

    def __enter__(self) -> Self:
        self.install()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.uninstall()

    def _before_send(self, request: Any, event_name: str = "", **_: Any) -> AWSResponse | None:
        operation = event_name.rsplit(".", 1)[-1]
        header = request.headers.get("amz-sdk-request") or ""
        if isinstance(header, bytes):
            header = header.decode("ascii", "replace")
        found = _ATTEMPT_RE.search(header)
        attempt = int(found.group(1)) if found else 1
        info = RequestInfo(operation, attempt, str(request.method).upper(), str(request.url))
        for plan in self.plans:
            if plan.should_fault(info):
                with self._lock:
                    self._seen.append(SeenCall(operation, attempt, plan.status))
                    request_id = f"FAULTHOOK{len(self._seen):08d}"
                return plan.response(info, request_id)
        with self._lock:
            self._seen.append(SeenCall(operation, attempt, None))
        return None


def install_faults(client: Any, plan: FaultPlan | Sequence[FaultPlan]) -> InstalledFaults:
    """Register the plan(s) on ``client`` (first matching plan wins) and return the handle.

    The handle is also a context manager: ``with install_faults(c, plan) as f: ...`` uninstalls
    on exit; otherwise call ``f.uninstall()``.
    """
    plans = [plan] if isinstance(plan, FaultPlan) else list(plan)
    handle = InstalledFaults(client, plans)
    handle.install()
    return handle


def fault(kind: tuple[int, str], **kwargs: Any) -> FaultPlan:
    """Shorthand: ``fault(SLOW_DOWN, operations={"PutObject"}, first_n=2)``."""
    status, code = kind
    return FaultPlan(status=status, code=code, **kwargs)
