"""Tier placement (planner.tiers): the greedy is the LP optimum, never worse than the fixed order,
and never exceeds a tier's capacity."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from planner.tiers import Tier, TensorClass, optimal_placement, ordered_placement


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
    bounds = [
        (0.0, None if (c.tiers is None or t < c.tiers) else 0.0) for c in classes for t in range(nt)
    ]
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
            [TensorClass(c.name, np.asarray(c.bytes_).reshape(-1)[min(i, np.size(c.bytes_) - 1)],
                         np.asarray(c.reads_per_step).reshape(-1)[min(i, np.size(c.reads_per_step) - 1)], c.tiers)
             for c in classes],
            tiers,
        )
        assert np.allclose(together.bytes_[..., i], one.bytes_)
        assert np.isclose(together.read_s()[i], one.read_s())


def test_pinned_overflow_does_not_fit_and_names_nothing_extra() -> None:
    tiers = [Tier("hbm", 10e9, 3e12), Tier("host", 1e12, 50e9)]
    p = optimal_placement([TensorClass("activations", 12e9, tiers=1), TensorClass("w", 1e9)], tiers)
    assert not p.fits
    assert p.unplaced_bytes[0] == 2e9
