"""The command-line entry point, run as a real process on 127.0.0.1."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from merchant.__main__ import parse_seed_cart
from tests.merchant.client import MerchantClient
from tests.merchant.sample_data import CATALOG, STOCK

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
CLI_SECRET = "whsec_cli_only"


def write_data(tmp_path: Path) -> tuple[Path, Path]:
    stock_path = tmp_path / "stock.json"
    stock_path.write_text(json.dumps(STOCK), encoding="utf-8")
    catalog_path = tmp_path / "catalog.jsonl"
    catalog_path.write_text(
        "".join(json.dumps(product, ensure_ascii=False) + "\n" for product in CATALOG),
        encoding="utf-8",
    )
    return stock_path, catalog_path


def run_cli(*arguments: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "merchant", *arguments],
        cwd=REPOSITORY_ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_cli_serves_seeded_cart_and_stops_on_sigterm(tmp_path: Path) -> None:
    # given
    stock_path, catalog_path = write_data(tmp_path)
    process = run_cli(
        "--port", "0",
        "--secret-env", "VZ_TEST_MERCHANT_SECRET",
        "--stock", str(stock_path),
        "--catalog", str(catalog_path),
        "--seed-cart", "user-1:bread-01:2",
        "--seed-cart", "store-2:user-1:apple-kg:0.5",
        env={"VZ_TEST_MERCHANT_SECRET": CLI_SECRET},
    )  # fmt: skip
    watchdog = threading.Timer(15, process.kill)
    watchdog.start()
    try:
        assert process.stderr is not None
        started_line = process.stderr.readline()
        match = re.search(r"merchant\.started url=(http://127\.0\.0\.1:\d+)", started_line)
        assert match, started_line
        client = MerchantClient(match.group(1), CLI_SECRET)

        # when
        health = client.request("GET", "/health", signed=False)
        default_store_cart = client.cart_get("store-1", "user-1")
        other_store_cart = client.cart_get("store-2", "user-1")
        # The server logs a request after answering it, so wait for the line before the
        # signal; otherwise a fast SIGTERM could stop the server before it writes it.
        request_lines = ""
        while "path=/health" not in request_lines:
            request_lines += process.stderr.readline()
        process.send_signal(signal.SIGTERM)
        _, stderr_rest = process.communicate(timeout=10)
    finally:
        watchdog.cancel()
        process.kill()

    # then
    assert health.status == 200
    assert [item["quantity"] for item in default_store_cart.json()["items"]] == [2]
    assert [item["quantity"] for item in other_store_cart.json()["items"]] == [0.5]
    assert process.returncode == 0
    log = started_line + request_lines + stderr_rest
    assert "merchant.request method=GET path=/health status=200 reason=- duration_ms=" in log
    assert "merchant.stopped" in log
    assert CLI_SECRET not in log


def test_cli_without_secret_exits_with_error(tmp_path: Path) -> None:
    stock_path, _ = write_data(tmp_path)
    environment = {key: value for key, value in os.environ.items() if key != "VZ_UNSET_SECRET"}

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "merchant",
            "--secret-env",
            "VZ_UNSET_SECRET",
            "--stock",
            str(stock_path),
        ],
        cwd=REPOSITORY_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=15,
    )

    assert result.returncode == 2
    assert "VZ_UNSET_SECRET" in result.stderr
    assert "is not set" in result.stderr


def test_cli_with_empty_secret_file_exits_with_error(tmp_path: Path) -> None:
    stock_path, _ = write_data(tmp_path)
    secret_path = tmp_path / "secret"
    secret_path.write_text("\n", encoding="utf-8")

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "merchant",
            "--secret-file",
            str(secret_path),
            "--stock",
            str(stock_path),
        ],
        cwd=REPOSITORY_ROOT,
        capture_output=True,
        text=True,
        timeout=15,
    )

    assert result.returncode == 2
    assert "is empty" in result.stderr


def test_cli_with_unknown_seed_sku_exits_with_error(tmp_path: Path) -> None:
    stock_path, _ = write_data(tmp_path)
    secret_path = tmp_path / "secret"
    secret_path.write_text(CLI_SECRET, encoding="utf-8")

    result = subprocess.run(
        [
            sys.executable, "-m", "merchant",
            "--secret-file", str(secret_path),
            "--stock", str(stock_path),
            "--seed-cart", "user-1:nope:1",
        ],
        cwd=REPOSITORY_ROOT,
        capture_output=True,
        text=True,
        timeout=15,
    )  # fmt: skip

    assert result.returncode == 2
    assert "unknown SKU 'nope'" in result.stderr


def test_seed_cart_without_store_uses_default() -> None:
    assert parse_seed_cart("user-1:atb-0318:2", "store-1") == ("store-1", "user-1", "atb-0318", 2.0)


def test_seed_cart_with_store() -> None:
    assert parse_seed_cart("kyiv:user-1:atb-0001:0.5", "store-1") == (
        "kyiv",
        "user-1",
        "atb-0001",
        0.5,
    )


@pytest.mark.parametrize("value", ["user-1:atb-0318", "a:b:c:d:e", "user-1::2", "user-1:sku:two"])
def test_invalid_seed_cart_rejected(value: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="invalid --seed-cart"):
        parse_seed_cart(value, "store-1")
