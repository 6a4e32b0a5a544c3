"""Offloaded training (planner.offload): ZeRO-Offload / ZeRO-Infinity over DRAM, CXL and NVMe."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware_db.errors import InvalidSpecError, UnknownIdError
from planner.offload import (
    POLICIES,
    HostMemory,
    Offload,
    check_capacity,
    compare_policies,
    cpu_optimizer_s,
    host_bytes_per_tier,
    offload_step,
    parse_offload,
    placement,
)
from planner.training import estimate_training


def _host(dram: float = 1e12, cards: int = 1, card_bytes: float = 256e9, card_bw: float = 31.5e9) -> HostMemory:
    # DRAM 100 GB/s at 100 ns: 10 kB in flight, so a 250 ns tier serves the CPU at most 40 GB/s
    return HostMemory(
        dram_bytes=dram,
        dram_bw_bytes_per_s=100e9,
        dram_latency_s=100e-9,
        cxl_cards=cards,
        cxl_bytes=card_bytes * cards,
        cxl_bw_bytes_per_s=card_bw * cards,
        cxl_latency_s=250e-9,
        nvme_bytes=8e12,
        nvme_bw_bytes_per_s=10e9,
        gpu_link_bw_bytes_per_s=50e9,
        ranks_per_node=1,
    )


def test_hand_computed_adam_step_in_dram() -> None:
    # 1e9 parameters: m + v read and written 16 B, master 8 B, fp32 gradients read 4 B, 16-bit
    # parameters written 2 B = 30 GB; at 100 GB/s of DRAM: 0.3 s
    off = parse_offload("cpu")
    assert off is not None
    where = placement(off, "cxl-aware", _host(), 1e9)
    assert cpu_optimizer_s(where, _host(), 1e9) == pytest.approx(0.3)


def test_hand_computed_adam_step_on_cxl_link_and_latency_bound() -> None:
    off = parse_offload({"optimizer": "cxl", "master": "cxl", "gradients": "cxl"})
    assert off is not None
    # one x8 card: 28 GB over the 31.5 GB/s link + the 2 GB upload buffer (DRAM) at 100 GB/s
    one = _host(cards=1)
    assert cpu_optimizer_s(placement(off, "cxl-aware", one, 1e9), one, 1e9) == pytest.approx(28 / 31.5 + 2 / 100)
    # eight cards (252 GB/s of links): latency-bound at 100 GB/s x 100 ns / 250 ns = 40 GB/s
    eight = _host(cards=8)
    assert eight.cpu_bw("cxl") == pytest.approx(40e9)
    assert cpu_optimizer_s(placement(off, "cxl-aware", eight, 1e9), eight, 1e9) == pytest.approx(28 / 40 + 2 / 100)


def test_estimate_training_runs_adam_on_the_host_cpus() -> None:
    base = estimate_training("llama2-7b", "dgx-h100", 8, zero=2, global_batch=64)
    r = estimate_training("llama2-7b", "dgx-h100", 8, zero=2, global_batch=64, offload="cpu")
    # DGX H100: 2 x Xeon 8480 (8 x DDR5-4800 = 307.2 GB/s each) shared by 8 GPUs; ZeRO shards over 8
    shard = r.weights_bytes / 2 / 8
    assert r.cpu_optimizer_s == pytest.approx(shard * 30 / (2 * 307.2e9 / 8))
    assert r.optimizer_s == 0 and r.offload_s > r.cpu_optimizer_s
    assert r.gradients_bytes == 0 and r.optimizer_bytes == 0
    assert r.memory_per_device_bytes == pytest.approx(
        base.memory_per_device_bytes - base.gradients_bytes - base.optimizer_bytes
    )
    assert r.step_time_s == pytest.approx(base.step_time_s - base.optimizer_s + r.offload_s)
    assert r.host_bytes_per_tier == {"dram": pytest.approx(shard * 20)}  # 16 B fp32 state + 4 B DMA buffers
    assert r.offload == {"optimizer": "cpu", "master": "cpu", "gradients": "cpu"}


def test_no_offload_changes_nothing() -> None:
    a = estimate_training("llama2-7b", "dgx-h100", 8, seq_len=[2048, 4096])
    b = estimate_training("llama2-7b", "dgx-h100", 8, seq_len=[2048, 4096], offload="none")
    da, db = a.to_dict(ops=False), b.to_dict(ops=False)
    assert da.keys() == db.keys()
    for k in da:
        assert np.array_equal(np.asarray(da[k], dtype=object), np.asarray(db[k], dtype=object)), k
    assert a.offload is None and a.offload_s == 0 and a.host_bytes_per_tier == {}


def test_cxl_aware_rule_pins_latency_critical_tensors_in_dram() -> None:
    off = parse_offload("cxl")
    assert off is not None and off.policy_applies
    where = placement(off, "cxl-aware", _host(cards=2), 1e9)
    for t in ("optimizer", "master", "gradients"):  # touched by the CPU optimizer loop
        assert where[t]["dram"] == 1.0 and where[t]["cxl"] == 0.0
    assert where["dma"]["cxl"] == 1.0  # DMA-only buffers striped over the cards
    inter = placement(off, "interleave", _host(cards=2), 1e9)
    assert inter["optimizer"] == {"dram": pytest.approx(1 / 3), "cxl": pytest.approx(2 / 3)}


@pytest.mark.parametrize("cards", [1, 2, 4])
def test_cxl_aware_beats_interleave_and_dram_only_is_fastest(cards: int) -> None:
    host, off = _host(cards=cards), Offload("cxl", "cxl", "cxl", policy_applies=True)
    times = {p: offload_step(off, p, host, 1e9, 4, 0.2, 0.4).offload_s for p in POLICIES}
    assert times["dram-only"] <= times["cxl-aware"] < times["interleave"]


def test_spill_when_dram_is_short_and_capacity_is_named() -> None:
    off = Offload("cxl", "cxl", "cxl", policy_applies=True)
    host = _host(dram=10e9, cards=1)  # 1e9 params need 16 GB of fp32 state + 4 GB of buffers
    per_tier = host_bytes_per_tier(placement(off, "cxl-aware", host, 1e9), 1e9)
    assert per_tier["dram"] == pytest.approx(10e9) and per_tier["cxl"] == pytest.approx(10e9)
    assert check_capacity(per_tier, host) == (True, "fits")
    fits, why = check_capacity(host_bytes_per_tier(placement(off, "dram-only", host, 1e9), 1e9), host)
    assert not fits and "host dram" in why


def test_training_result_does_not_fit_when_the_host_is_full() -> None:
    r = estimate_training("llama2-7b", "dgx-h100", 8, zero=2, global_batch=64, offload="cpu", host_dram_bytes=64e9)
    # llama2-7b: 6.74e9 parameters / 8 ZeRO shards x 20 B = 16.8 GB; 64 GB of DRAM / 8 GPUs = 8 GB
    assert r.fits is False and "16.8 GB of host dram per GPU but it holds 8.0 GB" in r.fit_reason
    swept = estimate_training(
        "llama2-7b", "dgx-h100", 8, zero=2, global_batch=64, seq_len=[1024, 2048], offload="cpu", host_dram_bytes=64e9
    )
    assert not np.any(swept.fits) and all("host dram" in w for w in swept.fit_reason)


@settings(max_examples=200, deadline=None)
@given(
    params=st.floats(1e6, 1e11),
    dram=st.floats(1e9, 4e12),
    cards=st.integers(1, 8),
    card_bytes=st.floats(16e9, 512e9),
    policy=st.sampled_from(POLICIES),
)
def test_tier_capacities_are_never_exceeded_when_it_fits(
    params: float, dram: float, cards: int, card_bytes: float, policy: str
) -> None:
    host = _host(dram=dram, cards=cards, card_bytes=card_bytes)
    off = Offload("cxl", "cxl", "cxl", policy_applies=True)
    per_tier = host_bytes_per_tier(placement(off, policy, host, params), params)
    assert sum(per_tier.values()) == pytest.approx(20 * params)  # nothing lost or doubled
    fits, why = check_capacity(per_tier, host)
    over = [t for t, b in per_tier.items() if b > host.capacity(t) * (1 + 1e-9)]
    assert fits == (not over) and (why == "fits") == (not over)
    if policy == "cxl-aware" and 20 * params <= (dram + cards * card_bytes) * (1 - 1e-9):
        assert fits  # it spills until every tier is full before giving up


def test_dpu_hides_the_cpu_step_and_nvme_is_slower() -> None:
    common: dict[str, Any] = {"zero": 2, "global_batch": 64}
    plain = estimate_training("llama2-7b", "dgx-h100", 8, offload="cpu", **common)
    dpu = estimate_training("llama2-7b", "dgx-h100", 8, offload="cpu", offload_dpu=True, **common)
    nvme = estimate_training("llama2-7b", "dgx-h100", 8, offload="nvme", **common)
    assert dpu.offload_s < plain.offload_s and dpu.cpu_optimizer_s == plain.cpu_optimizer_s
    assert nvme.offload_s > plain.offload_s and nvme.host_bytes_per_tier["nvme"] > 0


def test_offload_sweeps_over_sequence_length() -> None:
    r = estimate_training("llama2-7b", "dgx-h100", 8, zero=2, global_batch=64, seq_len=[2048, 8192], offload="cpu")
    assert np.shape(r.step_time_s) == (2,) and np.all(np.asarray(r.offload_s) > 0)


def test_paper_ordering_7b_and_13b_at_4k_to_32k() -> None:
    # Liaw and Chen (arXiv 2507.03305): CXL-aware recovers 97-99% of DRAM-only with one card and
    # ~100% with two, up to 21% over naive interleaving. Reproduced: the ordering everywhere, and the
    # figures within 2 points at 16K-32K (at 4K-8K an H100 finishes its compute before a x8 card
    # has moved the gradients, and the gap is wider than the paper's slower single-GPU setup)
    rows = compare_policies(models=("llama2-7b", "llama2-13b"), seq_lens=(4096, 8192, 16384, 32768))
    by = {(r["model"], r["seq_len"], r["cxl_cards"], r["policy"]): r["of_dram_only"] for r in rows}
    for model in ("llama2-7b", "llama2-13b"):
        for seq in (4096, 8192, 16384, 32768):
            for cards in (1, 2):
                aware, naive = by[(model, seq, cards, "cxl-aware")], by[(model, seq, cards, "interleave")]
                assert naive < aware <= 1.0
            assert by[(model, seq, 2, "cxl-aware")] > by[(model, seq, 1, "cxl-aware")]
        for seq in (16384, 32768):
            assert by[(model, seq, 1, "cxl-aware")] >= 0.95
            assert by[(model, seq, 2, "cxl-aware")] >= 0.98


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("ram", "unknown offload 'ram'"),
        ({"adam": "cpu"}, "unknown offload tensor 'adam' \\(allowed: optimizer, master, gradients\\)"),
        ({"optimizer": "cpu", "master": "disk", "gradients": "cpu"}, "unknown offload tier 'disk'"),
        ({"optimizer": "cpu"}, "master, gradients left on the gpu"),
        (3, "offload must be"),
    ],
)
def test_bad_offload_specs(spec: object, match: str) -> None:
    with pytest.raises(InvalidSpecError, match=match):
        parse_offload(spec)


def test_bad_inputs_in_estimate_training() -> None:
    with pytest.raises(InvalidSpecError, match="unknown offload policy 'fast'"):
        estimate_training("llama2-7b", "dgx-h100", 8, offload="cxl", offload_policy="fast", cxl_cards=1)
    with pytest.raises(InvalidSpecError, match="needs CXL memory"):
        estimate_training("llama2-7b", "dgx-h100", 8, offload="cxl")
    with pytest.raises(InvalidSpecError, match="host of a node"):
        estimate_training("llama2-7b", "tpu-v5p", 8, offload="cpu")
    with pytest.raises(UnknownIdError, match="not a CXL memory device"):
        estimate_training("llama2-7b", "dgx-h100", 8, offload="cxl", cxl_cards=1, cxl_device="nvme-gen4")
    # offload="cxl" with dram-only never touches the cards, so it needs none
    assert estimate_training("llama2-7b", "dgx-h100", 8, offload="cxl", offload_policy="dram-only").fits


def test_auto_offload_takes_the_fastest_placement_that_fits() -> None:
    """llama2-13b on one H100 needs 237 GB with Adam on the GPU (72 GB usable): "auto" moves the
    optimizer, master weights and gradients to host DRAM (the DGX H100's 2 TB / 8 GPUs holds
    them), and the result says where every tensor went. llama3.1-8b on 8 GPUs fits on the device,
    and on-device Adam beats any offload, so "auto" keeps it there."""
    from planner.training import estimate_training

    kw = dict(global_batch=8, seq_len=4096, recompute="full")
    big = estimate_training("llama2-13b", "dgx-h100", 1, offload="auto", **kw)
    assert big.fits and big.offload == {"optimizer": "cpu", "master": "cpu", "gradients": "cpu"}
    assert set(big.tier_placement_bytes) == {"hbm", "host-dram"}
    host = big.tier_placement_bytes["host-dram"]
    assert sum(host.values()) == pytest.approx(big.host_bytes_per_tier["dram"])
    hbm = big.tier_placement_bytes["hbm"]
    assert sum(hbm.values()) == pytest.approx(big.memory_per_device_bytes)
    small = estimate_training("llama3.1-8b", "dgx-h100", 8, offload="auto", **kw)
    assert small.offload is None
    assert small.step_time_s <= estimate_training("llama3.1-8b", "dgx-h100", 8, offload="cpu", **kw).step_time_s
    with pytest.raises(InvalidSpecError, match="one scenario"):
        estimate_training("llama3.1-8b", "dgx-h100", 8, offload="auto", seq_len=np.array([1024, 2048]))
