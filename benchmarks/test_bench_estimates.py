"""Speed of the engine (pytest-benchmark). Targets from the engine issue:
one estimate in process <= 1 ms; >= 100,000 configurations at >= 1,000,000 configurations/s on one
core; `planner estimate inference ...` end to end (process start included) under 1 s.
`make test` runs these in a fast mode (few rounds); `make bench` runs them properly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from planner.catalog import Catalog
from planner.inference import estimate_inference
from planner.training import estimate_training

SWEEP = 100_000


def test_one_inference_estimate(benchmark, catalog: Catalog) -> None:  # type: ignore[no-untyped-def]
    r = benchmark(estimate_inference, "llama3.1-70b", "h100-sxm", 8, tp=8, batch=8, catalog=catalog)
    assert r.tpot_s > 0


def test_one_serving_estimate(benchmark, catalog: Catalog) -> None:  # type: ignore[no-untyped-def]
    r = benchmark(estimate_inference, "llama3.1-70b", "h100-sxm", 8, tp=8, concurrency=64, catalog=catalog)
    assert r.ttft_s > 0


def test_one_training_estimate(benchmark, catalog: Catalog) -> None:  # type: ignore[no-untyped-def]
    r = benchmark(estimate_training, "llama3.1-70b", "h100-sxm", 64, tp=8, pp=2, global_batch=512, catalog=catalog)
    assert r.step_time_s > 0


def test_one_spilled_moe_estimate(benchmark, catalog: Catalog) -> None:  # type: ignore[no-untyped-def]
    """The tier placement's greedy at work: mixtral-8x7b spills experts past one H100's HBM."""
    r = benchmark(estimate_inference, "mixtral-8x7b", "h100-sxm", 1, batch=1, catalog=catalog)
    assert "host-dram" in r.tier_placement_bytes


def test_one_offloaded_training_estimate(benchmark, catalog: Catalog) -> None:  # type: ignore[no-untyped-def]
    r = benchmark(
        estimate_training, "llama2-13b", "dgx-h100", 1, global_batch=8, recompute="full", offload="cpu", catalog=catalog
    )
    assert r.fits and r.offload_s > 0


def test_vectorised_inference_sweep(benchmark, catalog: Catalog) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    batch = rng.integers(1, 256, SWEEP).astype(float)
    input_len = rng.integers(128, 8192, SWEEP).astype(float)
    output_len = rng.integers(16, 2048, SWEEP).astype(float)
    r = benchmark(
        estimate_inference,
        "llama3.1-70b",
        "h100-sxm",
        8,
        tp=8,
        batch=batch,
        input_len=input_len,
        output_len=output_len,
        catalog=catalog,
    )
    assert np.shape(r.tpot_s) == (SWEEP,)
    benchmark.extra_info["configs_per_s"] = SWEEP / benchmark.stats.stats.median


def test_cli_estimate_end_to_end(benchmark) -> None:  # type: ignore[no-untyped-def]
    exe = str(Path(sys.executable).parent / "planner")
    args = [
        exe,
        "estimate",
        "inference",
        "--model",
        "llama3.1-70b",
        "--hardware",
        "h100-sxm",
        "--devices",
        "8",
        "--tp",
        "8",
        "--format",
        "json",
    ]
    result = benchmark.pedantic(subprocess.run, args=(args,), kwargs={"capture_output": True}, rounds=3, iterations=1)
    assert result.returncode == 0


def test_plan_training_405b_on_16384(benchmark, catalog: Catalog) -> None:  # type: ignore[no-untyped-def]
    from solvers.training_plan import plan_training

    plans = benchmark.pedantic(
        plan_training,
        args=("llama3.1-405b", "h100-sxm", 16384),
        kwargs={"global_batch": 2048, "seq_len": 8192, "catalog": catalog},
        rounds=3,
        iterations=1,
    )
    benchmark.extra_info["candidates"] = plans.evaluated + sum(plans.rejected.values())
    assert plans.best.result.fits


def test_plan_training_gpt3_13b_on_64(benchmark, catalog: Catalog) -> None:  # type: ignore[no-untyped-def]
    from solvers.training_plan import plan_training

    plans = benchmark.pedantic(
        plan_training,
        args=("gpt3-13b", "a100-sxm-80gb", 64),
        kwargs={
            "global_batch": 256,
            "seq_len": 2048,
            "catalog": catalog,
            "micro_batches": tuple(range(1, 17)),
            "virtual_stages": (1, 2, 3, 4, 5, 8),
        },
        rounds=3,
        iterations=1,
    )
    benchmark.extra_info["candidates"] = plans.evaluated + sum(plans.rejected.values())
    assert plans.best.result.fits


def test_plan_inference_six_hardware_types(benchmark, catalog: Catalog) -> None:  # type: ignore[no-untyped-def]
    from solvers.inference_plan import Slo, Workload, plan_inference

    hardware = ["h100-sxm", "h200-sxm", "b200", "mi300x", "a100-sxm-80gb", "l40s"]
    plans = benchmark.pedantic(
        plan_inference,
        args=("llama3.1-70b", hardware, Workload(20, 2048, 512, 2048, 512), Slo(0.5, 0.05)),
        kwargs={"catalog": catalog},
        rounds=3,
        iterations=1,
    )
    assert plans.best.devices >= 1
