import argparse
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenants.management.tenants import command_tenant
from vizochok.text import count_noun
from webhooks.conformance import DEFAULT_SLOW_FRACTION, EndpointReport, merchant_check
from webhooks.diagnostics import TEST_SESSION_ID, TEST_STORE_ID
from webhooks.models import WebhookKind


def _parse_identifier(value: str) -> str:
    """Parse a store, session or product id, which is kept as typed. Reject ids the API rejects.

    The webhooks receive the ids unchanged, so an id with surrounding whitespace would name
    another store or session than the one the user meant. Python keeps the bytes of an
    argument that is not valid UTF-8 as lone surrogates, which the request body cannot encode.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError(f"{value!r} is not valid UTF-8") from None
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    if value != value.strip():
        raise argparse.ArgumentTypeError(f"{value!r} must not start or end with whitespace")
    return value


class Command(BaseCommand):
    help = (
        "Send signed sample requests to a tenant's webhooks and report, per endpoint, "
        "status, latency and every contract violation. The cart check sends 'clear' for the "
        f"session {TEST_SESSION_ID!r}. Exits with status 1 when a violation is found."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="Slug of the tenant.")
        parser.add_argument(
            "--kind",
            action="append",
            choices=[kind.value for kind in WebhookKind],
            help="Webhook to check; repeat for several. Default: all three.",
        )
        parser.add_argument(
            "--sku",
            action="append",
            type=_parse_identifier,
            help="SKU to ask the products webhook about; repeat for several. Default: up to "
            "three of the tenant's active SKUs.",
        )
        parser.add_argument(
            "--store-id",
            type=_parse_identifier,
            default=TEST_STORE_ID,
            help=f"store_id to send (default {TEST_STORE_ID}).",
        )
        parser.add_argument(
            "--session-id",
            type=_parse_identifier,
            default=TEST_SESSION_ID,
            help=f"session_id for the cart checks (default {TEST_SESSION_ID}).",
        )
        parser.add_argument(
            "--slow-fraction",
            type=float,
            default=DEFAULT_SLOW_FRACTION,
            help="Report responses slower than this share of the tenant's timeout "
            f"(default {DEFAULT_SLOW_FRACTION}).",
        )
        parser.add_argument("--json", action="store_true", help="Print the reports as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = command_tenant(options["slug"])
        if not 0 < options["slow_fraction"] <= 1:
            raise CommandError("--slow-fraction must be above 0 and at most 1.")
        kinds = [WebhookKind(kind) for kind in options["kind"] or WebhookKind.values]
        reports = merchant_check(
            tenant=tenant,
            kinds=kinds,
            skus=options["sku"],
            store_id=options["store_id"],
            session_id=options["session_id"],
            slow_fraction=options["slow_fraction"],
        )
        if options["json"]:
            self.stdout.write(json.dumps([_as_dict(report) for report in reports], indent=2))
        else:
            for report in reports:
                self._write_report(report)
        violations = sum(len(report.violations) for report in reports)
        if violations:
            raise CommandError(
                f"{count_noun(violations, 'contract violation')} found.", returncode=1
            )
        # With --json, standard output carries the JSON document alone.
        summary = self.stderr if options["json"] else self.stdout
        summary.write("All checked endpoints conform to the webhook contract.")

    def _write_report(self, report: EndpointReport) -> None:
        self.stdout.write(f"{report.kind.label} webhook {report.url or '(not configured)'}")
        if not report.skipped and report.latency_ms is not None:
            self.stdout.write(
                f"  status {report.status_code or '-'}, {report.latency_ms} ms "
                f"(timeout {report.timeout_seconds} s)"
            )
        for note in report.notes:
            self.stdout.write(f"  note: {note}")
        for violation in report.violations:
            self.stdout.write(f"  VIOLATION {violation.code}: {violation.message}")
        if report.conforms and not report.skipped:
            self.stdout.write("  conforms to the contract")


def _as_dict(report: EndpointReport) -> dict[str, Any]:
    return {
        "kind": str(report.kind),
        "url": report.url,
        "status_code": report.status_code,
        "latency_ms": report.latency_ms,
        "timeout_seconds": report.timeout_seconds,
        "skipped": report.skipped,
        "conforms": report.conforms,
        "violations": [
            {"code": violation.code, "message": violation.message}
            for violation in report.violations
        ],
        "notes": report.notes,
    }
