"""`planner`: the command line. Thin: parses options, calls the API, prints tables, JSON or CSV.

Heavy libraries (pandas, plotly, pulp) are imported inside the commands that need them, never at
module level, so `planner --help` stays fast.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated, Any, NoReturn

import typer

from hardware_db.errors import PlannerError


class Format(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="table (human units), json or csv (SI units).")]
CatalogOpt = Annotated[
    str | None,
    typer.Option(
        "--catalog",
        metavar="DIR",
        envvar="PLANNER_CATALOG",
        help="Folder of your own YAML entries (same schema); merged over the built-ins.",
    ),
]

_WIDE = {"max_content_width": 110}  # examples in --help fit on one line

app = typer.Typer(
    name="planner",
    help="Analytical performance model and capacity planner for AI infrastructure.\n\n"
    "Example: planner hardware show h100-sxm",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: rich would add ~0.15 s to every `--help`
    context_settings=_WIDE,
    add_completion=True,
)
hardware_app = typer.Typer(
    help="Devices, links and systems in the catalogue.\n\nExample: planner hardware list --kind gpu",
    no_args_is_help=True,
)
models_app = typer.Typer(
    help="Model architectures in the catalogue, or from a config.json / YAML file.\n\n"
    "Example: planner models show llama3.1-70b",
    no_args_is_help=True,
)
estimate_app = typer.Typer(
    help="Estimates from the analytical model: inference and serving, training, one op, one collective.\n\n"
    "Example: planner estimate inference --model llama3.1-70b --hardware h100-sxm --devices 8 --tp 8",
    no_args_is_help=True,
)
app.add_typer(hardware_app, name="hardware")
app.add_typer(models_app, name="models")
plan_app = typer.Typer(
    help="Solvers: the best training plan, the cheapest serving deployment under SLOs.\n\n"
    "Example: planner plan training -m llama3.1-70b -H h100-sxm --devices 64 --global-batch 512",
    no_args_is_help=True,
    context_settings=_WIDE,
)
app.add_typer(estimate_app, name="estimate")
app.add_typer(plan_app, name="plan")
tco_app = typer.Typer(
    help="Cost of a deployment per hour and per million tokens (or per training run): owned (capex, energy at "
    "the estimated power, facility, maintenance, network) or rented.\n\n"
    "Example: planner tco inference -m llama3.1-70b -H h100-sxm --tp 8 --concurrency 64",
    no_args_is_help=True,
    context_settings=_WIDE,
)
app.add_typer(tco_app, name="tco")


def _catalog(catalog_dir: str | None) -> Any:
    from planner.catalog import load_catalog

    cat = load_catalog(catalog_dir)
    for notice in cat.notices:
        typer.echo(f"note: {notice}", err=True)
    return cat


def _emit(text: str | None) -> None:
    if text is not None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


@hardware_app.command("list")
def hardware_list(
    kind: Annotated[str | None, typer.Option(help="Only this kind: gpu, npu, tpu, rdu, cpu, cxl-memory, ssd.")] = None,
    fmt: FormatOpt = Format.table,
    catalog: CatalogOpt = None,
) -> None:
    """List devices with their headline figures (dense BF16, main memory, TDP).

    Example: planner hardware list --kind gpu --format csv
    """
    from hardware_db.schema import DeviceKind
    from planner.describe import device_row
    from planner.formatting import render_rows

    kinds = DeviceKind.__args__  # type: ignore[attr-defined]
    if kind is not None and kind not in kinds:
        raise PlannerError(f"unknown kind '{kind}' (allowed: {', '.join(kinds)})")
    rows = [device_row(d) for d in _catalog(catalog).devices.values() if kind is None or d.kind == kind]
    _emit(render_rows(rows, fmt.value, title="devices (peak figures are dense)"))


@hardware_app.command("systems")
def hardware_systems(fmt: FormatOpt = Format.table, catalog: CatalogOpt = None) -> None:
    """List systems: nodes and scale-up domains.

    Example: planner hardware systems
    """
    from planner.describe import system_row
    from planner.formatting import render_rows

    _emit(render_rows([system_row(s) for s in _catalog(catalog).systems.values()], fmt.value, title="systems"))


@hardware_app.command("links")
def hardware_links(fmt: FormatOpt = Format.table, catalog: CatalogOpt = None) -> None:
    """List link technologies with bandwidth per direction and base latency.

    Example: planner hardware links --format json
    """
    from planner.describe import link_row
    from planner.formatting import render_rows

    _emit(render_rows([link_row(lk) for lk in _catalog(catalog).links.values()], fmt.value, title="links"))


@hardware_app.command("show")
def hardware_show(
    hardware_id: Annotated[str, typer.Argument(metavar="ID", help="A device, system or link ID.")],
    fmt: FormatOpt = Format.table,
    catalog: CatalogOpt = None,
) -> None:
    """Show one device (or system, or link) with every figure, its source, and derived ridge points.

    Example: planner hardware show h100-sxm --format json
    """
    from hardware_db.loader import suggest
    from planner.describe import device_derived
    from planner.formatting import render_record

    cat = _catalog(catalog)
    if hardware_id in cat.devices:
        device = cat.devices[hardware_id]
        family = cat.efficiency_for(device) if device.family in cat.efficiency else None
        derived = device_derived(device, family)
        record = {**device.model_dump(mode="json"), "derived": derived}
    elif hardware_id in cat.systems:
        record = cat.systems[hardware_id].model_dump(mode="json")
    elif hardware_id in cat.links:
        record = cat.links[hardware_id].model_dump(mode="json")
    else:
        close = suggest(hardware_id, cat.devices) or suggest(hardware_id, [*cat.systems, *cat.links])
        hint = f" (did you mean: {', '.join(close)}?)" if close else " (see `planner hardware list`)"
        raise PlannerError(f"unknown hardware '{hardware_id}'{hint}")
    _emit(render_record(record, fmt.value, title=hardware_id))


@models_app.command("list")
def models_list(fmt: FormatOpt = Format.table, catalog: CatalogOpt = None) -> None:
    """List models with parameters (total, active) and KV-cache bytes per token.

    Example: planner models list --format csv
    """
    from planner.describe import model_row
    from planner.formatting import render_rows

    _emit(render_rows([model_row(m) for m in _catalog(catalog).models.values()], fmt.value, title="models"))


@models_app.command("show")
def models_show(
    model: Annotated[str, typer.Argument(metavar="ID|PATH", help="A model ID, a config.json or a YAML file.")],
    context_len: Annotated[
        int | None, typer.Option("--context-len", min=1, help="Context for KV and attention FLOPs (default 4096).")
    ] = None,
    kv_precision: Annotated[str, typer.Option(help="KV-cache precision: fp32, bf16, fp16, fp8, int8, fp4.")] = "bf16",
    fmt: FormatOpt = Format.table,
    catalog: CatalogOpt = None,
) -> None:
    """Show a model's architecture and derived figures: parameters, KV bytes/token, FLOPs/token.

    Example: planner models show ./Qwen3-8B/config.json
    """
    from planner.catalog import resolve_model
    from planner.describe import model_derived
    from planner.formatting import render_record
    from workloads.derived import bytes_per_element

    bytes_per_element(kv_precision)  # rejects an unknown precision with the allowed list
    _catalog(catalog)
    spec = resolve_model(model, catalog)
    record = {
        **spec.model_dump(mode="json", exclude_none=True),
        "derived": model_derived(spec, context_len, kv_precision),
    }
    _emit(render_record(record, fmt.value, title=spec.id))


ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Model ID, config.json or YAML file.")]
PowerCapOpt = Annotated[
    float | None, typer.Option(help="Cap each device's board power, W (its math clock drops to fit).")
]
ExpertImbalanceOpt = Annotated[
    float | None, typer.Option(help="MoE: the busiest EP rank's routed tokens over the mean (>= 1).")
]
ExpertLoadsOpt = Annotated[
    str | None, typer.Option(metavar="FILE", help="MoE: measured tokens per (layer, expert), .csv/.json/.npy.")
]
ExpertPlacementOpt = Annotated[
    str | None, typer.Option(metavar="FILE", help="MoE: phy2log map (planner plan experts --out map.json).")
]
SpeculativeOpt = Annotated[
    str | None,
    typer.Option(
        "--speculative",
        help="Speculative decoding drafter: mtp, eagle, ngram or draft:MODEL (needs --draft-tokens, --acceptance).",
    ),
]
DraftTokensOpt = Annotated[int, typer.Option("--draft-tokens", min=0, help="Tokens drafted per step (k).")]
AcceptanceOpt = Annotated[
    float | None, typer.Option("--acceptance", help="Probability each drafted token is accepted, in [0, 1].")
]
EngineOpt = Annotated[
    str,
    typer.Option(
        "--engine",
        help="Serving engine whose scheduler is modelled: vllm (V1: mixed, chunked), vllm-v0 (before 0.8, "
        "as it runs MLA models: prefill-first, whole prompts), sglang (prefill-first), "
        "trtllm (in-flight batching, whole prompts).",
    ),
]
AttentionKernelOpt = Annotated[
    str | None,
    typer.Option(
        "--attention-kernel",
        help="Attention kernel: the hardware family's default fused kernel unless named "
        "(flash-attention-2, flash-attention-3, ...; `planner hardware show` lists them) or 'unfused'.",
    ),
]
OutOpt = Annotated[
    str | None,
    typer.Option("--out", "-o", metavar="FILE", help="Write FILE: .html a report, .csv/.xlsx/.json the data."),
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace --out FILE if it exists.")]
HardwareOpt = Annotated[str, typer.Option("--hardware", "-H", help="Device or system ID (e.g. h100-sxm, dgx-h100).")]


def _write_out(result: Any, out: str, force: bool, catalog: str | None) -> None:
    """--out: an HTML report or the data; the path is checked before any work is repeated."""
    from pathlib import Path

    suffix = Path(out).suffix.lower()
    if suffix == ".html":
        from planner.report import report

        report(result, out, catalog=_catalog(catalog), force=force)
    elif suffix == ".json":
        from planner.export import write_json

        write_json(result.to_dict(), out, force)
    else:
        from planner.export import write_frame

        write_frame(result.to_frame(), out, force)
    typer.echo(f"wrote {out}", err=True)


def _emit_estimate(
    result: Any,
    fmt: Format,
    summary_keys: list[str],
    title: str,
    out: str | None = None,
    force: bool = False,
    catalog: str | None = None,
) -> None:
    from planner.formatting import render_record, render_rows, to_json

    if out is not None:
        _write_out(result, out, force, catalog)
    data = result.to_dict()
    if fmt is Format.json:
        _emit(to_json(data))
        return
    summary = {k: data[k] for k in summary_keys if k != "ops" and k in data and data[k] is not None}
    if fmt is Format.csv:
        _emit(render_rows([{k: v for k, v in data.items() if not isinstance(v, list)}], "csv"))
        return
    render_record(summary, "table", title=title)
    rows = data.get("ops")
    if rows:
        from planner.breakdown import by_phase_and_class

        render_rows(by_phase_and_class(rows), "table", title="time per op class and phase")


OffloadOpt = Annotated[
    str | None,
    typer.Option(
        help="Where optimizer state, fp32 master weights and gradients live (ZeRO-Offload/Infinity): "
        "none, cpu, cxl, nvme, auto (the fastest that fits), or a map 'optimizer=cpu,master=cxl,gradients=cpu'."
    ),
]
OffloadPolicyOpt = Annotated[
    str,
    typer.Option(help="How --offload cxl places tensors: dram-only, interleave or cxl-aware."),
]
OffloadDpuOpt = Annotated[
    bool, typer.Option(help="One-step delayed parameter update: the CPU step overlaps the next step.")
]
CxlCardsOpt = Annotated[
    int | None, typer.Option(min=0, help="CXL memory expanders per node (default: the system's attached ones).")
]
CxlDeviceOpt = Annotated[str | None, typer.Option(help="CXL expander ID (default cxl-expander-ddr5).")]


def _offload_spec(text: str | None) -> object:
    """'cpu' as is; 'optimizer=cpu,master=cxl,gradients=cpu' as a map (bad keys are reported by
    planner.offload.parse_offload with the allowed names, exit code 2)."""
    if text is None or "=" not in text:
        return text
    from hardware_db.errors import InvalidSpecError

    pairs = [p.split("=", 1) for p in text.split(",") if p]
    if any(len(p) != 2 for p in pairs):
        raise InvalidSpecError(f"--offload map must be tensor=tier pairs joined by commas (got {text!r})")
    return {k.strip(): v.strip() for k, v in pairs}


@estimate_app.command("inference")
def estimate_inference_cmd(
    model: ModelOpt,
    hardware: HardwareOpt,
    devices: Annotated[int | None, typer.Option(min=1, help="Devices in all (default tp x pp x dp).")] = None,
    tp: Annotated[int, typer.Option(min=1, help="Tensor parallelism.")] = 1,
    pp: Annotated[int, typer.Option(min=1, help="Pipeline parallelism.")] = 1,
    ep: Annotated[int, typer.Option(min=1, help="Expert parallelism (MoE).")] = 1,
    dp: Annotated[int | None, typer.Option(min=1, help="Replicas (default devices / (tp x pp)).")] = None,
    batch: Annotated[
        int | None, typer.Option(min=1, help="One static batch: prefilled, then decoded together.")
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Serving: requests in flight (continuous batching, steady state).")
    ] = None,
    input_len: Annotated[int, typer.Option(min=1, help="Prompt tokens.")] = 1024,
    output_len: Annotated[int, typer.Option(min=1, help="Generated tokens.")] = 256,
    weight_precision: Annotated[str, typer.Option(help="bf16, fp16, fp8, int8, fp4, int4.")] = "bf16",
    kv_precision: Annotated[str, typer.Option(help="KV-cache precision.")] = "bf16",
    matmul_precision: Annotated[
        str | None,
        typer.Option(help="GEMM math precision when the kernels differ from W8A8-style (bf16: W4A16 MXFP4 MoE)."),
    ] = None,
    disaggregated: Annotated[bool, typer.Option(help="Separate prefill and decode pools.")] = False,
    prefill_devices: Annotated[int | None, typer.Option(min=1, help="Devices in the prefill pool.")] = None,
    prefill_tp: Annotated[int | None, typer.Option(min=1, help="Tensor parallelism of prefill replicas.")] = None,
    attention_kernel: AttentionKernelOpt = None,
    engine: EngineOpt = "vllm",
    token_budget: Annotated[
        int | None, typer.Option(min=1, help="Tokens per iteration (default: the engine's own for the GPU).")
    ] = None,
    arrival: Annotated[
        str, typer.Option(help="closed: C clients that start at once (benchmarks); poisson: open-loop load.")
    ] = "closed",
    num_prompts: Annotated[
        int | None, typer.Option(min=1, help="Closed loop: requests in the benchmark (default 10 x concurrency).")
    ] = None,
    range_ratio: Annotated[
        float,
        typer.Option(help="Closed loop: lengths drawn in [r L, L], as bench_serving's --random-range-ratio."),
    ] = 1.0,
    poll_interval: Annotated[
        int,
        typer.Option(help="Iterations between admissions of new prompts (SGLang recv interval, TRT-LLM batch wait)."),
    ] = 1,
    eager_prefill: Annotated[
        bool | None,
        typer.Option(
            "--eager-prefill/--graphed-prefill",
            help="Prompt iterations without CUDA graphs (host-bound floor); default: the engine's own.",
        ),
    ] = None,
    eager_decode: Annotated[
        bool | None,
        typer.Option(
            "--eager-decode/--graphed-decode",
            help="Decode steps without CUDA graphs too (TRT-LLM PyTorch before mid-2025); default: graphed.",
        ),
    ] = None,
    speculative: SpeculativeOpt = None,
    draft_tokens: DraftTokensOpt = 0,
    acceptance: AcceptanceOpt = None,
    redundant_experts: Annotated[
        int, typer.Option(min=0, help="MoE: extra expert slots over the EP group (EPLB replicas).")
    ] = 0,
    two_batch_overlap: Annotated[
        bool, typer.Option(help="MoE: two half batches hide each other's expert all-to-alls (SGLang TBO).")
    ] = False,
    expert_imbalance: ExpertImbalanceOpt = None,
    expert_loads: ExpertLoadsOpt = None,
    expert_placement: ExpertPlacementOpt = None,
    power_cap_w: PowerCapOpt = None,
    kv_offload: Annotated[
        str | None,
        typer.Option(
            help="Let the KV cache grow into this tier: cpu, cxl, nvme or a tier name (vLLM/LMCache offload)."
        ),
    ] = None,
    prefix_hit_rate: Annotated[
        float, typer.Option(min=0.0, max=0.999999, help="Share of each prompt found in the prefix cache [0, 1).")
    ] = 0.0,
    memory_pool: Annotated[
        str | None, typer.Option(help="Stream weights from this memory-pool device (e.g. fenghuang-pool).")
    ] = None,
    memory_pool_bandwidth: Annotated[
        float | None, typer.Option(min=1.0, help="Override the pool's bandwidth per device, bytes/s.")
    ] = None,
    tier_policy: Annotated[
        str, typer.Option(help="optimal (densest reads in the fastest tier) or ordered (the old fixed order).")
    ] = "optimal",
    scratchpad_bytes: Annotated[
        float, typer.Option(min=0.0, help="On-chip SRAM a dataflow RDU leaves to resident weights (bytes; 0: none).")
    ] = 0.0,
    out: OutOpt = None,
    force: ForceOpt = False,
    fmt: FormatOpt = Format.table,
    catalog: CatalogOpt = None,
) -> None:
    """Latency, throughput and memory of serving a model.

    Example: planner estimate inference -m llama3.1-70b -H h100-sxm --tp 8 --concurrency 64
    """
    from planner.inference import estimate_inference

    _catalog(catalog)
    r = estimate_inference(
        model,
        hardware,
        devices,
        tp=tp,
        pp=pp,
        ep=ep,
        dp=dp,
        batch=batch,
        concurrency=concurrency,
        input_len=input_len,
        output_len=output_len,
        weight_precision=weight_precision,
        kv_precision=kv_precision,
        matmul_precision=matmul_precision,
        disaggregated=disaggregated,
        prefill_devices=prefill_devices,
        prefill_tp=prefill_tp,
        catalog=catalog,
        attention_kernel=attention_kernel,
        engine=engine,
        token_budget=token_budget,
        arrival=arrival,
        num_prompts=num_prompts,
        range_ratio=range_ratio,
        poll_interval=poll_interval,
        eager_prefill=eager_prefill,
        eager_decode=eager_decode,
        speculative=speculative,
        draft_tokens=draft_tokens,
        acceptance=acceptance,
        redundant_experts=redundant_experts,
        two_batch_overlap=two_batch_overlap,
        expert_imbalance=expert_imbalance,
        expert_loads=expert_loads,
        expert_placement=expert_placement,
        power_cap_w=power_cap_w,
        kv_offload=kv_offload,
        prefix_hit_rate=prefix_hit_rate,
        memory_pool=memory_pool,
        memory_pool_bandwidth=memory_pool_bandwidth,
        tier_policy=tier_policy,
        scratchpad_bytes=scratchpad_bytes,
    )
    keys = [
        "model",
        "hardware",
        "devices",
        "tp",
        "pp",
        "ep",
        "dp",
        "mode",
        "engine",
        "arrival",
        "batch",
        "concurrency",
        "input_len",
        "output_len",
        "ttft_s",
        "ttft_p50_s",
        "ttft_p90_s",
        "ttft_p99_s",
        "tpot_s",
        "e2e_latency_s",
        "throughput_tokens_per_s",
        "max_batch",
        "memory_per_device_bytes",
        "weight_bytes_per_device",
        "kv_bytes_per_device",
        "fits",
        "fit_reason",
        "bound",
        "prefill_utilization",
        "prefill_devices",
        "prefill_tp",
        "kv_transfer_s",
        "kv_link",
        "speculative",
        "tokens_per_step",
        "matmul_precision",
        "kv_cache_capacity_tokens",
        "attention_kernel",
        "avg_power_w",
        "energy_j_per_token",
        "power_cap_w",
        "expert_load_max_over_mean",
        "moe_prefill_s",
        "moe_decode_s",
        "kv_offload",
        "prefix_hit_rate",
        "prefix_load_s",
        "context_switch_s",
        "context_switch_tier",
        "memory_pool",
        "local_memory_needed_bytes",
        "tier_placement_bytes",
    ]
    _emit_estimate(r, fmt, keys, f"{r.model} on {r.devices} x {r.hardware}", out, force, catalog)


@estimate_app.command("training")
def estimate_training_cmd(
    model: ModelOpt,
    hardware: HardwareOpt,
    devices: Annotated[int, typer.Option(min=1, help="Devices in all.")],
    tp: Annotated[int, typer.Option(min=1, help="Tensor parallelism.")] = 1,
    pp: Annotated[int, typer.Option(min=1, help="Pipeline parallelism.")] = 1,
    dp: Annotated[int | None, typer.Option(min=1, help="Data parallelism (default: what is left).")] = None,
    ep: Annotated[int, typer.Option(min=1, help="Expert parallelism (MoE).")] = 1,
    cp: Annotated[int, typer.Option(min=1, help="Context parallelism.")] = 1,
    zero: Annotated[int, typer.Option(min=0, max=3, help="ZeRO stage 0-3.")] = 1,
    micro_batch: Annotated[int, typer.Option(min=1, help="Sequences per micro-batch.")] = 1,
    global_batch: Annotated[int, typer.Option(min=1, help="Sequences per step.")] = 1024,
    seq_len: Annotated[int, typer.Option(min=1, help="Tokens per sequence.")] = 4096,
    recompute: Annotated[str, typer.Option(help="none, selective or full.")] = "selective",
    virtual_stages: Annotated[int, typer.Option(min=1, help="Interleaved pipeline stages per device.")] = 1,
    precision: Annotated[str, typer.Option(help="GEMM precision: bf16 or fp8.")] = "bf16",
    attention_kernel: AttentionKernelOpt = None,
    dp_overlap: Annotated[
        bool, typer.Option(help="Reduce gradients under the backward (off: after the last micro-batch).")
    ] = True,
    tp_overlap: Annotated[
        bool, typer.Option(help="Overlap TP collectives with their GEMMs (Megatron --tp-comm-overlap, async TP).")
    ] = False,
    expert_imbalance: ExpertImbalanceOpt = None,
    expert_loads: ExpertLoadsOpt = None,
    expert_placement: ExpertPlacementOpt = None,
    power_cap_w: PowerCapOpt = None,
    offload: OffloadOpt = None,
    offload_policy: OffloadPolicyOpt = "cxl-aware",
    offload_dpu: OffloadDpuOpt = False,
    cxl_cards: CxlCardsOpt = None,
    cxl_device: CxlDeviceOpt = None,
    framework: Annotated[
        str | None, typer.Option(help="Memory as megatron or torchtitan holds it (loss logits, FSDP2, op-level AC).")
    ] = None,
    first_stage_layers: Annotated[
        int | None, typer.Option(min=1, help="Layers on the first pipeline rank (Megatron's first-stage layers).")
    ] = None,
    out: OutOpt = None,
    force: ForceOpt = False,
    fmt: FormatOpt = Format.table,
    catalog: CatalogOpt = None,
) -> None:
    """Step time, tokens/s, MFU and memory of one training configuration.

    Example: planner estimate training -m llama3.1-70b -H h100-sxm --devices 64 --tp 8 --pp 2
    """
    from planner.training import estimate_training

    _catalog(catalog)
    r = estimate_training(
        model,
        hardware,
        devices,
        tp=tp,
        pp=pp,
        dp=dp,
        ep=ep,
        cp=cp,
        zero=zero,
        micro_batch=micro_batch,
        global_batch=global_batch,
        seq_len=seq_len,
        recompute=recompute,
        virtual_stages=virtual_stages,
        precision=precision,
        catalog=catalog,
        attention_kernel=attention_kernel,
        dp_overlap=dp_overlap,
        tp_overlap=tp_overlap,
        expert_imbalance=expert_imbalance,
        expert_loads=expert_loads,
        expert_placement=expert_placement,
        power_cap_w=power_cap_w,
        offload=_offload_spec(offload),
        offload_policy=offload_policy,
        offload_dpu=offload_dpu,
        cxl_cards=cxl_cards,
        cxl_device=cxl_device,
        framework=framework,
        first_stage_layers=first_stage_layers,
    )
    _emit_estimate(r, fmt, list(r.to_dict()), f"{r.model} training on {r.devices} x {r.hardware}", out, force, catalog)


@estimate_app.command("op")
def estimate_op_cmd(
    hardware: HardwareOpt,
    kind: Annotated[str, typer.Option(help="gemm, grouped-gemm, moe, attention or memory.")] = "gemm",
    m: Annotated[int, typer.Option(min=1, help="GEMM rows (tokens).")] = 4096,
    n: Annotated[int, typer.Option(min=1, help="GEMM columns.")] = 4096,
    k: Annotated[int, typer.Option(min=1, help="GEMM depth.")] = 4096,
    batch: Annotated[int, typer.Option(min=1, help="Attention: sequences.")] = 1,
    heads: Annotated[int, typer.Option(min=1, help="Attention: query heads.")] = 32,
    kv_heads: Annotated[int | None, typer.Option(min=1, help="Attention: KV heads (default heads).")] = None,
    seq_len: Annotated[int, typer.Option(min=1, help="Attention: tokens per sequence.")] = 4096,
    head_dim: Annotated[int, typer.Option(min=1, help="Attention: head dimension.")] = 128,
    causal: Annotated[bool, typer.Option(help="Attention: causal mask.")] = True,
    pass_: Annotated[str, typer.Option("--pass", help="forward, backward or forward+backward.")] = "forward",
    size: Annotated[str, typer.Option("--bytes", help="Memory: bytes moved, e.g. 1GiB.")] = "1GiB",
    groups: Annotated[int, typer.Option(min=1, help="Grouped GEMM: GEMMs of m x n x k in one kernel.")] = 8,
    model: Annotated[
        str | None, typer.Option(help="MoE: a mixture-of-experts model ID; its layer's routed experts.")
    ] = None,
    tokens: Annotated[int, typer.Option(min=1, help="MoE: tokens entering the layer (over the EP group).")] = 1024,
    ep: Annotated[
        int, typer.Option(min=1, help="MoE: expert-parallel ways (the device holds 1/ep of the experts).")
    ] = 1,
    expert_tp: Annotated[int, typer.Option(min=1, help="MoE: ways each expert is split (TP MoE).")] = 1,
    precision: Annotated[str, typer.Option(help="bf16, fp16, fp8, ... (MoE: the experts' weights).")] = "bf16",
    matmul_precision: Annotated[
        str | None, typer.Option(help="MoE: the GEMMs' math precision when it differs (bf16: a W4A16 kernel).")
    ] = None,
    attention_kernel: AttentionKernelOpt = None,
    out: OutOpt = None,
    force: ForceOpt = False,
    fmt: FormatOpt = Format.table,
    catalog: CatalogOpt = None,
) -> None:
    """Time, achieved FLOP/s and bound of one kernel.

    Example: planner estimate op -H h100-sxm --kind gemm --m 8192 --precision fp8
    Example: planner estimate op -H b200 --kind moe --model deepseek-r1 --tokens 4096 --ep 8 --precision fp4
    """
    from planner.kernels import (
        estimate_attention,
        estimate_gemm,
        estimate_grouped_gemm,
        estimate_memory_copy,
        estimate_moe_layer,
    )

    _catalog(catalog)
    if kind == "gemm":
        r = estimate_gemm(hardware, m, n, k, precision, catalog)
    elif kind == "grouped-gemm":
        r = estimate_grouped_gemm(hardware, groups, m, n, k, precision, catalog)
    elif kind == "moe":
        if model is None:
            raise PlannerError("--kind moe needs --model (a mixture-of-experts model ID)")
        r = estimate_moe_layer(
            hardware,
            model,
            tokens,
            ep=ep,
            expert_tp=expert_tp,
            weight_precision=precision,
            matmul_precision=matmul_precision,
            catalog=catalog,
        )
    elif kind == "attention":
        r = estimate_attention(
            hardware, batch, heads, seq_len, head_dim, kv_heads, causal, pass_, precision, catalog, attention_kernel
        )
    elif kind == "memory":
        r = estimate_memory_copy(hardware, _quantity(size, "bytes", "--bytes"), catalog)
    else:
        raise PlannerError(f"unknown --kind '{kind}' (allowed: gemm, grouped-gemm, moe, attention, memory)")
    _emit_estimate(r, fmt, list(r.to_dict()), f"{kind} on {r.hardware}", out, force, catalog)


def _quantity(text: str, dim: str, flag: str) -> float:
    from hardware_db.units import parse_quantity

    try:
        return parse_quantity(text, dim)  # type: ignore[arg-type]
    except ValueError as e:
        raise PlannerError(f"{flag}: {e}") from None


@estimate_app.command("collective")
def estimate_collective_cmd(
    hardware: HardwareOpt,
    devices: Annotated[int, typer.Option(min=1, help="Devices taking part.")],
    op: Annotated[str, typer.Option(help="all-reduce, reduce-scatter, all-gather, all-to-all, broadcast, send-recv.")],
    size: Annotated[str, typer.Option("--bytes", help="Buffer size, e.g. 1GiB or 64MB.")] = "1GiB",
    algorithm: Annotated[str, typer.Option(help="auto, ring, tree, hierarchical, in-network.")] = "auto",
    out: OutOpt = None,
    force: ForceOpt = False,
    fmt: FormatOpt = Format.table,
    catalog: CatalogOpt = None,
) -> None:
    """Time and bus bandwidth of one collective over the cluster's topology.

    Example: planner estimate collective -H dgx-h100 --devices 16 --op all-reduce
    """
    from planner.kernels import estimate_collective

    _catalog(catalog)
    r = estimate_collective(hardware, devices, op, _quantity(size, "bytes", "--bytes"), algorithm, catalog)
    _emit_estimate(r, fmt, list(r.to_dict()), f"{op} on {devices} x {r.hardware}", out, force, catalog)


@plan_app.command("training")
def plan_training_cmd(
    model: ModelOpt,
    hardware: HardwareOpt,
    devices: Annotated[int, typer.Option(min=1, help="Devices in all.")],
    global_batch: Annotated[int, typer.Option(min=1, help="Sequences per step.")] = 1024,
    seq_len: Annotated[int, typer.Option(min=1, help="Tokens per sequence.")] = 4096,
    precision: Annotated[str, typer.Option(help="GEMM precision: bf16 or fp8.")] = "bf16",
    objective: Annotated[str, typer.Option(help="tokens_per_s, time, cost (cloud) or tco (owned).")] = "tokens_per_s",
    top: Annotated[int, typer.Option(min=1, help="Plans to show.")] = 5,
    tp_across_domains: Annotated[bool, typer.Option(help="Allow TP beyond the scale-up domain.")] = False,
    token_budget: Annotated[float | None, typer.Option(help="Tokens to train: plans report its time and cost.")] = None,
    out: OutOpt = None,
    force: ForceOpt = False,
    fmt: FormatOpt = Format.table,
    catalog: CatalogOpt = None,
) -> None:
    """Search every TP/PP/DP/CP/EP split, ZeRO stage, micro-batch and recompute mode; rank them.

    Example: planner plan training -m llama3.1-70b -H h100-sxm --devices 64 --global-batch 512
    """
    from solvers.training_plan import plan_training

    _catalog(catalog)
    plans = plan_training(
        model,
        hardware,
        devices,
        global_batch,
        seq_len,
        precision=precision,
        objective=objective,
        top=top,
        tp_across_domains=tp_across_domains,
        token_budget=token_budget,
        catalog=catalog,
    )
    _emit_plans(plans, fmt, out, force, catalog, _TRAINING_PLAN_COLUMNS)


_TRAINING_PLAN_COLUMNS = (
    "rank",
    "tp",
    "pp",
    "dp",
    "cp",
    "ep",
    "zero",
    "micro_batch",
    "recompute",
    "virtual_stages",
    "step_time_s",
    "tokens_per_s",
    "mfu",
    "memory_per_device_bytes",
    "usd_per_million_tokens",
    "train_time_s",
    "train_cost_usd",
)
_INFERENCE_PLAN_COLUMNS = (
    "rank",
    "hardware",
    "mode",
    "weight_precision",
    "tp",
    "pp",
    "replicas",
    "prefill_tp",
    "prefill_replicas",
    "devices",
    "concurrency_per_replica",
    "ttft_s",
    "tpot_s",
    "utilization",
    "usd_per_hour",
    "usd_per_million_tokens",
)


def _emit_plans(
    plans: Any, fmt: Format, out: str | None, force: bool, catalog: str | None, columns: tuple[str, ...]
) -> None:
    from planner.formatting import render_rows, to_json
    from planner.report import plan_counts, plan_counts_sentence, rejection_rows

    if out is not None:
        _write_out(plans, out, force, catalog)
    data = plans.to_dict()
    if fmt is Format.json:
        _emit(to_json({**data, "counts": plan_counts(plans)}))
        return
    rows = [{k: p.get(k) for k in columns} for p in data["plans"]]
    if fmt is Format.csv:
        _emit(render_rows(rows, "csv"))
        return
    render_rows(rows, "table", title=f"best plans (objective {data['objective']})")
    _emit(plan_counts_sentence(plans))
    rejected = rejection_rows(plans)
    if rejected:
        render_rows(rejected, "table", title="rejected, with the constraint that bound each")


@plan_app.command("inference")
def plan_inference_cmd(
    model: ModelOpt,
    rate: Annotated[float, typer.Option(min=0.0, help="Requests per second to serve.")],
    ttft: Annotated[float, typer.Option(help="TTFT target in seconds.")],
    tpot: Annotated[float, typer.Option(help="TPOT target in seconds.")],
    hardware: Annotated[
        list[str] | None, typer.Option("--hardware", "-H", help="Hardware options (repeat the flag).")
    ] = None,
    input_len: Annotated[int | None, typer.Option(min=1, help="Prompt tokens [1024] (or use --lengths).")] = None,
    output_len: Annotated[int | None, typer.Option(min=1, help="Generated tokens [256] (or use --lengths).")] = None,
    lengths: Annotated[str | None, typer.Option(metavar="CSV", help="Samples: columns input_len, output_len.")] = None,
    percentile: Annotated[float | None, typer.Option(help="SLO on this percentile (e.g. 0.9); default mean.")] = None,
    objective: Annotated[str, typer.Option(help="cost (cloud $/h), tco (owned), devices or goodput.")] = "cost",
    mode: Annotated[
        str, typer.Option(help="both, aggregated, disaggregated, or cross-hardware (prefill and decode types differ).")
    ] = "both",
    prefill_hardware: Annotated[
        list[str] | None, typer.Option(help="cross-hardware: prefill types only (repeat; default every -H).")
    ] = None,
    decode_hardware: Annotated[
        list[str] | None, typer.Option(help="cross-hardware: decode types only (repeat; default every -H).")
    ] = None,
    engine: EngineOpt = "vllm",
    speculative: SpeculativeOpt = None,
    draft_tokens: DraftTokensOpt = 0,
    acceptance: AcceptanceOpt = None,
    top: Annotated[int, typer.Option(min=1, help="Plans to show.")] = 5,
    weight_precision: Annotated[
        list[str] | None,
        typer.Option(
            "--weight-precision",
            metavar="P",
            help="Weight precisions to search (repeat the flag or comma-separate: bf16,fp8); "
            "default: both bf16 and fp8.",
        ),
    ] = None,
    out: OutOpt = None,
    force: ForceOpt = False,
    fmt: FormatOpt = Format.table,
    catalog: CatalogOpt = None,
) -> None:
    """Fewest devices or lowest $/hour that serves a request rate within TTFT and TPOT targets.

    Example: planner plan inference -m llama3.1-70b -H h100-sxm -H mi300x --rate 10 --ttft 0.5 --tpot 0.05
    """
    from solvers.inference_plan import Slo, Workload, plan_inference

    _catalog(catalog)
    modes = {"both": None, "aggregated": False, "disaggregated": True, "cross-hardware": None}
    if mode not in modes:
        raise PlannerError(f"unknown --mode '{mode}' (allowed: {', '.join(modes)})")
    if lengths and (input_len is not None or output_len is not None):
        raise PlannerError("give --lengths (samples) or --input-len / --output-len, not both")
    if (prefill_hardware or decode_hardware) and mode != "cross-hardware":
        raise PlannerError("--prefill-hardware and --decode-hardware need --mode cross-hardware")
    if not hardware and not (mode == "cross-hardware" and prefill_hardware and decode_hardware):
        raise PlannerError(
            "give the hardware options with -H (cross-hardware: or both --prefill- and --decode-hardware)"
        )
    workload = Workload.from_csv(lengths, rate) if lengths else Workload(rate, input_len or 1024, output_len or 256)
    slo = Slo(ttft, tpot, percentile)
    if mode == "cross-hardware":
        from solvers.disaggregated_mix import plan_disaggregated_mix

        precisions = _precisions(weight_precision, default=("bf16",))
        if len(precisions) > 1:
            raise PlannerError("--mode cross-hardware takes one --weight-precision")
        mix = plan_disaggregated_mix(
            model,
            hardware or [],
            workload,
            slo,
            prefill_hardware=prefill_hardware,
            decode_hardware=decode_hardware,
            weight_precision=precisions[0],
            catalog=catalog,
        )
        _emit_pd_mix(mix, fmt, out, force)
        return
    assert hardware is not None
    plans = plan_inference(
        model,
        hardware,
        workload,
        slo,
        objective=objective,
        disaggregated=modes[mode],
        top=top,
        catalog=catalog,
        engine=engine,
        speculative=speculative,
        draft_tokens=draft_tokens,
        acceptance=acceptance,
        weight_precisions=_precisions(weight_precision, default=("bf16", "fp8")),
    )
    _emit_plans(plans, fmt, out, force, catalog, _INFERENCE_PLAN_COLUMNS)


def _emit_pd_mix(mix: Any, fmt: Format, out: str | None, force: bool) -> None:
    from planner.formatting import render_rows, to_json

    if out is not None:
        _write_data_or_report(mix, out, force, "planner.report_pd_mix", "pd_mix_report")
    if fmt is Format.json:
        _emit(to_json(mix.to_dict()))
        return
    rows = list(mix.comparison) or [{"usd_per_hour": mix.usd_per_hour}]
    if fmt is Format.csv:
        _emit(render_rows(rows, "csv"))
        return
    render_rows([p.__dict__ for p in mix.pools], "table", title=f"cross-hardware pools ({mix.status})")
    render_rows(list(mix.routes), "table", title="routes: prefill -> decode")
    render_rows(rows, "table", title="$/M tokens at the SLO, against homogeneous plans")
    if mix.rejected:
        render_rows([{"option": k, "why": v} for k, v in mix.rejected.items()], "table", title="rejected")


def _plan_data_out(result: Any, out: str | None, force: bool, fmt: Format, report: str, rows: Any) -> bool:
    """--out and the data formats of a solver result: writes --out (the HTML of planner.report_X's
    X_report for report="X", or the data), prints JSON or CSV (`rows`); True when the caller has
    nothing left to print."""
    from planner.formatting import render_rows, to_json

    if out is not None:
        _write_data_or_report(result, out, force, f"planner.report_{report}", f"{report}_report")
    if fmt is Format.json:
        _emit(to_json(result.to_dict()))
    elif fmt is Format.csv:
        _emit(render_rows(list(rows), "csv"))
    return fmt is not Format.table


def _write_data_or_report(result: Any, out: str, force: bool, module: str, function: str) -> None:
    """--out for a solver result: .html the module's report, .json/.csv/.xlsx the data."""
    import importlib
    from pathlib import Path

    suffix = Path(out).suffix.lower()
    if suffix == ".html":
        getattr(importlib.import_module(module), function)(result, out, force=force)
    elif suffix == ".json":
        from planner.export import write_json

        write_json(result.to_dict(), out, force)
    else:
        from planner.export import write_frame

        write_frame(result.to_frame(), out, force)
    typer.echo(f"wrote {out}", err=True)


def _precisions(values: list[str] | None, default: tuple[str, ...]) -> tuple[str, ...]:
    """A repeatable, comma-separable precision option: each checked (one line naming the allowed
    ones), duplicates dropped in order."""
    from workloads.derived import bytes_per_element

    picked = [p.strip() for v in values or () for p in v.split(",") if p.strip()] or list(default)
    for precision in picked:
        bytes_per_element(precision)
    return tuple(dict.fromkeys(picked))


@app.command("sweep")
def sweep_cmd(
    grid: Annotated[str, typer.Option("--grid", "-g", metavar="FILE", help="YAML: kind and a list per knob.")],
    out: OutOpt = None,
    force: ForceOpt = False,
    workers: Annotated[int, typer.Option(min=0, help="Local worker processes (0: vectorised in process).")] = 0,
    dask: Annotated[str | None, typer.Option("--dask", metavar="ADDRESS", help="Run on this Dask scheduler.")] = None,
    fmt: FormatOpt = Format.table,
    catalog: CatalogOpt = None,
) -> None:
    """Evaluate the Cartesian product of a grid; one row per scenario.

    A grid file names the kind and a list (or one value) per knob, e.g.
    "kind: inference", "model: [llama3.1-8b, qwen3-8b]", "tp: [1, 2]", "concurrency: [1, 16, 64]".
    The grid is sized first (rows, memory). CSV (--out FILE.csv, --format csv) streams any size in
    bounded memory; .xlsx, .json and tables hold the sweep in memory and stop at 1,000,000 rows.

    Example: planner sweep --grid grid.yaml --out results.csv --workers 2
    """
    from pathlib import Path

    from planner.sweep import (
        Tally,
        check_buffered,
        dask_client,
        load_grid,
        plan_grid,
        row_bytes,
        size_line,
        stream,
        write_csv,
        write_sweep,
    )

    kind, knobs = load_grid(grid)
    plan = plan_grid(kind, knobs)
    suffix = Path(out).suffix.lower() if out is not None else None
    if out is not None:
        from planner.export import FORMATS
        from planner.files import check_writable

        check_writable(out, force)
        if suffix not in FORMATS:
            raise PlannerError(f"cannot write '{Path(out).name}' for a sweep: use one of {', '.join(FORMATS)}")
    streamed = suffix == ".csv" or (out is None and fmt is Format.csv)
    if not streamed:
        check_buffered(plan, f"{suffix} output" if suffix else f"--format {fmt.value}")
    cat_dir = _catalog_dir(catalog)
    typer.echo(size_line(plan, row_bytes(plan, cat_dir), streamed), err=True)
    client = dask_client(dask)
    try:
        chunks = stream(plan, workers=workers, client=client, catalog=cat_dir)
        if out is not None:
            tally = write_sweep(chunks, out, force)
            typer.echo(f"wrote {out} ({tally.rows:,} rows, {tally.failed:,} failed)", err=True)
        elif streamed:
            tally = Tally()
            write_csv(tally.count(chunks), sys.stdout)
            tally.check()
        else:
            _print_sweep(chunks, kind, fmt)
    finally:
        if client is not None:
            client.close()


def _print_sweep(chunks: Any, kind: str, fmt: Format) -> None:
    """A sweep held in memory (check_buffered first) as a table or JSON."""
    import pandas as pd

    from planner.formatting import render_rows
    from planner.sweep import Tally

    tally = Tally()
    frame = pd.concat(list(tally.count(chunks)), ignore_index=True).infer_objects()
    tally.check()
    records = frame.astype(object).where(frame.notna(), None).to_dict(orient="records")  # NaN prints as '-'
    if fmt is Format.table:
        keep = [c for c in frame.columns if c in _SWEEP_TABLE_COLUMNS]
        records = [{k: r[k] for k in keep} for r in records]
    _emit(render_rows(records, fmt.value, title=f"{kind} sweep ({len(frame)} scenarios)"))


_SWEEP_TABLE_COLUMNS = (
    "model",
    "hardware",
    "devices",
    "tp",
    "pp",
    "ep",
    "dp",
    "cp",
    "batch",
    "concurrency",
    "input_len",
    "output_len",
    "micro_batch",
    "global_batch",
    "seq_len",
    "weight_precision",
    "precision",
    "ttft_s",
    "tpot_s",
    "throughput_tokens_per_s",
    "step_time_s",
    "tokens_per_s",
    "mfu",
    "memory_per_device_bytes",
    "fits",
    "error",
)


def _catalog_dir(catalog: str | None) -> str | None:
    _catalog(catalog)  # validates the folder and prints override notices once
    return catalog


@app.command("validate")
def validate_cmd(
    category: Annotated[str | None, typer.Option(help="Only this category.")] = None,
    fmt: FormatOpt = Format.table,
    catalog: CatalogOpt = None,
) -> None:
    """Compare the model with the published measurements in validation/ (prediction, error, summary).

    Example: planner validate --category training
    """
    from planner.formatting import render_rows, to_json
    from planner.validation import run_validation

    rows, summary = run_validation(catalog=_catalog(catalog))
    picked = [r.to_dict() for r in rows if category is None or r.category == category]
    if category is not None and not picked:
        raise PlannerError(f"no validation rows in category '{category}'")
    if fmt is Format.json:
        _emit(to_json({"rows": picked, "summary": [s.to_dict() for s in summary]}))
        return
    if fmt is Format.csv:
        _emit(render_rows(picked, "csv"))
        return
    shown = [
        {k: r[k] for k in ("id", "category", "metric", "hardware", "measured", "predicted", "error", "status")}
        for r in picked
    ]
    for r in shown:
        r["error"] = "-" if r["error"] is None else f"{r['error']:+.1%}"
    render_rows(shown, "table", title="validation rows (calibration rows set a parameter: not in the summary)")
    table = [
        {**s.to_dict(), "median_abs_error": f"{s.median_abs_error:.1%}", "p90_abs_error": f"{s.p90_abs_error:.1%}"}
        for s in summary
    ]
    render_rows(table, "table", title="error per category (evaluated, non-calibration rows)")


@plan_app.command("experts")
def plan_experts_cmd(
    gpus: Annotated[int, typer.Option(help="EP size: GPUs the experts spread over.")],
    loads: Annotated[
        str | None, typer.Option(metavar="FILE", help="Tokens per (layer, expert): .csv, .json, .npy or .npz.")
    ] = None,
    zipf: Annotated[float | None, typer.Option(help="Synthetic loads: Zipf exponent of expert popularity.")] = None,
    hot: Annotated[
        str | None, typer.Option(metavar="PCT:K", help="Synthetic loads: PCT% of tokens into K hot experts.")
    ] = None,
    policy: Annotated[str, typer.Option(help="eplb, llep, ilp or contiguous.")] = "eplb",
    nodes: Annotated[int, typer.Option(min=1, help="Nodes the GPUs sit on.")] = 1,
    slots: Annotated[int | None, typer.Option(min=1, help="Expert slots per layer (experts + redundant).")] = None,
    groups: Annotated[int, typer.Option(min=1, help="Expert groups (group-limited routing).")] = 1,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model ID: times before/after.")] = None,
    hardware: Annotated[str | None, typer.Option("--hardware", "-H", help="Device ID: times before/after.")] = None,
    weight_precision: Annotated[str, typer.Option(help="Expert weights: bf16, fp8, fp4, ...")] = "bf16",
    layers: Annotated[int | None, typer.Option(min=1, help="Synthetic loads: MoE layers [the model's].")] = None,
    experts: Annotated[int | None, typer.Option(min=1, help="Synthetic loads: experts [the model's].")] = None,
    tokens: Annotated[float, typer.Option(help="Synthetic loads: tokens in the batch.")] = 65536.0,
    seed: Annotated[int, typer.Option(help="Synthetic loads: random seed.")] = 0,
    transitions: Annotated[
        str | None, typer.Option(metavar="NPY", help="ILP stage 2: (layers-1, E, E) counts, .npy.")
    ] = None,
    objective: Annotated[str, typer.Option(help="ILP: max (min-max) or deviation (MoETuner).")] = "max",
    time_limit_s: Annotated[float, typer.Option(help="ILP time limit, seconds.")] = 30.0,
    mip_gap: Annotated[float, typer.Option(help="ILP relative gap to stop at.")] = 1e-4,
    solver: Annotated[str, typer.Option(help="ILP solver: highs or cbc.")] = "highs",
    memory_per_gpu_gb: Annotated[
        float | None, typer.Option(help="Routed-expert weights a GPU may hold, GB (needs --model).")
    ] = None,
    alpha: Annotated[float, typer.Option(help="LLEP capacity factor.")] = 1.0,
    min_chunk: Annotated[float, typer.Option(help="LLEP minimum tokens per spilled GEMM.")] = 1024.0,
    trigger: Annotated[float, typer.Option(help="LLEP imbalance ratio that turns it on.")] = 1.3,
    fmt: FormatOpt = Format.table,
    out: Annotated[
        str | None,
        typer.Option("--out", "-o", metavar="FILE", help="Write FILE: .html heatmaps, .json or .csv the map."),
    ] = None,
    force: ForceOpt = False,
    catalog: CatalogOpt = None,
) -> None:
    """Place a MoE model's experts on GPUs (EPLB, LLEP, an exact ILP) and compare with the
    contiguous layout: balance per layer, and with --model and --hardware the MoE time.

    Example: planner plan experts -m deepseek-v3 -H h200-sxm --gpus 32 --nodes 4 --slots 288 --groups 8 --zipf 0.5
    """
    from planner.expert_loads import parse_hot, synthetic_loads
    from planner.formatting import render_record, render_rows, to_json
    from solvers.experts import plan_experts

    cat = _catalog(catalog)
    if (loads is None) == (zipf is None and hot is None):
        raise PlannerError("give measured --loads FILE, or a synthetic --zipf S or --hot PCT:K")
    if zipf is not None and hot is not None:
        raise PlannerError("give --zipf or --hot, not both")
    table: Any = loads
    if loads is None:
        from planner.catalog import resolve_model
        from workloads.derived import moe_layer_count

        spec = resolve_model(model, cat) if model is not None else None
        moe = spec.moe if spec is not None else None
        n_layers = layers or (moe_layer_count(spec) if spec is not None and moe is not None else None)
        n_experts = experts or (moe.experts if moe is not None else None)
        if n_layers is None or n_experts is None:
            raise PlannerError("synthetic loads need --model (a MoE model) or --layers and --experts")
        table = synthetic_loads(
            n_layers,
            n_experts,
            tokens=tokens,
            top_k=moe.top_k if moe is not None else 1,
            zipf=zipf,
            hot=parse_hot(hot) if hot is not None else None,
            seed=seed,
        )
    trans = None
    if transitions is not None:
        import numpy as np

        try:
            trans = np.load(transitions, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise PlannerError(f"cannot read transitions '{transitions}': {e}") from None
    plan = plan_experts(
        table,
        policy=policy,
        gpus=gpus,
        nodes=nodes,
        slots=slots,
        groups=groups,
        model=model,
        hardware=hardware,
        time_limit_s=time_limit_s,
        mip_gap=mip_gap,
        solver=solver,
        objective=objective,
        transitions=trans,
        memory_per_gpu_bytes=None if memory_per_gpu_gb is None else memory_per_gpu_gb * 1e9,
        alpha=alpha,
        min_chunk=min_chunk,
        trigger=trigger,
        weight_precision=weight_precision,
        catalog=cat,
    )
    if out is not None:
        _write_expert_plan(plan, out, force)
    if fmt is Format.json:
        _emit(to_json(plan.to_dict()))
        return
    if fmt is Format.csv:
        _emit(render_rows(plan.map_rows(), "csv"))
        return
    render_record({k: v for k, v in plan.summary().items() if v is not None}, "table", title=f"experts: {policy}")
    for m in plan.messages:
        typer.echo(f"note: {m}", err=True)


def _write_expert_plan(plan: Any, out: str, force: bool) -> None:
    from pathlib import Path

    suffix = Path(out).suffix.lower()
    if suffix == ".html":
        from planner.report_experts import expert_report

        expert_report(plan, out, force=force)
    elif suffix == ".json":
        from planner.export import write_json

        write_json(plan.to_dict(), out, force)
    elif suffix == ".csv":
        import pandas as pd

        from planner.export import write_frame

        write_frame(pd.DataFrame(plan.map_rows()), out, force)
    else:
        raise PlannerError(f"--out must end in .html, .json or .csv (got '{out}')")
    typer.echo(f"wrote {out}", err=True)


@plan_app.command("agent")
def plan_agent_cmd(
    workflow: Annotated[
        str,
        typer.Argument(
            metavar="WORKFLOW.yaml", help="Agent workflow file, or a shipped example: voice-agent, coding-agent."
        ),
    ],
    hardware: Annotated[
        list[str] | None,
        typer.Option(
            "--hardware", "-H", help="Candidate hardware class (repeat) [the workflow's, else epyc-9654 to b200]."
        ),
    ] = None,
    rate: Annotated[float | None, typer.Option(help="Requests per second [the workflow's].")] = None,
    sla_s: Annotated[float | None, typer.Option(help="End-to-end latency SLA, seconds [the workflow's].")] = None,
    percentile: Annotated[str | None, typer.Option(help="SLA statistic: mean or p90 [the workflow's].")] = None,
    utilization: Annotated[
        float | None, typer.Option(help="Busy share an instance may reach, (0, 1] [the workflow's, 0.7].")
    ] = None,
    price: Annotated[
        list[str] | None, typer.Option(metavar="ID=USD", help="$/h per device of a class (repeat); overrides.")
    ] = None,
    time_limit_s: Annotated[float, typer.Option(help="MILP time limit per solve, seconds.")] = 30.0,
    solver: Annotated[str, typer.Option(help="MILP solver: highs or cbc.")] = "highs",
    ownership: Annotated[
        str, typer.Option(help="cloud ($/h) or owned (TCO per device-hour, energy at TDP).")
    ] = "cloud",
    fmt: FormatOpt = Format.table,
    out: Annotated[
        str | None,
        typer.Option(
            "--out", "-o", metavar="FILE", help="Write FILE: .html report (DAG, cost vs SLA), .json, .csv stages."
        ),
    ] = None,
    force: ForceOpt = False,
    catalog: CatalogOpt = None,
) -> None:
    """Place an agent workflow's stages (LLM calls, encoders, vector DB, tools, speech) on CPUs and
    accelerators: one class per stage and devices per class at the least $/h that serves the rate
    within the end-to-end latency SLA, against the best one-class placement.

    Example: planner plan agent voice-agent -H l40s -H a100-sxm-80gb -H h100-sxm --sla-s 0.8 --out voice.html
    """
    from planner.files import check_writable
    from planner.formatting import render_record, render_rows
    from solvers.agent_plan import plan_agent

    if out is not None:
        if not out.lower().endswith((".html", ".json", ".csv")):
            raise PlannerError(f"--out must end in .html, .json or .csv (got '{out}')")
        check_writable(out, force)
    plan = plan_agent(
        workflow,
        hardware=hardware,
        rate=rate,
        sla_s=sla_s,
        percentile=percentile,
        utilization=utilization,
        prices=_prices(price),
        time_limit_s=time_limit_s,
        solver=solver,
        catalog=_catalog(catalog),
        sla_curve=out is not None and out.lower().endswith(".html"),
        ownership=ownership,
    )
    if _plan_data_out(plan, out, force, fmt, "agent", plan.stages):
        return
    render_record(plan.summary(), "table", title=f"agent plan: {plan.workflow}")
    columns = ("stage", "kind", "model", "class", "devices_per_instance", "start_s", "latency_s", "critical")
    render_rows([{k: r[k] for k in columns} for r in plan.stages], "table", title="stages")
    render_rows([r for r in plan.classes if r["instances"]], "table", title="hardware in use")
    if plan.rejected:
        rows = [{"class": k, "reason": v} for k, v in plan.rejected.items()]
        render_rows(rows, "table", title="classes not used, and why")
    for m in plan.messages:
        typer.echo(f"note: {m}", err=True)


def _prices(values: list[str] | None) -> dict[str, float]:
    """--price ID=USD (repeat): $/h per device, checked here so a typo is one line."""
    out: dict[str, float] = {}
    for v in values or ():
        key, sep, usd = v.partition("=")
        try:
            out[key.strip()] = float(usd)
        except ValueError:
            raise PlannerError(f"--price must be ID=USD per hour, e.g. epyc-9654=5.56 (got '{v}')") from None
        if not sep or not key.strip() or not out[key.strip()] > 0:
            raise PlannerError(f"--price must be ID=USD per hour > 0, e.g. epyc-9654=5.56 (got '{v}')")
    return out


OwnershipOpt = Annotated[str, typer.Option(help="owned, on-demand or reserved.")]


def _tco_options(
    life_years: float | None,
    pue: float | None,
    usd_per_kwh: float | None,
    colocation_usd_per_kw_month: float | None,
    maintenance_fraction_per_year: float | None,
    network_usd_per_device: float | None,
    discount_rate: float | None,
) -> Any:
    from planner.costs import DEFAULT_TCO

    return DEFAULT_TCO.with_(
        life_years=life_years,
        pue=pue,
        usd_per_kwh=usd_per_kwh,
        colocation_usd_per_kw_month=colocation_usd_per_kw_month,
        maintenance_fraction_per_year=maintenance_fraction_per_year,
        network_usd_per_device=network_usd_per_device,
        discount_rate=discount_rate,
    )


LifeOpt = Annotated[float | None, typer.Option(help="Owned: depreciation life, years [6].")]
PueOpt = Annotated[float | None, typer.Option(help="Owned: facility PUE [1.3].")]
KwhOpt = Annotated[float | None, typer.Option(help="Owned: electricity, $/kWh [0.0806].")]
ColoOpt = Annotated[float | None, typer.Option(help="Owned: colocation, $ per kW of IT power per month [184.06].")]
MaintOpt = Annotated[float | None, typer.Option(help="Owned: maintenance, share of capex per year [0].")]
NetOpt = Annotated[float | None, typer.Option(help="Owned: scale-out NIC, port and optics per device, $ [4250].")]
RateOpt = Annotated[float | None, typer.Option(help="Owned: discount rate per year (capital recovery) [0].")]
CapexOpt = Annotated[float | None, typer.Option(help="Owned: capex per device, $ [the catalogue's].")]
ReservedOpt = Annotated[float | None, typer.Option(help="Reserved: discount on the on-demand price, share.")]


def _emit_tco(t: Any, fmt: Format, out: str | None, force: bool) -> None:
    from planner.formatting import render_record, render_rows, to_json

    if out is not None:
        if not out.lower().endswith((".json", ".csv", ".xlsx")):
            raise PlannerError(f"--out must end in .json, .csv or .xlsx (got '{out}')")
        _write_data_or_report(t, out, force, "planner.report", "report")
    data = t.to_dict()
    if fmt is Format.json:
        _emit(to_json(data))
        return
    if fmt is Format.csv:
        _emit(render_rows([data], "csv"))
        return
    render_record({k: v for k, v in data.items() if v is not None}, "table", title=f"{t.model} on {t.hardware}: TCO")


@tco_app.command("inference")
def tco_inference_cmd(
    model: ModelOpt,
    hardware: HardwareOpt,
    devices: Annotated[int | None, typer.Option(min=1, help="Devices in all (default tp x pp x dp).")] = None,
    tp: Annotated[int, typer.Option(min=1, help="Tensor parallelism.")] = 1,
    pp: Annotated[int, typer.Option(min=1, help="Pipeline parallelism.")] = 1,
    ep: Annotated[int, typer.Option(min=1, help="Expert parallelism (MoE).")] = 1,
    dp: Annotated[int | None, typer.Option(min=1, help="Replicas.")] = None,
    batch: Annotated[int | None, typer.Option(min=1, help="One static batch.")] = None,
    concurrency: Annotated[int | None, typer.Option(min=1, help="Requests in flight (serving).")] = None,
    input_len: Annotated[int, typer.Option(min=1, help="Prompt tokens.")] = 1024,
    output_len: Annotated[int, typer.Option(min=1, help="Generated tokens.")] = 256,
    weight_precision: Annotated[str, typer.Option(help="bf16, fp8, fp4, int4, ...")] = "bf16",
    engine: EngineOpt = "vllm",
    power_cap_w: PowerCapOpt = None,
    ownership: OwnershipOpt = "owned",
    capex_usd: CapexOpt = None,
    reserved_discount: ReservedOpt = None,
    life_years: LifeOpt = None,
    pue: PueOpt = None,
    usd_per_kwh: KwhOpt = None,
    colocation_usd_per_kw_month: ColoOpt = None,
    maintenance_fraction_per_year: MaintOpt = None,
    network_usd_per_device: NetOpt = None,
    discount_rate: RateOpt = None,
    fmt: FormatOpt = Format.table,
    out: Annotated[str | None, typer.Option("--out", "-o", metavar="FILE", help="Write .json or .csv.")] = None,
    force: ForceOpt = False,
    catalog: CatalogOpt = None,
) -> None:
    """$/h by component and $/M generated tokens of serving a model, at its estimated power.

    Example: planner tco inference -m llama3.1-70b -H h100-sxm --tp 8 --concurrency 64 --ownership owned
    """
    from planner.costs import tco
    from planner.inference import estimate_inference

    cat = _catalog(catalog)
    a = _tco_options(
        life_years,
        pue,
        usd_per_kwh,
        colocation_usd_per_kw_month,
        maintenance_fraction_per_year,
        network_usd_per_device,
        discount_rate,
    )
    r = estimate_inference(
        model,
        hardware,
        devices,
        tp=tp,
        pp=pp,
        ep=ep,
        dp=dp,
        batch=batch,
        concurrency=concurrency,
        input_len=input_len,
        output_len=output_len,
        weight_precision=weight_precision,
        engine=engine,
        power_cap_w=power_cap_w,
        catalog=cat,
    )
    t = tco(
        r,
        ownership=ownership,
        assumptions=a,
        capex_usd_per_device=capex_usd,
        reserved_discount=reserved_discount,
        catalog=cat,
    )
    _emit_tco(t, fmt, out, force)


@tco_app.command("training")
def tco_training_cmd(
    model: ModelOpt,
    hardware: HardwareOpt,
    devices: Annotated[int, typer.Option(min=1, help="Devices in all.")],
    tp: Annotated[int, typer.Option(min=1, help="Tensor parallelism.")] = 1,
    pp: Annotated[int, typer.Option(min=1, help="Pipeline parallelism.")] = 1,
    ep: Annotated[int, typer.Option(min=1, help="Expert parallelism (MoE).")] = 1,
    cp: Annotated[int, typer.Option(min=1, help="Context parallelism.")] = 1,
    zero: Annotated[int, typer.Option(min=0, max=3, help="ZeRO stage 0-3.")] = 1,
    micro_batch: Annotated[int, typer.Option(min=1, help="Sequences per micro-batch.")] = 1,
    global_batch: Annotated[int, typer.Option(min=1, help="Sequences per step.")] = 1024,
    seq_len: Annotated[int, typer.Option(min=1, help="Tokens per sequence.")] = 4096,
    precision: Annotated[str, typer.Option(help="GEMM precision: bf16 or fp8.")] = "bf16",
    token_budget: Annotated[float | None, typer.Option(help="Tokens to train: the run's time and cost.")] = None,
    power_cap_w: PowerCapOpt = None,
    ownership: OwnershipOpt = "owned",
    capex_usd: CapexOpt = None,
    reserved_discount: ReservedOpt = None,
    life_years: LifeOpt = None,
    pue: PueOpt = None,
    usd_per_kwh: KwhOpt = None,
    colocation_usd_per_kw_month: ColoOpt = None,
    maintenance_fraction_per_year: MaintOpt = None,
    network_usd_per_device: NetOpt = None,
    discount_rate: RateOpt = None,
    fmt: FormatOpt = Format.table,
    out: Annotated[str | None, typer.Option("--out", "-o", metavar="FILE", help="Write .json or .csv.")] = None,
    force: ForceOpt = False,
    catalog: CatalogOpt = None,
) -> None:
    """$/h by component, $/M trained tokens and the cost of a run of --token-budget tokens.

    Example: planner tco training -m llama3.1-70b -H h100-sxm --devices 64 --tp 8 --pp 2 --token-budget 1e12
    """
    from planner.costs import tco
    from planner.training import estimate_training

    if token_budget is not None and not (token_budget > 0 and token_budget < float("inf")):
        raise PlannerError(f"--token-budget must be a finite number of tokens > 0 (got {token_budget})")
    cat = _catalog(catalog)
    a = _tco_options(
        life_years,
        pue,
        usd_per_kwh,
        colocation_usd_per_kw_month,
        maintenance_fraction_per_year,
        network_usd_per_device,
        discount_rate,
    )
    r = estimate_training(
        model,
        hardware,
        devices,
        tp=tp,
        pp=pp,
        ep=ep,
        cp=cp,
        zero=zero,
        micro_batch=micro_batch,
        global_batch=global_batch,
        seq_len=seq_len,
        precision=precision,
        power_cap_w=power_cap_w,
        catalog=cat,
    )
    t = tco(
        r,
        ownership=ownership,
        assumptions=a,
        capex_usd_per_device=capex_usd,
        reserved_discount=reserved_discount,
        token_budget=token_budget,
        catalog=cat,
    )
    _emit_tco(t, fmt, out, force)


@tco_app.command("oversubscribe")
def tco_oversubscribe_cmd(
    row_kw: Annotated[float, typer.Option(help="The row's (or site's) power budget, kW.")],
    server_kw: Annotated[float, typer.Option(help="One server's rated power, kW (DGX H100: 10.2).")],
    peak_ratio: Annotated[
        float | None, typer.Option(help="Servers' peak draw over rated [POLCA: inference 0.79, training 0.97].")
    ] = None,
    workload: Annotated[str, typer.Option(help="inference or training: POLCA's peak ratio for it.")] = "inference",
    low_priority_share: Annotated[float, typer.Option(help="Share of servers capped at the peaks.")] = 0.0,
    capped_ratio: Annotated[float | None, typer.Option(help="Their peak under the cap, over rated.")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="With -H: the capped servers' loss.")] = None,
    hardware: Annotated[str | None, typer.Option("--hardware", "-H", help="Device the servers hold.")] = None,
    tp: Annotated[int, typer.Option(min=1, help="Tensor parallelism of the served model.")] = 1,
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight per replica.")] = 64,
    input_len: Annotated[int, typer.Option(min=1, help="Prompt tokens.")] = 1024,
    output_len: Annotated[int, typer.Option(min=1, help="Generated tokens.")] = 256,
    fmt: FormatOpt = Format.table,
    catalog: CatalogOpt = None,
) -> None:
    """How many servers a power budget holds when they rarely draw their rated power, with a
    share of them capped at the peaks (POLCA), and what the capped ones lose.

    Example: planner tco oversubscribe --row-kw 408 --server-kw 10.2 --low-priority-share 0.5 --capped-ratio 0.745
    """
    from planner.formatting import render_record, to_json
    from planner.oversubscription import (
        POLCA_INFERENCE_PEAK,
        POLCA_TRAINING_PEAK,
        capped_loss,
        oversubscribe,
    )

    peaks = {"inference": POLCA_INFERENCE_PEAK, "training": POLCA_TRAINING_PEAK}
    if workload not in peaks:
        raise PlannerError(f"unknown --workload '{workload}' (allowed: inference, training)")
    ratio = peak_ratio if peak_ratio is not None else peaks[workload]
    o = oversubscribe(
        row_kw * 1e3, server_kw * 1e3, ratio, low_priority_share=low_priority_share, capped_ratio=capped_ratio
    )
    data = o.to_dict()
    if (model is None) != (hardware is None):
        raise PlannerError("give --model and --hardware together (the capped servers' loss)")
    if model is not None and hardware is not None:
        from planner.inference import estimate_inference

        cat = _catalog(catalog)

        def run(cap: float | None = None) -> Any:
            return estimate_inference(
                model,
                hardware,
                tp=tp,
                concurrency=concurrency,
                input_len=input_len,
                output_len=output_len,
                power_cap_w=cap,
                catalog=cat,
            )

        data["capped_throughput_loss"] = capped_loss(run(), ratio, o.capped_ratio, run)
    if fmt is Format.json:
        _emit(to_json(data))
        return
    render_record(data, "table", title="power oversubscription")


@plan_app.command("mix")
def plan_mix_cmd(
    rate: Annotated[float, typer.Option(help="Requests per second to serve (all buckets together).")],
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Model ID, config.json or YAML (profiles from the engine).")
    ] = None,
    hardware: Annotated[
        list[str] | None,
        typer.Option("--hardware", "-H", help="Instance types, ID or ID:TP (repeat the flag); every TP if none."),
    ] = None,
    ttft: Annotated[float | None, typer.Option(help="TTFT target in seconds (profiles from the engine).")] = None,
    tpot: Annotated[float | None, typer.Option(help="TPOT target in seconds (profiles from the engine).")] = None,
    percentile: Annotated[float | None, typer.Option(help="TTFT target on this percentile (e.g. 0.9).")] = None,
    lengths: Annotated[
        str | None, typer.Option(metavar="CSV", help="Request samples (columns input_len, output_len), bucketed.")
    ] = None,
    distribution: Annotated[
        str | None,
        typer.Option(
            metavar="NAME|FILE",
            help="Length distribution: a shipped name (azure-conversation-2023, arxiv-summarization) "
            "or a bucket table (.yaml, or .csv with input_lo,input_hi,output_lo,output_hi,share).",
        ),
    ] = None,
    profiles: Annotated[
        str | None,
        typer.Option(
            metavar="CSV",
            help="Measured profiles instead of the engine; columns "
            "type,usd_per_hour,input_bucket,output_bucket,max_rate_per_s.",
        ),
    ] = None,
    slices: Annotated[int, typer.Option(min=1, help="Slices each bucket's rate is cut into (Mélange: 4).")] = 4,
    tp: Annotated[list[int] | None, typer.Option("--tp", help="TP options per type (repeat; default 1,2,4,8).")] = None,
    weight_precision: Annotated[str, typer.Option(help="Weight precision of the model.")] = "bf16",
    engine: EngineOpt = "vllm",
    time_limit_s: Annotated[float, typer.Option(help="ILP time limit, seconds.")] = 30.0,
    solver: Annotated[str, typer.Option(help="ILP solver: cbc (as Mélange's) or highs.")] = "cbc",
    out: OutOpt = None,
    force: ForceOpt = False,
    fmt: FormatOpt = Format.table,
    catalog: CatalogOpt = None,
) -> None:
    """Cheapest mix of GPU types for a request-length distribution within TTFT/TPOT (Mélange,
    arXiv 2404.14527): each type's most requests/s per length bucket, then an ILP packs the buckets.

    Example: planner plan mix -m llama3.1-8b -H a10g -H l40s -H h100-sxm:1 --distribution azure-conversation-2023
    --rate 20 --ttft 2 --tpot 0.05
    """
    from pathlib import Path

    from planner.formatting import render_record, render_rows
    from solvers.inference_plan import Slo
    from solvers.mix_plan import plan_mix

    cat = _catalog(catalog)
    if (lengths is None) == (distribution is None):
        raise PlannerError("give the length distribution: --lengths CSV (samples) or --distribution NAME|FILE")
    if profiles is not None and (model is not None or hardware):
        raise PlannerError("--profiles replaces the engine: give it without --model / --hardware")
    if profiles is None and (model is None or not hardware or ttft is None or tpot is None):
        raise PlannerError("profiles from the engine need --model, --hardware, --ttft and --tpot (or give --profiles)")
    html = out is not None and Path(out).suffix.lower() == ".html"
    common: dict[str, Any] = {
        "rate": rate,
        "lengths": lengths,
        "distribution": distribution,
        "slices": slices,
        "time_limit_s": time_limit_s,
        "solver": solver,
        "rate_sweep": (0.25, 0.5, 1.0, 2.0, 4.0) if html else None,
    }
    if profiles is not None:
        plan = plan_mix(profiles_csv=profiles, **common)
    else:
        assert ttft is not None and tpot is not None
        plan = plan_mix(
            model,
            hardware,
            slo=Slo(ttft, tpot, percentile),
            tps=tp or None,
            weight_precision=weight_precision,
            engine=engine,
            catalog=cat,
            slo_sweep=(0.5, 0.75, 1.0, 1.5, 2.0) if html else None,
            **common,
        )
    if _plan_data_out(plan, out, force, fmt, "mix", plan.type_rows()):
        return
    render_record({k: v for k, v in plan.summary().items() if v is not None}, "table", title="GPU mix")
    render_rows([r for r in plan.type_rows() if r["instances"]], "table", title="instances per type")
    render_rows(list(plan.single_types), "table", title="runner-ups: each type alone")
    if plan.rejected:
        render_rows([{"option": k, "why": v} for k, v in plan.rejected.items()], "table", title="left out")
    for m in plan.messages:
        typer.echo(f"note: {m}", err=True)


@plan_app.command("fleet")
def plan_fleet_cmd(
    scenario: Annotated[
        str,
        typer.Argument(metavar="SCENARIO.yaml", help="Fleet scenario file, or a shipped example: example."),
    ],
    time_limit_s: Annotated[float, typer.Option(help="MILP time limit, seconds.")] = 60.0,
    mip_gap: Annotated[float, typer.Option(help="MILP relative gap to stop at.")] = 1e-4,
    solver: Annotated[str, typer.Option(help="MILP solver: highs or cbc.")] = "highs",
    fmt: FormatOpt = Format.table,
    out: Annotated[
        str | None,
        typer.Option(
            "--out",
            "-o",
            metavar="FILE",
            help="Write FILE: .html report (cost, fleet, power per year), .json, .csv/.xlsx (year x type).",
        ),
    ] = None,
    force: ForceOpt = False,
    catalog: CatalogOpt = None,
) -> None:
    """The cheapest multi-year fleet (NPV of TCO): what to buy each year and where, which devices
    to retire, and which carry each serving or training workload, within each site's power and space.

    Example: planner plan fleet example --out fleet.html
    """
    from planner.files import check_writable
    from planner.formatting import render_record, render_rows
    from solvers.fleet_plan import plan_fleet

    if out is not None:
        if not out.lower().endswith((".html", ".json", ".csv", ".xlsx")):
            raise PlannerError(f"--out must end in .html, .json, .csv or .xlsx (got '{out}')")
        check_writable(out, force)
    plan = plan_fleet(scenario, time_limit_s=time_limit_s, solver=solver, mip_gap=mip_gap, catalog=_catalog(catalog))
    if _plan_data_out(plan, out, force, fmt, "fleet", plan.fleet):
        return
    render_record(plan.summary(), "table", title=f"fleet plan: {plan.name}")
    shown = [r for r in plan.fleet if r["installed"] or r["bought"] or r["retired"]]
    render_rows(shown, "table", title="fleet per year and type (devices; power in W)")
    costs: dict[int, dict[str, Any]] = {}
    for r in plan.costs:
        row = costs.setdefault(r["year"], {"year": r["year"], "npv_usd": 0.0})
        row[f"{r['component']}_usd"] = r["usd"]
        row["npv_usd"] += r["npv_usd"]
    render_rows(list(costs.values()), "table", title="cost per year (undiscounted; npv_usd discounted)")
    columns = ("year", "workload", "demand", "demand_unit", "devices_in_use", "usd_per_million_tokens")
    render_rows([{k: r[k] for k in columns} for r in plan.workloads], "table", title="cost per workload")
    for m in plan.messages:
        typer.echo(f"note: {m}", err=True)


def _model_counts(values: list[str]) -> list[Any]:
    """--model ID[:COUNT]: COUNT copies (CoE experts) of one architecture."""
    out: list[Any] = []
    for v in values:
        ref, _, count = v.rpartition(":")
        if ref and count.isdigit():
            out.append((ref, int(count)))
        else:
            out.append(v)
    return out


@plan_app.command("models")
def plan_models_cmd(
    model: Annotated[
        list[str],
        typer.Option("--model", "-m", help="Model ID, config.json or YAML; ID:COUNT for COUNT experts of it (repeat)."),
    ],
    hardware: Annotated[
        list[str] | None,
        typer.Option(
            "--hardware", "-H", help="Node types, system or device ID (repeat); default sn40l-node, dgx-a100, dgx-h100."
        ),
    ] = None,
    popularity: Annotated[
        str, typer.Option(help="Request mix: zipf:<s>, uniform, or a file with one count per model (one a line).")
    ] = "zipf:1.0",
    batch: Annotated[int, typer.Option(min=1, help="Prompts per request (one static batch to one model).")] = 1,
    input_len: Annotated[int, typer.Option(min=1, help="Prompt tokens.")] = 1024,
    output_len: Annotated[int, typer.Option(min=1, help="Generated tokens.")] = 256,
    latency_target: Annotated[
        float | None, typer.Option(help="Latency target in seconds: the fewest nodes of each type meeting it.")
    ] = None,
    target_metric: Annotated[str, typer.Option(help="What the target bounds: mean, p50, p90 or p99.")] = "p99",
    policy: Annotated[
        str, typer.Option(help="Residency: lru (SambaNova's runtime) or static (optimal knapsack).")
    ] = "lru",
    router: Annotated[str | None, typer.Option(help="Router model ID, run before every request (CoE).")] = None,
    weight_precision: Annotated[str, typer.Option(help="Weight precision of the models.")] = "bf16",
    reserve_fraction: Annotated[
        float, typer.Option(help="Fast-tier share kept free for the framework (0: the SN40L paper's optimistic DGX).")
    ] = 0.10,
    host_links: Annotated[
        int, typer.Option(min=1, help="Host links a switch from host DRAM uses at once (1: the SN40L paper's DGX).")
    ] = 1,
    out: OutOpt = None,
    force: ForceOpt = False,
    fmt: FormatOpt = Format.table,
    catalog: CatalogOpt = None,
) -> None:
    """Many models on nodes of each type: which stay resident in the fast tier, the switch cost from
    the slower tier, the hit rate and latency, and how many nodes hold and serve them (SN40L
    Composition of Experts, arXiv:2405.07518). --out report.html: latency against the number of models.

    Example: planner plan models -m llama2-7b:850 --router llama2-7b -H sn40l-node -H dgx-h100 --output-len 20
    """
    from pathlib import Path

    from planner.files import check_writable
    from planner.formatting import render_record, render_rows
    from solvers.models_plan import plan_models

    pop: Any = popularity
    if not popularity.startswith(("zipf:", "uniform")):
        path = Path(popularity)
        if not path.is_file():
            raise PlannerError(f"--popularity '{popularity}': use zipf:<s>, uniform or a file of counts")
        try:
            pop = [float(x) for x in path.read_text(encoding="utf-8").split()]
        except ValueError:
            raise PlannerError(f"--popularity file '{path}': every line must be one number") from None
    if out is not None:
        if not out.lower().endswith((".html", ".json", ".csv", ".xlsx")):
            raise PlannerError(f"--out must end in .html, .json, .csv or .xlsx (got '{out}')")
        check_writable(out, force)
    plan = plan_models(
        _model_counts(model),
        hardware=tuple(hardware) if hardware else ("sn40l-node", "dgx-a100", "dgx-h100"),
        popularity=pop,
        batch=batch,
        input_len=input_len,
        output_len=output_len,
        latency_target_s=latency_target,
        target_metric=target_metric,
        policy=policy,
        router=router,
        weight_precision=weight_precision,
        reserve_fraction=reserve_fraction,
        host_links=host_links,
        catalog=_catalog(catalog),
    )
    if _plan_data_out(plan, out, force, fmt, "models", plan.node_types):
        return
    render_record({k: v for k, v in plan.summary().items() if v is not None}, "table", title="models")
    columns = (
        "hardware",
        "nodes",
        "nodes_to_hold_in_fast",
        "nodes_to_hold_at_all",
        "nodes_for_target",
        "resident_models",
        "hit_rate",
        "switch_s",
        "router_s",
        "mean_latency_s",
        "p99_latency_s",
        "spills_at_models",
    )
    render_rows([{k: r[k] for k in columns} for r in plan.node_types], "table", title="per node type")
    if plan.rejected:
        render_rows([{"option": k, "why": v} for k, v in plan.rejected.items()], "table", title="left out")


def _fail(message: str, code: int) -> NoReturn:
    if message:
        sys.stderr.write(message.rstrip() + "\n")
    raise SystemExit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors exit 2 with one line; Ctrl-C exits 130 ("interrupted"), having
    removed any partial output and stopped the workers; anything else is a bug and exits 1."""
    import signal

    import click
    from typer.exceptions import TyperException

    # A shell starts background jobs with SIGINT ignored, and Python then never raises
    # KeyboardInterrupt: the run went on and exited 0. Ctrl-C (or kill -INT) must always stop it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code = app(args=argv, standalone_mode=False)
    except typer.Exit as e:
        raise SystemExit(e.exit_code) from None
    except TyperException as e:  # usage errors: bad option, missing argument
        message = e.format_message().strip()
        _fail(f"error: {message}" if message else "", 2)  # empty: the group's help was printed
    except KeyboardInterrupt:  # outside a command (typer handles those: below)
        _fail("interrupted", 130)
    except (typer.Abort, click.exceptions.Abort) as e:  # click turns a Ctrl-C outside the command into its Abort
        _fail("interrupted", 130) if isinstance(e.__cause__, KeyboardInterrupt) else _fail("aborted", 1)
    except PlannerError as e:
        _fail(f"error: {e}", 2)
    except BrokenPipeError:
        raise SystemExit(0) from None
    except Exception as e:
        _fail(f"internal error: {type(e).__name__}: {e} -- this is a bug, please report it with the command line", 1)
    # Not standalone, typer returns an exit code instead of exiting: 130 for a KeyboardInterrupt
    # in a command (whose cleanup has run by then), or a command's typer.Exit(code).
    if code == 130:
        _fail("interrupted", 130)
    if isinstance(code, int) and code:
        raise SystemExit(code)


if __name__ == "__main__":
    main()
