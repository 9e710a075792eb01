"""Google Cloud Vertex AI: a deployment's service-account key, and the access tokens its calls carry.

A ``vertex`` deployment keeps the service-account key Google issues (its JSON file) as its sealed
``api_key``. The key never leaves the gateway: google-auth signs a JWT with it and exchanges that at the
key's ``token_uri`` for an OAuth2 access token, which the calls carry (gateway/tokens.py keeps it).
google-auth is imported here only when a token is fetched, so a process that never calls a Vertex
deployment never loads it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import partial
from typing import Any

from sovstack.gateway.tokens import Token, TokenFailed, TokenRefused

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
MAX_KEY_CHARS = 10_000  # a key file with a 4096-bit RSA key is about 4 KB


def check_key(text: str) -> str:
    """The service-account key ``text`` holds, as one line of JSON; ValueError saying what is wrong with it."""
    return json.dumps(_info(text), separators=(",", ":"))


def _info(text: str) -> dict[str, Any]:
    try:
        info = json.loads(text)
    except (ValueError, RecursionError) as exc:  # nested past the json module's limit: not a key file either
        raise ValueError("not JSON: give the content of the service-account key file") from exc
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise ValueError('not a service-account key: its "type" must be "service_account"')
    for name in ("client_email", "private_key", "token_uri"):
        if not info.get(name):
            raise ValueError(f"the service-account key has no {name}")
    if not all(isinstance(value, str) for value in info.values()):
        raise ValueError("the service-account key's fields must all be strings")
    if not info["token_uri"].startswith(("https://", "http://")):
        raise ValueError("the service-account key's token_uri is not an http(s) URL")
    _check_rsa(info["private_key"])
    return info


def _check_rsa(pem: str) -> None:
    """google-auth loads any private key and fails only when it signs: make sure this one is RSA."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):  # TypeError: it is encrypted
        key = None
    if not isinstance(key, RSAPrivateKey):
        raise ValueError("the service-account key's private_key is not an unencrypted PEM RSA private key")


def fetch_token(key: str, timeout: float) -> Token:
    """An access token made with the service-account key ``key`` (blocking: run it in a worker thread).

    Google's answer to a refused key is never passed on: it is the operator's problem, said in our words.
    """
    import requests
    from google.auth import exceptions
    from google.auth.transport.requests import Request
    from google.oauth2.service_account import Credentials

    try:
        info = _info(key)
    except ValueError as exc:  # a key kept from another backend before the deployment became vertex
        raise TokenRefused("the deployment's api_key is not a service-account key") from exc
    credentials = Credentials.from_service_account_info(info, scopes=[SCOPE])  # type: ignore[no-untyped-call]
    with requests.Session() as session:
        session.trust_env = False  # like the upstream calls: no proxy or netrc taken from the environment
        try:
            credentials.refresh(partial(Request(session), timeout=timeout))
        except exceptions.TransportError as exc:
            raise TokenFailed("the token endpoint did not answer") from exc
        except exceptions.RefreshError as exc:
            if exc.retryable:  # a 5xx or 429 that google-auth already tried again
                raise TokenFailed("the token endpoint failed") from exc
            raise TokenRefused("the token endpoint refused the service-account key; check the key and that "
                               "its service account is enabled") from exc
    expiry = credentials.expiry  # naive UTC, as google-auth keeps it
    lifetime = (expiry - datetime.now(UTC).replace(tzinfo=None)).total_seconds() if expiry else 0.0
    return Token(str(credentials.token), max(0.0, lifetime))
