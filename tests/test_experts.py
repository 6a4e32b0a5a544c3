"""Expert placement (issue 12): EPLB against its reference README, the ILP against brute force and
EPLB, LLEP's no-op on balanced loads, conservation of tokens and slots, the engine's imbalance."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import planner
from cli import main
from planner.expert_loads import (
    Routing,
    contiguous,
    gpu_loads,
    max_over_mean,
    read_loads,
    read_placement,
    synthetic_loads,
)
from solvers.experts import plan_experts
from solvers.experts.eplb import eplb
from solvers.experts.ilp import balanced_clusters, cross_traffic, map_layers, min_max_layer
from solvers.experts.llep import llep

README_WEIGHT = np.array(
    [
        [90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86],
        [20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27],
    ],
    dtype=float,
)


def test_eplb_reproduces_the_reference_readme_example():
    # github.com/deepseek-ai/EPLB README: 2 layers, 12 experts, 16 slots, 4 groups, 2 nodes, 8 GPUs
    phy2log, count = eplb(README_WEIGHT, 16, 4, 2, 8)
    assert phy2log.tolist() == [
        [5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1],
        [7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1],
    ]
    assert count.sum(axis=1).tolist() == [16, 16]


@pytest.mark.parametrize("solver", ["highs", "cbc"])
def test_moetuner_toy_balanced_clusters_deviation_is_10(solver):
    # MoETuner (arXiv 2502.06643) stage 1: these loads into 4 clusters, optimum total deviation 10
    load = np.array([30, 20, 15, 10, 10, 8, 5, 2], dtype=float)
    cluster, res = balanced_clusters(load, 4, 20.0, solver)
    assert res.status == "optimal"
    assert res.objective == pytest.approx(10.0)
    per = np.bincount(cluster, weights=load, minlength=4)
    assert np.abs(per - 25).sum() == pytest.approx(10.0)


def _brute_min_max(load, gpus, per_gpu):
    """Least busiest-GPU load over every placement (replica sets), each at its best split: by
    max-flow / min-cut, max over GPU sets S of (tokens of experts held only inside S) / |S|."""
    experts = len(load)
    choices = [c for k in range(1, per_gpu + 1) for c in itertools.combinations(range(experts), k)]
    subsets = [s for k in range(1, gpus + 1) for s in itertools.combinations(range(gpus), k)]
    best = np.inf
    for held in itertools.product(choices, repeat=gpus):
        if set().union(*held) != set(range(experts)) or sum(map(len, held)) > gpus * per_gpu:
            continue
        where = [{g for g in range(gpus) if e in held[g]} for e in range(experts)]
        t = max(sum(load[e] for e in range(experts) if where[e] <= set(s)) / len(s) for s in subsets)
        best = min(best, t)
    return best


@pytest.mark.parametrize("seed", range(4))
def test_ilp_equals_brute_force_on_small_instances(seed):
    rng = np.random.default_rng(seed)
    load = rng.integers(1, 100, 5).astype(float)
    gpus, per_gpu = 2, 3  # 6 slots: one replica to spare
    phy, _ = eplb(load[None, :], 6, 1, 1, gpus)
    for solver in ("highs", "cbc"):
        r = min_max_layer(load, gpus, per_gpu, phy[0], 20.0, solver, gap=1e-9)
        assert r.status == "optimal"
        assert r.peak == pytest.approx(_brute_min_max(load, gpus, per_gpu), rel=1e-6)


def test_ilp_beats_eplb_on_the_readme_example_and_reports_its_gap():
    ilp = plan_experts(README_WEIGHT, policy="ilp", gpus=8, nodes=2, slots=16, groups=4, time_limit_s=2)
    ref = plan_experts(README_WEIGHT, policy="eplb", gpus=8, nodes=2, slots=16, groups=4)
    assert ilp.max_over_mean <= ref.max_over_mean + 1e-12
    assert ilp.mip_gap is not None and 0 <= ilp.mip_gap < 1
    assert ilp.status in ("optimal", "time_limit")


def _conserves(plan, table):
    np.testing.assert_allclose(plan.gpu_loads.sum(axis=1), table.sum(axis=1), rtol=1e-9)
    per_expert = np.zeros(table.shape)
    np.add.at(per_expert, (np.arange(plan.layers)[:, None], plan.phy2log), plan.shares)
    if plan.policy != "llep":  # llep keeps the layout; its spills move tokens, checked by the loads
        np.testing.assert_allclose(per_expert, 1.0, atol=1e-6)
    assert plan.phy2log.shape[1] % plan.gpus == 0


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(0, 10_000),
    st.sampled_from([(16, 4, 1), (16, 8, 2), (32, 8, 2)]),
    st.integers(0, 2),
    st.sampled_from(["eplb", "llep", "ilp", "contiguous"]),
)
def test_every_token_served_once_and_slots_respected(seed, shape, extra_per_gpu, policy):
    experts, gpus, nodes = shape
    rng = np.random.default_rng(seed)
    table = rng.integers(0, 500, (3, experts)).astype(float) + rng.integers(0, 2, (3, experts)) * 3000
    slots = experts + extra_per_gpu * gpus
    plan = plan_experts(table, policy=policy, gpus=gpus, nodes=nodes, slots=slots, time_limit_s=0.3, min_chunk=64)
    _conserves(plan, table)
    assert plan.phy2log.shape[1] <= slots
    if policy == "ilp":  # never loses to EPLB on the same instance
        ref = plan_experts(table, policy="eplb", gpus=gpus, nodes=nodes, slots=slots)
        assert np.all(plan.gpu_loads.max(axis=1) <= ref.gpu_loads.max(axis=1) + 1e-9)


def test_an_expert_with_no_tokens_still_serves_its_share():
    """The wrap-around placement once gave an idle expert's only replica share 0 (hypothesis seed 1977)."""
    rng = np.random.default_rng(1977)
    table = rng.integers(0, 500, (3, 16)).astype(float) + rng.integers(0, 2, (3, 16)) * 3000
    assert table[0, 13] == 0.0
    plan = plan_experts(table, policy="ilp", gpus=8, nodes=2, slots=24, time_limit_s=0.3, min_chunk=64)
    _conserves(plan, table)


def test_memory_per_gpu_caps_the_slots_and_refuses_what_cannot_fit():
    table = synthetic_loads(58, 256, tokens=8192, top_k=8, zipf=0.5)
    # deepseek-v3 fp8: one expert slot over 58 layers is 58 x 44.0 M params = 2.55 GB
    plan = plan_experts(
        table, policy="eplb", gpus=32, slots=320, model="deepseek-v3", memory_per_gpu_bytes=24e9, weight_precision="fp8"
    )
    assert plan.slots == 9 * 32 and any("slots cut" in m for m in plan.messages)
    with pytest.raises(planner.PlannerError, match="memory per GPU"):
        plan_experts(table, gpus=32, model="deepseek-v3", memory_per_gpu_bytes=10e9, weight_precision="fp8")


def test_llep_is_a_no_op_on_balanced_loads():
    balanced = np.full((3, 64), 1000.0)
    after, spills = llep(balanced, 8, trigger=1.0)
    assert spills == []
    np.testing.assert_array_equal(after, 8000.0)
    plan = plan_experts(balanced, policy="llep", gpus=8)
    assert plan.spills == () and plan.max_over_mean == pytest.approx(1.0)


def test_llep_spills_a_hot_expert_to_the_least_loaded_gpu():
    counts = np.zeros((1, 8))
    counts[0, 0] = 6000.0  # GPU 0 holds experts 0-1, and expert 0 is hot
    counts[0, 2:] = 400.0
    after, spills = llep(counts, 4, alpha=1.0, min_chunk=100, trigger=1.3)
    # mean 2100: GPU 0 keeps 2100, spills 3900 over GPUs whose load + spill stays <= 2100
    assert after[0].max() <= 2100 + 1e-9 or len(spills) >= 3
    assert after[0].sum() == pytest.approx(counts.sum())
    assert all(s.expert == 0 and s.src_gpu == 0 for s in spills)


def test_stage_two_matches_brute_force_permutations():
    rng = np.random.default_rng(3)
    groups = rng.integers(0, 100, (4, 4)).astype(float)
    where, _ = map_layers(groups, 4, 2, 5.0, 10.0)
    best = min(cross_traffic(groups, np.array(p), 4, 2, 5.0).max() for p in itertools.permutations(range(4)))
    assert cross_traffic(groups, where, 4, 2, 5.0).max() == pytest.approx(best)


def test_stage_two_keeps_balance_and_cuts_traffic():
    table = synthetic_loads(3, 16, tokens=4096, top_k=2, zipf=0.8)
    rng = np.random.default_rng(0)
    trans = rng.integers(0, 50, (2, 16, 16)).astype(float)
    trans[:, np.arange(16), np.arange(16)] += 400  # tokens tend to stay with "the same" expert
    one = plan_experts(table, policy="ilp", gpus=4, nodes=2, time_limit_s=2)
    two = plan_experts(table, policy="ilp", gpus=4, nodes=2, time_limit_s=2, transitions=trans, internode_cost=4)
    np.testing.assert_allclose(np.sort(two.gpu_loads, axis=1), np.sort(one.gpu_loads, axis=1))
    assert two.cross_traffic <= two.cross_traffic_before


def test_imbalance_ratio_from_loads_by_hand():
    # 2 layers, 4 experts on 2 GPUs (contiguous: experts 0-1 on GPU 0): layer 0 GPU loads 30, 10;
    # layer 1: 20, 20. sum of max / sum of mean = (30 + 20) / (20 + 20) = 1.25
    table = np.array([[10.0, 20.0, 5.0, 5.0], [10.0, 10.0, 10.0, 10.0]])
    assert max_over_mean(gpu_loads(table, contiguous(2, 4), 2)) == pytest.approx(1.25)
    assert Routing(loads=table).ratio(4, 2) == pytest.approx(1.25)


def test_engine_takes_the_busiest_rank():
    kw = dict(devices=32, dp=32, ep=32, batch=32, input_len=2048, output_len=1, weight_precision="fp8")
    even = planner.estimate_inference("deepseek-v3", "h200-sxm", expert_imbalance=1.0, **kw)
    hot = planner.estimate_inference("deepseek-v3", "h200-sxm", expert_imbalance=2.0, **kw)
    assert even.expert_load_max_over_mean == 1.0 and hot.expert_load_max_over_mean == 2.0
    # nothing given: uniform routing's busiest of 32 ranks, a binomial spread that 2048 tokens a rank
    # (16,384 pairs) leave at 1 + 2.07 x sqrt(31/32 / 16384) = 1.016x the balanced rank's GEMMs
    default = planner.estimate_inference("deepseek-v3", "h200-sxm", **kw)
    experts_default = {r.op: r for r in default.ops if r.phase == "prefill"}["experts"]
    experts = {r.op: r for r in even.ops if r.phase == "prefill"}["experts"]
    experts_hot = {r.op: r for r in hot.ops if r.phase == "prefill"}["experts"]
    assert experts_hot.flops == pytest.approx(2.0 * experts.flops)  # twice the routed tokens' GEMMs
    assert experts_default.flops / experts.flops == pytest.approx(1.0 + 2.07 * (31 / 32 / 16384) ** 0.5, rel=2e-3)
    assert hot.moe_s["prefill"] > 1.5 * even.moe_s["prefill"]
    assert hot.prefill_s > even.prefill_s
    t = planner.estimate_training("deepseek-v3", "h200-sxm", 256, pp=8, ep=32, global_batch=256, expert_imbalance=1.5)
    t0 = planner.estimate_training("deepseek-v3", "h200-sxm", 256, pp=8, ep=32, global_batch=256)
    assert t.moe_s > t0.moe_s and t.step_time_s > t0.step_time_s
    assert t.activations_bytes > t0.activations_bytes  # the busiest rank holds more routed tokens


def test_plan_times_before_and_after_and_map_round_trip(tmp_path):
    table = synthetic_loads(58, 256, tokens=16384, top_k=8, zipf=0.5)
    plan = plan_experts(
        table,
        policy="eplb",
        gpus=32,
        nodes=4,
        slots=288,
        groups=8,
        model="deepseek-v3",
        hardware="h200-sxm",
        weight_precision="fp8",
    )
    e = plan.estimate
    assert plan.max_over_mean < plan.max_over_mean_before
    assert e["moe_time_s"] < e["moe_time_before_s"] and e["tokens_per_s"] > e["tokens_per_s_before"]
    path = tmp_path / "map.json"
    path.write_text(json.dumps(plan.to_dict()))
    np.testing.assert_array_equal(read_placement(path), plan.phy2log)
    r = planner.estimate_inference(
        "deepseek-v3",
        "h200-sxm",
        32,
        dp=32,
        ep=32,
        batch=32,
        input_len=512,
        output_len=1,
        weight_precision="fp8",
        redundant_experts=32,
        expert_loads=table,
        expert_placement=str(path),
    )
    assert r.expert_load_max_over_mean == pytest.approx(plan.max_over_mean)


def test_loads_files(tmp_path):
    table = np.arange(12, dtype=float).reshape(3, 4) + 1
    np.save(tmp_path / "l.npy", table)
    (tmp_path / "l.json").write_text(json.dumps({"logical_count": table.tolist()}))
    (tmp_path / "wide.csv").write_text(
        "layer,e0,e1,e2,e3\n" + "\n".join(f"{i}," + ",".join(str(v) for v in row) for i, row in enumerate(table))
    )
    (tmp_path / "long.csv").write_text(
        "layer,expert,tokens\n" + "\n".join(f"{i},{j},{table[i, j]}" for i in range(3) for j in range(4))
    )
    for name in ("l.npy", "l.json", "wide.csv", "long.csv"):
        np.testing.assert_array_equal(read_loads(tmp_path / name), table)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--loads", "{3d}", "--gpus", "2"], "(layers x experts)"),
        (["--loads", "{neg}", "--gpus", "2"], ">= 0"),
        (["--loads", "{ok}", "--gpus", "16"], "larger than the expert slots"),
        (
            [
                "--zipf",
                "0.5",
                "-m",
                "deepseek-v3",
                "--gpus",
                "32",
                "--memory-per-gpu-gb",
                "5",
                "--weight-precision",
                "fp8",
            ],
            "memory per GPU",
        ),
        (["--loads", "{ok}", "--gpus", "2", "--policy", "greedy"], "unknown policy"),
        (["--loads", "{ok}", "--gpus", "3"], "multiple of the GPUs"),
    ],
)
def test_wrong_input_exits_2_with_one_line(tmp_path, capsys, args, message):
    np.save(tmp_path / "3d.npy", np.ones((2, 2, 2)))
    np.save(tmp_path / "neg.npy", -np.ones((2, 8)))
    np.save(tmp_path / "ok.npy", np.ones((2, 8)))
    files = {k: str(tmp_path / f"{k}.npy") for k in ("3d", "neg", "ok")}
    with pytest.raises(SystemExit) as e:
        main(["plan", "experts", *[a.format(**files) for a in args]])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and message in err, err


def test_cli_writes_heatmap_report_and_map(tmp_path, capsys):
    html = tmp_path / "p.html"
    main(["plan", "experts", "--zipf", "0.5", "--layers", "4", "--experts", "64", "--gpus", "8", "--out", str(html)])
    text = html.read_text()
    assert "Tokens per GPU and layer" in text and "Balance per layer" in text
    capsys.readouterr()
    main(["plan", "experts", "--hot", "80:4", "--layers", "2", "--experts", "16", "--gpus", "4", "--format", "csv"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "layer,slot,gpu,node,expert,share" and len(lines) == 1 + 2 * 16
