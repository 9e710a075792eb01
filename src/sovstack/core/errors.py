"""The errors sovstack raises on purpose, and how each reaches a user.

    SovstackError                 base; never raised itself
    ├── BadInput                  422      CLI 2   a value is wrong (names the field)
    │   ├── MalformedBody         400      CLI 2   the body is not the JSON it must be
    │   ├── NotFound              404      CLI 2   the thing named does not exist
    │   ├── Conflict              409      CLI 2   it clashes with what exists (duplicate name)
    │   ├── BadDocument           422      CLI 2   a file or body cannot be read as YAML/JSON text (names it)
    │   └── PayloadTooLarge       413      CLI 2   the body is larger than allowed
    ├── Unauthenticated           401      CLI 1   no credentials, or wrong/expired/revoked ones
    ├── Refused                   403      CLI 1   authenticated, but policy or role says no (with reasons)
    ├── RateLimited               429      CLI 1   too many tries; says when to come back
    ├── Unavailable               503      CLI 1   a dependency (the database) is down or busy; says when to retry
    └── BadGateway                502      CLI 1   an upstream the gateway calls is misconfigured (its credentials,
                                                   URL or model name): the operator's problem, not the caller's

Third-party errors are translated once, at the boundary (``app.py`` handlers, ``cli.py``).
"""

from __future__ import annotations

from typing import Any


class SovstackError(Exception):
    status = 500
    exit_code = 1
    type = "error"

    def __init__(self, message: str, *, field: str | None = None, reasons: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.reasons = list(reasons or [])

    def body(self) -> dict[str, Any]:
        """The JSON body of the API error shape."""
        return {
            "error": {
                "type": self.type,
                "message": self.message,
                "field": self.field,
                "reasons": self.reasons,
            }
        }

    def openai_body(self) -> dict[str, Any]:
        """The same error in OpenAI's shape, for the OpenAI-compatible gateway under /v1 (DESIGN.md §4)."""
        kind = {401: "authentication_error", 403: "permission_error", 404: "invalid_request_error",
                429: "rate_limit_error"}.get(self.status, "invalid_request_error" if self.status < 500 else "api_error")
        code = "model_not_found" if isinstance(self, NotFound) and self.field == "model" else self.type
        return {"error": {"message": self.message, "type": kind, "param": self.field, "code": code,
                          "reasons": self.reasons}}

    def anthropic_body(self) -> dict[str, Any]:
        """The same error in Anthropic's shape, for the Messages API under /v1/messages."""
        kind = {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
                413: "request_too_large", 429: "rate_limit_error"}.get(
            self.status, "invalid_request_error" if self.status < 500 else "api_error")
        return {"type": "error", "error": {"type": kind, "message": self.line()}}

    def line(self) -> str:
        """One readable line for the CLI."""
        text = self.message
        if self.field and self.field not in text:
            text = f"{self.field}: {text}"
        if self.reasons:
            text += " — " + "; ".join(self.reasons)
        return text


class BadInput(SovstackError):
    status = 422
    exit_code = 2
    type = "invalid_request"


class MalformedBody(BadInput):
    status = 400


class NotFound(BadInput):
    status = 404
    type = "not_found"


class Conflict(BadInput):
    status = 409
    type = "conflict"


class BadDocument(BadInput):
    """A file or body that cannot be read as the document it should be: ``name: problem``."""

    def __init__(self, name: str, problem: str, *, field: str | None = None) -> None:
        super().__init__(f"{name}: {problem}", field=field)
        self.name = name
        self.problem = problem


class PayloadTooLarge(BadInput):
    status = 413
    type = "payload_too_large"


class Unauthenticated(SovstackError):
    status = 401
    type = "unauthenticated"


class Refused(SovstackError):
    status = 403
    type = "refused"

    def __init__(self, message: str, *, action: str = "", target: str = "", **kw: Any) -> None:
        super().__init__(message, **kw)
        self.action = action
        self.target = target
        self.audited = False


class RateLimited(SovstackError):
    status = 429
    type = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = max(1, int(retry_after))


class Unavailable(SovstackError):
    status = 503
    type = "unavailable"

    def __init__(self, message: str, *, retry_after: int | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = None if retry_after is None else max(1, int(retry_after))


class BadGateway(SovstackError):
    status = 502
    type = "bad_gateway"
