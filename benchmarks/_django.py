"""Start Django for a benchmark script run as ``python benchmarks/NAME.py`` from the repo root."""

import os
import sys
from pathlib import Path

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent


def setup_django() -> None:
    """Put the repository on ``sys.path`` and configure Django with the project settings."""
    if str(REPOSITORY_ROOT) not in sys.path:
        sys.path.insert(0, str(REPOSITORY_ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vizochok.settings")
    import django

    django.setup()
