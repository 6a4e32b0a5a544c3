"""Agent workflow placement (solvers.agent_plan): the MILP against brute force on small synthetic
problems, the mixed plan never dearer than the best one-class plan, one-line refusals for an SLA
below the fastest critical path and for bad workflow files, and the shipped examples."""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware_db.errors import InfeasiblePlanError, InvalidSpecError
from solvers.agent_plan import AgentProblem, build_problem, evaluate, plan_agent, solve_problem
from workloads.agent import load_workflow, parse_workflow

CLASSES = ("epyc-9654", "l40s", "a100-sxm-80gb", "h100-sxm")
VOICE: dict[str, Any] = {
    "name": "voice",
    "rate": 20,
    "sla": {"latency": "1 s"},
    "llm_concurrency": 8,
    "hardware": ["l40s", "a100-sxm-80gb", "h100-sxm"],
    "stages": [
        {"id": "stt", "kind": "stt", "audio_s": "5 s", "flops_per_call": "2.26 TFLOP", "weight_bytes": "3.1 GB"},
        {"id": "vdb", "kind": "vector_db", "cpu_s": "2 ms"},
        {"id": "answer", "kind": "llm", "model": "llama3.1-8b", "input_len": 1536, "output_len": 40},
    ],
    "edges": [{"from": "stt", "to": "vdb", "bytes": "3 KB"}, {"from": "vdb", "to": "answer", "bytes": "6 KB"}],
}


# ------------------------------------------------------------------------------ synthetic problems


def synthetic(seed: int, stages: int = 5, classes: int = 3, slack: float = 1.3) -> AgentProblem:
    """A random DAG of `stages` stages over `classes` classes with 1-2 options per (stage, class),
    some infeasible pairs, one stage outside the plan, random transfers; SLA = slack x fastest."""
    rng = np.random.default_rng(seed)
    ids = [f"s{i}" for i in range(stages)]
    edges = [(int(rng.integers(0, j)), j) for j in range(1, stages)]
    edges += [
        (i, j) for i in range(stages) for j in range(i + 1, stages) if (i, j) not in edges and rng.random() < 0.25
    ]
    wf = parse_workflow(
        {
            "name": f"synthetic-{seed}",
            "rate": float(rng.uniform(0.5, 20)),
            "sla": {"latency": 1.0},
            "prices": {"epyc-9654": 5.56},
            "hardware": list(CLASSES[:classes]),
            "stages": [{"id": s, "kind": "tool", "cpu_s": 0.01} for s in ids],
            "edges": [{"from": ids[i], "to": ids[j], "bytes": 1000} for i, j in edges],
        }
    )
    p = build_problem(wf)
    outside = int(rng.integers(1, stages))
    rows = []
    for i in range(stages):
        if i == outside:
            continue
        ks = [k for k in range(classes) if rng.random() < 0.75] or [int(rng.integers(0, classes))]
        for k in ks:
            for _ in range(int(rng.integers(1, 3))):
                rows.append((i, k, rng.uniform(0.05, 1.0), rng.uniform(0.01, 0.5) * rng.choice([1.0, 4.0])))
    transfer = rng.uniform(0.0, 0.05, size=(len(p.edges), classes, classes))
    for k in range(classes):
        transfer[:, k, k] = 0.0
    external = np.full(stages, np.nan)
    external[outside] = 0.2
    p = dataclasses.replace(
        p,
        external=external,
        opt_stage=np.array([r[0] for r in rows]),
        opt_class=np.array([r[1] for r in rows]),
        latency=np.array([r[2] for r in rows]),
        device_s=np.array([r[3] for r in rows]),
        host_s=np.zeros(len(rows)),
        on_host=np.zeros(len(rows), dtype=bool),
        devices=np.ones(len(rows), dtype=np.int64),
        bound=("x",) * len(rows),
        transfer=transfer,
        infeasible={},
    )
    fastest = min(e.latency_s for e in _all(p))
    return dataclasses.replace(p, sla_s=fastest * slack)


def _all(p: AgentProblem, only: int | None = None) -> list[Any]:
    """Every placement (an option per placed stage), evaluated."""
    choices = []
    for i in range(len(p.stages)):
        o = p.options(i)
        if only is not None:
            o = o[p.opt_class[o] == only]
        choices.append([-1] if not p.placed[i] else list(o))
    return [evaluate(p, c) for c in itertools.product(*choices)]


def brute_force(p: AgentProblem, only: int | None = None) -> float | None:
    ok = [e.usd_per_hour for e in _all(p, only) if e.latency_s <= p.sla_s * (1 + 1e-9)]
    return min(ok) if ok else None


@pytest.mark.parametrize("seed", range(6))
def test_milp_equals_brute_force(seed: int) -> None:
    p = synthetic(seed, slack=1.0 + 0.25 * (seed % 4))
    plan = solve_problem(p, time_limit_s=20)
    assert plan.status == "optimal"
    assert plan.usd_per_hour == pytest.approx(brute_force(p), abs=1e-6)
    assert plan.latency_s <= p.sla_s * (1 + 1e-6)
    assert set(plan.placement) == set(p.stages)


def test_cbc_agrees_with_highs() -> None:
    p = synthetic(11, stages=4)
    assert solve_problem(p, 20, "cbc").usd_per_hour == pytest.approx(solve_problem(p, 20, "highs").usd_per_hour)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), slack=st.floats(1.0, 3.0))
def test_mixed_never_dearer_than_one_class(seed: int, slack: float) -> None:
    p = synthetic(seed, stages=4, slack=slack)
    plan = solve_problem(p, time_limit_s=20)
    alone = [c for k in range(len(p.classes)) if (c := brute_force(p, only=k)) is not None]
    if alone:
        assert plan.usd_per_hour <= min(alone) + 1e-6
        assert plan.homogeneous_usd_per_hour == pytest.approx(min(alone))
        assert plan.saving_usd_per_hour is not None and plan.saving_usd_per_hour >= -1e-9


def test_evaluate_critical_path_and_capacity() -> None:
    p = synthetic(3)
    ev = _all(p)[0]
    path = list(ev.critical_path)
    assert ev.latency_s == pytest.approx(ev.start_s[path[-1]] + ev.stage_latency_s[path[-1]])
    for i, k in enumerate(ev.placement):  # every class in use holds its load under the cap
        if k >= 0:
            cls = p.opt_class[k]
            load = sum(p.rate * p.device_s[o] for o in ev.placement if o >= 0 and p.opt_class[o] == cls)
            assert load <= ev.instances[cls] * p.utilization + 1e-9
            del i


# --------------------------------------------------------------------------------- refusals


def test_sla_below_fastest_path_names_it() -> None:
    with pytest.raises(InfeasiblePlanError, match=r"SLA 0\.01 s \(mean\) is shorter than the fastest critical path"):
        plan_agent(parse_workflow(VOICE), sla_s=0.01)
    try:
        plan_agent(parse_workflow(VOICE), sla_s=0.01)
    except InfeasiblePlanError as e:
        assert "stt -> vdb -> answer" in str(e) and "\n" not in str(e)


def test_stage_no_class_can_run() -> None:
    wf = {
        **VOICE,
        "hardware": ["l40s"],
        "stages": [*VOICE["stages"][:2], {**VOICE["stages"][2], "model": "llama3.1-405b"}],
    }
    with pytest.raises(InfeasiblePlanError, match=r"stage 'answer' \(llm llama3.1-405b\) runs on none"):
        plan_agent(parse_workflow(wf))


def test_class_without_price_is_rejected_with_reason() -> None:
    with pytest.raises(InfeasiblePlanError, match=r"no candidate hardware class is usable \(gaudi3: no \$/h"):
        plan_agent(parse_workflow(VOICE), hardware=["gaudi3"])
    plan = plan_agent(parse_workflow(VOICE), hardware=["gaudi3", "a100-sxm-80gb"])
    assert "no $/h" in plan.rejected["gaudi3"]


TEMPLATE = """name: t
{rate}
sla: {{latency: 1 s}}
{extra}
stages:
  - id: stt
    kind: stt
{audio}
    flops_per_call: 1 TFLOP
    weight_bytes: 1 GB
  - id: answer
{kind}
    model: llama3.1-8b
{input_len}
    output_len: 10
edges:
  - {{from: stt, to: answer}}
{edge}
"""
DEFAULTS = {
    "rate": "rate: 2",
    "extra": "",
    "audio": "    audio_s: 5 s",
    "kind": "    kind: llm",
    "input_len": "    input_len: 1000",
    "edge": "",
}


@pytest.mark.parametrize(
    ("slot", "line", "message"),
    [
        ("rate", "rate: -1", r"rate: Input should be greater than 0"),
        (
            "input_len",
            "    input_len: 0",
            r"stages\[1\] \(answer\)\.input_len: Input should be greater than or equal to 1",
        ),
        ("kind", "    kind: llmm", r"stages\[1\] \(answer\): unknown stage kind \(allowed: llm, "),
        ("audio", "    audio_s: 5 parsecs", r"stages\[0\] \(stt\)\.audio_s: expected a quantity like"),
        ("edge", "  - {from: answer, to: nowhere}", r"edges\[1\]\.to: unknown stage 'nowhere'"),
        ("edge", "  - {from: answer, to: stt}", r"edges: the stages form a cycle"),
        ("extra", "utilisation: 0.5", r"utilisation: unknown field"),
    ],
)
def test_yaml_errors_name_file_and_field(tmp_path: Path, slot: str, line: str, message: str) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(TEMPLATE.format(**{**DEFAULTS, slot: line}))
    assert load_workflow(_ok(tmp_path)).name == "t"  # the template itself is valid
    with pytest.raises(InvalidSpecError, match=message) as err:
        load_workflow(path)
    assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)


def _ok(tmp_path: Path) -> Path:
    path = tmp_path / "ok.yaml"
    path.write_text(TEMPLATE.format(**DEFAULTS))
    return path


def test_missing_file_lists_examples() -> None:
    with pytest.raises(InvalidSpecError, match=r"does not exist \(shipped examples: coding-agent, voice-agent\)"):
        load_workflow("no-such-agent.yaml")


# --------------------------------------------------------------------------------- examples


@pytest.mark.parametrize("name", ["voice-agent", "coding-agent"])
def test_shipped_examples_plan(name: str) -> None:
    plan = plan_agent(name)
    wf = load_workflow(name)
    assert set(plan.placement) == {s.id for s in wf.stages}
    assert plan.latency_s <= plan.sla_s + 1e-9 and plan.usd_per_hour > 0
    assert plan.homogeneous_usd_per_hour is not None and plan.usd_per_hour <= plan.homogeneous_usd_per_hour + 1e-9
    assert plan.critical_path and plan.status == "optimal"
    d = json.loads(json.dumps(plan.to_dict()))
    assert d["placement"] == plan.placement and len(plan.to_frame()) == len(wf.stages)
    assert plan.usd_per_request == pytest.approx(plan.usd_per_hour / 3600 / wf.rate)


def test_report_draws_dag_and_curve(tmp_path: Path) -> None:
    from planner.report_agent import agent_report, layout

    plan = plan_agent(parse_workflow(VOICE), sla_curve=True)
    assert plan.sla_curve and any(p["sla_s"] == plan.sla_s for p in plan.sla_curve)
    page = agent_report(plan, tmp_path / "a.html")
    assert "Cost against the latency SLA" in page and (tmp_path / "a.html").exists()
    assert layout(["a", "b", "c"], [("a", "b"), ("a", "c"), ("b", "c")]) == {
        "a": (0.0, 0.0),
        "b": (1.0, 0.0),
        "c": (2.0, 0.0),
    }
