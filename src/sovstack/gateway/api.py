"""HTTP API of the gateway: the OpenAI-compatible /v1 and its management under /api/v1/gateway."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Query, Request, status
from fastapi.responses import Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from sovstack import __version__
from sovstack.core.api.deps import SESSION_COOKIE, PrincipalDep, SessionDep, SettingsDep, authenticate
from sovstack.core.base import utcnow
from sovstack.core.context import Principal, unit_of_work
from sovstack.core.errors import BadInput, MalformedBody, NotFound, Refused, Unauthenticated
from sovstack.gateway import anthropic, budgets, exits, limits, proxy, responses, service, stored, usage
from sovstack.gateway import messages as messages_api
from sovstack.gateway.schemas import (
    AlertPublic,
    BudgetSet,
    Catalogue,
    CutoffRequest,
    DeploymentCreate,
    DeploymentPublic,
    KeyPolicyPublic,
    KeyPolicySet,
    ModelCreate,
    ModelPublic,
    OrgCacheSet,
    OrgLoggingSet,
    OrgPolicyPublic,
    OrgPolicySet,
    OrgResponsesSet,
    SpendBudgetPublic,
    SpendBudgetSet,
    TranscriptPublic,
    UsageReport,
)
from sovstack.gateway.tables import GatewayModel

openai_router = APIRouter(prefix="/v1", tags=["openai-compatible"])
router = APIRouter(prefix="/api/v1/gateway", tags=["gateway"])
X_API_KEY = "'x-api-key: sk-…' (or 'Authorization: Bearer sk-…')"  # how Claude clients send their key


async def _body(request: Request, required: tuple[str, ...]) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedBody(f"the request body is not valid JSON: {exc}", field="body") from exc
    if not isinstance(body, dict):
        raise BadInput("the request body must be a JSON object", field="body")
    for name in required:
        if name not in body:
            raise BadInput(f"missing required field {name!r}", field=name)
    if not isinstance(body["model"], str) or not body["model"]:
        raise BadInput("model must be a non-empty string", field="model")
    return body


def _require_credentials(request: Request, how: str = "'Authorization: Bearer sk-…'") -> None:
    """Refuse anonymous calls before reading the body; credentials are checked in ``proxy.prepare``."""
    if not request.headers.get("authorization") and SESSION_COOKIE not in request.cookies:
        raise Unauthenticated(f"authentication required: send {how}")


@openai_router.post("/chat/completions")
async def chat_completions(request: Request) -> Response:
    _require_credentials(request)
    body = await _body(request, ("model", "messages"))
    if not isinstance(body["messages"], list) or not body["messages"]:
        raise BadInput("messages must be a non-empty list", field="messages")
    state = request.app.state.gateway
    prepared = await proxy.admit(request, state, "chat", body)
    try:
        if body.get("stream"):
            # The relay gives the concurrency slot back when the stream ends, however it ends.
            return await proxy.stream(request, state, prepared, body)
        return await proxy.forward(request, state, prepared, body)
    except BaseException:
        prepared.release(state)
        raise
    finally:
        if not body.get("stream"):
            prepared.release(state)


@openai_router.post("/responses")
async def create_response(request: Request) -> Response:
    """A model response (OpenAI's Responses API), translated to a chat completion for the upstream.

    Kept when the organisation keeps responses, and then continued with ``previous_response_id``.
    """
    _require_credentials(request)
    body = await _body(request, ("model", "input"))
    continued = None
    if body.get("previous_response_id") is not None:
        continued = await run_in_threadpool(_continued, request, body["previous_response_id"])
    chat = responses.chat_body(body, continued.items if continued else ())
    state = request.app.state.gateway
    # A continuation is routed at least as strictly as the conversation it continues.
    prepared = await proxy.admit(request, state, "responses", chat,
                                 floor=continued.classification if continued else "open")
    try:
        reply = responses.Reply(keep=stored.keeper(request.app.state.db, state.sealer, prepared.call,
                                                   prepared.response_days, body, continued))
        prepared.call.response_id = reply.id
        if chat.get("stream"):
            return responses.stream(await proxy.stream(request, state, prepared, chat), body, reply)
        return await responses.answer(await proxy.forward(request, state, prepared, chat), body, reply)
    except BaseException:
        prepared.release(state)  # once the call is metered it is released already; releasing twice is a no-op
        raise


def _continued(request: Request, response_id: Any) -> stored.Earlier:
    with request.app.state.db.session() as session:
        who, organisation_id = _caller(request, session)
        return stored.earlier(session, request.app.state.gateway.sealer, who, organisation_id, response_id)


def _caller(request: Request, session: Session) -> tuple[Principal, int | None]:
    """Who calls with a gateway key (or console session), and the organisation the call is made for."""
    who = authenticate(request, session)
    request.state.principal = who
    _require_gateway_scope(who)
    return who, limits.organisation_of(who, request.headers.get(limits.ORGANISATION_HEADER, ""))


@openai_router.get("/responses/{response_id}")
def get_response(response_id: str, request: Request, session: SessionDep) -> dict[str, Any]:
    """A kept response, to the person who made it, for the organisation it was made for (404 to anyone else)."""
    who, organisation_id = _caller(request, session)
    return stored.response_object(session, request.app.state.gateway.sealer, who, organisation_id, response_id)


@openai_router.get("/responses/{response_id}/input_items")
def response_input_items(response_id: str, request: Request, session: SessionDep,
                         limit: int = Query(20, ge=1, le=100), order: Literal["asc", "desc"] = "desc",
                         after: str | None = None) -> dict[str, Any]:
    """The items a kept response was answered from (the earlier turns' too), a page at a time."""
    who, organisation_id = _caller(request, session)
    return stored.input_items(session, request.app.state.gateway.sealer, who, organisation_id, response_id,
                              limit=limit, order=order, after=after)


@openai_router.delete("/responses/{response_id}")
def delete_response(response_id: str, request: Request, session: SessionDep) -> dict[str, Any]:
    """Delete a kept response now (audited); it can no longer be read or continued."""
    who, organisation_id = _caller(request, session)
    with unit_of_work(session, who):
        stored.remove(session, who, organisation_id, response_id)
    return {"id": response_id, "object": "response", "deleted": True}


@openai_router.post("/embeddings")
async def embeddings(request: Request) -> Response:
    _require_credentials(request)
    body = await _body(request, ("model", "input"))
    state = request.app.state.gateway
    prepared = await proxy.admit(request, state, "embeddings", body)
    try:
        return await proxy.forward(request, state, prepared, body)
    finally:
        prepared.release(state)


@openai_router.post("/moderations")
async def moderations(request: Request) -> Response:
    """Passed to a deployment of ``model`` that offers moderation (OpenAI's shape), with the same policy and
    metering as any call; an upstream without it fails over and ends in 502."""
    _require_credentials(request)
    body = await _body(request, ("model", "input"))
    state = request.app.state.gateway
    prepared = await proxy.admit(request, state, "moderations", body)
    return await proxy.forward(request, state, prepared, body)


@openai_router.post("/rerank")
async def rerank(request: Request) -> Response:
    """Passed to a deployment of ``model`` that reranks (the ``/rerank`` shape of vLLM, Infinity, Jina and
    Cohere's v2: ``query``, ``documents``, ``top_n``)."""
    _require_credentials(request)
    body = await _body(request, ("model", "query", "documents"))
    if not isinstance(body["documents"], list) or not body["documents"]:
        raise BadInput("documents must be a non-empty list", field="documents")
    state = request.app.state.gateway
    prepared = await proxy.admit(request, state, "rerank", body)
    return await proxy.forward(request, state, prepared, body)


@openai_router.post("/completions")
async def completions(request: Request) -> Response:
    """Legacy text completions, passed through to the deployments like chat."""
    _require_credentials(request)
    body = await _body(request, ("model", "prompt"))
    state = request.app.state.gateway
    prepared = await proxy.admit(request, state, "completions", body)
    if body.get("stream"):
        return await proxy.stream(request, state, prepared, body)
    return await proxy.forward(request, state, prepared, body)


@openai_router.post("/messages")
async def messages(request: Request) -> Response:
    """Anthropic's Messages API in front of the same catalogue (translated to chat and back)."""
    _accept_api_key(request)
    _require_credentials(request, X_API_KEY)
    body = await _body(request, ("model", "messages", "max_tokens"))
    chat = anthropic.chat_request(body)
    state = request.app.state.gateway
    prepared = await proxy.admit(request, state, "messages", chat)
    if chat.get("stream"):
        relayed = await proxy.stream(request, state, prepared, chat)
        return messages_api.stream_response(relayed, prepared.call.model)
    answered = await proxy.forward(request, state, prepared, chat)
    return messages_api.answer_response(answered, prepared.call.model)


@openai_router.post("/messages/count_tokens")
async def count_tokens(request: Request) -> dict[str, int]:
    """An estimate of a Messages request's input tokens (about four bytes a token; no upstream is asked)."""
    _accept_api_key(request)
    _require_credentials(request, X_API_KEY)
    body = await _body(request, ("model", "messages"))
    chat = anthropic.chat_request({**body, "max_tokens": 1, "stream": False})
    await run_in_threadpool(_check_caller, request, body["model"])
    return {"input_tokens": anthropic.estimate_tokens(chat)}


def _check_caller(request: Request, model: str) -> None:
    """The caller's key has the gateway scope and the model is offered (as a real call would check)."""
    with request.app.state.db.session() as session:
        who = authenticate(request, session)
        request.state.principal = who
        _require_gateway_scope(who)
        if not _offered(service.get_model(session, model)):
            raise NotFound(f"the model {model!r} has no deployment in service", field="model")


def _accept_api_key(request: Request) -> None:
    """Claude clients send the key as ``x-api-key``: read it as the bearer token it is.

    Done on the ASGI scope before anything reads the request's headers (Starlette caches them).
    """
    headers = request.scope["headers"]
    if any(name == b"authorization" for name, _ in headers):
        return
    key = next((value for name, value in headers if name == b"x-api-key"), None)
    if key:
        request.scope["headers"] = [*headers, (b"authorization", b"Bearer " + key)]


@openai_router.get("/models")
def models(session: SessionDep, who: PrincipalDep) -> dict[str, Any]:
    _require_gateway_scope(who)
    return {"object": "list", "data": [_model_object(m) for m in service.list_models(session) if _offered(m)]}


@openai_router.get("/models/{model_id:path}")
def model(model_id: str, session: SessionDep, who: PrincipalDep) -> dict[str, Any]:
    """One model, as /v1/models lists it; 404 when unknown or when every deployment is withdrawn."""
    _require_gateway_scope(who)
    found = service.get_model(session, model_id)  # NotFound in OpenAI's shape: code model_not_found
    if not _offered(found):
        raise NotFound(f"the model {model_id!r} has no deployment in service", field="model")
    return _model_object(found)


def _require_gateway_scope(who: Principal) -> None:
    if not who.has_scope("gateway"):
        raise Refused("this API key lacks the gateway scope", action="gateway.auth")


def _offered(model: GatewayModel) -> bool:
    return service.servable(model)


def _model_object(model: GatewayModel) -> dict[str, Any]:
    return {"id": model.name, "object": "model", "created": int(model.created_at.timestamp()), "owned_by": "sovstack"}


# Management -------------------------------------------------------------------------------------

@router.get("/models")
def list_models(session: SessionDep, who: PrincipalDep) -> list[ModelPublic]:
    return [service.model_public(m) for m in service.list_models(session)]


@router.post("/models", status_code=status.HTTP_201_CREATED)
def create_model(body: ModelCreate, session: SessionDep, who: PrincipalDep) -> ModelPublic:
    with unit_of_work(session, who):
        model = service.create_model(session, who, body)
    return service.model_public(service.get_model(session, model.name))


@router.post("/models/{name:path}/disable")
def disable_model(name: str, session: SessionDep, who: PrincipalDep) -> ModelPublic:
    """Hide the model from /v1/models and refuse calls to it (404); its deployments are kept."""
    with unit_of_work(session, who):
        service.set_model_enabled(session, who, name, False)
    return service.model_public(service.get_model(session, name))


@router.post("/models/{name:path}/enable")
def enable_model(name: str, session: SessionDep, who: PrincipalDep) -> ModelPublic:
    """Serve a disabled model again."""
    with unit_of_work(session, who):
        service.set_model_enabled(session, who, name, True)
    return service.model_public(service.get_model(session, name))


@router.delete("/models/{name:path}")
def delete_model(name: str, session: SessionDep, who: PrincipalDep,
                 force: bool = Query(False, description="Delete its deployments with it.")) -> dict[str, Any]:
    """Delete a model; one with deployments only with ``?force=true`` (409 otherwise). Usage is kept."""
    with unit_of_work(session, who):
        deployments = service.delete_model(session, who, name, force=force)
    return {"deleted": name, "deployments_deleted": deployments}


@router.get("/deployments")
def list_deployments(request: Request, session: SessionDep, who: PrincipalDep,
                     model: str | None = None) -> list[DeploymentPublic]:
    """Deployments, with each circuit as the server processes report it (which process, and when)."""
    local = (request.app.state.circuits.process, request.app.state.gateway.breakers)
    return service.deployments_public(session, model, local)


@router.post("/deployments/{name:path}/disable")
def disable_deployment(request: Request, name: str, session: SessionDep, who: PrincipalDep) -> DeploymentPublic:
    """Take the deployment out of routing (calls go to the others); it is kept, and can be enabled again."""
    with unit_of_work(session, who):
        service.set_deployment_enabled(session, who, name, False)
    return _one(request, session, name)


@router.post("/deployments/{name:path}/enable")
def enable_deployment(request: Request, name: str, session: SessionDep, who: PrincipalDep) -> DeploymentPublic:
    """Put a disabled deployment back into routing."""
    with unit_of_work(session, who):
        service.set_deployment_enabled(session, who, name, True)
    return _one(request, session, name)


@router.delete("/deployments/{name:path}")
def delete_deployment(name: str, session: SessionDep, who: PrincipalDep) -> dict[str, str]:
    """Delete the deployment; its usage history is kept (it names the deployment as text)."""
    with unit_of_work(session, who):
        service.delete_deployment(session, who, name)
    return {"deleted": name}


def _one(request: Request, session: SessionDep, name: str) -> DeploymentPublic:
    local = (request.app.state.circuits.process, request.app.state.gateway.breakers)
    return next(d for d in service.deployments_public(session, None, local) if d.name == name)


@router.post("/deployments", status_code=status.HTTP_201_CREATED)
def create_deployment(body: DeploymentCreate, session: SessionDep, who: PrincipalDep,
                      settings: SettingsDep) -> DeploymentPublic:
    with unit_of_work(session, who):
        dep = service.create_deployment(session, who, settings, body)
    return service.public(service.get_deployment(session, dep.name))


@router.post("/apply")
def apply(body: Catalogue, session: SessionDep, who: PrincipalDep, settings: SettingsDep) -> dict[str, list[str]]:
    """Make the catalogue match this document (the same shape as a models.yaml); idempotent."""
    with unit_of_work(session, who):
        return service.apply_catalogue(session, who, settings, body)


@router.get("/export/litellm", response_class=Response,
            responses={200: {"content": {"application/yaml": {"schema": {
                "type": "object", "required": ["model_list", "router_settings"],
                "properties": {"model_list": {"type": "array", "items": {"type": "object"}},
                               "router_settings": {"type": "object"}}}}}}})
def export_litellm(session: SessionDep, who: PrincipalDep) -> Response:
    """The catalogue as a LiteLLM proxy config.yaml (keys read from environment variables it names)."""
    text = exits.litellm_yaml(exits.litellm_config(session, who), __version__, utcnow().date().isoformat())
    return Response(text, media_type="application/yaml",
                    headers={"content-disposition": 'attachment; filename="litellm-config.yaml"'})


@router.post("/cutoff")
def cutoff(body: CutoffRequest, session: SessionDep, who: PrincipalDep) -> list[str]:
    with unit_of_work(session, who):
        return [d.name for d in service.cutoff(session, who, body)]


@router.post("/restore")
def restore(body: CutoffRequest, session: SessionDep, who: PrincipalDep) -> list[str]:
    with unit_of_work(session, who):
        return [d.name for d in service.restore(session, who, body)]


@router.get("/keys/{prefix}/policy")
def get_key_policy(prefix: str, session: SessionDep, who: PrincipalDep) -> KeyPolicyPublic:
    """The key's own policy — classification, rate limits, model allowlist, tokens per minute, concurrency (its
    owner or an admin); its organisation's policy may bind harder."""
    return service.key_policy(session, who, prefix)


@router.put("/keys/{prefix}/policy")
def key_policy(prefix: str, body: KeyPolicySet, session: SessionDep, who: PrincipalDep) -> KeyPolicyPublic:
    """Change only the fields sent; ``"requests_per_minute": null`` removes the key's limit."""
    with unit_of_work(session, who):
        service.set_key_policy(session, who, prefix, body)
    return service.key_policy(session, who, prefix)


@router.get("/spend-budgets")
def spend_budgets(request: Request, session: SessionDep, who: PrincipalDep) -> list[SpendBudgetPublic]:
    """The budgets you may read (your keys', your own, your organisations' as their admin) and their spend."""
    return budgets.status(session, who, request.app.state.gateway.counters)


@router.put("/spend-budgets")
def set_spend_budget(body: SpendBudgetSet, request: Request, session: SessionDep,
                     who: PrincipalDep) -> SpendBudgetPublic:
    """Create or replace the budget of a key, person or organisation in one unit (tokens or a currency)."""
    with unit_of_work(session, who):
        row = budgets.set_budget(session, who, body)
    return next(b for b in budgets.status(session, who, request.app.state.gateway.counters) if b.id == row.id)


@router.delete("/spend-budgets/{budget_id}", status_code=status.HTTP_204_NO_CONTENT)
def remove_spend_budget(budget_id: int, session: SessionDep, who: PrincipalDep) -> None:
    with unit_of_work(session, who):
        budgets.remove_budget(session, who, budget_id)


@router.get("/alerts")
def spend_alerts(session: SessionDep, who: PrincipalDep, limit: int = Query(100, ge=1, le=1000)) -> list[AlertPublic]:
    """Budget thresholds reached, newest first (each recorded once per threshold per period)."""
    return [AlertPublic.model_validate(a) for a in budgets.alerts(session, who, limit)]


@router.get("/organisations/{organisation_id}/policy")
def get_org_policy(organisation_id: int, session: SessionDep, who: PrincipalDep) -> OrgPolicyPublic:
    """What binds every gateway call made for the organisation, whichever key makes it (its members may read)."""
    return service.org_policy(session, who, organisation_id)


@router.put("/organisations/{organisation_id}/policy")
def set_org_policy(organisation_id: int, body: OrgPolicySet, session: SessionDep,
                   who: PrincipalDep) -> OrgPolicyPublic:
    """Set the organisation's floor, per-person rate limit and per-person tokens (its admins only)."""
    with unit_of_work(session, who):
        service.set_org_policy(session, who, organisation_id, body)
    return service.org_policy(session, who, organisation_id)


@router.put("/budgets")
def budget(body: BudgetSet, session: SessionDep, who: PrincipalDep) -> BudgetSet:
    with unit_of_work(session, who):
        service.set_budget(session, who, body)
    return body


@router.put("/organisations/{organisation_id}/logging")
def org_logging(organisation_id: int, body: OrgLoggingSet, session: SessionDep, who: PrincipalDep) -> OrgLoggingSet:
    """Opt in (or out) of keeping prompts and completions, with a retention period."""
    with unit_of_work(session, who):
        service.set_org_logging(session, who, organisation_id, body)
    return body


@router.put("/organisations/{organisation_id}/responses")
def org_responses(organisation_id: int, body: OrgResponsesSet, session: SessionDep,
                  who: PrincipalDep) -> dict[str, Any]:
    """Keep the organisation's Responses API answers (for previous_response_id) for a while, or not.

    Off forgets every kept one; a shorter retention forgets those older than it.
    """
    with unit_of_work(session, who):
        forgotten = stored.set_org_responses(session, who, organisation_id, body)
    return {**body.model_dump(), "forgotten": forgotten}


@router.put("/organisations/{organisation_id}/cache")
def org_cache(organisation_id: int, body: OrgCacheSet, request: Request, session: SessionDep,
              who: PrincipalDep) -> OrgCacheSet:
    """Turn the organisation's exact-match answer cache on (with how long answers are kept) or off; off also
    forgets every kept answer."""
    with unit_of_work(session, who):
        service.set_org_cache(session, who, organisation_id, body)
        if not body.enabled:
            service.purge_cache(session, who, organisation_id, request.app.state.gateway.answers)
    return body


@router.delete("/organisations/{organisation_id}/cache")
def purge_org_cache(organisation_id: int, request: Request, session: SessionDep, who: PrincipalDep) -> dict[str, int]:
    """Forget every answer kept for the organisation now (the cache stays on)."""
    with unit_of_work(session, who):
        return {"deleted": service.purge_cache(session, who, organisation_id, request.app.state.gateway.answers)}


@router.get("/organisations/{organisation_id}/transcripts")
def transcripts(organisation_id: int, session: SessionDep, who: PrincipalDep,
                limit: int = Query(50, ge=1, le=1000), model: str | None = None) -> list[TranscriptPublic]:
    """The organisation's kept prompts and completions, newest first (its admins only; audited)."""
    with unit_of_work(session, who):
        rows = service.list_transcripts(session, who, organisation_id, limit=limit, model=model)
        return [TranscriptPublic.model_validate(t) for t in rows]


@router.delete("/organisations/{organisation_id}/transcripts")
def purge_transcripts(organisation_id: int, session: SessionDep, who: PrincipalDep) -> dict[str, int]:
    """Delete the organisation's kept transcripts now."""
    with unit_of_work(session, who):
        deleted = service.purge_transcripts(session, who, organisation_id)
    return {"deleted": deleted}


@router.get("/usage")
def usage_report(session: SessionDep, who: PrincipalDep,
                 by: Literal["organisation", "model", "deployment", "key"] = "model",
                 days: int = Query(30, ge=1, le=366), organisation_id: int | None = None) -> UsageReport:
    since: datetime = utcnow() - timedelta(days=days)
    return usage.report(session, who, by=by, since=since, organisation_id=organisation_id)
