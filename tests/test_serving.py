"""Serving under load: the engines' schedulers, closed and open loops, KV admission, the KV link."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware_db.errors import InvalidSpecError
from planner.catalog import Catalog
from planner.cluster import resolve_cluster
from planner.collectives import UNMEASURED_LINK_FRACTION
from planner.inference import estimate_inference
from planner.kernels import estimate_gemm
from planner.queueing import md1_wait_s
from planner.replica import dominant_bound
from planner.serving import (
    DECODE,
    EAGER_HOST_S_PER_LAUNCH,
    FULL,
    OWN,
    PERCENTILES,
    EngineProfile,
    Latency,
    _weighted_quantiles,
    admitted,
    closed_loop,
    engine_profile,
    poisson,
)
from planner.training import estimate_training
from solvers.inference_plan import Slo, Workload, plan_inference


@settings(max_examples=40, deadline=None)
@given(
    model=st.sampled_from(["llama3.1-8b", "qwen3-8b", "mixtral-8x7b"]),
    hardware=st.sampled_from(["h100-sxm", "a100-sxm-80gb", "mi300x", "l40s"]),
    input_len=st.integers(16, 30000),  # with the output, within every model's context (mixtral: 32k)
    output_len=st.integers(2, 2048),
    concurrency=st.integers(1, 512),
    engine=st.sampled_from(["vllm", "vllm-v0", "sglang", "trtllm"]),
    arrival=st.sampled_from(["closed", "poisson"]),
    spread=st.booleans(),  # lengths drawn in [0.8 L, L], as InferenceMAX's harness does
    poll=st.sampled_from([1, 4, 30]),
)
def test_ttft_never_beats_the_prompts_own_prefill(
    catalog: Catalog,
    model: str,
    hardware: str,
    input_len: int,
    output_len: int,
    concurrency: int,
    engine: str,
    arrival: str,
    spread: bool,
    poll: int,
) -> None:
    ratio = 0.8 if spread and arrival == "closed" else 1.0
    input_len = 10 * max(input_len // 10, 2)  # so that the mean length (1 + r) L / 2 is whole
    common = dict(output_len=output_len, catalog=catalog)
    tp = 2 if model == "mixtral-8x7b" else 1
    static = estimate_inference(model, hardware, tp, tp=tp, batch=1, input_len=(1 + ratio) / 2 * input_len, **common)
    r = estimate_inference(
        model,
        hardware,
        tp,
        tp=tp,
        concurrency=concurrency,
        engine=engine,
        arrival=arrival,
        input_len=input_len,
        range_ratio=ratio,
        poll_interval=poll,
        **common,
    )
    if not r.fits:
        return
    floor = static.prefill_s * (1 - 1e-9)
    assert r.ttft_s >= floor and r.ttft_p50_s >= floor
    assert r.ttft_p50_s <= r.ttft_p90_s * (1 + 1e-12) <= r.ttft_p99_s * (1 + 1e-9)
    assert math.isfinite(r.tpot_s) and r.tpot_s > 0 and r.throughput_tokens_per_s > 0


@pytest.mark.parametrize("mode", ["aggregated", "disaggregated"])
def test_a_served_request_crosses_the_front_end(catalog: Catalog, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    """Every served request's TTFT carries the server's front end: 5.7 ms plus 1.25 us per prompt
    token (vLLM 0.19's measured HTTP overhead, planner.serving); a static batch carries none."""
    import planner.serving as serving

    assert serving.front_end_s(1000.0) == pytest.approx(5.7e-3 + 1.25e-3)
    kw: dict[str, Any] = dict(concurrency=1, input_len=4000, output_len=64, catalog=catalog)
    if mode == "disaggregated":
        kw.update(disaggregated=True, prefill_devices=1)
    with_front = estimate_inference("llama3.1-8b", "h100-sxm", 2 if mode == "disaggregated" else 1, **kw)
    static = estimate_inference("llama3.1-8b", "h100-sxm", 1, batch=1, input_len=4000, output_len=64, catalog=catalog)
    monkeypatch.setattr(serving, "FRONT_END_S", 0.0)
    monkeypatch.setattr(serving, "TOKENIZE_S_PER_TOKEN", 0.0)
    without = estimate_inference("llama3.1-8b", "h100-sxm", 2 if mode == "disaggregated" else 1, **kw)
    bare_static = estimate_inference(
        "llama3.1-8b", "h100-sxm", 1, batch=1, input_len=4000, output_len=64, catalog=catalog
    )
    # one request at a time: the front end adds to its TTFT (disaggregated, the prefill pool's M/D/1
    # queue also sees the closed loop slowed by it, so its wait shrinks a little)
    added = with_front.ttft_s - without.ttft_s
    front = 5.7e-3 + 4000 * 1.25e-6
    assert added == pytest.approx(front) if mode == "aggregated" else 0.95 * front < added <= front
    assert with_front.ttft_p50_s > without.ttft_p50_s
    assert static.ttft_s == bare_static.ttft_s


def test_issue_examples_ttft_is_at_least_the_prefill(catalog: Catalog) -> None:
    static = estimate_inference("llama3.1-8b", "h100-sxm", 1, batch=1, input_len=32768, catalog=catalog)
    one = estimate_inference("llama3.1-8b", "h100-sxm", 1, concurrency=1, input_len=32768, catalog=catalog)
    assert static.prefill_s > 0.9 and one.ttft_s >= static.prefill_s
    kw = dict(tp=4, weight_precision="fp8", input_len=2048, output_len=512, catalog=catalog)
    prefill = estimate_inference("qwen3-32b", "h200-sxm", 4, batch=1, **kw).prefill_s
    r = estimate_inference("qwen3-32b", "h200-sxm", 4, concurrency=np.array([1, 64]), **kw)
    assert np.all(r.ttft_s >= prefill) and r.ttft_s[1] > 2 * r.ttft_s[0]


def _tau(burst: float, group: float, decode: float) -> np.ndarray:
    return np.array([burst, group, group, group, decode, group])


def test_prefill_first_closed_loop_by_hand() -> None:
    """8 clients, 2 prompts per 2000-token iteration: the first prompt runs alone (0.1 s), then ranks
    wait ceil(r / 2) = 1,1,2,2,3,3,4,4 bursts of 0.1 s; ranks 2-8 also waited out the lone one."""
    sglang = EngineProfile("t", 2000, mixed=False, chunked=True, reserves_output=False, source="test")
    lat = closed_loop(sglang, _tau(0.1, 0.1, 0.01), np.array(8.0), np.array(1000.0), np.array(11.0), np.array(0.1))
    ranks = [0.1, 0.2, 0.3, 0.3, 0.4, 0.4, 0.5, 0.5]
    assert lat.ttft_s == pytest.approx(sum(ranks) / 8)
    e2e = 0.1 + 4 * 0.1 + 10 * 0.01  # every request ends together: the lone prompt, the burst, 10 decode steps
    assert lat.tpot_s == pytest.approx((e2e - sum(ranks) / 8) / 10)
    assert lat.rate_per_s == pytest.approx(8 / e2e)
    assert [float(p) for p in lat.ttft_percentiles_s] == pytest.approx([0.3, 0.5, 0.5])


def test_mixed_closed_loop_by_hand() -> None:
    """Budget 2007 less 7 running decodes: 2 prompts per iteration; after the first wave, staggered."""
    vllm = EngineProfile("t", 2007, mixed=True, chunked=True, reserves_output=False, source="test")
    lat = closed_loop(vllm, _tau(0.08, 0.1, 0.01), np.array(8.0), np.array(1000.0), np.array(11.0), np.array(0.1))
    share = 4 / 11  # 4 prompt-carrying iterations per cycle of 1 + 10 iterations
    t_avg = share * 0.1 + (1 - share) * 0.01
    steady = 0.5 * t_avg + 0.1
    # the first wave: ranks 1..8 get their first token after 1,1,2,2,3,3,4,4 of the 4 burst
    # iterations and decode through the 3,3,2,2,1,1,0,0 left (1.5 on average) at the burst's pace
    first = (1.5 * 0.08 + 8.5 * t_avg) / 10
    assert lat.tpot_s == pytest.approx(0.1 * first + 0.9 * t_avg)
    wave = 2.5 * 0.08 + 7 / 8 * 0.1  # ranks 2-8 also wait for the first prompt's lone iteration (own: 0.1 s)
    assert lat.ttft_s == pytest.approx(0.1 * wave + 0.9 * steady)
    assert lat.rate_per_s == pytest.approx(8 / (lat.ttft_s + 10 * lat.tpot_s))


def test_a_single_burst_decodes_at_the_burst_pace_then_alone() -> None:
    """num_prompts = C: no request follows the wave, so after the burst the decodes run alone."""
    vllm = EngineProfile("t", 2007, mixed=True, chunked=True, reserves_output=False, source="test")
    lat = closed_loop(vllm, _tau(0.08, 0.1, 0.01), np.array(8.0), np.array(1000.0), np.array(11.0), np.array(1.0))
    assert lat.tpot_s == pytest.approx((1.5 * 0.08 + 8.5 * 0.01) / 10)
    assert lat.ttft_s == pytest.approx(2.5 * 0.08 + 7 / 8 * 0.1)


def test_staggered_prefill_first_by_hand() -> None:
    """Lengths that vary break SGLang's waves: every P = 10 decode steps the scheduler takes the
    prompts that came since its last look. 8 clients, 11 decode steps of 10 ms, 1000-token prompts,
    budget 2000: a look picks up g = 8 x 10 / (10 + 1 + 5) = 5 prompts, prefilled in ceil(5 / 2) = 3
    iterations; the middle one's first token after ceil(3 / 2) = 2 of them."""
    sglang = EngineProfile("t", 2000, mixed=False, chunked=True, reserves_output=False, source="test", poll_steps=10)
    tau = np.array([0.3, 0.3, 0.1, 0.06, 0.01, 0.06])  # burst, group, full (2000 tokens), own (1000), decode
    lat = closed_loop(sglang, tau, np.array(8.0), np.array(1000.0), np.array(11.0), np.array(0.0), staggered=True)
    g, t_g = 5.0, 0.1  # 5000 tokens exceed the budget: full iterations
    others = (8 - g) / g * 3 * t_g  # 0.18 s of the other prompts' prefill per request life
    u = 0.0
    for _ in range(2):
        ttft = 0.5 * 10 * 0.01 / (1 - u) + 2 * t_g
        total = others + ttft + 10 * 0.01
        life = (total + math.sqrt(total**2 - 4 * ttft * others)) / 2
        u = others / life
    assert float(lat.ttft_s) == pytest.approx(ttft)
    assert float(lat.tpot_s) == pytest.approx(0.01 / (1 - u))
    assert float(lat.rate_per_s) == pytest.approx(8 / (ttft + 10 * 0.01 / (1 - u)))
    # a lone client: its own prompt, half a look's wait, and no one else's prefill in its decodes
    one = closed_loop(sglang, tau, np.array(1.0), np.array(1000.0), np.array(11.0), np.array(0.0), staggered=True)
    assert float(one.ttft_s) == pytest.approx(0.5 * 10 * 0.01 + 0.06) and float(one.tpot_s) == pytest.approx(0.01)


def test_the_poll_interval_adds_half_its_steps_to_mixed_ttft() -> None:
    """A mixed engine that looks for new requests every P iterations: the steady state waits P/2."""
    base = EngineProfile("t", 2007, mixed=True, chunked=True, reserves_output=False, source="test")
    polled = EngineProfile("t", 2007, mixed=True, chunked=True, reserves_output=False, source="test", poll_steps=9)
    args = (_tau(0.08, 0.1, 0.01), np.array(8.0), np.array(1000.0), np.array(11.0), np.array(0.0))
    t_avg = 4 / 11 * 0.1 + 7 / 11 * 0.01
    assert float(closed_loop(polled, *args).ttft_s - closed_loop(base, *args).ttft_s) == pytest.approx(4 * t_avg)


def test_staggered_mixed_scheduling_by_hand() -> None:
    """Lengths that vary break a mixed engine's cohorts too: a steady-state iteration carries the
    prompts that came since the last one, beside the running decodes. 8 clients, 11 decode steps
    of 10 ms, 1000-token prompts, 2000 prompt tokens an iteration: g = 8 / (10 + 1 + 0.5) < 1, so one
    prompt (its own chunk, 60 ms with the decodes); 8 such iterations in a cycle of 1 + 10."""
    vllm = EngineProfile("t", 2007, mixed=True, chunked=True, reserves_output=False, source="test")
    tau = np.array([0.3, 0.3, 0.1, 0.06, 0.01, 0.05])  # burst, group, full (2000 tokens), own (1000), decode
    lat = closed_loop(vllm, tau, np.array(8.0), np.array(1000.0), np.array(11.0), np.array(0.0), staggered=True)
    t_avg = 8 / 11 * 0.06 + 3 / 11 * 0.01
    assert float(lat.ttft_s) == pytest.approx(0.5 * t_avg + 0.06)
    assert float(lat.tpot_s) == pytest.approx(t_avg)
    # equal lengths keep the cohorts: each steady iteration carries a burst iteration's prompts
    same = closed_loop(vllm, tau, np.array(8.0), np.array(1000.0), np.array(11.0), np.array(0.0))
    assert float(same.ttft_s) == pytest.approx(0.5 * (4 / 11 * 0.3 + 7 / 11 * 0.01) + 0.3)


def test_range_ratio_means_shorter_requests_and_is_checked(catalog: Catalog) -> None:
    """Lengths in [r L, L] average (1 + r) L / 2; they also break up the cohorts of the first wave,
    so the steady state's prompt iterations are smaller than with every request at the mean."""
    kw = dict(tp=8, input_len=1000, output_len=500, engine="trtllm", catalog=catalog)
    spread = estimate_inference("llama3.1-70b", "h100-sxm", 8, concurrency=16, range_ratio=0.8, **kw)
    same = estimate_inference(
        "llama3.1-70b",
        "h100-sxm",
        8,
        concurrency=16,
        input_len=900,
        output_len=450,
        **{k: v for k, v in kw.items() if k not in ("input_len", "output_len")},
    )
    assert spread.input_len == 1000 and float(spread.prefill_s) == pytest.approx(float(same.prefill_s))
    assert float(spread.ttft_s) < float(same.ttft_s)
    for bad in (0.0, 1.5):
        with pytest.raises(InvalidSpecError, match="range-ratio"):
            estimate_inference("llama3.1-70b", "h100-sxm", 8, concurrency=16, range_ratio=bad, **kw)
    with pytest.raises(InvalidSpecError, match="closed-loop"):
        estimate_inference("llama3.1-70b", "h100-sxm", 8, batch=16, range_ratio=0.8, **kw)
    with pytest.raises(InvalidSpecError, match="poll-interval"):
        estimate_inference("llama3.1-70b", "h100-sxm", 8, concurrency=16, poll_interval=0, **kw)


def test_an_eager_prefill_lasts_at_least_its_host_dispatch(catalog: Catalog) -> None:
    """A 16-token prompt on SGLang (eager extend batches): the prefill iteration is host-bound,
    36 us per kernel launch of the op list; vLLM V1 replays CUDA graphs and runs at GPU speed."""
    kw = dict(concurrency=1, input_len=16, output_len=64, catalog=catalog)
    sglang = estimate_inference("llama3.1-8b", "h100-sxm", 1, engine="sglang", **kw)
    launches = sum(t.op.kernels * t.op.count for t in sglang.op_times[0][1])
    assert float(sglang.prefill_s) == pytest.approx(launches * EAGER_HOST_S_PER_LAUNCH)
    assert 300 < launches < 420  # 32 layers of about 11 launches, the embedding and the head
    graphed = estimate_inference("llama3.1-8b", "h100-sxm", 1, engine="sglang", eager_prefill=False, **kw)
    vllm = estimate_inference("llama3.1-8b", "h100-sxm", 1, engine="vllm", **kw)
    assert float(graphed.prefill_s) < 0.5 * float(sglang.prefill_s)
    assert float(vllm.prefill_s) == pytest.approx(float(graphed.prefill_s))
    assert float(vllm.tpot_s) == pytest.approx(float(sglang.tpot_s), rel=0.05)  # decode steps stay graphed


def test_an_eager_mla_prefill_pays_its_host_dispatch_after_its_gpu_work(catalog: Catalog) -> None:
    """MLA's prefill attention reads device values back in every layer (host_adds_to_prefill), so
    SGLang's eager DeepSeek-V3 pass takes its graphed time plus the host's dispatch: 61 layers of
    ~31.6 launches at 36 us, ~69 ms on top. A GQA model's host runs ahead: the longer of the two."""
    kw = dict(batch=1, input_len=1000, output_len=2, engine="sglang", weight_precision="fp8", catalog=catalog)
    eager = estimate_inference("deepseek-v3", "h200-sxm", 8, tp=8, **kw)
    graphed = estimate_inference("deepseek-v3", "h200-sxm", 8, tp=8, eager_prefill=False, **kw)
    launches = sum(t.op.kernels * t.op.count for t in eager.op_times[0][1])
    assert 1850 < launches < 2000
    assert float(eager.prefill_s) == pytest.approx(float(graphed.prefill_s) + launches * 36e-6)
    assert float(eager.ttft_s) == pytest.approx(float(eager.prefill_s))  # a static batch: no front end
    assert eager.engine == "sglang" and graphed.engine is None  # the engine shaped the static answer
    dense = estimate_inference("llama3.1-70b", "h100-sxm", 8, tp=8, **kw)
    dense_graphed = estimate_inference("llama3.1-70b", "h100-sxm", 8, tp=8, eager_prefill=False, **kw)
    dense_launches = sum(t.op.kernels * t.op.count for t in dense.op_times[0][1])
    host_s = dense_launches * EAGER_HOST_S_PER_LAUNCH
    assert float(dense.prefill_s) == pytest.approx(max(float(dense_graphed.prefill_s), host_s))


def test_an_eager_decode_step_lasts_at_least_its_host_dispatch(catalog: Catalog) -> None:
    """Without CUDA graphs at all (TensorRT-LLM's PyTorch backend before July 2025) a decode step
    is issued kernel by kernel: Llama-3.1-8B at batch 4 reads 16 GB of weights in ~5 ms, but its
    32 layers of ~11 launches take 36 us each from the host, ~13 ms. DeepSeek-V3's host runs ahead
    too (the MLA read-back is a prefill matter), so its step is the longer of the two."""
    kw = dict(batch=4, input_len=512, output_len=64, engine="trtllm", catalog=catalog)
    eager = estimate_inference("llama3.1-8b", "h100-sxm", 1, eager_decode=True, **kw)
    graphed = estimate_inference("llama3.1-8b", "h100-sxm", 1, **kw)
    launches = sum(t.op.kernels * t.op.count for t in eager.op_times[1][1])
    assert 300 < launches < 420
    assert float(eager.decode_step_s) == pytest.approx(launches * EAGER_HOST_S_PER_LAUNCH)
    assert float(graphed.decode_step_s) < 0.5 * float(eager.decode_step_s)
    assert float(eager.prefill_s) == pytest.approx(float(graphed.prefill_s))  # prefill was eager already
    assert (eager.bound, graphed.bound) == ("overhead", "memory")  # the host, not the weight reads, sets the step
    served = estimate_inference("llama3.1-8b", "h100-sxm", 1, concurrency=4, eager_decode=True, **kw | {"batch": None})
    assert float(served.tpot_s) >= launches * EAGER_HOST_S_PER_LAUNCH * (1 - 1e-9)
    ds = dict(batch=4, input_len=1000, output_len=64, engine="trtllm", weight_precision="fp8", catalog=catalog)
    ds_eager = estimate_inference("deepseek-v3", "h200-sxm", 8, tp=8, eager_decode=True, **ds)
    ds_graphed = estimate_inference("deepseek-v3", "h200-sxm", 8, tp=8, **ds)
    ds_launches = sum(t.op.kernels * t.op.count for t in ds_eager.op_times[1][1])
    host_s = ds_launches * EAGER_HOST_S_PER_LAUNCH
    assert float(ds_eager.decode_step_s) == pytest.approx(max(float(ds_graphed.decode_step_s), host_s))


@pytest.mark.parametrize("engine", ["vllm", "vllm-v0", "sglang", "trtllm"])
def test_eager_decode_never_shortens_a_step_and_is_off_by_default(engine: str, catalog: Catalog) -> None:
    assert not engine_profile(engine, 80e9).eager_decode
    kw = dict(concurrency=np.array([1, 8, 64]), input_len=1024, output_len=128, engine=engine, catalog=catalog)
    graphed = estimate_inference("qwen3-30b-a3b", "h100-sxm", 1, **kw)
    eager = estimate_inference("qwen3-30b-a3b", "h100-sxm", 1, eager_decode=True, **kw)
    assert np.all(eager.tpot_s >= graphed.tpot_s * (1 - 1e-12))
    assert np.all(eager.ttft_s >= graphed.ttft_s * (1 - 1e-12))


def test_matmul_precision_runs_mxfp4_moe_as_w4a16(catalog: Catalog) -> None:
    """vLLM's MXFP4 MoE takes bf16 activations: the weights stay 4-bit in memory, the math runs
    at the bf16 rate and no activation cast precedes the GEMMs."""
    kw = dict(batch=64, input_len=2048, output_len=2, weight_precision="fp4", catalog=catalog)
    w4a8 = estimate_inference("gpt-oss-20b", "h100-sxm", 1, **kw)  # fp4 on Hopper runs on its fp8 units
    w4a16 = estimate_inference("gpt-oss-20b", "h100-sxm", 1, matmul_precision="bf16", **kw)
    assert (w4a8.matmul_precision, w4a16.matmul_precision) == ("fp8", "bf16")
    assert w4a16.weight_bytes_per_device == w4a8.weight_bytes_per_device
    # the expert GEMMs of a 131k-token prefill run at the achieved bf16 rate instead of the fp8 one
    # (H100: 989 against 1979 TFLOPS peak, each at its measured fraction); attention was 16-bit already
    perf = resolve_cluster("h100-sxm", 1, catalog).perf
    experts = [{t.op.name: float(t.compute_s) for t in r.op_times[0][1]}["experts"] for r in (w4a8, w4a16)]
    assert experts[1] / experts[0] == pytest.approx(perf.achieved_flops("fp8") / perf.achieved_flops("bf16"))
    assert perf.achieved_flops("fp8") / perf.achieved_flops("bf16") > 1.5
    assert 1.1 < float(w4a16.prefill_s) / float(w4a8.prefill_s) < 2.0
    gemms = [t for t in w4a16.op_times[0][1] if t.op.op_class == "gemm"]
    assert gemms and all(t.op.kernels == 1.0 and not t.op.cast_bytes for t in gemms)


@pytest.mark.parametrize("concurrency", [1, 64, np.array([1.0, 64.0, 512.0])])
def test_a_serving_columns_bound_is_its_ops_bound(catalog: Catalog, concurrency: Any) -> None:
    """The lazy column reads its ops' times without building them: the same bound as the built ops."""
    r = estimate_inference("llama3.1-70b", "h100-sxm", 8, tp=8, concurrency=concurrency, catalog=catalog)
    for _, column in r.op_times:
        assert column.bound == dominant_bound(list(column))


def test_poisson_solves_littles_law_and_the_md1_queue() -> None:
    vllm = EngineProfile("t", 4096, mixed=True, chunked=True, reserves_output=False, source="test")
    tau = np.array([0.05, 0.05, 0.06, 0.03, 0.012, 0.03])
    c, length, out = np.array(32.0), np.array(1024.0), np.array(200.0)
    lat = poisson(vllm, tau, c, length, out)
    lam = float(lat.rate_per_s)
    k = (4096 - 31) / 1024  # prompts per full iteration
    service = tau[FULL] / k
    assert float(lat.utilization) == pytest.approx(lam * service)
    assert float(lat.tpot_s) == pytest.approx(tau[DECODE] / (1 - lam * service + lam * tau[DECODE] / k))
    assert float(lat.ttft_s) == pytest.approx(0.5 * float(lat.tpot_s) + tau[OWN] + md1_wait_s(lam, service))
    assert lam * (float(lat.ttft_s) + 199 * float(lat.tpot_s)) == pytest.approx(32.0, rel=1e-6)


def test_clients_beyond_the_kv_cache_wait_for_a_slot(catalog: Catalog) -> None:
    kw = dict(tp=2, weight_precision="fp8", input_len=5000, output_len=500, engine="trtllm", catalog=catalog)
    slots = estimate_inference("llama3.1-70b", "h100-sxm", 2, concurrency=1, **kw).max_concurrency
    r = estimate_inference("llama3.1-70b", "h100-sxm", 2, concurrency=np.array([slots, 4 * slots]), **kw)
    assert r.fits.all()
    # the same running set either way (its first wave a smaller share of the longer run's requests)
    assert r.throughput_tokens_per_s[1] == pytest.approx(r.throughput_tokens_per_s[0], rel=0.05)
    assert r.tpot_s[1] == pytest.approx(r.tpot_s[0], rel=0.05)
    # 10 requests per client: 3 x slots queue at the start, later arrivals find as many ahead
    rate, w, n = r.throughput_tokens_per_s[1] / 500, 3 * slots, 40 * slots
    expected_wait = (0.5 * w * (w + 1) + (n - 4 * slots) * w) / (n * rate)
    assert r.ttft_s[1] - r.ttft_s[0] == pytest.approx(expected_wait, rel=0.05)


def test_engine_defaults_follow_their_code() -> None:
    gib = 1024.0**3
    assert engine_profile("vllm", 80e9, device_id="h100-sxm").token_budget == 8192
    assert engine_profile("vllm", 80e9, device_id="a100-sxm-80gb").token_budget == 2048  # PR #17885
    assert engine_profile("vllm", 48e9, device_id="l40s").token_budget == 2048
    assert engine_profile("sglang", 141e9).token_budget == 8192
    assert engine_profile("sglang", 192 * gib).token_budget == 16384
    assert not engine_profile("sglang", 80e9).mixed and engine_profile("vllm", 80e9).mixed
    assert not engine_profile("trtllm", 80e9).chunked and engine_profile("trtllm", 80e9).reserves_output
    assert engine_profile("vllm", 80e9, 512).token_budget == 512
    # vLLM V0 as it runs MLA models: prefill-first, whole prompts, budget max(max_model_len, 2048)
    v0 = engine_profile("vllm-v0", 141e9, max_model_len=163840)
    assert (v0.token_budget, v0.mixed, v0.chunked, v0.eager_prefill) == (163840, False, False, True)
    assert engine_profile("vllm-v0", 141e9, max_model_len=1024).token_budget == 2048
    assert engine_profile("vllm-v0", 141e9, 32768, max_model_len=163840).token_budget == 32768
    assert engine_profile("sglang", 80e9).eager_prefill and not engine_profile("vllm", 80e9).eager_prefill
    with pytest.raises(InvalidSpecError, match="unknown serving engine 'tgi'"):
        engine_profile("tgi", 80e9)
    with pytest.raises(InvalidSpecError, match="--token-budget"):
        engine_profile("vllm", 80e9, -5)


def test_engines_differ_where_their_schedulers_do(catalog: Catalog) -> None:
    """Prefill-first stalls decodes for each burst; mixed keeps the staggered clients apart."""
    kw = dict(tp=4, weight_precision="fp8", concurrency=64, input_len=2048, output_len=512, catalog=catalog)
    vllm = estimate_inference("qwen3-32b", "h200-sxm", 4, engine="vllm", **kw)
    sglang = estimate_inference("qwen3-32b", "h200-sxm", 4, engine="sglang", **kw)
    assert sglang.ttft_s > 2 * vllm.ttft_s
    poisson_ = estimate_inference("qwen3-32b", "h200-sxm", 4, arrival="poisson", **kw)
    assert poisson_.ttft_s < vllm.ttft_s  # no synchronised first wave


def test_disaggregated_kv_crosses_the_network_between_nodes(catalog: Catalog) -> None:
    kw = dict(tp=8, concurrency=64, disaggregated=True, input_len=2048, catalog=catalog)
    apart = estimate_inference("llama3.1-70b", "h100-sxm", 16, prefill_devices=8, **kw)
    assert "scale-out" in apart.kv_link
    kv = 2048 * 80 * 8 * 128 * 2 * 2  # tokens x layers x KV heads x head dim x (K, V) x bf16 bytes
    ib = catalog.link("ib-ndr")
    per_rail = ib.bandwidth_per_direction_bytes_per_s * (ib.achieved_fraction or UNMEASURED_LINK_FRACTION)
    assert apart.kv_transfer_s == pytest.approx(kv / (per_rail * 8) + ib.latency_s, rel=0.02)
    assert apart.kv_transfer_s > 5e-4
    close = estimate_inference("llama3.1-8b", "h100-sxm", 4, tp=2, prefill_devices=2, concurrency=8, disaggregated=True)
    assert "scale-up" in close.kv_link


def test_aggregated_ttft_slo_binds_in_plans(catalog: Catalog) -> None:
    """Long prompts: a tight TTFT target forces lower concurrency per replica, so more devices (one
    weight precision, so that the plan cannot answer by switching precision instead)."""
    w = Workload(8.0, 8192, 256, 8192, 256)
    kw = dict(disaggregated=False, weight_precisions=("bf16",), catalog=catalog)
    loose = plan_inference("llama3.1-8b", "h100-sxm", w, Slo(30.0, 0.2), **kw)
    tight_ttft = 0.8 * loose.best.ttft_s
    tight = plan_inference("llama3.1-8b", "h100-sxm", w, Slo(tight_ttft, 0.2), **kw)
    assert tight.best.ttft_s <= tight_ttft
    assert tight.best.devices > loose.best.devices


def test_tokens_per_speculative_step_by_hand() -> None:
    from planner.speculative import Speculation

    assert Speculation("eagle", 3, 0.7).tokens_per_step == pytest.approx((1 - 0.7**4) / 0.3)  # 2.533
    assert Speculation("mtp", 1, 0.85).tokens_per_step == pytest.approx(1.85)
    assert Speculation("ngram", 4, 1.0).tokens_per_step == 5.0
    assert Speculation("ngram", 4, 0.0).tokens_per_step == 1.0


def test_speculative_step_costs_verify_plus_drafts(catalog: Catalog) -> None:
    """At batch 1 (weight-bound): free drafts all accepted divide TPOT by nearly k + 1; none accepted
    cost a k + 1-token verification; MTP adds one layer and the head per draft."""
    kw = dict(tp=8, batch=1, input_len=2048, output_len=512, catalog=catalog)
    plain = estimate_inference("llama3.1-70b", "h100-sxm", 8, **kw)
    all_in = estimate_inference(
        "llama3.1-70b", "h100-sxm", 8, speculative="ngram", draft_tokens=3, acceptance=1.0, **kw
    )
    none_in = estimate_inference(
        "llama3.1-70b", "h100-sxm", 8, speculative="ngram", draft_tokens=1, acceptance=0.0, **kw
    )
    mtp = estimate_inference("llama3.1-70b", "h100-sxm", 8, speculative="mtp", draft_tokens=1, acceptance=0.0, **kw)
    assert plain.tpot_s / 4 < all_in.tpot_s < plain.tpot_s / 3
    assert plain.tpot_s < none_in.tpot_s < 1.2 * plain.tpot_s
    decode = dict(plain.op_times)["decode"]
    head = sum(float(t.total_s) for t in decode if t.op.name in ("embedding", "final_norm", "lm_head"))
    layer = (plain.tpot_s - head) / 80  # one of the 80 decoder layers
    assert mtp.tpot_s - none_in.tpot_s == pytest.approx(layer + head, rel=1e-6)
    assert mtp.weight_bytes_per_device == pytest.approx(plain.weight_bytes_per_device * (1 + 1 / 80))
    assert mtp.tokens_per_step == 1.0 and all_in.tokens_per_step == 4.0


def test_speculative_knobs_are_checked(catalog: Catalog) -> None:
    kw = dict(batch=1, catalog=catalog)
    with pytest.raises(InvalidSpecError, match="need --speculative"):
        estimate_inference("llama3.1-8b", "h100-sxm", 1, draft_tokens=2, **kw)
    with pytest.raises(InvalidSpecError, match="--acceptance"):
        estimate_inference("llama3.1-8b", "h100-sxm", 1, speculative="eagle", draft_tokens=2, acceptance=1.5, **kw)
    with pytest.raises(InvalidSpecError, match="--draft-tokens"):
        estimate_inference("llama3.1-8b", "h100-sxm", 1, speculative="eagle", draft_tokens=0, acceptance=0.5, **kw)
    with pytest.raises(InvalidSpecError, match="unknown --speculative"):
        estimate_inference("llama3.1-8b", "h100-sxm", 1, speculative="medusa", draft_tokens=2, acceptance=0.5, **kw)


_PER_SCENARIO = (
    "ttft_s",
    "ttft_p99_s",
    "tpot_s",
    "throughput_tokens_per_s",
    "memory_per_device_bytes",
    "fits",
    "max_batch",
    "max_concurrency",
)


@settings(max_examples=15, deadline=None)
@given(
    model=st.sampled_from(["qwen3-32b", "llama3.1-8b", "llama3.1-70b"]),
    knob=st.sampled_from(["batch", "concurrency"]),
    values=st.lists(st.integers(1, 512), min_size=2, max_size=4),
    input_len=st.sampled_from([512, 4096, 16384]),
    disaggregated=st.booleans(),
)
def test_an_array_estimate_equals_its_scalar_estimates(
    catalog: Catalog, model: str, knob: str, values: list[int], input_len: int, disaggregated: bool
) -> None:
    """Issue 11's example: qwen3-32b on one H100 at concurrency [1, 64] and 4096-token prompts gave
    TPOT 1.009 s at c=1 (placement computed for the largest scenario); alone it is 0.0245 s."""
    kw: dict = dict(input_len=input_len, output_len=256, catalog=catalog)
    if disaggregated:
        knob, kw = "concurrency", dict(kw, disaggregated=True, prefill_devices=1)
    n = 2 if disaggregated else 1
    many = estimate_inference(model, "h100-sxm", n, **{knob: np.array(values)}, **kw)
    for i, v in enumerate(values):
        one = estimate_inference(model, "h100-sxm", n, **{knob: v}, **kw)
        for field in _PER_SCENARIO if not disaggregated else _PER_SCENARIO[:6]:
            got, want = np.ravel(getattr(many, field))[i], getattr(one, field)
            assert got == pytest.approx(want, rel=1e-9), (field, v)
        reason = np.ravel(np.asarray(many.fit_reason, dtype=object))
        assert reason[i if reason.size > 1 else 0] == one.fit_reason, v


def test_issue_11_example_tpot_per_scenario(catalog: Catalog) -> None:
    kw = dict(input_len=4096, catalog=catalog)
    many = estimate_inference("qwen3-32b", "h100-sxm", 1, concurrency=np.array([1, 64]), **kw)
    one = estimate_inference("qwen3-32b", "h100-sxm", 1, concurrency=1, **kw)
    assert many.tpot_s[0] == pytest.approx(one.tpot_s) and one.tpot_s < 0.05


def test_moe_dispatch_in_fp8_and_combine_in_bf16() -> None:
    from planner.catalog import load_catalog, resolve_model
    from planner.ops import DISPATCH_FP8_BYTES, Precisions, Sharding, phase_ops

    spec = resolve_model("deepseek-v3", load_catalog())
    s = Sharding(tp=1, ep=8, busiest_ep_rank=False)  # a typical rank: the busiest is tested in test_engine
    for weights, dispatch_bytes in (("fp8", DISPATCH_FP8_BYTES), ("bf16", 2.0)):
        ops = {o.name: o for o in phase_ops(spec, s, Precisions(weights), 64, 1.0, "decode", 4096.0)}
        routed = 64 * spec.moe.top_k  # token-expert pairs leaving this device
        assert ops["ep_dispatch"].activation_bytes == pytest.approx(routed * spec.hidden_size * dispatch_bytes)
        assert ops["ep_combine"].activation_bytes == pytest.approx(routed * spec.hidden_size * 2.0)


def test_redundant_experts_let_ep_skip_dividing_the_experts(catalog: Catalog) -> None:
    from planner.catalog import resolve_model
    from planner.memory import weight_bytes_per_device
    from planner.ops import Precisions, Sharding
    from workloads.derived import moe_layer_count, moe_layer_params

    kw = dict(tp=1, ep=72, weight_precision="fp8", concurrency=512, catalog=catalog)
    with pytest.raises(InvalidSpecError, match="not divisible by ep"):
        estimate_inference("deepseek-v3", "gb200-nvl72", 72, **kw)
    r = estimate_inference("deepseek-v3", "gb200-nvl72", 72, redundant_experts=32, **kw)
    spec = resolve_model("deepseek-v3", catalog)
    plain = weight_bytes_per_device(spec, Sharding(tp=1, ep=8), Precisions("fp8"))
    per_expert = moe_layer_params(spec).routed_expert.total * moe_layer_count(spec)  # fp8: a byte each
    assert r.weight_bytes_per_device == pytest.approx(plain - per_expert * (256 / 8 - 288 / 72))


def test_two_batch_overlap_hides_the_all_to_all(catalog: Catalog) -> None:
    from planner.catalog import resolve_model
    from planner.cluster import resolve_cluster
    from planner.ops import Precisions, Sharding
    from planner.replica import pass_time

    spec, cluster = resolve_model("deepseek-v3", catalog), resolve_cluster("h200-sxm", 8, catalog)
    s, p = Sharding(tp=1, ep=8), Precisions("fp8")
    args = (cluster, spec, s, p)
    tail = (np.asarray(4096.0), "prefill", None, 4.8e12)
    half, times = pass_time(*args, np.asarray(1.0), *tail)
    a2a = sum(float(t.total_s) for t in times if t.op.comm_tier == "ep")
    both, _ = pass_time(*args, np.asarray(2.0), *tail, two_batch_overlap=True)
    assert both == pytest.approx(2 * max(half - a2a, a2a))
    plain, _ = pass_time(*args, np.asarray(2.0), *tail)
    assert both < plain  # prefill: compute-bound halves hide the all-to-all


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: estimate_inference("llama3.1-8b", "h100-sxm", 1, batch=2.5), "--batch must be a whole number"),
        (lambda: estimate_inference("llama3.1-8b", "h100-sxm", 1, input_len=0), "--input-len must be a whole"),
        (lambda: estimate_inference("llama3.1-8b", "h100-sxm", 1, input_len=200000), "exceeds llama3.1-8b's context"),
        (lambda: estimate_inference("llama3.1-8b", "h100-sxm", 1, concurrency=float("nan")), "--concurrency"),
        (lambda: estimate_inference("llama3.1-8b", "h100-sxm", 2, prefill_devices=1), "need --disaggregated"),
        (
            lambda: estimate_inference("llama3.1-8b", "h100-sxm", 2, batch=4, disaggregated=True),
            "disaggregated serving takes --concurrency",
        ),
        (lambda: estimate_inference("llama3.1-8b", "h100-sxm", 1, token_budget=-5, concurrency=8), "--token-budget"),
        (lambda: estimate_training("llama3.1-8b", "a100-sxm-80gb", 8, precision="fp8"), "fp8 training needs"),
        (lambda: estimate_training("llama3.1-8b", "h100-sxm", 8, cp=8, seq_len=4095), "multiple of 2 x cp"),
        (lambda: estimate_training("llama3.1-8b", "h100-sxm", 8, virtual_stages=4), "needs pipeline parallelism"),
        (lambda: estimate_training("llama3.1-8b", "h100-sxm", 8, seq_len=0), "--seq-len must be a whole"),
        (lambda: estimate_gemm("h100-sxm", 8192, 8192, 8192, "fp4"), "no fp4 matrix units"),
    ],
)
def test_what_cannot_be_computed_is_refused(call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidSpecError, match=message):
        call()


def test_a_precision_without_units_says_which_it_falls_back_to(catalog: Catalog) -> None:
    """Issue 11: FP4 on Hopper reported more than its own FP8. Inference on a part without the
    weights' matrix units runs on the next wider unit and says so; a kernel what-if is refused."""
    fp4 = estimate_inference("llama3.1-8b", "h100-sxm", 1, weight_precision="fp4", catalog=catalog)
    fp8 = estimate_inference("llama3.1-8b", "h100-sxm", 1, weight_precision="fp8", catalog=catalog)
    assert fp4.matmul_precision == "fp8" and fp8.matmul_precision == "fp8"
    a100 = estimate_inference("llama3.1-8b", "a100-sxm-80gb", 1, weight_precision="fp8", catalog=catalog)
    assert a100.matmul_precision == "bf16"  # weights dequantised in the GEMM (W8A16)


def test_plan_inputs_are_checked(tmp_path) -> None:  # type: ignore[no-untyped-def]
    w = Workload(5.0, 1024, 256)  # the max lengths default to the means
    assert (w.max_input_len, w.max_output_len) == (1024, 256)
    with pytest.raises(InvalidSpecError, match="--rate"):
        Workload(float("inf"), 1024, 256)
    with pytest.raises(InvalidSpecError, match="--ttft"):
        Slo(float("nan"), 0.05)
    with pytest.raises(InvalidSpecError, match="--tpot"):
        Slo(1.0, -0.05)
    lengths = tmp_path / "lengths.csv"
    lengths.write_text("input_len,output_len\n100,20\n-5,30\n")
    with pytest.raises(InvalidSpecError, match=">= 1 token in every row"):
        Workload.from_csv(lengths, 2.0)


def test_dispatch_is_deduplicated_per_remote_domain() -> None:
    """Top-8 routing over 4 domains: 6 remote copies per token on average, but 4 x 0.75 x
    (1 - 0.75^8) = ~2.70 remote domains, so 45% of the cross-domain bytes cross."""
    from planner.ops import node_dedup_share

    assert node_dedup_share(8, 4) == pytest.approx(3 * (1 - 0.75**8) / 6)
    assert node_dedup_share(8, 1) == 1.0 and node_dedup_share(1, 8) == pytest.approx(1.0)


def test_wide_ep_across_nodes_pays_less_with_dedup(catalog: Catalog) -> None:
    from planner.cluster import resolve_cluster
    from planner.collectives import collective_time

    cluster = resolve_cluster("h100-sxm", 32, catalog)
    full = collective_time(cluster, "all-to-all", 64e6, 32).time_s
    dedup = collective_time(cluster, "all-to-all", 64e6, 32, internode_share=0.45).time_s
    assert dedup < 0.6 * full


_TRAINING_FIELDS = ("step_time_s", "tokens_per_s", "mfu", "memory_per_device_bytes", "activations_bytes", "fits")


@settings(max_examples=10, deadline=None)
@given(
    micro=st.lists(st.sampled_from([1, 2, 4]), min_size=2, max_size=3),
    seq=st.sampled_from([2048, 8192, 32768]),
    zero=st.sampled_from([0, 1, 3]),
)
def test_a_training_sweep_equals_its_single_estimates(catalog: Catalog, micro: list[int], seq: int, zero: int) -> None:
    kw = dict(tp=8, pp=2, global_batch=256, seq_len=seq, zero=zero, catalog=catalog)
    many = estimate_training("llama3.1-70b", "h100-sxm", 64, micro_batch=np.array(micro), **kw)
    for i, b in enumerate(micro):
        one = estimate_training("llama3.1-70b", "h100-sxm", 64, micro_batch=b, **kw)
        for field in _TRAINING_FIELDS:
            got, want = np.ravel(getattr(many, field))[i], getattr(one, field)
            assert got == pytest.approx(want, rel=1e-9), (field, b)


@settings(max_examples=80, deadline=None)
@given(
    pairs=st.lists(
        st.tuples(st.floats(0.0, 10.0).map(lambda x: round(x, 1)), st.floats(0.01, 5.0)), min_size=1, max_size=70
    )
)
def test_one_estimate_quantiles_match_the_batched_path(pairs: list[tuple[float, float]]) -> None:
    """The plain 1-D path of the weighted quantiles (one estimate) and the batched path agree."""
    v, w = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    one = _weighted_quantiles(v, w, PERCENTILES)
    batched = _weighted_quantiles(v[None, :], w[None, :], PERCENTILES)
    assert [float(x) for x in one] == [float(x[0]) for x in batched]


def test_queued_clients_wait_for_a_slot_by_hand() -> None:
    """10 clients, 4 slots, a running set ending 2 requests a second. A single burst (10 requests)
    drains: the 6 queued wait 0.5, 1.0, ..., 3.0 s, a mean of 21 / 2 / 10 = 1.05 s over all 10.
    A long run (1000 requests) tends to Little's 6 / 2 = 3 s: (21 + 990 x 6) / (1000 x 2)."""
    base = Latency(
        np.array(0.1), (np.array(0.1), np.array(0.2), np.array(0.3)), np.array(0.01), np.array(2.0), np.array(0.5)
    )
    burst = admitted(base, np.array(10.0), np.array(4.0), np.array(10.0))
    assert float(burst.ttft_s) == pytest.approx(0.1 + 1.05)
    # ranks 5, 9 and 9.9 of 10: the 1st, 5th and 5.9th queued requests
    assert [float(x) for x in burst.ttft_percentiles_s] == pytest.approx([0.1 + 0.5, 0.2 + 2.5, 0.3 + 2.95])
    long = admitted(base, np.array(10.0), np.array(4.0), np.array(1000.0))
    assert float(long.ttft_s) == pytest.approx(0.1 + (21 + 990 * 6) / 2000)
    assert float(admitted(base, np.array(4.0), np.array(4.0), np.array(40.0)).ttft_s) == pytest.approx(0.1)
    assert burst.tpot_s is base.tpot_s and burst.rate_per_s is base.rate_per_s


def test_single_burst_beyond_the_cache_drains_its_queue(catalog: Catalog) -> None:
    """vllm bench serve with all N requests at once and room for far fewer (GPUStack's Qwen3-32B
    runs: mean TTFT 164 s of a 328 s run, 586 s of 1157 s): the queue drains at the running set's
    rate, so the mean TTFT is about half the run, and the throughput is the running set's."""
    kw = dict(input_len=2000, output_len=100, weight_precision="fp8", engine="trtllm", catalog=catalog)
    r = estimate_inference("qwen3-32b", "h100-sxm", 1, concurrency=500, num_prompts=500, **kw)
    running = float(r.max_concurrency)
    assert running < 100
    run_s = 500 * 100 / float(r.throughput_tokens_per_s)
    assert 0.35 < float(r.ttft_s) / run_s < 0.5  # half the run, less the admitted first wave's share
    # a 10x longer run keeps the queue full (Little's law): every request waits (500 - running) / rate
    long = estimate_inference("qwen3-32b", "h100-sxm", 1, concurrency=500, num_prompts=5000, **kw)
    rate = float(long.throughput_tokens_per_s) / 100
    assert float(long.ttft_s) == pytest.approx((500 - running) / rate, rel=0.1)
