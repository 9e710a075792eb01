"""Benchmark of the sovereignty assessor: a 10,000-component, 50,000-edge manifest, parsed and validated,
scored, and run through every built-in drill. Goal (issue #6): all of it within 2 s.

    python bench/assess.py [--components N] [--edges M]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
from datetime import UTC, datetime
from typing import Any

from sovstack.assess.drills import drill
from sovstack.assess.scenarios import builtin_scenarios
from sovstack.assess.scoring import assess
from sovstack.assess.stack import Stack
from sovstack.assess.validate import load_manifest

GOAL_SECONDS = 2.0
LAYERS = ["chips", "compute", "network", "data", "models", "software", "operations"]


def synthetic(components: int, edges: int, seed: int = 6) -> str:
    """A layered, acyclic manifest as JSON: edges only point to components defined earlier."""
    rng = random.Random(seed)
    parties = [{"id": f"p{i}", "name": f"Party {i}", "jurisdiction": rng.choice(["IN", "US", "FR", "DE", "JP"]),
                "parent_jurisdiction": rng.choice(["IN", "US", None])} for i in range(200)]
    per = max(1, edges // components)
    comps: list[dict[str, Any]] = []
    for i in range(components):
        layer = LAYERS[min(len(LAYERS) - 1, i * len(LAYERS) // components)]
        deps = sorted({f"c{rng.randrange(i)}" for _ in range(per)}) if i > per else []
        comps.append({
            "id": f"c{i}", "name": f"Component {i}", "layer": layer, "supplier": f"p{rng.randrange(200)}",
            "operator": f"p{rng.randrange(200)}", "hosted_in": [rng.choice(["IN", "US", "DE"])],
            "delivery": rng.choice(["installed", "service"]), "remote_disable": rng.random() < 0.3,
            "export_control": {"controlled": layer == "chips", "regime": "us-ear" if layer == "chips" else None},
            "open": {"source": rng.random() < 0.5, "weights": rng.random() < 0.5}, "holds_data": layer == "data",
            "keys_held_by": rng.choice(["customer", "operator", "supplier"]), "tags": ["primary-region"] * (i % 9 == 0),
            "depends_on": deps, "serves": 1 if i >= components - 100 else 0,
            "substitutes": [{"name": "alt", "supplier": f"p{rng.randrange(200)}", "switch_days": rng.randrange(1, 60),
                             "tested": "2026-01-01" if rng.random() < 0.5 else None}] if rng.random() < 0.4 else [],
            "evidence": [{"claims": ["supplier", "operator", "hosted_in"], "type": "contract", "source": f"doc {i}",
                          "date": "2025-06-01", "confidence": "high"}]})
    total = sum(len(c["depends_on"]) for c in comps)
    return json.dumps({"manifest_version": "1", "name": f"bench ({total} edges)", "home": "IN",
                       "as_of": "2026-06-30", "languages": ["hi"], "parties": parties, "components": comps})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--components", type=int, default=10_000)
    parser.add_argument("--edges", type=int, default=50_000)
    args = parser.parse_args()
    text = synthetic(args.components, args.edges)
    print(f"sovstack assess bench — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}")
    started = time.perf_counter()
    manifest = load_manifest(text)
    parsed = time.perf_counter()
    edges = sum(len(c.depends_on) for c in manifest.components)
    print(f"  manifest: {len(manifest.components):,} components, {edges:,} dependency edges, {len(text) / 1e6:.1f} MB")
    print(f"  parse + validate (schema, references, cycles)   {parsed - started:7.3f} s")
    assessment = assess(manifest)
    scored = time.perf_counter()
    print(f"  score ({len(assessment.results):,} answers)                    {scored - parsed:7.3f} s")
    stack = Stack(manifest)
    for scenario in builtin_scenarios().scenarios:
        t0 = time.perf_counter()
        result = drill(stack, scenario)
        print(f"  drill {scenario.id:<28} {time.perf_counter() - t0:7.3f} s   residual "
              f"{result.residual_now:.2f} → {result.residual_final:.2f}")
    total = time.perf_counter() - started
    print(f"  total                                            {total:7.3f} s   goal {GOAL_SECONDS:.1f} s   "
          f"ratio {GOAL_SECONDS / total:.2f}")


if __name__ == "__main__":
    main()
