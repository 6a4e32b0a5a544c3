"""The Mélange-style GPU mix (solvers.mix_plan) and the length distributions it takes (workloads.lengths)."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware_db.errors import InfeasiblePlanError, InvalidSpecError
from solvers.inference_plan import Slo, Workload, plan_inference
from solvers.mix_plan import instances_for, plan_mix, single_types, solve_mix
from workloads.lengths import LengthDistribution, bucket_samples, load_length_distribution, shipped_distributions

# Mélange's README example (github.com/tyler-griggs/melange-release, README.md at d46ab438 and
# melange/config/example.json at ebba701b): the solver answers 3 x A10G + 1 x A100-80GB = $6.70/h.
README_PROFILES = {
    "A10G": {"usd_per_hour": 1.01, "throughput": [[2, 1], [5, 2]]},
    "A100-80GB": {"usd_per_hour": 3.67, "throughput": [[20, 20], [40, 20]]},
}
README_DISTRIBUTION = [[0.2, 0.1], [0.5, 0.2]]


@pytest.mark.parametrize("solver", ["highs", "cbc"])
def test_melange_readme_example(solver: str) -> None:
    plan = plan_mix(profiles=README_PROFILES, distribution=README_DISTRIBUTION, rate=30, slices=1, solver=solver)
    print(f"Mélange README example ({solver}): {plan.instances} = ${plan.usd_per_hour:.2f}/h")
    assert plan.instances == {"A10G": 3, "A100-80GB": 1}
    assert plan.usd_per_hour == pytest.approx(6.70)
    assert plan.status == "optimal" and plan.mip_gap == 0.0
    assert plan.best_single_type == "A100-80GB" and plan.best_single_usd_per_hour == pytest.approx(7.34)
    assert plan.saving_usd_per_hour == pytest.approx(0.64)
    assert plan.utilization["A10G"] == pytest.approx(1.0) and plan.utilization["A100-80GB"] == pytest.approx(0.825)
    json.dumps(plan.to_dict())
    assert len(plan.to_frame()) == 2


def test_readme_example_from_a_profiles_csv(tmp_path) -> None:  # type: ignore[no-untyped-def]
    lines = ["type,usd_per_hour,input_bucket,output_bucket,max_rate_per_s"]
    for name, p in README_PROFILES.items():
        for (i, j), v in np.ndenumerate(np.array(p["throughput"])):
            lines.append(f"{name},{p['usd_per_hour']},{i},{j},{v}")
    path = tmp_path / "profiles.csv"
    path.write_text("\n".join(lines) + "\n")
    plan = plan_mix(profiles_csv=path, distribution=README_DISTRIBUTION, rate=30, slices=1)
    assert plan.usd_per_hour == pytest.approx(6.70)


# ---- properties on small instances ---------------------------------------------------------------


@st.composite
def instances(draw):  # type: ignore[no-untyped-def]
    """Types with positive integer throughputs (so each type can serve alone), integer-weighted buckets."""
    n_types = draw(st.integers(1, 3))
    m, n = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    tput = np.array(draw(st.lists(st.integers(1, 20), min_size=n_types * m * n, max_size=n_types * m * n)), float)
    prices = np.array(draw(st.lists(st.sampled_from([0.5, 1.0, 1.5, 2.5, 4.0]), min_size=n_types, max_size=n_types)))
    weights = np.array(draw(st.lists(st.integers(0, 4), min_size=m * n, max_size=m * n)), float)
    if weights.sum() == 0:
        weights[0] = 1.0
    rate = float(draw(st.integers(1, 40)))
    return prices, tput.reshape(n_types, m * n), weights / weights.sum(), rate


def _cost(prices, tput, shares, rate, slices):  # type: ignore[no-untyped-def]
    sol = solve_mix(prices, tput, shares * rate, slices, time_limit_s=20, mip_gap=0.0)
    return sol.usd_per_hour(prices)


def _brute_force(prices, tput, shares, rate, slices):  # type: ignore[no-untyped-def]
    bucket = np.repeat(np.flatnonzero(shares > 0), slices)
    slice_rate = shares[bucket] * rate / slices
    best = math.inf
    for types in itertools.product(range(len(prices)), repeat=len(bucket)):
        t = np.array(types)
        load = np.bincount(t, weights=slice_rate / tput[t, bucket], minlength=len(prices))
        best = min(best, float(prices @ instances_for(load)))
    return best


@settings(max_examples=40, deadline=None)
@given(instances(), st.integers(1, 2))
def test_more_slices_never_cost_more(case, slices) -> None:  # type: ignore[no-untyped-def]
    # A refinement (k slices -> 2k) can copy any k-slice assignment; a non-multiple need not.
    prices, tput, shares, rate = case
    assert _cost(prices, tput, shares, rate, 2 * slices) <= _cost(prices, tput, shares, rate, slices) + 1e-9


@settings(max_examples=40, deadline=None)
@given(instances(), st.integers(1, 3), st.floats(1.0, 3.0))
def test_a_higher_rate_never_costs_less(case, slices, factor) -> None:  # type: ignore[no-untyped-def]
    prices, tput, shares, rate = case
    assert _cost(prices, tput, shares, rate * factor, slices) >= _cost(prices, tput, shares, rate, slices) - 1e-9


@settings(max_examples=40, deadline=None)
@given(instances(), st.integers(1, 3))
def test_the_mix_never_costs_more_than_the_best_single_type(case, slices) -> None:  # type: ignore[no-untyped-def]
    prices, tput, shares, rate = case
    singles = single_types(prices, tput, shares * rate)
    assert all(cost is not None for _, _, cost in singles)  # each type serves every bucket alone
    best = min(cost for _, _, cost in singles if cost is not None)
    assert _cost(prices, tput, shares, rate, slices) <= best + 1e-9


@settings(max_examples=30, deadline=None)
@given(instances(), st.integers(1, 2))
def test_the_ilp_equals_brute_force(case, slices) -> None:  # type: ignore[no-untyped-def]
    prices, tput, shares, rate = case
    assert _cost(prices, tput, shares, rate, slices) == pytest.approx(_brute_force(prices, tput, shares, rate, slices))


# ---- refusals --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"rate": -1.0}, "rate"),
        ({"rate": float("nan")}, "rate"),
        ({"slices": 0}, "slices"),
        ({"distribution": [[0.5, 0.1], [0.5, 0.2]]}, "sum to 1"),
        ({"distribution": [[0.2, -0.1], [0.7, 0.2]]}, ">= 0"),
        ({"distribution": [0.5, 0.5]}, "2-D"),
        ({"profiles": {"A": {"usd_per_hour": 1.0, "throughput": [[1, 2, 3]]}}}, "throughput"),
        ({"profiles": {"A": {"usd_per_hour": -1.0, "throughput": [[1, 1], [1, 1]]}}}, "usd_per_hour"),
        ({"profiles": {"A": {"usd_per_hour": 1.0, "throughput": [[1, -1], [1, 1]]}}}, "throughput"),
        ({"time_limit_s": 0.0}, "time-limit"),
        ({"solver": "gurobi"}, "solver"),
    ],
)
def test_bad_input_is_one_clear_line(kwargs, field) -> None:  # type: ignore[no-untyped-def]
    args = {"profiles": README_PROFILES, "distribution": README_DISTRIBUTION, "rate": 30.0, **kwargs}
    with pytest.raises(InvalidSpecError, match=field) as e:
        plan_mix(**args)
    assert "\n" not in str(e.value)


def test_unknown_hardware_is_invalid_spec() -> None:
    with pytest.raises(InvalidSpecError, match="hardware"):
        plan_mix("llama3.1-8b", ["no-such-gpu"], distribution="azure-conversation-2023", rate=1, slo=Slo(1, 0.1))


def test_a_bucket_no_profile_serves_is_infeasible() -> None:
    profiles = {"A": {"usd_per_hour": 1.0, "throughput": [[1, 0], [1, 1]]}}
    with pytest.raises(InfeasiblePlanError, match=r"bucket \(input bucket 0, output bucket 1\)") as e:
        plan_mix(profiles=profiles, distribution=README_DISTRIBUTION, rate=1)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(("slo", "binding"), [(Slo(30.0, 0.0005), "TPOT binds"), (Slo(0.001, 1.0), "TTFT binds")])
def test_the_engine_names_the_binding_constraint(slo, binding) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InfeasiblePlanError, match=binding) as e:
        plan_mix("llama3.1-8b", ["a10g:1", "h100-sxm:1"], distribution="azure-conversation-2023", rate=5, slo=slo)
    assert "bucket in " in str(e.value) and "\n" not in str(e.value)


# ---- profiles from the engine ------------------------------------------------------------------------


def test_engine_mix_on_a_shipped_distribution() -> None:
    plan = plan_mix(
        "llama3.1-8b",
        ["a10g:1", "l40s:1", "h100-sxm:1"],
        distribution="azure-conversation-2023",
        rate=60.0,
        slo=Slo(2.0, 0.05),
        rate_sweep=(0.5, 1.0, 2.0),
    )
    assert sum(plan.instances.values()) >= 1 and plan.status == "optimal"
    assert plan.usd_per_hour <= plan.best_single_usd_per_hour + 1e-9
    assert all(0 < plan.utilization[t] <= 1 + 1e-9 for t, n in plan.instances.items() if n)
    assert plan.usd_per_million_tokens and plan.usd_per_million_tokens > 0 and plan.profile_s > 0
    assert [r["rate_per_s"] for r in plan.cost_vs_rate] == [30.0, 60.0, 120.0]
    costs = [r["usd_per_hour"] for r in plan.cost_vs_rate]
    assert costs == sorted(costs)
    json.dumps(plan.to_dict())

    from planner.report_mix import mix_report

    page = mix_report(plan)
    assert "GPU mix for llama3.1-8b" in page and "Cost against the request rate" in page


def test_engine_profile_matches_plan_inference_goodput() -> None:
    """One bucket: the profile's rate is the aggregated planner's goodput per replica (same engine call)."""
    dist = LengthDistribution("one", (1, 2048), (1, 512), [[1.0]], [[1024]], [[256]])
    slo = Slo(2.0, 0.05)
    plan = plan_mix("llama3.1-8b", ["h100-sxm:1"], distribution=dist, rate=10.0, slo=slo)
    plans = plan_inference(
        "llama3.1-8b", "h100-sxm", Workload(10.0, 1024, 256), slo, weight_precisions=("bf16",), disaggregated=False
    )
    tp1 = next(c for c in plans.candidates if c["tp"] == 1 and c.get("pp", 1) == 1)
    assert plan.throughput["h100-sxm:tp1"][0][0] == pytest.approx(tp1["goodput_per_device"], rel=1e-9)


# ---- length distributions ---------------------------------------------------------------------------


def test_shipped_distributions_load_and_sum_to_one() -> None:
    names = shipped_distributions()
    assert {"azure-conversation-2023", "arxiv-summarization"} <= set(names)
    for name in names:
        d = load_length_distribution(name)
        assert d.shares.sum() == pytest.approx(1.0) and d.source
        assert d.input_len.shape == d.shares.shape and d.input_len.min() >= 1
        assert 1 <= d.mean_output_len <= d.output_edges[-1]


def test_samples_csv_and_bucket_table(tmp_path) -> None:  # type: ignore[no-untyped-def]
    samples = tmp_path / "samples.csv"
    samples.write_text("input_len,output_len\n100,10\n100,30\n3000,500\n")
    d = load_length_distribution(samples)
    assert d.shares.sum() == pytest.approx(1.0) and d.mean_output_len == pytest.approx(180.0)
    same = bucket_samples([100, 100, 3000], [10, 30, 500])
    assert np.array_equal(d.shares, same.shares)
    table = tmp_path / "table.csv"
    table.write_text("input_lo,input_hi,output_lo,output_hi,share\n1,512,1,128,0.75\n512,4096,128,1024,0.25\n")
    t = load_length_distribution(table)
    assert t.shape == (2, 2) and t.shares[0, 0] == pytest.approx(0.75) and t.shares[0, 1] == 0.0


def test_length_refusals(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidSpecError, match="unknown length distribution"):
        load_length_distribution("no-such-dataset")
    with pytest.raises(InvalidSpecError, match="outside the bucket edges"):
        bucket_samples([10, 5000], [10, 10], input_edges=(1, 100, 1000))
    with pytest.raises(InvalidSpecError, match="increasing"):
        LengthDistribution("x", (1, 1), (1, 10), [[1.0]])
