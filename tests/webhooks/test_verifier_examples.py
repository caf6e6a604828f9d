"""The merchant verifier examples in docs/examples (Python, Node.js, Go) against
Vizochok's signer and the shared vectors in signature_vectors.json.

Node.js and Go come from Debian packages, which ``scripts/install-verifier-tools.sh``
installs when ``make test`` runs as root; without them these tests skip with the reason.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.webhooks.behaviours import json_reply, point_webhooks_at
from webhooks.dispatch import cart_fetch, products_fetch
from webhooks.signing import signature_headers

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"
HARNESSES = Path(__file__).resolve().parent / "verifiers"
VECTORS = json.loads((Path(__file__).with_name("signature_vectors.json")).read_text("utf-8"))
INSTALL_HINT = "run scripts/install-verifier-tools.sh as root (make test does)"

# A verifier takes a list of cases and returns one reason per case, None when accepted.
Verifier = Callable[[list[dict]], list[str | None]]


def _python_verifier() -> Verifier:
    spec = importlib.util.spec_from_file_location(
        "verify_signature", EXAMPLES / "verify_signature.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def verify(cases: list[dict]) -> list[str | None]:
        return [
            module.verify_vizochok_request(
                secret=case["secret"],
                body=base64.b64decode(case["body_base64"]),
                headers=case["headers"],
                now=case["now"],
            )
            for case in cases
        ]

    return verify


def _run_json(command: list[str], cases: list[dict]) -> list[str | None]:
    completed = subprocess.run(
        command, input=json.dumps(cases), capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


def _node_verifier() -> Verifier:
    node = shutil.which("node")
    if node is None:
        pytest.skip(f"Node.js is not installed; {INSTALL_HINT}")
    command = [node, str(HARNESSES / "node_harness.js"), str(EXAMPLES / "verify_signature.js")]
    return lambda cases: _run_json(command, cases)


def _go_verifier(build_dir: Path) -> Verifier:
    go = shutil.which("go")
    if go is None:
        pytest.skip(f"Go is not installed; {INSTALL_HINT}")
    module = build_dir / "go"
    shutil.copytree(EXAMPLES / "go", module)
    shutil.copytree(HARNESSES / "go_harness", module / "cmd" / "harness")
    binary = build_dir / "harness"
    environment = {**os.environ, "GOPROXY": "off", "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
    if "HOME" not in environment:
        # Go needs a build cache; without a home directory, use a throw-away one.
        environment["HOME"] = str(build_dir)
        environment["GOCACHE"] = str(build_dir / "gocache")
    built = subprocess.run(
        [go, "build", "-o", str(binary), "./cmd/harness"],
        cwd=module,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    return lambda cases: _run_json([str(binary)], cases)


@pytest.fixture(scope="session", params=["python", "node", "go"])
def verifier(request, tmp_path_factory) -> Verifier:
    if request.param == "python":
        return _python_verifier()
    if request.param == "node":
        return _node_verifier()
    return _go_verifier(tmp_path_factory.mktemp("go-verifier"))


def _vector_case(vector: dict) -> dict:
    headers = {}
    if vector["signature"] is not None:
        headers["X-VIZOCHOK-Signature"] = vector["signature"]
    if vector["timestamp"] is not None:
        headers["X-VIZOCHOK-Timestamp"] = vector["timestamp"]
    return {
        "secret": vector["secret"],
        "body_base64": vector["body_base64"],
        "headers": headers,
        "now": vector["now"],
    }


def _signed_case(*, secret: str, body: bytes, headers: dict[str, str], now: int) -> dict:
    return {
        "secret": secret,
        "body_base64": base64.b64encode(body).decode(),
        "headers": headers,
        "now": now,
    }


def test_verifier_matches_every_vector(verifier):
    cases = [_vector_case(vector) for vector in VECTORS["cases"]]

    reasons = verifier(cases)

    expected = [vector["reason"] for vector in VECTORS["cases"]]
    mismatches = [
        (vector["name"], got, want)
        for vector, got, want in zip(VECTORS["cases"], reasons, expected, strict=True)
        if got != want
    ]
    assert mismatches == []
    assert len(reasons) == 27


def test_verifier_accepts_both_rotation_headers_of_the_vectors(verifier):
    cases = []
    for signing_case in VECTORS["signing_cases"]:
        for secret in (signing_case["secret"], signing_case["next_secret"]):
            if secret is not None:
                cases.append(
                    {
                        "secret": secret,
                        "body_base64": signing_case["body_base64"],
                        "headers": signing_case["headers"],
                        "now": signing_case["timestamp"],
                    }
                )

    assert verifier(cases) == [None, None, None]


def test_verifier_checks_requests_of_vizochoks_signer(verifier):
    body = b'{"skus":["milk-001"],"store_id":"store-1"}'
    now = int(time.time())
    old, new = "old-secret-0123456789abcdef", "new-secret-0123456789abcdef"
    rotating = signature_headers(secret=old, body=body, timestamp=now, next_secret=new)
    only_old = signature_headers(secret=old, body=body, timestamp=now)
    without_signatures = {"X-VIZOCHOK-Timestamp": str(now)}
    cases = [
        _signed_case(secret=old, body=body, headers=rotating, now=now),
        _signed_case(secret=new, body=body, headers=rotating, now=now),
        _signed_case(secret="third-secret-0123456789abc", body=body, headers=rotating, now=now),
        _signed_case(secret=new, body=body, headers=only_old, now=now),
        _signed_case(secret=old, body=body + b" ", headers=rotating, now=now),
        _signed_case(secret=old, body=body, headers=rotating, now=now + 301),
        _signed_case(secret=old, body=body, headers=rotating, now=now - 301),
        _signed_case(secret=old, body=body, headers=rotating, now=now + 300),
        _signed_case(secret=old, body=body, headers=without_signatures, now=now),
        _signed_case(
            secret=old,
            body=b"",
            headers=signature_headers(secret=old, body=b"", timestamp=now),
            now=now,
        ),
    ]

    assert verifier(cases) == [
        None,
        None,
        "invalid_signature",
        "invalid_signature",
        "invalid_signature",
        "stale_timestamp",
        "stale_timestamp",
        None,
        "missing_signature",
        None,
    ]


@pytest.mark.django_db
def test_verifier_checks_requests_the_dispatcher_sent(
    verifier, tenant, local_webhooks, start_server
):
    server = start_server(json_reply(200, {"products": [], "items": []}))
    point_webhooks_at(tenant, server)
    webhook_settings = tenant.webhook_settings
    webhook_settings.next_secret = "next-secret-of-the-rotation-0123"
    webhook_settings.next_secret_promote_at = "2999-01-01T00:00:00Z"
    webhook_settings.save()

    products_fetch(tenant=tenant, skus=["milk-001", "кефір"], store_id="store-1")
    cart_fetch(tenant=tenant, store_id="store-1", session_id="shopper-1")

    now = int(time.time())
    cases = [
        _signed_case(secret=secret, body=request.body, headers=request.headers, now=now)
        for request in server.log.requests
        for secret in (
            webhook_settings.secret,
            webhook_settings.next_secret,
            "wrong-secret-0123456789abc",
        )
    ]
    assert [request.body == b"" for request in server.log.requests] == [False, True]
    assert verifier(cases) == [None, None, "invalid_signature"] * 2


@pytest.mark.parametrize(
    ("body", "shown_type"),
    [("{}", "object"), ('"{\\"skus\\": []}"', "string"), ("null", "null")],
)
def test_node_verifier_rejects_parsed_body(body, shown_type):
    # express.json() leaves an object in req.body, and express.text() a string.
    node = shutil.which("node")
    if node is None:
        pytest.skip(f"Node.js is not installed; {INSTALL_HINT}")
    script = (
        f"const {{ verifyVizochokRequest }} = require({json.dumps(str(EXAMPLES / 'verify_signature.js'))});\n"
        "const headers = {'X-VIZOCHOK-Timestamp': '1700000000', "
        "'X-VIZOCHOK-Signature': 'sha256=' + '0'.repeat(64)};\n"
        "try {\n"
        f"  verifyVizochokRequest({{secret: 'secret', body: {body}, headers, now: 1700000000}});\n"
        "  console.log('accepted');\n"
        "} catch (error) {\n"
        "  console.log(error.name + ': ' + error.message);\n"
        "}\n"
    )

    completed = subprocess.run(
        [node, "-e", script], capture_output=True, text=True, timeout=60, check=False
    )

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == (
        f"TypeError: body must be the raw request bytes as a Buffer, got {shown_type}; "
        'give the webhook route express.raw({ type: "*/*" }) instead of express.json()\n'
    )
