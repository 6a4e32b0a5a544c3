"""One replica's passes: the time of a prefill, a decode step or a batch of continuous-batching
iterations through every pipeline stage, with speculative decoding and two-batch overlap, and the
per-op rows of one iteration shape of a vectorised serving pass (read only when the breakdown is).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from planner.arrays import mean
from planner.cluster import Cluster
from planner.collectives import achieved_bandwidth
from planner.evaluate import OpTime, bound_of, pass_times, total_time
from planner.memory import weight_bytes_per_device
from planner.ops import Op, Phase, Precisions, Sharding, phase_ops
from planner.serving import SHAPES
from planner.speculative import HEAD_OPS, Speculation
from planner.tiers import ReadBandwidths
from workloads.derived import kv_cache_bytes
from workloads.schema import ModelSpec

Array = npt.NDArray[np.float64]


def dominant_bound(times: Sequence[OpTime]) -> str:
    return _heaviest((t.bound, mean(t.total_s)) for t in times)


def _heaviest(bounds: Any) -> str:
    """The bound that holds the most time, from (bound, seconds) pairs."""
    share: dict[str, float] = {}
    for bound, seconds in bounds:
        share[bound] = share.get(bound, 0.0) + seconds
    return max(share, key=lambda k: share[k]) if share else "compute"


class Column(Sequence[OpTime]):
    """The ops of one iteration shape of a serving pass, sliced only when someone reads them (the
    breakdown); the result's `bound` reads the column's times without building them."""

    def __init__(self, times: list[OpTime], index: int) -> None:
        self._times, self._index = times, index

    @functools.cached_property
    def _ops(self) -> list[OpTime]:
        return _column(self._times, self._index)

    def __getitem__(self, i: Any) -> Any:
        return self._ops[i]

    def __len__(self) -> int:
        return len(self._times)

    def power_inputs(self) -> list[tuple[str, Any, Any, Any, Any]]:
        """(op class, compute, memory, time, instances) of each op in this shape: what
        planner.power needs, without building the per-op rows."""
        i = self._index
        return [
            (t.op.op_class, _take(t.compute_s, i), _take(t.memory_s, i), _take(t.time_s, i), _take(t.op.count, i))
            for t in self._times
        ]

    @property
    def bound(self) -> str:
        i, col = self._index, _column_mean
        share: dict[str, float] = {}
        for t in self._times:
            # as OpTime.bound: traffic that does not overlap the math counts as traffic
            m = col(t.memory_s, i) + col(t.serial_s, i)
            b = bound_of(col(t.compute_s, i), m, col(t.comm_s, i), col(t.overhead_s, i))
            share[b] = share.get(b, 0.0) + col(t.total_s, i)
        return max(share, key=lambda b: share[b]) if share else "compute"


def _pp_p2p_s(cluster: Cluster, spec: ModelSpec, p: Precisions, s: Sharding, tokens: Array) -> Array:
    """Activations handed between pipeline stages: (pp - 1) sends per pass."""
    if s.pp == 1:
        return np.zeros_like(tokens)
    bw = achieved_bandwidth(cluster.tier_spanning(s.tp * s.pp))
    latency = cluster.scale_up.link.latency_s
    return (s.pp - 1) * (tokens * spec.hidden_size * p.act_bytes / s.tp / bw + latency)


@dataclass(frozen=True)
class Replica:
    """What every pass of one replica shares: its cluster, model, sharding, precisions, the
    bandwidth its weights are read at, the attention kernel and the speculative decoding (or None)."""

    cluster: Cluster
    spec: ModelSpec
    s: Sharding
    p: Precisions
    weight_bw: Any  # ReadBandwidths (planner.tiers), or one weight bandwidth (a number or one per scenario)
    kernel: str | None
    sp: Speculation | None
    two_batch_overlap: bool = False

    @property
    def tokens_per_step(self) -> float:
        return 1.0 if self.sp is None else self.sp.tokens_per_step

    def pass_time(
        self, batch: Array, seq: Array, phase: Phase, context: Array | None, prefill_tokens: Any = 0.0
    ) -> tuple[Array, list[OpTime]]:
        return pass_time(
            self.cluster,
            self.spec,
            self.s,
            self.p,
            batch,
            seq,
            phase,
            context,
            self.weight_bw,
            prefill_tokens=prefill_tokens,
            attention_kernel=self.kernel,
            two_batch_overlap=self.two_batch_overlap,
        )

    def decode(self, batch: Array, in_len: Array, context: Array) -> tuple[Array, list[OpTime]]:
        """Time per generated token: one decode step, or a speculative step over its E tokens."""
        if self.sp is None:
            return self.pass_time(batch, in_len, "decode", context)
        # the target verifies k drafts per sequence: k + 1 query tokens that read the cache once
        k = self.sp.draft_tokens
        verify, times = self.pass_time(batch, context, "mixed", context, prefill_tokens=batch * k)
        return (verify + k * self.draft_s(batch, in_len, context)) / self.sp.tokens_per_step, times

    def iterations(self, decodes: Array, tokens: Array, in_len: Array, context: Array) -> tuple[Array, list[OpTime]]:
        """Times of continuous-batching iterations carrying `decodes` sequences and `tokens` prompt
        tokens (planner.serving.iteration_shapes), and their ops; with speculation the decodes
        verify k drafts each (costed like prompt tokens beside them) after the drafter's k steps."""
        if _varies(self.weight_bw):  # the shapes sit on a trailing axis
            return replace(self, weight_bw=_trailing(self.weight_bw)).iterations(decodes, tokens, in_len, context)
        if self.sp is None:
            return self.pass_time(decodes, in_len, "mixed", context, prefill_tokens=tokens)
        k = self.sp.draft_tokens
        tau, times = self.pass_time(decodes, in_len, "mixed", context, prefill_tokens=tokens + decodes * k)
        return tau + k * self.draft_s(decodes, in_len, context), times

    def draft_s(self, batch: Array, in_len: Array, context: Array) -> Array:
        """One drafted token for `batch` sequences."""
        assert self.sp is not None
        if self.sp.method == "ngram":
            return np.zeros_like(np.asarray(batch, dtype=np.float64))
        if self.sp.draft_model is not None:
            draft = Sharding(tp=self.s.tp)
            t, _ = pass_time(
                self.cluster, self.sp.draft_model, draft, self.p, batch, in_len, "decode", context, self.weight_bw
            )
            return t
        # one decoder layer of the target's shape plus the output head (mtp, eagle)
        times = self.pass_time(batch, in_len, "decode", context)[1]
        head = sum((t.total_s for t in times if t.op.name in HEAD_OPS), np.zeros(()))
        layers = self.spec.layers / self.s.pp  # the pass times one stage
        return head + sum((t.total_s for t in times if t.op.name not in HEAD_OPS), np.zeros(())) / layers


def _streamed(stage_s: Array, ops: list[Op], bw: Any) -> Array:
    """A stage whose weights stream from a memory pool ends when both its compute and the fetch
    of its weights do (the prefetcher overlaps the two; planner.tiers.ReadBandwidths)."""
    if not isinstance(bw, ReadBandwidths) or bw.stream_bandwidth is None:
        return stage_s
    return np.maximum(stage_s, bw.stream_s(ops))


def _varies(bw: Any) -> bool:
    return bw.varies if isinstance(bw, ReadBandwidths) else isinstance(bw, np.ndarray)


def _trailing(bw: Any) -> Any:
    return bw.trailing() if isinstance(bw, ReadBandwidths) else bw[..., None]


def _take(x: Any, i: int) -> Any:
    """Column i of a value computed over the iteration shapes' trailing axis (values that do not
    vary with the shape carry a trailing axis of 1; scalars pass through)."""
    if isinstance(x, np.ndarray) and x.ndim:
        return x[..., i] if x.shape[-1] == SHAPES else x[..., 0] if x.shape[-1] == 1 else x
    return x


def _column_mean(x: Any, i: int) -> float:
    """mean(_take(x, i)) in one step: the bound reads five of these per op."""
    if isinstance(x, np.ndarray) and x.ndim:
        v = x[..., i] if x.shape[-1] == SHAPES else x[..., 0] if x.shape[-1] == 1 else x
        return float(v) if v.ndim == 0 else float(v.mean())
    return float(x)


def _column(times: list[OpTime], i: int) -> list[OpTime]:
    """The ops of one iteration shape, as if that pass had been evaluated alone."""
    out = []
    for t in times:
        op = replace(t.op, **{f.name: _take(getattr(t.op, f.name), i) for f in fields(t.op) if f.name != "extra"})
        out.append(
            OpTime(
                op,
                _take(t.compute_s, i),
                _take(t.memory_s, i),
                _take(t.comm_s, i),
                _take(t.overhead_s, i),
                _take(t.backward_compute_s, i),
                _take(t.serial_s, i),
            )
        )
    return out


def drafter_weight_bytes(spec: ModelSpec, s: Sharding, p: Precisions, sp: Speculation | None) -> float:
    """The drafter's weights on one device: a draft model at the target's TP, or one more layer."""
    if sp is None or sp.method == "ngram":
        return 0.0
    if sp.draft_model is not None:
        return weight_bytes_per_device(sp.draft_model, Sharding(tp=s.tp), p)
    return weight_bytes_per_device(spec, s, p) / spec.layers


def drafter_kv_scale(spec: ModelSpec, p: Precisions, sp: Speculation | None) -> float:
    """KV cache with the drafter's own, relative to the target's (both grow with the tokens held)."""
    if sp is None or sp.method == "ngram":
        return 1.0
    if sp.draft_model is not None:
        return 1.0 + float(kv_cache_bytes(sp.draft_model, 1.0, p.kv)) / float(kv_cache_bytes(spec, 1.0, p.kv))
    return 1.0 + 1.0 / spec.layers


def pass_time(
    cluster: Cluster,
    spec: ModelSpec,
    s: Sharding,
    p: Precisions,
    batch: Array,
    seq: Array,
    phase: Phase,
    context: Array | None,
    weight_bw: Any,
    prefill_tokens: Any = 0.0,
    attention_kernel: str | None = None,
    two_batch_overlap: bool = False,
) -> tuple[Array, list[OpTime]]:
    """Latency of one pass through all pipeline stages (a request visits each stage in turn).

    two_batch_overlap (SGLang --enable-two-batch-overlap, DeepSeek's dual micro-batch overlap): the
    batch runs as two halves whose expert all-to-alls hide under each other's compute; each half
    reads the weights again, so the pass is 2 x max(compute, all-to-all) of a half batch."""
    if two_batch_overlap and s.ep > 1:
        half, times = pass_time(
            cluster, spec, s, p, batch / 2.0, seq, phase, context, weight_bw, prefill_tokens / 2.0, attention_kernel
        )
        a2a = sum((t.total_s for t in times if t.op.comm_tier == "ep"), np.zeros(())) * s.pp
        return 2.0 * np.maximum(half - a2a, a2a), times
    kernel = attention_kernel
    ops = phase_ops(spec, s, p, batch, seq, phase, context, 0, prefill_tokens, attention_kernel=kernel)
    times = pass_times(cluster, ops, p.compute, weight_bw)
    stage = _streamed(total_time(times), ops, weight_bw)
    if s.pp > 1:  # the last stage adds the LM head; middle stages match stage 0 minus the embedding
        last_ops = phase_ops(spec, s, p, batch, seq, phase, context, s.pp - 1, prefill_tokens, attention_kernel=kernel)
        last_times = pass_times(cluster, last_ops, p.compute, weight_bw)
        stage_total = stage * (s.pp - 1) + _streamed(total_time(last_times), last_ops, weight_bw)
        times = times + [t for t in last_times if t.op.op_class in ("lm_head",)]
    else:
        stage_total = stage
    tokens = batch * (1.0 if phase in ("decode", "mixed") else seq) + (prefill_tokens if phase == "mixed" else 0.0)
    return stage_total + _pp_p2p_s(cluster, spec, p, s, tokens), times
