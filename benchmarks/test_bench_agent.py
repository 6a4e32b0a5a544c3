"""Agent placement on a 12-stage graph over 6 hardware classes (a CPU socket, A10G, L40S, A100,
H100, B200): speech in, retrieval with a reranker, a router, two 32B LLM calls with a tool call
between them, a checker, speech out. Measured, not asserted: the whole plan_agent call (engine
calls for every stage on every class and TP size, the MILP, the six one-class MILPs); target <= 5 s."""

from __future__ import annotations

from typing import Any

import pytest

from planner.catalog import Catalog
from solvers.agent_plan import plan_agent
from workloads.agent import Workflow, parse_workflow

SPEECH_IN = {"flops_per_call": "2.26 TFLOP", "flops_per_audio_s": "6.8 GFLOP", "bytes_per_audio_s": "6.8 GB"}
WORKFLOW = {
    "name": "bench-12",
    "rate": 5.0,
    "sla": {"latency": "20 s"},
    "llm_concurrency": 8,
    "prices": {"epyc-9654": 5.56},  # m7a.48xlarge / 2 sockets, as in workloads/agents/voice-agent.yaml
    "hardware": ["epyc-9654", "a10g", "l40s", "a100-sxm-80gb", "h100-sxm", "b200"],
    "stages": [
        {"id": "stt", "kind": "stt", "audio_s": "5 s", "weight_bytes": "3.1 GB", **SPEECH_IN},
        {"id": "embed", "kind": "embedding", "flops_per_item": "7 GFLOP", "weight_bytes": "218 MB"},
        {"id": "vdb", "kind": "vector_db", "cpu_s": "2 ms"},
        {"id": "rerank", "kind": "reranker", "model": "qwen3-8b", "items": 20, "tokens_per_item": 512},
        {"id": "route", "kind": "llm", "model": "llama3.1-8b", "input_len": 1024, "output_len": 32},
        {"id": "search", "kind": "tool", "latency_s": "0.8 s"},
        {"id": "plan", "kind": "llm", "model": "qwen3-32b", "input_len": 4096, "output_len": 256},
        {"id": "code", "kind": "tool", "cpu_s": "3 s"},
        {"id": "answer", "kind": "llm", "model": "qwen3-32b", "input_len": 8192, "output_len": 400},
        {"id": "check", "kind": "llm", "model": "llama3.1-8b", "input_len": 2048, "output_len": 64},
        {"id": "log", "kind": "tool", "cpu_s": "50 ms"},
        {"id": "tts", "kind": "tts", "audio_s": "12 s", "flops_per_audio_s": "6.6 GFLOP", "weight_bytes": "164 MB"},
    ],
    "edges": [
        {"from": a, "to": b, "bytes": n}
        for a, b, n in (
            ("stt", "embed", "200 B"),
            ("stt", "route", "200 B"),
            ("embed", "vdb", "3 KB"),
            ("vdb", "rerank", "40 KB"),
            ("route", "search", "1 KB"),
            ("rerank", "plan", "20 KB"),
            ("route", "plan", "1 KB"),
            ("search", "plan", "10 KB"),
            ("plan", "code", "4 KB"),
            ("code", "answer", "20 KB"),
            ("answer", "check", "2 KB"),
            ("answer", "log", "2 KB"),
            ("check", "tts", "2 KB"),
        )
    ],
}


@pytest.fixture(scope="module")
def workflow() -> Workflow:
    return parse_workflow(WORKFLOW, "bench-12")


def test_agent_12_stages_6_classes(benchmark: Any, workflow: Workflow, catalog: Catalog) -> None:
    plan = benchmark.pedantic(plan_agent, args=(workflow,), kwargs={"catalog": catalog}, rounds=3, iterations=1)
    benchmark.extra_info.update(
        usd_per_hour=plan.usd_per_hour,
        homogeneous_usd_per_hour=plan.homogeneous_usd_per_hour,
        status=plan.status,
        mip_gap=plan.mip_gap,
        solve_s=plan.solve_s,
    )
    print(
        f"agent 12x6: {plan.status}, ${plan.usd_per_hour:.2f}/h vs ${plan.homogeneous_usd_per_hour:.2f}/h "
        f"one-class, MILP {plan.solve_s:.2f} s"
    )
