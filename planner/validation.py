"""Compare the model with published measurements (validation/measurements.yaml).

Each row carries its configuration, the measured value and its source. The runner turns the
configuration into an estimate call, reports prediction and signed error, and summarises the
median and p90 absolute error per category. Rows whose configuration leaves out what the model
needs (e.g. no device count) are listed as not evaluable with the missing field; rows whose
measurement set an efficiency parameter are `calibration` rows: shown, but kept out of the
summary, since predicting them is not a test of the model.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hardware_db.errors import InvalidSpecError, PlannerError
from hardware_db.loader import read_yaml
from planner.catalog import Catalog, load_catalog
from planner.framework_memory import framework_of, torchtitan_pipeline
from workloads.schema import ModelSpec

VALIDATION_FILE = Path(__file__).resolve().parent.parent / "validation" / "measurements.yaml"
# Further tables read with it by default: rows of one provenance whose `group` keeps them out of the
# main summary lines (they get their own, and an "all" line beside): validation/README.md.
GROUPED_FILES = (VALIDATION_FILE.parent / "inferencemax-gptoss.yaml",)
CATEGORIES = (
    "gemm",
    "moe-kernel",
    "attention",
    "memory-bandwidth",
    "collective",
    "training",
    "inference",
    "memory",
    "energy",
)


@dataclass(frozen=True)
class ValidationRow:
    id: str
    category: str
    metric: str
    hardware: str
    measured: float
    predicted: float | None
    error: float | None  # signed, (predicted - measured) / measured
    status: str  # ok, calibration, not evaluable: <why>
    source: str
    group: str = ""  # a provenance group summarised apart (GROUPED_FILES); "" for the main table

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CategorySummary:
    category: str
    rows: int
    evaluated: int
    median_abs_error: float
    p90_abs_error: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class NotEvaluable(Exception):
    pass


def _need(cfg: dict[str, Any], *keys: str) -> list[Any]:
    missing = [k for k in keys if cfg.get(k) is None]
    if missing:
        raise NotEvaluable(f"config does not state {', '.join(missing)}")
    return [cfg[k] for k in keys]


def inline_model(name: str, arch: dict[str, Any]) -> ModelSpec:
    """A model given only by its shape in a paper's table. A 4h non-gated FFN means the GPT-3 /
    Megatron GPT family (LayerNorm, GeLU, learned positions, biases, tied embeddings); anything
    else is taken as Llama-style (RMSNorm, SwiGLU, RoPE, untied)."""
    h, heads = int(arch["hidden_size"]), int(arch["heads"])
    gpt = int(arch["ffn_size"]) == 4 * h
    fields: dict[str, Any] = {
        "id": name,
        "name": name,
        "family": "gpt" if gpt else "llama",
        "source": "validation row model_arch",
        "layers": int(arch["layers"]),
        "hidden_size": h,
        "vocab_size": int(arch["vocab_size"]),
        "tied_embeddings": gpt,
        "max_seq_len": int(arch.get("seq_len") or 2048),
        "norm": "layernorm" if gpt else "rmsnorm",
        "position": "learned" if gpt else "rope",
        "attention": {
            "kind": "mha",
            "heads": heads,
            "kv_heads": heads,
            "head_dim": int(arch.get("head_dim") or h // heads),
            "qkv_bias": gpt,
            "out_bias": gpt,
        },
        "ffn": {"size": int(arch["ffn_size"]), "activation": "gelu" if gpt else "silu", "gated": not gpt, "bias": gpt},
    }
    return ModelSpec.model_validate(fields)


def _hardware(cfg: dict[str, Any]) -> str:
    return str(cfg.get("system") or cfg.get("hardware"))


def _gemm(cfg: dict[str, Any], metric: str, row: dict[str, Any], catalog: Catalog) -> float:
    from planner.kernels import estimate_gemm

    hw, m, n, k = _need(cfg, "hardware", "m", "n", "k")
    return float(estimate_gemm(hw, m, n, k, cfg.get("precision") or "bf16", catalog).achieved_flops_per_s)


def _moe_kernel(cfg: dict[str, Any], metric: str, row: dict[str, Any], catalog: Catalog) -> float:
    """A fused-MoE kernel benchmark: a grouped GEMM alone (`groups`, `m`, `n`, `k`) or one MoE
    layer's routed experts (`model`, or `moe_shape` for a layer no catalogue model has; `tokens`,
    `ep` or `expert_tp`)."""
    from planner.kernels import estimate_grouped_gemm, estimate_moe_layer

    hw = str(_need(cfg, "hardware")[0])
    if cfg.get("groups") is not None:
        g, m, n, k = _need(cfg, "groups", "m", "n", "k")
        r = estimate_grouped_gemm(hw, g, m, n, k, cfg.get("precision") or "bf16", catalog)
    else:
        (tokens,) = _need(cfg, "tokens")
        shape = cfg.get("moe_shape")
        model = _moe_shape(shape) if shape else _need(cfg, "model")[0]
        r = estimate_moe_layer(
            hw,
            model,
            tokens,
            ep=int(cfg.get("ep") or 1),
            expert_tp=int(cfg.get("expert_tp") or 1),
            weight_precision=_precision(cfg.get("weight_precision")) or "bf16",
            activation_precision=_precision(cfg.get("activation_precision")) or "bf16",
            matmul_precision=_precision(cfg.get("matmul_precision")),
            catalog=catalog,
        )
    return float(r.time_s if metric == "time_s" else r.achieved_flops_per_s)


def _moe_shape(shape: Any) -> Any:
    from planner.kernels import MoeShape

    keys = ("experts", "top_k", "hidden_size", "expert_ffn_size")
    if not isinstance(shape, dict) or any(k not in shape for k in keys) or set(shape) - {*keys, "gated", "name"}:
        raise InvalidSpecError(f"moe_shape needs {', '.join(keys)} (and optionally gated, name); got {shape!r}")
    return MoeShape(**shape)


def _attention(cfg: dict[str, Any], metric: str, row: dict[str, Any], catalog: Catalog) -> float:
    from planner.kernels import estimate_attention

    hw, b, heads, s, d = _need(cfg, "hardware", "batch", "heads", "seq_len", "head_dim")
    r = estimate_attention(
        hw,
        b,
        heads,
        s,
        d,
        cfg.get("kv_heads"),
        bool(cfg.get("causal", True)),
        cfg.get("pass") or "forward",
        cfg.get("precision") or "bf16",
        catalog,
        kernel=_kernel_id(cfg.get("kernel")),
    )
    return float(r.achieved_flops_per_s)


def _kernel_id(name: str | None) -> str | None:
    """A source's kernel name ('FlashAttention-2 (ROCm)') as the catalogue's id ('flash-attention-2');
    the ROCm port is the same algorithm, so the family's entry for it applies."""
    if not name:
        return None
    return name.lower().replace("(rocm)", "").strip().replace("flashattention", "flash-attention")


def _memory(cfg: dict[str, Any], metric: str, row: dict[str, Any], catalog: Catalog) -> float:
    from planner.kernels import estimate_memory_copy

    hw, size = _need(cfg, "hardware", "bytes")
    moved = size * {"copy": 2, "read": 1, "triad": 3}.get(cfg.get("op") or "copy", 2)
    return float(estimate_memory_copy(hw, moved, catalog).achieved_bytes_per_s)


def _collective(cfg: dict[str, Any], metric: str, row: dict[str, Any], catalog: Catalog) -> float:
    from planner.kernels import estimate_collective

    _need(cfg, "hardware", "devices", "op", "bytes")
    algo = cfg.get("algorithm") or "auto"
    algo = {"nvls": "in-network", "sharp": "in-network"}.get(algo, algo)
    r = estimate_collective(_hardware(cfg), int(cfg["devices"]), cfg["op"], float(cfg["bytes"]), algo, catalog)
    return float(r.busbw_bytes_per_s if metric == "busbw_bytes_per_s" else r.algbw_bytes_per_s)


def _training_result(cfg: dict[str, Any], catalog: Catalog) -> Any:
    """The training estimate for a row's configuration (training and memory rows)."""
    from planner.catalog import resolve_model
    from planner.training import estimate_training

    _need(cfg, "model", "devices", "seq_len")
    if cfg.get("tp") is None and cfg.get("pp") is None and cfg.get("dp") is None and cfg["devices"] > 8:
        raise NotEvaluable("config does not state tp, pp or dp")
    tp, pp, cp = int(cfg.get("tp") or 1), int(cfg.get("pp") or 1), int(cfg.get("cp") or 1)
    model = (
        inline_model(cfg["model"], cfg["model_arch"]) if cfg.get("model_arch") else resolve_model(cfg["model"], catalog)
    )
    dp = int(cfg["devices"]) // (tp * pp * cp)
    framework = framework_of(cfg.get("framework"))
    mb, v, first_layers = _pipeline_layout(cfg, model, framework, pp, dp)
    # a memory row may leave the global batch out: one micro-batch per pipeline stage in flight
    gb = int(cfg.get("global_batch") or mb * max(dp, 1) * max(pp, 1))
    if gb % (mb * max(dp, 1)):
        raise NotEvaluable(f"global batch {gb} is not a multiple of micro_batch x dp ({mb} x {dp})")
    return estimate_training(
        model,
        _hardware(cfg),
        int(cfg["devices"]),
        tp=tp,
        pp=pp,
        cp=cp,
        ep=int(cfg.get("ep") or 1),
        zero=int(cfg["zero"]) if cfg.get("zero") is not None else 1,
        micro_batch=mb,
        global_batch=gb,
        seq_len=int(cfg["seq_len"]),
        recompute=cfg.get("recompute") or "none",
        virtual_stages=v,
        sequence_parallel=cfg.get("sequence_parallel"),
        precision=cfg.get("precision") or "bf16",
        catalog=catalog,
        attention_kernel=cfg.get("attention_kernel"),
        dp_overlap=cfg.get("dp_overlap", True),
        framework=framework,
        first_stage_layers=first_layers,
    )


def _pipeline_layout(
    cfg: dict[str, Any], model: ModelSpec, framework: str | None, pp: int, dp: int
) -> tuple[int, int, Any]:
    """Micro-batch size, virtual stages and layers on the first pipeline rank. A torchtitan row
    with PP and no micro-batch size follows torchtitan's defaults at its published commit
    (pipelining_utils.build_pipeline_schedule: `n_microbatches = num_total_stages` when unset, the
    local batch split evenly; generate_split_points: 2 stages per rank for interleaved schedules)."""
    v = int(cfg.get("virtual_stages") or 1)
    first = cfg.get("first_stage_layers")
    if cfg.get("micro_batch") is None and framework == "torchtitan" and pp > 1 and cfg.get("global_batch"):
        interleaved = "interleaved" in str(cfg.get("framework")).lower()
        v, layers = torchtitan_pipeline(model.layers, pp, interleaved)
        local = int(cfg["global_batch"]) // max(dp, 1)
        return max(local // (pp * v), 1), v, first or layers
    return int(cfg.get("micro_batch") or 1), v, first


def _training(cfg: dict[str, Any], metric: str, row: dict[str, Any], catalog: Catalog) -> float:
    from planner.catalog import resolve_model
    from planner.training import model_flops_per_token

    _need(cfg, "global_batch")
    r = _training_result(cfg, catalog)
    model = (
        inline_model(cfg["model"], cfg["model_arch"]) if cfg.get("model_arch") else resolve_model(cfg["model"], catalog)
    )
    per_device = float(r.tokens_per_s) / r.devices
    if metric == "flops_per_s_per_device":
        flops = float(model_flops_per_token(model, r.seq_len)) * per_device
        # Narayanan et al. 2021 count the recomputed forward too (their 96 B s l h^2 formula)
        return flops * (4.0 / 3.0 if r.recompute == "full" and "Narayanan" in row.get("source", "") else 1.0)
    values = {
        "mfu": float(r.mfu),
        "step_time_s": float(r.step_time_s),
        "tokens_per_s": float(r.tokens_per_s),
        "tokens_per_s_per_device": per_device,
    }
    if metric not in values:
        raise NotEvaluable(f"training metric '{metric}' is not modelled")
    return values[metric]


# Engines named in a source as the catalogue's scheduler models. NVIDIA NIM's optimised profiles
# for its LLM containers on data-centre GPUs run TensorRT-LLM (the NIM docs' "TRT-LLM" profiles).
_ENGINE_ALIASES = {
    "nim": "trtllm",
    "tensorrt-llm": "trtllm",
    "trt-llm": "trtllm",
    "trtllm": "trtllm",
    "vllm": "vllm",
    "vllm-v0": "vllm-v0",
    "sglang": "sglang",
}
# The statistic a source reports, as the result field that models it.
_TTFT_FIELDS = {"mean": "ttft_s", "median": "ttft_p50_s", "p50": "ttft_p50_s", "p90": "ttft_p90_s", "p99": "ttft_p99_s"}
# MXFP4 (OCP microscaling) is FP4 E2M1 with block scales: the tensor cores' fp4 path.
_PRECISION_ALIASES = {"mxfp4": "fp4", "nvfp4": "fp4"}


def _engine_of(framework: str | None) -> str:
    """The engine a row's framework names (rows written before the `engine` key); vLLM otherwise."""
    text = (framework or "").lower()
    return next((e for key, e in (("tensorrt", "trtllm"), ("sglang", "sglang")) if key in text), "vllm")


def _precision(name: str | None) -> str | None:
    return _PRECISION_ALIASES.get(name, name) if name else None


def _poll_interval(cfg: dict[str, Any]) -> int:
    """Iterations between a scheduler's admissions of new prompts, from a row's server flags.
    SGLang looks every --scheduler-recv-interval loop iterations. Its --num-continuous-decode-steps
    (set by InferenceMAX's AMD scripts) is inert since the overlap scheduler (SGLang PR #2095,
    Nov 2024, removed the loop that read it; 0.5.9's python/ reads it nowhere), so it is ignored.
    TensorRT-LLM's batch waiting (PyExecutor._waiting_requests) counts every iteration and
    releases the waiting prompts when the count reaches batch_wait_timeout_iters (then restarts
    it) or when the iteration's tokens reach
    batch_wait_max_tokens_ratio x max_num_tokens; the rows that set it (64-255 clients, 1k/1k)
    gather 2-3 prompts of ~1k tokens per 41 iterations, far below that threshold, so the
    timeout sets the pace. With attention DP and enable_balance (PyExecutor._balance_adp_requests)
    context requests wait until every DP rank has one, or until a count kept every iteration
    they do not reaches attention_dp_config.timeout_iters: at 16-32 requests per rank and ~1k
    output tokens a rank sees a new prompt every ~30-60 iterations, so all eight rarely hold one
    at once and the timeout sets the pace here too (an upper bound on the wait)."""
    timeout = cfg.get("batch_wait_timeout_iters") or cfg.get("adp_balance_timeout_iters")
    if timeout:
        return int(timeout) + 1
    return int(cfg.get("scheduler_recv_interval") or 1)


def _inference(cfg: dict[str, Any], metric: str, row: dict[str, Any], catalog: Catalog) -> float:
    from planner.inference import estimate_inference
    from planner.serving import ENGINES

    _need(cfg, "model", "devices", "input_len", "output_len")
    if cfg.get("request_rate"):
        raise NotEvaluable("open-loop rows at a request rate are not modelled yet (mean in-flight requests are)")
    devices = int(cfg["devices"])
    engine = _ENGINE_ALIASES.get(str(cfg.get("engine") or _engine_of(cfg.get("framework"))).lower(), "")
    engine = engine or str(cfg.get("engine") or "vllm").lower()
    if engine not in ENGINES:
        raise NotEvaluable(f"engine '{engine}' has no scheduler model")
    common: dict[str, Any] = dict(
        tp=int(cfg.get("tp") or devices),
        pp=int(cfg.get("pp") or 1),
        ep=int(cfg.get("ep") or 1),
        input_len=cfg["input_len"],
        output_len=cfg["output_len"],
        weight_precision=_precision(cfg.get("weight_precision")) or "bf16",
        kv_precision=_precision(cfg.get("kv_precision")),
        matmul_precision=_precision(cfg.get("matmul_precision")),
        catalog=catalog,
        engine=engine,
        token_budget=cfg.get("token_budget"),
        num_prompts=cfg.get("num_prompts"),
        range_ratio=cfg.get("range_ratio") or 1.0,
        poll_interval=_poll_interval(cfg),
        eager_prefill=cfg.get("eager_prefill"),
        eager_decode=cfg.get("eager_decode"),
    )
    hw = _hardware(cfg)
    if cfg.get("concurrency"):
        r = estimate_inference(cfg["model"], hw, devices, concurrency=cfg["concurrency"], **common)
    elif cfg.get("batch"):
        r = estimate_inference(cfg["model"], hw, devices, batch=cfg["batch"], **common)
    else:  # a maximum-throughput benchmark (in-flight batching): as many requests as the KV cache holds
        probe = estimate_inference(cfg["model"], hw, devices, concurrency=1, **common)
        if probe.max_concurrency < 1:
            raise NotEvaluable("the model does not fit: " + probe.fit_reason)
        r = estimate_inference(cfg["model"], hw, devices, concurrency=probe.max_concurrency, **common)
    if metric == "tokens_per_s" and cfg.get("batch") == 1:  # one user's decode speed
        return 1.0 / float(r.tpot_s)
    statistic = str(cfg.get("statistic") or "mean")
    if metric == "ttft_s" and statistic not in _TTFT_FIELDS:
        raise NotEvaluable(f"TTFT statistic '{statistic}' is not modelled")
    if metric in ("prefill_latency_s", "decode_step_s") and not cfg.get("batch"):
        raise NotEvaluable(f"{metric} is one static batch's pass: give `batch`")
    if metric == "tpot_s" and statistic != "mean":
        raise NotEvaluable(f"TPOT statistic '{statistic}' is not modelled (the mean is)")
    values = {
        "throughput_tokens_per_s": float(r.throughput_tokens_per_s),
        "tokens_per_s": float(r.throughput_tokens_per_s),
        "tokens_per_s_per_device": float(r.throughput_tokens_per_s) / r.devices,
        "e2e_latency_s": float(r.e2e_latency_s),
        "tpot_s": float(r.tpot_s),
        "ttft_s": float(getattr(r, _TTFT_FIELDS.get(statistic, "ttft_s"))),
        "prefill_latency_s": float(r.ttft_s),  # a static batch's TTFT is its prefill pass
        "decode_step_s": float(r.tpot_s),  # a static batch's step at mid-output (a median step's context)
        "avg_power_w": float(r.avg_power_w),  # per device
        "energy_j_per_token": float(r.energy_j_per_token),
    }
    if metric not in values:
        raise NotEvaluable(f"inference metric '{metric}' is not modelled")
    return values[metric]


def _memory_footprint(cfg: dict[str, Any], metric: str, row: dict[str, Any], catalog: Catalog) -> float:
    """Peak memory per device, or whether a published setup fits (1) or ran out of memory (0)."""
    if (cfg.get("phase") or "training") == "inference":
        return _serving_memory(cfg, metric, catalog)
    r = _training_result(cfg, catalog)
    if metric == "peak_memory_bytes":
        # torch.cuda.max_memory_allocated, max_memory_reserved, or nvidia-smi: the reservation plus
        # the CUDA context and NCCL's buffers (planner.framework_memory.nvidia_smi_bytes)
        statistic = str(cfg.get("memory_statistic") or "max_allocated")
        if statistic == "nvidia-smi":
            from planner.framework_memory import megatron_communicators, nvidia_smi_bytes

            groups = megatron_communicators(r.devices, r.tp, r.pp, r.dp, r.cp, r.ep, bool(np.all(r.zero >= 1)))
            return float(nvidia_smi_bytes(r.memory_reserved_bytes, groups))
        return float(r.memory_reserved_bytes if statistic == "max_reserved" else r.memory_per_device_bytes)
    if metric == "fits":
        return 1.0 if bool(np.all(r.fits)) else 0.0
    raise NotEvaluable(f"memory metric '{metric}' is not modelled")


def _serving_memory(cfg: dict[str, Any], metric: str, catalog: Catalog) -> float:
    """A serving engine at start-up: weights, one iteration's workspace and at least one request of
    `max_model_len` tokens must fit (fits); the KV cache it then sets aside (kv_cache_tokens)."""
    from planner.inference import estimate_inference

    _need(cfg, "model", "devices")
    if float(cfg.get("gpu_memory_utilization") or 0.9) != 0.9:
        raise NotEvaluable("memory utilisation other than vLLM's default 0.9 is not a knob")
    devices = int(cfg["devices"])
    length = int(cfg.get("max_model_len") or 2048)
    engine = _ENGINE_ALIASES.get(str(cfg.get("engine") or _engine_of(cfg.get("framework"))).lower(), "vllm")
    r = estimate_inference(
        cfg["model"],
        _hardware(cfg),
        devices,
        tp=int(cfg.get("tp") or devices),
        ep=int(cfg.get("ep") or 1),
        concurrency=1,
        input_len=max(length - 1, 1),
        output_len=1,
        weight_precision=_precision(cfg.get("weight_precision")) or "bf16",
        kv_precision=_precision(cfg.get("kv_precision")),
        engine=engine,
        catalog=catalog,
    )
    if metric == "fits":
        return 1.0 if bool(np.all(r.fits)) and r.max_concurrency >= 1 else 0.0
    if metric == "kv_cache_tokens":
        return float(r.kv_cache_capacity_tokens or 0.0)
    raise NotEvaluable(f"memory metric '{metric}' is not modelled")


_PREDICTORS = {
    "gemm": _gemm,
    "moe-kernel": _moe_kernel,
    "attention": _attention,
    "memory-bandwidth": _memory,
    "collective": _collective,
    "training": _training,
    "inference": _inference,
    "memory": _memory_footprint,
    "energy": _inference,  # board power and energy per token of a serving run (planner.power)
}


def predict(row: dict[str, Any], catalog: Catalog) -> float:
    fn = _PREDICTORS.get(row["category"])
    if fn is None:
        raise NotEvaluable(f"category '{row['category']}' is not modelled")
    return fn(row["config"], row["metric"], row, catalog)


def _error(row: dict[str, Any], predicted: float) -> float:
    """Signed relative error; a fit/OOM fact is right (0) or wrong (1)."""
    if row["metric"] == "fits":
        return 0.0 if predicted == float(row["measured"]) else 1.0
    return predicted / float(row["measured"]) - 1.0


def load_rows(path: Path | None = None) -> list[dict[str, Any]]:
    """The rows of `path`, or of the main table and every grouped one."""
    rows: list[dict[str, Any]] = []
    for p in (path,) if path is not None else (VALIDATION_FILE, *GROUPED_FILES):
        data = read_yaml(p)
        mine = data.get("rows")
        if not isinstance(mine, list):
            raise InvalidSpecError(f"{p}: expected a top-level 'rows' list")
        rows += mine
    return rows


def run_validation(
    path: Path | None = None, catalog: Catalog | None = None
) -> tuple[list[ValidationRow], list[CategorySummary]]:
    cat = catalog or load_catalog()
    results = []
    for row in load_rows(path):
        cfg = row.get("config", {})
        predicted: float | None = None
        error: float | None = None
        try:
            predicted = predict(row, cat)
            error = _error(row, predicted)
            status = "calibration" if row.get("calibration") else "ok"
        except NotEvaluable as e:
            status = f"not evaluable: {e}"
        except PlannerError as e:
            status = f"not evaluable: {e}"
        if predicted is not None and not math.isfinite(predicted):
            predicted, error, status = None, None, "not evaluable: non-finite prediction"
        results.append(
            ValidationRow(
                str(row["id"]),
                str(row["category"]),
                str(row["metric"]),
                _hardware(cfg),
                float(row["measured"]),
                predicted,
                error,
                status,
                str(row.get("source", "")),
                str(row.get("group") or ""),
            )
        )
    return results, summarise(results)


# Inference rows are also summarised per metric: TTFT, TPOT and throughput fail differently.
# Memory rows likewise: a peak in bytes, and fit/OOM facts (their "error" is the share called wrong).
SERVING_METRICS = {
    "inference ttft": ("inference", ("ttft_s",)),
    "inference tpot": ("inference", ("tpot_s",)),
    "inference prefill": ("inference", ("prefill_latency_s",)),
    "inference decode": ("inference", ("decode_step_s",)),
    "memory peak": ("memory", ("peak_memory_bytes",)),
    "memory fit": ("memory", ("fits",)),
}


def _group(c: str, rows: list[ValidationRow]) -> list[ValidationRow]:
    if c in SERVING_METRICS:
        category, metrics = SERVING_METRICS[c]
        return [r for r in rows if r.category == category and r.metric in metrics]
    return [r for r in rows if r.category == c]


def summarise(rows: list[ValidationRow]) -> list[CategorySummary]:
    """Median and p90 absolute error per category (and per serving metric) over the evaluation rows
    of the main table; where a provenance group adds rows to a line, that group's own line and the
    line of all rows together follow it ("inference ttft [gpt-oss sweep]", "inference ttft [all]")."""
    out = []
    groups = sorted({r.group for r in rows if r.group})
    for c in (*CATEGORIES, *SERVING_METRICS):
        every = _group(c, rows)
        main = [r for r in every if not r.group]
        if main:
            out.append(_summary(c, main))
        for g in groups:
            mine = [r for r in every if r.group == g]
            if mine:
                out += [_summary(f"{c} [{g}]", mine), _summary(f"{c} [all]", every)]
    return out


def _summary(name: str, rows: list[ValidationRow]) -> CategorySummary:
    errs = np.array([abs(r.error) for r in rows if r.status == "ok" and r.error is not None])
    return CategorySummary(
        name,
        len(rows),
        len(errs),
        float(np.median(errs)) if errs.size else float("nan"),
        float(np.percentile(errs, 90)) if errs.size else float("nan"),
    )
