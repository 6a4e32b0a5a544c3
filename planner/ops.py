"""Operator graph of a decoder-only transformer, per device, for one phase and one sharding.

Every op carries its FLOPs and the bytes it moves (weights, activations, KV reads and writes) at
separate precisions, for ONE device of the tensor/expert-parallel group and ONE pipeline stage.
Token counts and context lengths may be numpy arrays (a sweep evaluates many at once).

Phases: `prefill` (T tokens attend causally to their prompt), `decode` (one new token per sequence
attends to `context` cached tokens), `forward` (training forward, logits for every token).
The backward pass is derived from the forward ops by the training estimate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from hardware_db.errors import InvalidSpecError
from planner.cluster import UNFUSED_ATTENTION, Cluster
from planner.collectives import ENGINE_ALLREDUCE_MAX_BYTES
from planner.roofline import attention_tile_efficiency
from workloads.derived import (
    bytes_per_element,
    kv_elements_per_token_per_layer,
    layer_kinds,
)
from workloads.schema import ModelSpec, Moe

Array = npt.NDArray[np.float64]
Phase = Literal["prefill", "decode", "forward", "mixed"]
OpClass = Literal["gemm", "attention", "moe", "norm", "elementwise", "embedding", "lm_head", "comm"]

# Element-wise FLOPs per element: RMSNorm ~ square, sum, rsqrt-scale, multiply (4); SiLU gating ~ 5.
_NORM_FLOPS, _ACT_FLOPS = 4.0, 5.0


@dataclass(frozen=True)
class Sharding:
    tp: int = 1
    ep: int = 1
    cp: int = 1
    pp: int = 1
    sp: bool = False  # sequence parallelism inside TP: norms and dropout on 1/tp of the tokens
    redundant_experts: int = 0  # extra expert slots (EPLB replicas of hot experts) across the EP group
    ep_domains: int = 1  # scale-up domains the EP group spans (per-domain deduplication of dispatch)
    # the busiest EP rank's routed tokens over the mean (planner.expert_loads): a MoE layer ends when
    # that rank's grouped GEMMs and its share of the all-to-alls do
    expert_imbalance: float = 1.0
    # with uniform routing (no imbalance given) a pass still waits for the busiest EP rank
    # (routed_expert_ops); False times one typical rank, as a single-device kernel benchmark of an
    # EP shard does, or takes the given imbalance as the whole story
    busiest_ep_rank: bool = True

    def __post_init__(self) -> None:
        for name in ("tp", "ep", "cp", "pp"):
            if getattr(self, name) < 1:
                raise InvalidSpecError(f"{name} must be >= 1 (got {getattr(self, name)})")

    @property
    def ep_within_tp(self) -> bool:
        """EP smaller than TP and dividing it: the TP group splits into ep expert groups of
        tp / ep ranks each (TensorRT-LLM's moe_ep_size x moe_tp_size = tp)."""
        return 1 < self.ep < self.tp and self.tp % self.ep == 0

    @property
    def expert_tp(self) -> int:
        """Ranks one routed expert is split over: the whole TP group without EP, tp / ep with EP
        inside TP, and one rank when EP spans the TP group (experts live whole on a device)."""
        if self.ep == 1:
            return self.tp
        return self.tp // self.ep if self.ep_within_tp else 1


@dataclass(frozen=True)
class Precisions:
    weight: str = "bf16"
    activation: str = "bf16"
    kv: str = "bf16"
    # the matrix unit the math runs on when the device lacks the weights' own (DevicePerf.unit_precision)
    unit: str | None = None
    # derived once (every op of every estimate reads them)
    compute: str = field(init=False)  # math precision: 8/4-bit float weights run W8A8-style; int4 is weight-only
    weight_bytes: float = field(init=False)
    act_bytes: float = field(init=False)
    kv_bytes: float = field(init=False)
    compute_bytes: float = field(init=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        own = self.weight if self.weight in ("fp8", "fp4", "int8") else self.activation
        set_(self, "compute", self.unit or own)
        set_(self, "weight_bytes", bytes_per_element(self.weight))
        set_(self, "act_bytes", bytes_per_element(self.activation))
        set_(self, "kv_bytes", bytes_per_element(self.kv))
        set_(self, "compute_bytes", bytes_per_element(self.compute))


@dataclass(frozen=True, init=False)
class Op:
    """One kernel kind, run `count` times per pass on one device (e.g. once per layer of the stage).

    Built by a plain dict update (see __init__): a frozen dataclass's own __init__ sets its 27
    fields one object.__setattr__ at a time, a third of the time it takes to build a pass."""

    name: str
    op_class: OpClass
    count: float
    flops: Array | float
    weight_bytes: Array | float = 0.0
    activation_bytes: Array | float = 0.0
    kv_bytes: Array | float = 0.0
    m: Array | float | None = None  # GEMM output rows (tokens), columns and depth, for the shape factor
    n: Array | float | None = None
    k: Array | float | None = None
    groups: Array | float | None = None  # a grouped GEMM: this many (m x n x k) problems in one kernel
    routed_rows: bool = False  # its groups' rows are routed tokens (Poisson about m), not m each
    exp_ops: Array | float = 0.0  # softmax exponentials (attention)
    comm: str | None = None  # collective name for comm ops
    comm_group: int = 1  # devices in that collective
    comm_tier: str = "tp"  # which parallel dimension it belongs to (tp, ep, cp, pp, dp)
    precision: str | None = None  # math precision when it differs from the pass's (attention runs 16-bit)
    kernels: Any = 1.0  # kernel launches per instance (a quantised GEMM adds its input cast)
    kernel: str | None = None  # attention kernel (None: the family's default)
    cast_bytes: Array | float = 0.0  # traffic of a cast kernel that runs before this op (not overlapped)
    # the part of activation_bytes a GEMM writes in its epilogue, after its k loop (not overlapped)
    output_bytes: Array | float = 0.0
    engine_max_bytes: float = 0.0  # comm: buffers up to this size run on an inference engine's own kernel
    internode_share: float = 1.0  # all-to-all: cross-domain traffic left after per-domain deduplication
    tile_efficiency: Array | float = 1.0  # useful share of the tiles a kernel computes (attention)
    # backward pass / forward pass, when this op's ratio differs from its class's
    backward_flops_factor: float | None = None
    backward_bytes_factor: float | None = None
    extra: dict[str, float] = field(default_factory=dict)

    def __init__(self, name: str, op_class: OpClass, count: float, flops: Array | float, **fields: Any) -> None:
        unknown = fields.keys() - _OP_DEFAULTS.keys()
        if unknown:
            raise TypeError(f"Op has no field {', '.join(sorted(unknown))}")
        d = self.__dict__
        d.update(_OP_DEFAULTS)
        d.update(name=name, op_class=op_class, count=count, flops=flops, extra={})
        d.update(fields)

    @property
    def bytes(self) -> Array | float:
        return self.weight_bytes + self.activation_bytes + self.kv_bytes + self.cast_bytes


# every optional field's default (extra's factory runs per op)
_OP_DEFAULTS: dict[str, Any] = {
    f.name: f.default for f in dataclass_fields(Op) if f.name not in ("name", "op_class", "count", "flops", "extra")
} | {"extra": None}


def changed(op: Op, **changes: Any) -> Op:
    """dataclasses.replace(op, **changes) at a tenth of its cost (Op has no __post_init__ to
    re-run, so a copy of its fields with the changes is the same object replace would build);
    every pass rebuilds a few ops this way."""
    unknown = changes.keys() - op.__dict__.keys()
    if unknown:
        raise TypeError(f"Op has no field {', '.join(sorted(unknown))}")
    new = object.__new__(Op)
    new.__dict__.update(op.__dict__)
    new.__dict__.update(changes)
    return new


def on_units(p: Precisions, cluster: Cluster) -> Precisions:
    """The precisions with the math on the matrix unit the device has: 8-bit weights on a part
    without 8-bit float units are dequantised to 16 bits in the GEMM (vLLM's Marlin W8A16 / W4A16
    kernels), fp4 on Hopper runs on its fp8 units. `matmul_precision` in the result says which."""
    unit = cluster.perf.unit_precision(p.compute)
    return p if unit == p.compute else Precisions(p.weight, p.activation, p.kv, unit)


def expected_max_z(n: int) -> float:
    """E[max] of n independent standard normals (Blom's approximation, Phi^-1((n - 0.375) / (n + 0.25));
    0.59 / 1.43 / 2.34 for 2 / 8 / 64 against the exact 0.56 / 1.42 / 2.34): 0 for one."""
    from statistics import NormalDist

    return NormalDist().inv_cdf((n - 0.375) / (n + 0.25)) if n > 1 else 0.0


def busiest_rank(mean: Any, variance: Any, ranks: int, most: Any) -> Any:
    """The expected largest of `ranks` counts with this mean and variance (normal approximation),
    at most `most`: with few tokens, uniform routing still sends one EP rank more than its share."""
    return np.minimum(mean + expected_max_z(ranks) * np.sqrt(variance), most)


def expert_touch_share(moe: Moe | None, s: Sharding, tokens: Any) -> Any:
    """Expected share of a device's expert slots that receive at least one of a pass's routed
    tokens (the weights of the rest are not read): the EP group's tokens each pick top_k of the
    slots (a replicated expert's tokens split over its slots)."""
    if moe is None:
        return 1.0
    inside = s.ep_within_tp
    t_moe = tokens / s.tp if s.ep > 1 and s.tp > 1 and not inside else tokens
    all_tokens = t_moe if inside else t_moe * s.ep
    return 1.0 - (1.0 - moe.top_k / (moe.experts + s.redundant_experts)) ** all_tokens


def _gemm(
    name: str,
    tokens: Array,
    k: float,
    n: float,
    p: Precisions,
    count: float,
    op_class: OpClass = "gemm",
    weights: float | None = None,
) -> Op:
    """tokens x k by k x n: FLOPs 2*t*k*n; reads the weight once, the input and writes the output."""
    w = k * n * p.weight_bytes if weights is None else weights
    out = tokens * (n * p.act_bytes)  # scalars first: one array multiply in a sweep
    act = tokens * (k * p.act_bytes) + out
    kernels = 1.0
    cast: Array | float = 0.0
    compute_bytes = p.compute_bytes
    if compute_bytes < p.act_bytes:
        # 8/4-bit math on 16-bit activations: a separate kernel reads the input and writes it
        # quantised before the GEMM can start, so its traffic adds to the GEMM's time
        cast = tokens * (k * (p.act_bytes + compute_bytes))
        kernels = 2.0
    return Op(
        name,
        op_class,
        count,
        flops=tokens * (2.0 * k * n),
        weight_bytes=w,
        activation_bytes=act,
        m=tokens,
        n=n,
        k=k,
        kernels=kernels,
        cast_bytes=cast,
        output_bytes=out,
    )


def _elementwise(
    name: str,
    tokens: Array,
    width: float,
    reads: float,
    flops_per: float,
    p: Precisions,
    count: float,
    op_class: OpClass = "elementwise",
) -> Op:
    return Op(
        name,
        op_class,
        count,
        flops=tokens * (width * flops_per),
        activation_bytes=tokens * (width * (reads + 1.0) * p.act_bytes),
    )


def _comm(name: str, collective: str, bytes_: Array, group: int, count: float, tier: str) -> Op:
    return Op(
        name, "comm", count, flops=0.0, activation_bytes=bytes_, comm=collective, comm_group=group, comm_tier=tier
    )


def divisible(what: str, value: int, by: int, by_name: str) -> None:
    if by > 1 and value % by:
        raise InvalidSpecError(f"{what} ({value}) is not divisible by {by_name} ({by})")


def check_sharding(spec: ModelSpec, s: Sharding) -> None:
    """Divisibility rules every framework enforces; the message names the constraint."""
    divisible("attention heads", spec.attention.heads, s.tp, "tp")
    if s.pp > spec.layers:
        raise InvalidSpecError(f"pp ({s.pp}) exceeds the model's layers ({spec.layers})")
    if spec.moe is not None:
        what = "routed experts" if not s.redundant_experts else "expert slots (experts + redundant)"
        divisible(what, spec.moe.experts + s.redundant_experts, s.ep, "ep")
    elif s.ep > 1 or s.redundant_experts:
        raise InvalidSpecError(f"ep={s.ep} needs a mixture-of-experts model ({spec.id} is dense)")


def stage_layers(spec: ModelSpec, pp: int, stage: int) -> tuple[int, int]:
    """(dense, MoE) decoder layers on pipeline stage `stage`: layers split as evenly as possible, the
    first stages taking one more when they do not divide (Llama 3 405B: 126 layers over 16 stages)."""
    base, extra = divmod(spec.layers, pp)
    start = stage * base + min(stage, extra)
    end = start + base + (1 if stage < extra else 0)
    leading_dense = spec.moe.dense_layers if spec.moe is not None else spec.layers
    dense = max(0, min(end, leading_dense) - start)
    return dense, end - start - dense


def layer_ops(
    spec: ModelSpec,
    s: Sharding,
    p: Precisions,
    tokens: object,
    context: object,
    phase: Phase,
    sequences: object = 1.0,
    stage: int = 0,
    prefill_tokens: object = 0.0,
    prompt_len: object = 1.0,
    attention_kernel: str | None = None,
) -> list[Op]:
    """Ops of the stage's decoder layers on one device.

    tokens: tokens processed on this device's TP group (B x L for prefill, B for decode);
    context: keys each query attends (decode: the cache length; prefill/forward: the prompt length,
    causal masking halves it); sequences: how many sequences those tokens belong to.
    mixed: a continuous-batching iteration, `tokens` decode tokens plus `prefill_tokens` tokens of
    prompts of `prompt_len` (chunked prefill): the GEMMs see both, read their weights once.
    attention_kernel: the fused kernel's name, or "unfused" (scores materialised in memory).
    """
    check_sharding(spec, s)
    a, h = spec.attention, spec.hidden_size
    t_own = np.asarray(tokens, dtype=np.float64) / s.cp  # context parallelism splits the sequence
    t = t_own + np.asarray(prefill_tokens, dtype=np.float64) if phase == "mixed" else t_own
    ctx = np.asarray(context, dtype=np.float64)
    seqs = np.asarray(sequences, dtype=np.float64)
    n_dense, n_moe = stage_layers(spec, s.pp, stage)
    layers = float(n_dense + n_moe)
    heads = a.heads / s.tp
    kv_heads = max(a.kv_heads / s.tp, 1.0)  # fewer KV heads than ranks: replicated
    norm_tokens = t / s.tp if s.sp else t
    ops: list[Op] = [_elementwise("attn_norm", norm_tokens, h, 1.0, _NORM_FLOPS, p, layers, "norm")]

    if a.mla is not None:
        ops += _mla_projections(spec, s, p, t, layers, "decode" if phase == "mixed" else phase)
        qk_dim, v_dim = a.mla.qk_nope_head_dim + a.mla.qk_rope_head_dim, a.mla.v_head_dim
    else:
        q_dim, kv_dim = heads * a.head_dim, kv_heads * a.head_dim
        ops.append(_gemm("qkv_proj", t, h, q_dim + 2 * kv_dim, p, layers))
        qk_dim = v_dim = a.head_dim
    rope_width = heads * qk_dim + (kv_heads * qk_dim if a.mla is None else 0)
    if spec.position == "rope":  # rotate q and k: read, a few FLOPs per element, write
        ops.append(_elementwise("rope", t, rope_width, 1.0, 3.0, p, layers))
    dims = (heads, kv_heads, qk_dim, v_dim, layers)
    if phase == "mixed":
        # a decode-only iteration launches no prefill attention kernel, a prefill-only one no decode kernel
        ops.append(
            _attention_op(spec, s, p, t_own, ctx, seqs, dims, "decode", attention_kernel, launches=_launched(t_own))
        )
        q = np.asarray(prefill_tokens, dtype=np.float64)
        prompt = np.asarray(prompt_len, dtype=np.float64)
        ops.append(
            _attention_op(
                spec, s, p, q, prompt, q / prompt, dims, "prefill", attention_kernel, "attention_prefill", _launched(q)
            )
        )
    else:
        ops.append(_attention_op(spec, s, p, t, ctx, seqs, dims, phase, attention_kernel))
    if s.cp > 1:  # ring attention: every rank sees every other rank's K and V chunk once per pass
        kv_chunk = (
            t * kv_elements_per_token_per_layer(spec) * p.act_bytes * (kv_heads / a.kv_heads if a.mla is None else 1)
        )
        ops.append(_comm("cp_kv_exchange", "all-gather", kv_chunk * s.cp, s.cp, layers, "cp"))
    ops.append(_gemm("o_proj", t, heads * v_dim, h, p, layers))
    ops += _tp_comm(spec, s, p, t, layers, "attn")
    # the two residual additions of the block: read two streams, write one
    ops.append(_elementwise("residual_add", norm_tokens, h, 2.0, 1.0, p, 2 * layers))
    ops.append(_elementwise("ffn_norm", norm_tokens, h, 1.0, _NORM_FLOPS, p, layers, "norm"))
    ops += _ffn_ops(spec, s, p, t, float(n_dense), float(n_moe))
    return ops


def _launched(tokens: Array) -> Any:
    """Kernel launches of an op that runs only when it has tokens (1 or 0, per scenario)."""
    if tokens.ndim == 0:
        return 1.0 if float(tokens) > 0 else 0.0
    return (tokens > 0).astype(np.float64)


def _mla_projections(spec: ModelSpec, s: Sharding, p: Precisions, t: Array, layers: float, phase: Phase) -> list[Op]:
    a, h = spec.attention, spec.hidden_size
    m = a.mla
    assert m is not None
    heads = a.heads / s.tp
    qk = m.qk_nope_head_dim + m.qk_rope_head_dim
    ops = []
    if m.q_lora_rank is None:
        ops.append(_gemm("q_proj", t, h, heads * qk, p, layers))
    else:
        ops.append(_gemm("q_a_proj", t, h, m.q_lora_rank, p, layers))
        ops.append(_gemm("q_b_proj", t, m.q_lora_rank, heads * qk, p, layers))
    ops.append(_gemm("kv_a_proj", t, h, m.kv_lora_rank + m.qk_rope_head_dim, p, layers))
    if phase == "decode":
        # Absorbed form (DeepSeek-V2 §2.1.2): W_UK folds into the query and W_UV into the output,
        # so attention runs on the cached latent; these two per-head GEMMs replace the K/V expansion.
        ops.append(
            _gemm(
                "q_absorb_uk",
                t,
                m.qk_nope_head_dim,
                heads * m.kv_lora_rank,
                p,
                layers,
                weights=heads * m.qk_nope_head_dim * m.kv_lora_rank * p.weight_bytes,
            )
        )
        # per head: (nope x kv_lora) and (kv_lora x v); as GEMMs, k is the per-head input width
        ops.append(
            _gemm(
                "o_absorb_uv",
                t,
                m.kv_lora_rank,
                heads * m.v_head_dim,
                p,
                layers,
                weights=heads * m.kv_lora_rank * m.v_head_dim * p.weight_bytes,
            )
        )
    else:
        ops.append(_gemm("kv_b_proj", t, m.kv_lora_rank, heads * (m.qk_nope_head_dim + m.v_head_dim), p, layers))
    return ops


def _attention_op(
    spec: ModelSpec,
    s: Sharding,
    p: Precisions,
    t: Array,
    ctx: Array,
    seqs: Array,
    dims: tuple[float, float, float, float, float],
    phase: Phase,
    kernel: str | None = None,
    name: str = "attention",
    launches: Any = 1.0,
) -> Op:
    """FlashAttention-style: scores never reach memory. Prefill reads Q, K, V and writes O once and
    appends K, V to the cache; decode reads each sequence's cached keys and values.
    kernel "unfused" (pre-FlashAttention frameworks): batched GEMMs write the full score matrix,
    a softmax kernel reads and rewrites it (training adds dropout and its 1-byte mask), and the
    second GEMM reads it back."""
    heads, kv_heads, qk_dim, v_dim, layers = dims
    a = spec.attention
    kinds = layer_kinds(spec)
    sliding_share = kinds.count("sliding") / len(kinds)
    window = float(a.sliding_window or 0)
    kv_elems = kv_elements_per_token_per_layer(spec)
    kv_per_token_device = kv_elems if a.mla is not None else kv_elems / a.kv_heads * kv_heads
    if phase == "decode":
        keys = (1 - sliding_share) * ctx + (sliding_share * np.minimum(ctx, window) if sliding_share else 0.0)
        if a.mla is not None:  # absorbed: scores over the latent (kv_lora + rope), values are the latent
            score_dim = a.mla.kv_lora_rank + a.mla.qk_rope_head_dim
            flops = t * keys * (2.0 * heads * (score_dim + a.mla.kv_lora_rank))
        else:
            flops = t * keys * (2.0 * heads * (qk_dim + v_dim))
        kv_read = seqs * keys * (kv_per_token_device * p.kv_bytes / s.cp)
        act = t * (heads * (qk_dim + v_dim) * p.act_bytes)
        return Op(
            name,
            "attention",
            layers,
            flops=flops,
            kernels=launches,
            kv_bytes=kv_read + t * (kv_per_token_device * p.kv_bytes),
            activation_bytes=act,
            exp_ops=t * keys * heads,
            precision=p.activation,
            kernel=kernel,
        )
    # prefill / forward: causal over a prompt of `ctx` tokens; each query sees (ctx + 1) / 2 keys on average
    mean_keys = (ctx + 1.0) / 2.0
    if sliding_share:
        mean_keys = (1 - sliding_share) * mean_keys + sliding_share * np.minimum(mean_keys, window)
    flops = t * mean_keys * (2.0 * heads * (qk_dim + v_dim))
    act = t * ((heads * qk_dim + kv_heads * (qk_dim + v_dim) + heads * v_dim) * p.act_bytes)
    kv_write = t * (kv_per_token_device * p.kv_bytes) if phase == "prefill" else 0.0
    unfused = kernel == UNFUSED_ATTENTION
    tiles = attention_tile_efficiency(ctx, causal=True, materialised=unfused)
    if sliding_share:  # windowed layers run about a window's worth of tiles per query tile
        windowed = attention_tile_efficiency(np.minimum(ctx, window), causal=True, materialised=unfused)
        full_share = (1 - sliding_share) * (ctx + 1.0) / 2.0 / mean_keys
        tiles = 1.0 / (full_share / tiles + (1.0 - full_share) / windowed)
    backward_flops: float | None = None
    backward_bytes: float | None = None
    if unfused:  # the whole (masked) score matrix is written and read back; training adds dropout
        forward_per_score, backward_per_score = unfused_bytes_per_score(p.act_bytes, dropout=phase == "forward")
        act = act + t * ctx * heads * forward_per_score
        backward_flops, backward_bytes = UNFUSED_BACKWARD_FLOPS, backward_per_score / forward_per_score
    return Op(
        name,
        "attention",
        layers,
        flops=flops,
        kernels=launches,
        activation_bytes=act,
        kv_bytes=kv_write,
        # unfused: the exponentials run in a memory-bound softmax kernel, costed by its bytes
        exp_ops=0.0 if unfused else t * mean_keys * heads,
        precision=p.activation,  # FlashAttention runs in 16 bits even when the GEMMs are fp8
        kernel=kernel,
        tile_efficiency=tiles,
        backward_flops_factor=backward_flops,
        backward_bytes_factor=backward_bytes,
    )


# Unfused attention's backward: four batched GEMMs (dP, dV, dQ, dK; S is kept, not recomputed)
# against the forward's two.
UNFUSED_BACKWARD_FLOPS = 2.0


def unfused_bytes_per_score(act_bytes: float, dropout: bool) -> tuple[float, float]:
    """(forward, backward) bytes per score when the score matrix is materialised. Forward: S written,
    the softmax reads it and writes P, the second GEMM reads P. Backward: dP written, the softmax
    backward reads P and dP and writes dS, both GEMMs read dS, dV's reads P. Dropout adds its output
    and a 1-byte mask in the forward, and reading them / writing its gradient in the backward."""
    e = act_bytes
    drop = 2 * e + 1 if dropout else 0.0
    return 4 * e + drop, 7 * e + drop


def _tp_comm(spec: ModelSpec, s: Sharding, p: Precisions, t: Array, layers: float, where: str) -> list[Op]:
    if s.tp == 1:
        return []
    size = t * (spec.hidden_size * p.act_bytes)
    if s.sp:  # all-reduce becomes reduce-scatter here + all-gather before the next block
        return [
            _comm(f"{where}_reduce_scatter", "reduce-scatter", size, s.tp, layers, "tp"),
            _comm(f"{where}_all_gather", "all-gather", size, s.tp, layers, "tp"),
        ]
    return [_comm(f"{where}_all_reduce", "all-reduce", size, s.tp, layers, "tp")]


def node_dedup_share(top_k: int, domains: int) -> float:
    """Share of a token's cross-domain copies that cross once the sender sends it to each remote
    domain once (DeepEP's internode dispatch forwards it over NVLink there; its combine reduces
    inside the domain before sending back). With its top_k experts uniform over `domains` equal
    domains, a token has top_k (D - 1) / D remote copies but (D - 1)(1 - (1 - 1/D)^top_k) remote
    domains."""
    if domains <= 1:
        return 1.0
    d = float(domains)
    copies = top_k * (d - 1) / d
    distinct = (d - 1) * (1.0 - (1.0 - 1.0 / d) ** top_k)
    return distinct / copies


# Bytes per element of an FP8 dispatch: the value and a 4-byte scale per 128-element block.
DISPATCH_FP8_BYTES = 1.0 + 4.0 / 128.0


def _ffn_ops(spec: ModelSpec, s: Sharding, p: Precisions, t: Array, n_dense: float, n_moe: float) -> list[Op]:
    h, f = spec.hidden_size, spec.ffn
    moe = spec.moe
    up_width = 2 if f.gated else 1
    ops: list[Op] = []
    if n_dense > 0:
        size = f.size / s.tp
        ops += [
            _gemm("ffn_up", t, h, up_width * size, p, n_dense),
            _elementwise("ffn_act", t, size, up_width, _ACT_FLOPS, p, n_dense),
            _gemm("ffn_down", t, size, h, p, n_dense),
        ]
        ops += _tp_comm(spec, s, p, t, n_dense, "ffn")
    if moe is None or n_moe <= 0:
        return ops
    ops.append(_gemm("router", t, h, moe.experts, p, n_moe, "moe"))
    ops += routed_expert_ops(moe, h, f.gated, s, p, t, n_moe)
    if moe.shared_experts:
        shared = (moe.shared_expert_ffn_size or moe.expert_ffn_size) * moe.shared_experts / s.tp
        ops += [
            _gemm("shared_up", t, h, up_width * shared, p, n_moe, "moe"),
            _gemm("shared_down", t, shared, h, p, n_moe, "moe"),
        ]
    if s.ep == 1 or s.ep_within_tp:  # the expert groups' partial outputs are summed over the TP group
        ops += _tp_comm(spec, s, p, t, n_moe, "moe")
    return ops


def head_precisions(p: Precisions) -> Precisions:
    """The output head runs in 16 bits when the body is quantised: NVIDIA ModelOpt's FP8/FP4 recipes
    leave `*lm_head*` unquantised, Transformer Engine runs FP8 only inside its Linear layers (the
    output layer is a plain 16-bit GEMM), and vLLM loads quantised checkpoints' heads as stored."""
    return p if p.weight_bytes >= 2 else Precisions(p.activation, p.activation, p.kv)


def embedding_ops(
    spec: ModelSpec,
    s: Sharding,
    p: Precisions,
    tokens: object,
    logits_tokens: object,
    first_stage: bool = True,
    last_stage: bool = True,
    loss: bool = False,
) -> list[Op]:
    """Input embedding (a gather) on the first stage; final norm and LM head on the last.
    `logits_tokens`: tokens whose logits are computed (serving: one per sequence; training: all)."""
    h, v = spec.hidden_size, spec.vocab_size
    t = np.asarray(tokens, dtype=np.float64) / s.cp
    lt = np.asarray(logits_tokens, dtype=np.float64) / s.cp
    ops: list[Op] = []
    if first_stage:
        ops.append(Op("embedding", "embedding", 1, flops=0.0, activation_bytes=t * (2 * h * p.act_bytes)))
    if last_stage:
        ops.append(_elementwise("final_norm", lt, h, 1.0, _NORM_FLOPS, p, 1, "norm"))
        ops.append(_gemm("lm_head", lt, h, v / s.tp, head_precisions(p), 1, "lm_head"))
        if loss:  # cross-entropy: read the 16-bit logits, write fp32 log-probabilities for the backward
            ops.append(
                Op(
                    "loss",
                    "elementwise",
                    1,
                    flops=lt * (5.0 * v / s.tp),
                    activation_bytes=lt * (v / s.tp * (p.act_bytes + 4.0)),
                )
            )
    return ops


def phase_ops(
    spec: ModelSpec,
    s: Sharding,
    p: Precisions,
    batch: object,
    seq_len: object,
    phase: Phase,
    context: object | None = None,
    stage: int = 0,
    prefill_tokens: object = 0.0,
    attention_kernel: str | None = None,
) -> list[Op]:
    """All ops of one pass on one device of pipeline stage `stage` (the slowest stage is the first or last).

    prefill: `batch` prompts of `seq_len` tokens; decode: one token for each of `batch` sequences
    attending `context` cached tokens; forward: training forward over batch x seq_len tokens;
    mixed: a decode step of `batch` sequences carrying `prefill_tokens` tokens of `seq_len`-token prompts.
    """
    b = np.asarray(batch, dtype=np.float64)
    length = np.asarray(seq_len, dtype=np.float64)
    first, last = stage == 0, stage == s.pp - 1
    if phase == "mixed":
        ctx = length if context is None else np.asarray(context, dtype=np.float64)
        q = np.asarray(prefill_tokens, dtype=np.float64)
        kernel = attention_kernel
        ops = layer_ops(spec, s, p, b, ctx, "mixed", b, stage, q, prompt_len=length, attention_kernel=kernel)
        return embedding_ops(spec, s, p, b + q, b + q / length, first, last) + _engine_allreduce(ops)
    if phase == "decode":
        ctx = length if context is None else np.asarray(context, dtype=np.float64)
        ops = layer_ops(spec, s, p, b, ctx, "decode", sequences=b, stage=stage, attention_kernel=attention_kernel)
        return embedding_ops(spec, s, p, b, b, first, last) + _engine_allreduce(ops)
    tokens = b * length
    ops = layer_ops(spec, s, p, tokens, length, phase, sequences=b, stage=stage, attention_kernel=attention_kernel)
    training = phase == "forward"
    logits = tokens if training else b
    return embedding_ops(spec, s, p, tokens, logits, first, last, loss=training) + (
        _with_transposes(ops, p) if training else _engine_allreduce(ops)
    )


def _with_transposes(ops: list[Op], p: Precisions) -> list[Op]:
    """Training an 8-bit GEMM needs its input quantised twice: as is for the forward and transposed
    for the weight gradient (Hopper's FP8 GEMMs take only the TN layout; Blackwell's MXFP8 scales
    run along the other axis). Transformer Engine's fused cast-transpose kernel reads the 16-bit
    input once and writes both copies."""
    if p.compute_bytes >= p.act_bytes:
        return ops
    # cast_bytes = tokens x k x (16-bit read + 8-bit write): one more 8-bit write
    more = (p.act_bytes + 2 * p.compute_bytes) / (p.act_bytes + p.compute_bytes)
    return [changed(op, cast_bytes=op.cast_bytes * more) if op.k is not None else op for op in ops]


def _engine_allreduce(ops: list[Op]) -> list[Op]:
    """Serving engines run small tensor-parallel all-reduces on their own kernels, not NCCL's."""
    return [
        changed(op, engine_max_bytes=ENGINE_ALLREDUCE_MAX_BYTES)
        if op.comm == "all-reduce" and op.comm_tier == "tp"
        else op
        for op in ops
    ]


def routed_expert_ops(moe: Moe, h: float, gated: bool, s: Sharding, p: Precisions, t: Array, n_moe: float) -> list[Op]:
    """The routed part of a MoE layer on one device for `t` tokens entering it: routing, the
    experts' grouped GEMMs, the permutation into expert order and back, and (EP across the TP
    group) the dispatch and combine all-to-alls. The router's own GEMM is the caller's."""
    up_width = 2 if gated else 1
    ops: list[Op] = [_elementwise("router_topk", t, moe.experts, 1.0, 4.0, p, n_moe)]  # softmax/sigmoid + top-k
    # expert slots on this device: redundant replicas let EP48 or EP72 hold 256 experts (288 slots)
    experts_local = (moe.experts + s.redundant_experts) / s.ep
    expert_ffn = moe.expert_ffn_size / s.expert_tp
    inside = s.ep_within_tp  # the TP group's replicated tokens each meet their experts' group
    # tokens entering the MoE on this device; with EP across the TP group they are split first
    t_moe = t / s.tp if s.ep > 1 and s.tp > 1 and not inside else t
    routed = t_moe * moe.top_k  # token-expert pairs this device's tokens create
    # balanced routing: as many pairs arrive as leave; with EP inside TP a group gets 1/ep of them.
    # Imbalanced routing: the busiest rank receives expert_imbalance times the mean, and the layer
    # waits for it. Tokens leave every rank evenly (attention is data parallel), so each sender's
    # share to that rank, intra- and inter-node alike, grows by the same factor.
    hot = s.expert_imbalance
    share = expert_touch_share(moe, s, t)
    touched = experts_local * share
    if s.ep > 1 and hot == 1.0 and s.busiest_ep_rank:
        # uniform routing, as assumed when no loads are given, is uniform only on average: each of the
        # group's pairs lands on a rank at random, so the busiest of ep ranks receives more than its
        # share and touches more experts (binomial counts; a pass waits for that rank). At 1-4 decode
        # tokens a rank over EP8 this is 1.5-1.2x; at prefill's thousands it vanishes.
        group = routed if inside else routed * s.ep
        hot = busiest_rank(group / s.ep, group * (1.0 - 1.0 / s.ep) / s.ep, s.ep, group) / np.maximum(
            group / s.ep, 1e-9
        )
        touched = busiest_rank(touched, touched * (1.0 - share), s.ep, experts_local)
    pairs_local = (routed / s.ep if inside else routed) * hot
    per_expert_tokens = pairs_local / np.maximum(touched, 1e-9)
    expert_weights = (up_width + 1) * h * expert_ffn * p.weight_bytes
    flops = pairs_local * (2.0 * h * expert_ffn * (up_width + 1))
    # Two grouped GEMMs with the activation kernel between them (Triton's fused_moe: two
    # invoke_fused_moe_kernel calls around silu_and_mul; CUTLASS and DeepGEMM MoE paths alike);
    # 8/4-bit math on 16-bit activations quantises each GEMM's input first, as in _gemm.
    kernels = 3.0
    cast: Array | float = 0.0
    if p.compute_bytes < p.act_bytes:
        kernels = 5.0
        cast = pairs_local * ((h + expert_ffn) * (p.act_bytes + p.compute_bytes))
    ops.append(
        Op(
            "experts",
            "moe",
            n_moe,
            flops=flops,
            weight_bytes=touched * expert_weights,
            activation_bytes=pairs_local * ((2 * h + (up_width + 1) * expert_ffn) * p.act_bytes),
            # gate/up writes its intermediate, down its rows
            output_bytes=pairs_local * ((h + up_width * expert_ffn) * p.act_bytes),
            m=per_expert_tokens,
            n=up_width * expert_ffn,
            k=h,
            groups=touched,
            routed_rows=True,
            kernels=kernels,
            cast_bytes=cast,
            extra={"experts_touched": float(np.mean(touched))},
        )
    )
    # permute tokens into expert order before the expert GEMMs and back (weighted) after them
    ops.append(_elementwise("moe_permute", routed * hot, h, 1.0, 0.0, p, n_moe))
    ops.append(_elementwise("moe_unpermute", routed * hot, h, 1.0, 1.0, p, n_moe))
    if s.ep > 1 and not inside:
        # DeepEP / DeepSeek-V3 (arXiv 2412.19437 section 3.3): with 8-bit GEMMs the tokens are
        # quantised before dispatch (FP8 plus one fp32 scale per 128 elements); combine stays 16-bit
        dispatch_bytes = DISPATCH_FP8_BYTES if p.compute in ("fp8", "int8", "fp4") else p.act_bytes
        share = node_dedup_share(moe.top_k, s.ep_domains)
        ops += [
            changed(
                _comm("ep_dispatch", "all-to-all", routed * hot * (h * dispatch_bytes), s.ep, n_moe, "ep"),
                internode_share=share,
            ),
            changed(
                _comm("ep_combine", "all-to-all", routed * hot * (h * p.act_bytes), s.ep, n_moe, "ep"),
                internode_share=share,
            ),
        ]
    return ops
