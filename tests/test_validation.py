"""The validation table, its runner, and issue 3's gate: every category's median error within 15%."""

from __future__ import annotations

from collections import Counter

import pytest

from planner.catalog import Catalog
from planner.validation import CATEGORIES, SERVING_METRICS, load_rows, run_validation


def test_every_row_is_sourced_and_complete() -> None:
    rows = load_rows()
    assert len(rows) >= 40
    assert len({r["id"] for r in rows}) == len(rows)
    for r in rows:
        assert r["category"] in CATEGORIES, r["id"]
        assert isinstance(r["measured"], (int, float)), r["id"]
        # a fit/OOM fact is 1 or 0; every other measurement is a positive quantity
        assert r["measured"] in (0, 1) if r["metric"] == "fits" else r["measured"] > 0, r["id"]
        assert len(r.get("source", "")) > 20, r["id"]
        assert r.get("config", {}).get("hardware"), r["id"]


def test_runner_predicts_most_rows_and_reports_the_rest(catalog: Catalog) -> None:
    rows, summary = run_validation(catalog=catalog)
    status = Counter("evaluated" if r.predicted is not None else "skipped" for r in rows)
    assert status["evaluated"] >= 90
    for r in rows:
        assert r.status in ("ok", "calibration") or r.status.startswith("not evaluable: "), r
        if r.predicted is not None:
            assert (r.predicted in (0.0, 1.0) if r.metric == "fits" else r.predicted > 0) and r.error is not None
    main = {s.category for s in summary if "[" not in s.category}
    assert main == set(CATEGORIES) | set(SERVING_METRICS)
    assert {s.category for s in summary} - main == {
        f"{c} [{g}]" for c in ("inference", "inference ttft", "inference tpot") for g in ("gpt-oss sweep", "all")
    }
    families = {
        catalog.device(r.hardware).family
        if r.hardware in catalog.devices
        else catalog.device(catalog.system(r.hardware).device).family
        for r in rows
        if r.predicted is not None
    }
    assert {"ampere", "hopper", "blackwell", "cdna3"} <= families and families & {"tpu", "gaudi", "ascend"}


def test_calibration_rows_are_predicted_closely(catalog: Catalog) -> None:
    """A calibration row set a parameter; predicting it within 10% checks the plumbing, not the model."""
    rows, _ = run_validation(catalog=catalog)
    calib = [r for r in rows if r.status == "calibration"]
    assert calib
    assert all(abs(r.error) < 0.10 for r in calib if r.error is not None), [(r.id, r.error) for r in calib]


GATE = 0.15
# Serving latency is judged per metric, at the targets of issue 10 (TTFT within 30%, TPOT within 12%).
GATES = {"inference ttft": 0.30, "inference tpot": 0.12, "memory peak": 0.10, "memory fit": 0.0}
# Categories whose median error is above the gate, with the reason. The model is not tuned until
# they pass: each stays an expected failure, and strict=True turns it red the day it starts to pass,
# so this list can only shrink.
MISSING_GATE: dict[str, str] = {
    "attention": "FlashAttention-3's forward at head dim 64 (four rows from two sources) runs 16-24% below the "
    "model, which hides all of the softmax under the MMAs as at head dim 128 although the exponentials then take "
    "~60% of the MMAs' time; H100 PCIe (350 W) 66% below; the six earlier rows' median is 8.8%",
    "gemm": "the GEMM shape sweeps (265 rows, README 'Validation') measure kernels the model gives one rate per "
    "family and precision: AITER's block-scale FP8 GEMMs on MI355X run 40% below the CDNA4 FP8 rate (+61-71%), "
    "MI300X's 20% (+23%); B200's small squares in XLA's table +47% and Liger's k <= 2048 sweep +19%; H20 "
    "reaches ~92% of its throttled FP8 peak where the Hopper fraction gives 70% (-25%). Hopper's own groups "
    "(DeepGEMM, TileLang, cuBLAS) are within 10% but one TileLang FP8 build (-17%)",
    "energy": "ML.ENERGY v3.0 rows (planner.power, one calibration row): B200 draws 85-97% of TDP at every batch "
    "where the model says 69-87%, and energy per token inherits the serving model's throughput, 1.2-2.2x "
    "ML.ENERGY's for Llama-3.1-8B on H100 (chat prompts of unstated length, varied output lengths)",
    "moe-kernel": "fused-MoE layers reach the modelled weight-streaming time at a few hundred tokens but fall "
    "behind as tokens grow (Triton fused_moe on H100 at 4k tokens: 9.5% of the FP8 peak against the dense 70%; "
    "TensorRT-LLM NVFP4 1.5-2.1x from 1k tokens; vLLM's Feb-2025 kernels 2-4.5x everywhere) and at 1-4 tokens "
    "(SGLang/vLLM/FlashInfer tuning tables, 2025-26: 20-45% short, a fixed ~10-30 us per call beyond the "
    "modelled launches); the spread by kernel (1-3x) is why no grouped-GEMM efficiency is set from these "
    "evaluation rows",
    "inference": "353 measured serving rows came with the scheduler model; 70 are DeepSeek-R1 on "
    "early-2025 engines (vLLM 0.7, SGLang 0.4.2-0.4.3, TRT-LLM 0.17) predicted 2-5x fast (README 'Validation'); "
    "the gpt-oss-120b sweep (its own line) is 47% off: the model prefills gpt-oss ~2x too fast on every platform",
    "inference ttft": "InferenceMAX's medians are within 8-22% but its means are 20-28% off and its p99s 28-55%: at "
    "4-8 clients p99s of 1-4 s are cold starts in a run's first requests, at 32-128 clients large prefill batches "
    "run ~1.5-2x slower than modelled (fused-MoE kernels fall behind from ~1k tokens); NIM's Llama rows at 50-250 "
    "clients are 2-11x long (its admission is not modelled); early-2025 engines (dstack) 58-76% short; GPUStack's "
    "single bursts drain 1.2-2x slower. The gpt-oss-120b sweep's own line (54%) is 2x short everywhere but "
    "TensorRT-LLM on B200: the model prefills gpt-oss ~2x too fast, kernel unknown",
    "inference prefill": "static prefill passes (SGLang bench_one_batch, DeepSeek-V3/R1): 16 x 512 tokens on H200 "
    "+17%, one 1000-token prompt -22%/-27% (April 2025), a 128-token one -49% (early 2025); MI300X's day-one "
    "ROCm path (Jan 2025) and its pre-AITER MoE -56%/-60%, with AITER -17%, a 2024 ROCm build of Llama-3-8B "
    "-22%: early-2025 builds cost more per pass than the 36 us per launch measured on late-2025 and 2026 engines",
    "inference decode": "static decode steps (SGLang bench_one_batch): DeepSeek-V3.1 on 8 x H200 (Dec 2025) within 2%, "
    "but early-2025 DeepSeek builds take 17-21 ms a step at batch 1 on H200 where the model gives 8 ms, 2.5-2.9x "
    "on MI300X (Jan-Feb 2025), and a 2024 ROCm build of Llama-3-8B 40% more: the model has no per-release factor",
    "inference tpot": "DeepSeek-R1 rows on early-2025 engines 50-70% fast (TensorRT-LLM 0.17's eager decode "
    "brings its six to 26%); GPUStack's single bursts decode at a pace the model puts ~2x faster while it drains "
    "their queue 1.2-2x too fast; NIM's unstated KV precision (bf16 assumed) halves the slots. The gpt-oss sweep's "
    "line (22.5%): B200 vLLM 7% and MI355X 3%, Hopper and CDNA3 23-35% fast",
}


@pytest.fixture(scope="module")
def summary(catalog: Catalog) -> dict[str, float]:
    rows, per_category = run_validation(catalog=catalog)
    out = {s.category: s.median_abs_error for s in per_category}
    fit = [abs(r.error) for r in rows if r.metric == "fits" and r.status == "ok" and r.error is not None]
    out["memory fit"] = max(fit) if fit else float("nan")
    return out


@pytest.mark.parametrize(
    "category",
    [
        pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=MISSING_GATE[c])) if c in MISSING_GATE else c
        for c in (*CATEGORIES, *SERVING_METRICS)
    ],
)
def test_median_error_per_category_within_gate(summary: dict[str, float], category: str) -> None:
    """Fit/OOM facts must all be right: their gate is on the worst row, not the median."""
    median, gate = summary[category], GATES.get(category, GATE)
    assert median == median, f"{category}: no evaluated non-calibration rows"  # NaN: nothing to judge
    assert median <= gate, f"{category}: median error {median:.1%} > {gate:.0%}"


def test_server_flags_map_to_the_admission_interval() -> None:
    """A row's scheduler flags, as the engine code reads them (planner.validation._poll_interval)."""
    from planner.validation import _poll_interval

    assert _poll_interval({}) == 1
    assert _poll_interval({"scheduler_recv_interval": 30}) == 30
    assert _poll_interval({"scheduler_recv_interval": 1, "num_continuous_decode_steps": 4}) == 1  # inert flag
    assert _poll_interval({"batch_wait_timeout_iters": 40, "batch_wait_max_tokens_ratio": 0.8}) == 41
    assert _poll_interval({"adp_balance_timeout_iters": 60}) == 61


def test_a_provenance_group_is_summarised_apart_and_together(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Rows with a `group` stay out of their category's main line; the group's own line and the line
    of all rows follow it."""
    table = tmp_path / "rows.yaml"
    row = (
        "- id: {id}\n  category: gemm\n  config: {{hardware: h100-sxm, devices: 1, m: 8192, n: 8192, k: 8192, "
        "precision: bf16}}\n  metric: achieved_flops_per_s\n  measured: {v}\n  source: a hand-made row for the test\n"
    )
    table.write_text(
        "rows:\n" + row.format(id="main", v=7.0e14) + row.format(id="grouped", v=3.5e14) + "  group: test sweep\n"
    )
    rows, summary = run_validation(table)
    assert [r.group for r in rows] == ["", "test sweep"]
    by = {s.category: s for s in summary}
    assert set(by) == {"gemm", "gemm [test sweep]", "gemm [all]"}
    main, grouped = (abs(r.error) for r in rows)  # type: ignore[arg-type]
    assert by["gemm"].median_abs_error == pytest.approx(main)
    assert by["gemm [test sweep]"].median_abs_error == pytest.approx(grouped)
    assert by["gemm [all]"].rows == 2 and by["gemm [all]"].median_abs_error == pytest.approx((main + grouped) / 2)


def test_a_malformed_moe_shape_is_reported_not_raised(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "rows.yaml"
    bad.write_text(
        "rows:\n- id: bad-moe\n  category: moe-kernel\n  config: {hardware: h100-sxm, tokens: 256, "
        "moe_shape: {experts: 8, topk: 2}}\n  metric: time_s\n  measured: 0.001\n  source: a row with a misspelt key\n"
    )
    rows, _ = run_validation(bad)
    assert rows[0].predicted is None and rows[0].status.startswith("not evaluable: moe_shape needs experts, top_k")
