"""Responses API answers kept for organisations that opted in: continued with ``previous_response_id``,
read and deleted under ``/v1/responses/{id}``.

Keeping a conversation is keeping its content, so it is the organisation's choice, made by its admins
(``sovstack gateway stored-responses ORG --enable --retention-days 30``, ``PUT
/api/v1/gateway/organisations/{id}/responses`` or the console's Limits page) and off by default. When on,
an answer is kept unless its request says ``"store": false``; when off, nothing is kept and
``previous_response_id`` is refused (400).

- Scope: a kept response is its person's, in the organisation it was made for. Any key of that person
  bound to that organisation may continue, read or delete it; anyone else (another member, another
  organisation, the same person calling for another organisation) gets a 404 that does not say whether
  it exists.
- Classification: a response keeps the classification it was routed under, and a continuation is
  routed at least that strictly, whatever its key or header asks, so sensitive content is never carried
  to a deployment that only lower data may use by continuing it under a weaker key.
- Context: each kept response holds the whole input it was answered from (the earlier turns' input and
  output items, then its own input), so it does not depend on the earlier ones still being kept:
  deleting or expiring one leaves the responses that continued it, and their copy of it, intact.
- Retention: a response expires ``retention_days`` after it was made and is never served after that;
  expired rows are deleted as new ones are written, a shorter retention applies at once to those already
  kept, and turning the setting off deletes every response the organisation kept.
- At rest the items and the Response object are encrypted (Fernet, with a key of their own derived from
  the deployment secret); whose it is, the model, the classification, the usage and the times stay
  readable, to scope and expire rows without opening them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from cryptography.fernet import InvalidToken
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from sovstack.core import audit, identity
from sovstack.core.base import utcnow
from sovstack.core.context import Principal
from sovstack.core.db import Database
from sovstack.core.errors import BadInput, NotFound, Unavailable
from sovstack.core.sealing import fernet
from sovstack.core.settings import Settings
from sovstack.gateway import responses
from sovstack.gateway.facts import bump
from sovstack.gateway.metering import Call
from sovstack.gateway.schemas import OrgResponsesSet
from sovstack.gateway.tables import OrgResponses, StoredResponse

PURPOSE = "sovstack-gateway-responses"
FIELD = "previous_response_id"


class Sealer:
    """Seals kept content with the key of kept responses (one per app: deriving it reads the secret)."""

    def __init__(self, settings: Settings) -> None:
        self._fernet = fernet(settings, PURPOSE)

    def seal(self, value: Any) -> str:
        return self._fernet.encrypt(orjson.dumps(value)).decode()

    def open(self, token: str) -> Any:
        try:
            return orjson.loads(self._fernet.decrypt(token.encode()))
        except InvalidToken as exc:
            raise Unavailable("a kept response cannot be decrypted: the deployment secret changed") from exc


@dataclass(frozen=True)
class Earlier:
    """The kept response a request continues: its items, in order, and the classification it was routed under."""

    id: str
    classification: str
    items: list[dict[str, Any]]


@dataclass(frozen=True)
class Kept:
    """What is kept with an answer besides the Response object itself."""

    organisation_id: int
    user_id: int
    key_prefix: str
    model: str
    classification: str
    previous_response_id: str | None
    input_items: list[dict[str, Any]]
    days: int


def _found(session: Session, who: Principal, organisation_id: int | None, response_id: str,
           field: str | None = None) -> StoredResponse:
    """The live response of ``who`` in ``organisation_id``; the same 404 whether it is someone else's,
    expired, deleted or never was."""
    row = session.get(StoredResponse, response_id)
    if (row is None or row.organisation_id != organisation_id or row.user_id != who.user_id
            or row.expires_at <= utcnow()):
        raise NotFound(f"no response {response_id!r}", field=field)
    return row


def earlier(session: Session, sealer: Sealer, who: Principal, organisation_id: int | None,
            response_id: Any) -> Earlier:
    """The response a request continues with ``previous_response_id``: 400 when its organisation keeps none,
    404 when it is not the caller's to continue."""
    if not isinstance(response_id, str) or not response_id:
        raise BadInput("previous_response_id must be a response id (resp_…)", field=FIELD)
    if organisation_id is None:
        raise BadInput("responses are kept only for organisations that chose to keep them, and this call is made "
                       "for none: send the earlier turns in input instead of previous_response_id", field=FIELD)
    if session.get(OrgResponses, organisation_id) is None:
        raise BadInput(f"organisation {organisation_id} does not keep responses, so there is none to continue: "
                       "send the earlier turns in input instead of previous_response_id, or ask its admins to "
                       "turn stored responses on", field=FIELD)
    row = _found(session, who, organisation_id, response_id, FIELD)
    output = sealer.open(row.response)["output"]
    return Earlier(row.id, row.classification, [*sealer.open(row.input_items), *output])


def keeper(db: Database, sealer: Sealer, call: Call, days: int, body: dict[str, Any],
           continued: Earlier | None) -> responses.Keep | None:
    """How the answer to ``body`` is kept, or None when it is not: its organisation keeps no responses (``days``
    is 0) or the request says ``"store": false``."""
    if not days or body.get("store") is False or call.organisation_id is None or call.person_id is None:
        return None
    kept = Kept(organisation_id=call.organisation_id, user_id=call.person_id, key_prefix=call.key_prefix,
                model=call.model, classification=call.classification,
                previous_response_id=continued.id if continued else None,
                input_items=[*(continued.items if continued else ()), *responses.input_items(body)], days=days)

    async def keep(response: dict[str, Any]) -> bool:
        return await run_in_threadpool(_keep, db, sealer, kept, response)

    return keep


def _keep(db: Database, sealer: Sealer, kept: Kept, response: dict[str, Any]) -> bool:
    """Keep the answer, unless its organisation stopped keeping responses while it was being made."""
    def work() -> bool:
        now = utcnow()
        with db.session() as session:
            setting = session.get(OrgResponses, kept.organisation_id)
            if setting is None:
                return False
            forget_expired(session, now)
            session.add(StoredResponse(
                id=response["id"], organisation_id=kept.organisation_id, user_id=kept.user_id,
                key_prefix=kept.key_prefix, model=kept.model, classification=kept.classification,
                status=response["status"], previous_response_id=kept.previous_response_id,
                usage=response.get("usage"), created_at=now,
                expires_at=now + timedelta(days=min(kept.days, setting.retention_days)),
                input_items=sealer.seal(kept.input_items), response=sealer.seal(response)))
            session.commit()
            return True

    return db.reconnecting(work)  # a pooled connection the server dropped fails before anything is written


def forget_expired(session: Session, now: datetime) -> None:
    """Delete every expired response (retention is enforced as responses are written, as for transcripts)."""
    session.execute(delete(StoredResponse).where(StoredResponse.expires_at <= now))


def response_object(session: Session, sealer: Sealer, who: Principal, organisation_id: int | None,
                    response_id: str) -> dict[str, Any]:
    """The kept Response object, as its answer gave it."""
    found: dict[str, Any] = sealer.open(_found(session, who, organisation_id, response_id).response)
    return found


def input_items(session: Session, sealer: Sealer, who: Principal, organisation_id: int | None, response_id: str,
                *, limit: int, order: str, after: str | None) -> dict[str, Any]:
    """One page of the items a kept response was answered from, as OpenAI lists them (``desc``: newest first)."""
    items: list[dict[str, Any]] = sealer.open(_found(session, who, organisation_id, response_id).input_items)
    ordered = items if order == "asc" else items[::-1]
    start = 0
    if after is not None:
        at = next((i for i, item in enumerate(ordered) if item.get("id") == after), None)
        if at is None:
            raise NotFound(f"response {response_id!r} has no input item {after!r}", field="after")
        start = at + 1
    data = ordered[start:start + limit]
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": start + limit < len(ordered)}


def remove(session: Session, who: Principal, organisation_id: int | None, response_id: str) -> None:
    """Delete a kept response now, audited (in the caller's transaction); the responses that continued it keep
    their own copy of its items until they go too."""
    row = _found(session, who, organisation_id, response_id)
    session.delete(row)
    audit.record(session, actor=who.actor, action="gateway.responses.delete", target=f"response:{row.id}",
                 detail={"organisation_id": row.organisation_id, "model": row.model,
                         "classification": row.classification, "created_at": row.created_at.isoformat()})


def set_org_responses(session: Session, who: Principal, organisation_id: int, data: OrgResponsesSet) -> int:
    """Only the organisation's own admins (or a deployment admin) decide whether its responses are kept, and how
    long; returns how many kept responses this forgot (all of them when turned off, those older than a shorter
    retention)."""
    org = identity.get_organisation(session, organisation_id)
    who.require_role(org.id, "org_admin", action="gateway.stored_responses", target=f"organisation:{org.id}")
    row = session.get(OrgResponses, org.id)
    if data.enabled:
        row = row or OrgResponses(organisation_id=org.id)
        row.retention_days = data.retention_days
        session.add(row)
        forgotten = _shorten(session, org.id, timedelta(days=data.retention_days))
    else:
        if row is not None:
            session.delete(row)
        result = session.execute(delete(StoredResponse).where(StoredResponse.organisation_id == org.id))
        forgotten = int(result.rowcount or 0)  # type: ignore[attr-defined]
    bump(session)
    audit.record(session, actor=who.actor, action="gateway.stored_responses", target=f"organisation:{org.id}",
                 detail={**data.model_dump(), "forgotten": forgotten})
    return forgotten


def _shorten(session: Session, organisation_id: int, longest: timedelta) -> int:
    """Hold the organisation's kept responses to a retention that may have become shorter."""
    now = utcnow()
    mine = StoredResponse.organisation_id == organisation_id
    result = session.execute(delete(StoredResponse).where(mine, StoredResponse.created_at <= now - longest))
    rows = session.execute(select(StoredResponse.id, StoredResponse.created_at, StoredResponse.expires_at)
                           .where(mine)).all()
    sooner = [{"id": id_, "expires_at": created + longest} for id_, created, expires in rows
              if created + longest < expires]
    if sooner:
        session.execute(update(StoredResponse), sooner)
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
