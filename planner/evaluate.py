"""Time of a pass: every op on the roofline (compute ops) or the topology (collectives).

Attention's compute is max(matmul time, softmax exponentials / special-function rate): Blackwell-
class tensor cores outgrew the exp units, so softmax becomes a co-bottleneck there. Weights that
spilled past the first memory tier are read at the mixed bandwidth of the tiers holding them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from planner.arrays import mean
from planner.cluster import Cluster, DevicePerf
from planner.collectives import collective_time
from planner.ops import Op
from planner.roofline import gemm_shape_efficiency
from planner.tiers import ReadBandwidths

Array = npt.NDArray[np.float64]


@dataclass(frozen=True, init=False)
class OpTime:
    """An op's times per instance and in all; built by a dict update, as Op is (every op of every
    pass makes one)."""

    op: Op
    compute_s: Array  # per instance
    memory_s: Array
    comm_s: Array
    overhead_s: float
    # attention: its backward's compute time (2.5x the forward's FLOPs at the kernel's backward
    # efficiency); other ops scale their forward time by their class's ratio
    backward_compute_s: Array | None = None
    # a separate kernel that must finish first (the input cast of an 8-bit GEMM): it does not
    # overlap the op's own compute or traffic
    serial_s: Array | float = 0.0
    time_s: Array = field(init=False)  # per instance: the longest of the three, plus the overhead
    total_s: Array = field(init=False)  # all `count` instances

    def __init__(
        self,
        op: Op,
        compute_s: Array,
        memory_s: Array,
        comm_s: Array,
        overhead_s: float,
        backward_compute_s: Array | None = None,
        serial_s: Array | float = 0.0,
    ) -> None:
        if op.op_class == "comm":
            longest = comm_s
        elif isinstance(compute_s, float) and isinstance(memory_s, float):
            longest = max(compute_s, memory_s)
        else:
            longest = np.maximum(compute_s, memory_s)
        time_s = longest + serial_s + overhead_s
        self.__dict__.update(
            op=op,
            compute_s=compute_s,
            memory_s=memory_s,
            comm_s=comm_s,
            overhead_s=overhead_s,
            backward_compute_s=backward_compute_s,
            serial_s=serial_s,
            time_s=time_s,
            total_s=time_s * op.count,
        )

    @property
    def bound(self) -> str:
        # traffic that does not overlap the math (an input cast, an exposed output write) is traffic too
        return bound_of(self.compute_s, self.memory_s + self.serial_s, self.comm_s, self.overhead_s)


def bound_of(compute_s: Any, memory_s: Any, comm_s: Any, overhead_s: Any) -> str:
    """What limits an op (means over a sweep's scenarios): launch overhead when it outlasts the
    rest, else the longest of compute, memory traffic and communication."""
    c, m, k = mean(compute_s), mean(memory_s), mean(comm_s)
    if mean(overhead_s) > max(c, m, k):
        return "overhead"
    return max((c, "compute"), (m, "memory"), (k, "communication"))[1]


# FP32 vector operations per attention score besides its exponential: running max, the scaled
# subtraction (an FMA: 2), the row sum, and the amortised rescale of the output accumulator
# (FlashAttention-2, Dao 2023, Algorithm 1 lines 8-10): about 5.
SOFTMAX_VECTOR_FLOPS_PER_SCORE = 5.0
# FlashAttention's backward: five matmuls per score tile (S and dP recomputed/formed, dV, dK, dQ)
# against the forward's two, i.e. 2.5x the forward FLOPs (Dao 2023, Sec. 3.1.2 and its FLOP count).
ATTENTION_BACKWARD_FLOPS = 2.5


def attention_compute_s(perf: DevicePerf, matmul_s: Array, exp_ops: object, hidden: float) -> Array:
    """Matmul and softmax (exponentials on the special-function units, the rest on the FP32 vector
    units): the longer of the two plus the part of the shorter the kernel cannot hide (`hidden`)."""
    rate = perf.exp_per_s
    if not rate:
        return matmul_s
    scores = np.asarray(exp_ops, dtype=np.float64)
    softmax_s = scores / rate
    vector = perf.device.peak_flops("fp32")
    if vector:
        vector = vector * perf.clock_scale
        softmax_s = softmax_s + scores * (SOFTMAX_VECTOR_FLOPS_PER_SCORE / vector)
    return np.maximum(matmul_s, softmax_s) + (1.0 - hidden) * np.minimum(matmul_s, softmax_s)


def op_time(cluster: Cluster, op: Op, precision: str, weight_bandwidth: Any = None) -> OpTime:
    """Roofline time of one op (per instance); works on floats and on arrays alike."""
    perf = cluster.perf
    if op.op_class == "comm":
        assert op.comm is not None
        t = collective_time(
            cluster,
            op.comm,
            op.activation_bytes,
            op.comm_group,
            engine_max_bytes=op.engine_max_bytes,
            internode_share=op.internode_share,
        ).time_s
        return OpTime(op, 0.0, 0.0, t, 0.0)  # type: ignore[arg-type]
    math_precision = op.precision or precision
    achieved = perf.achieved_flops(math_precision)
    backward_compute: Any = None
    if op.m is not None and op.n is not None and op.k is not None:
        g = perf.efficiency.gemm
        shape = gemm_shape_efficiency(
            op.m, op.n, op.k, perf.compute_units, g.tile_m, g.tile_n, op.groups, op.routed_rows
        )
        compute: Any = op.flops / shape * (1.0 / achieved)
    elif op.op_class == "attention":
        kernel = perf.attention_kernel(op.kernel, math_precision)
        peak = perf.clocked_peak_flops(math_precision)
        matmul: Any = op.flops / op.tile_efficiency * (1.0 / (peak * kernel.gemm_fraction))
        compute = attention_compute_s(perf, matmul, op.exp_ops, kernel.softmax_overlap)
        # the backward's achieved rate is the kernel's measured share of its forward's (softmax included)
        backward_compute = compute * (
            (op.backward_flops_factor or ATTENTION_BACKWARD_FLOPS) / kernel.backward_efficiency
        )
    else:
        compute = op.flops * (1.0 / achieved)
    main_bw = perf.memory_bandwidth_bytes_per_s
    w_bw, kv_bw = _read_bandwidths(op, main_bw, weight_bandwidth)
    has_kv = isinstance(op.kv_bytes, np.ndarray) or op.kv_bytes
    streamed = op.activation_bytes + op.kv_bytes if has_kv and kv_bw is main_bw else op.activation_bytes
    # a GEMM tile stores its output after its k loop: on families whose accumulators sit in the math
    # warps' registers that write does not overlap the loop's math (at short k it is as long as the
    # loop: roofline module docstring)
    written = op.output_bytes * perf.efficiency.gemm.epilogue_exposed
    if isinstance(written, np.ndarray) or written:
        streamed = streamed - written
    memory = streamed * (1.0 / main_bw) + op.weight_bytes / w_bw
    if has_kv and kv_bw is not main_bw:  # KV cache placed partly past the first tier (planner.tiers)
        memory = memory + op.kv_bytes / kv_bw
    overhead = perf.kernel_overhead_s * op.kernels
    serial = op.cast_bytes + written
    serial = serial * (1.0 / main_bw) if isinstance(serial, np.ndarray) or serial else 0.0
    return OpTime(op, compute, memory, 0.0, overhead, backward_compute, serial)  # type: ignore[arg-type]


def _read_bandwidths(op: Op, main_bw: float, given: Any) -> tuple[Any, Any]:
    """(weight, KV) bandwidths this op's reads see: `given` is None (all in main memory), one
    weight bandwidth, or a ReadBandwidths from the tier placement (routed experts may lie apart)."""
    if given is None:
        return main_bw, main_bw
    if not isinstance(given, ReadBandwidths):
        return given, main_bw
    w = given.experts if op.op_class == "moe" and given.experts is not None else given.weights
    return main_bw if w is None else w, main_bw if given.kv is None else given.kv


def backward_s(t: OpTime, flops_factor: float) -> Array:
    """Per-instance time of an op's backward, `flops_factor` x its forward FLOPs (the op class's
    ratio) unless the op states its own; bytes at most double (read the saved input and the incoming
    gradient, write the input's gradient) unless the op states its own ratio."""
    compute = t.backward_compute_s if t.backward_compute_s is not None else t.compute_s * flops_factor
    f_bytes = t.op.backward_bytes_factor or min(flops_factor, 2.0)
    return np.maximum(compute, t.memory_s * f_bytes) + t.serial_s * f_bytes + t.overhead_s


def pass_times(cluster: Cluster, ops: Sequence[Op], precision: str, weight_bandwidth: Any = None) -> list[OpTime]:
    return [op_time(cluster, op, precision, weight_bandwidth) for op in ops]


def total_time(times: Sequence[OpTime]) -> Array:
    return sum((t.total_s for t in times), np.zeros(1))
