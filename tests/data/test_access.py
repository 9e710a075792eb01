"""Access by tier: open downloads, requests and decisions, grants checked at every use, sandbox-only data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from sovstack.core.base import utcnow
from sovstack.core.tables import AuditEvent
from sovstack.data.tables import AccessGrant, AccessRequest
from tests.data.conftest import Commons

PURPOSE = {"purpose": "Compare regional costs for a synthetic study", "days": 30}


def _download(commons: Commons, name: str, who: dict[str, str]) -> int:
    return commons.client.get(f"/api/v1/data/datasets/{name}/download", headers=who).status_code


def _audited(commons: Commons, action: str) -> list[str]:
    with commons.db.session() as s:
        return [e.outcome for e in s.scalars(select(AuditEvent).where(AuditEvent.action == action)
                                             .order_by(AuditEvent.seq))]


def test_open_data_downloads_for_members_and_every_download_is_audited(commons: Commons) -> None:
    commons.create("open_costs")
    assert commons.publish("open_costs").status_code == 201
    r = commons.client.get("/api/v1/data/datasets/open_costs/download", headers=commons.member)
    assert r.status_code == 200 and r.content[:4] == b"PAR1"
    assert r.headers["content-disposition"].endswith('open_costs-v1.parquet"')
    assert commons.client.get("/api/v1/data/datasets/open_costs/download").status_code == 401
    assert commons.client.post("/api/v1/data/datasets/open_costs/requests", json=PURPOSE,
                               headers=commons.member).status_code == 422  # open data needs no request
    assert _audited(commons, "data.download") == ["ok"]


def test_restricted_data_needs_a_grant_that_a_steward_gives_and_can_take_back(commons: Commons) -> None:
    commons.create("restricted_costs", classification="restricted")
    assert commons.publish("restricted_costs").status_code == 201
    client, member, steward = commons.client, commons.member, commons.steward
    assert _download(commons, "restricted_costs", member) == 403

    first = client.post("/api/v1/data/datasets/restricted_costs/requests", json=PURPOSE, headers=member).json()
    assert first["status"] == "pending"
    assert client.post("/api/v1/data/datasets/restricted_costs/requests", json=PURPOSE,
                       headers=member).status_code == 409
    inbox = client.get("/api/v1/data/requests/inbox", headers=steward).json()
    assert [(r["id"], r["requester"], r["overdue"]) for r in inbox] == [(first["id"], "analyst@test.example", False)]
    assert client.get("/api/v1/data/requests/inbox", headers=member).json() == []
    assert client.post(f"/api/v1/data/requests/{first['id']}/decision", json={"approve": True},
                       headers=member).status_code == 403  # only the publisher's stewards decide
    assert client.post(f"/api/v1/data/requests/{first['id']}/decision", json={"approve": False},
                       headers=steward).status_code == 422  # a rejection says why
    r = client.post(f"/api/v1/data/requests/{first['id']}/decision",
                    json={"approve": False, "reason": "Say which regions you need"}, headers=steward)
    assert r.status_code == 200 and r.json()["grant"] is None
    mine = client.get("/api/v1/data/requests/mine", headers=member).json()
    assert mine[0]["status"] == "rejected" and mine[0]["reason"] == "Say which regions you need"

    second = client.post("/api/v1/data/datasets/restricted_costs/requests", json=PURPOSE, headers=member).json()
    r = client.post(f"/api/v1/data/requests/{second['id']}/decision", json={"approve": True, "days": 7},
                    headers=steward)
    grant = r.json()["grant"]
    assert grant["mode"] == "download" and grant["live"]
    expires = datetime.fromisoformat(grant["expires_at"])
    assert expires.utcoffset() == timedelta(0)  # every time is given with its offset (RFC 3339)
    assert timedelta(days=6) < expires - datetime.now(UTC) <= timedelta(days=7)
    assert _download(commons, "restricted_costs", member) == 200

    r = client.post(f"/api/v1/data/grants/{grant['id']}/revoke", json={"reason": "study ended"}, headers=steward)
    assert r.status_code == 200 and not r.json()["live"]
    assert _download(commons, "restricted_costs", member) == 403
    assert _audited(commons, "data.download") == ["refused", "ok", "refused"]


def test_expiry_is_enforced_at_every_use(commons: Commons) -> None:
    commons.create("expiring", classification="restricted")
    assert commons.publish("expiring").status_code == 201
    req = commons.client.post("/api/v1/data/datasets/expiring/requests", json=PURPOSE, headers=commons.member).json()
    commons.client.post(f"/api/v1/data/requests/{req['id']}/decision", json={"approve": True},
                        headers=commons.steward)
    assert _download(commons, "expiring", commons.member) == 200
    with commons.db.session() as s:
        s.execute(update(AccessGrant).values(expires_at=utcnow() - timedelta(seconds=1)))
        s.commit()
    assert _download(commons, "expiring", commons.member) == 403
    assert not commons.client.get("/api/v1/data/grants/mine", headers=commons.member).json()[0]["live"]


def test_sensitive_data_is_never_downloaded_and_foreign_requesters_are_refused(commons: Commons) -> None:
    commons.create("clinic", classification="sensitive", entity_column="person_id")
    assert commons.publish("clinic").status_code == 201
    shown = commons.client.get("/api/v1/data/datasets/clinic", headers=commons.member).json()
    assert all("stats" not in c for c in shown["columns"])  # no statistics of sensitive columns
    req = commons.client.post("/api/v1/data/datasets/clinic/requests", json=PURPOSE, headers=commons.member).json()
    r = commons.client.post(f"/api/v1/data/requests/{req['id']}/decision", json={"approve": True},
                            headers=commons.steward)
    assert r.json()["grant"]["mode"] == "sandbox"
    assert _download(commons, "clinic", commons.member) == 403
    assert _download(commons, "clinic", commons.steward) == 403  # not even its stewards take it away
    r = commons.client.post("/api/v1/data/datasets/clinic/requests", json=PURPOSE, headers=commons.foreigner)
    assert r.status_code == 403 and any("US" in reason for reason in r.json()["error"]["reasons"])
    with commons.db.session() as s:
        assert len(s.scalars(select(AccessRequest)).all()) == 1


def test_overdue_requests_are_flagged_for_stewards(commons: Commons) -> None:
    commons.create("slow", classification="restricted")
    commons.client.post("/api/v1/data/datasets/slow/requests", json=PURPOSE, headers=commons.member)
    with commons.db.session() as s:
        s.execute(update(AccessRequest).values(created_at=utcnow() - timedelta(hours=73)))
        s.commit()
    assert commons.client.get("/api/v1/data/requests/inbox", headers=commons.steward).json()[0]["overdue"]
    assert commons.client.get("/api/v1/data/requests/inbox", headers=commons.admin).json()[0]["overdue"]


def test_nobody_decides_their_own_request_or_grants_longer_than_asked(commons: Commons) -> None:
    """M6: a steward approving their own request, or for more days than the requester asked."""
    commons.create("restricted_costs", classification="restricted")
    assert commons.publish("restricted_costs").status_code == 201
    own = commons.client.post("/api/v1/data/datasets/restricted_costs/requests",
                              json={**PURPOSE, "organisation_id": commons.publisher}, headers=commons.steward).json()
    r = commons.client.post(f"/api/v1/data/requests/{own['id']}/decision", json={"approve": True},
                            headers=commons.steward)
    assert r.status_code == 403 and "your own" in r.json()["error"]["message"]
    assert _audited(commons, "data.access.decide") == ["refused"]
    theirs = commons.client.post("/api/v1/data/datasets/restricted_costs/requests", json=PURPOSE,
                                 headers=commons.member).json()
    longer = commons.client.post(f"/api/v1/data/requests/{theirs['id']}/decision",
                                 json={"approve": True, "days": 365}, headers=commons.steward)
    assert longer.status_code == 422 and longer.json()["error"]["field"] == "days"
    shorter = commons.client.post(f"/api/v1/data/requests/{theirs['id']}/decision",
                                  json={"approve": True, "days": 7}, headers=commons.steward)
    assert shorter.status_code == 200
    expires = datetime.fromisoformat(shorter.json()["grant"]["expires_at"].replace("Z", "+00:00")).replace(tzinfo=None)
    assert expires - utcnow() < timedelta(days=7, minutes=1)
