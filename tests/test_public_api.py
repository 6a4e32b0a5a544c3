"""Every exported name is the exported object, whatever was imported before it (issue 11, point 2).

`planner.sweep` and `planner.report` are functions defined in submodules of the same name; the
import system binds a submodule over its package's attribute, which once turned the functions
into modules after their first call. Each order runs in a fresh interpreter, imports every name of
`planner.__all__` and `solvers.__all__` with `from PACKAGE import NAME`, and calls it twice."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).resolve().parent.parent

# One small valid call per export, given the imported object `f` (classes are instantiated).
PROBE = r"""
import dataclasses, importlib, json, pathlib, pkgutil, sys, types

order, fixtures, validation_file = sys.argv[1], sys.argv[2], sys.argv[3]
if order == "submodules-first":
    # `import planner.sweep` style: every submodule is bound before any export is looked up
    import planner.sweep, planner.report
    for package in ("planner", "solvers"):
        for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
            importlib.import_module(f"{package}.{info.name}")
import planner, solvers
from planner.catalog import load_catalog
from planner.inference import estimate_inference
from solvers.inference_plan import Slo, Workload

cat = load_catalog()
spec = cat.model("llama3.1-8b")
MIX = solvers.plan_mix(profiles={"A": {"usd_per_hour": 1.0, "throughput": [[1.0]]}}, distribution=[[1.0]], rate=1.0)
FLEET = solvers.plan_fleet("example", time_limit_s=10)
AGENT = solvers.plan_agent("voice-agent", hardware=["h100-sxm", "a100-sxm-80gb"])
MODELS = solvers.plan_models([("llama2-7b", 20)], hardware=("dgx-h100",), output_len=8)
CALLS = {
    "PlannerError": lambda f: f("x"),
    "UnknownIdError": lambda f: f("x"),
    "InvalidSpecError": lambda f: f("x"),
    "InfeasiblePlanError": lambda f: f("x"),
    "SolverLimitError": lambda f: f("x"),
    "Catalog": lambda f: f(**{x.name: getattr(cat, x.name) for x in dataclasses.fields(f)}),
    "load_catalog": lambda f: f(),
    "resolve_model": lambda f: f("llama3.1-8b"),
    "parameter_counts": lambda f: f(spec),
    "kv_bytes_per_token": lambda f: f(spec),
    "kv_cache_bytes": lambda f: f(spec, 1024),
    "forward_flops_per_token": lambda f: f(spec, 1024),
    "from_hf_config": lambda f: f(json.load(open(f"{fixtures}/hf/llama.json"))),
    "ridge_points": lambda f: f(cat.device("h100-sxm")),
    "estimate_inference": lambda f: f("llama3.1-8b", "h100-sxm", 1, concurrency=4),
    "estimate_training": lambda f: f("llama3.1-8b", "h100-sxm", 8, global_batch=8, seq_len=1024),
    "estimate_gemm": lambda f: f("h100-sxm", 1024, 1024, 1024),
    "estimate_grouped_gemm": lambda f: f("h100-sxm", 8, 128, 4096, 7168, "fp8"),
    "estimate_moe_layer": lambda f: f("h100-sxm", "deepseek-r1", 1024, expert_tp=8, weight_precision="fp8"),
    "estimate_attention": lambda f: f("h100-sxm", 1, 32, 1024, 128),
    "estimate_memory_copy": lambda f: f("h100-sxm", 1e9),
    "estimate_collective": lambda f: f("h100-sxm", 8, "all-reduce", 1e9),
    "run_validation": lambda f: f(pathlib.Path(validation_file)),
    "report": lambda f: f(estimate_inference("llama3.1-8b", "h100-sxm", 1)),
    "sweep": lambda f: f("inference", model="llama3.1-8b", hardware="h100-sxm", devices=1, concurrency=[1, 4]),
    "plan_training": lambda f: f("llama3.1-8b", "h100-sxm", 8, 16, 2048),
    "plan_inference": lambda f: f("llama3.1-8b", "h100-sxm", Workload(1, 512, 128, 512, 128), Slo(1.0, 0.1)),
    "TrainingPlans": lambda f: f("llama3.1-8b", "h100-sxm", 8, "tokens_per_s", (), 0),
    "InferencePlans": lambda f: f("llama3.1-8b", "cost", Slo(1.0, 0.1), Workload(1, 512, 128, 512, 128), (), 0),
    "Slo": lambda f: f(1.0, 0.1),
    "Workload": lambda f: f(1, 512, 128, 512, 128),
    "plan_experts": lambda f: f([[5.0, 1.0, 1.0, 1.0]], gpus=2),
    "ExpertPlan": lambda f: f(**dataclasses.asdict(solvers.plan_experts([[5.0, 1.0, 1.0, 1.0]], gpus=2))),
    "plan_disaggregated_mix": lambda f: f("llama3.1-8b", ["h100-sxm"], Workload(1, 512, 128), Slo(1.0, 0.1), compare=False),
    "plan_mix": lambda f: f(profiles={"A": {"usd_per_hour": 1.0, "throughput": [[1.0]]}}, distribution=[[1.0]], rate=1.0),
    "MixPlan": lambda f: f(**{x.name: getattr(MIX, x.name) for x in dataclasses.fields(f)}),
    "plan_fleet": lambda f: f("example", time_limit_s=10),
    "FleetPlan": lambda f: f(**{x.name: getattr(FLEET, x.name) for x in dataclasses.fields(f)}),
    "plan_agent": lambda f: f("voice-agent", hardware=["h100-sxm", "a100-sxm-80gb"]),
    "AgentPlan": lambda f: f(**{x.name: getattr(AGENT, x.name) for x in dataclasses.fields(f)}),
    "plan_models": lambda f: f([("llama2-7b", 20)], hardware=("dgx-h100",), output_len=8),
    "ModelsPlan": lambda f: f(**{x.name: getattr(MODELS, x.name) for x in dataclasses.fields(f)}),
    "DisaggregatedMixPlan": lambda f: f("m", Workload(1, 512, 128), Slo(1.0, 0.1), (), (), 0.0, 0.0, 0, "optimal", 0.0, 0.0),
}
names = [(p, n) for p in ("planner", "solvers") for n in sys.modules[p].__all__]
missing = sorted({n for _, n in names} ^ set(CALLS))
assert not missing, f"exports and probe calls differ: {missing}"
if order == "submodules-first":
    names.reverse()
for package, name in names:
    for attempt in (1, 2):
        scope = {}
        exec(f"from {package} import {name} as obj", scope)
        obj = scope["obj"]
        assert not isinstance(obj, types.ModuleType), f"{package}.{name} is a module on import {attempt}"
        assert getattr(sys.modules[package], name) is obj, f"{package}.{name} changed on import {attempt}"
        CALLS[name](obj)
print("checked", len(names))
"""

VALIDATION_ROW = """rows:
- id: gemm-probe
  category: gemm
  config: {hardware: h100-sxm, devices: 1, m: 4096, n: 4096, k: 4096, precision: bf16}
  metric: achieved_flops_per_s
  measured: 6.0e+14
  source: a probe row for the public-API test
"""


@pytest.mark.parametrize("order", ["package-first", "submodules-first"])
def test_every_export_is_the_object_and_callable_twice(order: str, tmp_path: Path) -> None:
    validation = tmp_path / "rows.yaml"
    validation.write_text(VALIDATION_ROW)
    result = subprocess.run(
        [sys.executable, "-c", PROBE, order, str(FIXTURES), str(validation)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "checked 43"


def test_submodule_imports_still_reach_the_modules() -> None:
    """`from planner.sweep import load_grid` goes through sys.modules, not the package attribute."""
    import planner
    from planner.report import timeline_figure
    from planner.sweep import load_grid

    assert callable(load_grid) and callable(timeline_figure)
    assert planner.sweep.__module__ == "planner.sweep" and callable(planner.sweep)
    assert "sweep" in dir(planner) and "plan_inference" in dir(__import__("solvers"))
