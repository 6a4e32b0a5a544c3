"""The multi-year fleet plan (issue 14): the scenario loader's one-line errors, a TCO computed by
hand, the MILP against brute force, monotonicity of the optimum, infeasibility that names the year
and the binding constraint, the result's frames and report, and one small engine run.

Capacities are given (no engine) except in the last test, so the file runs in seconds."""

from __future__ import annotations

import copy
import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hardware_db.errors import InfeasiblePlanError, InvalidSpecError
from planner.costs import HOURS_PER_YEAR
from solvers.fleet_plan import Capacity, plan_fleet
from workloads.fleet import FLEET_DATA, load_fleet, parse_fleet

GAP = 1e-9  # prove the optimum: the properties compare optima
TDP = {"old-gpu": 400.0, "new-gpu": 1000.0, "mid-gpu": 700.0}


def scenario(**changes: Any) -> dict[str, Any]:
    """Two years, one site, one serving workload, two device types on sale, no inventory."""
    base: dict[str, Any] = {
        "name": "t",
        "start_year": 2026,
        "end_year": 2027,
        "discount_rate": 0.1,
        "tco": {
            "life_years": 4,
            "pue": 1.3,
            "usd_per_kwh": 0.1,
            "colocation_usd_per_kw_month": 150,
            "maintenance_fraction_per_year": 0.04,
            "network_usd_per_device": 1000,
            "host_overhead_fraction": 0.5,
        },
        "sites": [{"id": "s1", "power_mw": 1.0, "space_devices": 100}],
        "workloads": [
            {
                "id": "chat",
                "kind": "serving",
                "model": "m",
                "rate_per_s": [10.0, 25.0],
                "input_len": 100,
                "output_len": 100,
                "ttft_s": 1,
                "tpot_s": 0.1,
            }
        ],
        "purchasable": [
            {"hardware": "old-gpu", "price_usd": [10000, 9000]},
            {"hardware": "new-gpu", "price_usd": [30000, 25000]},
        ],
    }
    base.update(changes)
    return base


CAPS = {("old-gpu", "chat"): (3.0, 300.0), ("new-gpu", "chat"): (10.0, 800.0), ("mid-gpu", "chat"): (6.0, 500.0)}


def plan(sc: dict[str, Any], caps: dict[Any, Any] = CAPS, **kw: Any) -> Any:
    return plan_fleet(sc, capacities=caps, tdp_w=TDP, mip_gap=GAP, time_limit_s=20, **kw)


# ---------------------------------------------------------------------------------------------
# the loader


def test_shipped_example_loads() -> None:
    sc = load_fleet("example")
    assert sc.years == (2026, 2027, 2028, 2029, 2030)
    assert {i.hardware for i in sc.inventory} == {"a100-sxm-80gb", "h100-sxm"}
    assert (FLEET_DATA / "example.yaml").is_file()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"discount_rate": 2}, "discount_rate: Input should be less than or equal to 1"),
        ({"end_year": 2090}, "end_year: must be in [start_year, start_year + 29]"),
        (
            {"sites": [{"id": "s1", "power_mw": -1, "space_devices": 10}]},
            "sites[0] (s1).power_mw: must be a number in [0",
        ),
        ({"sites": [{"id": "s1", "power_mw": [1, 2, 3], "space_devices": 10}]}, "one value per year 2026..2027"),
        ({"sites": [{"id": "s1", "power_mw": {2026: 1}, "space_devices": 10}]}, "missing years [2027]"),
        ({"purchasable": [{"hardware": "old-gpu", "price_usd": 0}]}, "must be a number in (0, 1e+08] USD"),
        ({"purchasable": [{"hardware": "old-gpu", "price_usd": 1, "sites": ["nowhere"]}]}, "unknown site 'nowhere'"),
        ({"inventory": [{"hardware": "old-gpu", "count": 1, "bought": 2010, "site": "s1"}]}, "retires before 2026"),
    ],
)
def test_loader_errors_name_the_file_field_and_range(change: dict[str, Any], expected: str, tmp_path: Path) -> None:
    import yaml

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(scenario(**change)))
    with pytest.raises(InvalidSpecError) as err:
        load_fleet(path)
    assert str(err.value).startswith(f"{path}: ") and expected in str(err.value) and "\n" not in str(err.value)


def test_loader_drops_the_workload_kind_from_the_location() -> None:
    sc = scenario()
    sc["workloads"] = [{"id": "ft", "kind": "training", "model": "m", "tokens_per_year": 1e12, "seq_len": 0}]
    with pytest.raises(InvalidSpecError, match=r"^x\.yaml: workloads\[0\] \(ft\)\.seq_len: Input should be greater"):
        parse_fleet(sc, "x.yaml")


# ---------------------------------------------------------------------------------------------
# a TCO by hand


def test_one_device_one_year_by_hand() -> None:
    """One device for one year: capex x CRF + energy + facility + maintenance, computed here."""
    sc = scenario(end_year=2026, purchasable=[{"hardware": "new-gpu", "price_usd": 30000}])
    sc["workloads"][0]["rate_per_s"] = 10.0  # exactly one new-gpu (10 req/s each)
    sc["tco"]["network_usd_per_device"] = 0
    result = plan(sc)
    crf = 0.1 / (1 - 1.1**-4)  # 4-year life at 10 %
    capex = 30000 * crf
    energy = 800 * 1.5 * 1.3 * 0.1 * 8760 / 1000  # avg W x (1 + host) x PUE x $/kWh x h / 1000
    facility = 1000 * 1.5 / 1000 * 150 * 12  # TDP x (1 + host) in kW x $/kW-month x 12
    maintenance = 30000 * 0.04
    assert result.npv_usd == pytest.approx(capex + energy + facility + maintenance, rel=1e-9)
    by = {r["component"]: r["usd"] for r in result.costs}
    assert by == pytest.approx(
        {"capex": capex, "network": 0.0, "energy": energy, "facility": facility, "maintenance": maintenance}
    )
    assert result.workloads[0]["usd_per_million_tokens"] == pytest.approx(
        (capex + energy + facility + maintenance) / (10 * 100 * HOURS_PER_YEAR * 3600) * 1e6
    )
    upfront = plan({**sc, "capex": "upfront"})
    assert upfront.npv_usd == pytest.approx(30000 + energy + facility + maintenance, rel=1e-9)


# ---------------------------------------------------------------------------------------------
# brute force


def brute_force(sc: dict[str, Any], caps: dict[Any, Any]) -> float:
    """Every purchase (type, year) and every retirement, one site, one workload, annualized capex;
    each year's allocation is the cheapest energy per request first (exact for one workload). A
    type never needs more devices in a year than serve the peak demand alone (idle ones only cost)."""
    a, r, site = sc["tco"], sc["discount_rate"], sc["sites"][0]
    host, m = 1 + a["host_overhead_fraction"], a["maintenance_fraction_per_year"]
    disc = [1.0, 1 / (1 + r)]
    crf = r / (1 - (1 + r) ** -a["life_years"])
    types = [p["hardware"] for p in sc["purchasable"]]
    prices = {p["hardware"]: p["price_usd"] for p in sc["purchasable"]}
    demand = sc["workloads"][0]["rate_per_s"]
    energy = {h: caps[h, "chat"][1] * host * a["pue"] * a["usd_per_kwh"] * HOURS_PER_YEAR / 1000 for h in types}
    fixed = {h: TDP[h] * host / 1000 * a["colocation_usd_per_kw_month"] * 12 for h in types}
    most = {h: math.ceil(max(demand) / caps[h, "chat"][0]) for h in types}
    best = math.inf
    for b in itertools.product(*(range(most[h] + 1) for h in types for _ in (0, 1))):
        buys = {(h, t): b[2 * i + t] for i, h in enumerate(types) for t in (0, 1)}
        for kept in itertools.product(*(range(buys[h, 0] + 1) for h in types)):  # year-0 devices kept in year 1
            keep = dict(zip(types, kept, strict=True))
            fleet = [{h: buys[h, 0] for h in types}, {h: keep[h] + buys[h, 1] for h in types}]
            cost = 0.0
            for t, n in enumerate(fleet):
                power = sum(n[h] * TDP[h] * host for h in types)
                if sum(n.values()) > site["space_devices"] or power > site["power_mw"] * 1e6:
                    cost = math.inf
                    break
                cost += disc[t] * _serve(demand[t], n, caps, energy)
                for h in types:
                    paid = prices[h][0] * (buys[h, 0] if t == 0 else keep[h]) + (prices[h][1] * buys[h, 1] if t else 0)
                    cost += disc[t] * (fixed[h] * n[h] + m * paid)
                    cost += buys[h, t] * (prices[h][t] + a["network_usd_per_device"]) * crf * sum(disc[t:])
            best = min(best, cost)
    return best


def _serve(demand: float, n: dict[str, int], caps: dict[Any, Any], energy: dict[str, float]) -> float:
    left, cost = demand, 0.0
    for h in sorted(n, key=lambda h: energy[h] / caps[h, "chat"][0]):
        used = min(n[h], left / caps[h, "chat"][0])
        cost += used * energy[h]
        left -= used * caps[h, "chat"][0]
    return cost if left <= 1e-9 else math.inf


@pytest.mark.parametrize("seed", range(6))
def test_milp_equals_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    sc = scenario()
    sc["workloads"][0]["rate_per_s"] = [float(rng.uniform(2, 12)), float(rng.uniform(5, 20))]
    sc["purchasable"] = [
        {"hardware": "old-gpu", "price_usd": [float(x) for x in rng.uniform(5000, 15000, 2)]},
        {"hardware": "new-gpu", "price_usd": [float(x) for x in rng.uniform(20000, 40000, 2)]},
    ]
    sc["sites"][0]["power_mw"] = float(rng.uniform(0.002, 0.006))  # 1-4 new-gpu at 1.5 kW: binds sometimes
    expected = brute_force(sc, CAPS)
    if math.isinf(expected):
        with pytest.raises(InfeasiblePlanError):
            plan(sc)
    else:
        assert plan(sc).npv_usd == pytest.approx(expected, rel=1e-7)


# ---------------------------------------------------------------------------------------------
# properties

PRICES = st.lists(st.floats(3000, 60000), min_size=2, max_size=2)
RATES = st.lists(st.floats(1, 60), min_size=2, max_size=2)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rates=RATES, prices=PRICES)
def test_adding_a_purchasable_option_never_raises_the_optimum(rates: list[float], prices: list[float]) -> None:
    sc = scenario()
    sc["workloads"][0]["rate_per_s"] = rates
    before = plan(sc).npv_usd
    more = copy.deepcopy(sc)
    more["purchasable"].append({"hardware": "mid-gpu", "price_usd": prices})
    assert plan(more).npv_usd <= before * (1 + 1e-9) + 1e-6


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rates=RATES, factor=st.floats(1.0, 3.0))
def test_raising_demand_never_lowers_the_optimum(rates: list[float], factor: float) -> None:
    sc = scenario()
    sc["workloads"][0]["rate_per_s"] = rates
    before = plan(sc).npv_usd
    sc["workloads"][0]["rate_per_s"] = [x * factor for x in rates]
    assert plan(sc).npv_usd >= before * (1 - 1e-9) - 1e-6


# ---------------------------------------------------------------------------------------------
# infeasible scenarios


def test_demand_beyond_the_power_budget_names_the_year_and_the_constraint() -> None:
    sc = scenario()
    sc["sites"][0]["power_mw"] = 0.02  # 13 new-gpu at 1.5 kW: 130 req/s
    sc["workloads"][0]["rate_per_s"] = [100.0, 500.0]
    with pytest.raises(InfeasiblePlanError) as err:
        plan(sc)
    msg = str(err.value)
    assert "\n" not in msg and "2027" in msg and "power budget binds" in msg and "s1 0.02 MW" in msg


def test_a_workload_nobody_can_serve_is_named() -> None:
    with pytest.raises(InfeasiblePlanError, match=r"in 2026: no device .* can serve workload 'chat'"):
        plan(scenario(), caps={})


# ---------------------------------------------------------------------------------------------
# the result


def with_inventory() -> dict[str, Any]:
    sc = scenario(end_year=2028)
    sc["workloads"][0]["rate_per_s"] = [20.0, 30.0, 60.0]
    sc["inventory"] = [{"hardware": "old-gpu", "count": 8, "bought": 2024, "site": "s1", "price_usd": 12000}]
    sc["sites"].append({"id": "s2", "power_mw": [0, 0.05, 0.05], "space_devices": 50})
    sc["purchasable"] = [
        {"hardware": "old-gpu", "price_usd": {2026: 10000, 2027: 9000}},  # not on sale in 2028
        {"hardware": "new-gpu", "price_usd": [30000, 25000, 20000], "sites": ["s2"]},
    ]
    return sc


def test_frames_balance_and_serialise() -> None:
    result = plan(with_inventory())
    frame = result.to_frame()
    assert len(frame) == 3 * 2 and len(result.cost_frame()) == 3 * 5
    for hw, rows in frame.groupby("hardware"):
        prev = 8.0 if hw == "old-gpu" else 0.0
        for _, row in rows.sort_values("year").iterrows():
            assert row.installed == pytest.approx(prev + row.bought - row.retired)
            assert row["in_use_chat"] <= row.installed + 1e-9
            prev = row.installed
    assert result.cost_frame()["npv_usd"].sum() == pytest.approx(result.npv_usd, rel=1e-9)
    assert all(r["power_provisioned_w"] <= r["power_budget_w"] + 1e-6 for r in result.sites)
    assert json.loads(json.dumps(result.to_dict()))["status"] == "optimal"
    assert result.existing[0]["in_service_until"] == 2027  # bought 2024, 4-year life (the scenario's)


def test_remaining_life_retires_existing_devices() -> None:
    sc = with_inventory()
    sc["inventory"][0] |= {"bought": 2020, "remaining_years": 1}
    result = plan(sc)
    assert result.existing[0]["in_service_until"] == 2026
    assert next(r for r in result.fleet if (r["year"], r["hardware"]) == (2027, "old-gpu"))["retired_end_of_life"] >= 0
    with pytest.raises(InvalidSpecError, match="life_years or remaining_years, not both"):
        sc["inventory"][0]["life_years"] = 9
        parse_fleet(sc)


def test_cbc_agrees_with_highs() -> None:
    sc = with_inventory()
    assert plan(sc, solver="cbc").npv_usd == pytest.approx(plan(sc).npv_usd, rel=1e-6)


def test_report_has_the_three_figures(tmp_path: Path) -> None:
    from planner.report_fleet import fleet_report

    out = tmp_path / "fleet.html"
    page = fleet_report(plan(with_inventory()), out)
    assert out.read_text() == page
    for title in ("Cost per year by component", "Devices installed per year", "against its budget"):
        assert title in page


def test_capacity_objects_and_tuples_agree() -> None:
    caps = {k: Capacity(*v) for k, v in CAPS.items()}
    assert plan(scenario(), caps=caps).npv_usd == pytest.approx(plan(scenario()).npv_usd)


# ---------------------------------------------------------------------------------------------
# the engine, once


def test_engine_capacities_on_a_small_scenario() -> None:
    sc = scenario(end_year=2026)
    sc["workloads"][0].update(model="llama3.1-8b", rate_per_s=20.0, input_len=512, output_len=128, tpot_s=0.05)
    sc["purchasable"] = [{"hardware": "h100-sxm", "price_usd": 40000}]
    result = plan_fleet(sc, time_limit_s=20)
    (cap,) = result.capacities
    assert cap["per_device"] > 1 and cap["power_source"] == "engine" and 0 < cap["avg_power_w"] <= 700
    assert result.fleet[0]["installed"] == math.ceil(20.0 / cap["per_device"])
