"""Makefile targets that run a long-lived process, checked with a stand-in for the process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parents[2]

# Writes its pid and waits. On SIGTERM it writes "terminated" and exits, as the catalog worker
# and runserver do.
STAND_IN = """
import os, signal, sys, time
from pathlib import Path

directory = Path(sys.argv[1])

def stop(signum, frame):
    (directory / "terminated").write_text("yes")
    sys.exit(0)

signal.signal(signal.SIGTERM, stop)
(directory / "pid").write_text(str(os.getpid()))
time.sleep(60)
"""


def wait_for(path: Path, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("target", ["worker", "manage"])
def test_sigterm_to_make_stops_target(tmp_path, target):
    # VENV_PYTHON runs the stand-in instead of manage.py, and a DATABASE_URL in the
    # environment keeps scripts/with-db.sh from starting PostgreSQL.
    (tmp_path / "stand_in.py").write_text(STAND_IN)
    interpreter = tmp_path / "python"
    interpreter.write_text(
        f"#!/bin/sh\nexec {sys.executable} {tmp_path / 'stand_in.py'} {tmp_path}\n"
    )
    interpreter.chmod(0o755)
    environment = {**os.environ, "DATABASE_URL": "postgres://unused@127.0.0.1:1/unused"}
    make = subprocess.Popen(
        ["make", "--no-print-directory", target, f"VENV_PYTHON={interpreter}"],
        cwd=PROJECT_DIR,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stand_in_pid = None
    try:
        assert wait_for(tmp_path / "pid", 20), "the stand-in did not start"
        stand_in_pid = int((tmp_path / "pid").read_text())

        make.send_signal(signal.SIGTERM)
        make.wait(timeout=20)

        assert wait_for(tmp_path / "terminated", 10)
    finally:
        if make.poll() is None:
            make.kill()
            make.wait()
        if stand_in_pid is not None and not (tmp_path / "terminated").exists():
            os.kill(stand_in_pid, signal.SIGKILL)


@pytest.mark.parametrize(
    ("target", "arguments"),
    [
        ("manage", "manage.py check"),
        ("migrate", "manage.py migrate"),
        ("worker", "manage.py procrastinate worker --queues catalog"),
        ("demo", "demo/run.py --once"),
    ],
)
def test_targets_run_in_path_with_space(tmp_path, target, arguments):
    # A checkout whose path contains a space, with a stand-in for the virtualenv's Python
    # that prints the PYTHON variable that scripts/with-db.sh receives and its arguments.
    checkout = tmp_path / "my checkout"
    (checkout / "scripts").mkdir(parents=True)
    for name in ("Makefile", "pyproject.toml", "scripts/with-db.sh"):
        (checkout / name).write_bytes((PROJECT_DIR / name).read_bytes())
    (checkout / "scripts/with-db.sh").chmod(0o755)
    interpreter = checkout / ".venv/bin/python"
    interpreter.parent.mkdir(parents=True)
    interpreter.write_text('#!/bin/sh\necho "PYTHON=$PYTHON" "$@"\n')
    interpreter.chmod(0o755)
    (checkout / ".venv/.installed").touch()
    environment = {**os.environ, "DATABASE_URL": "postgres://unused@127.0.0.1:1/unused"}
    result = subprocess.run(
        ["make", "--no-print-directory", "-s", target, "ARGS=check", "DEMO_ARGS=--once"],
        cwd=checkout,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"PYTHON={interpreter} {arguments}\n"
