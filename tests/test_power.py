"""Power and energy (issue 14 part 1): per-op power by hand, the cap's clock, POLCA's check."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import planner
from hardware_db.errors import InvalidSpecError
from planner.evaluate import OpTime
from planner.ops import Op
from planner.power import (
    COMPUTE_SHARE,
    LINK_SHARE,
    MEMORY_SHARE,
    DevicePower,
    clock_scale,
    op_power_w,
    pass_power_w,
)

H100 = DevicePower(700.0, 140.0)


def _op(compute_s, memory_s, op_class="gemm", count=1.0):
    return OpTime(Op("x", op_class, count, 0.0), compute_s, memory_s, 0.0, 0.0)


def test_op_power_by_hand():
    # a GEMM at its achievable rate runs at TDP; decode's HBM-bound step at idle + 0.45 x (700 - 140)
    assert op_power_w(H100, _op(1.0, 0.3)) == pytest.approx(700.0)
    assert op_power_w(H100, _op(0.1, 1.0)) == pytest.approx(
        140.0 + 560.0 * min(1.0, 0.1 * COMPUTE_SHARE + MEMORY_SHARE)
    )
    comm = OpTime(Op("ar", "comm", 1.0, 0.0), 0.0, 0.0, 1.0, 0.0)
    assert op_power_w(H100, comm) == pytest.approx(140.0 + 560.0 * LINK_SHARE)


def test_pass_power_is_the_time_weighted_mean():
    gemm, read = _op(2.0, 0.5, count=1.0), _op(0.0, 1.0, "elementwise", count=2.0)  # 2 s at 700 W, 2 x 1 s
    expected = (700.0 * 2.0 + (140.0 + 560.0 * MEMORY_SHARE) * 2.0) / 4.0
    assert pass_power_w(H100, [gemm, read]) == pytest.approx(expected)


def test_cap_clock_by_hand():
    # 560 W on a 700 W part idling at 140 W leaves 420 W of 560 W: clock = 0.75^(1/2) = 0.8660
    assert clock_scale(H100, 560.0) == pytest.approx(0.75**0.5)
    assert clock_scale(H100, None) == 1.0
    with pytest.raises(planner.PlannerError, match="idle"):
        clock_scale(H100, 100.0)


def test_polca_a_20_percent_cap_costs_inference_at_most_7_percent():
    # POLCA (arXiv 2308.12908): capping LLM inference servers 20% below peak power costs <= 7%
    kw = dict(tp=8, concurrency=64, input_len=2048, output_len=256)
    free = planner.estimate_inference("llama3.1-70b", "h100-sxm", **kw)
    capped = planner.estimate_inference("llama3.1-70b", "h100-sxm", power_cap_w=0.8 * 700, **kw)
    loss = 1.0 - capped.throughput_tokens_per_s / free.throughput_tokens_per_s
    assert 0.0 < loss <= 0.07
    assert capped.avg_power_w < free.avg_power_w


@settings(max_examples=12, deadline=None)
@given(st.sampled_from([1, 8, 64]), st.sampled_from([256, 4096]), st.floats(300.0, 700.0))
def test_a_cap_never_speeds_up_and_is_never_exceeded(concurrency, input_len, cap):
    kw = dict(tp=1, concurrency=concurrency, input_len=input_len, output_len=128)
    free = planner.estimate_inference("llama3.1-8b", "h100-sxm", **kw)
    capped = planner.estimate_inference("llama3.1-8b", "h100-sxm", power_cap_w=cap, **kw)
    assert capped.throughput_tokens_per_s <= free.throughput_tokens_per_s * (1 + 1e-9)
    assert capped.avg_power_w <= cap + 1e-6
    assert capped.energy_j_per_token == pytest.approx(capped.avg_power_w / capped.throughput_tokens_per_s)


def test_training_power_sits_between_idle_and_tdp_and_sweeps_agree_with_scalars():
    t = planner.estimate_training("llama3.1-70b", "h100-sxm", 64, tp=8, pp=2, global_batch=512, seq_len=4096)
    assert 140.0 < t.avg_power_w < 700.0
    assert t.energy_j_per_token == pytest.approx(t.avg_power_w * 64 / t.tokens_per_s)
    many = planner.estimate_inference("llama3.1-8b", "h100-sxm", concurrency=np.array([1, 16]), input_len=1024)
    one = planner.estimate_inference("llama3.1-8b", "h100-sxm", concurrency=16, input_len=1024)
    assert many.avg_power_w[1] == pytest.approx(one.avg_power_w)


def test_polca_oversubscription_closed_forms():
    from planner.oversubscription import POLCA_INFERENCE_PEAK, POLCA_TRAINING_PEAK, oversubscribe

    row = 40 * 10_200.0  # 40 DGX-class servers at their rated power
    plain = oversubscribe(row, 10_200.0, POLCA_INFERENCE_PEAK)
    assert pytest.approx(1.266, abs=1e-3) == 1 / POLCA_INFERENCE_PEAK
    assert (plain.servers_provisioned, plain.servers) == (40, 50)  # floor(40 / 0.79)
    # POLCA's +30% (52 servers) once the low-priority half is capped at 74.5% of rated at the peaks
    polca = oversubscribe(row, 10_200.0, POLCA_INFERENCE_PEAK, low_priority_share=0.5, capped_ratio=0.745)
    assert polca.servers == 52 and polca.gain == pytest.approx(0.30)
    assert polca.worst_case_w <= row
    assert oversubscribe(row, 10_200.0, POLCA_TRAINING_PEAK).servers == 41  # training leaves ~3%
    with pytest.raises(planner.PlannerError, match="capped-ratio"):
        oversubscribe(row, 10_200.0, 0.79, capped_ratio=0.9)


def test_capped_servers_lose_little_on_inference():
    from planner.oversubscription import capped_loss

    def run(cap=None):
        return planner.estimate_inference("llama3.1-70b", "h100-sxm", tp=8, concurrency=64, power_cap_w=cap)

    loss = capped_loss(run(), 0.79, 0.745, run)
    assert 0.0 <= loss < 0.07
    assert capped_loss(run(), 0.79, 0.79, run) == 0.0


def test_a_power_cap_is_one_finite_number() -> None:
    for bad in (np.array([500.0, 600.0]), float("nan"), "500"):
        with pytest.raises(InvalidSpecError, match="a power cap is one finite number of watts"):
            planner.estimate_inference("llama3.1-8b", "h100-sxm", batch=4, power_cap_w=bad)  # type: ignore[arg-type]
    # numpy scalars are numbers like any other
    assert planner.estimate_inference("llama3.1-8b", "h100-sxm", batch=4, power_cap_w=np.float64(500.0)).fits
