"""One place that turns any error into the API's JSON shape, or into a console page."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy.exc import DataError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from sovstack.core.context import record_refusal
from sovstack.core.db import unavailable
from sovstack.core.errors import (
    BadInput,
    MalformedBody,
    RateLimited,
    Refused,
    SovstackError,
    Unauthenticated,
    Unavailable,
)

log = logging.getLogger("sovstack")
API_PREFIXES = ("/api/", "/v1/", "/healthz", "/readyz", "/metrics")
ANTHROPIC_PREFIX = "/v1/messages"  # the gateway's Anthropic Messages API answers in Anthropic's error shape
HTTP_TYPES = {400: "invalid_request", 401: "unauthenticated", 403: "refused", 404: "not_found",
              405: "method_not_allowed", 409: "conflict", 413: "payload_too_large", 429: "rate_limited"}


def wants_json(request: Request) -> bool:
    return request.url.path.startswith(API_PREFIXES) or "application/json" in request.headers.get("accept", "")


def render(request: Request, exc: SovstackError) -> Response:
    """The API error body, or a console page (a login redirect for a console visitor without session)."""
    retry_after = exc.retry_after if isinstance(exc, RateLimited | Unavailable) else None
    headers = {"retry-after": str(retry_after)} if retry_after else {}
    if wants_json(request):
        if isinstance(exc, Unauthenticated):
            headers["www-authenticate"] = "Bearer"
        if request.url.path.startswith("/v1/"):
            # OpenAI's and Anthropic's clients expect 400 for any invalid request, and their error shape.
            status = 400 if exc.status == 422 else exc.status
            body = exc.anthropic_body() if request.url.path.startswith(ANTHROPIC_PREFIX) else exc.openai_body()
            return JSONResponse(body, status_code=status, headers=headers)
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)
    if isinstance(exc, Unauthenticated):
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(here)}", status_code=303)
    renderer = request.app.state.console
    return HTMLResponse(renderer.error_page(request, exc), status_code=exc.status, headers=headers)


async def on_sovstack_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SovstackError)
    if isinstance(exc, Refused) and not exc.audited:
        principal = getattr(request.state, "principal", None)
        try:
            with request.app.state.db.session() as session:
                record_refusal(session, principal.actor if principal else "anonymous", exc)
        except OperationalError as db_exc:  # a refusal that cannot be audited is not answered as one
            return await on_database_down(request, db_exc)
    return render(request, exc)


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or str(loc[0] if loc else "body")


async def on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        return render(request, MalformedBody(
            "the request body is not valid JSON", field="body",
            reasons=[str(e.get("ctx", {}).get("error", "")) for e in errors if e.get("ctx")]))
    first = errors[0] if errors else {}
    field = _field(tuple(first.get("loc", ())))
    reasons = [f"{_field(tuple(e.get('loc', ())))}: {e.get('msg', 'invalid')}" for e in errors]
    message = first.get("msg", "invalid input")
    if first.get("type") == "extra_forbidden":
        message = "unknown field"
    return render(request, BadInput(f"{field}: {message}", field=field, reasons=reasons))


# FastAPI answers any failure to parse a JSON body with a bare 400 "There was an error parsing the body",
# keeping the parser's error as the cause: these causes are the sender's to fix, so say what they are.
BODY_PROBLEMS = {RecursionError: "the request body is nested too deeply to read",
                 UnicodeDecodeError: "the request body is not UTF-8 JSON"}


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    problem = BODY_PROBLEMS.get(type(exc.__cause__)) if exc.status_code == 400 else None
    if problem:
        return render(request, MalformedBody(problem, field="body"))
    err = SovstackError(str(exc.detail))
    err.status, err.type = exc.status_code, HTTP_TYPES.get(exc.status_code, "error")
    err.exit_code = 2
    return render(request, err)


async def on_database_down(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OperationalError)
    log.error("database error on %s %s: %s", request.method, request.url.path, str(exc.orig).strip()[:200])
    return render(request, unavailable(exc))


async def on_unstorable(request: Request, exc: Exception) -> Response:
    """A value the database cannot hold (an integer past its range, a NUL character in text on
    PostgreSQL): the caller's input, so 422, and the transaction was rolled back whole."""
    log.info("unstorable value on %s %s: %s", request.method, request.url.path, type(exc).__name__)
    return render(request, BadInput(
        "a value is out of range for the database: integers must be between -2^63 and 2^63-1 (ids and counts "
        "between -2^31 and 2^31-1) and text cannot contain NUL characters", field="body",
        reasons=["check the numbers and text in the path, query and body"]))


async def on_unexpected(request: Request, exc: Exception) -> Response:
    """A bug: log it with its traceback for the operator; the user sees a plain message, not the trace."""
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    err = SovstackError("internal error; the operator's log has the details")
    err.type = "internal_error"
    return render(request, err)


EXPECTED = (SovstackError, OperationalError)


async def respond_to(request: Request, exc: Exception) -> Response:
    """What the installed handlers answer for an ``EXPECTED`` error (routes served outside the router)."""
    if isinstance(exc, SovstackError):
        return await on_sovstack_error(request, exc)
    return await on_database_down(request, exc)


def install(app: FastAPI) -> None:
    app.add_exception_handler(Exception, on_unexpected)
    app.add_exception_handler(SovstackError, on_sovstack_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(OperationalError, on_database_down)
    app.add_exception_handler(DataError, on_unstorable)
    app.add_exception_handler(OverflowError, on_unstorable)
