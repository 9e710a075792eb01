"""Secrets the gateway keeps encrypted at rest, each kind with its own key derived from the deployment secret.

Upstream API keys use ``seal``/``unseal``; kept responses (gateway/stored.py) a key of their own from
``fernet``, so one kind of secret never opens another.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken

from sovstack.core.errors import Unavailable
from sovstack.core.settings import Settings

UPSTREAM_KEYS = "sovstack-gateway-upstream-keys"


def fernet(settings: Settings, purpose: str = UPSTREAM_KEYS) -> Fernet:
    """The key that seals one kind of secret (``purpose``), derived from the deployment secret."""
    digest = hashlib.sha256(purpose.encode() + b":" + settings.signing_key().encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def seal(settings: Settings, plaintext: str) -> str:
    return fernet(settings).encrypt(plaintext.encode()).decode() if plaintext else ""


def unseal(settings: Settings, token: str) -> str:
    if not token:
        return ""
    try:
        return fernet(settings).decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise Unavailable("an upstream API key cannot be decrypted: the deployment secret changed") from exc
