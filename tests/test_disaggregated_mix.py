"""Cross-hardware prefill/decode (issue 13 part 2): the MILP against brute force, never worse than
a homogeneous pair, the KV transfer's network and rewrite terms by hand, refusals."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.optimize import linprog

from hardware_db.errors import InfeasiblePlanError
from solvers import Slo, Workload
from solvers.disaggregated_mix import _solve, plan_disaggregated_mix
from solvers.pools import PoolSide, kv_transfer_s


def _side(hw, tp, price, vendor="nvidia", kv="bf16", rate=0.0, **kw):
    return PoolSide(hw, vendor, tp, 1, kv, price, 50e9, 5e-6, 4e12, rate_per_s=rate, **kw)


def test_kv_transfer_by_hand():
    # 1 GB of KV from a 2-rank prefill pool to a 4-rank decode pool of another vendor, FP8 there:
    # network 1e9 / (min(50, 25) GB/s x min(2, 4) streams) = 20 ms, + 5 us latency; rewrite on the
    # decode side: read 1 GB + write 0.5 GB at 4 TB/s x 4 ranks = 93.75 us
    p = _side("b200", 2, 6.0, kv_bytes=1e9)
    d = PoolSide("mi300x", "amd", 4, 1, "fp8", 1.5, 25e9, 5e-6, 4e12)
    assert kv_transfer_s(p, d) == pytest.approx(0.02 + 5e-6 + 1.5e9 / 16e12)
    same = _side("b200", 2, 6.0, kv_bytes=1e9, same_hardware_transfer_s=0.003)
    assert kv_transfer_s(same, _side("b200", 8, 6.0)) == 0.003  # two pools of one type: the engine's link


def _brute(rates, pre, dec, rate, limit=6):
    """Cheapest whole replica counts (0..limit each) for which some routing of the rate exists (LP)."""
    P, D = rates.shape
    best = np.inf
    usable = np.argwhere(rates > 0)
    for n_p in itertools.product(range(limit + 1), repeat=P):
        for n_d in itertools.product(range(limit + 1), repeat=D):
            cost = sum(n * p.usd_per_hour for n, p in zip(n_p, pre, strict=True)) + sum(
                n * d.usd_per_hour for n, d in zip(n_d, dec, strict=True)
            )
            if cost >= best:
                continue
            a_ub = np.zeros((P + D, len(usable)))
            for k, (i, j) in enumerate(usable):
                a_ub[i, k] = 1.0 / rates[i, j]
                a_ub[P + j, k] = 1.0 / dec[j].rate_per_s
            lp = linprog(
                np.zeros(len(usable)),
                A_ub=a_ub,
                b_ub=list(n_p) + list(n_d),
                A_eq=np.ones((1, len(usable))),
                b_eq=[rate],
                bounds=(0, None),
                method="highs",
            )
            if lp.status == 0:
                best = cost
    return best


@pytest.mark.parametrize("seed", range(3))
def test_milp_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    pre = [_side(f"p{i}", 1, float(rng.uniform(1, 6))) for i in range(2)]
    dec = [_side(f"d{j}", 1, float(rng.uniform(1, 6)), rate=float(rng.uniform(1, 4))) for j in range(2)]
    rates = rng.uniform(0.5, 4.0, (2, 2))
    rates[rng.integers(0, 2), rng.integers(0, 2)] = 0.0  # one pair misses TTFT
    flows, n_p, n_d, res = _solve(rates, pre, dec, 5.0, 10.0, "highs")
    cost = float(n_p @ [p.usd_per_hour for p in pre] + n_d @ [d.usd_per_hour for d in dec])
    assert res.status == "optimal"
    assert cost == pytest.approx(_brute(rates, pre, dec, 5.0))
    assert flows.sum() == pytest.approx(5.0)


def test_cross_hardware_never_worse_than_homogeneous_disaggregated():
    w, slo = Workload(8, 2048, 256), Slo(1.0, 0.05)
    plan = plan_disaggregated_mix("llama3.1-70b", ["h100-sxm", "mi300x"], w, slo)
    homogeneous = [r for r in plan.comparison if r["plan"].endswith("disaggregated") and r["usd_per_hour"]]
    assert homogeneous and plan.usd_per_hour <= min(r["usd_per_hour"] for r in homogeneous) + 1e-9
    assert sum(r["rate_per_s"] for r in plan.routes) == pytest.approx(8.0)
    assert all(r["ttft_s"] <= 1.0 + 1e-9 and r["tpot_s"] <= 0.05 for r in plan.routes)
    assert {p.side for p in plan.pools} == {"prefill", "decode"}


def test_restricted_sides_put_prefill_and_decode_on_different_types():
    w, slo = Workload(8, 2048, 256), Slo(1.0, 0.05)
    plan = plan_disaggregated_mix(
        "llama3.1-70b", [], w, slo, prefill_hardware=["b200"], decode_hardware=["mi300x"], compare=False
    )
    assert {(p.side, p.hardware) for p in plan.pools} == {("prefill", "b200"), ("decode", "mi300x")}
    assert all(r["kv_transfer_s"] > 0.005 for r in plan.routes)  # the scale-out network, not NVLink


def test_a_ttft_below_the_fastest_prefill_names_it():
    with pytest.raises(InfeasiblePlanError, match="fastest prefill"):
        plan_disaggregated_mix("llama3.1-70b", ["h100-sxm"], Workload(2, 8192, 128), Slo(0.01, 0.05), compare=False)


def test_cli_cross_hardware_mode(tmp_path, capsys):
    from cli import main

    out = tmp_path / "pd.html"
    main(
        [
            "plan",
            "inference",
            "-m",
            "llama3.1-8b",
            "--prefill-hardware",
            "h100-sxm",
            "--decode-hardware",
            "a100-sxm-80gb",
            "--rate",
            "4",
            "--ttft",
            "1",
            "--tpot",
            "0.1",
            "--mode",
            "cross-hardware",
            "--format",
            "json",
            "--out",
            str(out),
        ]
    )
    text = capsys.readouterr().out
    assert '"pools"' in text and '"comparison"' in text
    assert "Cost against the TTFT target" in out.read_text()
    with pytest.raises(SystemExit) as e:
        main(
            [
                "plan",
                "inference",
                "-m",
                "llama3.1-8b",
                "-H",
                "h100-sxm",
                "--rate",
                "4",
                "--ttft",
                "1",
                "--tpot",
                "0.1",
                "--prefill-hardware",
                "b200",
            ]
        )
    assert e.value.code == 2 and "need --mode cross-hardware" in capsys.readouterr().err
