"""Generation and hashing of API keys and webhook secrets."""

import hashlib
import secrets

PUBLIC_KEY_PREFIX = "pk_live_"
SECRET_KEY_PREFIX = "sk_live_"
# Shown in listings so that people can tell keys apart without seeing them whole.
DISPLAY_PREFIX_LENGTH = 12
WEBHOOK_SECRET_BYTES = 32
USER_TOKEN_SECRET_BYTES = 32
CUSTOM_SECRET_MIN_LENGTH = 24


def hash_api_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def generate_api_key(prefix: str) -> str:
    return f"{prefix}{secrets.token_urlsafe(24)}"


def generate_webhook_secret() -> str:
    """Return a new signing secret: 32 random bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(WEBHOOK_SECRET_BYTES)


def generate_user_token_secret() -> str:
    """Return a new user token secret: 32 random bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(USER_TOKEN_SECRET_BYTES)
