"""Training step estimate: 1F1B and interleaved pipelines with TP/SP, DP with ZeRO, EP, CP, recompute.

Per micro-batch, on the slowest pipeline stage, forward op times come from the roofline and the
topology; backward is 2x the forward GEMM work (input and weight gradients; 2.5x for FlashAttention's
backward, which also recomputes the scores), 2x the element-wise traffic, and the same TP/EP/CP
collectives again. Recompute adds a forward (full) or the attention core (selective).

Schedule (Narayanan et al. 2021): step = (m + (pp - 1) / v) x t_microbatch, where m micro-batches
run per step and v virtual stages interleave; pipeline sends are exposed only while the pipeline
fills and drains. Data-parallel gradient reduction runs under the backward pass of the last
micro-batch (bucketed, as Megatron/DDP overlap it); only what outlasts that window is exposed.
ZeRO-1/2 reduce-scatter gradients and all-gather parameters after the optimizer (the gather
hides under the next forward); ZeRO-3 gathers parameters again for every micro-batch's forward
and backward. TP collectives are exposed (Megatron's default schedule does not overlap them);
EP all-to-all is exposed; CP's ring KV exchange hides under the attention it feeds.

MFU follows Megatron/PaLM: model FLOPs = 6 x (active matmul parameters) + 3 x forward attention
over the full (non-causal) sequence, per token; HFU counts what the hardware executes, recompute
included and causal masking applied.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from hardware_db.errors import InvalidSpecError
from planner.arrays import CHUNK, count, formatted, in_chunks, reason_per_scenario, scalar_or_array, sweep_size, whole
from planner.breakdown import WithOps
from planner.catalog import Catalog, load_catalog, resolve_model
from planner.cluster import UNFUSED_ATTENTION, Cluster, resolve_cluster
from planner.collectives import achieved_bandwidth, collective_time
from planner.evaluate import ATTENTION_BACKWARD_FLOPS, OpTime, backward_s, pass_times
from planner.expert_loads import Routing
from planner.framework_memory import (
    check_framework,
    fsdp_transient_bytes,
    loss_bytes_per_logit,
    op_sac_bytes_per_layer,
    reserved_bytes,
)
from planner.memory import RESERVE_FRACTION, weight_bytes_per_device
from planner.offload import Offload, host_memory, offload_step, parse_offload
from planner.ops import Precisions, Sharding, check_sharding, phase_ops
from planner.power import LINK_SHARE, MEMORY_SHARE, DevicePower, device_power, pass_power_w, system_power_w
from workloads.derived import attention_flops_per_token, bytes_per_element, parameter_counts
from workloads.schema import ModelSpec

Array = npt.NDArray[np.float64]
RECOMPUTE = ("none", "selective", "full")
# Mixed-precision Adam (Rajbhandari et al. 2020, ZeRO §3): fp32 master weights, momentum and variance.
OPTIMIZER_BYTES_PER_PARAM = 12.0
# Adam's update streams master, m, v, gradient in and master, m, v, 16-bit weights out.
OPTIMIZER_TRAFFIC_BYTES_PER_PARAM = 4.0 * 4 + 4.0 * 3 + 2.0
_BACKWARD_FLOPS = {
    "gemm": 2.0,
    "moe": 2.0,
    "lm_head": 2.0,
    "attention": ATTENTION_BACKWARD_FLOPS,
    "norm": 2.0,
    "elementwise": 2.0,
    "embedding": 1.0,
}


@dataclass(frozen=True)
class TrainingResult(WithOps):
    model: str
    hardware: str
    devices: int
    tp: int
    pp: int
    dp: int
    ep: int
    cp: int
    zero: Any
    virtual_stages: Any
    sequence_parallel: bool
    micro_batch: Any
    global_batch: Any
    seq_len: Any
    recompute: Any
    precision: str
    micro_batches: Any
    step_time_s: Any
    tokens_per_s: Any
    mfu: Any
    hfu: Any
    memory_per_device_bytes: Any
    fits: Any
    fit_reason: Any  # per scenario in a sweep
    compute_s: Any
    recompute_s: Any
    tp_comm_s: Any
    ep_comm_s: Any
    cp_comm_exposed_s: Any
    pp_bubble_s: Any
    pp_comm_s: Any
    dp_comm_exposed_s: Any
    optimizer_s: Any
    weights_bytes: Any
    gradients_bytes: Any
    optimizer_bytes: Any
    activations_bytes: Any
    forward_per_microbatch_s: Any  # on the slowest stage, its TP/EP/CP communication included
    backward_per_microbatch_s: Any  # recompute included
    capacity_bytes: float  # usable first-tier memory per device (after the framework reserve)
    # what PyTorch's caching allocator reserves for that peak (torch.cuda.max_memory_reserved)
    memory_reserved_bytes: Any = None
    framework: str | None = None  # whose memory conventions the estimate follows (None: generic)
    attention_kernel: str = ""  # the attention kernel assumed (the family's default unless named)
    moe_s: Any = None  # MoE layers' forward + backward per step (router, experts, all-to-alls), busiest EP rank
    expert_load_max_over_mean: float | None = None  # the busiest EP rank's routed tokens over the mean
    power_cap_w: float | None = None  # the board power cap the estimate ran under, if any
    # ZeRO-Offload / ZeRO-Infinity (planner.offload): where optimizer, master and gradients live
    offload: dict[str, str] | None = None  # tensor -> gpu/cpu/cxl/nvme; None: all on the device
    offload_policy: str | None = None  # how "cxl" places them: dram-only, interleave, cxl-aware
    offload_s: Any = 0.0  # what offloading adds to the step: CPU Adam, exposed PCIe copies
    cpu_optimizer_s: Any = 0.0  # the CPU Adam step (replaces optimizer_s, which is then 0)
    host_bytes_per_tier: dict[str, Any] = field(default_factory=dict)  # per GPU: dram, cxl, nvme
    # {tier: {tensor: bytes per device}} on the device and in the host tiers (a sweep's mean)
    tier_placement_bytes: dict[str, dict[str, float]] = field(default_factory=dict)
    device_power: DevicePower | None = field(default=None, repr=False, compare=False)
    # forward op times of one micro-batch on the first stage; rows are built only when asked for
    op_times: tuple[tuple[str, Any], ...] = field(default=(), repr=False, compare=False)

    # kept by chunked sweeps (planner.arrays.in_chunks)
    DERIVED = ("avg_power_w", "energy_j_per_token", "energy_j_per_step", "system_power_w")

    @functools.cached_property
    def avg_power_w(self) -> Any:
        """Mean board power per device over a step (planner.power): compute (forward, backward,
        recompute) at the forward ops' mean power, exposed communication at the links' power,
        the optimizer memory-bound, the pipeline bubble idle."""
        if self.device_power is None:
            return None
        pw = self.device_power
        compute_ops = [t for t in dict(self.op_times)["forward"] if t.op.op_class != "comm"]
        busy = pass_power_w(pw, compute_ops)
        comm = self.tp_comm_s + self.ep_comm_s + self.cp_comm_exposed_s + self.pp_comm_s + self.dp_comm_exposed_s
        energy = (
            busy * (np.asarray(self.compute_s) + self.recompute_s)
            + (pw.idle_w + pw.dynamic_w * LINK_SHARE) * np.asarray(comm)
            + (pw.idle_w + pw.dynamic_w * MEMORY_SHARE) * np.asarray(self.optimizer_s)
            + pw.idle_w * (np.asarray(self.pp_bubble_s) + np.asarray(self.offload_s))  # GPU waits on the host
        )
        return scalar_or_array(energy / np.asarray(self.step_time_s))

    @functools.cached_property
    def energy_j_per_token(self) -> Any:
        """Board energy per trained token over all devices (host power excluded)."""
        if self.avg_power_w is None:
            return None
        return scalar_or_array(np.asarray(self.avg_power_w) * self.devices / np.asarray(self.tokens_per_s))

    @functools.cached_property
    def energy_j_per_step(self) -> Any:
        """Board energy of one step over all devices."""
        if self.avg_power_w is None:
            return None
        return scalar_or_array(np.asarray(self.avg_power_w) * self.devices * np.asarray(self.step_time_s))

    @functools.cached_property
    def system_power_w(self) -> Any:
        """All devices with their hosts (CPUs, memory, NICs, fans): the typical host overhead of
        planner.costs.DEFAULT_TCO (a DGX H100's ~600 W over its GPUs)."""
        return system_power_w(self.avg_power_w, self.devices)

    def to_dict(self, ops: bool = True) -> dict[str, Any]:
        return {**super().to_dict(ops), **{name: getattr(self, name) for name in self.DERIVED}}


def _sum(
    times: list[OpTime],
    classes: tuple[str, ...] | None = None,
    tier: str | None = None,
    scale: dict[str, float] | None = None,
) -> Array:
    total = np.zeros(1)
    for t in times:
        if t.op.op_class == "comm":
            if tier is not None and t.op.comm_tier == tier:
                total = total + t.total_s
            continue
        if classes is not None and t.op.op_class in classes:
            f = (scale or {}).get(t.op.op_class, 1.0)
            per = (
                backward_s(t, f) if f > 1.0 else np.maximum(t.compute_s * f, t.memory_s * f) + t.serial_s + t.overhead_s
            )
            total = total + per * t.op.count
    return total


def activation_bytes_per_layer(
    spec: ModelSpec,
    s: Sharding,
    micro_batch: Array,
    seq_len: Array,
    recompute: str,
    act_bytes: float,
    scores_stored: bool = False,
) -> Array:
    """Korthikanti et al. 2022 (§4) accounting, generalised to GQA, gated and MoE FFNs, no dropout
    (modern LLMs train without it) and FlashAttention (scores never stored: the 5as^2b term vanishes,
    so selective recompute saves nothing more). Hidden-size terms divide by tp under sequence parallelism.
    scores_stored (unfused attention, no recompute): the softmax output, its dropout mask (1 byte)
    and the dropout output are kept per score: Korthikanti's 5as^2b at 16 bits."""
    a, h = spec.attention, spec.hidden_size
    if scores_stored and recompute == "none":
        b, L = np.asarray(micro_batch, dtype=np.float64), np.asarray(seq_len, dtype=np.float64) / s.cp
        scores = (2 * act_bytes + 1) * a.heads / s.tp * L * L * b
        return activation_bytes_per_layer(spec, s, micro_batch, seq_len, recompute, act_bytes) + scores
    sb = micro_batch * seq_len / s.cp
    hid = sb * h * act_bytes / (s.tp if s.sp else 1)
    if recompute == "full":
        return hid  # only each layer's input is kept
    q_dim, kv_dim = a.heads * a.head_dim, a.kv_heads * a.head_dim
    attn = 2 * hid + sb * (q_dim + 2 * kv_dim + q_dim) * act_bytes / s.tp  # norm in, QKV in; Q,K,V; O-proj in
    # MoE: the busiest EP rank keeps expert_imbalance times the mean routed tokens' intermediates
    ffn_width = spec.ffn.size if spec.moe is None else spec.moe.expert_ffn_size * spec.moe.top_k * s.expert_imbalance
    gate = 3 if spec.ffn.gated else 2  # gate and up outputs (or up), activation output
    mlp = 2 * hid + sb * ffn_width * gate * act_bytes / (s.tp if spec.moe is None or s.ep == 1 else 1)
    return attn + mlp


def _data_parallel(devices: int, tp: int, pp: int, cp: int, ep: int, dp: int | None) -> int:
    """The data-parallel degree: given, or what the devices leave; EP must divide dp x tp."""
    model_parallel = tp * pp * cp
    dp_ = dp if dp is not None else devices // model_parallel
    if dp_ < 1 or dp_ * model_parallel != devices:
        raise InvalidSpecError(f"--devices ({devices}) must equal tp x pp x cp x dp ({tp} x {pp} x {cp} x {dp_})")
    if (dp_ * tp) % ep:
        raise InvalidSpecError(f"ep ({ep}) must divide dp x tp ({dp_ * tp})")
    return dp_


def _batches(micro_batch: Any, global_batch: Any, seq_len: Any, cp: int, dp: int) -> tuple[Array, Array, Array, Array]:
    """Micro-batch, global batch, sequence length and micro-batches per step, checked."""
    b = whole("--micro-batch", micro_batch)
    B = whole("--global-batch", global_batch)
    S = whole("--seq-len", seq_len)
    if cp > 1 and np.any(S % (2 * cp)):
        # Megatron-core splits the sequence into 2 x cp chunks (each rank one early, one late) to
        # balance causal attention
        raise InvalidSpecError(f"--seq-len ({seq_len}) must be a multiple of 2 x cp ({2 * cp})")
    m = B / (b * dp)
    if np.any(m < 1) or np.any(np.abs(m - np.round(m)) > 1e-9):
        raise InvalidSpecError(
            f"global batch ({global_batch}) must be a multiple of micro_batch x dp ({micro_batch} x {dp})"
        )
    return b, B, S, m


def _check_unit(cluster: Cluster, p: Precisions, precision: str) -> None:
    """Training in a precision needs its matrix units (no dequantising fallback as in serving)."""
    unit = cluster.perf.unit_precision(p.compute)
    if unit != p.compute:
        assert cluster.device.compute is not None
        raise InvalidSpecError(
            f"{precision} training needs {p.compute} matrix units; {cluster.device.id} has "
            f"{', '.join(cluster.device.compute.peak_dense)} (train in bf16 there)"
        )


def _micro_batch(stage_times: list[list[OpTime]], rc: Any, tp: int, tp_overlap: bool) -> list[Array]:
    """One micro-batch's forward + backward on the stage that paces the pipe (the slower of the
    first and the last): its total, compute, recompute, exposed TP / EP / CP communication, and
    the MoE layers' share on the busiest EP rank."""
    compute_classes = tuple(_BACKWARD_FLOPS)
    full, selective = rc == 2, rc == 1
    parts: Any = None
    for times in stage_times:
        fwd = _sum(times, compute_classes)
        bwd = _sum(times, compute_classes, scale=_BACKWARD_FLOPS)
        rec = np.where(full, fwd, np.where(selective, _sum(times, ("attention",)), 0.0))
        # forward and backward TP collectives; the recomputed forward repeats its own
        tp_c = 2 * _sum(times, tier="tp") * np.where(full, 1.5, 1.0)
        if tp_overlap and tp > 1:
            gemm = _sum(times, ("gemm",)) + _sum(times, ("gemm",), scale=_BACKWARD_FLOPS)
            tp_c = np.maximum(tp_c, gemm) + np.minimum(tp_c, gemm) / tp - gemm  # what outlasts the GEMMs
        ep_c = 2 * _sum(times, tier="ep")
        cp_raw = 2 * _sum(times, tier="cp")
        attn = (_sum(times, ("attention",)) + _sum(times, ("attention",), scale=_BACKWARD_FLOPS)) / 2
        cp_exposed = np.maximum(cp_raw - 2 * attn, 0.0)
        total = fwd + bwd + rec + tp_c + ep_c + cp_exposed
        moe = _sum(times, ("moe",)) + _sum(times, ("moe",), scale=_BACKWARD_FLOPS) + ep_c  # on the busiest EP rank
        here = np.broadcast_arrays(total, fwd, bwd, rec, tp_c, ep_c, cp_exposed, moe)
        parts = (
            here if parts is None else [np.where(here[0] > parts[0], x, y) for x, y in zip(here, parts, strict=True)]
        )
    assert parts is not None
    return list(parts)


def _memory(
    spec: ModelSpec,
    s: Sharding,
    p: Precisions,
    cluster: Cluster,
    b: Array,
    S: Array,
    z: Any,
    replicas: int,
    weights_local: float,
    rc: Any,
    v: Array,
    m: Array,
    attention_kernel: str | None,
    offloaded: bool = False,
    framework: str | None = None,
    first_stage_layers: int | None = None,
) -> tuple[Any, ...]:
    """Memory at the peak of the stage that holds the most (the first, or the last with the loss):
    weights, fp32 main gradients and optimizer state as ZeRO shards them over the replicas (none
    when offloaded to the host), activations; the total, what the caching allocator then reserves,
    the usable capacity, whether it fits and, where it does not, why (per scenario). `framework`
    (planner.framework_memory) adds what Megatron or torchtitan hold beyond the generic account."""
    params_local = weights_local / 2.0
    titan = framework == "torchtitan"
    pp = s.pp
    fsdp_pp = (z >= 3) & (pp > 1)  # FSDP2 under PP: stage gathered, gradients unsharded (fm)
    sharded = np.where(z >= 1, replicas, 1)
    on_device = 0.0 if offloaded else 1.0
    grad_bytes = on_device * params_local * 4.0 / np.where(z >= 2, replicas, 1)  # fp32 main gradients
    grad_bytes = np.where(fsdp_pp, on_device * params_local * 4.0, grad_bytes)
    opt_bytes = on_device * params_local * OPTIMIZER_BYTES_PER_PARAM / sharded
    # FSDP2 keeps only fp32 shards (the optimizer's master copy) and gathers bf16 for compute
    w_bytes = np.where((z >= 3) & titan, 0.0, weights_local / np.where(z >= 3, replicas, 1))
    w_bytes = w_bytes + np.where(fsdp_pp, params_local * 2.0, 0.0)
    gathered = np.where((z >= 3) & titan, params_local, 0.0)  # what FSDP2 gathers layer by layer
    act = _activation_peak(spec, s, p, b, S, rc, v, m, attention_kernel, framework, first_stage_layers, gathered)
    total = w_bytes + grad_bytes + opt_bytes + act
    cap = cluster.device.main_memory.capacity_bytes * (1 - RESERVE_FRACTION)
    fits = total <= cap
    shape = np.broadcast_shapes(*(np.shape(x) for x in (total, w_bytes, grad_bytes, opt_bytes, act, fits)))
    short = ~np.broadcast_to(fits, shape)
    why = np.full(shape, "fits", dtype=object)
    if short.any():  # each scenario's own footprint, formatted once per distinct one
        parts = [
            np.broadcast_to(np.asarray(x) / 1e9, shape)[short] for x in (total, w_bytes, grad_bytes, opt_bytes, act)
        ]
        why[short] = formatted(
            "needs {:.1f} GB per device (weights {:.1f}, gradients {:.1f}, optimizer {:.1f}, activations "
            f"{{:.1f}}) but {cluster.device.main_memory.tier} holds {cap / 1e9:.1f} GB usable: raise tp/pp/zero "
            "or recompute",
            *parts,
        )
    reason: Any = why.item() if not shape else why
    return w_bytes, grad_bytes, opt_bytes, act, total, reserved_bytes(total), cap, fits, reason


def _activation_peak(
    spec: ModelSpec,
    s: Sharding,
    p: Precisions,
    b: Array,
    S: Array,
    rc: Any,
    v: Array,
    m: Array,
    attention_kernel: str | None,
    framework: str | None,
    first_stage_layers: int | None,
    fsdp_params: Any,
) -> Any:
    """Activations and what lives with them at the step's peak: the stored layers of the in-flight
    micro-batches, then the larger of the loss (logits as the framework's loss holds them, FSDP's
    gathered last layer) and the first backward layer (its recomputed activations, FSDP's gathered
    layers and unsharded gradients). With PP the first stage (most micro-batches in flight) and the
    last (the loss) are both checked."""
    full, titan_sac = rc == 2, (rc == 1) & (framework == "torchtitan")
    unfused = attention_kernel == UNFUSED_ATTENTION
    none = activation_bytes_per_layer(spec, s, b, S, "none", p.act_bytes)
    per_layer = np.where(
        full,
        activation_bytes_per_layer(spec, s, b, S, "full", p.act_bytes),
        np.where(  # with FlashAttention selective = none: no scores are stored
            rc == 0,
            activation_bytes_per_layer(spec, s, b, S, "none", p.act_bytes, scores_stored=unfused),
            np.where(titan_sac, op_sac_bytes_per_layer(spec, s, b, S, p.act_bytes), none),
        ),
    )
    pp = s.pp
    # micro-batches whose activations the first stage holds: pp under 1F1B; interleaving over v
    # chunks holds pp (1 + (pp - 1) / (pp v)) (Korthikanti et al. 2022, section 4.2.3)
    in_flight = np.where(v > 1, pp * (1 + (pp - 1) / (pp * v)), float(pp)) if pp > 1 else np.ones_like(v)
    layers = first_stage_layers or -(-spec.layers // pp)  # by default the first stage holds the most
    fwd_fsdp, bwd_fsdp = fsdp_transient_bytes(fsdp_params * pp / spec.layers, pp)
    # one layer's full activations live while it is recomputed
    backward = np.where(full | titan_sac, none, 0.0) + bwd_fsdp
    logits = b * S / s.cp * spec.vocab_size / s.tp * loss_bytes_per_logit(framework) + fwd_fsdp
    first = per_layer * layers * np.minimum(in_flight, m)
    if first_stage_layers and pp > 1:  # a lighter first rank: the second, one micro-batch fewer, may hold more
        rest = -(-(spec.layers - first_stage_layers) // (pp - 1))
        first = np.maximum(first, per_layer * rest * np.minimum(in_flight - 1.0, m))
    if pp == 1:
        return first + np.maximum(logits, backward)
    # the last stage holds one micro-batch under 1F1B, and the loss
    return np.maximum(first + backward, per_layer * layers + np.maximum(logits, backward))


def model_flops_per_token(spec: ModelSpec, seq_len: Any) -> Array:
    """Megatron/PaLM model FLOPs per token: 6N (active matmul weights) + 3 x non-causal attention."""
    n = parameter_counts(spec).active_matmul
    return 6.0 * n + 3.0 * np.asarray(attention_flops_per_token(spec, seq_len), dtype=np.float64)


def estimate_training(
    model: str | ModelSpec,
    hardware: str,
    devices: int,
    *,
    tp: int = 1,
    pp: int = 1,
    dp: int | None = None,
    ep: int = 1,
    cp: int = 1,
    zero: Any = 1,
    micro_batch: Any = 1,
    global_batch: Any = 1024,
    seq_len: Any = 4096,
    recompute: Any = "selective",
    virtual_stages: Any = 1,
    sequence_parallel: bool | None = None,
    precision: str = "bf16",
    catalog: Catalog | str | None = None,
    attention_kernel: str | None = None,
    dp_overlap: bool = True,
    tp_overlap: bool = False,
    expert_imbalance: float | None = None,
    expert_loads: Any = None,
    expert_placement: Any = None,
    power_cap_w: float | None = None,
    offload: Any = None,
    offload_policy: str = "cxl-aware",
    offload_dpu: bool = False,
    cxl_cards: int | None = None,
    cxl_device: str | None = None,
    host_dram_bytes: float | None = None,
    framework: str | None = None,
    first_stage_layers: int | None = None,
) -> TrainingResult:
    """Estimate one training step. micro_batch, global_batch, seq_len, zero, recompute (names or 0/1/2)
    and virtual_stages may be numpy arrays (broadcast together): a solver evaluates many plans at once.
    attention_kernel: the family's default fused kernel unless named; "unfused" for frameworks that
    materialise the score matrix (Megatron-LM before FlashAttention). dp_overlap: gradients are
    reduced in buckets under the backward (PyTorch DDP/FSDP, Megatron-Core's overlap-grad-reduce);
    False reduces them after the last micro-batch (Megatron-LM's local DDP before 2023). tp_overlap:
    the TP all-gathers and reduce-scatters run in chunks under the GEMMs they feed (Megatron-core
    --tp-comm-overlap with Transformer Engine's userbuffers, torchtitan's async TP): with the
    collective and its GEMMs each split into tp chunks, max(comm, gemm) + min(comm, gemm) / tp
    (Wang et al., ASPLOS 2023, "Overlap communication with dependent computation via decomposition").
    MoE routing imbalance: `expert_imbalance`, or `expert_loads` with `expert_placement`, as in
    estimate_inference (planner.expert_loads). Power (planner.power): `avg_power_w` per device and
    `energy_j_per_token`; `power_cap_w` caps each device's board power.
    Offload (planner.offload, ZeRO-Offload / ZeRO-Infinity): `offload` none, cpu, cxl, nvme or a
    map {optimizer|master|gradients: gpu|cpu|cxl|nvme}; `offload_policy` places "cxl" (dram-only,
    interleave, cxl-aware); `offload_dpu` delays the parameter update one step; `cxl_cards`,
    `cxl_device` and `host_dram_bytes` override the node's catalogue host.
    Memory (planner.framework_memory): `framework` "megatron" or "torchtitan" counts the loss's
    logits, FSDP2's gathered layers and torchtitan's op-level selective AC as that framework holds
    them; `first_stage_layers` (Megatron's --decoder-first-pipeline-num-layers) sets the layers on
    the first pipeline rank; `memory_reserved_bytes` adds the caching allocator's fragmentation."""
    options = dict(locals())  # every argument, for the chunked sweep below
    cat = catalog if isinstance(catalog, Catalog) else load_catalog(catalog)
    if isinstance(offload, str) and offload == "auto":
        return _auto_offload({**options, "catalog": cat})
    knobs = {"micro_batch": micro_batch, "global_batch": global_batch, "seq_len": seq_len}
    if any(np.ndim(x) for x in (zero, recompute, virtual_stages)) and sweep_size(*knobs.values()) > CHUNK:
        raise InvalidSpecError("sweeps over zero/recompute/virtual_stages are limited to one chunk of scenarios")
    if sweep_size(*knobs.values()) > CHUNK:
        fixed = {k: v for k, v in options.items() if k not in knobs}
        return in_chunks(estimate_training, knobs, **{**fixed, "catalog": cat})
    spec = resolve_model(model, cat)
    check_framework(framework)
    if first_stage_layers is not None and not 0 < first_stage_layers <= spec.layers:
        raise InvalidSpecError(f"first_stage_layers ({first_stage_layers}) must be 1 to {spec.layers}")
    devices, tp, pp, cp, ep = (
        count(f"--{k}", v) for k, v in zip(("devices", "tp", "pp", "cp", "ep"), (devices, tp, pp, cp, ep), strict=True)
    )
    rc = recompute_codes(recompute)
    z = np.asarray(zero)
    if not np.all(np.isin(z, (0, 1, 2, 3))):
        raise InvalidSpecError(f"zero must be 0, 1, 2 or 3 (got {zero})")
    dp_ = _data_parallel(devices, tp, pp, cp, ep, None if dp is None else count("--dp", dp))
    v = whole("--virtual-stages", virtual_stages)
    if np.any(v < 1) or np.any(pp * v > spec.layers):
        raise InvalidSpecError(
            f"pp x virtual_stages ({pp} x {virtual_stages}) exceeds the model's layers ({spec.layers})"
        )
    sp = (tp > 1) if sequence_parallel is None else sequence_parallel
    # Megatron-core orders ranks tp-cp-ep-dp-pp: an EP group strides over tp x cp ranks
    cluster = resolve_cluster(hardware, devices, cat, power_cap_w)
    domains = -(-(ep * tp * cp) // cluster.domain_size) if ep > 1 else 1
    routing = Routing(expert_imbalance, expert_loads, expert_placement)
    hot = routing.ratio(spec.moe.experts if spec.moe is not None else None, ep)
    s = Sharding(
        tp=tp, ep=ep, cp=cp, pp=pp, sp=sp, ep_domains=domains, expert_imbalance=hot, busiest_ep_rank=not routing.given
    )
    check_sharding(spec, s)
    if pp == 1 and np.any(v > 1):
        raise InvalidSpecError(f"--virtual-stages ({virtual_stages}) needs pipeline parallelism (--pp > 1)")
    p = Precisions(precision, "bf16", "bf16")
    b, B, S, m = _batches(micro_batch, global_batch, seq_len, cp, dp_)
    _check_unit(cluster, p, precision)

    off = parse_offload(offload)
    st = _step(
        cluster,
        spec,
        s,
        p,
        b,
        S,
        m,
        v,
        rc,
        z,
        dp_ * cp,
        attention_kernel=attention_kernel,
        tp_overlap=tp_overlap,
        dp_overlap=dp_overlap,
        off=off,
        offload_policy=offload_policy,
        host=None if off is None else host_memory(cluster, cat, cxl_cards, cxl_device, host_dram_bytes),
        offload_dpu=offload_dpu,
    )
    stage_times, host_step, step = st.stage_times, st.host_step, st.step
    tokens = B * S
    tokens_per_s = tokens / step
    peak = cluster.perf.peak_flops(p.compute)
    mfu = model_flops_per_token(spec, S) * tokens_per_s / (devices * peak)
    executed_per_device = _executed_flops(stage_times, rc) * m  # first stage, one step
    hfu = executed_per_device / step / peak

    frame = (framework, first_stage_layers)  # whose conventions the memory follows (planner.framework_memory)
    w_bytes, grad_bytes, opt_bytes, act, total, reserved, cap, fits, reason = _memory(
        spec, s, p, cluster, b, S, z, dp_ * cp, st.weights_local, rc, v, m, attention_kernel, off is not None, *frame
    )
    if host_step is not None:
        fits, reason = _host_fits(fits, reason, host_step.fits, host_step.reason)

    sc = scalar_or_array
    return TrainingResult(
        model=spec.id,
        hardware=cluster.device.id,
        devices=devices,
        tp=tp,
        pp=pp,
        dp=dp_,
        ep=ep,
        cp=cp,
        zero=sc(z),
        virtual_stages=sc(v.astype(int)),
        sequence_parallel=sp,
        micro_batch=sc(b),
        global_batch=sc(B),
        seq_len=sc(S),
        recompute=recompute if isinstance(recompute, str) else sc(np.asarray(RECOMPUTE)[rc]),
        precision=precision,
        micro_batches=sc(m),
        step_time_s=sc(step),
        tokens_per_s=sc(tokens_per_s),
        mfu=sc(mfu),
        hfu=sc(hfu),
        memory_per_device_bytes=sc(total),
        fits=sc(fits),
        fit_reason=reason_per_scenario(fits, reason),
        attention_kernel=cluster.perf.attention_kernel(attention_kernel).name,
        compute_s=sc(m * (st.fwd + st.bwd)),
        recompute_s=sc(m * st.rec),
        tp_comm_s=sc(m * st.tp_c),
        ep_comm_s=sc(m * st.ep_c),
        cp_comm_exposed_s=sc(m * st.cp_exposed),
        pp_bubble_s=sc(st.bubble),
        pp_comm_s=sc(st.pp_comm),
        dp_comm_exposed_s=sc(st.dp_exposed + st.ag_exposed),
        optimizer_s=sc(st.optimizer_s),
        weights_bytes=sc(w_bytes),
        gradients_bytes=sc(grad_bytes),
        optimizer_bytes=sc(opt_bytes),
        activations_bytes=sc(act),
        forward_per_microbatch_s=sc(st.fwd + (st.tp_c + st.ep_c + st.cp_exposed) / 2),
        backward_per_microbatch_s=sc(st.bwd + st.rec + (st.tp_c + st.ep_c + st.cp_exposed) / 2),
        capacity_bytes=cap,
        memory_reserved_bytes=sc(reserved),
        framework=framework,
        moe_s=sc(m * st.moe) if spec.moe is not None else None,
        expert_load_max_over_mean=hot if spec.moe is not None else None,
        power_cap_w=power_cap_w,
        **_offload_fields(off, offload_policy, host_step),
        tier_placement_bytes=_tier_placement(cluster, w_bytes, grad_bytes, opt_bytes, act, host_step=host_step),
        device_power=device_power(cluster.device, cluster.perf.clock_scale, power_cap_w),
        op_times=(("forward", stage_times[0]),),
    )


@dataclass(frozen=True)
class _Step:
    """One training step's time and its parts (per step unless named per micro-batch)."""

    stage_times: list[list[OpTime]]  # the first and the last pipeline stage's forward ops
    fwd: Any  # per micro-batch: forward and backward compute, recompute, exposed TP/EP/CP comm
    bwd: Any
    rec: Any
    tp_c: Any
    ep_c: Any
    cp_exposed: Any
    moe: Any
    bubble: Any
    pp_comm: Any
    dp_exposed: Any  # the gradient reduction and the ZeRO-3 gathers left exposed
    ag_exposed: Any
    optimizer_s: Any
    weights_local: Any  # bf16 weight bytes on one device
    host_step: Any  # planner.offload's step, or None
    step: Any


def _step(
    cluster: Cluster,
    spec: ModelSpec,
    s: Sharding,
    p: Precisions,
    b: Any,
    S: Any,
    m: Any,
    v: Any,
    rc: Any,
    z: Any,
    replicas: Any,
    *,
    attention_kernel: str | None,
    tp_overlap: Any,
    dp_overlap: Any,
    off: Any,
    offload_policy: str,
    host: Any,
    offload_dpu: bool,
) -> _Step:
    """The step: m micro-batches through the slower of the first and last stage, the pipeline's
    bubble and hand-offs, the exposed data-parallel traffic, and the optimizer (or its offload).
    Gradients are summed, and ZeRO / the distributed optimizer shards, over `replicas`: the
    data-parallel and context-parallel ranks together, which hold the same weights (Megatron-core's
    data-parallel group "with context parallel"; torchtitan folds CP into the FSDP mesh)."""
    pp = s.pp
    stage_times = []
    for stage in sorted({0, pp - 1}):
        ops = phase_ops(spec, s, p, b, S, "forward", stage=stage, attention_kernel=attention_kernel)
        stage_times.append(pass_times(cluster, ops, p.compute))
    t_mb, fwd, bwd, rec, tp_c, ep_c, cp_exposed, moe = _micro_batch(stage_times, rc, s.tp, tp_overlap)

    bubble = (pp - 1) / v * t_mb
    p2p = _p2p_s(cluster, spec, s, b, S, p)
    pp_comm = 2 * (pp - 1) * v * p2p if pp > 1 else np.zeros(1)

    weights_local = weight_bytes_per_device(spec, s, Precisions("bf16"))
    params_local = weights_local / 2.0
    dp_exposed, ag_exposed = _dp_comm(cluster, s, replicas, z, params_local, bwd, fwd, m, dp_overlap)
    sharded = np.where(z >= 1, replicas, 1)
    optimizer_s = params_local / sharded * OPTIMIZER_TRAFFIC_BYTES_PER_PARAM / cluster.perf.memory_bandwidth_bytes_per_s
    host_step = None
    if off is not None:
        host_step = offload_step(off, offload_policy, host, params_local / sharded, m, fwd, bwd, offload_dpu)
        optimizer_s = np.zeros_like(optimizer_s)
    offload_s = host_step.offload_s if host_step is not None else 0.0
    step = m * t_mb + bubble + pp_comm + dp_exposed + ag_exposed + optimizer_s + offload_s
    return _Step(
        stage_times,
        fwd,
        bwd,
        rec,
        tp_c,
        ep_c,
        cp_exposed,
        moe,
        bubble,
        pp_comm,
        dp_exposed,
        ag_exposed,
        optimizer_s,
        weights_local,
        host_step,
        step,
    )


def _host_fits(fits: Any, reason: Any, host_fits: Any, host_reason: Any) -> tuple[Any, Any]:
    """Fits on the device and in every host tier; the device's reason first, then the host's."""
    both = np.logical_and(fits, host_fits)
    if np.ndim(both) == 0 and np.ndim(reason) == 0 and np.ndim(host_reason) == 0:
        return bool(both), reason if not fits else host_reason
    shape = np.shape(both)
    device_why = np.broadcast_to(np.asarray(reason_per_scenario(fits, reason), dtype=object), shape)
    host_why = np.broadcast_to(np.asarray(host_reason, dtype=object), shape)
    return both, np.where(np.broadcast_to(fits, shape), host_why, device_why)


# planner.offload's host tiers by the names planner.memory.device_tiers gives them
_HOST_TIER_NAMES = {"dram": "host-dram", "cxl": "cxl-memory", "nvme": "ssd"}


def _tier_placement(cluster: Cluster, *device: Any, host_step: Any) -> dict[str, dict[str, float]]:
    """Where the step's tensors live: weights, gradients, optimizer state and activations on the
    device (what is left there), the offloaded ones in the host tiers (a sweep's mean)."""
    names = ("weights", "gradients", "optimizer", "activations")
    first: str = cluster.device.main_memory.tier
    out = {first: {n: float(np.mean(b)) for n, b in zip(names, device, strict=True)}}
    if host_step is not None:
        for tier, held in host_step.layout.items():
            out[_HOST_TIER_NAMES[tier]] = {t: float(np.mean(b)) for t, b in held.items()}
    return {tier: {n: b for n, b in held.items() if b > 0} for tier, held in out.items() if any(held.values())}


def _auto_offload(options: dict[str, Any]) -> TrainingResult:
    """offload="auto": the fastest of no offload and each host tier the node has (cpu, cxl, nvme)
    that fits; a choice among few discrete placements, each costed whole by the engine."""
    if any(np.ndim(options[k]) for k in ("micro_batch", "global_batch", "seq_len", "zero", "recompute")):
        raise InvalidSpecError("offload='auto' takes one scenario: sweep offload over none, cpu, cxl and nvme instead")
    tried = []
    for choice in ("none", "cpu", "cxl", "nvme"):
        try:
            tried.append(estimate_training(**{**options, "offload": choice}))
        except InvalidSpecError:  # the node has no such tier (no CXL cards, no host CPU)
            continue
    fitting = [r for r in tried if r.fits]
    return min(fitting, key=lambda r: float(r.step_time_s)) if fitting else tried[0]


def _offload_fields(off: Offload | None, policy: str, step: Any) -> dict[str, Any]:
    """The result's offload fields (their defaults when nothing is offloaded)."""
    if off is None or step is None:
        return {}
    sc = scalar_or_array
    return {
        "offload": {t: getattr(off, t) for t in ("optimizer", "master", "gradients")},
        "offload_policy": policy if off.policy_applies else None,
        "offload_s": sc(step.offload_s),
        "cpu_optimizer_s": sc(step.cpu_optimizer_s),
        "host_bytes_per_tier": {k: sc(v) for k, v in step.host_bytes_per_tier.items()},
    }


def recompute_codes(recompute: Any) -> Any:
    """'none'/'selective'/'full' (or an array of them) as 0/1/2."""
    values = np.asarray(recompute)
    if values.dtype.kind in "iu":
        codes = values
    else:
        lookup = {name: i for i, name in enumerate(RECOMPUTE)}
        bad = [str(x) for x in np.ravel(values) if str(x) not in lookup]
        if bad:
            raise InvalidSpecError(f"unknown recompute '{bad[0]}' (allowed: {', '.join(RECOMPUTE)})")
        codes = (
            np.vectorize(lookup.__getitem__, otypes=[int])(values) if values.ndim else np.asarray(lookup[str(values)])
        )
    if np.any((codes < 0) | (codes > 2)):
        raise InvalidSpecError(f"unknown recompute code (allowed: 0-2 for {', '.join(RECOMPUTE)})")
    return codes


def _executed_flops(stage_times: list[list[OpTime]], rc: Any) -> Array:
    """FLOPs one device executes per micro-batch on the first stage (forward, backward, recompute)."""
    total: Any = 0.0
    for t in stage_times[0]:
        if t.op.op_class == "comm":
            continue
        f = np.asarray(t.op.flops, dtype=np.float64) * t.op.count
        extra = np.where(rc == 2, 1.0, np.where((rc == 1) & (t.op.op_class == "attention"), 1.0, 0.0))
        total = total + f * (1.0 + _BACKWARD_FLOPS.get(t.op.op_class, 2.0) + extra)
    return total


def _p2p_s(cluster: Cluster, spec: ModelSpec, s: Sharding, b: Array, S: Array, p: Precisions) -> Array:
    if s.pp == 1:
        return np.zeros(1)
    size = b * S / s.cp * spec.hidden_size * p.act_bytes / (s.tp if s.sp else 1)
    tier = cluster.tier_spanning(s.tp * s.cp * s.pp)
    return size / achieved_bandwidth(tier) + tier.link.latency_s


def _dp_comm(
    cluster: Cluster,
    s: Sharding,
    dp: int,
    zero: Any,
    params_local: float,
    bwd: Array,
    fwd: Array,
    micro_batches: Array,
    overlap: bool = True,
) -> tuple[Array, Array]:
    """Exposed gradient reduction and parameter gathering over the `dp` ranks that hold the same
    weights (data x context parallel; see the module docstring); zero may be an array.
    overlap=False: the gradients are reduced only after the last micro-batch's backward has finished."""
    if dp == 1:
        return np.zeros(1), np.zeros(1)
    stride = s.tp * s.pp  # dp counts the context-parallel ranks too (they hold the same weights)
    grads = params_local * bytes_per_element("fp32")
    params = params_local * bytes_per_element("bf16")
    all_reduce = collective_time(cluster, "all-reduce", grads, dp, stride=stride).time_s
    scatter = collective_time(cluster, "reduce-scatter", grads, dp, stride=stride).time_s
    gather_t = collective_time(cluster, "all-gather", params, dp, stride=stride).time_s
    reduce = np.where(zero == 0, all_reduce, scatter)
    gather = np.where(zero == 0, 0.0, gather_t)
    # the last bucket always waits
    exposed_reduce = np.maximum(reduce - bwd, reduce * 0.05) if overlap else reduce * np.ones_like(bwd)
    exposed_gather = np.maximum(gather - fwd, 0.0)
    # ZeRO-3 gathers the parameters again for forward and backward of every micro-batch
    per_microbatch = micro_batches * 2 * np.maximum(gather - fwd, gather * 0.05)
    return exposed_reduce, exposed_gather + np.where(zero == 3, per_microbatch, 0.0)
