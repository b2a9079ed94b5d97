"""End-to-end demo: upload a sample spool to a throw-away SeaweedFS server with the spool_tool CLI.

Run with ``make demo`` or ``.venv/bin/python -m devtools.demo``. It

1. starts a SeaweedFS S3 server on 127.0.0.1 (temp dir) with the bucket ``demo``;
2. writes 20 small JSON files into ``SPOOL/new`` with modification times spread over four days
   (2026-01-30 .. 2026-02-03 UTC, so the keys cross a month boundary);
3. runs ``spool_tool --format 'year={m_YYYY}/month={m_MM}/day={m_DD}/{fname}'
   --endpoint-url URL --no-cleanup SPOOL s3://demo/events/`` with the server's credentials in
   the environment (``--no-cleanup`` because the sample files are days old, so the default
   ``--delete-after 60`` would delete them from ``completed/`` straight away);
4. lists the objects that landed, checks every key and body, and checks that ``new/`` is empty
   and ``completed/`` holds the 20 files;
5. stops the server. Exit status 0 when everything matched, 1 otherwise.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from devtools.seaweed import SeaweedServer

BUCKET = "demo"
PREFIX = "events/"
TEMPLATE = "year={m_YYYY}/month={m_MM}/day={m_DD}/{fname}"
FILES = 20
FIRST_MTIME = datetime(2026, 1, 30, 9, 0, tzinfo=UTC)
STEP = timedelta(hours=4, minutes=47)  # 20 files over about four days


def spool_tool_command() -> list[str]:
    beside = Path(sys.executable).parent / "spool_tool"
    if beside.is_file():
        return [str(beside)]
    on_path = shutil.which("spool_tool")
    return [on_path] if on_path else [sys.executable, "-m", "spool_tool"]


def make_spool(spool: Path) -> dict[str, bytes]:
    """Write the sample files; return expected object key -> body."""
    new = spool / "new"
    new.mkdir(parents=True)
    expected: dict[str, bytes] = {}
    for i in range(FILES):
        mtime = FIRST_MTIME + i * STEP
        name = f"event-{i:03d}.json"
        body = json.dumps(
            {"id": i, "kind": ("click", "view", "buy")[i % 3], "at": mtime.isoformat()},
            sort_keys=True,
        ).encode()
        path = new / name
        path.write_bytes(body + b"\n")
        os.utime(path, (mtime.timestamp(), mtime.timestamp()))
        key = f"{PREFIX}year={mtime:%Y}/month={mtime:%m}/day={mtime:%d}/{name}"
        expected[key] = body + b"\n"
    return expected


def child_env(server: SeaweedServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_CONFIG_FILE"] = os.devnull  # no ~/.aws profile may leak into the demo
    env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    env.update(server.env())
    return env


def check(ok: bool, what: str, problems: list[str]) -> None:
    print(f"  [{'ok' if ok else 'FAIL'}] {what}")
    if not ok:
        problems.append(what)


def run_demo(work: Path) -> list[str]:
    problems: list[str] = []
    spool = work / "spool"
    expected = make_spool(spool)
    print(f"spool: {spool} ({FILES} files in new/, mtimes {FIRST_MTIME:%Y-%m-%d} .. "
          f"{FIRST_MTIME + (FILES - 1) * STEP:%Y-%m-%d} UTC)")  # fmt: skip

    with SeaweedServer(work / "seaweed", buckets=[BUCKET]) as server:
        print(f"SeaweedFS: {server.endpoint_url} (pid {server.pid}, "
              f"ready in {server.start_seconds:.2f} s)")  # fmt: skip
        command = [
            *spool_tool_command(),
            "--format", TEMPLATE,
            "--endpoint-url", server.endpoint_url,
            "--no-cleanup",
            str(spool),
            f"s3://{BUCKET}/{PREFIX}",
        ]  # fmt: skip
        print(f"\n$ {shlex.join(command)}")
        try:
            result = subprocess.run(
                command, env=child_env(server), capture_output=True, text=True, timeout=300,
                check=False,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            return [f"could not run spool_tool: {exc}"]
        for stream in (result.stdout, result.stderr):
            if stream.strip():
                print(stream.rstrip())
        print(f"(exit status {result.returncode})\n")

        client = server.client()
        listed: dict[str, int] = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            for obj in page.get("Contents", []):
                listed[obj.get("Key", "")] = obj.get("Size", -1)
        print(f"objects in s3://{BUCKET}/:")
        for key, size in sorted(listed.items()):
            print(f"  {key}  ({size} bytes)")
        print()

        check(result.returncode == 0, "spool_tool exited with status 0", problems)
        check(set(listed) == set(expected), f"the {FILES} expected keys, and only them", problems)
        same = all(
            client.get_object(Bucket=BUCKET, Key=key)["Body"].read() == body
            for key, body in expected.items()
            if key in listed
        )
        check(same, "every object's body equals its file", problems)

    new_left = sorted(p.name for p in (spool / "new").iterdir())
    completed_dir = spool / "completed"
    completed = sorted(p.name for p in completed_dir.iterdir()) if completed_dir.is_dir() else []
    print(f"new/:       {len(new_left)} entries {new_left[:5]}")
    print(f"completed/: {len(completed)} entries {completed[:3]}{' ...' if completed else ''}")
    check(new_left == [], "new/ is empty", problems)
    wanted = sorted(key.rsplit("/", 1)[1] for key in expected)
    check(completed == wanted, f"completed/ holds the {FILES} files", problems)
    return problems


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="spool-tool-demo-") as tmp:
        try:
            problems = run_demo(Path(tmp))
        except Exception as exc:  # the demo reports any failure as a status, not a traceback
            problems = [f"{type(exc).__name__}: {exc}"]
    if problems:
        print(f"\nDEMO FAILED: {'; '.join(problems)}", file=sys.stderr)
        return 1
    print("\nDemo OK: every file uploaded under its Hive-style key and moved to completed/.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
