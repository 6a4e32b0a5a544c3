"""Solvers: brute-force agreement, constraints never violated, explained rejections, queueing formulas."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware_db.errors import InfeasiblePlanError
from planner.catalog import Catalog
from planner.queueing import md1_max_rate, md1_wait_percentile_s, md1_wait_s
from planner.training import estimate_training
from solvers.inference_plan import Slo, Workload, plan_inference
from solvers.training_plan import plan_training


def test_md1_matches_pollaczek_khinchine() -> None:
    # rho = 0.5, D = 0.2 s: Wq = rho D / (2 (1 - rho)) = 0.1 s
    assert md1_wait_s(2.5, 0.2) == pytest.approx(0.1)
    assert md1_wait_s(5.0, 0.2) == math.inf
    # the max rate inverts the mean-wait formula exactly
    rate = md1_max_rate(0.2, 0.5)
    assert md1_wait_s(rate, 0.2) + 0.2 == pytest.approx(0.5)
    # percentiles: P(wait > 0) = rho, so a quantile below 1 - rho waits nothing; tails grow with p
    assert md1_wait_percentile_s(1.0, 0.2, 0.5) == 0.0
    assert md1_wait_percentile_s(4.0, 0.2, 0.99) > md1_wait_percentile_s(4.0, 0.2, 0.9) > 0


def test_training_pick_equals_brute_force(catalog: Catalog) -> None:
    """On a small space the solver's pick is the best of every plan estimated one by one."""
    space = dict(micro_batches=(1, 2), zero_stages=(0, 1), recompute=("none", "full"), virtual_stages=(1, 2))
    plans = plan_training(
        "llama3.1-8b",
        "h100-sxm",
        16,
        global_batch=64,
        seq_len=2048,
        context_parallel=(1,),
        catalog=catalog,
        top=3,
        **space,
    )
    best_tps, best_cfg = -1.0, None
    for tp, pp in itertools.product((1, 2, 4, 8), (1, 2, 4, 8, 16)):
        if 16 % (tp * pp):
            continue
        dp = 16 // (tp * pp)
        for mb, z, rc, v in itertools.product((1, 2), (0, 1), ("none", "full"), (1, 2)):
            if 64 % (mb * dp) or (v > 1 and pp == 1):
                continue
            r = estimate_training(
                "llama3.1-8b",
                "h100-sxm",
                16,
                tp=tp,
                pp=pp,
                zero=z,
                micro_batch=mb,
                global_batch=64,
                seq_len=2048,
                recompute=rc,
                virtual_stages=v,
                catalog=catalog,
            )
            if r.fits and r.tokens_per_s > best_tps:
                best_tps, best_cfg = r.tokens_per_s, (tp, pp, mb, z, rc, v)
    b = plans.best.result
    assert (b.tp, b.pp, b.micro_batch, b.zero, b.recompute, b.virtual_stages) == best_cfg
    assert b.tokens_per_s == pytest.approx(best_tps)


def test_training_plans_fit_and_rejections_name_the_constraint(catalog: Catalog) -> None:
    plans = plan_training("llama3.1-70b", "h100-sxm", 64, global_batch=512, seq_len=4096, catalog=catalog)
    assert all(p.result.fits for p in plans.plans)
    assert all(p.result.memory_per_device_bytes <= p.result.capacity_bytes for p in plans.plans)
    tps = [p.result.tokens_per_s for p in plans.plans]
    assert tps == sorted(tps, reverse=True)
    reasons = " ".join(plans.rejected)
    assert "memory" in reasons and "tp > scale-up domain" in reasons and "global batch not divisible" in reasons
    with pytest.raises(InfeasiblePlanError, match=r"no plan for llama3\.1-405b on 8 x h100-sxm: memory"):
        plan_training("llama3.1-405b", "h100-sxm", 8, global_batch=64, seq_len=4096, catalog=catalog)


@settings(max_examples=12, deadline=None)
@given(
    rate=st.floats(0.5, 30),
    ttft=st.floats(0.2, 3.0),
    tpot=st.floats(0.02, 0.2),
    input_len=st.sampled_from([256, 1024, 4096]),
    output_len=st.sampled_from([64, 256, 1024]),
    percentile=st.sampled_from([None, 0.9]),
)
def test_no_serving_plan_violates_its_slo(
    catalog: Catalog, rate: float, ttft: float, tpot: float, input_len: int, output_len: int, percentile: float | None
) -> None:
    w = Workload(rate, input_len, output_len, input_len, output_len)
    try:
        plans = plan_inference("llama3.1-8b", ["h100-sxm", "l40s"], w, Slo(ttft, tpot, percentile), catalog=catalog)
    except InfeasiblePlanError as e:
        assert "meets TTFT" in str(e)
        return
    for p in plans.plans:
        assert p.ttft_s <= ttft * (1 + 1e-9) and p.tpot_s <= tpot * (1 + 1e-9)
        assert p.utilization <= 1.0 + 1e-9 and p.devices >= 1


def test_serving_pick_equals_brute_force(catalog: Catalog) -> None:
    """Aggregated only, one hardware: the fewest devices over every (tp, concurrency) tried by hand."""
    w = Workload(8.0, 1024, 256, 1024, 256)
    slo = Slo(0.5, 0.04)
    plans = plan_inference(
        "llama3.1-8b",
        "h100-sxm",
        w,
        slo,
        weight_precisions=("bf16",),
        disaggregated=False,
        objective="devices",
        catalog=catalog,
    )
    from planner.inference import estimate_inference
    from solvers.inference_plan import _CONCURRENCY_GRID

    best = math.inf
    for tp in (1, 2, 4, 8):
        probe = estimate_inference("llama3.1-8b", "h100-sxm", tp, tp=tp, concurrency=1, catalog=catalog)
        for c in _CONCURRENCY_GRID[probe.max_concurrency >= _CONCURRENCY_GRID]:
            r = estimate_inference(
                "llama3.1-8b",
                "h100-sxm",
                tp,
                tp=tp,
                concurrency=int(c),
                input_len=1024,
                output_len=256,
                catalog=catalog,
            )
            if r.ttft_s <= slo.ttft_s and r.tpot_s <= slo.tpot_s:
                rate = c / (r.ttft_s + 255 * r.tpot_s)
                best = min(best, math.ceil(8.0 / rate) * tp)
    assert plans.best.devices == best


def test_serving_rejections_name_the_binding_target(catalog: Catalog) -> None:
    with pytest.raises(InfeasiblePlanError) as e:
        plan_inference("llama3.1-70b", "l4", Workload(1, 1024, 256, 1024, 256), Slo(0.5, 0.001), catalog=catalog)
    assert "TPOT" in str(e.value) or "does not fit" in str(e.value)
    plans = plan_inference(
        "llama3.1-8b",
        ["h100-sxm", "l4"],
        Workload(2, 1024, 256, 1024, 256),
        Slo(1.0, 0.03),
        objective="devices",
        catalog=catalog,
    )
    assert any("TPOT" in why for why in plans.rejected.values())
    assert np.all([p.ttft_s <= 1.0 for p in plans.plans])
