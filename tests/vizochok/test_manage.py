"""Checks of manage.py itself, run as an operator runs it."""

import os
import subprocess
import sys
from pathlib import Path

from tests.database import closed_port

PROJECT_DIR = Path(__file__).resolve().parents[2]


def test_unreachable_database_gets_one_line_error():
    port = closed_port()
    env = {**os.environ, "DATABASE_URL": f"postgres://vizochok:hunter2-password@127.0.0.1:{port}/x"}

    completed = subprocess.run(
        [sys.executable, "manage.py", "migrate"],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert completed.returncode == 1
    assert completed.stdout == ""
    assert completed.stderr.startswith(
        "Error: the database is unreachable (connection failed: connection to server at "
        f'"127.0.0.1", port {port} failed: Connection refused'
    )
    assert completed.stderr.endswith(
        "Check DATABASE_URL and that the PostgreSQL server is running, then run the command "
        "again.\n"
    )
    assert "Traceback" not in completed.stderr
    assert "hunter2-password" not in completed.stderr
