"""Single-op what-ifs: one GEMM, a grouped GEMM or a MoE layer's experts, one attention kernel, one
collective, one streaming copy."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from hardware_db.errors import InvalidSpecError
from planner.arrays import frame, plain, scalar_or_array
from planner.catalog import Catalog, load_catalog, resolve_model
from planner.cluster import UNFUSED_ATTENTION, resolve_cluster
from planner.collectives import collective_time
from planner.evaluate import ATTENTION_BACKWARD_FLOPS, backward_s, op_time
from planner.ops import (
    UNFUSED_BACKWARD_FLOPS,
    Op,
    Precisions,
    Sharding,
    on_units,
    routed_expert_ops,
    unfused_bytes_per_score,
)
from planner.roofline import attention_tile_efficiency
from workloads.derived import bytes_per_element
from workloads.schema import ModelSpec, Moe


def _catalog(catalog: Catalog | str | None) -> Catalog:
    return catalog if isinstance(catalog, Catalog) else load_catalog(catalog)


@dataclass(frozen=True)
class KernelResult:
    kind: str
    hardware: str
    precision: str
    flops: Any
    bytes: Any
    time_s: Any
    achieved_flops_per_s: Any
    achieved_bytes_per_s: Any
    arithmetic_intensity: Any
    bound: str

    def to_dict(self) -> dict[str, Any]:
        return plain(asdict(self))

    def to_frame(self) -> Any:
        return frame(self.to_dict())


def _result(kind: str, hardware: str, precision: str, op: Op, catalog: Catalog) -> KernelResult:
    cluster = resolve_cluster(hardware, 1, catalog)
    unit = cluster.perf.unit_precision(precision)
    if unit != precision:  # a kernel what-if in a precision the part cannot run natively is refused
        assert cluster.device.compute is not None
        raise InvalidSpecError(
            f"--precision {precision}: {cluster.device.id} has no {precision} matrix units "
            f"(has: {', '.join(cluster.device.compute.peak_dense)})"
        )
    t = op_time(cluster, op, precision)
    return _kernel_result(kind, cluster.device.id, precision, op.flops, op.bytes, t.time_s, t.bound)


def _kernel_result(
    kind: str, device: str, precision: str, flops_: Any, bytes_: Any, time: Any, bound: str
) -> KernelResult:
    flops = np.asarray(flops_, dtype=np.float64)
    moved = np.asarray(bytes_, dtype=np.float64)
    return KernelResult(
        kind,
        device,
        precision,
        scalar_or_array(flops),
        scalar_or_array(moved),
        scalar_or_array(time),
        scalar_or_array(flops / time),
        scalar_or_array(moved / time),
        scalar_or_array(flops / np.maximum(moved, 1e-30)),
        bound,
    )


def estimate_gemm(
    hardware: str, m: Any, n: Any, k: Any, precision: str = "bf16", catalog: Catalog | str | None = None
) -> KernelResult:
    """C[m x n] = A[m x k] B[k x n], all operands in `precision` (output in 16 bits for 8/4-bit inputs)."""
    cat = _catalog(catalog)
    M, N, K = (np.asarray(x, dtype=np.float64) for x in (m, n, k))
    if np.any(M < 1) or np.any(N < 1) or np.any(K < 1):
        raise InvalidSpecError("m, n and k must be >= 1")
    e = bytes_per_element(precision)
    out = max(e, 2.0)
    op = Op(
        "gemm",
        "gemm",
        1,
        flops=2 * M * N * K,
        weight_bytes=K * N * e,
        activation_bytes=M * K * e + M * N * out,
        output_bytes=M * N * out,
        m=M,
        n=N,
        k=K,
    )
    return _result("gemm", hardware, precision, op, cat)


def estimate_grouped_gemm(
    hardware: str, groups: Any, m: Any, n: Any, k: Any, precision: str = "bf16", catalog: Catalog | str | None = None
) -> KernelResult:
    """`groups` independent GEMMs C[m x n] = A[m x k] B[k x n] in one kernel (a MoE layer's expert
    GEMM with m routed rows per expert): each group has its own weights, and the units are filled
    with every group's tiles at once (planner.roofline)."""
    cat = _catalog(catalog)
    G, M, N, K = (np.asarray(x, dtype=np.float64) for x in (groups, m, n, k))
    if np.any(G < 1) or np.any(M < 1) or np.any(N < 1) or np.any(K < 1):
        raise InvalidSpecError("groups, m, n and k must be >= 1")
    e = bytes_per_element(precision)
    op = Op(
        "grouped_gemm",
        "moe",
        1,
        flops=2 * G * M * N * K,
        weight_bytes=G * K * N * e,
        activation_bytes=G * (M * K * e + M * N * max(e, 2.0)),
        output_bytes=G * M * N * max(e, 2.0),
        m=M,
        n=N,
        k=K,
        groups=G,
    )
    return _result("grouped-gemm", hardware, precision, op, cat)


@dataclass(frozen=True)
class MoeShape:
    """One MoE layer's routed experts by shape, for a layer no catalogue model has."""

    experts: int
    top_k: int
    hidden_size: int
    expert_ffn_size: int  # per expert, before any split
    gated: bool = True  # gate and up projections (SwiGLU)
    name: str = "moe-layer"


def _moe_shape(model: str | ModelSpec | MoeShape, cat: Catalog) -> tuple[Moe, MoeShape]:
    if isinstance(model, MoeShape):
        if model.top_k > model.experts or min(model.experts, model.top_k, model.hidden_size, model.expert_ffn_size) < 1:
            raise InvalidSpecError(f"MoE shape {model}: sizes must be >= 1 and top_k <= experts")
        return Moe(experts=model.experts, top_k=model.top_k, expert_ffn_size=model.expert_ffn_size), model
    spec = resolve_model(model, cat)
    if spec.moe is None:
        raise InvalidSpecError(f"{spec.id} has no mixture-of-experts layers")
    m = spec.moe
    return m, MoeShape(m.experts, m.top_k, spec.hidden_size, m.expert_ffn_size, spec.ffn.gated, spec.id)


def estimate_moe_layer(
    hardware: str,
    model: str | ModelSpec | MoeShape,
    tokens: Any,
    *,
    ep: int = 1,
    expert_tp: int = 1,
    weight_precision: str = "bf16",
    activation_precision: str = "bf16",
    matmul_precision: str | None = None,
    catalog: Catalog | str | None = None,
) -> KernelResult:
    """The routed experts of one MoE layer (a catalogue model's, or a MoeShape) on one device, as a
    fused-MoE kernel benchmark times them: `tokens` enter the layer (across the EP group), each
    picks top_k experts; the device holds 1/ep of the experts, each split `expert_tp` ways.
    Routing, permutation, the grouped expert GEMMs and the weighted un-permutation, built as the
    model passes build them (ops.routed_expert_ops); the router GEMM and any all-to-all are left
    out, as the kernel benchmarks leave them out. `matmul_precision`: the GEMMs' math where the
    kernel differs from the W8A8-style default (a W4A16 kernel: bf16)."""
    cat = _catalog(catalog)
    moe, shape = _moe_shape(model, cat)
    t = np.asarray(tokens, dtype=np.float64)
    if np.any(t < 1):
        raise InvalidSpecError("tokens must be >= 1")
    if ep > 1 and expert_tp > 1:
        raise InvalidSpecError("give ep or expert_tp, not both (the benchmarks shard experts one way)")
    if moe.experts % ep or moe.expert_ffn_size % expert_tp:
        raise InvalidSpecError(
            f"ep={ep} must divide {shape.name}'s {moe.experts} experts and expert_tp={expert_tp} "
            f"its expert width {moe.expert_ffn_size}"
        )
    s = Sharding(tp=expert_tp) if ep == 1 else Sharding(ep=ep, busiest_ep_rank=False)  # one rank's shard
    cluster = resolve_cluster(hardware, 1, cat)
    p = on_units(Precisions(weight_precision, activation_precision, unit=matmul_precision), cluster)
    routed = routed_expert_ops(moe, shape.hidden_size, shape.gated, s, p, t / ep, 1.0)
    ops = [op for op in routed if op.op_class != "comm"]
    times = [op_time(cluster, op, p.compute) for op in ops]
    experts = next(tm for tm in times if tm.op.name == "experts")
    flops = sum(op.flops for op in ops)
    moved = sum(op.bytes for op in ops)
    total = sum(tm.total_s for tm in times)
    return _kernel_result("moe-layer", cluster.device.id, p.compute, flops, moved, total, experts.bound)


def attention_flops(batch: Any, heads: Any, seq_len: Any, head_dim: Any, causal: bool, pass_: str) -> Any:
    """FlashAttention's FLOP convention: forward 4 x b x h x s^2 x d (halved when causal); backward 2.5x."""
    fwd = 4.0 * np.asarray(batch) * heads * np.asarray(seq_len, dtype=np.float64) ** 2 * head_dim
    if causal:
        fwd = fwd / 2
    return fwd * {"forward": 1.0, "backward": 2.5, "forward+backward": 3.5}[pass_]


def estimate_attention(
    hardware: str,
    batch: Any,
    heads: int,
    seq_len: Any,
    head_dim: int,
    kv_heads: int | None = None,
    causal: bool = True,
    pass_: str = "forward",
    precision: str = "bf16",
    catalog: Catalog | str | None = None,
    kernel: str | None = None,
) -> KernelResult:
    """One attention kernel over `batch` sequences of `seq_len` tokens: a fused (FlashAttention-style)
    kernel, the family's default unless `kernel` names another, or "unfused" (scores in memory).
    The backward runs 2.5x the forward's FLOPs (recomputing the scores) at the kernel's backward
    efficiency, and moves twice its bytes."""
    passes = {"forward": (1.0, 0.0), "backward": (0.0, 1.0), "forward+backward": (1.0, 1.0)}
    if pass_ not in passes:
        raise InvalidSpecError(f"unknown pass '{pass_}' (allowed: {', '.join(passes)})")
    cat = _catalog(catalog)
    kvh = kv_heads or heads
    e = bytes_per_element(precision)
    b, s = np.asarray(batch, dtype=np.float64), np.asarray(seq_len, dtype=np.float64)
    unfused = kernel == UNFUSED_ATTENTION
    io = b * s * head_dim * (2 * heads + 2 * kvh) * e  # Q, O and K, V
    backward_flops: float | None = None
    backward_bytes: float | None = None
    if unfused:  # a kernel benchmark: no dropout
        forward_per_score, backward_per_score = unfused_bytes_per_score(e, dropout=False)
        io = io + b * heads * s * s * forward_per_score
        backward_flops, backward_bytes = UNFUSED_BACKWARD_FLOPS, backward_per_score / forward_per_score
    op = Op(
        "attention",
        "attention",
        1,
        flops=attention_flops(b, heads, s, head_dim, causal, "forward"),
        activation_bytes=io,
        exp_ops=0.0 if unfused else b * heads * s * s / (2 if causal else 1),
        kernel=kernel,
        tile_efficiency=attention_tile_efficiency(s, causal, materialised=unfused),
        backward_flops_factor=backward_flops,
        backward_bytes_factor=backward_bytes,
    )
    compute_precision = "bf16" if precision in ("fp16", "bf16") else precision
    cluster = resolve_cluster(hardware, 1, cat)
    t = op_time(cluster, op, compute_precision)
    forward, backward = passes[pass_]
    time = forward * t.time_s + backward * backward_s(t, ATTENTION_BACKWARD_FLOPS)
    flops = attention_flops(b, heads, s, head_dim, causal, pass_)
    moved = io * (forward + backward * (backward_bytes or 2.0))
    return _kernel_result("attention", cluster.device.id, compute_precision, flops, moved, time, t.bound)


def estimate_memory_copy(hardware: str, bytes_: Any, catalog: Catalog | str | None = None) -> KernelResult:
    """A streaming kernel moving `bytes_` bytes in all (reads plus writes) through the main memory tier."""
    cat = _catalog(catalog)
    moved = np.asarray(bytes_, dtype=np.float64)
    if not np.all(np.isfinite(moved)) or np.any(moved <= 0):
        raise InvalidSpecError(f"--bytes must be a finite size > 0 (got {bytes_})")
    op = Op("copy", "elementwise", 1, flops=0.0, activation_bytes=moved)
    return _result("memory", hardware, "bf16", op, cat)


@dataclass(frozen=True)
class CollectiveResult:
    op: str
    hardware: str
    devices: int
    algorithm: str
    bytes: Any
    time_s: Any
    latency_s: Any
    algbw_bytes_per_s: Any
    busbw_bytes_per_s: Any

    def to_dict(self) -> dict[str, Any]:
        return plain(asdict(self))

    def to_frame(self) -> Any:
        return frame(self.to_dict())


def estimate_collective(
    hardware: str, devices: int, op: str, bytes_: Any, algorithm: str = "auto", catalog: Catalog | str | None = None
) -> CollectiveResult:
    """One collective over `devices` devices of `hardware` (device or system ID) on a `bytes_` buffer."""
    cat = _catalog(catalog)
    if devices < 2:
        raise InvalidSpecError(f"--devices must be >= 2 for a collective (got {devices})")
    cluster = resolve_cluster(hardware, devices, cat)
    c = collective_time(cluster, op, bytes_, devices, algorithm)
    return CollectiveResult(
        op,
        cluster.device.id,
        devices,
        c.algorithm,
        scalar_or_array(c.bytes),
        scalar_or_array(c.time_s),
        scalar_or_array(c.latency_s),
        scalar_or_array(c.algbw_bytes_per_s),
        scalar_or_array(c.busbw_bytes_per_s),
    )
