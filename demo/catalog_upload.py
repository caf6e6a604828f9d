"""The demo's catalog API step: upload one product and follow its job until the worker ends it."""

import json
import time
import urllib.request
from typing import Any

# A product the reference merchant does not stock, so the shopper never sees it.
DEMO_PRODUCT = {
    "sku": "demo-api-sponge",
    "name": "Губки кухонні Demo 5 шт",
    "brand": "Demo",
    "category_path": "Побутові товари > Губки",
    "unit": "pcs",
}
JOB_TIMEOUT_SECONDS = 120


def _request(method: str, url: str, secret_key: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {secret_key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def upload_demo_product(*, app_url: str, secret_key: str) -> None:
    """PUT one product, then poll its job until it is complete or failed, printing both."""
    accepted = _request(
        "PUT", f"{app_url}/api/v1/catalog/products", secret_key, {"products": [DEMO_PRODUCT]}
    )
    print(f"  PUT /api/v1/catalog/products -> 202 {json.dumps(accepted)}")
    job_url = f"{app_url}/api/v1/catalog/jobs/{accepted['job_id']}"
    deadline = time.monotonic() + JOB_TIMEOUT_SECONDS
    job = _request("GET", job_url, secret_key)
    while job["status"] in ("pending", "embedding"):
        if time.monotonic() > deadline:
            raise SystemExit(
                f"The catalog job is still {job['status']} after {JOB_TIMEOUT_SECONDS} s; "
                "see .demo/worker.log"
            )
        time.sleep(0.5)
        job = _request("GET", job_url, secret_key)
    print(f"  GET /api/v1/catalog/jobs/{job['job_id']} -> {json.dumps(job, ensure_ascii=False)}")
    if job["status"] != "complete":
        raise SystemExit("The catalog job failed; see .demo/worker.log")
