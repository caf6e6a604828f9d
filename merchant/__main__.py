"""Run the reference merchant from the command line.

Example:
    python -m merchant --port 8001 --secret-env MERCHANT_WEBHOOK_SECRET \\
        --stock demo/data/atb-stock.json --catalog demo/data/atb-catalog.jsonl \\
        --seed-cart user-123:atb-0318:2
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from merchant.server import MerchantServer, build_store

DEFAULT_SEED_STORE_ID = "store-1"

# Fields that merchant.server passes in `extra`, in the order they are printed.
LOG_FIELDS = ("method", "path", "status", "reason", "duration_ms", "url", "detail")


class KeyValueFormatter(logging.Formatter):
    """Format a record as its constant message followed by its extra fields as key=value."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = [
            f"{name}={getattr(record, name) or '-'}" for name in LOG_FIELDS if hasattr(record, name)
        ]
        return " ".join([line, *fields])


def parse_seed_cart(value: str, default_store_id: str) -> tuple[str, str, str, float]:
    """Parse SESSION_ID:SKU:QTY or STORE_ID:SESSION_ID:SKU:QTY."""
    parts = value.split(":")
    if len(parts) == 3:
        parts.insert(0, default_store_id)
    if len(parts) != 4 or not all(parts):
        raise argparse.ArgumentTypeError(
            f"invalid --seed-cart {value!r}: expected SESSION_ID:SKU:QTY or "
            "STORE_ID:SESSION_ID:SKU:QTY"
        )
    store_id, session_id, sku, quantity_text = parts
    try:
        quantity = float(quantity_text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid --seed-cart quantity {quantity_text!r}: expected a number such as 2 or 0.5"
        ) from None
    return store_id, session_id, sku, quantity


def read_secret(args: argparse.Namespace, parser: argparse.ArgumentParser) -> str:
    if args.secret_file is not None:
        try:
            secret: str = args.secret_file.read_text(encoding="utf-8").strip()
        except OSError as error:
            parser.error(f"cannot read --secret-file {args.secret_file}: {error.strerror}")
        if not secret:
            parser.error(f"--secret-file {args.secret_file} is empty")
        return secret

    secret = os.environ.get(args.secret_env, "").strip()
    if not secret:
        parser.error(f"environment variable {args.secret_env} (from --secret-env) is not set")
    return secret


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m merchant",
        description="Reference merchant backend for the Vizochok webhooks (standard library only).",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=int, default=8001, help="TCP port, 0 for any free port (default: 8001)"
    )
    secret_source = parser.add_mutually_exclusive_group(required=True)
    secret_source.add_argument(
        "--secret-file", type=Path, help="file that contains the webhook secret"
    )
    secret_source.add_argument(
        "--secret-env", metavar="NAME", help="environment variable that contains the webhook secret"
    )
    parser.add_argument(
        "--stock", type=Path, required=True, help="JSON file with price and stock per SKU"
    )
    parser.add_argument(
        "--catalog",
        type=Path,
        help="JSON Lines catalog with product names and units (without it, names are SKUs)",
    )
    parser.add_argument(
        "--seed-cart",
        action="append",
        default=[],
        metavar="[STORE_ID:]SESSION_ID:SKU:QTY",
        help="put a product into a cart at start-up; repeat for more lines",
    )
    parser.add_argument(
        "--seed-store-id",
        default=DEFAULT_SEED_STORE_ID,
        help=f"store_id for --seed-cart values without one (default: {DEFAULT_SEED_STORE_ID})",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    secret = read_secret(args, parser)

    seed_carts: dict[tuple[str, str], list[tuple[str, float]]] = {}
    for value in args.seed_cart:
        try:
            store_id, session_id, sku, quantity = parse_seed_cart(value, args.seed_store_id)
        except argparse.ArgumentTypeError as error:
            parser.error(str(error))
        seed_carts.setdefault((store_id, session_id), []).append((sku, quantity))

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter("%(asctime)s %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])

    try:
        store = build_store(stock_path=args.stock, catalog_path=args.catalog, seed_carts=seed_carts)
    except (OSError, ValueError) as error:
        parser.error(f"cannot load the merchant data: {error}")
    try:
        server = MerchantServer(store=store, secret=secret, host=args.host, port=args.port)
    except OSError as error:
        parser.error(f"cannot listen on {args.host}:{args.port}: {error.strerror}")

    def stop(signal_number: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
