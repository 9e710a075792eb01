"""Drills: what stops now, what degrades, what fails over and when, residual service, time to recover."""

from __future__ import annotations

import pytest

from sovstack.assess.drills import drill
from sovstack.assess.manifest import Manifest
from sovstack.assess.scenarios import Match, Scenario, Shock, builtin_scenarios, select_scenarios
from sovstack.assess.validate import manifest_from_data
from sovstack.core.errors import NotFound

from .conftest import small

US_CUT_OFF = Scenario(id="t", title="US vendors cut off", effective="2026-01-01",  # type: ignore[arg-type]
                      shocks=(Shock(when=Match(party_jurisdictions=("US",)), effect="cut_off"),))


def outcome(result: object, component: str) -> object:
    return next(o for o in result.outcomes if o.component == component)  # type: ignore[attr-defined]


def test_installed_hardware_degrades_a_service_stops_and_fails_over_after_its_untested_switch_time() -> None:
    result = drill(manifest_from_data(small()), US_CUT_OFF)
    gpu, saas, app = (outcome(result, c) for c in ("gpu", "saas", "app"))
    assert gpu.state == "degraded" and "no updates" in gpu.cause  # type: ignore[attr-defined]
    assert saas.state == "failed_over" and saas.via == "Home alternative"  # type: ignore[attr-defined]
    assert saas.recovers_after_days == 20.0  # type: ignore[attr-defined]  # 10 days, doubled: never tested
    assert app.state == "stopped" and app.cause == "depends on saas"  # type: ignore[attr-defined]
    assert result.residual_now == 0.0 and result.residual_final == 1.0
    assert result.time_to_recover_days == 20.0 and result.fully_recovered
    assert [(s.day, s.residual) for s in result.timeline] == [(0.0, 0.0), (20.0, 1.0)]


def test_a_tested_switch_takes_its_declared_time_and_remote_disable_stops_installed_equipment() -> None:
    doc = small()
    doc["components"][1]["substitutes"][0]["tested"] = "2026-03-01"
    doc["components"][0]["remote_disable"] = True
    result = drill(manifest_from_data(doc), US_CUT_OFF)
    assert outcome(result, "saas").recovers_after_days == 10.0  # type: ignore[attr-defined]
    assert outcome(result, "gpu").state == "lost"  # type: ignore[attr-defined]
    assert result.residual_final == 0.0 and not result.fully_recovered and result.time_to_recover_days is None


def test_a_substitute_the_same_shock_hits_does_not_help() -> None:
    doc = small()
    doc["components"][1]["substitutes"][0]["supplier"] = "us-co"
    result = drill(manifest_from_data(doc), US_CUT_OFF)
    assert outcome(result, "saas").state == "lost"  # type: ignore[attr-defined]
    assert result.residual_final == 0.0


def test_a_substitute_inside_the_manifest_takes_over_when_it_is_up() -> None:
    doc = small()
    doc["components"].append({"id": "home-api", "name": "Home API", "layer": "software", "supplier": "home-co",
                              "operator": "home-co", "hosted_in": ["IN"]})
    doc["components"][1]["substitutes"] = [{"name": "Home API", "component": "home-api", "switch_days": 3,
                                            "tested": "2026-05-01"}]
    result = drill(manifest_from_data(doc), US_CUT_OFF)
    assert outcome(result, "saas").recovers_after_days == 3.0  # type: ignore[attr-defined]
    assert result.time_to_recover_days == 3.0


def test_vendor_sanctions_cost_the_hyperscaler_region_most_service(examples: dict[str, Manifest]) -> None:
    (scenario,) = select_scenarios(["vendor-sanctions"])
    residual = {name: drill(m, scenario).residual_final for name, m in examples.items()}
    assert residual["hyperscaler-region"] == min(residual.values()) == 0.0
    assert residual["fully-domestic"] == residual["national-cloud"] == 1.0


def test_export_controls_leave_the_domestic_stack_running_on_installed_hardware(
        examples: dict[str, Manifest]) -> None:
    (scenario,) = select_scenarios(["export-controls"])
    domestic = drill(examples["fully-domestic"], scenario)
    assert domestic.residual_now == 1.0
    assert [(o.component, o.state) for o in domestic.outcomes] == [("gpu-cluster", "degraded")]
    hyper = drill(examples["hyperscaler-region"], scenario)
    assert hyper.residual_now < 0.5 and outcome(hyper, "frontier-api").state == "lost"  # type: ignore[attr-defined]


def test_compelled_disclosure_exposes_data_unless_you_hold_the_keys(examples: dict[str, Manifest]) -> None:
    (scenario,) = select_scenarios(["extraterritorial-disclosure"])
    exposed = {name: drill(m, scenario).exposed_share for name, m in examples.items()}
    assert exposed["fully-domestic"] == 0.0
    assert exposed["hyperscaler-region"] > exposed["national-cloud"] > 0.0


def test_region_loss_recovers_through_the_tested_disaster_recovery_site(examples: dict[str, Manifest]) -> None:
    (scenario,) = select_scenarios(["region-loss"])
    result = drill(examples["national-cloud"], scenario)
    assert result.residual_now == 0.0 and result.residual_final == 1.0 and result.time_to_recover_days == 2.0


def test_every_built_in_scenario_names_its_sources() -> None:
    for scenario in builtin_scenarios().scenarios:
        assert scenario.sources and scenario.effective
    with pytest.raises(NotFound):
        select_scenarios(["alien-invasion"])
