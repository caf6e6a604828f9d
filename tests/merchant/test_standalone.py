"""The merchant's tests as merchant/README.md runs them: without Django or a database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
# The command of merchant/README.md, "Use in tests", after "python -m pytest".
README_ARGUMENTS = ["tests/merchant", "-q", "-p", "no:django", "--confcutdir=tests/merchant"]


def test_readme_command_collects_without_django():
    # Collecting is enough: it imports every conftest.py and test module that a run
    # imports. A full run here would run this test again.
    environment = {
        name: value for name, value in os.environ.items() if name != "DJANGO_SETTINGS_MODULE"
    }

    result = subprocess.run(
        [sys.executable, "-m", "pytest", *README_ARGUMENTS, "--collect-only"],
        cwd=REPOSITORY_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "ImportError" not in result.stdout
    assert "tests/merchant/test_signature.py" in result.stdout
    assert "tests/merchant/test_standalone.py" in result.stdout


def test_readme_shows_the_command():
    readme = (REPOSITORY_ROOT / "merchant" / "README.md").read_text(encoding="utf-8")

    assert f"python -m pytest {' '.join(README_ARGUMENTS)}\n" in readme
