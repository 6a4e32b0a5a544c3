"""Framework memory (planner.framework_memory): hand-computed figures and properties."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hardware_db.errors import InvalidSpecError
from planner.catalog import Catalog, load_catalog, resolve_model
from planner.framework_memory import (
    ALLOCATOR_FRAGMENTATION,
    framework_of,
    op_sac_bytes_per_layer,
    torchtitan_pipeline,
)
from planner.memory import weight_bytes_per_device
from planner.ops import Precisions, Sharding
from planner.training import estimate_training
from planner.validation import _pipeline_layout


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def test_framework_names() -> None:
    assert framework_of("torchtitan 0.0.2 (FSDP2, torch.compile)") == "torchtitan"
    assert framework_of("NVIDIA NeMo 2.0 performance recipe (Megatron-Core, TE)") == "megatron"
    assert framework_of("FlagScale @6fc099c (Megatron-LM fork)") == "megatron"
    assert framework_of("vLLM (V1)") is None


def test_unknown_framework_is_refused(catalog: Catalog) -> None:
    with pytest.raises(InvalidSpecError, match="unknown framework"):
        estimate_training("llama3.1-8b", "h100-sxm", 8, framework="deepspeed", catalog=catalog)


def test_torchtitan_default_split_of_405b() -> None:
    # 126 layers over 8 stages: 15, 16 x 6, 15; over 16 stages: 7, 8 x 14, 7 (rank 0: stages 0 and 8)
    assert torchtitan_pipeline(126, 8, interleaved=False) == (1, 15)
    assert torchtitan_pipeline(126, 8, interleaved=True) == (2, 7 + 8)


@given(st.integers(1, 16), st.booleans(), st.integers(0, 200))
def test_torchtitan_first_rank_holds_its_share(pp: int, interleaved: bool, extra: int) -> None:
    v = 2 if interleaved else 1
    layers = pp * v + extra
    got_v, first = torchtitan_pipeline(layers, pp, interleaved)
    base = layers // (pp * v)
    assert got_v == v
    assert v * base <= first <= v * (base + 1) + (layers - pp * v * base)  # the last stage takes the rest


def test_op_sac_keeps_input_wq_wv_attention_w1_w2(catalog: Catalog) -> None:
    spec = resolve_model("llama3.1-8b", catalog)
    s = Sharding(tp=1, ep=1, cp=1, pp=1, sp=False)
    # 2 x 8192 tokens x (4096 input + 4096 wq + 1024 wv + 4096 attention + 14336 w1 + 4096 w2) x 2 bytes
    assert float(op_sac_bytes_per_layer(spec, s, 2, 8192, 2.0)) == 16384 * 31744 * 2


def test_fsdp_under_pp_keeps_the_stage_gathered_and_fp32_gradients(catalog: Catalog) -> None:
    kw: dict[str, Any] = dict(
        tp=8, pp=8, zero=3, micro_batch=4, global_batch=256, seq_len=8192, recompute="full", catalog=catalog
    )
    r = estimate_training("llama3.1-405b", "h100-sxm", 512, framework="torchtitan", **kw)
    spec = resolve_model("llama3.1-405b", catalog)
    params = weight_bytes_per_device(spec, Sharding(tp=8, ep=1, cp=1, pp=8, sp=True), Precisions("bf16")) / 2
    assert float(r.weights_bytes) == pytest.approx(2 * params)  # bf16, gathered; fp32 shards are the master
    assert float(r.gradients_bytes) == pytest.approx(4 * params)  # unsharded, fp32, until the last micro-batch
    assert float(r.optimizer_bytes) == pytest.approx(12 * params / 8)


def test_megatron_loss_holds_bf16_logits_and_fp32_softmax(catalog: Catalog) -> None:
    kw: dict[str, Any] = dict(micro_batch=1, global_batch=8, seq_len=4096, recompute="none", catalog=catalog)
    generic = estimate_training("llama3.1-8b", "h100-sxm", 8, **kw)
    megatron = estimate_training("llama3.1-8b", "h100-sxm", 8, framework="megatron", **kw)
    titan = estimate_training("llama3.1-8b", "h100-sxm", 8, framework="torchtitan", **kw)
    logits = 4096 * 128256
    assert float(megatron.activations_bytes - generic.activations_bytes) == pytest.approx(2 * logits)  # 6 vs 4
    # torchtitan: 10 bytes a logit (zero 1: no FSDP layers gathered)
    assert float(titan.activations_bytes - generic.activations_bytes) == pytest.approx(6 * logits)


def test_reserved_adds_the_allocator_fragmentation(catalog: Catalog) -> None:
    r = estimate_training("llama3.1-8b", "h100-sxm", 8, global_batch=8, catalog=catalog)
    assert float(r.memory_reserved_bytes) == pytest.approx(float(r.memory_per_device_bytes) / 0.85)
    assert ALLOCATOR_FRAGMENTATION == 0.15


def test_fewer_layers_on_the_first_stage_hold_fewer_activations(catalog: Catalog) -> None:
    kw: dict[str, Any] = dict(
        tp=8, pp=16, zero=2, micro_batch=1, global_batch=2048, seq_len=8192, recompute="none", catalog=catalog
    )
    even = estimate_training("llama3.1-405b", "h100-sxm", 8192, **kw)
    fewer = estimate_training("llama3.1-405b", "h100-sxm", 8192, first_stage_layers=7, **kw)
    # the first rank holds 7 layers x 16 micro-batches (112), but the second then holds
    # ceil(119 / 15) = 8 layers x 15 (120): the peak is 120 of the even split's 8 x 16 = 128
    assert float(fewer.activations_bytes) / float(even.activations_bytes) == pytest.approx(120 / 128)
    with pytest.raises(InvalidSpecError, match="first_stage_layers"):
        estimate_training("llama3.1-405b", "h100-sxm", 8192, first_stage_layers=0, **kw)


def test_torchtitan_row_without_micro_batch_uses_the_default_schedule(catalog: Catalog) -> None:
    spec = resolve_model("llama3.1-405b", catalog)
    cfg = {"framework": "torchtitan (PP Interleaved 1F1B)", "global_batch": 256, "micro_batch": None}
    # local batch 32 over 8 ranks x 2 stages = 16 micro-batches of 2
    assert _pipeline_layout(cfg, spec, "torchtitan", 8, 8) == (2, 2, 15)
    cfg = {"framework": "torchtitan (PP 1F1B)", "global_batch": 256, "micro_batch": None}
    assert _pipeline_layout(cfg, spec, "torchtitan", 8, 8) == (4, 1, 15)


def test_a_lighter_first_stage_moves_the_peak_to_the_second() -> None:
    """Llama 3.1 405B (126 layers) on PP16 under 1F1B with full recompute: by default the first rank
    holds ceil(126/16) = 8 layers of 16 in-flight micro-batches (128 layer-inputs). Given one layer
    on the first rank, the second holds ceil(125/15) = 9 layers of 15 micro-batches (135). Each
    stored layer input is b x s x h x 2 bytes / tp (sequence parallel): 1 x 8192 x 16384 x 2 / 8."""
    from planner.training import estimate_training

    kw: dict[str, Any] = dict(tp=8, pp=16, global_batch=64, seq_len=8192, recompute="full", zero=1)
    default = estimate_training("llama3.1-405b", "h100-sxm", 8 * 16 * 4, **kw)
    light = estimate_training("llama3.1-405b", "h100-sxm", 8 * 16 * 4, first_stage_layers=1, **kw)
    per_input = 8192 * 16384 * 2 / 8
    assert light.activations_bytes - default.activations_bytes == pytest.approx((135 - 128) * per_input, rel=1e-6)


def test_megatron_communicators_by_hand() -> None:
    from planner.framework_memory import megatron_communicators

    # 8 GPUs, TP2 PP2 DP2, distributed optimizer: world, TP, PP, DP (the norm runs on the world)
    assert sorted(megatron_communicators(8, 2, 2, 2, 1, 1, True)) == [2, 2, 2, 8]
    # FlagScale Llama2-70B, TP8 PP4 on 32 GPUs, no distributed optimizer: the tp x pp group too
    assert sorted(megatron_communicators(32, 8, 4, 1, 1, 1, False)) == [4, 8, 32, 32]
    assert megatron_communicators(1, 1, 1, 1, 1, 1, True) == []


def test_nvidia_smi_bytes_by_hand() -> None:
    from planner.framework_memory import nvidia_smi_bytes

    # 10 GB reserved + 287,047,680 context + 544e6 (2-rank group) + 688e6 (8-rank group)
    got = float(nvidia_smi_bytes(10e9, [2, 8]))
    assert got == pytest.approx(10e9 + 287_047_680 + 544e6 + 688e6)


@given(st.floats(0, 200e9), st.lists(st.integers(2, 1024), max_size=8), st.integers(2, 1024))
def test_nvidia_smi_grows_with_communicators(reserved: float, groups: list[int], extra: int) -> None:
    from planner.framework_memory import nvidia_smi_bytes

    base = float(nvidia_smi_bytes(reserved, groups))
    assert base > reserved
    assert float(nvidia_smi_bytes(reserved, [*groups, extra])) > base


def test_nvidia_smi_row_adds_context_and_nccl(catalog: Catalog) -> None:
    from planner.framework_memory import CUDA_CONTEXT_BYTES
    from planner.validation import _memory_footprint

    cfg: dict[str, Any] = dict(
        hardware="a100-sxm-80gb",
        model="llama3.1-8b",
        devices=8,
        tp=1,
        pp=8,
        zero=1,
        micro_batch=1,
        global_batch=512,
        seq_len=8192,
        recompute="selective",
        framework="Megatron-LM (megatron-core)",
    )
    reserved = _memory_footprint({**cfg, "memory_statistic": "max_reserved"}, "peak_memory_bytes", {}, catalog)
    smi = _memory_footprint({**cfg, "memory_statistic": "nvidia-smi"}, "peak_memory_bytes", {}, catalog)
    # world (8 ranks) and the PP group (8 ranks): two communicators of more than 2 ranks
    assert smi - reserved == pytest.approx(CUDA_CONTEXT_BYTES + 2 * 688e6)
