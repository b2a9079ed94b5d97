"""A tiny threaded HTTP/1.1 fault proxy for S3 tests (stdlib only).

It sits in front of an S3 server on 127.0.0.1 and forwards requests byte for byte (the request
head is passed through unchanged, including ``Host``, so SigV4 signatures stay valid; only an
``Expect: 100-continue`` line is removed because the proxy answers ``100 Continue`` itself, and
botocore does not sign ``Expect``).  Rules, matched in order, inject faults::

    with FaultProxy(moto_url, seed=1) as proxy:
        proxy.set_rules([FaultRule(action="status", probability=0.3)])
        client = boto3.client("s3", endpoint_url=proxy.url, ...)

Each client request is forwarded on a fresh upstream connection, so upstream keep-alive state can
never go stale; the client side supports keep-alive, ``Content-Length`` and chunked bodies
(including ``aws-chunked`` content, which is opaque to the proxy) and ``Expect: 100-continue``.
Request and response bodies are buffered in memory (fine for test-sized objects).
"""

from __future__ import annotations

import contextlib
import http
import random
import select
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Self
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from types import TracebackType

Action = Literal["status", "reset_mid_body", "stall_before", "stall_after", "status_after_forward"]
ACTIONS: frozenset[str] = frozenset(
    {"status", "reset_mid_body", "stall_before", "stall_after", "status_after_forward"}
)

_MAX_HEAD = 256 * 1024
_RECV = 256 * 1024


@dataclass(frozen=True, kw_only=True)
class FaultRule:
    """One fault rule; rules are matched in order and the first match applies.

    A rule matches when the method is in ``methods`` (an empty set matches every method),
    ``path_contains`` occurs in the request target (path and query, e.g. ``"uploadId"`` or
    ``"partNumber=2"``), the rule is not exhausted (``times``) and the seeded coin flip with
    ``probability`` succeeds.  A rule that loses its coin flip does not stop the search.

    Actions:

    - ``status``: answer ``status`` with an S3 XML error ``code`` without forwarding.
    - ``reset_mid_body``: read about half the request body, then close with RST (SO_LINGER 0);
      nothing is forwarded.
    - ``stall_before``: read the request, sleep ``stall_seconds``, then forward, unless the client
      disconnected meanwhile (then nothing is forwarded: the write is NOT applied).
    - ``stall_after``: forward (the write IS applied), then sleep ``stall_seconds`` before relaying
      the response; if the client gives up meanwhile, the response is dropped.
    - ``status_after_forward``: forward, then answer ``status``/``code`` instead of the real
      response (ambiguous success).  With ``status=200`` this yields a 200 with an error body.
    """

    action: Action
    methods: frozenset[str] = frozenset({"PUT", "POST"})
    path_contains: str = ""
    probability: float = 1.0
    status: int = 503
    code: str = "SlowDown"
    message: str = "Injected by FaultProxy"
    stall_seconds: float = 0.0
    times: int | None = None

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"probability must be in [0, 1], got {self.probability}")
        if self.times is not None and self.times < 0:
            raise ValueError(f"times must be >= 0, got {self.times}")
        if self.stall_seconds < 0:
            raise ValueError(f"stall_seconds must be >= 0, got {self.stall_seconds}")
        if not 100 <= self.status <= 599:
            raise ValueError(f"bad status {self.status}")
        object.__setattr__(self, "methods", frozenset(m.upper() for m in self.methods))


@dataclass(frozen=True)
class SeenRequest:
    method: str
    target: str
    action: str | None  # the injected action, or None when forwarded untouched


@dataclass(frozen=True)
class ProxyStats:
    """A consistent snapshot of the proxy's counters."""

    requests: int  # request heads received from clients
    forwarded: int  # requests sent upstream (including stall_* and status_after_forward)
    faults: Mapping[str, int]  # injected faults per action
    client_disconnects: int  # client connections that ended abnormally (quietly handled)
    upstream_errors: int  # upstream connect/read failures (answered 502)
    by_method: Mapping[str, int] = field(default_factory=dict)

    @property
    def faults_total(self) -> int:
        return sum(self.faults.values())


class _EOFError(Exception):
    """The peer closed the connection (before a complete message)."""


class _Reader:
    """Minimal buffered reader over a blocking socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()

    def _fill(self) -> None:
        data = self.sock.recv(_RECV)
        if not data:
            raise _EOFError
        self.buf += data

    def read_until(self, delim: bytes, limit: int = _MAX_HEAD) -> bytes:
        start = 0
        while True:
            idx = self.buf.find(delim, start)
            if idx >= 0:
                end = idx + len(delim)
                out = bytes(self.buf[:end])
                del self.buf[:end]
                return out
            if len(self.buf) > limit:
                raise ValueError("header section too large")
            start = max(0, len(self.buf) - len(delim) + 1)
            self._fill()

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_to_eof(self) -> bytes:
        while True:
            try:
                self._fill()
            except _EOFError:
                break
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def at_clean_eof(self) -> bool:
        """Wait for the next message; True if the peer closed before sending any byte."""
        if self.buf:
            return False
        try:
            self._fill()
        except _EOFError:
            return True
        return False


@dataclass
class _Message:
    head: bytes  # raw start line + headers + CRLFCRLF
    start: list[str]  # start line split in 3
    headers: list[tuple[str, str]]  # (lower-cased name, value)

    def get(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def tokens(self, name: str) -> set[str]:
        out: set[str] = set()
        for key, value in self.headers:
            if key == name:
                out.update(t.strip().lower() for t in value.split(",") if t.strip())
        return out


def _parse_head(head: bytes) -> _Message:
    lines = head.decode("latin-1").split("\r\n")
    start = lines[0].split(" ", 2)
    if len(start) < 2:
        raise ValueError(f"bad start line {lines[0]!r}")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"bad header line {line!r}")
        headers.append((name.strip().lower(), value.strip()))
    return _Message(head=head, start=start, headers=headers)


def _read_head(reader: _Reader) -> _Message:
    head = reader.read_until(b"\r\n\r\n")
    # Tolerate stray CRLFs between messages (RFC 9112 section 2.2).
    while head.startswith(b"\r\n"):
        head = head[2:]
        if not head:
            head = reader.read_until(b"\r\n\r\n")
    return _parse_head(head)


def _read_chunked(reader: _Reader) -> bytes:
    raw = bytearray()
    while True:
        line = reader.read_until(b"\r\n", limit=64 * 1024)
        raw += line
        size = int(line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while True:  # trailer section, ends with an empty line
                trailer = reader.read_until(b"\r\n", limit=64 * 1024)
                raw += trailer
                if trailer == b"\r\n":
                    return bytes(raw)
        raw += reader.read_exact(size + 2)


def _body_length(msg: _Message) -> int | None:
    """Content-Length of a message, or None when chunked."""
    if "chunked" in msg.tokens("transfer-encoding"):
        return None
    length = msg.get("content-length")
    return int(length) if length is not None else 0


def _read_request_body(reader: _Reader, req: _Message) -> bytes:
    length = _body_length(req)
    return _read_chunked(reader) if length is None else reader.read_exact(length)


@dataclass
class _Response:
    status: int
    raw: bytes
    close: bool


def _read_response(reader: _Reader, method: str) -> _Response:
    while True:
        msg = _read_head(reader)
        status = int(msg.start[1])
        if 100 <= status < 200 and status != 101:
            continue  # interim responses are dropped (the proxy sent its own 100 Continue)
        break
    close = "close" in msg.tokens("connection") or msg.start[0] == "HTTP/1.0"
    if method == "HEAD" or status in {204, 304} or 100 <= status < 200:
        body = b""
    elif "chunked" in msg.tokens("transfer-encoding"):
        body = _read_chunked(reader)
    elif msg.get("content-length") is not None:
        body = reader.read_exact(int(msg.get("content-length") or "0"))
    else:
        body = reader.read_to_eof()
        close = True
    return _Response(status=status, raw=msg.head + body, close=close)


def s3_error_body(code: str, message: str, request_id: str, resource: str = "") -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
        f"<Resource>{escape(resource)}</Resource>"
        f"<RequestId>{escape(request_id)}</RequestId></Error>"
    ).encode()


def _error_response(
    status: int,
    code: str,
    message: str,
    *,
    request_id: str,
    resource: str,
    head_only: bool,
    close: bool,
) -> bytes:
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = "Error"
    body = b"" if head_only else s3_error_body(code, message, request_id, resource)
    lines = [
        f"HTTP/1.1 {status} {reason}",
        "Content-Type: application/xml",
        f"Content-Length: {len(body)}",
        f"x-amz-request-id: {request_id}",
        "Server: FaultProxy",
        f"Connection: {'close' if close else 'keep-alive'}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _strip_expect(head: bytes) -> bytes:
    lines = head.split(b"\r\n")
    kept = [ln for ln in lines if ln.split(b":", 1)[0].strip().lower() != b"expect"]
    return b"\r\n".join(kept)


def _rst_close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@dataclass
class _RuleState:
    rule: FaultRule
    used: int = 0

    @property
    def exhausted(self) -> bool:
        return self.rule.times is not None and self.used >= self.rule.times


class FaultProxy:
    """Threaded HTTP/1.1 fault proxy; a context manager.  See the module docstring."""

    def __init__(
        self,
        upstream: str,
        *,
        seed: int = 0,
        upstream_timeout: float = 60.0,
        keep_history: int = 100_000,
    ) -> None:
        parts = urlsplit(upstream if "://" in upstream else f"http://{upstream}")
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream must be http://host:port, got {upstream!r}")
        self._upstream = (parts.hostname, parts.port or 80)
        self._upstream_timeout = upstream_timeout
        self._keep_history = keep_history
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._rules: list[_RuleState] = []
        self._stopping = threading.Event()
        self._socks: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._requests = 0
        self._forwarded = 0
        self._faults: Counter[str] = Counter()
        self._by_method: Counter[str] = Counter()
        self._disconnects = 0
        self._upstream_errors = 0
        self._history: list[SeenRequest] = []
        self._req_ids = 0

        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self.url: str = f"http://127.0.0.1:{self.port}"
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"FaultProxy-{self.port}", daemon=True
        )
        self._acceptor.start()

    # ---------------------------------------------------------------- public API

    def set_rules(self, rules: Sequence[FaultRule]) -> None:
        """Replace the rule list (``times`` counters start afresh)."""
        states = [_RuleState(rule) for rule in rules]
        with self._lock:
            self._rules = states

    def clear(self) -> None:
        """Remove all rules: forward everything untouched."""
        self.set_rules([])

    def reseed(self, seed: int) -> None:
        with self._lock:
            self._rng.seed(seed)

    @property
    def stats(self) -> ProxyStats:
        with self._lock:
            return ProxyStats(
                requests=self._requests,
                forwarded=self._forwarded,
                faults=dict(self._faults),
                client_disconnects=self._disconnects,
                upstream_errors=self._upstream_errors,
                by_method=dict(self._by_method),
            )

    def history(self) -> list[SeenRequest]:
        """Requests seen so far, in arrival order (bounded by ``keep_history``)."""
        with self._lock:
            return list(self._history)

    def rule_uses(self) -> list[int]:
        """How many times each current rule has been applied."""
        with self._lock:
            return [state.used for state in self._rules]

    def reset_stats(self) -> None:
        with self._lock:
            self._requests = self._forwarded = self._disconnects = self._upstream_errors = 0
            self._faults.clear()
            self._by_method.clear()
            self._history.clear()

    def stop(self) -> None:
        """Stop accepting, abort all connections and stalls; returns within about a second."""
        self._stopping.set()
        self._acceptor.join(timeout=1.0)
        with self._lock:
            socks = list(self._socks)
            threads = list(self._threads)
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + 1.0
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self._listener.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---------------------------------------------------------------- internals

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            thread = threading.Thread(
                target=self._serve_client, args=(sock,), name="FaultProxy-conn", daemon=True
            )
            with self._lock:
                if self._stopping.is_set():
                    sock.close()
                    return
                self._socks.add(sock)
                self._threads.add(thread)
            thread.start()

    def _serve_client(self, sock: socket.socket) -> None:
        reader = _Reader(sock)
        abnormal = False
        try:
            while not self._stopping.is_set():
                if reader.at_clean_eof():
                    break
                req = _read_head(reader)
                if not self._handle(sock, reader, req):
                    break
        except (OSError, _EOFError, ValueError):
            abnormal = True  # client went away or sent garbage: end quietly
        except Exception:  # a bug in the proxy must not print from a daemon thread mid-test
            abnormal = True
        finally:
            with self._lock:
                self._socks.discard(sock)
                self._threads.discard(threading.current_thread())
                if abnormal and not self._stopping.is_set():
                    self._disconnects += 1
            sock.close()

    def _match(self, method: str, target: str) -> FaultRule | None:
        with self._lock:
            self._requests += 1
            self._by_method[method] += 1
            chosen: FaultRule | None = None
            for state in self._rules:
                rule = state.rule
                if state.exhausted:
                    continue
                if rule.methods and method not in rule.methods:
                    continue
                if rule.path_contains and rule.path_contains not in target:
                    continue
                if rule.probability < 1.0 and self._rng.random() >= rule.probability:
                    continue
                state.used += 1
                self._faults[rule.action] += 1
                chosen = rule
                break
            if len(self._history) < self._keep_history:
                self._history.append(SeenRequest(method, target, chosen.action if chosen else None))
            return chosen

    def _next_request_id(self) -> str:
        with self._lock:
            self._req_ids += 1
            return f"FAULTPROXY{self._req_ids:08d}"

    def _handle(self, sock: socket.socket, reader: _Reader, req: _Message) -> bool:
        """Serve one request; return True to keep the client connection open."""
        method = req.start[0].upper()
        target = req.start[1]
        expect = req.get("expect")
        expects_continue = expect is not None and expect.lower() == "100-continue"
        client_close = "close" in req.tokens("connection") or (
            len(req.start) > 2 and req.start[2] == "HTTP/1.0"
        )
        rule = self._match(method, target)

        def error(status: int, code: str, message: str, *, close: bool) -> bytes:
            return _error_response(
                status,
                code,
                message,
                request_id=self._next_request_id(),
                resource=target.split("?", 1)[0],
                head_only=method == "HEAD",
                close=close,
            )

        if rule is not None and rule.action == "status":
            if expects_continue:
                # Like S3: refuse before the body is sent, and close (the body never comes).
                sock.sendall(error(rule.status, rule.code, rule.message, close=True))
                return False
            _read_request_body(reader, req)
            sock.sendall(error(rule.status, rule.code, rule.message, close=client_close))
            return not client_close

        if expects_continue:
            sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

        if rule is not None and rule.action == "reset_mid_body":
            length = _body_length(req)
            if length is None:  # chunked: the decoded length is a lower bound of the raw length
                length = int(req.get("x-amz-decoded-content-length") or "2")
            reader.read_exact(length // 2)
            _rst_close(sock)
            return False

        body = _read_request_body(reader, req)
        if (
            rule is not None
            and rule.action == "stall_before"
            and not self._stall(sock, rule.stall_seconds)
        ):
            return False  # client gave up: nothing forwarded

        response = self._forward(req, body)
        if response is None:
            sock.sendall(error(502, "BadGateway", "FaultProxy: upstream failed", close=True))
            return False

        if rule is not None and rule.action == "stall_after":
            if not self._stall(sock, rule.stall_seconds):
                return False  # client gave up: the write was applied, the answer is lost
        elif rule is not None and rule.action == "status_after_forward":
            sock.sendall(error(rule.status, rule.code, rule.message, close=client_close))
            return not client_close

        sock.sendall(response.raw)
        return not (client_close or response.close)

    def _stall(self, sock: socket.socket, seconds: float) -> bool:
        """Sleep up to ``seconds``; False if the client disconnected or the proxy stops."""
        deadline = time.monotonic() + seconds
        while True:
            remaining = deadline - time.monotonic()
            if self._stopping.is_set():
                return False
            if remaining <= 0:
                return True
            readable, _, _ = select.select([sock], [], [], min(remaining, 0.05))
            if readable:
                try:
                    peek = sock.recv(1, socket.MSG_PEEK)
                except OSError:
                    return False
                if not peek:
                    return False
                # The client sent more bytes (pipelining); keep waiting without busy-looping.
                self._stopping.wait(min(max(remaining, 0.0), 0.05))

    def _forward(self, req: _Message, body: bytes) -> _Response | None:
        try:
            upstream = socket.create_connection(self._upstream, timeout=self._upstream_timeout)
        except OSError:
            with self._lock:
                self._upstream_errors += 1
            return None
        with self._lock:
            self._socks.add(upstream)
            self._forwarded += 1
        try:
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            upstream.sendall(_strip_expect(req.head) + body)
            return _read_response(_Reader(upstream), req.start[0].upper())
        except (OSError, _EOFError, ValueError):
            with self._lock:
                self._upstream_errors += 1
            return None
        finally:
            with self._lock:
                self._socks.discard(upstream)
            upstream.close()
