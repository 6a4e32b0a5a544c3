"""TCO (issue 14 part 2): a hand-computed owned and rented check, and the plans' tco objective."""

from __future__ import annotations

import pytest

import planner
from planner.costs import DEFAULT_TCO, TcoAssumptions, capital_recovery_factor, owned, rented, tco
from solvers import Slo, Workload, plan_inference

HAND = TcoAssumptions(
    life_years=5.0,
    pue=1.25,
    usd_per_kwh=0.10,
    colocation_usd_per_kw_month=150.0,
    maintenance_fraction_per_year=0.05,
    network_usd_per_device=3000.0,
    host_overhead_fraction=0.5,
    provisioned_overhead_fraction=0.5,
    discount_rate=0.08,
)


def test_owned_by_hand():
    # 8 devices of $30,000 at 500 W average (700 W TDP), 5 years at 8%:
    # CRF = 0.08 / (1 - 1.08^-5) = 0.250456; capex 8 x 30,000 x CRF / 8760 = $6.8618/h
    # network 8 x 3,000 x CRF / 8760 = $0.68618/h; energy 8 x 500 W x 1.5 x 1.25 x $0.10/kWh = $0.75/h
    # facility 8 x 0.7 kW x 1.5 x $150 x 12 / 8760 = $1.72603/h; maintenance 240,000 x 0.05 / 8760 = $1.36986/h
    crf = capital_recovery_factor(0.08, 5.0)
    assert crf == pytest.approx(0.250456, rel=1e-5)
    b = owned(30_000.0, 8, 500.0, 700.0, HAND)
    assert b.capex_usd_per_hour == pytest.approx(6.8618, rel=1e-4)
    assert b.network_usd_per_hour == pytest.approx(0.68618, rel=1e-4)
    assert b.energy_usd_per_hour == pytest.approx(0.75)
    assert b.facility_usd_per_hour == pytest.approx(1.72603, rel=1e-5)
    assert b.maintenance_usd_per_hour == pytest.approx(1.36986, rel=1e-5)
    assert b.total_usd_per_hour == pytest.approx(6.8618 + 0.68618 + 0.75 + 1.72603 + 1.36986, rel=1e-4)
    assert b.node_power_w == pytest.approx(8 * 500 * 1.5)
    assert capital_recovery_factor(0.0, 4.0) == 0.25  # straight line
    r = rented(2.69, 8, 500.0, HAND, "on-demand")
    assert r.total_usd_per_hour == pytest.approx(21.52)


def test_tco_of_an_estimate_and_refusals():
    r = planner.estimate_inference("llama3.1-70b", "h100-sxm", tp=8, concurrency=64, input_len=2048, output_len=256)
    t = tco(r)
    assert t.usd_per_million_tokens == pytest.approx(t.breakdown.total_usd_per_hour / (t.tokens_per_s * 3600) * 1e6)
    assert t.breakdown.energy_usd_per_hour == pytest.approx(
        r.avg_power_w * 8 * (1 + DEFAULT_TCO.host_overhead_fraction) * DEFAULT_TCO.pue * DEFAULT_TCO.usd_per_kwh / 1000
    )
    reserved = tco(r, ownership="reserved", reserved_discount=0.4)
    assert reserved.breakdown.total_usd_per_hour == pytest.approx(
        0.6 * tco(r, ownership="on-demand").breakdown.total_usd_per_hour
    )
    with pytest.raises(planner.PlannerError, match="capex"):
        tco(planner.estimate_inference("llama3.1-8b", "l40s"))
    with pytest.raises(planner.PlannerError, match="pue"):
        DEFAULT_TCO.with_(pue=0.5)


def test_tco_objective_ranks_by_owned_cost():
    plans = plan_inference("llama3.1-8b", ["h100-sxm", "b200"], Workload(4, 1024, 256), Slo(1.0, 0.05), objective="tco")
    costs = [p.usd_per_hour for p in plans.plans]
    assert costs == sorted(costs)
    assert all(c > 0 for c in costs)


def test_agent_plan_can_price_classes_at_owned_tco():
    from planner.catalog import load_catalog
    from planner.costs import owned_per_device_hour
    from solvers import plan_agent

    cat = load_catalog()
    plan = plan_agent("voice-agent", hardware=["h100-sxm", "a100-sxm-80gb"], ownership="owned")
    used = [r for r in plan.classes if r["instances"]]
    assert used
    for r in used:
        assert r["price_usd_per_hour"] == pytest.approx(owned_per_device_hour(cat.device(r["class"])))
    assert owned_per_device_hour(cat.device("l40s")) is None  # no capex in the catalogue
