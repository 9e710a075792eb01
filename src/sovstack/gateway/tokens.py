"""Short-lived access tokens that some upstreams want instead of the deployment's key (Vertex AI's).

A token is made from the deployment's key by a library that blocks on the network, so it is fetched in a
worker thread, never on the event loop. Each process keeps one per deployment until shortly before it
expires; while one is being fetched, the deployment's other calls wait for it rather than fetch their own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
import anyio.to_thread

from sovstack.gateway.routing import Candidate

REFRESH_BEFORE_SECONDS = 300.0  # a token this close to its expiry is replaced: a call may take minutes


class TokenFailed(Exception):
    """No token: the token endpoint could not be reached or failed; another try may work."""


class TokenRefused(TokenFailed):
    """The token endpoint refused the deployment's key: the deployment's configuration is wrong."""


@dataclass(frozen=True)
class Token:
    value: str
    lifetime: float  # seconds it is valid for from when it was issued; 0: use it once


# The deployment's key and the seconds to wait for the token endpoint → a token. Blocking.
Fetch = Callable[[str, float], Token]


@dataclass(frozen=True)
class _Kept:
    key: str  # the key it was made from: a changed key makes the token stale at once
    value: str
    until: float  # time.monotonic() after which it is fetched again


@dataclass
class _Fetching:
    done: anyio.Event = field(default_factory=anyio.Event)
    kept: _Kept | None = None
    error: TokenFailed | None = None


class AccessTokens:
    """This process's tokens, per deployment id."""

    def __init__(self) -> None:
        self._kept: dict[int, _Kept] = {}
        self._fetching: dict[int, _Fetching] = {}

    async def get(self, cand: Candidate, fetch: Fetch) -> str:
        """A token for ``cand``: the kept one while it is fresh, else one fetched (once, however many wait)."""
        kept = self._kept.get(cand.id)
        if kept is not None and kept.key == cand.api_key and time.monotonic() < kept.until:
            return kept.value
        pending = self._fetching.get(cand.id)
        if pending is not None:
            await pending.done.wait()
        else:
            pending = self._fetching[cand.id] = _Fetching()
            try:
                # Not abandoned when the caller is cancelled: the token still serves the calls waiting for it.
                token = await anyio.to_thread.run_sync(fetch, cand.api_key, cand.timeout)
                margin = min(REFRESH_BEFORE_SECONDS, token.lifetime / 2)
                pending.kept = self._kept[cand.id] = _Kept(cand.api_key, token.value,
                                                          time.monotonic() + token.lifetime - margin)
            except TokenFailed as exc:
                pending.error = exc
                raise
            finally:
                del self._fetching[cand.id]
                pending.done.set()
        if pending.kept is None:
            error = pending.error or TokenFailed("the token fetch failed")
            raise type(error)(str(error))  # each waiter raises its own: one instance in many tasks tangles tracebacks
        return pending.kept.value

    def drop(self, deployment_id: int, value: str) -> None:
        """The upstream refused ``value`` (expired early, revoked): the next call fetches another."""
        kept = self._kept.get(deployment_id)
        if kept is not None and kept.value == value:
            del self._kept[deployment_id]
