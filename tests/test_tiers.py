"""Tier placement (planner.tiers): the greedy is the LP optimum, never worse than the fixed order,
and never exceeds a tier's capacity."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from planner.tiers import TensorClass, Tier, optimal_placement, ordered_placement


def _lp_read_s(classes: list[TensorClass], tiers: list[Tier]) -> float | None:
    """min sum x_ct a_c / B_t subject to each class placed whole in its allowed tiers and every
    tier's capacity: the transportation LP the greedy claims to solve."""
    nc, nt = len(classes), len(tiers)
    # in GB and GB/s: HiGHS is happier near 1
    cost = np.array([[c.reads_per_step / (t.bandwidth_bytes_per_s / 1e9) for t in tiers] for c in classes]).ravel()
    a_eq = np.zeros((nc, nc * nt))
    for i in range(nc):
        a_eq[i, i * nt : (i + 1) * nt] = 1.0
    a_ub = np.zeros((nt, nc * nt))
    for t in range(nt):
        a_ub[t, t::nt] = 1.0
    bounds = [(0.0, None if (c.tiers is None or t < c.tiers) else 0.0) for c in classes for t in range(nt)]
    res = linprog(
        cost,
        A_ub=a_ub,
        b_ub=[t.capacity_bytes / 1e9 for t in tiers],
        A_eq=a_eq,
        b_eq=[c.bytes_ / 1e9 for c in classes],
        bounds=bounds,
        method="highs",
    )
    return float(res.fun) if res.status == 0 else None


@st.composite
def instances(draw: st.DrawFn) -> tuple[list[TensorClass], list[Tier]]:
    nt = draw(st.integers(2, 4))
    bws = sorted((draw(st.floats(1e9, 5e12)) for _ in range(nt)), reverse=True)
    tiers = [Tier(f"t{i}", draw(st.floats(1e9, 200e9)), bw) for i, bw in enumerate(bws)]
    nc = draw(st.integers(1, 5))
    free = [draw(st.floats(1e-4, 1.0)) for _ in range(nc)]
    top = max(free)
    classes = []
    for i in range(nc):
        restricted = draw(st.booleans())
        # the greedy's condition: a class allowed fewer tiers reads more per byte than one allowed
        # more (activations pinned; the KV cache at one read per step ties the dense weights and
        # goes first; experts and embeddings read less)
        limit = draw(st.integers(1, nt)) if restricted else None
        reads = top * 1.001 + (nt - limit) * 0.5 + draw(st.floats(0.0, 0.4)) if limit else free[i]
        classes.append(TensorClass(f"c{i}", draw(st.floats(1e8, 150e9)), reads, limit))
    return classes, tiers


@settings(max_examples=150, deadline=None)
@given(instances())
def test_greedy_matches_the_lp_and_beats_the_fixed_order(case: tuple[list[TensorClass], list[Tier]]) -> None:
    classes, tiers = case
    best = optimal_placement(classes, tiers)
    fixed = ordered_placement(classes, tiers)
    # tier capacities are never exceeded, and every byte is somewhere or reported unplaced
    for t, tier in enumerate(best.tiers):
        assert best.tier_bytes(t) <= tier.capacity_bytes * (1 + 1e-9)
    assert np.allclose(best.total_bytes, [c.bytes_ for c in classes])
    lp = _lp_read_s(classes, tiers)
    if lp is None:  # no placement holds everything: neither places every byte
        assert np.sum(best.unplaced_bytes) > 0 and np.sum(fixed.unplaced_bytes) > 0
        return
    assert best.fits
    assert best.read_s() <= lp * (1 + 1e-7) + 1e-15
    if fixed.fits:
        assert best.read_s() <= fixed.read_s() * (1 + 1e-9) + 1e-15


def test_sparse_experts_spill_before_dense_weights() -> None:
    """A decode step at batch 1 reads a dense weight once and a routed expert with probability
    top_k / experts. With 20 GB of each and room for 30 GB in HBM, the fixed order (weights in the
    order given: experts first) leaves 10 GB of dense weights in host DRAM; the optimum leaves 10 GB
    of experts there instead, whose reads are 8/128 as many.
    Host bytes read per step: fixed 10 GB x 1 / 50 GB/s = 0.2 s; optimal 10 GB x (8/128) / 50 GB/s
    = 12.5 ms. HBM: fixed 20e9 x 8/128 + 10e9 = 11.25 GB; optimal 20e9 + 10e9 x 8/128 = 20.625 GB,
    at 3 TB/s."""
    tiers = [Tier("hbm", 30e9, 3e12), Tier("host-dram", 1e12, 50e9)]
    classes = [TensorClass("experts", 20e9, 8 / 128), TensorClass("dense", 20e9, 1.0)]
    fixed = ordered_placement(classes, tiers)
    best = optimal_placement(classes, tiers)
    assert fixed.in_tier("dense", "host-dram") == 10e9
    assert best.in_tier("experts", "host-dram") == 10e9
    assert np.isclose(fixed.read_s(), 11.25e9 / 3e12 + 0.2)
    assert np.isclose(best.read_s(), 20.625e9 / 3e12 + 0.0125)
    assert np.isclose(best.read_s(beyond_first=True), 0.0125)


def test_vectorised_over_scenarios_equals_one_by_one() -> None:
    tiers = [Tier("hbm", 80e9, 3.3e12), Tier("ddr", 500e9, 200e9), Tier("host", 1e12, 50e9)]
    kv = np.array([5e9, 40e9, 70e9])
    touched = np.array([0.05, 0.5, 1.0])
    classes = [
        TensorClass("activations", 1e9, tiers=1),
        TensorClass("kv", kv, 1.0, tiers=2),
        TensorClass("dense", 30e9, 1.0),
        TensorClass("experts", 60e9, touched),
    ]
    together = optimal_placement(classes, tiers)
    for i in range(3):
        one = optimal_placement(
            [
                TensorClass(
                    c.name,
                    np.asarray(c.bytes_).reshape(-1)[min(i, np.size(c.bytes_) - 1)],
                    np.asarray(c.reads_per_step).reshape(-1)[min(i, np.size(c.reads_per_step) - 1)],
                    c.tiers,
                )
                for c in classes
            ],
            tiers,
        )
        assert np.allclose(together.bytes_[..., i], one.bytes_)
        assert np.isclose(together.read_s()[i], one.read_s())


def test_scenarios_that_order_classes_differently_match_one_by_one() -> None:
    """Experts read more than the embedding table in one scenario and less in the other: the
    per-scenario order (the general path) must equal each scenario placed alone."""
    tiers = [Tier("hbm", 20e9, 3e12), Tier("host", 1e12, 50e9)]
    classes = [
        TensorClass("dense", 15e9, 1.0),
        TensorClass("experts", 10e9, np.array([0.5, 0.01])),
        TensorClass("embedding", 5e9, np.array([0.1, 0.2])),
    ]
    together = optimal_placement(classes, tiers)
    for i in range(2):
        alone = optimal_placement(
            [TensorClass(c.name, c.bytes_, float(np.atleast_1d(c.reads_per_step)[-1 if i else 0])) for c in classes],
            tiers,
        )
        assert np.allclose(together.bytes_[..., i], alone.bytes_)
    assert together.in_tier("experts", "hbm")[0] == 5e9 and together.in_tier("embedding", "hbm")[1] == 5e9


def test_pinned_overflow_does_not_fit_and_names_nothing_extra() -> None:
    tiers = [Tier("hbm", 10e9, 3e12), Tier("host", 1e12, 50e9)]
    p = optimal_placement([TensorClass("activations", 12e9, tiers=1), TensorClass("w", 1e9)], tiers)
    assert not p.fits
    assert p.unplaced_bytes[0] == 2e9


def test_engine_places_untouched_experts_past_hbm_and_decodes_faster() -> None:
    """mixtral-8x7b (bf16, 93 GB) on one H100 at batch 1 spills 21.7 GB to host DRAM (63 GB/s).
    A decode step reads the dense weights (2.95 GB) and 2 of 8 experts per layer (a quarter of
    90.2 GB). The fixed order spills a slice of all weights, so the host share of every read is
    21.7 / 93.2: host bytes per step = (2.95 + 90.2 / 4) x 21.7 / 93.2 = 5.94 GB. The optimum
    spills the embedding table (read one row per token) and experts only: 21.44 GB of experts,
    a quarter read = 5.36 GB. Saving (5.94 - 5.36) GB / 63 GB/s = 9.2 ms per token."""
    from planner import estimate_inference
    from planner.catalog import load_catalog, resolve_model
    from planner.ops import Sharding, expert_touch_share

    kw = dict(batch=1, input_len=1024, output_len=128)
    best = estimate_inference("mixtral-8x7b", "h100-sxm", 1, **kw)
    fixed = estimate_inference("mixtral-8x7b", "h100-sxm", 1, tier_policy="ordered", **kw)
    host = best.tier_placement_bytes["host-dram"]
    assert set(host) == {"experts", "embedding"}
    assert set(fixed.tier_placement_bytes["host-dram"]) == {"weights"}
    share = expert_touch_share(resolve_model("mixtral-8x7b", load_catalog()).moe, Sharding(), 1.0)
    assert share == 0.25
    hbm = best.tier_placement_bytes["hbm"]
    experts = hbm["experts"] + host["experts"]
    weights = hbm["weights"] + experts + host["embedding"]
    spill = host["experts"] + host["embedding"]
    fixed_host = (hbm["weights"] + experts * share) * spill / weights
    saving_s = (fixed_host - host["experts"] * share) / 63.0e9
    assert saving_s == pytest.approx(9.2e-3, rel=0.05)
    assert fixed.tpot_s - best.tpot_s == pytest.approx(saving_s, rel=0.05)


@settings(max_examples=25, deadline=None)
@given(
    model=st.sampled_from(["mixtral-8x7b", "qwen3-30b-a3b", "llama3.1-70b", "qwen3-235b-a22b", "llama3.1-8b"]),
    hardware=st.sampled_from(["h100-sxm", "a100-sxm-80gb", "l40s", "sn40l", "gh200"]),
    batch=st.integers(1, 64),
)
def test_engine_placement_never_worse_than_the_fixed_order(model: str, hardware: str, batch: int) -> None:
    from planner import estimate_inference

    kw = dict(batch=batch, input_len=512, output_len=64)
    best = estimate_inference(model, hardware, 1, **kw)
    fixed = estimate_inference(model, hardware, 1, tier_policy="ordered", **kw)
    assert best.fits == fixed.fits
    if best.fits:  # the objective is the decode step; a prefill reads every expert and may lose
        # a little where experts' ops turn memory-bound while dense ops stay compute-bound
        assert best.tpot_s <= fixed.tpot_s * (1 + 1e-9)
    from planner.catalog import load_catalog
    from planner.cluster import resolve_cluster
    from planner.memory import device_tiers

    cat = load_catalog()
    capacity = {n: c for n, c, _ in device_tiers(resolve_cluster(hardware, 1, cat), cat)}
    for tier, held in best.tier_placement_bytes.items():  # capacities never exceeded
        assert sum(held.values()) <= capacity[tier] * (1 + 1e-9)


def test_yao_fu_long_context_kv_arithmetic_and_context_switch() -> None:
    """Yao Fu (arXiv 2405.08944): a 34B model (Yi-34B: 60 layers, 8 KV heads of 128) with 50K
    context on A100. KV per token = 2 (K, V) x 60 x 8 x 128 x 2 bytes = 245,760 B; 50,000 tokens
    = 12.29 GB. Context switch = (user 1's KV + user 2's KV) / PCIe bandwidth: 2 x 12.29 GB over
    the A100's PCIe 4.0 x16 (16 lanes x 1.969 GB/s = 31.5 GB/s) = 0.780 s."""
    from planner import estimate_inference
    from planner.catalog import load_catalog, resolve_model
    from workloads.derived import kv_cache_bytes

    spec = resolve_model("yi-34b-200k", load_catalog())
    assert kv_cache_bytes(spec, 1, "bf16") == 2 * 60 * 8 * 128 * 2 == 245_760
    r = estimate_inference("yi-34b-200k", "a100-sxm-80gb", 1, batch=1, input_len=50_000, output_len=0 + 1)
    one_user = 245_760 * 50_000  # whole 16-token blocks: 50,001 tokens round up to 50,016
    assert r.kv_bytes_per_device == pytest.approx(245_760 * 50_016)
    assert r.context_switch_tier == "host-dram"
    assert r.context_switch_s == pytest.approx(2 * one_user / (16 * 1.969e9), rel=2e-3)
    assert r.context_switch_s == pytest.approx(0.780, abs=0.002)


def test_kv_offload_extends_admission_and_prefix_hits_cut_ttft() -> None:
    """vLLM's offloading connector / LMCache: the KV cache grows into host DRAM; a prefix hit
    skips its share of the prefill, and with the cache offloaded the hit is loaded over PCIe first:
    80% of an 8,192-token llama3.1-70b prompt = 6,553 tokens (6,560 in whole blocks); each TP-8
    rank holds one of the 8 KV heads: 2 x 80 layers x 128 x 2 B = 40,960 B per token, 268.7 MB,
    over 63 GB/s = 4.27 ms."""
    from planner import estimate_inference

    kw = dict(tp=8, concurrency=64, input_len=8192, output_len=256)
    base = estimate_inference("llama3.1-70b", "h100-sxm", 8, **kw)
    hit = estimate_inference("llama3.1-70b", "h100-sxm", 8, prefix_hit_rate=0.8, **kw)
    off = estimate_inference("llama3.1-70b", "h100-sxm", 8, prefix_hit_rate=0.8, kv_offload="cpu", **kw)
    assert hit.ttft_s < 0.5 * base.ttft_s
    assert off.max_concurrency > 4 * base.max_concurrency
    per_rank = np.ceil(6553 / 16) * 16 * 40_960
    assert off.prefix_load_s == pytest.approx(per_rank / 63.0e9, rel=0.01)
    assert off.ttft_s == pytest.approx(hit.ttft_s + off.prefix_load_s, rel=1e-6)
    static = estimate_inference("llama3.1-70b", "h100-sxm", 8, tp=8, batch=1, input_len=8192, prefix_hit_rate=0.5)
    whole = estimate_inference("llama3.1-70b", "h100-sxm", 8, tp=8, batch=1, input_len=8192)
    assert 0.4 * whole.ttft_s < static.ttft_s < 0.75 * whole.ttft_s  # causal attention: the suffix costs more


def test_bad_tier_options_are_one_line_errors() -> None:
    from hardware_db.errors import InvalidSpecError
    from planner import estimate_inference

    with pytest.raises(InvalidSpecError, match="not a tier of this node"):
        estimate_inference("llama3.1-8b", "h100-sxm", 1, kv_offload="cxl")
    with pytest.raises(InvalidSpecError, match=r"\[0, 1\)"):
        estimate_inference("llama3.1-8b", "h100-sxm", 1, prefix_hit_rate=1.2)


def test_weights_streamed_from_a_pool_wait_only_when_the_fetch_outlasts_compute() -> None:
    """FengHuang (arXiv 2511.10753): weights in a rack pool, prefetched a layer ahead. qwen3-235b
    fp8 at TP 4, batch 8: a decode step fetches the dense weights and the experts its 8 tokens
    touch, 1 - (1 - 8/128)^8 = 40.3% of them. At 1 TB/s the fetch (about 25 GB) binds; at 4.8 TB/s
    the step is the same as with every weight in HBM. The first tier then holds only the KV
    cache, activations and two layers of weights in flight."""
    from planner import estimate_inference

    kw = dict(tp=4, batch=8, input_len=1024, output_len=256, weight_precision="fp8")
    local = estimate_inference("qwen3-235b-a22b", "h200-sxm", 4, **kw)
    fast = estimate_inference("qwen3-235b-a22b", "h200-sxm", 4, memory_pool="fenghuang-pool", **kw)
    slow = estimate_inference(
        "qwen3-235b-a22b", "h200-sxm", 4, memory_pool="fenghuang-pool", memory_pool_bandwidth=1e12, **kw
    )
    assert fast.tpot_s == pytest.approx(local.tpot_s, rel=1e-6)
    pool = slow.tier_placement_bytes["pool"]
    share = 1 - (1 - 8 / 128) ** 8
    fetched = pool["weights"] + share * pool["experts"]
    assert slow.tpot_s == pytest.approx(fetched / 1e12, rel=0.01)
    hbm = slow.tier_placement_bytes["hbm"]
    assert set(hbm) == {"activations", "staging", "kv-cache"}
    assert hbm["staging"] == pytest.approx(2 * local.weight_bytes_per_device / 94)  # 94 layers
    assert slow.local_memory_needed_bytes == pytest.approx(sum(hbm.values()))
    assert slow.local_memory_needed_bytes < 0.07 * local.weight_bytes_per_device  # "up to 93% less local memory"


def test_a_chunked_sweep_reports_the_placement_of_all_its_scenarios() -> None:
    """tier_placement_bytes is the mean over every scenario, not over the first chunk's."""
    from planner import estimate_inference
    from planner.arrays import CHUNK

    n = CHUNK + 100
    lens = np.where(np.arange(n) < CHUNK, 512.0, 8192.0)
    many = estimate_inference("llama3.1-8b", "h100-sxm", 1, batch=8, input_len=lens, output_len=64)
    low = estimate_inference("llama3.1-8b", "h100-sxm", 1, batch=8, input_len=512, output_len=64)
    high = estimate_inference("llama3.1-8b", "h100-sxm", 1, batch=8, input_len=8192, output_len=64)
    kv = (CHUNK * low.tier_placement_bytes["hbm"]["kv-cache"] + 100 * high.tier_placement_bytes["hbm"]["kv-cache"]) / n
    assert many.tier_placement_bytes["hbm"]["kv-cache"] == pytest.approx(kv)


def test_a_dataflow_scratchpad_takes_the_densest_weights() -> None:
    """SN40L's PMU SRAM as a tier (opt-in: how much the compiler leaves to resident weights is not
    published). llama3.1-8b at TP 8 and batch 1: 256 MiB of dense weights move from HBM (1.44 TB/s
    achieved) to SRAM (200 TB/s x 0.8), which saves at most 268.4 MB x (1/1.44e12 - 1/160e12) =
    0.185 ms per decode step; ops also pay launch overheads and collectives, so the step shrinks
    by a little less. A GPU's SRAM is a hardware cache and is refused."""
    from hardware_db.errors import InvalidSpecError
    from planner import estimate_inference

    kw = dict(tp=8, batch=1, input_len=512, output_len=128)
    base = estimate_inference("llama3.1-8b", "sn40l", 8, **kw)
    pad = estimate_inference("llama3.1-8b", "sn40l", 8, scratchpad_bytes=256 * 2**20, **kw)
    assert pad.tier_placement_bytes["sram"] == {"weights": 256 * 2**20}
    bound = 256 * 2**20 * (1 / 1.44e12 - 1 / 160e12)
    assert 0.7 * bound < base.tpot_s - pad.tpot_s <= bound * (1 + 1e-9)
    with pytest.raises(InvalidSpecError, match="hardware cache"):
        estimate_inference("llama3.1-8b", "mi300x", 1, scratchpad_bytes=1e6)
    with pytest.raises(InvalidSpecError, match="scratchpad_bytes must be"):
        estimate_inference("llama3.1-8b", "sn40l", 8, tp=8, scratchpad_bytes=1e12)
