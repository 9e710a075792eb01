"""Google Cloud Vertex AI: a deployment's service-account key, and the access tokens its calls carry.

A ``vertex`` deployment keeps the service-account key Google issues (its JSON file) as its sealed
``api_key``. The key never leaves the gateway: google-auth signs a JWT with it and exchanges that at the
key's ``token_uri`` for an OAuth2 access token, which the calls carry (gateway/tokens.py keeps it).
google-auth is imported here only when a key is checked or a token fetched, so a gateway without
Vertex deployments never loads it.
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
    info = _info(text)
    _credentials(info)
    return json.dumps(info, separators=(",", ":"))


def _info(text: str) -> dict[str, Any]:
    try:
        info = json.loads(text)
    except ValueError as exc:
        raise ValueError("not JSON: give the content of the service-account key file") from exc
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise ValueError('not a service-account key: its "type" must be "service_account"')
    for name in ("client_email", "private_key", "token_uri"):
        if not isinstance(info.get(name), str) or not info[name]:
            raise ValueError(f"the service-account key has no {name}")
    if not info["token_uri"].startswith(("https://", "http://")):
        raise ValueError("the service-account key's token_uri is not an http(s) URL")
    return info


def _credentials(info: dict[str, Any]) -> Any:  # google-auth's Credentials, untyped
    from google.oauth2 import service_account

    try:
        return service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
            info, scopes=[SCOPE])
    except ValueError as exc:  # in our words: the library's might quote the key
        raise ValueError("the service-account key's private_key is not a PEM RSA private key") from exc


def fetch_token(key: str, timeout: float) -> Token:
    """An access token made with the service-account key ``key`` (blocking: run it in a worker thread).

    Google's answer to a refused key is never passed on: it is the operator's problem, said in our words.
    """
    import requests
    from google.auth import exceptions
    from google.auth.transport.requests import Request

    try:
        credentials = _credentials(_info(key))
    except ValueError as exc:
        raise TokenRefused("the deployment's api_key is not a service-account key") from exc
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
