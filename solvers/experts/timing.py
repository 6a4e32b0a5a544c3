"""What a placement buys in time: one forward pass over the batch the loads describe (their tokens
per layer / top_k tokens, spread over the GPUs as data-parallel attention spreads them), timed by
planner.estimate_inference with the busiest rank's load before (contiguous) and after the plan.
LLEP adds its weight copies: per layer, the GPU that sends or receives the most expert weights
waits for them (over NVLink inside a node, over the scale-out network across nodes)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from planner.catalog import Catalog
from planner.cluster import resolve_cluster
from planner.collectives import achieved_bandwidth
from planner.inference import estimate_inference
from workloads.derived import moe_layer_count
from workloads.schema import ModelSpec


def moe_times(
    plan: Any, spec: ModelSpec, hardware: str, cat: Catalog, precision: str, top_k: int | None
) -> dict[str, Any]:
    from solvers.experts import expert_weight_bytes

    assert spec.moe is not None
    k = top_k if top_k is not None else spec.moe.top_k
    tokens = float(plan.gpu_loads_before.sum(axis=1).mean()) / k  # tokens in the batch, per layer
    per_gpu = max(1.0, tokens / plan.gpus)
    seq = int(min(per_gpu, 4096, spec.max_seq_len - 1))
    batch = plan.gpus * math.ceil(per_gpu / seq)
    expert_bytes = expert_weight_bytes(spec, precision)
    layers = moe_layer_count(spec)

    def run(ratio: float, redundant: int) -> Any:
        return estimate_inference(
            spec,
            hardware,
            plan.gpus,
            dp=plan.gpus,
            ep=plan.gpus,
            batch=batch,
            input_len=seq,
            output_len=1,
            weight_precision=precision,
            redundant_experts=redundant,
            expert_imbalance=max(1.0, ratio),
            catalog=cat,
        )

    before = run(plan.max_over_mean_before, 0)
    after = run(plan.max_over_mean, 0 if plan.policy in ("llep", "contiguous") else plan.slots - plan.experts)
    copies_s, copies_bytes = _copy_time(plan, hardware, cat, expert_bytes)
    scale = layers / plan.layers  # the loads may cover fewer layers than the model has
    moe_before, moe_after = before.moe_s["prefill"], after.moe_s["prefill"] + copies_s * scale
    pass_before, pass_after = before.prefill_s, after.prefill_s + copies_s * scale
    pass_tokens = batch * seq
    return {
        "pass_tokens": pass_tokens,
        "moe_time_before_s": moe_before,
        "moe_time_s": moe_after,
        "pass_time_before_s": pass_before,
        "pass_time_s": pass_after,
        "tokens_per_s_before": pass_tokens / pass_before,
        "tokens_per_s": pass_tokens / pass_after,
        "weight_copy_s": copies_s * scale,
        "expert_memory_per_gpu_before_bytes": plan.experts / plan.gpus * expert_bytes * layers,
        "expert_memory_per_gpu_bytes": (
            (plan.experts if plan.policy in ("llep", "contiguous") else plan.slots) / plan.gpus * expert_bytes * layers
            + copies_bytes
        ),
        "fits_before": bool(before.fits),
        "fits": bool(after.fits),
    }


def _copy_time(plan: Any, hardware: str, cat: Catalog, expert_bytes: float) -> tuple[float, float]:
    """LLEP's weight copies: seconds summed over the loads' layers, and the most bytes one GPU
    receives in a layer (held while the layer runs)."""
    if not plan.spills:
        return 0.0, 0.0
    cluster = resolve_cluster(hardware, plan.gpus, cat)
    intra = achieved_bandwidth(cluster.scale_up)
    inter = achieved_bandwidth(cluster.tier_spanning(plan.gpus))
    per_node = plan.gpus // plan.nodes
    busy = np.zeros((plan.layers, plan.gpus))  # seconds each GPU's copies take, per layer
    received = np.zeros((plan.layers, plan.gpus))
    for s in plan.spills:
        bw = intra if s.src_gpu // per_node == s.dst_gpu // per_node else inter
        busy[s.layer, s.src_gpu] += expert_bytes / bw
        busy[s.layer, s.dst_gpu] += expert_bytes / bw
        received[s.layer, s.dst_gpu] += expert_bytes
    return float(busy.max(axis=1).sum()), float(received.max())
