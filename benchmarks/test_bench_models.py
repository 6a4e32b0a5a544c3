"""Multi-model residency at the SN40L paper's size (arXiv:2405.07518 sec. VI-C): 850 Llama2-7B experts
and a Llama2-7B router, Zipf(1.0) popularity, on an SN40L node, a DGX A100 and a DGX H100, with a p99
target that makes the DGXs buy nodes. Measured, not asserted: the whole plan (execution estimates,
node counts, the node-count search and the latency-vs-models curve), and Che's LRU approximation
alone over 850 models (target <= 5 ms)."""

from __future__ import annotations

from typing import Any

import numpy as np

from planner.catalog import Catalog
from planner.residency import lru_hit_rates, popularity
from solvers.models_plan import plan_models


def test_bench_plan_models_850_experts(benchmark: Any, catalog: Catalog) -> None:
    plan = benchmark(
        plan_models,
        [("llama2-7b", 850)],
        hardware=("sn40l-node", "dgx-a100", "dgx-h100"),
        router="llama2-7b",
        output_len=20,
        latency_target_s=0.12,
        catalog=catalog,
    )
    assert plan.models == 850


def test_bench_che_850_models(benchmark: Any) -> None:
    p = popularity("zipf:1.0", 850)
    hits = benchmark(lru_hit_rates, np.full(850, 13.48e9), p, 494e9)
    assert 0 < float(p @ hits) < 1
