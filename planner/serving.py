"""Continuous batching under load: what a serving engine's scheduler does to TTFT and TPOT.

An engine runs iterations. Each carries at most `token_budget` tokens: one for each running request
(its decode) plus prompt tokens (prefill), a prompt split over several iterations when chunked
prefill is on. Engines differ in what matters for latency (`EngineProfile`, defaults from their code):
- mixed scheduling (vLLM V1, TensorRT-LLM in-flight batching): running decodes are scheduled first
  and prompt tokens fill the rest of the budget, in the same iteration (one read of the weights);
- prefill-first (SGLang's default): waiting prompts run as a prefill batch of their own, and every
  decode waits for it.

Per replica: c requests in flight, prompt L, output O tokens, budget B. Prompt tokens an iteration
takes: B_eff = max(B - (c - 1), B / 4) under mixed scheduling (the other requests' decodes first),
B under prefill-first. Six iteration shapes are timed by the caller in one vectorised pass
(`iteration_shapes`): a burst iteration (a full share of prompts while half the burst is already
decoding), a group iteration (the same prompts beside all running decodes), a full-budget
iteration, the prompt's own chunk, a decode-only step, and the prompt's prefill alone.

Admission: the KV cache holds only so many requests (planner.serving.held_tokens: the prompt and the
whole output under TensorRT-LLM's GUARANTEED_NO_EVICT, the prompt and half the output on average
where blocks grow with the tokens). Clients beyond that wait for a slot (`admitted`).

Closed loop (`arrival="closed"`: C benchmark clients, a new request as soon as one finishes). The
harness starts all C requests at once, so the first C prompts arrive together (a burst): request of
rank r gets its first token after j(r) = ceil(r L / B_eff) burst iterations (unchunked engines:
ceil(r / floor(B_eff / L))). The prompts reach the scheduler one after another (the front end
tokenises one request at a time), and an idle scheduler starts at once on what it has: the first
prompt runs alone and ranks 2..C also wait out that iteration (SGLang 0.5.9: the scheduler busy-polls
when idle and drains its queue at each poll; pegainfer #744 reports the same: "the first selection
sees only 1 of 16 requests; the rest arrive one step later"). Afterwards:
- prefill-first, every request the same length: every request of the wave finishes in the same
  decode step, so every wave is again a burst. e2e = n x tau_burst + (O - 1) x tau_decode for all
  (n = j(c)); TPOT = (e2e - TTFT) / (O - 1).
- prefill-first, lengths drawn in [r L, L] (`staggered`, bench_serving's --random-range-ratio r < 1):
  the waves break up after the first and the later prompts are prefilled in small groups while
  the decodes wait (`_prefill_first_steady`).
- mixed: requests prefilled in different iterations finish in different iterations, and their
  successors arrive staggered: each group is prefilled in its own iteration(s) beside the running
  decodes. Per cycle of N = W + O - 1 iterations a request waits W = max(ceil(L / B_eff), n - O + 1)
  iterations (more than its own chunks only when the budget cannot absorb a wave within one
  lifetime), a share u = n / N of iterations carries prompts, tau_avg = u tau_group + (1 - u) tau_decode,
  TTFT_ss = P tau_avg / 2 + W_own tau_group + (W - W_own) tau_avg, TPOT = tau_avg, where P is the
  engine's admission interval (`poll_steps`: a new prompt waits half of it on average).
  A benchmark of `num_prompts` requests averages the first wave (C of them) with the steady state;
  the first wave's early requests decode one token per burst iteration until the burst ends.
Percentiles come from the mixture of the burst's ranks and the steady state. Prompt-carrying
iterations of engines that run them eagerly last at least their host dispatch (`host_floor_s`).

Open loop (`arrival="poisson"`, requests at rate lam; c in flight on average, Little's law): the
prompts' prefill is an M/D/1 server (planner.queueing) with service s = L tau_full / B_eff. A share
rho = lam s of wall time runs prompt-carrying iterations; TPOT = tau_decode / (1 - rho) under
prefill-first (decodes stop), tau_decode / (1 - rho + lam tau_decode L / B_eff) under mixed (those
iterations decode too). TTFT = P TPOT / 2 + W_own tau_own + Wq; lam solves c = lam (TTFT + (O - 1) TPOT).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from hardware_db.errors import InvalidSpecError
from planner.arrays import count, whole
from planner.queueing import md1_wait_percentile_s, md1_wait_s

Array = npt.NDArray[np.float64]

ARRIVALS = ("closed", "poisson")
PERCENTILES = (0.5, 0.9, 0.99)

# Requests a closed-loop benchmark sends per client: SemiAnalysis InferenceMAX runs
# `--num-prompts $(( CONC * 10 ))` (benchmarks/*.sh) with request rate inf under a semaphore of C,
# so the first wave (1 request in 10) arrives as one burst. vLLM's and SGLang's own harnesses
# default to 1000 prompts: pass num_prompts for those.
PROMPTS_PER_CLIENT = 10.0


@dataclass(frozen=True)
class EngineProfile:
    id: str
    token_budget: int  # tokens one iteration may carry (prompt chunks plus one per running decode)
    mixed: bool  # prompt chunks share the iteration with the running decodes
    chunked: bool  # a prompt may be split across iterations
    reserves_output: bool  # admission reserves KV for the whole output (else blocks grow as tokens come)
    source: str
    # prompt-carrying iterations run eagerly (kernels issued one by one from Python; decode-only
    # ones replay CUDA graphs): such an iteration lasts at least its host dispatch time
    eager_prefill: bool = False
    # decode-only iterations run eagerly too (no CUDA graphs at all: TensorRT-LLM's PyTorch backend
    # before July 2025, PyTorchConfig use_cuda_graph False unless set): such a step lasts at least
    # its host dispatch time
    eager_decode: bool = False
    # decode iterations between the scheduler's admissions of new requests: SGLang's
    # --scheduler-recv-interval (SchedulerRecvSkipper: a decode step counts 1 toward it, a prefill
    # 1000, so it polls at once after one), TensorRT-LLM's batch_wait_timeout_iters + 1; else 1
    poll_steps: int = 1


_GIB = 1024.0**3


def engine_profile(
    engine: str,
    device_memory_bytes: float,
    token_budget: int | None = None,
    device_id: str = "",
    poll_steps: int = 1,
    eager_prefill: bool | None = None,
    max_model_len: int = 0,
    eager_decode: bool | None = None,
) -> EngineProfile:
    """The engine's default scheduler on a device with that much memory; `token_budget` overrides
    the budget (vLLM --max-num-batched-tokens, SGLang --chunked-prefill-size, TRT-LLM max_num_tokens),
    `poll_steps` the decode iterations between its looks for new requests, `eager_prefill` whether
    prompt-carrying iterations run without CUDA graphs (None: the engine's default; EngineProfile),
    `eager_decode` whether decode-only ones do too (None: no engine's current default);
    `max_model_len` the longest sequence served (vLLM V0 sizes its budget from it)."""
    if engine not in ENGINES:
        raise InvalidSpecError(f"unknown serving engine '{engine}' (allowed: {', '.join(ENGINES)})")
    if token_budget is not None and not (
        isinstance(token_budget, (int, float)) and np.isfinite(token_budget) and token_budget >= 1
    ):
        raise InvalidSpecError(f"--token-budget must be a whole number >= 1 (got {token_budget})")
    poll_steps = count("--poll-interval", poll_steps)
    profile = ENGINES[engine](device_memory_bytes, device_id)
    if engine == "vllm-v0":
        profile = replace(profile, token_budget=max(int(max_model_len), profile.token_budget))
    if token_budget is not None:
        profile = replace(profile, token_budget=int(token_budget), source="user-given budget")
    if eager_prefill is not None:
        profile = replace(profile, eager_prefill=bool(eager_prefill))
    if eager_decode is not None:
        profile = replace(profile, eager_decode=bool(eager_decode))
    return profile if poll_steps == 1 else replace(profile, poll_steps=poll_steps)


# Host time to dispatch one kernel of the op list (planner.ops counts launches per op) from an
# eager PyTorch engine: Python, the ATen dispatcher, allocator calls and the launch. Derived from
# published eager-vs-graphed forward times, each host time divided by the op list's launches for
# that model (11 per dense decoder layer; 31.6 per DeepSeek-V3 layer with 8-bit math, whose GEMMs
# each take an input cast, 21.8 with 16-bit math):
# - SGLang PR #12160: DeepSeek-V3 (61 layers, FP8), a 1-token prefill 82.6 ms eager, 23.1 ms with
#   a prefill CUDA graph; the host's share, 59.5 ms (the two add: see `host_adds_to_prefill`): 31 us;
# - tokenspeed PR #597: Kimi-K2.6 (DeepSeek-V3's architecture, 61 layers; precision not stated), a
#   2048-token prefill 123 ms eager, 55 ms graphed ("~GPU compute floor"): 68 ms, 35 us with
#   8-bit math, 51 us with 16-bit;
# - DeepSpeed PR #8352 (H200): GPT-2 (12 layers) eager forwards 4.67 ms (vLLM) and 4.73 ms
#   (SGLang) each, GPU time negligible: 35 and 36 us;
# - sfllm PR #46: Qwen3-4B (36 layers) eager forward 16.4 ms at both 129 and 513 tokens (a host
#   floor over the GPU's work): 41 us.
# Their median, 36 us; a C++ engine issues a launch in ~2 us (sparkinfer PR #800's nsys trace), so
# this holds for Python engines only.
EAGER_HOST_S_PER_LAUNCH = 36e-6


# What the serving front end adds to every request's TTFT besides the engine's iterations: the HTTP
# request, the OpenAI-compatible server's parsing, the hops to the scheduler and back, and the
# prompt's tokenisation on the CPU (HF tokenizers). Measured on vLLM 0.19 (2 x MI300X, one request
# at a time; andyluo7/cpu-gpu-codesign-agentic-inference RESULTS_SUMMARY.md, t_http_overhead "from
# the client sending the request to the first byte back", prefill reported apart): 7 / 15 / 47 /
# 131 ms at 1k / 8k / 32k / 100k prompt tokens, i.e. 5.7 ms + 1.25 us per prompt token (the two
# ends; within 0.7 ms at 8k and 1.3 ms at 32k). The same source times a standalone HF-tokenizers encode at
# 1.7 us per token. No engine-specific figure was found for SGLang's or TensorRT-LLM's servers,
# which are the same kind (a Python OpenAI server tokenising with HF tokenizers), so this holds
# for every engine here; a static batch (offline, no server) pays none of it.
FRONT_END_S = 5.7e-3
TOKENIZE_S_PER_TOKEN = 1.25e-6


def front_end_s(prompt_tokens: Any) -> Any:
    """The serving front end's share of one request's TTFT (FRONT_END_S)."""
    return FRONT_END_S + TOKENIZE_S_PER_TOKEN * prompt_tokens


def host_floor_s(profile: EngineProfile, launches: Any, decode_only: bool = False) -> Any:
    """The host's dispatch time for an iteration of `launches` kernel launches (a prompt-carrying
    one, or with `decode_only` a decode step): 0 where the engine replays CUDA graphs for it."""
    eager = profile.eager_decode if decode_only else profile.eager_prefill
    return EAGER_HOST_S_PER_LAUNCH * launches if eager else 0.0


def host_adds_to_prefill(attention_kind: str) -> bool:
    """Whether an eager prefill's host dispatch adds to its GPU time rather than hiding under it.
    The host runs ahead of the GPU unless it must read a device value back: MLA's prefill
    attention does so in every layer, so each layer's launches start only once the GPU has caught
    up. Published: SGLang PR #4577 (a device-to-host copy in DeepseekV2AttentionMLA leaves bubbles in
    the timeline); FlashInfer's trtllm_ragged_attention_deepseek reads the lengths back with
    .item(), "blocking the host on the whole stream backlog once per layer per prefill forward"
    (SGLang PR #38502); tokenspeed PR #597 ("varlen attention, data-dependent host scalars").
    TensorRT-LLM 0.21's DeepSeek-R1 TTFT is a ~69 ms intercept plus a per-token slope (issue
    #5929); the serving rows favour the sum over the longer of the two with the per-launch time
    that would then follow (43 us): README 'Validation'. For other attention the host runs ahead,
    and the pass lasts the longer of the two (sfllm PR #46: Qwen3-4B 16.4 ms eager at 129 and 513
    tokens alike)."""
    return attention_kind == "mla"


def _vllm(memory_bytes: float, device_id: str) -> EngineProfile:
    # vLLM V1, vllm/engine/arg_utils.py EngineArgs._set_default_args (0.11.x, commit 99d7eb5d):
    # `vllm serve` defaults max_num_batched_tokens to 8192 on GPUs with >= 70 GiB that are not A100
    # ("Setting large max_num_batched_tokens for A100 reduces throughput", PR #17885), else 2048.
    # V1 always chunks prefill; vllm/v1/core/sched/scheduler.py schedules the running requests
    # first (decodes and unfinished chunks), then waiting prompts with the budget left, in one batch.
    large = memory_bytes >= 70 * _GIB and not device_id.startswith("a100")
    # KV blocks are allocated as tokens arrive (paged attention), preempting when they run out.
    # V1 compiles the model (torch.compile) and replays piecewise CUDA graphs for mixed batches,
    # full ones for decode (CompilationConfig cudagraph_mode FULL_AND_PIECEWISE): not eager.
    return EngineProfile(
        "vllm",
        8192 if large else 2048,
        mixed=True,
        chunked=True,
        reserves_output=False,
        source="vLLM V1 arg_utils.py, v1 scheduler.py",
    )


def _vllm_v0(memory_bytes: float, device_id: str) -> EngineProfile:
    # vLLM's V0 engine (before 0.8) without chunked prefill, as it runs MLA models ("MLA is enabled;
    # forcing chunked prefill and prefix caching to be disabled", vllm/config.py, v0.7.x logs):
    # core/scheduler.py _schedule_default schedules waiting prompts first, whole, as a batch of
    # their own, and running decodes only in iterations without one; max_num_batched_tokens is
    # max(max_model_len, 2048) (engine/arg_utils.py). CUDA graphs for decodes only ("vLLM uses cuda
    # graph only for decoding requests", worker/model_runner.py).
    return EngineProfile(
        "vllm-v0",
        2048,
        mixed=False,
        chunked=False,
        reserves_output=False,
        source="vLLM V0 scheduler.py, arg_utils.py, model_runner.py",
        eager_prefill=True,
    )


def _sglang(memory_bytes: float, device_id: str) -> EngineProfile:
    # SGLang python/sglang/srt/server_args.py _handle_gpu_memory_settings (v0.5 era):
    # chunked_prefill_size 2048 below 35 GB, 4096 below 60, 8192 below 160 (H100, H200, H20),
    # 16384 from 160 GB (B200, MI300X); max_prefill_tokens 16384 bounds the prefill batch too.
    # Scheduler.get_next_batch_to_run runs a new prefill batch first when one is ready ("Run
    # prefill first if possible"); decodes join it only with --enable-mixed-chunk (off).
    gb = memory_bytes / 1e9
    budget = 2048 if gb < 35 else 4096 if gb < 60 else 8192 if gb < 160 else 16384
    # Admission reserves the prompt plus an estimate of new tokens (new_token_ratio), decaying from
    # conservative towards the observed lengths; blocks are taken as tokens arrive.
    # CUDA graphs are captured for decode batches only (cuda_graph_runner.py, can_run: forward mode
    # decode or idle); extend/prefill batches run eagerly unless --enable-piecewise-cuda-graph,
    # opt-in through v0.5.9 (server_args.py: enable_piecewise_cuda_graph = False). From v0.5.10
    # (PyPI 2026-04-05, PR #16331) piecewise graphs are on by default for prefills of up to 2048
    # tokens on MLA models (chunked_prefill_size on others) on CUDA, and off on ROCm, with DP
    # attention, an all-to-all MoE backend, speculative decoding (to 0.5.10), PD disaggregation
    # or the flashinfer_trtllm MoE runner (DeepSeek on B200): pass eager_prefill=False where the
    # prefill iterations stay within that size.
    # The default here stays the eager one that every measured SGLang row (<= 0.5.9) ran.
    return EngineProfile(
        "sglang",
        budget,
        mixed=False,
        chunked=True,
        reserves_output=False,
        source="SGLang server_args.py, scheduler.py",
        eager_prefill=True,
    )


def _trtllm(memory_bytes: float, device_id: str) -> EngineProfile:
    # TensorRT-LLM PyTorch backend (llmapi/llm_args.py, BuildConfig; trtllm-serve): max_num_tokens
    # 8192, enable_chunked_prefill False, GUARANTEED_NO_EVICT; the micro-batch scheduler puts
    # generation tokens and whole context requests in one iteration under max_num_tokens;
    # GUARANTEED_NO_EVICT admits a request only when its blocks to completion (prompt + output) fit.
    # CUDA graphs cover generation-only batches (cuda_graph_config); context iterations run
    # eagerly unless piecewise CUDA graphs are on ("Piecewise CUDA Graph primarily benefit
    # host-bound iterations in the context phase": docs/source/torch/features/
    # torch_compile_and_piecewise_cuda_graph.md).
    return EngineProfile(
        "trtllm",
        8192,
        mixed=True,
        chunked=False,
        reserves_output=True,
        source="TensorRT-LLM llm_args.py, scheduler",
        eager_prefill=True,
    )


ENGINES = {"vllm": _vllm, "vllm-v0": _vllm_v0, "sglang": _sglang, "trtllm": _trtllm}

# Indices of the iteration shapes along the last axis of `iteration_shapes`' arrays; the last one
# is a prompt's prefill alone (the static prefill time, from the same vectorised pass).
BURST, GROUP, FULL, OWN, DECODE, PREFILL = range(6)
SHAPES = 6


def prompt_budget(profile: EngineProfile, slots: Array) -> Array:
    """Prompt tokens one iteration takes. Under mixed scheduling the decodes come first; once they
    would leave less than a quarter of the budget, we stop following them (vLLM then defers decodes
    themselves, a replica far past any useful concurrency)."""
    b = float(profile.token_budget)
    if not profile.mixed:
        return np.full_like(slots, b)
    return np.maximum(b - _running(slots), b / 4.0)


def _running(slots: Array) -> Array:
    """Requests decoding while a prompt is prefilled: every slot but the prompt's own."""
    return np.maximum(slots - 1.0, 0.0)


def _prompts_per_iteration(profile: EngineProfile, budget: Array, in_len: Array) -> Array:
    """Prompts one iteration completes: fractional when chunked; whole prompts otherwise (at least
    one: an engine sized for the workload runs a prompt longer than its budget alone)."""
    if profile.chunked:
        return budget / in_len
    return np.maximum(np.floor(budget / in_len), 1.0)


def iteration_shapes(profile: EngineProfile, slots: Array, in_len: Array) -> tuple[Array, Array]:
    """(decode sequences, prompt tokens) of the iteration shapes, on a trailing axis of SHAPES."""
    budget = prompt_budget(profile, slots)
    k = _prompts_per_iteration(profile, budget, in_len)
    full = k * in_len
    group = np.minimum(full, slots * in_len)
    own = np.minimum(in_len, budget) if profile.chunked else in_len
    zero = np.zeros_like(group)
    tokens = np.stack([group, group, full, own, zero, np.broadcast_to(in_len, group.shape)], axis=-1)
    d = _running(slots) if profile.mixed else np.zeros_like(slots)
    decodes = np.stack([0.5 * d, d, d, d, slots, zero], axis=-1)
    return decodes, tokens


@dataclass(frozen=True)
class Latency:
    ttft_s: Array  # mean
    ttft_percentiles_s: tuple[Array, ...]  # at the quantiles asked for (PERCENTILES by default)
    tpot_s: Array  # mean over requests of (e2e - ttft) / (output - 1)
    rate_per_s: Array  # requests per second the replica completes
    utilization: Array  # share of wall time spent on prompt-carrying iterations


_GRID = (np.arange(64) + 0.5) / 64  # rank quantiles sampled in a burst


def _burst_iterations(profile: EngineProfile, slots: Array, in_len: Array, budget: Array) -> tuple[Array, Array, Array]:
    """Iterations until each sampled rank's first token (..., 64), the burst's length n = j(c), and
    the sampled ranks."""
    ranks = np.ceil(_GRID * slots[..., None])
    if profile.chunked:
        x = (in_len / budget)[..., None]
        j = np.ceil(ranks * x - 1e-9)
        n = np.ceil(slots * in_len / budget - 1e-9)
    else:
        k = _prompts_per_iteration(profile, budget, in_len)
        j = np.ceil(ranks / k[..., None] - 1e-9)
        n = np.ceil(slots / k - 1e-9)
    return np.maximum(j, 1.0), np.maximum(n, 1.0), ranks


def _weighted_quantiles(values: Array, weights: Array, qs: tuple[float, ...]) -> tuple[Array, ...]:
    """The smallest value whose cumulative weight reaches each q, along the last axis."""
    if values.ndim == 1 and weights.shape == values.shape:  # one estimate: plain indexing, one search
        order = np.argsort(values)
        cum = np.cumsum(weights[order])
        at = np.searchsorted(cum, (np.asarray(qs) - 1e-12) * cum[-1]).clip(max=len(cum) - 1)
        return tuple(np.asarray(x) for x in values[order][at])
    order = np.argsort(values, axis=-1)
    v = np.take_along_axis(values, order, -1)
    cum = np.cumsum(np.take_along_axis(weights, order, -1), axis=-1)
    cum = cum / cum[..., -1:]
    return tuple(np.take_along_axis(v, np.argmax(cum >= q - 1e-12, axis=-1)[..., None], -1)[..., 0] for q in qs)


def closed_loop(
    profile: EngineProfile,
    tau: Array,
    slots: Array,
    in_len: Array,
    out_len: Array,
    first_wave_share: Array,
    qs: tuple[float, ...] = PERCENTILES,
    staggered: bool = False,
) -> Latency:
    """C clients, each sending its next request when the last one ends (module docstring).
    tau: iteration times (..., SHAPES) of `iteration_shapes`; first_wave_share: C / num_prompts;
    staggered: request lengths vary, so a prefill-first engine's waves break up after the first."""
    budget = prompt_budget(profile, slots)
    t_burst, t_group, t_decode = tau[..., BURST], tau[..., GROUP], tau[..., DECODE]
    j, n, ranks = _burst_iterations(profile, slots, in_len, budget)
    # the wave's prompts reach the scheduler one after another (the engine's front end tokenises
    # them one at a time): an idle scheduler starts on the first alone, the rest wait that iteration.
    # Nothing decodes yet: the prompt's chunk alone (prefill-first's OWN shape; under mixed
    # scheduling OWN carries the running decodes, so the lone prefill is the closer of the two)
    lead = np.where(slots > 1.0, np.minimum(tau[..., OWN], tau[..., PREFILL]), 0.0)
    burst = j * t_burst[..., None] + np.where(ranks > 1.0, lead[..., None], 0.0)
    steps = np.maximum(out_len - 1.0, 1.0)
    a = np.clip(first_wave_share, 0.0, 1.0)
    if not profile.mixed:
        e2e = lead + n * t_burst + (out_len - 1.0) * t_decode  # decodes wait for the whole burst
        ttft = burst.mean(axis=-1)
        if not staggered:  # every wave is a burst
            pcts = _weighted_quantiles(burst, np.ones_like(burst), qs)
            return Latency(ttft, pcts, (e2e - ttft) / steps, slots / e2e, np.minimum(n * t_burst / e2e, 1.0))
        ss = _prefill_first_steady(profile, tau, slots, in_len, steps)
        return _with_first_wave(ss, burst, a, (e2e - ttft) / steps, slots, out_len, qs)
    if staggered:
        # lengths vary, so the cohorts of the burst break up: an iteration carries the prompts that
        # came since the scheduler's last look, beside the running decodes (_steady_group)
        _, t_group, iters, own, groups = _steady_group(profile, tau, budget, slots, in_len, steps)
        n = groups * iters
    else:
        own = np.ceil(in_len / budget - 1e-9) if profile.chunked else np.ones_like(in_len)
    wait = np.maximum(own, n - out_len + 1.0)
    cycle = wait + out_len - 1.0
    share = np.minimum(n / cycle, 1.0)
    t_avg = share * t_group + (1.0 - share) * t_decode
    steady = 0.5 * profile.poll_steps * t_avg + own * t_group + (wait - own) * t_avg
    ss = Latency(steady, (), t_avg, slots, share * t_group / t_avg)
    # the first wave's early requests decode one token per burst iteration until the burst ends,
    # then at the steady pace, or at the bare decode step when no request follows the wave
    during = np.minimum(np.maximum(n[..., None] - j, 0.0), steps[..., None])
    after = np.where(a >= 1.0, t_decode, t_avg)[..., None]
    first = (during * t_burst[..., None] + (steps[..., None] - during) * after).mean(axis=-1) / steps
    return _with_first_wave(ss, burst, a, first, slots, out_len, qs)


def _with_first_wave(
    ss: Latency, burst: Array, a: Array, first_tpot_s: Array, slots: Array, out_len: Array, qs: tuple[float, ...]
) -> Latency:
    """A benchmark's mean over its first wave (a share `a` of its requests, their TTFTs the burst's
    ranks) and the steady state `ss`; percentiles from that mixture; the rate from the mean life."""
    ttft = a * burst.mean(axis=-1) + (1.0 - a) * ss.ttft_s
    values = np.concatenate([burst, np.broadcast_to(ss.ttft_s, burst.shape[:-1])[..., None]], axis=-1)
    weights = np.concatenate([np.broadcast_to((a / burst.shape[-1])[..., None], burst.shape), (1.0 - a)[..., None]], -1)
    tpot = a * first_tpot_s + (1.0 - a) * ss.tpot_s
    rate = slots / (ttft + (out_len - 1.0) * tpot)
    return Latency(ttft, _weighted_quantiles(values, weights, qs), tpot, rate, ss.utilization)


def _steady_group(
    profile: EngineProfile, tau: Array, budget: Array, slots: Array, in_len: Array, steps: Array
) -> tuple[Array, Array, Array, Array, Array]:
    """Once arrivals are spread out, every P = poll_steps decode steps the scheduler takes the
    g ~ c P / (O + P / 2) prompts that came since its last look (c requests, each arriving once per
    lifetime of about O + P / 2 steps). Returns g; the time of one of their iterations,
    interpolated in prompt tokens between the lone prompt's chunk (OWN) and the full budget (FULL;
    both carry the running decodes under mixed scheduling; prefill time is affine in tokens above
    a few hundred); the iterations the group takes; those up to its middle prompt's first token;
    and the groups per request lifetime, c / g."""
    poll = float(profile.poll_steps)
    t_own, t_full = tau[..., OWN], tau[..., FULL]
    k = _prompts_per_iteration(profile, budget, in_len)
    group = np.clip(slots * poll / (steps + 1.0 + 0.5 * poll), 1.0, slots)
    x_own = np.minimum(in_len, budget) if profile.chunked else in_len
    x_full = k * in_len
    x = np.minimum(group * in_len, x_full)
    slope = np.where(x_full > x_own, (t_full - t_own) / np.maximum(x_full - x_own, 1e-9), 0.0)
    t_g = t_own + (x - x_own) * slope
    iters = np.ceil(group / k - 1e-9)
    mine = np.maximum(np.ceil(0.5 * (group + 1.0) / k - 1e-9), 1.0)
    return group, t_g, iters, mine, slots / group


def _prefill_first_steady(profile: EngineProfile, tau: Array, slots: Array, in_len: Array, steps: Array) -> Latency:
    """Prefill-first once arrivals are spread out: the scheduler prefills each group of prompts
    that came since its last look (_steady_group) as one batch, in budget-sized iterations, while
    every decode waits. TTFT = the wait for that look, P/2 steps, plus the iterations up to the
    middle prompt's; a request's decode steps stretch by the share u of wall time the other
    requests' prefills take: TPOT = tau_decode / (1 - u), where u = a / T for a the others' prefill
    seconds per request lifetime T = TTFT + (O - 1) TPOT (a quadratic in T)."""
    poll = float(profile.poll_steps)
    budget = np.full_like(slots, float(profile.token_budget))
    t_decode = tau[..., DECODE]
    group, t_g, iters, mine, _ = _steady_group(profile, tau, budget, slots, in_len, steps)
    others_s = (slots - group) / group * iters * t_g  # prefill seconds a request's decodes sit out
    u = np.zeros_like(t_decode)
    for _ in range(2):  # the poll wait is in decode steps, stretched by u itself
        ttft = 0.5 * poll * t_decode / (1.0 - u) + mine * t_g
        sum_s = others_s + ttft + steps * t_decode
        life_s = 0.5 * (sum_s + np.sqrt(np.maximum(sum_s**2 - 4.0 * ttft * others_s, 0.0)))
        u = np.minimum(others_s / life_s, 1.0 - 1e-9)
    busy = np.minimum(slots / group * iters * t_g / life_s, 1.0)
    return Latency(ttft, (), t_decode / (1.0 - u), slots, busy)


def poisson(
    profile: EngineProfile, tau: Array, slots: Array, in_len: Array, out_len: Array, qs: tuple[float, ...] = PERCENTILES
) -> Latency:
    """Open-loop Poisson arrivals holding `slots` requests in flight on average (module docstring)."""
    budget = prompt_budget(profile, slots)
    k = _prompts_per_iteration(profile, budget, in_len)
    t_full, t_own, t_decode = tau[..., FULL], tau[..., OWN], tau[..., DECODE]
    service = t_full / k
    own = np.ceil(in_len / budget - 1e-9) if profile.chunked else np.ones_like(in_len)
    mixed = 1.0 if profile.mixed else 0.0

    def at(lam: Array) -> tuple[Array, Array, Array]:
        rho = np.minimum(lam * service, 1.0 - 1e-12)
        tpot = t_decode / (1.0 - rho + mixed * lam * t_decode / k)
        ttft = 0.5 * profile.poll_steps * tpot + own * t_own + md1_wait_s(lam, service)
        return rho, tpot, ttft

    lo, hi = np.zeros_like(service), (1.0 - 1e-9) / service
    for _ in range(48):  # slots(lam) = lam (ttft + (O - 1) tpot) rises with lam: bisect
        mid = 0.5 * (lo + hi)
        _, tpot, ttft = at(mid)
        over = mid * (ttft + (out_len - 1.0) * tpot) > slots
        hi, lo = np.where(over, mid, hi), np.where(over, lo, mid)
    lam = lo
    rho, tpot, ttft = at(lam)
    base = 0.5 * profile.poll_steps * tpot + own * t_own
    pcts = tuple(base + md1_wait_percentile_s(lam, service, q) for q in qs)
    return Latency(ttft, pcts, tpot, lam, rho)


def serve(
    profile: EngineProfile,
    arrival: str,
    tau: Array,
    slots: Array,
    in_len: Array,
    out_len: Array,
    first_wave_share: Array,
    qs: tuple[float, ...] = PERCENTILES,
    staggered: bool = False,
) -> Latency:
    """TTFT (mean and at the quantiles `qs`) and TPOT of a replica under that arrival process."""
    if arrival == "closed":
        return closed_loop(profile, tau, slots, in_len, out_len, first_wave_share, qs, staggered)
    if arrival == "poisson":
        return poisson(profile, tau, slots, in_len, out_len, qs)
    raise InvalidSpecError(f"unknown arrival '{arrival}' (allowed: {', '.join(ARRIVALS)})")


def quantiles(extra: float | None) -> tuple[float, ...]:
    """PERCENTILES, plus a caller's own (an SLO's percentile) last."""
    if extra is None:
        return PERCENTILES
    if not (isinstance(extra, (int, float)) and 0.0 < extra < 1.0):
        raise InvalidSpecError(f"a TTFT percentile must be in (0, 1), got {extra}")
    return (*PERCENTILES, float(extra))


def held_tokens(profile: EngineProfile, in_len: Array, out_len: Array) -> Array:
    """KV tokens one admitted request holds: prompt and whole output when the engine reserves it,
    else the mean over its life (prompt plus half the output)."""
    return in_len + (out_len if profile.reserves_output else 0.5 * out_len)


def admitted(
    latency: Latency, clients: Array, running: Array, requests: Array, qs: tuple[float, ...] = PERCENTILES
) -> Latency:
    """Clients beyond the KV cache's capacity wait for a free slot, FIFO behind the running set,
    which ends `rate` requests a second. At t = 0 the first `running` requests start and the other
    w = clients - running queue, the i-th of them waiting i / rate. From then on each completion
    lets its client send its next request, which finds w ahead of it and waits w / rate (Little's
    law), until the benchmark's `requests` are all sent. Mean wait over the requests:
    (w (w + 1) / 2 + (requests - clients) w) / (requests x rate): a single burst (requests =
    clients) only drains its queue, a long run tends to w / rate. The wait's quantile q is
    clip(q x requests - running, 0, w) / rate (the admitted wait nothing, the drain is uniform, the
    rest wait w / rate); it is added to the latency's TTFT quantile, as the queued requests are
    the late ones."""
    w = np.maximum(clients - running, 0.0)
    n = np.maximum(requests, clients)
    rate = latency.rate_per_s
    mean_wait = (0.5 * w * (w + 1.0) + (n - clients) * w) / (n * rate)
    return Latency(
        latency.ttft_s + mean_wait,
        tuple(t + np.clip(q * n - running, 0.0, w) / rate for t, q in zip(latency.ttft_percentiles_s, qs, strict=True)),
        latency.tpot_s,
        latency.rate_per_s,
        latency.utilization,
    )


def check_num_prompts(num_prompts: Any) -> Any:
    """The benchmark's request count as numbers (None: the default)."""
    return None if num_prompts is None else whole("--num-prompts", num_prompts)
