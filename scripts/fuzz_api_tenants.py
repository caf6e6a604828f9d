"""Tenants for scripts/fuzz-api.sh, and fingerprints of a tenant's data.

    python scripts/fuzz_api_tenants.py create MERCHANT_URL   # print KEY=value lines
    python scripts/fuzz_api_tenants.py fingerprint SLUG      # print one hash per table

``create`` makes (or refreshes) the tenants fuzz-a and fuzz-b. Each gets a public key, a
secret key, a secret key with only the ``chat`` scope and one with only ``catalog``, and
webhooks pointing at MERCHANT_URL. fuzz-a's message limits are raised, so that the fuzzer
reaches the assistant instead of 429 responses. ``fingerprint`` hashes every row that
belongs to the tenant, so that two runs of it show whether another tenant's key changed
any of them.
"""

import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import django  # noqa: E402

django.setup()

from django.apps import apps  # noqa: E402

from tenants.models import ApiKey, AssistantSettings, Tenant  # noqa: E402
from tenants.services import (  # noqa: E402
    api_key_create,
    tenant_create,
    webhook_secret_set,
    webhook_settings_get_or_create,
)

TENANT_SLUGS = {"FUZZ_A": "fuzz-a", "FUZZ_B": "fuzz-b"}
# Message limits of fuzz-a, far above what one run sends.
UNLIMITED = 1_000_000


def _secret_key_with(tenant: Tenant, scope: str) -> str:
    issued = api_key_create(tenant=tenant, kind=ApiKey.Kind.SECRET, name=f"fuzz {scope} only")
    issued.api_key.scopes = [scope]
    issued.api_key.save(update_fields=["scopes"])
    return issued.raw_key


def create(merchant_url: str) -> None:
    for prefix, slug in TENANT_SLUGS.items():
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            tenant = tenant_create(name=slug, slug=slug).tenant
        webhook_settings = webhook_settings_get_or_create(tenant=tenant)
        webhook_settings.products_url = f"{merchant_url}/vizochok/products"
        webhook_settings.cart_url = f"{merchant_url}/vizochok/cart"
        webhook_settings.cart_get_url = f"{merchant_url}/vizochok/cart"
        webhook_settings.save()
        credentials = {
            "PK": api_key_create(tenant=tenant, kind=ApiKey.Kind.PUBLIC).raw_key,
            "SK": api_key_create(tenant=tenant, kind=ApiKey.Kind.SECRET).raw_key,
            "SK_CHAT": _secret_key_with(tenant, ApiKey.Scope.CHAT),
            "SK_CATALOG": _secret_key_with(tenant, ApiKey.Scope.CATALOG),
            "WEBHOOK_SECRET": webhook_secret_set(webhook_settings=webhook_settings),
        }
        if slug == "fuzz-a":
            AssistantSettings.objects.update_or_create(
                tenant=tenant,
                defaults={
                    "rate_limit_messages": UNLIMITED,
                    "user_daily_message_limit": UNLIMITED,
                    "user_daily_conversation_limit": UNLIMITED,
                },
            )
        for name, value in credentials.items():
            print(f"{prefix}_{name}={value}")


def fingerprint(slug: str) -> None:
    tenant = Tenant.objects.get(slug=slug)
    print(f"tenants.tenant {_hash(list(Tenant.objects.filter(pk=tenant.pk).values()))}")
    for model in sorted(apps.get_models(), key=lambda model: model._meta.label):
        if "tenant" not in {field.name for field in model._meta.get_fields()}:
            continue
        rows = list(model.objects.filter(tenant=tenant).order_by("pk").values())
        print(f"{model._meta.label_lower} {len(rows)} {_hash(rows)}")


def _hash(rows: list[dict]) -> str:
    return hashlib.sha256(json.dumps(rows, default=str, sort_keys=True).encode()).hexdigest()


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("create", "fingerprint"):
        sys.exit(__doc__)
    {"create": create, "fingerprint": fingerprint}[sys.argv[1]](sys.argv[2])
