"""Agent workflows: a DAG of stages (LLM calls, encoders, vector-DB lookups, tool calls, speech
models) joined by edges that carry bytes, with a request rate and an end-to-end latency SLA.

The shape follows the agent graphs of Asgar, Nguyen and Katti, "Efficient and Scalable Agentic AI
with Heterogeneous Systems" (arXiv 2507.19635): multi-modal conversion (speech to text), context
gathering (vector DB), several LLM inferences and tool calls, placed on CPUs and accelerators of
several generations under one SLA. `solvers.agent_plan` places the stages; this module only reads
and checks the file, so every mistake is one line naming the file, the field and what is allowed.

Quantities take units as in the catalogue (`6 s`, `1.2 GB`, `69 GFLOP`); bare numbers are SI.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationError, model_validator

from hardware_db.errors import InvalidSpecError
from hardware_db.loader import format_validation_error, read_yaml
from hardware_db.schema import Id, Spec
from hardware_db.units import parse_quantity

# The shipped examples. Not under workloads/data: the catalogue loads every YAML file there as
# hardware/model entries (planner.catalog), and a workflow is neither.
AGENT_DATA = Path(__file__).resolve().parent / "agents"
STAGE_KINDS = ("llm", "embedding", "reranker", "vector_db", "tool", "stt", "tts")
PERCENTILES = ("mean", "p90")


def _q(dim: Any) -> BeforeValidator:
    return BeforeValidator(lambda v: parse_quantity(v, dim))


Bytes = Annotated[float, _q("bytes"), Field(ge=0)]
PositiveBytes = Annotated[float, _q("bytes"), Field(gt=0)]
Flops = Annotated[float, _q("flops"), Field(gt=0)]
Seconds = Annotated[float, _q("seconds"), Field(ge=0)]
PositiveSeconds = Annotated[float, _q("seconds"), Field(gt=0)]
StageId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$", min_length=1, max_length=64)]


class _Stage(Spec):
    id: StageId
    repeats: int = Field(default=1, ge=1, le=1000, description="sequential calls of this stage per request")
    note: str | None = None


class LlmStage(_Stage):
    """One LLM call (times `repeats`): prefill of input_len tokens, then output_len tokens."""

    kind: Literal["llm"]
    model: str
    input_len: int = Field(ge=1, le=10_000_000)
    output_len: int = Field(ge=1, le=1_000_000)
    weight_precision: str = "bf16"
    kv_precision: str | None = None
    concurrency: int | None = Field(default=None, ge=1, le=4096, description="requests in flight per instance")
    tp: int | None = Field(default=None, ge=1, le=64, description="devices per instance (None: fewest that fit)")


class EncoderStage(_Stage):
    """An embedding or reranker call over `items` texts: a catalogue model with tokens_per_item, or
    FLOPs and bytes per item with the resident weights (a roofline of the whole call)."""

    kind: Literal["embedding", "reranker"]
    items: int = Field(default=1, ge=1, le=1_000_000)
    model: str | None = None
    tokens_per_item: int | None = Field(default=None, ge=1, le=1_000_000)
    flops_per_item: Flops | None = None
    bytes_per_item: Bytes = 0.0
    weight_bytes: Bytes = 0.0
    precision: str = "bf16"

    @model_validator(mode="after")
    def _one_form(self) -> EncoderStage:
        if (self.model is None) == (self.flops_per_item is None):
            raise ValueError("give a catalogue `model` (with tokens_per_item) or `flops_per_item`, not both")
        if self.model is not None and self.tokens_per_item is None:
            raise ValueError("a catalogue `model` needs tokens_per_item")
        return self


class CpuStage(_Stage):
    """A vector-DB lookup or a tool call: CPU time (core-seconds, runs on a CPU or an accelerator's
    host cores), or a fixed latency outside the planned hardware (an external API)."""

    kind: Literal["vector_db", "tool"]
    cpu_s: PositiveSeconds | None = None
    latency_s: Seconds | None = None
    latency_p90_s: Seconds | None = None

    @model_validator(mode="after")
    def _one_form(self) -> CpuStage:
        if (self.cpu_s is None) == (self.latency_s is None):
            raise ValueError("give `cpu_s` (CPU core-seconds per call) or `latency_s` (a fixed latency), not both")
        if self.latency_p90_s is not None and self.latency_s is None:
            raise ValueError("latency_p90_s needs latency_s")
        if self.latency_p90_s is not None and self.latency_s is not None and self.latency_p90_s < self.latency_s:
            raise ValueError(f"latency_p90_s must be >= latency_s ({self.latency_s} s)")
        return self


class SpeechStage(_Stage):
    """Speech to text or text to speech over `audio_s` seconds of audio: FLOPs per call (a fixed
    window, e.g. Whisper's 30 s encoder pass) plus FLOPs per audio second; bytes moved are one pass
    over the weights plus bytes per audio second (an autoregressive decoder re-reading its weights)."""

    kind: Literal["stt", "tts"]
    audio_s: PositiveSeconds
    flops_per_call: Annotated[float, _q("flops"), Field(ge=0)] = 0.0
    flops_per_audio_s: Annotated[float, _q("flops"), Field(ge=0)] = 0.0
    bytes_per_audio_s: Bytes = 0.0
    weight_bytes: PositiveBytes
    precision: str = "bf16"

    @model_validator(mode="after")
    def _some_work(self) -> SpeechStage:
        if self.flops_per_call == 0 and self.flops_per_audio_s == 0:
            raise ValueError("give flops_per_call and/or flops_per_audio_s (> 0)")
        return self


Stage = Annotated[LlmStage | EncoderStage | CpuStage | SpeechStage, Field(discriminator="kind")]


class Edge(Spec):
    source: StageId = Field(alias="from")
    target: StageId = Field(alias="to")
    bytes: Bytes = 0.0


class Sla(Spec):
    latency_s: PositiveSeconds = Field(alias="latency")
    percentile: Literal["mean", "p90"] = "mean"


class Workflow(Spec):
    name: str = Field(min_length=1)
    rate: float = Field(gt=0, le=1e7, description="requests per second")
    sla: Sla
    stages: tuple[Stage, ...] = Field(min_length=1, max_length=1000)
    edges: tuple[Edge, ...] = ()
    utilization: float = Field(default=0.7, gt=0, le=1.0, description="busy share an instance may reach")
    llm_concurrency: int = Field(default=1, ge=1, le=4096, description="requests in flight per LLM instance")
    hardware: tuple[Id, ...] | None = Field(default=None, min_length=1, description="candidate classes")
    prices: dict[Id, Annotated[float, Field(gt=0)]] = Field(default_factory=dict, description="$/h per device")
    source: str | None = None
    note: str | None = None

    def stage(self, stage_id: str) -> Any:
        return next(s for s in self.stages if s.id == stage_id)


def load_workflow(path: str | Path) -> Workflow:
    """Read and check one workflow file (a bare name finds a shipped example, e.g. 'voice-agent')."""
    p = resolve_path(path)
    return parse_workflow(read_yaml(p), p)


def resolve_path(path: str | Path) -> Path:
    p = Path(path).expanduser()
    if not p.is_file() and p.suffix == "" and (AGENT_DATA / f"{p.name}.yaml").is_file():
        return AGENT_DATA / f"{p.name}.yaml"
    if not p.is_file():
        shipped = ", ".join(sorted(x.stem for x in AGENT_DATA.glob("*.yaml")))
        raise InvalidSpecError(f"workflow file '{p}' does not exist (shipped examples: {shipped})")
    return p


def parse_workflow(data: Mapping[str, Any], path: str | Path = "<workflow>") -> Workflow:
    try:
        wf = Workflow.model_validate(data)
    except ValidationError as err:
        raise InvalidSpecError(format_validation_error(path, data, err, Workflow, STAGE_KINDS, "stage kind")) from None
    _check_graph(wf, path)
    return wf


def _check_graph(wf: Workflow, path: str | Path) -> None:
    """Unique stage IDs, edges between known stages, no cycle (a workflow is a DAG)."""
    ids = [s.id for s in wf.stages]
    for i, s in enumerate(ids):
        if s in ids[:i]:
            raise InvalidSpecError(f"{path}: stages[{i}].id: stage '{s}' is defined twice")
    for i, e in enumerate(wf.edges):
        for side, ref in (("from", e.source), ("to", e.target)):
            if ref not in ids:
                raise InvalidSpecError(f"{path}: edges[{i}].{side}: unknown stage '{ref}' (stages: {', '.join(ids)})")
        if e.source == e.target:
            raise InvalidSpecError(f"{path}: edges[{i}]: an edge from '{e.source}' to itself")
    if topological_order(wf) is None:
        raise InvalidSpecError(f"{path}: edges: the stages form a cycle; a workflow must be a DAG")


def topological_order(wf: Workflow) -> list[str] | None:
    """Kahn's order of the stage IDs (file order among ready stages), None when there is a cycle."""
    indeg = {s.id: 0 for s in wf.stages}
    for e in wf.edges:
        indeg[e.target] += 1
    ready = [s.id for s in wf.stages if indeg[s.id] == 0]
    order: list[str] = []
    while ready:
        node = ready.pop(0)
        order.append(node)
        for e in wf.edges:
            if e.source == node:
                indeg[e.target] -= 1
                if indeg[e.target] == 0:
                    ready.append(e.target)
    return order if len(order) == len(indeg) else None
