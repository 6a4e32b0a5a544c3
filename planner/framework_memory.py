"""Memory as training frameworks hold it and report it (issue 10): what the generic accounting of
planner.training._memory leaves to the framework.

- The loss: how many bytes each logit costs at the loss (the output layer's bf16 logits, the fp32
  copy the cross-entropy works on, its saved softmax).
- torchtitan's op-level selective activation checkpointing (which tensors a layer keeps).
- FSDP2 under pipeline parallelism: parameters stay gathered and gradients accumulate unsharded.
- FSDP's transient full layers (prefetched all-gathers, unsharded gradients before the reduce-scatter).
- The PyTorch caching allocator's fragmentation: max_memory_reserved over max_memory_allocated.
- What nvidia-smi adds to the allocator's reservation: the CUDA context and NCCL's buffers.
- The default pipeline layout (micro-batch count, layers per stage) of torchtitan at the commit its
  published figures used (9dec370, 2024-12-26; docs/performance.md "Versions used").
"""

from __future__ import annotations

from typing import Any

import numpy as np

from planner.ops import Sharding
from workloads.schema import ModelSpec

FRAMEWORKS = ("megatron", "torchtitan")

# Bytes per logit element at the loss.
# Megatron-core tensor_parallel/cross_entropy.py (_VocabParallelCrossEntropy.forward) turns the
# output layer's bf16 logits into fp32 (`vocab_parallel_logits.float()`) and exponentiates that copy
# in place, keeping it as the softmax for the backward: bf16 logits (2) + fp32 softmax (4).
# torchtitan train.py (9dec370): `loss = loss_fn(pred, labels)` with
# `cross_entropy(pred.flatten(0, 1).float(), ...)` while `pred` (bf16) is still alive ("del pred"
# only after the loss): bf16 logits (2) + the fp32 copy (4) + log_softmax's saved fp32 output (4).
LOSS_BYTES_PER_LOGIT = {"megatron": 6.0, "torchtitan": 10.0}
GENERIC_LOSS_BYTES_PER_LOGIT = 4.0  # fp32 logits only (the planner's framework-neutral default)

# PyTorch's caching allocator splits cached blocks, so what it reserves exceeds what tensors hold.
# GMLake (Guo et al., ASPLOS 2024, arXiv 2401.08156, abstract): stitching removes "15% (up to 33%)
# fragmentation among eight LLM models on GPU A100 with 80 GB memory", fragmentation being the
# reserved memory that tensors do not use. Its average is taken as the fragmentation of a training
# run under the stock allocator (a lower bound: GMLake leaves a little).
ALLOCATOR_FRAGMENTATION = 0.15


def framework_of(text: Any) -> str | None:
    """The framework family a free-text name belongs to (NeMo and FlagScale run Megatron-core)."""
    low = str(text or "").lower()
    if "torchtitan" in low:
        return "torchtitan"
    if any(k in low for k in ("megatron", "nemo", "flagscale")):
        return "megatron"
    return None


def check_framework(framework: str | None) -> None:
    from hardware_db.errors import InvalidSpecError

    if framework is not None and framework not in FRAMEWORKS:
        raise InvalidSpecError(f"unknown framework '{framework}' (known: {', '.join(FRAMEWORKS)})")


def loss_bytes_per_logit(framework: str | None) -> float:
    return LOSS_BYTES_PER_LOGIT.get(framework or "", GENERIC_LOSS_BYTES_PER_LOGIT)


def reserved_bytes(allocated: Any) -> Any:
    """torch.cuda.max_memory_reserved for a peak of `allocated` bytes held by tensors."""
    return np.asarray(allocated, dtype=np.float64) / (1.0 - ALLOCATOR_FRAGMENTATION)


def op_sac_bytes_per_layer(spec: ModelSpec, s: Sharding, micro_batch: Any, seq_len: Any, act_bytes: float) -> Any:
    """What one layer keeps under torchtitan's op-level selective AC (parallelize_llama.py,
    _apply_ac_to_transformer_block: `_save_list` = mm, the SDPA kernels, reduce_scatter; "Saves
    output of all compute ops, except every second mm", the count restarting in every layer). A
    Llama layer's mms run wq, wk, wv, wo, w1, w3, w2: the odd ones (wq, wv, w1, w2) are kept, with
    the attention output and the layer's input (the checkpoint's argument); the rest is recomputed."""
    a = spec.attention
    q_dim, kv_dim = a.heads * a.head_dim, a.kv_heads * a.head_dim
    ffn = spec.ffn.size if spec.moe is None else spec.moe.expert_ffn_size * spec.moe.top_k
    tokens = np.asarray(micro_batch, dtype=np.float64) * np.asarray(seq_len, dtype=np.float64) / s.cp
    hidden = 2 * spec.hidden_size / (s.tp if s.sp else 1)  # the layer's input and w2's output
    sharded = (q_dim + kv_dim + q_dim + ffn) / s.tp  # wq, wv, attention output, w1 (column-parallel)
    return tokens * (hidden + sharded) * act_bytes


def fsdp_transient_bytes(layer_params: Any, pp: int) -> tuple[Any, Any]:
    """Full (unsharded) layers FSDP2 holds beyond its shards, at the loss and in the backward.
    Forward: torchtitan does not reshard the last block after forward ("FSDP would prefetch it
    immediately"), so one bf16 layer is gathered at the loss. Backward: the block being
    differentiated and the prefetched next one (bf16), its bf16 gradients and their fp32 copy for
    the fp32 reduce-scatter (MixedPrecisionPolicy reduce_dtype float32). Under PP the gathered
    parameters are counted whole by fsdp_pipeline_bytes_per_param instead."""
    if pp > 1:
        return 0.0, 0.0
    layer_params = np.asarray(layer_params, dtype=np.float64)
    return 2.0 * layer_params, (2 * 2.0 + 2.0 + 4.0) * layer_params


# FSDP2 with PP (torchtitan parallelize_llama.py apply_fsdp: "For PP, do not reshard after forward
# to avoid per-microbatch all-gathers"): the stage's bf16 parameters stay gathered (2 bytes); torch
# pipelining's _configure_data_parallel_mode calls set_requires_gradient_sync(last_backward), so
# FSDP2 accumulates unsharded gradients, upcast to the fp32 reduce dtype
# (FSDPParam.to_accumulated_grad_if_needed), until the last micro-batch (4 bytes).
FSDP_PIPELINE_BYTES_PER_PARAM = 2.0 + 4.0


def torchtitan_pipeline(layers: int, pp: int, interleaved: bool) -> tuple[int, int]:
    """(stages per rank, layers on the first rank) of torchtitan's default split
    (pipelining_utils.generate_split_points: 1 stage per rank for single-stage schedules, 2 for
    looped ones; every stage gets layers // stages, the middle ones one more while the remainder
    lasts, the first none). The first rank holds stages 0, pp, 2 pp, ..."""
    v = 2 if interleaved else 1
    stages = pp * v
    base, extra = divmod(layers, stages)
    sizes = [base] + [base + (1 if i <= extra else 0) for i in range(1, stages - 1)]
    sizes.append(layers - sum(sizes))
    return v, sum(sizes[i] for i in range(0, stages, pp))


# What nvidia-smi shows beyond torch.cuda.max_memory_reserved: memory that CUDA and NCCL allocate
# outside PyTorch's caching allocator. cuBLAS and cuDNN workspaces are not added: PyTorch takes the
# per-(handle, stream) cuBLAS workspace from the caching allocator (ATen CublasHandlePool.cpp keeps
# `cublas_handle_stream_to_workspace` as allocator DataPtrs) and Transformer Engine's workspace is a
# torch.empty, so both are already in what the allocator reserved.
#
# The CUDA context of a PyTorch process with lazy module loading (on by default since PyTorch 1.13,
# and in CUDA 12.2+ on Linux): PyTorch PR #86509 ("Sets CUDA_MODULE_LOADING to LAZY when not set by
# the user") measured "a memory usage of: 287,047,680 bytes" against 666,632,192 eager. A training
# process loads more kernels than that test, so this is a lower bound.
CUDA_CONTEXT_BYTES = 287_047_680.0
# NCCL's buffers per communicator (ring and tree connections per channel, each with its Simple
# (NCCL_BUFFSIZE, 4 MiB), LL128 and LL FIFOs) live outside the allocator (fairscale PR #678: "the NCCL
# buffers are not allocated through the PyTorch caching allocator"); more communicators use more
# memory unless split with shared resources (sjeaugey, NVIDIA/nccl#864). Measured per PyTorch process
# group after a 4 MB all-reduce on 4 x A100 NVLink (NVIDIA/nccl#964): "for group with only 2 devices,
# it requires 544 MB. And for group with more than 2 devices, it requires 688 MB". Taken as printed
# (MB) for every NVIDIA GPU; Hopper's NVLink uses more channels ("we'll use more memory to reach H100
# peak NVLink bandwidth", nccl#864), and the p2p buffers of pipeline send/recv are not in the
# all-reduce figure, so both make this a lower bound.
NCCL_COMM_BYTES = {2: 544e6}
NCCL_COMM_BYTES_MANY = 688e6


def megatron_communicators(
    devices: int, tp: int, pp: int, dp: int, cp: int, ep: int, distributed_optimizer: bool
) -> list[int]:
    """Sizes of the NCCL communicators a Megatron-core training step uses (each process group is its
    own communicator, even over the same ranks): the default group (the start-up barrier; with the
    distributed optimizer also the gradient norm: DistributedOptimizer.get_model_parallel_group
    "With the distributed optimizer, the model parallel group is the entire world", returning None),
    TP, PP, CP, EP, the data-parallel group that reduces gradients (dp x cp ranks) and, without the
    distributed optimizer, the model-parallel group (tp x pp) of the gradient-norm all-reduce."""
    groups = [devices, tp, pp, cp, ep, dp * cp]
    if not distributed_optimizer:
        groups.append(tp * pp)
    return [g for g in groups if g > 1]


def nvidia_smi_bytes(reserved: Any, communicators: list[int]) -> Any:
    """What nvidia-smi shows for one training process: the allocator's reservation, the CUDA context
    and NCCL's buffers for each communicator (sizes in ranks)."""
    nccl = sum(NCCL_COMM_BYTES.get(n, NCCL_COMM_BYTES_MANY) for n in communicators)
    return np.asarray(reserved, dtype=np.float64) + CUDA_CONTEXT_BYTES + nccl
