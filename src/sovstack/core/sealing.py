"""Values encrypted at rest with a key derived from the deployment secret, one key per purpose.

A sealed value can only be read by the deployment that sealed it (or one given the same secret);
columns holding one say so with ``info=sealed(purpose)`` (core/base.py), so a whole-deployment
export can unseal them and the import seal them again under the target's own secret.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken

from sovstack.core.errors import Unavailable
from sovstack.core.settings import Settings


def fernet(settings: Settings, purpose: str) -> Fernet:
    """The key that seals one kind of value (``purpose``), derived from the deployment secret."""
    digest = hashlib.sha256(f"{purpose}:".encode() + settings.signing_key().encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def seal(settings: Settings, purpose: str, plaintext: str) -> str:
    """``plaintext`` encrypted for ``purpose``; the empty string stays empty (nothing to hide)."""
    return fernet(settings, purpose).encrypt(plaintext.encode()).decode() if plaintext else ""


def unseal(settings: Settings, purpose: str, token: str, *, what: str = "a sealed value") -> str:
    """The plaintext of ``token``; Unavailable when the deployment secret is not the one that sealed it."""
    if not token:
        return ""
    try:
        return fernet(settings, purpose).decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise Unavailable(f"{what} cannot be decrypted: the deployment secret changed") from exc
