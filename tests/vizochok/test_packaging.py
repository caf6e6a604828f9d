"""Checks that `pip install .` installs every file that the apps read at run time."""

import tomllib
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text(encoding="utf-8"))


def _package_roots() -> list[str]:
    patterns = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    return [pattern.rstrip("*") for pattern in patterns]


def _non_python_files(root: str) -> set[Path]:
    """Return the files under ``root`` that setuptools leaves out unless package data lists them."""
    return {
        path.relative_to(PROJECT_DIR)
        for path in (PROJECT_DIR / root).rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts
    }


def _package_data_files(root: str) -> set[Path]:
    patterns = PYPROJECT["tool"]["setuptools"].get("package-data", {}).get(root, [])
    return {
        path.relative_to(PROJECT_DIR)
        for pattern in patterns
        for path in (PROJECT_DIR / root).glob(pattern)
        if path.is_file()
    }


def test_package_data_lists_every_file():
    for root in _package_roots():
        missing = _non_python_files(root) - _package_data_files(root)

        assert missing == set(), f"add these files of {root}/ to package-data: {sorted(missing)}"


def test_package_data_covers_runtime_files():
    installed = set().union(*(_package_data_files(root) for root in _package_roots()))

    assert Path("conversations/widget/vizochok-widget.js") in installed
