"""The analytical engine against hand-computed values and physical invariants."""

from __future__ import annotations

import math
from dataclasses import fields, replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware_db.errors import InvalidSpecError
from planner.catalog import Catalog, resolve_model
from planner.cluster import DevicePerf, resolve_cluster
from planner.collectives import achieved_bandwidth, collective_time
from planner.evaluate import op_time
from planner.inference import estimate_inference
from planner.kernels import MoeShape, estimate_gemm, estimate_grouped_gemm, estimate_moe_layer
from planner.memory import weight_bytes_per_device
from planner.ops import Op, Precisions, Sharding, changed, phase_ops, routed_expert_ops
from planner.roofline import expected_row_tiles, gemm_shape_efficiency
from planner.training import estimate_training


def test_ring_all_reduce_by_hand(catalog: Catalog) -> None:
    cluster = resolve_cluster("dgx-h100", 8, catalog)
    n = 8
    bw = 450e9 * catalog.link("nvswitch-gen3").achieved_fraction  # type: ignore[operator]
    alpha = cluster.perf.efficiency.collective_base_latency_s + 2 * (n - 1) * cluster.scale_up.link.latency_s
    # 16 GiB: past the measured ramp, pure alpha-beta
    size = 2.0**34
    expected = alpha + 2 * (n - 1) / n * size / bw
    got = collective_time(cluster, "all-reduce", size, 8, algorithm="ring")
    assert float(got.time_s) == pytest.approx(expected, rel=1e-9)
    assert float(got.busbw_bytes_per_s) == pytest.approx(2 * (n - 1) / n * size / expected)
    # 1 GiB on 8 GPUs sits on a measured point of the ramp: 466.35 of 478.87 GB/s (0.974)
    size = 2.0**30
    wire = 2 * (n - 1) / n * size / bw
    got = collective_time(cluster, "all-reduce", size, 8, algorithm="ring")
    assert float(got.time_s) == pytest.approx(max(alpha + wire, wire / 0.974), rel=1e-9)


def test_mid_size_all_reduce_follows_the_measured_ramp(catalog: Catalog) -> None:
    """64 MiB on 8 A100: the Azure sweep's 72% of the large-buffer busbw, not the wire-rate alpha-beta
    (stas00's independent A100 sweep measured 171.5 GB/s there); an inference engine's own kernel
    takes buffers up to 8 MiB, so those keep the alpha-beta cost."""
    cluster = resolve_cluster("dgx-a100", 8, catalog)
    big = collective_time(cluster, "all-reduce", 2.0**34, 8)
    mid = collective_time(cluster, "all-reduce", 2.0**26, 8)
    assert float(mid.busbw_bytes_per_s) == pytest.approx(0.720 * float(big.busbw_bytes_per_s), rel=0.01)
    small = 4.0 * 2**20
    nccl = float(collective_time(cluster, "all-reduce", small, 8).time_s)
    engine = float(collective_time(cluster, "all-reduce", small, 8, engine_max_bytes=8 * 2**20).time_s)
    assert engine < nccl
    sizes = np.geomspace(1e3, 1e10, 200)
    times = collective_time(cluster, "all-reduce", sizes, 8).time_s
    assert np.all(np.diff(times) >= 0)  # a bigger buffer never finishes sooner


def test_ring_across_nodes_is_bounded_by_the_nics(catalog: Catalog) -> None:
    """16 H100 in two DGX nodes: each node's 8 x 400 Gb/s NICs carry the ring's boundary hops."""
    cluster = resolve_cluster("dgx-h100", 16, catalog)
    got = collective_time(cluster, "all-reduce", 2.0**34, 16, algorithm="ring")
    nic = achieved_bandwidth(cluster.scale_out)  # type: ignore[arg-type]
    assert got.bandwidth_bytes_per_s == pytest.approx(min(8 * nic, achieved_bandwidth(cluster.scale_up) * 8 / 7))


def test_amd_pair_gets_a_seventh_of_the_mesh(catalog: Catalog) -> None:
    pair = collective_time(resolve_cluster("mi300x", 2, catalog), "all-reduce", 2.0**32, 2, "ring")
    full = collective_time(resolve_cluster("mi300x", 8, catalog), "all-reduce", 2.0**32, 8, "ring")
    assert full.bandwidth_bytes_per_s == pytest.approx(7 * pair.bandwidth_bytes_per_s)


def test_decode_kv_bytes_by_hand(catalog: Catalog) -> None:
    """llama3.1-70b, tp=8: each rank holds 1 of 8 KV heads; a decode step reads batch x context x
    (K and V) x 128 dims x 2 bytes per layer, and appends the new token."""
    spec = catalog.model("llama3.1-70b")
    ops = phase_ops(spec, Sharding(tp=8), Precisions(), batch=4, seq_len=1000, phase="decode", context=2000)
    attn = next(o for o in ops if o.name == "attention")
    per_token_layer = 2 * 1 * 128 * 2
    assert attn.count == 80
    assert float(attn.kv_bytes) == pytest.approx(4 * 2000 * per_token_layer + 4 * per_token_layer)


def test_gemm_bounds_by_hand(catalog: Catalog) -> None:
    big = estimate_gemm("h100-sxm", 8192, 8192, 8192, "bf16", catalog)
    assert big.bound == "compute"
    perf = resolve_cluster("h100-sxm", 1, catalog).perf
    # the k loop at the large-GEMM rate, then the output's write (Hopper stores it after the loop)
    loop = 2 * 8192**3 / (989.4e12 * perf.gemm_fraction("bf16"))
    write = 8192 * 8192 * 2 / perf.memory_bandwidth_bytes_per_s
    assert big.time_s == pytest.approx(loop + write + perf.kernel_overhead_s)
    # at k = 256 the write is as long as the loop: TileLang's FP16 sweep on H800 (README 'Validation')
    short = estimate_gemm("h100-sxm", 8192, 8192, 256, "bf16", catalog)
    assert short.time_s == pytest.approx(loop / 32 + write + perf.kernel_overhead_s)
    assert 0.9 < write / (loop / 32) < 1.2
    # where the store overlaps the next tile's math (Blackwell's tensor memory) only the loop counts
    b200 = resolve_cluster("b200", 1, catalog).perf
    on_b200 = estimate_gemm("b200", 8192, 8192, 256, "bf16", catalog)
    moved = (2 * 8192 * 256 + 8192 * 8192) * 2  # A and B read, C written
    b200_loop = 2 * 8192**2 * 256 / b200.achieved_flops("bf16")
    assert on_b200.time_s == pytest.approx(
        max(b200_loop, moved / b200.memory_bandwidth_bytes_per_s) + b200.kernel_overhead_s
    )
    gemv = estimate_gemm("h100-sxm", 1, 8192, 8192, "bf16", catalog)
    assert gemv.bound == "memory"
    moved = 8192 * 8192 * 2 + (8192 + 8192) * 2
    assert gemv.time_s == pytest.approx(moved / perf.memory_bandwidth_bytes_per_s + perf.kernel_overhead_s)


def test_decode_gemm_streams_weights_like_cublas(catalog: Catalog) -> None:
    """Skinny GEMMs (decode, M = 1-64) read their weights at the STREAM (triad) bandwidth plus one
    kernel overhead, as cuBLAS does on H100: vllm-project/vllm PR #17126, bench_fp8_gemm.py
    (do_bench_cudagraph, torch-bf16, Llama-3.1-8B qkv N=6144 K=4096) reports 2.513 / 39.11 /
    160.59 TFLOP/s at M = 1 / 16 / 64, i.e. 2MNK / rate = 20.03 / 20.59 / 20.06 us."""
    # by hand: 6144 x 4096 bf16 weights + (K + N) x 2 bytes of activations, 3.35 TB/s x 0.887 (triad), + 3 us
    moved = 6144 * 4096 * 2 + (4096 + 6144) * 2
    expected = moved / (3.35e12 * 0.887) + 3e-6
    assert expected == pytest.approx(19.945e-6, rel=1e-4)
    one = estimate_gemm("h100-sxm", 1, 6144, 4096, "bf16", catalog)
    assert one.bound == "memory"
    assert float(one.time_s) == pytest.approx(expected, rel=1e-6)
    for m, tflops in ((1, 2.513), (16, 39.11), (64, 160.59)):
        measured = 2 * m * 6144 * 4096 / (tflops * 1e12)
        got = float(estimate_gemm("h100-sxm", m, 6144, 4096, "bf16", catalog).time_s)
        assert got == pytest.approx(measured, rel=0.05)  # still weight-bound, flat in M


def _poisson_row_tiles(mean: float, tile: int) -> float:
    """E[ceil(X / tile)], X ~ Poisson(mean), by summing the pmf (at least one tile)."""
    total, x = 0.0, 0
    while x < mean + 20 * math.sqrt(mean) + 20:
        pmf = math.exp(x * math.log(mean) - mean - math.lgamma(x + 1))  # in logs: exp(-mean) underflows
        total += pmf * math.ceil(x / tile)
        x += 1
    return max(total, 1.0)


def test_grouped_gemm_fills_the_units_with_every_groups_tiles() -> None:
    """A MoE layer's grouped GEMM: 32 rows per expert on a 512-wide TP8 shard of DeepSeek's
    experts (k 7168, 132 SMs, 128 x 128 tiles). As one plain GEMM it has 1 x 4 tiles, split 14
    ways in k: 56 of 132 units busy. Grouped with a fixed 32 rows per expert: a 32-row tile, no
    padding, and 256 experts x 4 tiles fill every unit; 8 experts fill 32 of 132. Routed, the rows
    are Poisson about 32, so an expert pays E[ceil(X / 32)] = 1.453 row tiles."""
    plain = gemm_shape_efficiency(32.0, 512.0, 7168.0, 132, 128, 128)
    assert plain == pytest.approx(4 * 14 / 132)
    assert gemm_shape_efficiency(32.0, 512.0, 7168.0, 132, 128, 128, 256.0) == pytest.approx(1.0)
    assert gemm_shape_efficiency(32.0, 512.0, 7168.0, 132, 128, 128, 8.0) == pytest.approx(32 / 132)
    # 48 rows pad to a 64-row tile: 0.75 of it is useful
    assert gemm_shape_efficiency(48.0, 512.0, 7168.0, 132, 128, 128, 256.0) == pytest.approx(0.75)
    tiles = _poisson_row_tiles(32.0, 32)
    assert tiles == pytest.approx(1.453, abs=1e-3)
    routed = gemm_shape_efficiency(32.0, 512.0, 7168.0, 132, 128, 128, 256.0, routed=True)
    assert routed == pytest.approx(1.0 / tiles, rel=1e-3)
    few = gemm_shape_efficiency(32.0, 512.0, 7168.0, 132, 128, 128, 8.0, routed=True)
    assert few == pytest.approx(1.0 / tiles * 8 * tiles * 4 / 132, rel=1e-3)


@settings(max_examples=60, deadline=None)
@given(mean=st.floats(1.0, 3000.0), tile=st.sampled_from([16, 32, 64, 128]))
def test_expected_row_tiles_is_the_poisson_sum(mean: float, tile: int) -> None:
    """roofline.expected_row_tiles (a normal form of the Poisson tail, numpy only) against the
    pmf summed term by term."""
    got = float(expected_row_tiles(np.array(mean), np.array(float(tile))))
    assert got == pytest.approx(_poisson_row_tiles(mean, tile), rel=1e-3)


@settings(max_examples=60, deadline=None)
@given(
    m=st.floats(1.0, 20000.0),
    n=st.sampled_from([256.0, 512.0, 4096.0, 7168.0]),
    k=st.sampled_from([256.0, 2048.0, 7168.0]),
    groups=st.one_of(st.none(), st.floats(1.0, 512.0)),
)
def test_scalar_and_array_shape_efficiency_agree(m: float, n: float, k: float, groups: float | None) -> None:
    for routed in (False, True):
        scalar = gemm_shape_efficiency(m, n, k, 132, 128, 128, groups, routed)
        grouped = None if groups is None else np.array(groups)
        array = gemm_shape_efficiency(np.array([m, m]), n, k, 132, 128, 128, grouped, routed)
        assert np.allclose(array, scalar, rtol=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    m=st.sampled_from([1.0, 64.0, 1024.0, 8192.0]),
    n=st.sampled_from([512.0, 4096.0, 32768.0]),
    k=st.sampled_from([256.0, 1024.0, 7168.0]),
    hardware=st.sampled_from(["h100-sxm", "mi300x", "b200", "a100-sxm-80gb"]),
)
def test_output_write_adds_where_the_accumulators_sit_in_registers(
    catalog: Catalog, m: float, n: float, k: float, hardware: str
) -> None:
    """A GEMM takes its loop (math, or its reads) plus the family's exposed share of its output
    write: never less than with the write overlapped, at most that share of the write more, and a
    deeper GEMM of the same output never runs at a lower rate."""
    cluster = resolve_cluster(hardware, 1, catalog)
    perf = cluster.perf
    r = estimate_gemm(hardware, m, n, k, "bf16", catalog)
    # the same GEMM with no output write singled out: all its traffic overlaps its math
    op = Op("gemm", "gemm", 1, flops=2 * m * n * k, weight_bytes=k * n * 2, activation_bytes=(m * k + m * n) * 2)
    overlapped = float(op_time(cluster, changed(op, m=m, n=n, k=k), "bf16").time_s)
    write = m * n * 2 / perf.memory_bandwidth_bytes_per_s
    exposed = perf.efficiency.gemm.epilogue_exposed
    assert overlapped * (1 - 1e-9) <= float(r.time_s) <= overlapped + exposed * write + 1e-12
    deeper = estimate_gemm(hardware, m, n, 2 * k, "bf16", catalog)
    assert float(deeper.achieved_flops_per_s) >= float(r.achieved_flops_per_s) * (1 - 1e-9)


def test_grouped_gemm_and_moe_layer_by_hand(catalog: Catalog) -> None:
    """Four 8192 x 4096 x 7168 fp8 GEMMs (DeepGEMM's README shape) are compute bound at the fp8
    large-GEMM rate, then write their bf16 outputs; one token through DeepSeek's routed experts
    reads its 8 experts' weights."""
    perf = resolve_cluster("h100-sxm", 1, catalog).perf
    r = estimate_grouped_gemm("h100-sxm", 4, 8192, 4096, 7168, "fp8", catalog)
    assert r.bound == "compute"
    loop = 2 * 4 * 8192 * 4096 * 7168 / perf.achieved_flops("fp8")
    write = 4 * 8192 * 4096 * 2 / perf.memory_bandwidth_bytes_per_s
    assert r.time_s == pytest.approx(loop + write + perf.kernel_overhead_s)
    one = estimate_moe_layer("h100-sxm", "deepseek-r1", 1, weight_precision="fp8", catalog=catalog)
    assert one.bound == "memory"
    touched = 256 * (1 - (1 - 8 / 256) ** 1)  # = 8: the token's top-8
    weights = touched * 3 * 7168 * 2048  # gate, up and down, a byte each
    # the experts read and write their rows; permute and un-permute read and write each pair; top-k reads the logits
    acts = 8 * (2 * 7168 + 3 * 2048) * 2 + 2 * (8 * 7168 * 2 * 2) + 256 * 2 * 2
    casts = 8 * (7168 + 2048) * (2 + 1)  # fp8 math: each GEMM's bf16 input is quantised first
    assert one.bytes == pytest.approx(weights + acts + casts)
    # eight launches: top-k, permute, un-permute, and the experts' two casts, two GEMMs and activation
    assert one.time_s >= weights / perf.memory_bandwidth_bytes_per_s + 8 * perf.kernel_overhead_s
    assert (
        estimate_moe_layer("h100-sxm", "deepseek-r1", 4096, expert_tp=8, weight_precision="fp8", catalog=catalog).time_s
        > one.time_s
    )
    with pytest.raises(InvalidSpecError, match="no mixture-of-experts"):
        estimate_moe_layer("h100-sxm", "llama3.1-8b", 16, catalog=catalog)
    # a layer by shape is the same layer as the catalogue model's
    shape = MoeShape(experts=256, top_k=8, hidden_size=7168, expert_ffn_size=2048)
    by_shape = estimate_moe_layer("h100-sxm", shape, 1, weight_precision="fp8", catalog=catalog)
    assert by_shape.time_s == pytest.approx(one.time_s) and by_shape.bytes == pytest.approx(one.bytes)
    with pytest.raises(InvalidSpecError, match="top_k <= experts"):
        estimate_moe_layer("h100-sxm", MoeShape(8, 9, 4096, 14336), 16, catalog=catalog)
    # a W4A16 kernel does its math in bf16: slower than fp8 math once compute-bound
    w4 = dict(weight_precision="fp4", catalog=catalog)
    a16 = estimate_moe_layer("h20", shape, 65536, matmul_precision="bf16", **w4)
    a8 = estimate_moe_layer("h20", shape, 65536, matmul_precision="fp8", **w4)
    assert (a16.precision, a8.precision) == ("bf16", "fp8") and a16.time_s > 1.5 * a8.time_s


def _faster(perf: DevicePerf, flops_scale: float, bw_scale: float) -> DevicePerf:
    d = perf.device
    assert d.compute is not None
    compute = d.compute.model_copy(update={"peak_dense": {p: v * flops_scale for p, v in d.compute.peak_dense.items()}})
    memory = tuple(t.model_copy(update={"bandwidth_bytes_per_s": t.bandwidth_bytes_per_s * bw_scale}) for t in d.memory)
    return DevicePerf(d.model_copy(update={"compute": compute, "memory": memory}), perf.efficiency)


@settings(max_examples=40, deadline=None)
@given(
    tokens=st.integers(1, 65536),
    context=st.integers(1, 32768),
    flops_scale=st.floats(1.0, 4.0),
    bw_scale=st.floats(1.0, 4.0),
    phase=st.sampled_from(["prefill", "decode", "forward"]),
)
def test_more_flops_or_bandwidth_is_never_slower(
    catalog: Catalog, tokens: int, context: int, flops_scale: float, bw_scale: float, phase: str
) -> None:
    cluster = resolve_cluster("h100-sxm", 1, catalog)
    fast = replace(cluster, perf=_faster(cluster.perf, flops_scale, bw_scale))
    spec = catalog.model("mixtral-8x7b")
    for op in phase_ops(spec, Sharding(), Precisions(), 1, tokens, phase, context):  # type: ignore[arg-type]
        slow_t = op_time(cluster, op, "bf16").time_s
        fast_t = op_time(fast, op, "bf16").time_s
        assert np.all(fast_t <= slow_t * (1 + 1e-12)), op.name


@settings(max_examples=40, deadline=None)
@given(
    m=st.integers(1, 32768),
    n=st.integers(1, 32768),
    k=st.integers(1, 32768),
    hw=st.sampled_from(["h100-sxm", "a100-sxm-80gb", "mi300x", "b200", "tpu-v5p", "gaudi3", "l4"]),
)
def test_no_op_beats_its_roofline(catalog: Catalog, m: int, n: int, k: int, hw: str) -> None:
    r = estimate_gemm(hw, m, n, k, "bf16", catalog)
    dev = catalog.device(hw)
    assert r.time_s >= 2 * m * n * k / dev.peak_flops("bf16")  # type: ignore[operator]
    assert r.time_s >= r.bytes / dev.main_memory.bandwidth_bytes_per_s


@settings(max_examples=25, deadline=None)
@given(
    tp=st.sampled_from([1, 2, 4, 8]),
    pp=st.sampled_from([1, 2, 4]),
    mb=st.sampled_from([1, 2, 4]),
    seq=st.sampled_from([2048, 4096, 8192]),
    recompute=st.sampled_from(["none", "selective", "full"]),
)
def test_mfu_never_exceeds_one(catalog: Catalog, tp: int, pp: int, mb: int, seq: int, recompute: str) -> None:
    devices = 64
    dp = devices // (tp * pp)
    r = estimate_training(
        "llama3.1-8b",
        "h100-sxm",
        devices,
        tp=tp,
        pp=pp,
        micro_batch=mb,
        global_batch=dp * mb * 8,
        seq_len=seq,
        recompute=recompute,
        catalog=catalog,
    )
    assert 0 < r.mfu <= 1 and 0 < r.hfu <= 1


@given(
    model=st.sampled_from(["llama3.1-70b", "mixtral-8x7b", "deepseek-v3", "qwen3-32b", "gpt-oss-120b"]),
    tp=st.sampled_from([1, 2, 4, 8]),
)
def test_tp_never_increases_weight_bytes(catalog: Catalog, model: str, tp: int) -> None:
    spec = catalog.model(model)
    base = weight_bytes_per_device(spec, Sharding(tp=tp // 2 or 1), Precisions())
    assert weight_bytes_per_device(spec, Sharding(tp=tp), Precisions()) <= base


def test_serving_queue_grows_with_concurrency(catalog: Catalog) -> None:
    r = estimate_inference(
        "llama3.1-8b",
        "h100-sxm",
        1,
        concurrency=np.array([1, 8, 64, 256]),
        input_len=1024,
        output_len=256,
        catalog=catalog,
    )
    ttft, tpot, thr = (np.asarray(x) for x in (r.ttft_s, r.tpot_s, r.throughput_tokens_per_s))
    assert np.all(np.diff(tpot) > 0) and np.all(np.diff(ttft) > 0) and np.all(np.diff(thr) > 0)


def test_disaggregated_has_no_decode_interference(catalog: Catalog) -> None:
    agg = estimate_inference("llama3.1-70b", "h100-sxm", 16, tp=8, concurrency=64, catalog=catalog)
    dis = estimate_inference(
        "llama3.1-70b", "h100-sxm", 16, tp=8, concurrency=64, disaggregated=True, prefill_devices=8, catalog=catalog
    )
    assert dis.mode == "disaggregated" and dis.kv_transfer_s > 0
    assert dis.tpot_s == pytest.approx(dis.decode_step_s)
    assert agg.tpot_s > agg.decode_step_s


def test_spill_to_host_memory_is_slower_and_does_not_fit_when_nothing_holds_it(catalog: Catalog) -> None:
    fits = estimate_inference("llama3.1-70b", "h100-sxm", 8, tp=8, batch=1, catalog=catalog)
    spill = estimate_inference("llama3.1-70b", "h100-sxm", 1, batch=1, catalog=catalog)
    assert fits.fits and spill.fits and "spill" in spill.fit_reason
    assert spill.tpot_s > 10 * fits.tpot_s  # weights stream over PCIe from host DRAM
    huge = estimate_inference("llama3.1-405b", "l4", 1, batch=1, catalog=catalog)
    assert not huge.fits and "tiers hold" in huge.fit_reason


def test_sn40l_reads_spilled_weights_from_its_ddr(catalog: Catalog) -> None:
    r = estimate_inference("llama3.1-405b", "sn40l", 8, tp=8, batch=1, catalog=catalog)
    assert r.fits and "spill past hbm" in r.fit_reason


def test_infeasible_sharding_names_the_constraint(catalog: Catalog) -> None:
    with pytest.raises(InvalidSpecError, match=r"attention heads \(64\) is not divisible by tp \(3\)"):
        estimate_inference("llama3.1-70b", "h100-sxm", 3, tp=3, catalog=catalog)
    with pytest.raises(InvalidSpecError, match=r"ep=2 needs a mixture-of-experts model"):
        estimate_inference("llama3.1-8b", "h100-sxm", 2, tp=2, ep=2, catalog=catalog)
    with pytest.raises(InvalidSpecError, match=r"global batch .* must be a multiple of micro_batch x dp"):
        estimate_training("llama3.1-8b", "h100-sxm", 8, global_batch=12, catalog=catalog)


def test_training_memory_reports_what_does_not_fit(catalog: Catalog) -> None:
    r = estimate_training("llama3.1-70b", "h100-sxm", 8, tp=1, zero=0, global_batch=8, catalog=catalog)
    assert not r.fits and "weights" in r.fit_reason and "raise tp/pp/zero" in r.fit_reason
    z3 = estimate_training("llama3.1-70b", "h100-sxm", 64, tp=8, zero=3, global_batch=64, catalog=catalog)
    z1 = estimate_training("llama3.1-70b", "h100-sxm", 64, tp=8, zero=1, global_batch=64, catalog=catalog)
    assert z3.memory_per_device_bytes < z1.memory_per_device_bytes


def test_estimates_accept_arrays(catalog: Catalog) -> None:
    r = estimate_inference(
        "qwen3-8b", "h100-sxm", 1, batch=np.array([1, 4, 16]), input_len=np.array([512, 1024, 2048]), catalog=catalog
    )
    assert np.asarray(r.tpot_s).shape == (3,)
    t = estimate_training("llama3.1-8b", "h100-sxm", 8, global_batch=np.array([64, 128]), catalog=catalog)
    assert np.asarray(t.step_time_s).shape == (2,)


def test_public_api_matches_the_readme() -> None:
    import planner

    for name in (
        "estimate_inference",
        "estimate_training",
        "estimate_gemm",
        "estimate_attention",
        "estimate_collective",
        "load_catalog",
        "parameter_counts",
        "run_validation",
    ):
        assert callable(getattr(planner, name)), name
    with pytest.raises(AttributeError):
        _ = planner.no_such_function  # type: ignore[attr-defined]
    r = planner.estimate_inference(
        "qwen3-32b", "h200-sxm", 2, tp=2, concurrency=np.array([8, 32, 128]), input_len=2048, output_len=512
    )
    frame = r.to_frame()
    assert len(frame) == 3 and {"ttft_s", "tpot_s", "throughput_tokens_per_s"} <= set(frame.columns)


def test_attention_tile_efficiency_by_hand() -> None:
    from planner.roofline import attention_tile_efficiency

    # 2048 causal tokens = 16 tiles of 128: 16*17/2 = 136 tiles computed, plus one fill step per
    # query tile (16), for 2048*2049/2 useful scores
    assert attention_tile_efficiency(2048) == pytest.approx(2048 * 2049 / 2 / (152 * 128**2))
    # 8192 non-causal: 64*64 tiles + 64 fill steps
    assert attention_tile_efficiency(8192, causal=False) == pytest.approx(8192**2 / (4160 * 128**2))
    # unfused attention computes the whole (masked) score matrix
    assert attention_tile_efficiency(1000, materialised=True) == pytest.approx(1001 / 2000)
    # longer prompts waste less
    assert attention_tile_efficiency(16384) > attention_tile_efficiency(2048)


def test_attention_kernels_per_family(catalog: Catalog) -> None:
    from planner.kernels import estimate_attention

    def rate(hw: str, kernel: str | None, pass_: str = "forward") -> float:
        r = estimate_attention(hw, 2, 16, 8192, 128, causal=False, pass_=pass_, catalog=catalog, kernel=kernel)
        return float(r.achieved_flops_per_s)

    # Hopper's default (FlashAttention-3, wgmma) beats FlashAttention-2's Ampere-era mma.sync path
    assert rate("h100-sxm", None) > 1.5 * rate("h100-sxm", "flash-attention-2")
    assert rate("h100-sxm", None) == rate("h100-sxm", "flash-attention-3")
    # the backward runs at the kernel's backward efficiency: slower per FLOP than the forward
    assert rate("a100-sxm-80gb", None, "backward") < rate("a100-sxm-80gb", None, "forward")
    fb = rate("a100-sxm-80gb", None, "forward+backward")
    assert rate("a100-sxm-80gb", None, "backward") < fb < rate("a100-sxm-80gb", None, "forward")
    # materialising the scores is memory-bound and far slower
    assert rate("a100-sxm-80gb", "unfused") < 0.5 * rate("a100-sxm-80gb", None)
    with pytest.raises(InvalidSpecError, match=r"not modelled on a100-sxm-80gb .*allowed: flash-attention-2, unfused"):
        rate("a100-sxm-80gb", "flash-attention-3")


def test_unfused_attention_in_training(catalog: Catalog) -> None:
    kw = dict(devices=8, tp=8, global_batch=8, seq_len=2048, zero=0, catalog=catalog)
    fused = estimate_training("llama3.1-8b", "a100-sxm-80gb", recompute="none", **kw)  # type: ignore[arg-type]
    unfused = estimate_training(
        "llama3.1-8b",
        "a100-sxm-80gb",
        recompute="none",
        attention_kernel="unfused",
        **kw,  # type: ignore[arg-type]
    )
    assert fused.attention_kernel == "flash-attention-2" and unfused.attention_kernel == "unfused"
    assert float(unfused.step_time_s) > float(fused.step_time_s)
    # Korthikanti's 5as^2b: softmax output, dropout mask and dropout output per score, per layer
    a = 32 / 8  # heads per rank
    scores = 5 * a * 2048**2 * 1
    assert float(unfused.memory_per_device_bytes) - float(fused.memory_per_device_bytes) == pytest.approx(
        scores * 32, rel=1e-6
    )
    # selective recompute drops exactly that term
    sel = estimate_training(
        "llama3.1-8b",
        "a100-sxm-80gb",
        recompute="selective",
        attention_kernel="unfused",
        **kw,  # type: ignore[arg-type]
    )
    assert float(sel.memory_per_device_bytes) == pytest.approx(float(fused.memory_per_device_bytes))


def test_gradient_reduction_after_the_flush_is_fully_exposed(catalog: Catalog) -> None:
    kw = dict(devices=64, tp=8, global_batch=64, seq_len=2048, zero=0, catalog=catalog)
    under = estimate_training("llama3.1-8b", "dgx-h100", **kw)  # type: ignore[arg-type]
    after = estimate_training("llama3.1-8b", "dgx-h100", dp_overlap=False, **kw)  # type: ignore[arg-type]
    assert float(after.dp_comm_exposed_s) > float(under.dp_comm_exposed_s) > 0
    assert float(after.step_time_s) - float(under.step_time_s) == pytest.approx(
        float(after.dp_comm_exposed_s) - float(under.dp_comm_exposed_s)
    )


def test_tp_overlap_hides_tp_collectives_under_their_gemms(catalog: Catalog) -> None:
    """Chunked over tp, what outlasts the GEMMs is max(c, g) + min(c, g) / tp - g: never more than
    the unoverlapped collectives, never less than one chunk of them."""
    kw = dict(tp=8, pp=2, global_batch=512, seq_len=4096, catalog=catalog)
    plain = estimate_training("llama3.1-70b", "h100-sxm", 64, **kw)
    over = estimate_training("llama3.1-70b", "h100-sxm", 64, tp_overlap=True, **kw)
    assert over.step_time_s < plain.step_time_s
    assert plain.tp_comm_s / 8 <= over.tp_comm_s < plain.tp_comm_s
    one = estimate_training("llama3.1-70b", "h100-sxm", 64, tp=1, dp=64, zero=3, global_batch=512, catalog=catalog)
    same = estimate_training(
        "llama3.1-70b", "h100-sxm", 64, tp=1, dp=64, zero=3, global_batch=512, tp_overlap=True, catalog=catalog
    )
    assert same.step_time_s == one.step_time_s  # nothing to overlap without TP


@settings(max_examples=40, deadline=None)
@given(chosen=st.sets(st.sampled_from([f.name for f in fields(Op)[4:]])), value=st.floats(0.0, 1e9))
def test_op_init_sets_what_is_given_and_the_defaults(chosen: set[str], value: float) -> None:
    """Op's own __init__ (a dict update, for speed) builds what the dataclass's would: every field
    given is set, every other one holds its declared default (a fresh dict for extra)."""
    given_ = {name: ({"v": value} if name == "extra" else value) for name in chosen}
    op = Op("x", "gemm", 2.0, 1.0, **given_)
    for f in fields(Op)[4:]:
        default = {} if f.name == "extra" else f.default
        assert getattr(op, f.name) == given_.get(f.name, default), f.name
    assert (op.name, op.op_class, op.count, op.flops) == ("x", "gemm", 2.0, 1.0)
    assert Op("y", "gemm", 1.0, 0.0).extra is not Op("z", "gemm", 1.0, 0.0).extra
    with pytest.raises(TypeError):
        Op("x", "gemm", 1.0, 0.0, no_such_field=1)
    with pytest.raises(AttributeError):
        op.m = 3.0  # type: ignore[misc]


@settings(max_examples=30, deadline=None)
@given(
    field=st.sampled_from(["engine_max_bytes", "internode_share", "cast_bytes", "kernels", "name"]),
    value=st.one_of(st.floats(0.0, 1e9), st.text(min_size=1, max_size=8)),
)
def test_changed_is_dataclasses_replace(field: str, value: object) -> None:
    """ops.changed stands in for dataclasses.replace on the hot paths: the same op, fields and all."""
    op = Op("x", "comm", 2, flops=0.0, activation_bytes=np.arange(3.0), comm="all-reduce", extra={"a": 1.0})
    assert changed(op, **{field: value}) == replace(op, **{field: value})
    with pytest.raises(TypeError):
        changed(op, no_such_field=1)


def test_uniform_routing_still_waits_for_the_busiest_ep_rank(catalog: Catalog) -> None:
    """DeepSeek-V3 decode at 4 tokens per rank over TP8 x EP8: the group's 256 routed pairs land on
    8 ranks at random, a binomial count of mean 32 and variance 256 x (7/8) / 8 = 28 per rank; the
    busiest of 8 normals sits 1.434 sd above the mean (Blom), so 32 + 1.434 x 5.29 = 39.6 pairs,
    1.237x. Each rank's 32 experts are touched with probability 1 - (1 - 8/256)^32 = 0.638 (20.4 of
    them, variance 20.4 x 0.362): the busiest touches 24.3, 1.19x the weights. A single-device
    kernel benchmark of one shard times a typical rank instead."""
    moe = resolve_model("deepseek-v3", catalog).moe
    p = Precisions("fp8", "bf16")
    t = np.asarray(32.0)  # tokens entering the layer on one rank before the TP split (4 per rank)

    def experts(busiest: bool) -> Op:
        s = Sharding(tp=8, ep=8, busiest_ep_rank=busiest)
        return next(op for op in routed_expert_ops(moe, 7168, True, s, p, t, 1.0) if op.name == "experts")

    busy, typical = experts(True), experts(False)
    share = 1 - (1 - 8 / 256) ** 32
    touched = 32 * share
    assert float(typical.weight_bytes) == pytest.approx(touched * 3 * 7168 * 2048)
    assert float(busy.flops) / float(typical.flops) == pytest.approx((32 + 1.434 * math.sqrt(28)) / 32, rel=1e-3)
    busiest_touched = touched + 1.434 * math.sqrt(touched * (1 - share))
    assert float(busy.weight_bytes) / float(typical.weight_bytes) == pytest.approx(busiest_touched / touched, rel=1e-3)
    # the excess fades as tokens grow: prefill's thousands leave the ranks within a few percent
    ratios = []
    for tokens in (8.0, 64.0, 512.0, 8192.0, 65536.0):
        s = Sharding(tp=8, ep=8)
        op = next(o for o in routed_expert_ops(moe, 7168, True, s, p, np.asarray(tokens), 1.0) if o.name == "experts")
        mean = Sharding(tp=8, ep=8, busiest_ep_rank=False)
        ref = next(
            o for o in routed_expert_ops(moe, 7168, True, mean, p, np.asarray(tokens), 1.0) if o.name == "experts"
        )
        ratios.append(float(op.flops) / float(ref.flops))
    assert all(r >= 1.0 for r in ratios) and ratios == sorted(ratios, reverse=True) and ratios[-1] < 1.02
