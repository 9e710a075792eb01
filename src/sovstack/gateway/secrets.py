"""Secrets the gateway keeps encrypted at rest, each kind with its own key derived from the deployment secret.

Upstream API keys use ``seal``/``unseal``; kept responses (gateway/stored.py) a key of their own from
``fernet``, so one kind of secret never opens another.
"""

from __future__ import annotations

from sovstack.core import sealing
from sovstack.core.settings import Settings

UPSTREAM_KEYS = "sovstack-gateway-upstream-keys"  # the purpose the keys are sealed for (tables.py marks the column)


def seal(settings: Settings, plaintext: str) -> str:
    return sealing.seal(settings, UPSTREAM_KEYS, plaintext)


def unseal(settings: Settings, token: str) -> str:
    return sealing.unseal(settings, UPSTREAM_KEYS, token, what="an upstream API key")
