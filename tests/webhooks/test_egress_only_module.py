"""Only webhooks.egress may open outbound HTTP connections from the application.

ruff's TID251 bans ``requests.get/post/request/Session`` outside tests. This test also
catches the other ways to reach a URL: the standard library's ``urllib.request`` and
``http.client``, urllib3, httpx, httpx2 and httpcore2 (the HTTP client of openai), aiohttp and
raw sockets. The LLM endpoint, which the deployment configures, is reached through the
openai client, whose HTTP client ``conversations/llm_http.py`` builds.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APPLICATION_PACKAGES = ["vizochok", "tenants", "catalog", "webhooks", "conversations"]
HTTP_MODULES = {
    "requests",
    "urllib.request",
    "http.client",
    "urllib3",
    "httpx",
    "httpx2",
    "httpcore2",
    "aiohttp",
    "socket",
}
ALLOWED = {
    # The one hardened client for tenant-configured URLs.
    "webhooks/egress.py": {"requests", "http.client", "urllib3", "socket"},
    # Resolves host names with socket.getaddrinfo to check the addresses; opens nothing.
    "webhooks/urls_policy.py": {"socket"},
    # The openai client's HTTP client, which bounds each socket operation by the turn's
    # deadline; it reads the proxy variables with urllib.request.getproxies.
    "conversations/llm_http.py": {"httpx2", "httpcore2", "urllib.request"},
}


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {
        module
        for module in modules
        for banned in HTTP_MODULES
        if module == banned or module.startswith(banned + ".")
    }


def test_only_egress_imports_http_clients():
    found = {}
    for package in APPLICATION_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            modules = imported_modules(path) - ALLOWED.get(relative, set())
            modules = {
                module
                for module in modules
                if not any(
                    module.startswith(allowed + ".") for allowed in ALLOWED.get(relative, ())
                )
            }
            if modules:
                found[relative] = sorted(modules)

    assert found == {}


def test_scan_detects_a_banned_import(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import urllib.request\nfrom http.client import HTTPSConnection\n")

    assert imported_modules(sample) == {
        "urllib.request",
        "http.client",
        "http.client.HTTPSConnection",
    }
