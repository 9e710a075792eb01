"""The catalogue as another gateway's configuration: a LiteLLM proxy ``config.yaml`` (exit rights).

What LiteLLM can do itself is translated: each serving deployment becomes a ``model_list`` entry
(``openai/``, ``anthropic/``, ``azure/``, ``bedrock/`` or ``vertex_ai/`` model, ``api_base`` or the
cloud's region and project, ``order`` for priority, ``weight``, ``timeout``, prices per token), and
the routing becomes ``router_settings`` (strategy, fallbacks, retries, circuit thresholds). What it
cannot enforce — classification and residency routing, the deployment's sovereignty facts, language
tags, the currency of prices — is kept as metadata under ``model_info.sovstack`` and said in the
file's header, so nothing is lost silently. Credentials are never written: each deployment reads
them from environment variables the header names.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from sovstack.core.context import Principal
from sovstack.gateway import bedrock
from sovstack.gateway.tables import Deployment, GatewayModel

# Our per-model strategy → LiteLLM's router-wide one (it has one strategy for every model group).
STRATEGIES = {"priority": "simple-shuffle", "least-busy": "least-busy", "latency": "latency-based-routing"}
NO_KEY = "none"  # sent as the key of a deployment that has none; servers without auth ignore it
PREFIXES = {"openai": "openai", "anthropic": "anthropic", "azure": "azure", "bedrock": "bedrock",
            "vertex": "vertex_ai"}
VERTEX_PATH = re.compile(r"/projects/([^/]+)/locations/([^/]+)/")


def key_variable(deployment: str) -> str:
    """The environment variable a deployment's key is read from in the exported configuration."""
    return "SOVSTACK_KEY_" + re.sub(r"[^A-Z0-9]+", "_", deployment.upper()).strip("_")


@dataclass(frozen=True)
class Exported:
    config: dict[str, Any]  # model_list and router_settings, as LiteLLM reads them
    key_variables: list[str]  # the environment variables the keys are to be set in
    left_out: list[str]  # deployments not serving when exported (disabled or withdrawn), with why


def litellm_config(session: Session, who: Principal) -> Exported:
    """A LiteLLM proxy configuration serving the same models from the same upstreams (admins only)."""
    who.require_admin("gateway.export", "catalogue")
    models = session.scalars(select(GatewayModel).options(selectinload(GatewayModel.deployments))
                             .order_by(GatewayModel.name)).all()
    model_list: list[dict[str, Any]] = []
    left_out: list[str] = []
    keys: list[str] = []
    for model in models:
        for dep in sorted(model.deployments, key=lambda d: (d.priority, d.name)):
            if not (model.enabled and dep.enabled) or dep.withdrawn:
                left_out.append(f"{dep.name} ({'withdrawn' if dep.withdrawn else 'disabled'})")
                continue
            keys += _variables(dep)
            model_list.append(_entry(model, dep))
    serving = [m for m in models if m.enabled and any(e["model_name"] == m.name for e in model_list)]
    strategy = Counter(m.routing for m in serving).most_common(1)
    deployments = [d for m in serving for d in m.deployments if d.enabled and not d.withdrawn]
    router: dict[str, Any] = {"routing_strategy": STRATEGIES[strategy[0][0]] if strategy else "simple-shuffle"}
    fallbacks = [{m.name: [f for f in m.fallbacks if any(s.name == f for s in serving)]}
                 for m in serving if m.fallbacks]
    if fallbacks:
        router["fallbacks"] = fallbacks
    if deployments:
        router["num_retries"] = max(d.retries for d in deployments)
        router["allowed_fails"] = min(d.failures_to_open for d in deployments)
        router["cooldown_time"] = max(d.cool_down_seconds for d in deployments)
    return Exported({"model_list": model_list, "router_settings": router}, keys, left_out)


def _variables(dep: Deployment) -> list[str]:
    """The environment variables the deployment's credentials are to be set in."""
    variable = key_variable(dep.name)
    if dep.backend == "bedrock":
        names = [f"{variable}_AWS_ACCESS_KEY_ID", f"{variable}_AWS_SECRET_ACCESS_KEY"]
        host = urlsplit(dep.base_url).hostname or ""
        return names if bedrock.REGION_HOST.search(host) else [*names, f"{variable}_AWS_REGION"]
    if dep.backend == "vertex":
        return [f"{variable} (the service-account key file's content)"]
    return [variable] if dep.api_key_encrypted else []


def _entry(model: GatewayModel, dep: Deployment) -> dict[str, Any]:
    params: dict[str, Any] = {"model": f"{PREFIXES.get(dep.backend, 'openai')}/{dep.upstream_model}",
                              "api_base": dep.base_url, "timeout": dep.timeout_seconds,
                              "order": dep.priority, "weight": dep.weight}
    if dep.backend == "azure":
        from sovstack.gateway.backends import AZURE_API_VERSION

        params["api_version"] = AZURE_API_VERSION
    variable = key_variable(dep.name)
    if dep.backend == "bedrock":  # LiteLLM signs with the credentials themselves, given separately
        del params["api_base"]
        found = bedrock.REGION_HOST.search(urlsplit(dep.base_url).hostname or "")
        params["aws_region_name"] = found.group(1) if found else f"os.environ/{variable}_AWS_REGION"
        if not found:
            params["aws_bedrock_runtime_endpoint"] = dep.base_url
        params["aws_access_key_id"] = f"os.environ/{variable}_AWS_ACCESS_KEY_ID"
        params["aws_secret_access_key"] = f"os.environ/{variable}_AWS_SECRET_ACCESS_KEY"
    elif dep.backend == "vertex":  # LiteLLM makes its own tokens from the service-account key
        del params["api_base"]
        place = VERTEX_PATH.search(dep.base_url)
        if place:
            params["vertex_project"], params["vertex_location"] = place.group(1), place.group(2)
        params["vertex_credentials"] = f"os.environ/{variable}"
        # LiteLLM names Google's own models without the publisher (vertex_ai/gemini-…), partners' with it.
        params["model"] = "vertex_ai/" + dep.upstream_model.removeprefix("google/")
    elif dep.api_key_encrypted:
        params["api_key"] = f"os.environ/{variable}"
    else:  # an upstream without a key (a local model server): LiteLLM's OpenAI client still wants one to send
        params["api_key"] = NO_KEY
    if dep.price_in or dep.price_out:
        params["input_cost_per_token"] = dep.price_in / 1_000_000
        params["output_cost_per_token"] = dep.price_out / 1_000_000
    facts = {"deployment": dep.name, "backend": dep.backend, "hosting_jurisdiction": dep.hosting_jurisdiction,
             "operator": dep.operator.name, "operator_jurisdiction": dep.operator.jurisdiction,
             "operator_parent_jurisdiction": dep.operator.parent_jurisdiction, "developer": dep.developer.name,
             "developer_jurisdiction": dep.developer.jurisdiction, "licence": dep.licence,
             "open_weights": dep.open_weights, "languages": list(dep.languages or []),
             "currency": dep.currency, "price_in_per_million": dep.price_in,
             "price_out_per_million": dep.price_out, "retries": dep.retries,
             "failures_to_open": dep.failures_to_open, "cool_down_seconds": dep.cool_down_seconds,
             "model_routing": model.routing, "language_routing": model.language_routing}
    return {"model_name": model.name, "litellm_params": params,
            "model_info": {"id": dep.name, "max_input_tokens": dep.context_length, "sovstack": facts}}


HEADER = """\
# LiteLLM proxy configuration exported from sovstack {version} on {date}.
# Run it with: litellm --config {name}
#
# Keys are not in this file. Set each deployment's key in its environment variable:
{keys}
#
# LiteLLM cannot enforce what sovstack's policy routing did: which classification of data may go to
# which deployment (hosting, operator and parent jurisdictions), residency rules, cut-offs, and
# language routing. Those facts are kept per deployment under model_info.sovstack; enforce them with
# separate model names or LiteLLM access groups before you rely on this configuration.
# LiteLLM has one routing strategy for all models: the most common of sovstack's per-model
# strategies is used, each model's own is kept under model_info.sovstack.model_routing.
# Prices are per token in each deployment's currency (model_info.sovstack.currency); LiteLLM reports
# spend as if in USD.
"""


def litellm_yaml(exported: Exported, version: str, date: str, name: str = "config.yaml") -> str:
    """The configuration as the YAML file LiteLLM reads, with a header saying what it cannot carry."""
    keys = "\n".join(f"#   {k}" for k in exported.key_variables) or "#   (no deployment has a key)"
    header = HEADER.format(version=version, date=date, name=name, keys=keys)
    if exported.left_out:
        header += "# Not exported (not serving when exported): " + ", ".join(exported.left_out) + "\n"
    return header + yaml.safe_dump(exported.config, sort_keys=False, allow_unicode=True)
