"""The widget's core and DOM layer under ``node --test``, and its error texts against the docs."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WIDGET = ROOT / "conversations" / "widget" / "vizochok-widget.js"
CORE_TESTS = ROOT / "tests" / "widget" / "core.test.js"
DOM_TESTS = ROOT / "tests" / "widget" / "dom.test.js"
INSTALL_HINT = "run scripts/install-verifier-tools.sh as root (make test does)"
LANGUAGES = ("uk", "en", "ru")


@pytest.mark.parametrize("tests", [CORE_TESTS, DOM_TESTS], ids=["core", "dom"])
def test_widget_node_tests(tests: Path):
    node = shutil.which("node")
    if node is None:
        pytest.skip(f"Node.js is not installed; {INSTALL_HINT}")
    completed = subprocess.run(
        [node, "--test", str(tests)], capture_output=True, text=True, timeout=120, check=False
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "# fail 0" in completed.stdout


def _section(text: str, heading: str) -> str:
    """Return the lines under a Markdown heading, up to the next heading of any level."""
    match = re.search(rf"^#+ {re.escape(heading)}\n(.*?)(?=^#)", text + "\n#", re.S | re.M)
    assert match is not None, f"heading {heading!r} not found"
    return match.group(1)


def _table_column(section: str, column: int) -> set[str]:
    codes: set[str] = set()
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) <= column or set(cells[0]) <= {"-"}:
            continue
        # A code is a backticked word at the start of the cell or after ", ".
        codes.update(re.findall(r"(?:^|, )`([a-z_]+)`", cells[column]))
    return codes


def documented_error_codes() -> set[str]:
    chat_api = (ROOT / "docs" / "chat-api.md").read_text("utf-8")
    streaming = (ROOT / "docs" / "streaming.md").read_text("utf-8")
    errors = _section(chat_api, "Errors")
    request_errors, _, reply_errors = errors.partition("Problems during a reply")
    codes = _table_column(request_errors, 1) | _table_column(reply_errors, 0)
    codes |= set(re.findall(r"\| \d{3} `([a-z_]+)`", _section(chat_api, "Limits")))
    codes |= _table_column(_section(streaming, "Errors before and during the stream"), 1)
    return codes - {"code"}


def widget_error_texts() -> dict[str, set[str]]:
    source = WIDGET.read_text("utf-8")
    block = source[source.index("var ERROR_TEXTS = {") :]
    block = block[: block.index("\n  };\n")]
    texts: dict[str, set[str]] = {}
    for language, body in re.findall(r"\n    (\w+): \{\n(.*?)\n    \},", block, re.S):
        texts[language] = set(re.findall(r"^      (\w+):", body, re.M))
    return texts


def test_documented_error_codes_are_found():
    codes = documented_error_codes()

    assert {"invalid_json", "agent_busy", "rate_limit_exceeded", "length_required"} <= codes
    assert {"no_catalog_data", "session_token_limit", "max_rounds_exceeded"} <= codes
    assert {"user_conversation_limit", "tenant_monthly_token_limit"} <= codes
    assert len(codes) == 24


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_documented_error_code_has_text(language):
    texts = widget_error_texts()

    missing = documented_error_codes() - texts[language]
    assert missing == set()
    assert "unknown" in texts[language]
