"""Leaving for another gateway: the catalogue as a LiteLLM proxy config.yaml that LiteLLM itself loads and serves."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from sovstack.cli import run
from sovstack.core.context import unit_of_work
from sovstack.gateway import service
from tests.conftest import OPERATOR
from tests.gateway.conftest import Gateway, deployment, register
from tests.gateway.upstream import Upstream

# LiteLLM's own modules, not ours, raise these while loading.
pytestmark = [pytest.mark.filterwarnings("ignore:Items? .* using the `ReadOnly` qualifier:UserWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning:litellm")]

UPSTREAM_KEY = "upstream-secret-key-do-not-export-42"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # air-gapped: LiteLLM must not fetch its price list


@pytest.fixture
def catalogue(gateway: Gateway, upstreams: Callable[..., Upstream]) -> dict[str, Upstream]:
    ups = {name: upstreams(name) for name in ("primary", "second", "small", "gone")}
    register(gateway.db, "bharat-chat-small", deployment("small", ups["small"].url, priority=1))
    register(gateway.db, "bharat-chat",
             deployment("primary", ups["primary"].url, priority=1, api_key=UPSTREAM_KEY, price_in=2.0,
                        price_out=6.0, currency="INR", retries=2, languages=[{"code": "hi"}]),
             deployment("second", ups["second"].url, priority=5, weight=3),
             deployment("gone", ups["gone"].url, priority=9))
    with gateway.db.session() as s, unit_of_work(s, OPERATOR):
        model = service.get_model(s, "bharat-chat")
        model.fallbacks, model.routing = ["bharat-chat-small"], "least-busy"
        service.get_deployment(s, "gone").enabled = False
    return ups


def test_the_exported_config_is_litellms_own_shape_and_keeps_no_key(gateway: Gateway, catalogue: dict[str, Upstream],
                                                                   tmp_path: Path) -> None:
    from litellm.proxy._types import ConfigYAML  # LiteLLM's own config model is the reader here

    out = tmp_path / "config.yaml"
    assert run(["--home", str(gateway.app.state.settings.home), "gateway", "export-litellm", "--out", str(out)]) == 0
    text = out.read_text()
    assert UPSTREAM_KEY not in text and "os.environ/SOVSTACK_KEY_PRIMARY" in text
    assert "#   SOVSTACK_KEY_PRIMARY" in text and "Not exported (not serving when exported): gone (disabled)" in text
    data = yaml.safe_load(text)
    config = ConfigYAML.model_validate(data)
    assert [(m.model_name, m.model_info.id) for m in config.model_list or []] == [
        ("bharat-chat", "primary"), ("bharat-chat", "second"), ("bharat-chat-small", "small")]
    primary = data["model_list"][0]
    assert primary["litellm_params"]["model"] == "openai/up-primary"
    assert primary["litellm_params"]["input_cost_per_token"] == pytest.approx(2e-6)
    facts = primary["model_info"]["sovstack"]
    assert facts["currency"] == "INR" and facts["hosting_jurisdiction"] == "IN"
    assert [lang["code"] for lang in facts["languages"]] == ["hi"]
    assert facts["operator"] == "Desi Cloud" and facts["model_routing"] == "least-busy"
    assert data["router_settings"]["fallbacks"] == [{"bharat-chat": ["bharat-chat-small"]}]
    assert data["router_settings"]["num_retries"] == 2


def test_litellm_serves_the_models_from_the_exported_config(gateway: Gateway, catalogue: dict[str, Upstream],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import litellm  # imported here, after _offline: it reads the setting when loaded
    answer = httpx.get(f"{gateway.url}/api/v1/gateway/export/litellm", headers=bearer(gateway.admin_key), timeout=10)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/yaml")
    data: dict[str, Any] = yaml.safe_load(answer.text)
    monkeypatch.setenv("SOVSTACK_KEY_PRIMARY", UPSTREAM_KEY)
    router = litellm.Router(model_list=data["model_list"], **data["router_settings"])
    reply = router.completion(model="bharat-chat", messages=[{"role": "user", "content": "namaste"}])
    assert reply.choices[0].message.content
    catalogue["primary"].mode = catalogue["second"].mode = "500"
    reply = router.completion(model="bharat-chat", messages=[{"role": "user", "content": "again"}])
    assert reply.choices[0].message.content  # every deployment failed: LiteLLM fell back to the small model
    assert catalogue["primary"].headers[0]["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert catalogue["primary"].received[0]["model"] == "up-primary"
    assert catalogue["small"].received and catalogue["small"].received[-1]["model"] == "up-small"


def test_only_an_admin_exports_the_catalogue(gateway: Gateway, catalogue: dict[str, Upstream]) -> None:
    answer = httpx.get(f"{gateway.url}/api/v1/gateway/export/litellm", headers=bearer(gateway.key), timeout=10)
    assert answer.status_code == 403
    assert httpx.get(f"{gateway.url}/api/v1/gateway/export/litellm", timeout=10).status_code == 401


def test_bedrock_and_vertex_deployments_leave_with_their_cloud_settings(gateway: Gateway, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from litellm.proxy._types import ConfigYAML

    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    account = json.dumps({"type": "service_account", "project_id": "p", "private_key": pem,
                          "client_email": "gw@p.iam.gserviceaccount.com", "token_uri": "https://t.example/token"})
    register(gateway.db, "frontier",
             deployment("claude-eu", "https://bedrock-runtime.eu-central-1.amazonaws.com", backend="bedrock",
                        upstream_model="eu.anthropic.claude-3-5-sonnet-20240620-v1:0",
                        api_key="AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
             deployment("gemini-in", "https://asia-south1-aiplatform.googleapis.com/v1/projects/p/locations/"
                        "asia-south1/endpoints/openapi", backend="vertex", upstream_model="google/gemini-2.0-flash-001",
                        api_key=account))
    out = tmp_path / "config.yaml"
    assert run(["--home", str(gateway.app.state.settings.home), "gateway", "export-litellm", "--out", str(out)]) == 0
    text = out.read_text()
    assert "wJalrXUtnFEMI" not in text and "PRIVATE KEY" not in text  # credentials never leave in the file
    ConfigYAML.model_validate(yaml.safe_load(text))
    params = {m["model_info"]["id"]: m["litellm_params"] for m in yaml.safe_load(text)["model_list"]}
    assert params["claude-eu"] == {
        "model": "bedrock/eu.anthropic.claude-3-5-sonnet-20240620-v1:0", "timeout": 2.0, "order": 100, "weight": 1,
        "aws_region_name": "eu-central-1", "aws_access_key_id": "os.environ/SOVSTACK_KEY_CLAUDE_EU_AWS_ACCESS_KEY_ID",
        "aws_secret_access_key": "os.environ/SOVSTACK_KEY_CLAUDE_EU_AWS_SECRET_ACCESS_KEY"}
    assert params["gemini-in"]["model"] == "vertex_ai/gemini-2.0-flash-001"
    assert (params["gemini-in"]["vertex_project"], params["gemini-in"]["vertex_location"]) == ("p", "asia-south1")
    assert params["gemini-in"]["vertex_credentials"] == "os.environ/SOVSTACK_KEY_GEMINI_IN"
    assert "#   SOVSTACK_KEY_CLAUDE_EU_AWS_SECRET_ACCESS_KEY" in text
