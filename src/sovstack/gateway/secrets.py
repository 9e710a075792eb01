"""Upstream API keys encrypted at rest with a key derived from the deployment secret."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken

from sovstack.core.errors import Unavailable
from sovstack.core.settings import Settings


def _fernet(settings: Settings) -> Fernet:
    digest = hashlib.sha256(b"sovstack-gateway-upstream-keys:" + settings.signing_key().encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def seal(settings: Settings, plaintext: str) -> str:
    return _fernet(settings).encrypt(plaintext.encode()).decode() if plaintext else ""


def unseal(settings: Settings, token: str) -> str:
    if not token:
        return ""
    try:
        return _fernet(settings).decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise Unavailable("an upstream API key cannot be decrypted: the deployment secret changed") from exc
