"""Clearly synthetic gateway demo: a domestic open-weight model on local servers, a foreign frontier API."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from sovstack.core import identity
from sovstack.core.context import Principal
from sovstack.core.demo import DEMO_DOMAIN
from sovstack.core.plugins import DemoContext
from sovstack.core.schemas import ApiKeyCreate
from sovstack.gateway import service
from sovstack.gateway.schemas import Catalogue, KeyPolicySet
from sovstack.gateway.tables import GatewayModel

DEMO_MODEL = "bharat-chat"


def catalogue(ctx: DemoContext) -> Catalogue:
    home = ctx.home
    domestic, hyperscaler = "Synthetic DomesticCloud Pvt Ltd", "Demo Hyperscaler Local Ltd"
    indic = [{"code": code, "tier": "high"} for code in ("hi", "ta", "bn", "te", "mr")] + [{"code": "en",
                                                                                             "tier": "medium"}]
    return Catalogue.model_validate({"models": [
        {"name": DEMO_MODEL, "description": "Synthetic demo: an open-weight Indic model, routed by language.",
         "language_routing": True, "deployments": [
             {"name": "bharat-chat-ollama-local", "base_url": "http://127.0.0.1:11434/v1",
              "upstream_model": "bharat-chat:8b", "hosting_jurisdiction": home, "operator": domestic,
              "developer": "Synthetic Bharat Language Models", "licence": "Apache-2.0", "open_weights": True,
              "languages": indic, "context_length": 8192, "priority": 10, "retries": 1},
             {"name": "bharat-chat-vllm-local", "base_url": "http://127.0.0.1:8001/v1",
              "upstream_model": "synthetic/bharat-chat-8b", "hosting_jurisdiction": home, "operator": domestic,
              "developer": "Synthetic Bharat Language Models", "licence": "Apache-2.0", "open_weights": True,
              "languages": indic, "context_length": 32768, "priority": 20},
         ]},
        {"name": "frontier-large", "description": "Synthetic demo: a foreign frontier API, for open data only.",
         "deployments": [
             {"name": "frontier-large-in-region", "base_url": "https://frontier.invalid/v1",
              "upstream_model": "frontier-large-2026", "hosting_jurisdiction": home, "operator": hyperscaler,
              "developer": "Demo Frontier Labs Inc.", "licence": "proprietary", "open_weights": False,
              "languages": [{"code": "en", "tier": "high"}], "context_length": 200000,
              "price_in": 3.0, "price_out": 15.0, "priority": 10},
         ]},
    ]})


def seed(session: Session, ctx: DemoContext) -> None:
    """Register the demo catalogue once (its servers may be absent: the console shows them unreachable)."""
    if session.scalar(select(GatewayModel).where(GatewayModel.name == DEMO_MODEL)) is not None:
        return
    seeder = Principal.system("demo")
    result = service.apply_catalogue(session, seeder, ctx.settings, catalogue(ctx))
    ctx.say(f"gateway: {len(result['created'])} models and deployments registered "
            "(local Ollama on :11434 and vLLM on :8001 are used when running)")
    key, secret = identity.create_api_key(session, seeder, ApiKeyCreate(
        name="demo gateway key", scopes=["read", "gateway"], user_id=ctx.users["member"],
        organisation_id=ctx.organisations["university"]), known_scopes=("read", "gateway"))
    service.set_key_policy(session, seeder, key.prefix, KeyPolicySet(default_classification="restricted",
                                                                     floor_classification="open",
                                                                     requests_per_minute=120))
    ctx.say(f"gateway: API key for member@{DEMO_DOMAIN} (restricted by default, 120 requests/min): {secret}")
