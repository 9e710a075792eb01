"""The gateway's Messages API (``/v1/messages``): the proxy's chat answers and streams, sent back as Anthropic's.

The translation itself is in gateway/anthropic.py; this module only wraps the proxy's responses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import orjson
from starlette.responses import Response, StreamingResponse

from sovstack.gateway import anthropic


def answer_response(answered: Response, model: str) -> Response:
    """The proxy's chat answer (or an upstream's error, passed on) as a Message or an Anthropic error."""
    try:
        data = orjson.loads(answered.body)
    except orjson.JSONDecodeError:  # an upstream's 4xx need not be JSON (the proxy's own answers are)
        data = None
    if answered.status_code >= 400 or not isinstance(data, dict):
        error = data.get("error") if isinstance(data, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        body = anthropic.error_body(answered.status_code, str(message or f"HTTP {answered.status_code}"))
    else:
        body = anthropic.message_from_chat(data, model)
    headers = {k: v for k, v in answered.headers.items() if k.startswith("x-sovstack-")}
    return Response(orjson.dumps(body), status_code=answered.status_code, media_type="application/json",
                    headers=headers)


def stream_response(relayed: Response, model: str) -> StreamingResponse:
    """The proxy's relayed OpenAI events as Anthropic's event stream."""
    assert isinstance(relayed, StreamingResponse)  # proxy.stream answers with one (errors are raised)
    events = anthropic.MessageStream(model)
    source = relayed.body_iterator

    async def translated() -> AsyncIterator[bytes]:
        try:
            yield events.start()
            async for event in source:
                out = events.feed(event if isinstance(event, bytes) else str(event).encode())
                if out:
                    yield out
        finally:
            # A client that hangs up while we hold an event cancels us, not the relay: close it now, so it
            # meters the call and frees the upstream connection (not when the collector finds it).
            close = getattr(source, "aclose", None)
            if close is not None:
                with anyio.CancelScope(shield=True):
                    await close()

    relayed.body_iterator = translated()  # the same response: it cleans up a relay that never started
    return relayed
