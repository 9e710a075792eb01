"""A deployment with backend: vertex, called the way Vertex AI's OpenAI-compatible endpoint is: with an access
token google-auth gets for the service-account key from the key's token endpoint, here a local one that checks
the signed assertion the way Google's does."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from openai import APIStatusError, OpenAI
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sovstack.core.tables import AuditEvent
from sovstack.gateway.tables import Usage
from tests.conftest import free_port
from tests.gateway.conftest import Gateway, deployment, register
from tests.gateway.upstream import Upstream, serve

PROJECT, LOCATION = "P", "L"
MODEL = "google/gemini-2.0-flash-001"
CLIENT_EMAIL = "gateway@p.iam.gserviceaccount.com"
AUDIENCE = "https://oauth2.googleapis.com/token"  # what google-auth asserts, whatever the key's token_uri
GOOGLE_DETAIL = "request-id-9f3e-internal"  # what the token endpoint says beyond its error code: never relayed
CHAT = [{"role": "user", "content": "hi"}]


def b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class TokenServer:
    """Google's OAuth2 token endpoint for a JWT-bearer grant: verifies the assertion, issues a bearer token."""

    public_key: rsa.RSAPublicKey
    expires_in: int = 3600
    delay: float = 0.0
    requests: int = 0
    issued: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    url: str = ""

    def check(self, form: dict[str, list[str]]) -> str:
        """Why the grant is refused ("" when it is not)."""
        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
            return "grant type"
        head, claims, signature = form["assertion"][0].split(".")
        try:
            self.public_key.verify(b64url(signature), f"{head}.{claims}".encode(), padding.PKCS1v15(),
                                   hashes.SHA256())
        except InvalidSignature:
            return "signature"
        header, payload = json.loads(b64url(head)), json.loads(b64url(claims))
        now = time.time()
        if header.get("alg") != "RS256" or payload.get("aud") != AUDIENCE or payload.get("iss") != CLIENT_EMAIL:
            return "header, audience or issuer"
        if "https://www.googleapis.com/auth/cloud-platform" not in payload.get("scope", "").split():
            return "scope"
        if not payload["iat"] - 60 <= now < payload["exp"]:
            return "expired"
        return ""

    async def token(self, request: Request) -> Response:
        self.requests += 1
        form = parse_qs((await request.body()).decode())
        await asyncio.sleep(self.delay)
        why = self.check(form)
        if why:
            self.refused.append(why)
            return JSONResponse({"error": "invalid_grant", "error_description": f"Invalid JWT: {GOOGLE_DETAIL}"},
                                status_code=400)
        self.issued.append(f"ya29.test-token-{len(self.issued) + 1}")
        return JSONResponse({"access_token": self.issued[-1], "expires_in": self.expires_in, "token_type": "Bearer"})


@dataclass
class VertexUpstream:
    """Vertex AI's OpenAI-compatible endpoint: 401 without a live token, 404 for another project or location."""

    tokens: TokenServer
    inner: Upstream = field(default_factory=lambda: Upstream("vertex"))
    revoked: set[str] = field(default_factory=set)
    seen: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    async def chat(self, request: Request) -> Response:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        self.seen.append({"path": request.url.path, "token": token})
        if token not in self.tokens.issued or token in self.revoked:
            return JSONResponse({"error": {"code": 401, "status": "UNAUTHENTICATED",
                                           "message": f"Request had invalid authentication credentials: {token}"}},
                                status_code=401)
        if (request.path_params["project"], request.path_params["location"]) != (PROJECT, LOCATION):
            return JSONResponse({"error": {"code": 404, "message": "not found"}}, status_code=404)
        return await self.inner.chat(request)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/projects/{project}/locations/{location}/endpoints/openapi/chat/completions",
                                       self.chat, methods=["POST"])])


@dataclass
class Google:
    signing_key: rsa.RSAPrivateKey
    tokens: TokenServer
    vertex: VertexUpstream

    def key(self, signing_key: rsa.RSAPrivateKey | None = None, token_uri: str = "", indent: int | None = None) -> str:
        """A service-account key file, signed with ``signing_key`` (the one the token endpoint knows by default)."""
        pem = (signing_key or self.signing_key).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
        return json.dumps({"type": "service_account", "project_id": PROJECT, "private_key_id": "k1",
                           "private_key": pem, "client_email": CLIENT_EMAIL, "client_id": "1",
                           "token_uri": token_uri or self.tokens.url, "universe_domain": "googleapis.com"},
                          indent=indent)

    def deployment(self, name: str, **extra: Any) -> dict[str, Any]:
        base = f"{self.vertex.url}/v1/projects/{PROJECT}/locations/{LOCATION}/endpoints/openapi"
        return deployment(name, base, backend="vertex", upstream_model=MODEL, api_key=self.key(), **extra)


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def google(signing_key: rsa.RSAPrivateKey) -> Iterator[Google]:
    tokens = TokenServer(signing_key.public_key())
    vertex = VertexUpstream(tokens)
    servers = []
    for part, app, path in ((tokens, Starlette(routes=[Route("/token", tokens.token, methods=["POST"])]), "/token"),
                            (vertex, vertex.app(), "")):
        port = free_port()
        servers.append(serve(app, port))
        part.url = f"http://127.0.0.1:{port}{path}"
    yield Google(signing_key, tokens, vertex)
    for server in servers:
        server.should_exit = True


def client(gw: Gateway) -> OpenAI:
    return OpenAI(base_url=f"{gw.url}/v1", api_key=gw.key, max_retries=0)


def usage(gw: Gateway) -> list[tuple[str, str, int, int, bool]]:
    with gw.db.session() as s:
        return [(u.deployment, u.outcome, u.tokens_in, u.tokens_out, u.estimated)
                for u in s.scalars(select(Usage).order_by(Usage.id))]


def test_chat_and_streams_go_to_vertex_with_an_access_token_and_are_metered(gateway: Gateway,
                                                                          google: Google) -> None:
    register(gateway.db, "gemini", google.deployment("vertex-eu"))
    reply = client(gateway).chat.completions.create(model="gemini", messages=CHAT)
    assert reply.choices[0].message.content == "hello from vertex" and reply.model == "gemini"
    stream = client(gateway).chat.completions.create(model="gemini", messages=CHAT, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "part0 part1 part2 "
    path = f"/v1/projects/{PROJECT}/locations/{LOCATION}/endpoints/openapi/chat/completions"
    assert google.vertex.seen == [{"path": path, "token": "ya29.test-token-1"}] * 2  # one token, never the key
    sent = google.vertex.inner.received
    assert [b["model"] for b in sent] == [MODEL] * 2 and sent[1]["stream_options"] == {"include_usage": True}
    assert google.tokens.requests == 1 and google.tokens.refused == []
    assert usage(gateway) == [("vertex-eu", "ok", 11, 7, False), ("vertex-eu", "ok", 5, 3, False)]
    with pytest.raises(APIStatusError) as refused:  # Vertex's OpenAI-compatible endpoint serves chat only
        client(gateway).embeddings.create(model="gemini", input="a")
    assert refused.value.status_code == 400 and google.vertex.seen[2:] == []


def test_one_token_serves_many_calls_and_concurrent_calls_wait_for_one_fetch(gateway: Gateway,
                                                                            google: Google) -> None:
    register(gateway.db, "gemini", google.deployment("vertex-eu"))
    google.tokens.delay = 0.3  # all ten are waiting while the first fetch is under way
    with ThreadPoolExecutor(10) as pool:
        replies = list(pool.map(lambda _: client(gateway).chat.completions.create(model="gemini", messages=CHAT),
                                range(10)))
    assert all(r.choices[0].message.content == "hello from vertex" for r in replies)
    for _ in range(5):
        client(gateway).chat.completions.create(model="gemini", messages=CHAT)
    assert google.tokens.requests == 1
    assert {s["token"] for s in google.vertex.seen} == {"ya29.test-token-1"} and len(google.vertex.seen) == 15


def test_a_token_is_fetched_again_shortly_before_it_expires(gateway: Gateway, google: Google) -> None:
    register(gateway.db, "gemini", google.deployment("vertex-eu"))
    google.tokens.expires_in = 2  # kept for half its life when that is under the five-minute margin
    for pause in (0.0, 0.0, 1.2, 0.0):
        time.sleep(pause)
        client(gateway).chat.completions.create(model="gemini", messages=CHAT)
    assert [s["token"] for s in google.vertex.seen] == ["ya29.test-token-1"] * 2 + ["ya29.test-token-2"] * 2
    assert google.tokens.requests == 2


def test_an_upstream_401_drops_the_token_and_the_next_call_fetches_another(
        gateway: Gateway, google: Google, upstreams: Callable[..., Upstream]) -> None:
    register(gateway.db, "gemini", google.deployment("vertex-eu", priority=1),
             deployment("local", upstreams("local").url, priority=2))
    first = client(gateway).chat.completions.with_raw_response.create(model="gemini", messages=CHAT)
    assert first.headers["x-sovstack-deployment"] == "vertex-eu"
    google.vertex.revoked.add("ya29.test-token-1")
    refused = client(gateway).chat.completions.with_raw_response.create(model="gemini", messages=CHAT)
    assert refused.headers["x-sovstack-deployment"] == "local" and refused.headers["x-sovstack-tries"] == "2"
    stream = client(gateway).chat.completions.create(model="gemini", messages=CHAT, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "part0 part1 part2 "
    assert [s["token"] for s in google.vertex.seen] == ["ya29.test-token-1"] * 2 + ["ya29.test-token-2"]
    assert google.tokens.requests == 2


def test_a_key_the_token_endpoint_refuses_fails_over_and_google_is_never_relayed(
        gateway: Gateway, google: Google, upstreams: Callable[..., Upstream]) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # not the service account's key
    bad = google.key(stranger)
    register(gateway.db, "gemini", {**google.deployment("vertex-eu", priority=1), "api_key": bad},
             deployment("local", upstreams("local").url, priority=2))
    raw = client(gateway).chat.completions.with_raw_response.create(model="gemini", messages=CHAT)
    assert raw.headers["x-sovstack-deployment"] == "local" and raw.headers["x-sovstack-tries"] == "2"
    register(gateway.db, "alone", {**google.deployment("vertex-alone"), "api_key": bad})
    body = {"model": "alone", "messages": CHAT}
    for stream in (False, True):
        r = httpx.post(f"{gateway.url}/v1/chat/completions", json={**body, "stream": stream}, timeout=30,
                       headers={"Authorization": f"Bearer {gateway.key}"})
        assert r.status_code == 502, r.text
        message = r.json()["error"]["message"]
        assert "vertex-alone: the token endpoint refused the service-account key" in message
        assert GOOGLE_DETAIL not in r.text and "invalid_grant" not in r.text and "PRIVATE KEY" not in r.text
    assert google.tokens.refused == ["signature"] * 3 and google.vertex.seen == []
    with gateway.db.session() as s:
        events = s.scalars(select(AuditEvent).where(AuditEvent.action == "gateway.chat")).all()
        assert events and all(GOOGLE_DETAIL not in str(e.detail) + str(e.reasons) for e in events)


def test_a_token_endpoint_that_does_not_answer_is_a_failure_of_the_deployment(
        gateway: Gateway, google: Google, upstreams: Callable[..., Upstream]) -> None:
    gone = {**google.deployment("vertex-eu"), "api_key": google.key(token_uri=f"http://127.0.0.1:{free_port()}/t")}
    register(gateway.db, "gemini", {**gone, "priority": 1}, deployment("local", upstreams("local").url, priority=2))
    raw = client(gateway).chat.completions.with_raw_response.create(model="gemini", messages=CHAT)
    assert raw.headers["x-sovstack-deployment"] == "local"
    register(gateway.db, "alone", {**gone, "name": "vertex-alone"})
    with pytest.raises(APIStatusError) as failed:
        client(gateway).chat.completions.create(model="alone", messages=CHAT)
    assert failed.value.status_code == 503
    assert "vertex-alone: the token endpoint did not answer" in failed.value.message


def test_a_slow_token_endpoint_does_not_hold_up_other_calls(gateway: Gateway, google: Google,
                                                           upstreams: Callable[..., Upstream]) -> None:
    register(gateway.db, "gemini", google.deployment("vertex-eu"))
    register(gateway.db, "local-model", deployment("local", upstreams("local").url))
    google.tokens.delay = 1.0
    answers: list[float] = []

    def slow_call() -> None:
        began = time.perf_counter()
        client(gateway).chat.completions.create(model="gemini", messages=CHAT)
        answers.append(time.perf_counter() - began)

    caller = threading.Thread(target=slow_call)
    caller.start()
    while google.tokens.requests == 0:  # the fetch is under way
        time.sleep(0.01)
    began = time.perf_counter()
    client(gateway).chat.completions.create(model="local-model", messages=CHAT)
    took = time.perf_counter() - began
    caller.join(10)
    assert took < 0.5, f"a call to another deployment waited {took:.2f} s for the token fetch"
    assert len(answers) == 1 and answers[0] >= 1.0


@pytest.mark.parametrize(("key", "says"), [
    ("ya29.not-a-key", "not JSON"),
    ("[" * 5000, "not JSON"),
    ('{"type": "authorized_user", "client_id": "x", "refresh_token": "y"}', "service_account"),
    ('{"type": "service_account", "client_email": "a@b", "token_uri": "https://t.example/token"}',
     "no private_key"),
    ("BAD_PEM", "PEM RSA private key"),
    ("EC_PEM", "PEM RSA private key"),  # google-auth would take it, and fail only when signing
])
def test_a_key_that_is_not_a_service_account_key_is_refused_at_registration(
        gateway: Gateway, google: Google, key: str, says: str) -> None:
    register(gateway.db, "gemini")
    if key == "BAD_PEM":
        key = json.dumps({**json.loads(google.key()), "private_key": "-----BEGIN PRIVATE KEY-----\nMIIB\n"})
    elif key == "EC_PEM":
        key = json.dumps({**json.loads(google.key()), "private_key": ec.generate_private_key(ec.SECP256R1())
                          .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()).decode()})
    body = {**google.deployment("vertex-eu"), "model": "gemini", "api_key": key}
    admin = {"Authorization": f"Bearer {gateway.admin_key}"}
    r = httpx.post(f"{gateway.url}/api/v1/gateway/deployments", json=body, headers=admin, timeout=10)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "api_key" and says in r.json()["error"]["message"]
    applied = httpx.post(f"{gateway.url}/api/v1/gateway/apply", headers=admin, timeout=10,
                         json={"models": [{"name": "gemini", "deployments": [body]}]})
    assert applied.status_code == 422 and applied.json()["error"]["field"].endswith("api_key"), applied.text
    assert "MIIB" not in r.text + applied.text


def test_a_key_file_as_google_issues_it_is_accepted_and_kept_on_one_line(gateway: Gateway, google: Google) -> None:
    register(gateway.db, "gemini")
    body = {**google.deployment("vertex-eu"), "model": "gemini", "api_key": google.key(indent=2)}
    assert len(body["api_key"]) > 1500 and "\n" in body["api_key"]  # longer than a key, on many lines
    r = httpx.post(f"{gateway.url}/api/v1/gateway/deployments", json=body, timeout=10,
                   headers={"Authorization": f"Bearer {gateway.admin_key}"})
    assert r.status_code == 201, r.text
    assert r.json()["has_api_key"] is True and "PRIVATE" not in r.text
    assert client(gateway).chat.completions.create(model="gemini", messages=CHAT).choices[0].message.content
    too_long = {**deployment("plain", "http://127.0.0.1:1/v1"), "model": "gemini", "api_key": "k" * 2001}
    r = httpx.post(f"{gateway.url}/api/v1/gateway/deployments", json=too_long, timeout=10,
                   headers={"Authorization": f"Bearer {gateway.admin_key}"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "api_key"
