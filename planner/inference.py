"""Inference and serving estimates: a pure function of (model, cluster, parallelism, workload, precision).

Static batch (`batch`): all prompts are prefilled together, then decoded together.
  ttft = prefill pass time; tpot = decode step at the mean context (input + output/2: the KV read
  is linear in context, so the mean step equals the step at the mean context); e2e = ttft +
  (output - 1) x tpot; throughput = batch x output / e2e.

Serving (`concurrency` C, continuous batching, per replica c = C / dp requests in flight): the
engine's scheduler (vLLM, SGLang or TensorRT-LLM defaults: token budget, chunked prefill, mixed or
prefill-first) under a closed loop of C clients that start at once, or an open Poisson load; see
planner.serving. TTFT is given as the mean and at p50/p90/p99.

Disaggregated (prefill pool and decode pool): decode runs undisturbed (tpot = D), ttft adds the
KV-cache transfer from the prefill device to the decode device over the network between them, and
the M/D/1 queue sees each prefill replica's share of the arrival rate.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from hardware_db.errors import InvalidSpecError
from planner.arrays import CHUNK, count, in_chunks, mean, reason_per_scenario, scalar_or_array, sweep_size, whole
from planner.breakdown import WithOps
from planner.catalog import Catalog, load_catalog, resolve_model
from planner.cluster import Cluster, resolve_cluster
from planner.collectives import achieved_bandwidth
from planner.evaluate import OpTime
from planner.expert_loads import NO_ROUTING, Routing
from planner.memory import (
    KV_BLOCK_TOKENS,
    Placement,
    device_tiers,
    inference_activation_bytes,
    kv_bytes_per_sequence,
    offload_tiers,
    place,
    scratchpad_tier,
    weight_parts,
)
from planner.ops import Precisions, Sharding, check_sharding, expert_touch_share, on_units
from planner.power import DevicePower, device_power, pass_power_w, system_power_w
from planner.queueing import md1_wait_percentile_s
from planner.replica import (
    Column,
    Replica,
    dominant_bound,
    drafter_kv_scale,
    drafter_weight_bytes,
    pass_time,
)
from planner.serving import (
    ARRIVALS,
    DECODE,
    PERCENTILES,
    PREFILL,
    PROMPTS_PER_CLIENT,
    EngineProfile,
    admitted,
    check_num_prompts,
    engine_profile,
    front_end_s,
    held_tokens,
    host_adds_to_prefill,
    host_floor_s,
    iteration_shapes,
    quantiles,
    serve,
)
from planner.speculative import Speculation, speculation
from planner.tiers import ReadBandwidths
from workloads.schema import ModelSpec

Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class InferenceResult(WithOps):
    model: str
    hardware: str
    devices: int
    tp: int
    pp: int
    ep: int
    dp: int
    mode: str  # static, serving, disaggregated
    batch: Any
    concurrency: Any
    input_len: Any
    output_len: Any
    weight_precision: str
    kv_precision: str
    ttft_s: Any
    tpot_s: Any
    e2e_latency_s: Any
    throughput_tokens_per_s: Any
    prefill_s: Any
    decode_step_s: Any
    max_batch: Any  # largest static batch that fits (per scenario in a sweep)
    max_concurrency: Any  # most requests in flight under continuous batching (what the engine's admission holds)
    memory_per_device_bytes: Any
    weight_bytes_per_device: float
    kv_bytes_per_device: Any
    fits: Any
    fit_reason: Any  # per scenario in a sweep
    bound: str
    prefill_utilization: Any = None  # rho: share of device time spent on prefill (serving)
    prefill_devices: int | None = None  # disaggregated only
    prefill_tp: int | None = None
    kv_transfer_s: Any = None
    attention_kernel: str = ""  # the fused attention kernel assumed (the family's default unless named)
    ttft_p50_s: Any = None
    ttft_p90_s: Any = None
    ttft_p99_s: Any = None
    ttft_percentile_s: Any = None  # at the percentile the caller asked for (ttft_percentile)
    engine: str | None = None  # serving: the scheduler modelled (planner.serving)
    arrival: str | None = None  # serving: closed (C clients) or poisson
    matmul_precision: str = ""  # the matrix unit the GEMMs run on (a fallback when the part lacks the weights' own)
    kv_cache_capacity_tokens: float | None = None  # tokens of KV cache one replica holds (vLLM's "GPU KV cache size")
    speculative: str | None = None  # the drafter, when decoding speculatively
    tokens_per_step: float = 1.0  # tokens one decode step yields (speculative: (1 - a^(k+1)) / (1 - a))
    kv_link: str | None = None  # disaggregated: the link the KV cache crosses between the pools
    # MoE: the busiest EP rank's routed tokens over the mean, from the loads or imbalance given (1.0 when
    # none is: uniform routing's random busiest rank is then added per pass, ops.routed_expert_ops)
    expert_load_max_over_mean: float | None = None
    power_cap_w: float | None = None  # the board power cap the estimate ran under, if any
    # planner.tiers: {tier: {tensor class: bytes per device}} (the mean over a sweep's scenarios)
    tier_placement_bytes: dict[str, dict[str, float]] = field(default_factory=dict)
    kv_offload: str | None = None  # the tier the KV cache may spill to and prefix hits load from
    prefix_hit_rate: float = 0.0  # share of each prompt whose KV cache is found cached
    prefix_load_s: Any = None  # loading the cached prefix from the offload tier (inside ttft_s)
    context_switch_s: Any = None  # one user's KV cache out to the next tier and another's in
    context_switch_tier: str | None = None
    memory_pool: str | None = None  # weights stream from this pool (prefetched, overlapped)
    local_memory_needed_bytes: Any = None  # with a pool: KV, activations and two layers' weights
    device_power: DevicePower | None = field(default=None, repr=False, compare=False)
    # per-op times of both phases; the rows are built only when someone looks (one estimate stays fast)
    op_times: tuple[tuple[str, Any], ...] = field(default=(), repr=False, compare=False)

    @functools.cached_property
    def moe_s(self) -> dict[str, float]:
        """MoE layers' time per pass on the busiest EP rank, per phase (prefill, decode): router,
        expert GEMMs, permutes and expert all-to-alls, before any two-batch overlap hides them
        (means over a sweep's scenarios). Empty for a dense model."""
        out = {}
        for phase, times in self.op_times:
            moe = [t for t in times if t.op.op_class == "moe" or t.op.comm_tier == "ep"]
            if moe:
                out[phase] = float(sum(mean(t.total_s) for t in moe))
        return out

    DERIVED = ("avg_power_w", "energy_j_per_token", "system_power_w")  # kept by chunked sweeps (arrays.in_chunks)

    @functools.cached_property
    def avg_power_w(self) -> Any:
        """Mean board power per device over the run (planner.power): the passes' power weighted
        by the time each phase takes. Static: one prefill, then output - 1 decode steps. Serving:
        a replica spends prefill_utilization of its time on prefill work. Disaggregated: prefill
        devices busy prefill_utilization of the time (idle otherwise), decode devices always."""
        if self.device_power is None:
            return None
        pw, phases = self.device_power, dict(self.op_times)
        pre, dec = pass_power_w(pw, phases["prefill"]), pass_power_w(pw, phases["decode"])
        if self.mode == "static":
            t_pre, t_dec = self.prefill_s, (np.asarray(self.output_len) - 1.0) * self.decode_step_s
            return _plain((pre * t_pre + dec * t_dec) / np.maximum(t_pre + t_dec, 1e-30))
        rho = np.asarray(self.prefill_utilization, dtype=np.float64)
        if self.mode == "serving":
            return _plain(rho * pre + (1.0 - rho) * dec)
        n_p = float(self.prefill_devices or 0)
        n_d = float(self.devices) - n_p
        prefill_pool = rho * pre + (1.0 - rho) * pw.idle_w
        return _plain((n_p * prefill_pool + n_d * dec) / float(self.devices))

    @functools.cached_property
    def energy_j_per_token(self) -> Any:
        """Board energy per generated token over all devices (host power excluded: node_power_w)."""
        if self.avg_power_w is None:
            return None
        return _plain(np.asarray(self.avg_power_w) * self.devices / np.asarray(self.throughput_tokens_per_s))

    @functools.cached_property
    def system_power_w(self) -> Any:
        """All devices with their hosts (CPUs, memory, NICs, fans): the typical host overhead of
        planner.costs.DEFAULT_TCO (a DGX H100's ~600 W over its GPUs)."""
        return system_power_w(self.avg_power_w, self.devices)

    def to_dict(self, ops: bool = True) -> dict[str, Any]:
        power = {name: getattr(self, name) for name in self.DERIVED}
        return {**super().to_dict(ops), **power, **{f"moe_{phase}_s": v for phase, v in self.moe_s.items()}}


def _within_context(spec: ModelSpec, in_len: Array, out_len: Array) -> None:
    longest = float(np.max(in_len + out_len))
    if longest > spec.max_seq_len:
        raise InvalidSpecError(
            f"--input-len + --output-len ({longest:.0f} tokens) exceeds {spec.id}'s context ({spec.max_seq_len} tokens)"
        )


def estimate_inference(
    model: str | ModelSpec,
    hardware: str,
    devices: int | None = None,
    *,
    tp: int = 1,
    pp: int = 1,
    ep: int = 1,
    dp: int | None = None,
    batch: Any = None,
    concurrency: Any = None,
    input_len: Any = 1024,
    output_len: Any = 256,
    weight_precision: str = "bf16",
    kv_precision: str | None = None,
    activation_precision: str = "bf16",
    disaggregated: bool = False,
    prefill_devices: int | None = None,
    prefill_tp: int | None = None,
    catalog: Catalog | str | None = None,
    attention_kernel: str | None = None,
    engine: str = "vllm",
    token_budget: int | None = None,
    arrival: str = "closed",
    num_prompts: Any = None,
    ttft_percentile: float | None = None,
    speculative: str | None = None,
    draft_tokens: int = 0,
    acceptance: float | None = None,
    redundant_experts: int = 0,
    two_batch_overlap: bool = False,
    expert_imbalance: float | None = None,
    expert_loads: Any = None,
    expert_placement: Any = None,
    power_cap_w: float | None = None,
    kv_offload: str | None = None,
    prefix_hit_rate: float = 0.0,
    tier_policy: str = "optimal",
    memory_pool: str | None = None,
    memory_pool_bandwidth: float | None = None,
    scratchpad_bytes: float = 0.0,
    range_ratio: float = 1.0,
    poll_interval: int = 1,
    eager_prefill: bool | None = None,
    eager_decode: bool | None = None,
    matmul_precision: str | None = None,
) -> InferenceResult:
    """Estimate one inference configuration. `batch` (static) or `concurrency` (serving); lengths,
    batch and concurrency may be numpy arrays to evaluate many scenarios at once. attention_kernel:
    the family's default fused kernel unless named (see `planner hardware show`), or "unfused".
    Serving: `engine` (vllm, vllm-v0, sglang, trtllm) sets the scheduler, `token_budget` overrides its
    per-iteration token budget, `arrival` is "closed" (C clients, as benchmarks run) or "poisson",
    and `num_prompts` is the closed-loop benchmark's length (10 x C by default). TTFT comes as the
    mean and at p50/p90/p99, and at `ttft_percentile` when given (ttft_percentile_s).
    Speculative decoding (planner.speculative): `speculative` names the drafter (mtp, eagle, ngram,
    draft:MODEL), `draft_tokens` its k and `acceptance` the per-token acceptance probability.
    MoE: `redundant_experts` extra expert slots over the EP group (EP need only divide experts +
    redundant), `two_batch_overlap` hides the expert all-to-alls under the other half batch.
    Imbalanced routing (planner.expert_loads): `expert_imbalance` (the busiest EP rank's routed
    tokens over the mean), or `expert_loads` (tokens per layer and expert: an array or a file) with
    `expert_placement` (a phy2log map, e.g. from solvers.plan_experts; contiguous if None).
    Power (planner.power): `avg_power_w` per device and `energy_j_per_token` come with every result;
    `power_cap_w` caps each device's board power (its math clock drops to fit).
    Memory tiers (planner.tiers): weights, KV cache and activations are placed over the device's
    tiers to minimise read time (`tier_placement_bytes`). `kv_offload` (cpu, cxl, nvme or a tier name)
    lets the KV cache grow into that tier, read there at its bandwidth; `prefix_hit_rate` is the
    share of each prompt found cached: only the rest is prefilled, and with an offload tier the
    hits are loaded from it first (vLLM's offloading connector, LMCache). `context_switch_s` moves
    one user's KV cache out and another's in (Yao Fu 2024, arXiv 2405.08944, section 2).
    `tier_policy` "ordered" restores the fixed order placement replaced, to compare.
    `memory_pool` (a memory-pool device, e.g. fenghuang-pool; `memory_pool_bandwidth` overrides
    its bandwidth per accelerator): weights that do not fit the first tier stream from the pool,
    prefetched a layer ahead; a pass waits only where the fetch outlasts the compute, and
    `local_memory_needed_bytes` is what the first tier needs when every weight streams.
    `scratchpad_bytes`: on-chip SRAM a dataflow device's compiler may leave to resident weights
    (SN40L's PMUs; 0 by default: how much its pipelines need is not published).
    Benchmark harness and scheduler settings (planner.serving): `range_ratio` r draws each
    request's lengths uniformly in [r L, L] (bench_serving's --random-range-ratio; mean (1 + r) L / 2),
    which breaks a prefill-first engine's waves apart after the first; `poll_interval` is the decode
    iterations between the scheduler's admissions of new prompts (SGLang --scheduler-recv-interval,
    TensorRT-LLM batch_wait_timeout_iters + 1);
    `eager_prefill` whether prompt-carrying iterations run without CUDA graphs, at least their
    kernels' host dispatch time (None: the engine's default: SGLang and TensorRT-LLM yes, vLLM V1 no);
    `eager_decode` whether decode steps do too (no CUDA graphs at all; None: no, as every engine's
    current default: TensorRT-LLM's PyTorch backend before July 2025 ran them eagerly).
    `matmul_precision`: the GEMMs' math precision where the kernels differ from the W8A8-style
    default of 8/4-bit float weights (e.g. "bf16" for vLLM's MXFP4 MoE, which takes bf16
    activations: W4A16)."""
    options = dict(locals())  # every argument, for the chunked sweep below
    cat = catalog if isinstance(catalog, Catalog) else load_catalog(catalog)
    knobs = {"batch": batch, "concurrency": concurrency, "input_len": input_len, "output_len": output_len}
    if sweep_size(*knobs.values()) > CHUNK:
        fixed = {k: v for k, v in options.items() if k not in knobs}
        return in_chunks(estimate_inference, knobs, **{**fixed, "catalog": cat})
    spec = resolve_model(model, cat)
    tp, pp, ep = count("--tp", tp), count("--pp", pp), count("--ep", ep)
    devices, dp = (None if v is None else count(f"--{k}", v) for k, v in (("devices", devices), ("dp", dp)))
    redundant_experts = count("--redundant-experts", redundant_experts, low=0)
    if prefill_devices is not None:
        prefill_devices = count("--prefill-devices", prefill_devices)
    if prefill_tp is not None:
        prefill_tp = count("--prefill-tp", prefill_tp)
    draft = resolve_model(speculative[6:], cat) if speculative and speculative.startswith("draft:") else None
    sp = speculation(speculative, draft_tokens, acceptance, draft)
    qs = quantiles(ttft_percentile)
    num_prompts = check_num_prompts(num_prompts)
    engine_profile(engine, 0.0, token_budget, poll_steps=poll_interval)  # refuse bad settings in every mode
    _check_range_ratio(range_ratio, concurrency, disaggregated, arrival)
    if arrival not in ARRIVALS:
        raise InvalidSpecError(f"unknown arrival '{arrival}' (allowed: {', '.join(ARRIVALS)})")
    p = Precisions(weight_precision, activation_precision, kv_precision or "bf16", matmul_precision)
    routing = Routing(expert_imbalance, expert_loads, expert_placement)
    prefill_options = prefill_devices is not None or prefill_tp is not None
    _check_modes(batch, concurrency, disaggregated, prefill_options, kv_offload, prefix_hit_rate)
    if batch is None and concurrency is None:
        batch = 1
    if disaggregated:
        return _disaggregated(
            spec,
            hardware,
            devices,
            cat,
            p,
            tp,
            pp,
            ep,
            concurrency,
            input_len,
            output_len,
            prefill_devices,
            prefill_tp,
            attention_kernel,
            qs,
            sp,
            redundant_experts,
            two_batch_overlap,
            routing,
            power_cap_w,
        )
    return _aggregated(
        spec,
        hardware,
        cat,
        p,
        sp,
        routing,
        qs,
        devices=devices,
        dp=dp,
        tp=tp,
        pp=pp,
        ep=ep,
        batch=batch,
        concurrency=concurrency,
        input_len=input_len,
        output_len=output_len,
        num_prompts=num_prompts,
        k=_Knobs(
            power_cap_w=power_cap_w,
            redundant_experts=redundant_experts,
            two_batch_overlap=two_batch_overlap,
            range_ratio=range_ratio,
            engine=engine,
            token_budget=token_budget,
            poll_interval=poll_interval,
            eager_prefill=eager_prefill,
            eager_decode=eager_decode,
            memory_pool=memory_pool,
            memory_pool_bandwidth=memory_pool_bandwidth,
            kv_offload=kv_offload,
            tier_policy=tier_policy,
            scratchpad_bytes=scratchpad_bytes,
            attention_kernel=attention_kernel,
            prefix_hit_rate=prefix_hit_rate,
            arrival=arrival,
            speculative=speculative,
        ),
    )


@dataclass(frozen=True)
class _Knobs:
    """estimate_inference's settings that only the aggregated path reads, as given."""

    power_cap_w: float | None
    redundant_experts: int
    two_batch_overlap: bool
    range_ratio: float
    engine: str
    token_budget: int | None
    poll_interval: int
    eager_prefill: bool | None
    eager_decode: bool | None
    memory_pool: str | None
    memory_pool_bandwidth: float | None
    kv_offload: str | None
    tier_policy: str
    scratchpad_bytes: float
    attention_kernel: str | None
    prefix_hit_rate: float
    arrival: str
    speculative: str | None


def _aggregated(
    spec: ModelSpec,
    hardware: str,
    cat: Catalog,
    p: Precisions,
    sp: Speculation | None,
    routing: Routing,
    qs: tuple[float, ...],
    *,
    devices: int | None,
    dp: int | None,
    tp: int,
    pp: int,
    ep: int,
    batch: Any,
    concurrency: Any,
    input_len: Any,
    output_len: Any,
    num_prompts: Any,
    k: _Knobs,
) -> InferenceResult:
    """One replica set serving a static batch or C clients: estimate_inference once its arguments
    are checked."""
    n, dp_ = _replicas(devices, dp, tp, pp, ep)
    cluster = resolve_cluster(hardware, n, cat, k.power_cap_w)
    p = on_units(p, cluster)
    s = _sharding(spec, cluster, tp, pp, ep, k.redundant_experts, routing)
    if k.two_batch_overlap and (s.ep == 1 or s.pp > 1):
        raise InvalidSpecError("--two-batch-overlap needs expert parallelism (--ep > 1) and --pp 1")
    check_sharding(spec, s)
    in_len, out_len, per_replica = np.broadcast_arrays(
        whole("--input-len", input_len),
        whole("--output-len", output_len),
        whole("--batch" if batch is not None else "--concurrency", batch if batch is not None else concurrency) / dp_,
    )
    _within_context(spec, in_len, out_len)
    per_replica = np.maximum(per_replica, 1.0)
    nominal_in, nominal_out = in_len, out_len
    in_len, out_len = in_len * (1.0 + k.range_ratio) / 2.0, out_len * (1.0 + k.range_ratio) / 2.0

    device = cluster.device
    memory = device.main_memory.capacity_bytes
    profile = engine_profile(
        k.engine, memory, k.token_budget, device.id, k.poll_interval, k.eager_prefill, spec.max_seq_len, k.eager_decode
    )
    serving = concurrency is not None
    pool = None if k.memory_pool is None else MemoryPool(k.memory_pool, k.memory_pool_bandwidth)
    tiering = (k.kv_offload, k.tier_policy, pool, k.scratchpad_bytes)
    mem = _memory(spec, s, p, cluster, cat, sp, profile, in_len, out_len, per_replica, serving, tiering)

    rep = Replica(cluster, spec, s, p, mem.bandwidths, k.attention_kernel, sp, k.two_batch_overlap)
    active = np.maximum(mem.running, 1.0)
    hits = _Hits(spec, s, p, mem.tiers, k.kv_offload, k.prefix_hit_rate, in_len, out_len)
    fits, reason = _admits(mem, serving)
    if serving:
        load = _Load(k.arrival, per_replica, dp_, num_prompts, qs, staggered=k.range_ratio < 1.0)
        served = _serving(rep, profile, load, active, in_len, out_len, hits.new_len)
    else:
        served = _static(rep, profile, hits, active, per_replica, in_len, out_len, len(qs))
    prefill_s, decode_s, ttft, tpot, rho, pcts, prefill_times, decode_times, queued_s = served
    mode = "serving" if serving else "static"
    # a served request also crosses the server's front end (HTTP, tokenisation): planner.serving
    added = hits.load_s + front_end_s(in_len) if serving else hits.load_s
    ttft, pcts = ttft + added, tuple(x + added for x in pcts)
    e2e = ttft + (out_len - 1.0) * tpot
    # the running requests set the rate; a request's wait for a free slot is not part of their life
    throughput = np.minimum(active, per_replica) * dp_ * out_len / (e2e - queued_s)
    return _result(
        prefill_times,
        decode_times,
        _host_bound(profile, decode_times, decode_s * rep.tokens_per_step, s.pp),  # per step, not per token
        model=spec.id,
        hardware=cluster.device.id,
        devices=n,
        tp=tp,
        pp=pp,
        ep=ep,
        dp=dp_,
        mode=mode,
        batch=scalar_or_array(batch) if batch is not None else None,
        concurrency=scalar_or_array(concurrency) if concurrency is not None else None,
        input_len=nominal_in,
        output_len=nominal_out,
        weight_precision=p.weight,
        kv_precision=p.kv,
        ttft_s=ttft,
        tpot_s=tpot,
        e2e_latency_s=e2e,
        throughput_tokens_per_s=throughput,
        prefill_s=prefill_s,
        decode_step_s=decode_s,
        **mem.fields(dp_),
        fits=fits,
        fit_reason=reason,
        attention_kernel=cluster.perf.attention_kernel(k.attention_kernel).name,
        prefill_utilization=None if rho is None else scalar_or_array(rho),
        **_percentile_fields(pcts),
        speculative=k.speculative,
        tokens_per_step=rep.tokens_per_step,
        matmul_precision=p.compute,
        # a static batch: where the engine set a host floor
        engine=k.engine if serving or profile.eager_prefill or profile.eager_decode else None,
        arrival=k.arrival if mode == "serving" else None,
        expert_load_max_over_mean=s.expert_imbalance if spec.moe is not None else None,
        power_cap_w=k.power_cap_w,
        device_power=device_power(cluster.device, cluster.perf.clock_scale, k.power_cap_w),
        memory_pool=k.memory_pool,
        **hits.fields(),
    )


def _replicas(devices: int | None, dp: int | None, tp: int, pp: int, ep: int) -> tuple[int, int]:
    """All devices and the replicas (dp) they make of tp x pp each; EP spreads over tp x dp ranks."""
    group = tp * pp
    n = devices if devices is not None else group * (dp or 1)
    dp_ = dp if dp is not None else n // group
    if n % group or dp_ * group != n:
        raise InvalidSpecError(f"--devices ({n}) must equal tp x pp x dp ({tp} x {pp} x {dp_})")
    if ep > tp * dp_ or (tp * dp_) % ep:
        raise InvalidSpecError(f"ep ({ep}) must divide tp x dp ({tp * dp_}): experts are spread over those ranks")
    return n, dp_


def _eager(tau: Array, times: list[OpTime], profile: EngineProfile, rep: Replica, decode_only: bool = False) -> Array:
    """A pass where the engine runs it eagerly: the host dispatches one pipeline stage's kernels
    (planner.serving.host_floor_s). A prompt-carrying pass takes it after its GPU work where the
    attention reads device values back in every layer, else under it (host_adds_to_prefill); a
    decode step's attention metadata is built before the pass, so its host runs ahead of the GPU
    and the step lasts the longer of the two."""
    if not (profile.eager_decode if decode_only else profile.eager_prefill):
        return tau  # CUDA graphs: no host floor
    launches = sum((t.op.kernels * t.op.count for t in times), np.zeros(())) / rep.s.pp
    host_s = host_floor_s(profile, launches, decode_only)
    if not decode_only and host_adds_to_prefill(rep.spec.attention.kind):
        return tau + host_s
    return np.maximum(tau, host_s)


def _static(
    rep: Replica,
    profile: EngineProfile,
    hits: _Hits,
    active: Array,
    per_replica: Array,
    in_len: Array,
    out_len: Array,
    quantiles: int,
) -> tuple[Any, ...]:
    """One static batch: every prompt prefilled at once (so every TTFT percentile is that prefill),
    then decoded together; the same tuple as _serving, with no prefill utilisation. An engine that
    runs prefill eagerly (SGLang's bench_one_batch, TensorRT-LLM's PyTorch backend) pays its host
    dispatch as in serving."""
    prefill_s, prefill_times = hits.prefill(rep, per_replica)
    prefill_s = _eager(prefill_s, prefill_times, profile, rep)
    decode_s, decode_times = rep.decode(active, in_len, in_len + out_len / 2.0)
    decode_s = _eager(decode_s, decode_times, profile, rep, decode_only=True)
    pcts = (prefill_s,) * quantiles
    return prefill_s, decode_s, prefill_s, decode_s, None, pcts, prefill_times, decode_times, 0.0


@dataclass(frozen=True)
class _Load:
    """How requests reach a serving replica set: the arrival process, the clients per replica and
    replicas, the closed-loop benchmark's length, the TTFT quantiles asked for, and whether request
    lengths vary (a closed loop's range ratio below 1)."""

    arrival: str
    per_replica: Array
    dp: int
    num_prompts: Any
    qs: tuple[float, ...]
    staggered: bool = False


def _serving(
    rep: Replica,
    profile: EngineProfile,
    load: _Load,
    active: Array,
    in_len: Array,
    out_len: Array,
    new_len: Any = None,
) -> tuple[Any, ...]:
    """Continuous batching (planner.serving): one vectorised pass times every iteration shape, the
    lone prefill and the decode step included, then the scheduler's latencies. Returns prefill and
    decode step times, TTFT, TPOT, prefill utilisation, TTFT percentiles, the two passes' ops and
    the mean wait for a KV slot.
    `new_len`: the prompt tokens each request must compute (fewer than `in_len` on a prefix hit)."""
    context_mid = in_len + out_len / 2.0
    work = in_len if new_len is None else new_len
    decodes, tokens = iteration_shapes(profile, active, work)
    tau, times = rep.iterations(decodes, tokens, in_len[..., None], context_mid[..., None])
    if profile.eager_prefill or profile.eager_decode:
        tau = np.where(tokens > 0, _eager(tau, times, profile, rep), _eager(tau, times, profile, rep, decode_only=True))
    # with speculation each decode iteration advances a request by E tokens
    per_step = rep.tokens_per_step
    clients = load.per_replica * load.dp
    requests = load.num_prompts if load.num_prompts is not None else PROMPTS_PER_CLIENT * clients
    steps = 1.0 + (out_len - 1.0) / per_step
    # the first wave is what the KV cache admits at once; the clients beyond it follow as slots free
    first_wave = np.minimum(clients, active * load.dp) / np.maximum(requests, clients)
    lat = serve(profile, load.arrival, tau, active, work, steps, first_wave, load.qs, load.staggered)
    running_ttft_s = lat.ttft_s
    lat = admitted(lat, load.per_replica, active, requests / load.dp, load.qs)
    return (
        tau[..., PREFILL],
        tau[..., DECODE] / per_step,
        lat.ttft_s,
        lat.tpot_s / per_step,
        lat.utilization,
        lat.ttft_percentiles_s,
        Column(times, PREFILL),
        Column(times, DECODE),
        lat.ttft_s - running_ttft_s,  # the mean wait for a free slot
    )


@dataclass(frozen=True)
class MemoryPool:
    """Rack-level pooled memory the weights stream from with prefetch (FengHuang, arXiv
    2511.10753): a catalogue device of kind memory-pool, its bandwidth per attached accelerator
    (optionally overridden to sweep it)."""

    id: str
    bandwidth_bytes_per_s: float | None = None

    def tier(self, cat: Catalog, devices: int) -> tuple[str, float, float]:
        dev = cat.device(self.id)
        if dev.kind != "memory-pool":
            raise InvalidSpecError(f"memory_pool '{self.id}' is a {dev.kind}, not a memory-pool")
        t = dev.main_memory
        return ("pool", t.capacity_bytes, self.bandwidth_bytes_per_s or t.bandwidth_bytes_per_s)

    @staticmethod
    def bandwidths(placement: Placement) -> ReadBandwidths:
        """Fetched weights are read from the first tier; the pass waits on the pool's fetch."""
        layout = placement.layout
        assert layout is not None
        names = [t.name for t in layout.tiers]
        i = names.index("pool")

        def share(cls: str) -> Any:
            held = np.sum(layout.bytes_[layout.classes.index(cls)], axis=0)
            return np.where(held > 0, layout.bytes_[layout.classes.index(cls), i] / np.where(held > 0, held, 1.0), 0.0)

        kv = placement.kv_bandwidth_bytes_per_s
        return ReadBandwidths(
            None, None, kv, layout.tiers[i].bandwidth_bytes_per_s, _plain(share("weights")), _plain(share("experts"))
        )


def _admits(mem: _Memory, serving: bool) -> tuple[Any, Any]:
    """Whether the placement fits and, serving, whether one request's KV cache fits beside the
    weights; with the reason (per scenario)."""
    fits, reason = np.asarray(mem.placement.fits), mem.placement.reason
    slots = mem.slots
    if not serving or not np.any(slots < 1):
        return fits & (slots >= 1) if serving else fits, reason
    full = "not one request's KV cache fits beside the weights"
    reason = full if np.ndim(slots) == 0 else np.where(slots < 1, full, reason).astype(object)
    return fits & (slots >= 1), reason


def _percentile_fields(pcts: tuple[Any, ...]) -> dict[str, Any]:
    """TTFT at p50/p90/p99 and, when asked for, at the caller's own percentile."""
    out = {"ttft_p50_s": pcts[0], "ttft_p90_s": pcts[1], "ttft_p99_s": pcts[2]}
    return out | {"ttft_percentile_s": pcts[3] if len(pcts) > 3 else None}


def _check_range_ratio(range_ratio: Any, concurrency: Any, disaggregated: bool, arrival: str) -> None:
    """A length spread describes a closed-loop benchmark's requests on one aggregated replica set."""
    if not (isinstance(range_ratio, (int, float)) and 0.0 < range_ratio <= 1.0):
        raise InvalidSpecError(f"--range-ratio must be in (0, 1] (got {range_ratio!r})")
    if range_ratio < 1.0 and (concurrency is None or disaggregated or arrival != "closed"):
        raise InvalidSpecError(
            "--range-ratio describes a closed-loop benchmark: it needs --concurrency, "
            "--arrival closed and aggregated serving"
        )


def _check_modes(
    batch: Any,
    concurrency: Any,
    disaggregated: bool,
    prefill_options: bool,
    kv_offload: str | None,
    prefix_hit_rate: float,
) -> None:
    """The combinations of modes the estimate refuses."""
    if batch is not None and concurrency is not None:
        raise InvalidSpecError("give --batch (one static batch) or --concurrency (serving), not both")
    if not disaggregated and prefill_options:
        raise InvalidSpecError("--prefill-devices and --prefill-tp need --disaggregated")
    if disaggregated and batch is not None:
        raise InvalidSpecError("--batch is one static batch; disaggregated serving takes --concurrency")
    if not 0.0 <= prefix_hit_rate < 1.0:
        raise InvalidSpecError(f"prefix_hit_rate must be in [0, 1) (got {prefix_hit_rate})")
    if disaggregated and (kv_offload not in (None, "none") or prefix_hit_rate):
        raise InvalidSpecError("kv_offload and prefix_hit_rate are not modelled for disaggregated serving")


@dataclass(frozen=True)
class _Hits:
    """Prefix-cache hits and KV movement between tiers: the prompt tokens left to compute, the
    load of the cached prefix from the offload tier (none when the cache sits in the first tier,
    as vLLM's automatic prefix caching keeps it), and a context switch. Yao Fu (arXiv 2405.08944,
    section 2): "context switching overhead = (user 1's KV cache + user 2's KV cache) / PCIE
    bandwidth"; here over the bandwidth of the tier the KV cache moves to."""

    spec: ModelSpec
    s: Sharding
    p: Precisions
    tiers: list[tuple[str, float, float]]  # the device's, as planner.memory.device_tiers gives them
    kv_offload: str | None
    rate: float
    in_len: Array
    out_len: Array

    @functools.cached_property
    def tier(self) -> tuple[str, float] | None:
        """(name, bandwidth) of the tier the KV cache moves to: the offload tier, else the next."""
        tiers = self.tiers
        k = offload_tiers(tiers, self.kv_offload)
        name, _, bw = tiers[k - 1] if k > 1 else tiers[1] if len(tiers) > 1 else (None, 0.0, 0.0)
        return None if name is None else (name, bw)

    @property
    def new_len(self) -> Any:
        return None if not self.rate else np.maximum(np.ceil(self.in_len * (1.0 - self.rate)), 1.0)

    @property
    def load_s(self) -> Any:
        if not self.rate or self.kv_offload in (None, "none") or self.tier is None:
            return 0.0
        cached = np.floor(self.in_len * self.rate)
        return kv_bytes_per_sequence(self.spec, self.s, self.p, cached) / self.tier[1]

    def prefill(self, rep: Replica, batch: Array) -> tuple[Array, list[OpTime]]:
        """A static batch's prefill; on a hit only the suffix is computed: what the whole prompt
        costs beyond its cached prefix (exact for FLOPs, causal attention included), and no less
        than the suffix alone (a pass reads every weight however few its tokens)."""
        whole_s, times = rep.pass_time(batch, self.in_len, "prefill", None)
        if not self.rate:
            return whole_s, times
        prefix = np.maximum(np.floor(self.in_len * self.rate), 1.0)
        prefix_s, _ = rep.pass_time(batch, prefix, "prefill", None)
        suffix_s, _ = rep.pass_time(batch, self.new_len, "prefill", None)
        return np.maximum(whole_s - prefix_s, suffix_s), times

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kv_offload": self.kv_offload, "prefix_hit_rate": self.rate}
        if self.rate and self.kv_offload not in (None, "none"):
            out["prefix_load_s"] = self.load_s
        if self.tier is not None:
            one = kv_bytes_per_sequence(self.spec, self.s, self.p, self.in_len + self.out_len)
            out["context_switch_s"] = 2.0 * one / self.tier[1]
            out["context_switch_tier"] = self.tier[0]
        return out


def _sharding(
    spec: ModelSpec, cluster: Cluster, tp: int, pp: int, ep: int, redundant_experts: int, routing: Routing
) -> Sharding:
    """One replica's sharding, EP domains and the busiest EP rank's load included: as given, or,
    with nothing given, uniform routing's busiest rank (ops.routed_expert_ops)."""
    experts = spec.moe.experts if spec.moe is not None else None
    hot = routing.ratio(experts, ep, (experts or 0) + redundant_experts)
    domains = -(-ep // cluster.domain_size)
    return Sharding(
        tp=tp,
        pp=pp,
        ep=ep,
        redundant_experts=redundant_experts,
        ep_domains=domains,
        expert_imbalance=hot,
        busiest_ep_rank=not routing.given,
    )


def _plain(x: Any) -> Any:
    """A float for one scenario, the array for a sweep."""
    a = np.asarray(x, dtype=np.float64)
    return float(a.reshape(())) if a.size == 1 else a


def _whole_numbers(x: Array) -> Any:
    """Whole numbers per scenario: a Python int for one scenario, an int array for a sweep."""
    a = np.asarray(x).astype(np.int64)
    return int(a) if a.ndim == 0 else a


@dataclass(frozen=True)
class _Memory:
    """One replica's memory: what it holds per device, where the weights landed, and how many
    requests its KV cache admits (per replica; arrays over the knobs)."""

    weights: float
    kv: Array
    act: Array
    placement: Placement
    bandwidths: ReadBandwidths  # what the passes' reads see (planner.tiers)
    tiers: list[tuple[str, float, float]]  # the device's own (a memory pool not among them)
    local_needed: Any  # with a memory pool: first-tier bytes when every weight streams
    slots: Array  # requests the KV cache admits (serving), the batch (static)
    running: Array  # requests running: the slots in use
    max_batch: Array
    max_concurrency: Array
    kv_capacity_tokens: float  # the KV cache the engine sets aside at start-up

    def fields(self, replicas: int) -> dict[str, Any]:
        """The result's memory fields (batch and concurrency limits over all replicas)."""
        return {
            "max_batch": _whole_numbers(self.max_batch * replicas),
            "max_concurrency": _whole_numbers(self.max_concurrency * replicas),
            "memory_per_device_bytes": self.weights + self.kv + self.act,
            "weight_bytes_per_device": self.weights,
            "kv_bytes_per_device": self.kv,
            "kv_cache_capacity_tokens": self.kv_capacity_tokens,
            "tier_placement_bytes": self.placement.as_dict(),
            "local_memory_needed_bytes": self.local_needed,
        }


def _memory(
    spec: ModelSpec,
    s: Sharding,
    p: Precisions,
    cluster: Cluster,
    cat: Catalog,
    sp: Speculation | None,
    profile: EngineProfile,
    in_len: Array,
    out_len: Array,
    per_replica: Array,
    serving: bool,
    tiering: tuple[str | None, str, MemoryPool | None, float] = (None, "optimal", None, 0.0),
) -> _Memory:
    """A static batch holds every sequence at full length by the end and prefills every prompt at
    once; a serving engine holds what its admission reserves (planner.serving.held_tokens) and sets
    aside a workspace for one iteration's token budget, as vLLM profiles it at start-up."""
    parts = weight_parts(spec, s, p, drafter_weight_bytes(spec, s, p, sp))
    weights = parts.total_bytes
    kv_scale = drafter_kv_scale(spec, p, sp)
    own = tiers = device_tiers(cluster, cat)
    kv_offload, policy, pool, scratchpad = tiering
    if pool is not None:  # the pool sits right past the first tier; weights stream from it
        tiers = [tiers[0], pool.tier(cat, cluster.devices), *tiers[1:]]
    if scratchpad:  # last in the list: the KV cache, allowed a prefix of it, never lands there
        tiers = [*tiers, scratchpad_tier(cluster, scratchpad)]
    kv_tiers = offload_tiers(tiers, kv_offload)
    # the engine allocates the weights first; an offload tier extends the KV pool past them
    local = 0.0 if pool is not None else weights  # pooled weights leave the first tier to the KV cache
    room = tiers[0][1] - local + sum(c for _, c, _ in tiers[1:kv_tiers])
    admitted = held_tokens(profile, in_len, out_len)
    held = admitted if serving else in_len + out_len
    held_kv = kv_bytes_per_sequence(spec, s, p, held) * kv_scale  # one sequence's cache, shared below
    workspace = np.minimum(float(profile.token_budget), in_len) if serving else per_replica * in_len
    act = inference_activation_bytes(spec, s, p, np.maximum(workspace, 1.0))
    slots = _fitting(spec, s, p, room, held_kv, 1.0, workspace) if serving else per_replica
    running = np.minimum(per_replica, slots) if serving else per_replica
    kv = held_kv * np.ceil(running)
    # streamed from a pool, a layer's weights are double-buffered in the first tier
    staging = 0.0 if pool is None else 2.0 * weights / -(-spec.layers // s.pp)
    budget_ws = inference_activation_bytes(spec, s, p, float(profile.token_budget))
    per_token = float(kv_bytes_per_sequence(spec, s, p, KV_BLOCK_TOKENS)) / KV_BLOCK_TOKENS * kv_scale
    placement = place(
        parts,
        act,
        tiers,
        kv=kv,
        kv_tiers=kv_tiers,
        expert_reads=expert_touch_share(spec.moe, s, running),
        embedding_reads=np.ceil(running) / spec.vocab_size,
        policy=policy,
        weights_remote=pool is not None,
        staging=staging,
    )
    return _Memory(
        weights=weights,
        kv=kv,
        act=act,
        placement=placement,
        bandwidths=placement.bandwidths if pool is None else pool.bandwidths(placement),
        tiers=own,
        local_needed=None if pool is None else kv + act + staging,
        slots=slots,
        running=running,
        max_batch=_max_sequences(spec, s, p, room, in_len + out_len, in_len, 0.0, kv_scale),
        max_concurrency=_fitting(
            spec,
            s,
            p,
            room,
            held_kv if serving else kv_bytes_per_sequence(spec, s, p, admitted) * kv_scale,
            1.0,
            in_len,
        ),
        kv_capacity_tokens=max(0.0, float(room - budget_ws)) / per_token if per_token > 0 else 0.0,
    )


def _result(
    prefill_times: Sequence[OpTime], decode_times: Sequence[OpTime], bound: str | None = None, **fields: Any
) -> InferenceResult:
    """The result: arrays of one scenario become plain numbers; the per-op times ride along.
    `bound`: what limits the decode step where the ops' own bound does not say (its host dispatch)."""
    values = {k: scalar_or_array(v) if isinstance(v, (np.ndarray, np.generic)) else v for k, v in fields.items()}
    values["fit_reason"] = reason_per_scenario(values["fits"], values["fit_reason"])
    if bound is None:
        bound = decode_times.bound if isinstance(decode_times, Column) else dominant_bound(decode_times)
    return InferenceResult(**values, bound=bound, op_times=(("prefill", prefill_times), ("decode", decode_times)))


def _host_bound(profile: EngineProfile, decode_times: Sequence[OpTime], step_s: Any, pp: int) -> str | None:
    """'overhead' where an eager decode step (`step_s`) lasts its host dispatch (planner.serving.host_floor_s)."""
    if not profile.eager_decode:
        return None
    launches = sum((t.op.kernels * t.op.count for t in decode_times), np.zeros(())) / pp
    return "overhead" if np.all(host_floor_s(profile, launches, True) >= np.asarray(step_s) * (1 - 1e-9)) else None


def _prefill_pool_queue(
    prefill_one: Array, decode_step: Array, output_len: Array, slots: Array, replicas: float, extra_ttft_s: Array
) -> tuple[Array, Array, Array]:
    """Disaggregated serving: prompts queue for `replicas` prefill servers (M/D/1 each, Poisson
    arrivals at the closed loop's rate); decode runs undisturbed, so tpot is the decode step."""
    P = np.asarray(prefill_one, dtype=np.float64)
    tpot = np.asarray(decode_step, dtype=np.float64)
    ttft = np.broadcast_to(P + extra_ttft_s, np.broadcast_shapes(P.shape, np.shape(slots), np.shape(output_len)))
    done = np.zeros(ttft.shape, dtype=bool)
    for _ in range(200):  # each scenario stops on its own, so a sweep equals its single estimates
        rate = slots / (ttft + (output_len - 1.0) * tpot) / replicas
        rho = np.minimum(rate * P, 0.999)
        ttft_new = P + rho * P / (2.0 * (1.0 - rho)) + extra_ttft_s
        done = done | np.isclose(ttft_new, ttft, rtol=1e-10, atol=0.0)
        if done.all():
            break
        ttft = np.where(done, ttft, 0.5 * (ttft + ttft_new))
    rate = slots / (ttft + (output_len - 1.0) * tpot) / replicas
    return ttft, tpot, np.minimum(rate * P, 0.999)


def _max_sequences(
    spec: ModelSpec,
    s: Sharding,
    p: Precisions,
    room: float,
    held_tokens: Any,
    own_workspace_tokens: Any,
    shared_workspace_tokens: Any,
    kv_scale: float = 1.0,
) -> Array:
    """Sequences per replica that fit in `room` bytes: each holds the KV of `held_tokens` (times
    `kv_scale` for a drafter's own cache) and a workspace of `own_workspace_tokens`; one shared
    workspace of `shared_workspace_tokens` is set aside. Element by element over the knobs' arrays."""
    kv = kv_bytes_per_sequence(spec, s, p, held_tokens) * kv_scale
    return _fitting(spec, s, p, room, kv, own_workspace_tokens, shared_workspace_tokens)


def _fitting(
    spec: ModelSpec, s: Sharding, p: Precisions, room: float, kv_per_seq: Any, own_workspace: Any, shared_workspace: Any
) -> Array:
    """_max_sequences once a sequence's KV bytes are known (the caller often has them already)."""
    per_seq = kv_per_seq + inference_activation_bytes(spec, s, p, own_workspace)
    free = room - inference_activation_bytes(spec, s, p, shared_workspace)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(per_seq > 0, np.maximum(np.floor(free / per_seq), 0.0), 0.0)


def _disaggregated(
    spec: ModelSpec,
    hardware: str,
    devices: int | None,
    cat: Catalog,
    p: Precisions,
    tp: int,
    pp: int,
    ep: int,
    concurrency: Any,
    input_len: Any,
    output_len: Any,
    prefill_devices: int | None,
    prefill_tp: int | None,
    attention_kernel: str | None = None,
    qs: tuple[float, ...] = PERCENTILES,
    sp: Speculation | None = None,
    redundant_experts: int = 0,
    two_batch_overlap: bool = False,
    routing: Routing = NO_ROUTING,
    power_cap_w: float | None = None,
) -> InferenceResult:
    """Separate prefill and decode pools (DistServe / Dynamo style) sharing one request stream."""
    ptp = prefill_tp or tp
    decode_group = tp * pp
    n = devices if devices is not None else 2 * max(ptp, decode_group)
    n_p = prefill_devices if prefill_devices is not None else n // 2
    n_d = n - n_p
    if n_p < ptp or n_p % ptp:
        raise InvalidSpecError(f"--prefill-devices ({n_p}) must be a positive multiple of --prefill-tp ({ptp})")
    if n_d < decode_group or n_d % decode_group:
        raise InvalidSpecError(
            f"decode devices ({n} - {n_p} = {n_d}) must be a positive multiple of tp x pp ({decode_group})"
        )
    cluster_p = resolve_cluster(hardware, n_p, cat, power_cap_w)
    cluster_d = resolve_cluster(hardware, n_d, cat, power_cap_w)
    p = on_units(p, cluster_d)
    r_p, r_d = n_p // ptp, n_d // decode_group
    experts = spec.moe.experts if spec.moe is not None else None
    ep_p = min(ep, ptp)
    s_p = Sharding(
        tp=ptp, ep=ep_p, expert_imbalance=routing.ratio(experts, ep_p, placed=False), busiest_ep_rank=not routing.given
    )
    s_d = _sharding(spec, cluster_d, tp, pp, ep, redundant_experts, routing)
    check_sharding(spec, s_p)
    check_sharding(spec, s_d)
    in_len = whole("--input-len", input_len)
    out_len = whole("--output-len", output_len)
    _within_context(spec, in_len, out_len)
    C = whole("--concurrency", concurrency if concurrency is not None else 1)
    c_d = np.maximum(C / r_d, 1.0)
    tiers_p, tiers_d = device_tiers(cluster_p, cat), device_tiers(cluster_d, cat)
    parts_p = weight_parts(spec, s_p, p)
    parts_d = weight_parts(spec, s_d, p, drafter_weight_bytes(spec, s_d, p, sp))
    w_d = parts_d.total_bytes
    kv_d = kv_bytes_per_sequence(spec, s_d, p, in_len + out_len) * drafter_kv_scale(spec, p, sp) * np.ceil(c_d)
    act_d = inference_activation_bytes(spec, s_d, p, c_d)
    act_p = inference_activation_bytes(spec, s_p, p, in_len)
    # a prefill pass touches every expert; a decode step the share its batch routes to
    place_p = place(parts_p, act_p, tiers_p, kv=kv_bytes_per_sequence(spec, s_p, p, in_len))
    touched = expert_touch_share(spec.moe, s_d, np.ceil(c_d))
    tokens_d = np.ceil(c_d) / spec.vocab_size
    place_d = place(parts_d, act_d, tiers_d, kv=kv_d, expert_reads=touched, embedding_reads=tokens_d)
    kernel = attention_kernel
    prefill_s, prefill_times = pass_time(
        cluster_p,
        spec,
        s_p,
        p,
        np.ones_like(in_len),
        in_len,
        "prefill",
        None,
        place_p.bandwidths,
        attention_kernel=kernel,
    )
    decode_pool = Replica(cluster_d, spec, s_d, p, place_d.bandwidths, kernel, sp, two_batch_overlap)
    decode_s, decode_times = decode_pool.decode(c_d, in_len, in_len + out_len / 2.0)
    # KV of the prompt moves from the prefill ranks to the decode ranks, rank pairs in parallel, over
    # the tier joining the two pools: scale-up only when both pools sit in one domain.
    link = resolve_cluster(hardware, n, cat).tier_spanning(n)
    kv_prompt = np.asarray(kv_bytes_per_sequence(spec, Sharding(), p, in_len), dtype=np.float64)
    transfer = kv_prompt / (achieved_bandwidth(link) * min(ptp, decode_group)) + link.link.latency_s
    front = front_end_s(in_len)  # the server's front end (planner.serving)
    ttft, tpot, rho = _prefill_pool_queue(prefill_s, decode_s, out_len, C, float(r_p), transfer + front)
    fixed = prefill_s + transfer + front
    pcts = tuple(fixed + md1_wait_percentile_s(rho / prefill_s, prefill_s, q) for q in qs)
    fits = np.asarray(place_p.fits) & np.asarray(place_d.fits) & (rho < 0.999)
    reason = np.where(np.asarray(place_d.fits), place_p.reason, place_d.reason).astype(object)
    reason = np.where(rho >= 0.999, "the prefill pool saturates: add prefill devices", reason).astype(object)
    e2e = ttft + (out_len - 1.0) * tpot
    max_len, max_out = float(np.max(in_len)), float(np.max(out_len))
    room_d = tiers_d[0][1] - w_d
    max_batch = _max_sequences(spec, s_d, p, room_d, max_len + max_out, 1.0, 0.0) * r_d
    max_concurrency = _max_sequences(spec, s_d, p, room_d, max_len + max_out / 2, 1.0, 0.0) * r_d
    return _result(
        prefill_times,
        decode_times,
        model=spec.id,
        hardware=cluster_d.device.id,
        devices=n,
        tp=tp,
        pp=pp,
        ep=ep,
        dp=r_d,
        mode="disaggregated",
        batch=None,
        concurrency=C,
        input_len=in_len,
        output_len=out_len,
        weight_precision=p.weight,
        kv_precision=p.kv,
        ttft_s=ttft,
        tpot_s=tpot,
        e2e_latency_s=e2e,
        throughput_tokens_per_s=C * out_len / e2e,
        prefill_s=prefill_s,
        decode_step_s=decode_s,
        max_batch=int(np.min(max_batch)),
        max_concurrency=int(np.min(max_concurrency)),
        memory_per_device_bytes=w_d + kv_d + act_d,
        weight_bytes_per_device=w_d,
        kv_bytes_per_device=kv_d,
        fits=fits,
        fit_reason=reason,
        attention_kernel=cluster_p.perf.attention_kernel(attention_kernel).name,
        prefill_utilization=rho,
        prefill_devices=n_p,
        prefill_tp=ptp,
        kv_transfer_s=transfer,
        kv_link=f"{link.link.id} ({link.name})",
        tier_placement_bytes=place_d.as_dict(),  # a decode device's
        expert_load_max_over_mean=s_d.expert_imbalance if spec.moe is not None else None,
        power_cap_w=power_cap_w,
        device_power=device_power(cluster_d.device, cluster_d.perf.clock_scale, power_cap_w),
        matmul_precision=p.compute,
        speculative=None if sp is None else sp.method,
        tokens_per_step=decode_pool.tokens_per_step,
        **_percentile_fields(pcts),
    )
