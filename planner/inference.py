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

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from hardware_db.errors import InvalidSpecError
from planner.arrays import CHUNK, in_chunks, mean, scalar_or_array, sweep_size
from planner.breakdown import WithOps
from planner.catalog import Catalog, load_catalog, resolve_model
from planner.cluster import Cluster, resolve_cluster
from planner.collectives import achieved_bandwidth
from planner.evaluate import OpTime, pass_times, total_time
from planner.memory import (
    device_tiers,
    inference_activation_bytes,
    kv_bytes_per_sequence,
    place,
    weight_bytes_per_device,
)
from planner.ops import Phase, Precisions, Sharding, check_sharding, phase_ops
from planner.queueing import md1_wait_percentile_s
from planner.serving import (
    ARRIVALS,
    PERCENTILES,
    PROMPTS_PER_CLIENT,
    admitted,
    check_num_prompts,
    engine_profile,
    held_tokens,
    iteration_shapes,
    quantiles,
    serve,
)
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
    max_batch: int  # largest static batch that fits
    max_concurrency: int  # most requests in flight under continuous batching (KV held at input + output/2)
    memory_per_device_bytes: Any
    weight_bytes_per_device: float
    kv_bytes_per_device: Any
    fits: Any
    fit_reason: str
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
    kv_link: str | None = None  # disaggregated: the link the KV cache crosses between the pools
    # per-op times of both phases; the rows are built only when someone looks (one estimate stays fast)
    op_times: tuple[tuple[str, Any], ...] = field(default=(), repr=False, compare=False)


def _dominant_bound(times: Sequence[OpTime]) -> str:
    share: dict[str, float] = {}
    for t in times:
        share[t.bound] = share.get(t.bound, 0.0) + mean(t.total_s)
    return max(share, key=lambda k: share[k]) if share else "compute"


def _pp_p2p_s(cluster: Cluster, spec: ModelSpec, p: Precisions, s: Sharding, tokens: Array) -> Array:
    """Activations handed between pipeline stages: (pp - 1) sends per pass."""
    if s.pp == 1:
        return np.zeros_like(tokens)
    bw = achieved_bandwidth(cluster.tier_spanning(s.tp * s.pp))
    latency = cluster.scale_up.link.latency_s
    return (s.pp - 1) * (tokens * spec.hidden_size * p.act_bytes / s.tp / bw + latency)


def _pass_time(
    cluster: Cluster,
    spec: ModelSpec,
    s: Sharding,
    p: Precisions,
    batch: Array,
    seq: Array,
    phase: Phase,
    context: Array | None,
    weight_bw: float,
    prefill_tokens: Any = 0.0,
    attention_kernel: str | None = None,
) -> tuple[Array, list[OpTime]]:
    """Latency of one pass through all pipeline stages (a request visits each stage in turn)."""
    kernel = attention_kernel
    ops = phase_ops(spec, s, p, batch, seq, phase, context, 0, prefill_tokens, attention_kernel=kernel)
    times = pass_times(cluster, ops, p.compute, weight_bw)
    stage = total_time(times)
    if s.pp > 1:  # the last stage adds the LM head; middle stages match stage 0 minus the embedding
        last_ops = phase_ops(spec, s, p, batch, seq, phase, context, s.pp - 1, prefill_tokens, attention_kernel=kernel)
        last_times = pass_times(cluster, last_ops, p.compute, weight_bw)
        stage_total = stage * (s.pp - 1) + total_time(last_times)
        times = times + [t for t in last_times if t.op.op_class in ("lm_head",)]
    else:
        stage_total = stage
    tokens = batch * (1.0 if phase in ("decode", "mixed") else seq) + (prefill_tokens if phase == "mixed" else 0.0)
    return stage_total + _pp_p2p_s(cluster, spec, p, s, tokens), times


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
) -> InferenceResult:
    """Estimate one inference configuration. `batch` (static) or `concurrency` (serving); lengths,
    batch and concurrency may be numpy arrays to evaluate many scenarios at once. attention_kernel:
    the family's default fused kernel unless named (see `planner hardware show`), or "unfused".
    Serving: `engine` (vllm, sglang, trtllm) sets the scheduler, `token_budget` overrides its
    per-iteration token budget, `arrival` is "closed" (C clients, as benchmarks run) or "poisson",
    and `num_prompts` is the closed-loop benchmark's length (10 x C by default). TTFT comes as the
    mean and at p50/p90/p99, and at `ttft_percentile` when given (ttft_percentile_s)."""
    cat = catalog if isinstance(catalog, Catalog) else load_catalog(catalog)
    knobs = {"batch": batch, "concurrency": concurrency, "input_len": input_len, "output_len": output_len}
    if sweep_size(*knobs.values()) > CHUNK:
        return in_chunks(
            estimate_inference,
            knobs,
            model=model,
            hardware=hardware,
            devices=devices,
            tp=tp,
            pp=pp,
            ep=ep,
            dp=dp,
            weight_precision=weight_precision,
            kv_precision=kv_precision,
            activation_precision=activation_precision,
            disaggregated=disaggregated,
            prefill_devices=prefill_devices,
            prefill_tp=prefill_tp,
            catalog=cat,
            attention_kernel=attention_kernel,
            engine=engine,
            token_budget=token_budget,
            arrival=arrival,
            num_prompts=num_prompts,
            ttft_percentile=ttft_percentile,
        )
    spec = resolve_model(model, cat)
    qs = quantiles(ttft_percentile)
    check_num_prompts(num_prompts)
    engine_profile(engine, 0.0, token_budget)  # refuse an unknown engine or budget in every mode
    if arrival not in ARRIVALS:
        raise InvalidSpecError(f"unknown arrival '{arrival}' (allowed: {', '.join(ARRIVALS)})")
    p = Precisions(weight_precision, activation_precision, kv_precision or "bf16")
    if batch is not None and concurrency is not None:
        raise InvalidSpecError("give --batch (one static batch) or --concurrency (serving), not both")
    if batch is None and concurrency is None:
        batch = 1
    group = tp * pp
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
            concurrency if concurrency is not None else batch,
            input_len,
            output_len,
            prefill_devices,
            prefill_tp,
            attention_kernel,
            qs,
        )
    n = devices if devices is not None else group * (dp or 1)
    dp_ = dp if dp is not None else n // group
    if n % group or dp_ * group != n:
        raise InvalidSpecError(f"--devices ({n}) must equal tp x pp x dp ({tp} x {pp} x {dp_})")
    if ep > tp * dp_ or (tp * dp_) % ep:
        raise InvalidSpecError(f"ep ({ep}) must divide tp x dp ({tp * dp_}): experts are spread over those ranks")
    cluster = resolve_cluster(hardware, n, cat)
    s = Sharding(tp=tp, pp=pp, ep=ep)
    check_sharding(spec, s)
    in_len, out_len, per_replica = np.broadcast_arrays(
        np.asarray(input_len, dtype=np.float64),
        np.asarray(output_len, dtype=np.float64),
        np.asarray(batch if batch is not None else concurrency, dtype=np.float64) / dp_,
    )
    if np.any(in_len < 1) or np.any(out_len < 1):
        raise InvalidSpecError("input and output lengths must be >= 1")
    if np.any(per_replica <= 0):
        raise InvalidSpecError("batch and concurrency must be >= 1")
    per_replica = np.maximum(per_replica, 1.0)

    weights = weight_bytes_per_device(spec, s, p)
    tiers = device_tiers(cluster, cat)
    room = tiers[0][1] - weights
    profile = engine_profile(engine, cluster.device.main_memory.capacity_bytes, token_budget, cluster.device.id)
    serving = concurrency is not None
    # A static batch holds every sequence at full length by the end and prefills every prompt at
    # once; a serving engine holds what its admission reserves (planner.serving.held_tokens) and
    # sets aside a workspace for one iteration's token budget, as vLLM profiles it at start-up.
    held = held_tokens(profile, in_len, out_len) if serving else in_len + out_len
    workspace = np.minimum(float(profile.token_budget), in_len) if serving else per_replica * in_len
    act = inference_activation_bytes(spec, s, p, np.maximum(workspace, 1.0))
    slots = _max_sequences(spec, s, p, room, held, 1.0, workspace) if serving else per_replica
    running = np.minimum(per_replica, slots) if serving else per_replica
    kv = kv_bytes_per_sequence(spec, s, p, held) * np.ceil(running)
    placement = place(weights, float(np.max(kv + act)), tiers)
    max_len, max_out = float(np.max(in_len)), float(np.max(out_len))
    max_batch = _max_sequences(spec, s, p, room, max_len + max_out, max_len, 0.0) * dp_
    max_concurrency = (
        _max_sequences(spec, s, p, room, held_tokens(profile, np.asarray(max_len), np.asarray(max_out)), 1.0, max_len)
        * dp_
    )

    context_mid = in_len + out_len / 2.0
    # serving prefills one prompt at a time (batched with the running decodes); a static batch all at once
    prompts = per_replica if concurrency is None else np.ones_like(per_replica)
    weight_bw = placement.weight_bandwidth_bytes_per_s
    kernel = attention_kernel
    prefill_s, prefill_times = _pass_time(
        cluster, spec, s, p, prompts, in_len, "prefill", None, weight_bw, attention_kernel=kernel
    )
    active = np.maximum(running, 1.0)
    decode_s, decode_times = _pass_time(
        cluster, spec, s, p, active, in_len, "decode", context_mid, weight_bw, attention_kernel=kernel
    )
    fits = np.asarray(placement.fits)
    reason = placement.reason
    rho: Any = None
    if concurrency is None:
        ttft, tpot = prefill_s, decode_s
        pcts: tuple[Any, ...] = (prefill_s,) * len(qs)  # every prompt of the batch at once
        mode = "static"
    else:
        decodes, tokens = iteration_shapes(profile, active, in_len)
        tau = _pass_time(
            cluster,
            spec,
            s,
            p,
            decodes,
            in_len[..., None],
            "mixed",
            context_mid[..., None],
            weight_bw,
            prefill_tokens=tokens,
            attention_kernel=kernel,
        )[0]
        clients = per_replica * dp_
        prompts = num_prompts if num_prompts is not None else PROMPTS_PER_CLIENT * clients
        lat = serve(profile, arrival, tau, active, in_len, out_len, clients / np.maximum(prompts, clients), qs)
        lat = admitted(lat, per_replica, active)
        ttft, tpot, rho, pcts = lat.ttft_s, lat.tpot_s, lat.utilization, lat.ttft_percentiles_s
        fits = fits & (slots >= 1)
        if np.any(slots < 1):
            reason = "not one request's KV cache fits beside the weights"
        mode = "serving"
    e2e = ttft + (out_len - 1.0) * tpot
    total_requests = per_replica * dp_
    throughput = total_requests * out_len / e2e
    return _result(
        prefill_times,
        decode_times,
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
        input_len=in_len,
        output_len=out_len,
        weight_precision=p.weight,
        kv_precision=p.kv,
        ttft_s=ttft,
        tpot_s=tpot,
        e2e_latency_s=e2e,
        throughput_tokens_per_s=throughput,
        prefill_s=prefill_s,
        decode_step_s=decode_s,
        max_batch=int(np.min(max_batch)),
        max_concurrency=int(np.min(max_concurrency)),
        memory_per_device_bytes=weights + kv + act,
        weight_bytes_per_device=weights,
        kv_bytes_per_device=kv,
        fits=fits,
        fit_reason=reason,
        attention_kernel=cluster.perf.attention_kernel(attention_kernel).name,
        prefill_utilization=None if rho is None else scalar_or_array(rho),
        ttft_p50_s=pcts[0],
        ttft_p90_s=pcts[1],
        ttft_p99_s=pcts[2],
        ttft_percentile_s=pcts[3] if len(pcts) > 3 else None,
        engine=engine if mode == "serving" else None,
        arrival=arrival if mode == "serving" else None,
    )


def _result(prefill_times: list[OpTime], decode_times: list[OpTime], **fields: Any) -> InferenceResult:
    """The result: arrays of one scenario become plain numbers; the per-op times ride along."""
    values = {k: scalar_or_array(v) if isinstance(v, (np.ndarray, np.generic)) else v for k, v in fields.items()}
    return InferenceResult(
        **values, bound=_dominant_bound(decode_times), op_times=(("prefill", prefill_times), ("decode", decode_times))
    )


def _prefill_pool_queue(
    prefill_one: Array, decode_step: Array, output_len: Array, slots: Array, replicas: float, extra_ttft_s: Array
) -> tuple[Array, Array, Array]:
    """Disaggregated serving: prompts queue for `replicas` prefill servers (M/D/1 each, Poisson
    arrivals at the closed loop's rate); decode runs undisturbed, so tpot is the decode step."""
    P = np.asarray(prefill_one, dtype=np.float64)
    tpot = np.asarray(decode_step, dtype=np.float64)
    ttft, rho = P + extra_ttft_s, np.zeros_like(P)
    for _ in range(200):
        rate = slots / (ttft + (output_len - 1.0) * tpot) / replicas
        rho = np.minimum(rate * P, 0.999)
        ttft_new = P + rho * P / (2.0 * (1.0 - rho)) + extra_ttft_s
        if np.allclose(ttft_new, ttft, rtol=1e-10):
            break
        ttft = 0.5 * (ttft + ttft_new)
    return ttft, tpot, rho


def _max_sequences(
    spec: ModelSpec,
    s: Sharding,
    p: Precisions,
    room: float,
    held_tokens: Any,
    own_workspace_tokens: Any,
    shared_workspace_tokens: Any,
) -> Array:
    """Sequences per replica that fit in `room` bytes: each holds the KV of `held_tokens` and a
    workspace of `own_workspace_tokens`; one shared workspace of `shared_workspace_tokens` is set
    aside. Element by element over the knobs' arrays."""
    per_seq = kv_bytes_per_sequence(spec, s, p, held_tokens)
    per_seq = per_seq + inference_activation_bytes(spec, s, p, own_workspace_tokens)
    free = room - inference_activation_bytes(spec, s, p, shared_workspace_tokens)
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
    cluster_p = resolve_cluster(hardware, n_p, cat)
    cluster_d = resolve_cluster(hardware, n_d, cat)
    r_p, r_d = n_p // ptp, n_d // decode_group
    s_p, s_d = Sharding(tp=ptp, ep=min(ep, ptp)), Sharding(tp=tp, pp=pp, ep=ep)
    check_sharding(spec, s_p)
    check_sharding(spec, s_d)
    in_len = np.asarray(input_len, dtype=np.float64)
    out_len = np.asarray(output_len, dtype=np.float64)
    C = np.asarray(concurrency if concurrency is not None else 1, dtype=np.float64)
    c_d = np.maximum(C / r_d, 1.0)
    tiers_p, tiers_d = device_tiers(cluster_p, cat), device_tiers(cluster_d, cat)
    w_p, w_d = weight_bytes_per_device(spec, s_p, p), weight_bytes_per_device(spec, s_d, p)
    kv_d = kv_bytes_per_sequence(spec, s_d, p, in_len + out_len) * np.ceil(c_d)
    act_d = inference_activation_bytes(spec, s_d, p, c_d)
    act_p = inference_activation_bytes(spec, s_p, p, in_len)
    place_p = place(w_p, float(np.max(act_p + kv_bytes_per_sequence(spec, s_p, p, in_len))), tiers_p)
    place_d = place(w_d, float(np.max(kv_d + act_d)), tiers_d)
    kernel = attention_kernel
    prefill_s, prefill_times = _pass_time(
        cluster_p,
        spec,
        s_p,
        p,
        np.ones_like(in_len),
        in_len,
        "prefill",
        None,
        place_p.weight_bandwidth_bytes_per_s,
        attention_kernel=kernel,
    )
    decode_s, decode_times = _pass_time(
        cluster_d,
        spec,
        s_d,
        p,
        c_d,
        in_len,
        "decode",
        in_len + out_len / 2.0,
        place_d.weight_bandwidth_bytes_per_s,
        attention_kernel=kernel,
    )
    # KV of the prompt moves from the prefill ranks to the decode ranks, rank pairs in parallel, over
    # the tier joining the two pools: scale-up only when both pools sit in one domain.
    link = resolve_cluster(hardware, n, cat).tier_spanning(n)
    kv_prompt = np.asarray(kv_bytes_per_sequence(spec, Sharding(), p, in_len), dtype=np.float64)
    transfer = kv_prompt / (achieved_bandwidth(link) * min(ptp, decode_group)) + link.link.latency_s
    ttft, tpot, rho = _prefill_pool_queue(prefill_s, decode_s, out_len, C, float(r_p), transfer)
    fixed = prefill_s + transfer
    pcts = tuple(fixed + md1_wait_percentile_s(rho / prefill_s, prefill_s, q) for q in qs)
    fits = np.asarray(place_p.fits and place_d.fits) & (rho < 0.999)
    reason = place_d.reason if not place_d.fits else place_p.reason if not place_p.fits else "fits"
    if np.any(rho >= 0.999):
        reason = f"the prefill pool saturates (rho={float(np.max(rho)):.2f}): add prefill devices"
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
        ttft_p50_s=pcts[0],
        ttft_p90_s=pcts[1],
        ttft_p99_s=pcts[2],
        ttft_percentile_s=pcts[3] if len(pcts) > 3 else None,
    )
