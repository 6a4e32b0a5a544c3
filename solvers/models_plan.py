"""Many models (or Composition-of-Experts experts) on nodes of each type: how many nodes hold them in
the fast tier, how many hold them at all, the hit rate and latency a node count gives, and the
fewest nodes meeting a latency target (issue 15 point 2; SN40L CoE, arXiv:2405.07518 sec. VI-C).
The physics lives in planner.residency; this module expands the inputs and searches node counts."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hardware_db.errors import InfeasiblePlanError, InvalidSpecError, PlannerError
from planner.catalog import Catalog, load_catalog, resolve_model
from planner.cluster import resolve_cluster
from planner.memory import RESERVE_FRACTION, weight_bytes_per_device
from planner.ops import Precisions, Sharding
from planner.residency import NodeMemory, execution_s, node_memory, nodes_to_hold, serve
from planner.residency import popularity as popularity_probs
from workloads.derived import kv_cache_bytes
from workloads.schema import ModelSpec

METRICS = ("mean", "p50", "p90", "p99")


@dataclass(frozen=True)
class ModelsPlan:
    models: int
    architectures: tuple[str, ...]
    total_weight_bytes: float
    popularity: str
    policy: str
    router: str | None
    batch: int
    input_len: int
    output_len: int
    latency_target_s: float | None
    target_metric: str
    node_types: tuple[dict[str, Any], ...]  # one row per hardware that can hold the models
    curve: tuple[dict[str, Any], ...]  # latency against the number of models, one node of each type
    rejected: dict[str, str]
    messages: tuple[str, ...] = ()

    def summary(self) -> dict[str, Any]:
        keys = ("models", "total_weight_bytes", "popularity", "policy", "router", "batch", "input_len", "output_len")
        out = {k: getattr(self, k) for k in keys}
        out["architectures"] = ", ".join(self.architectures)
        if self.latency_target_s is not None:
            out[f"latency_target_s ({self.target_metric})"] = self.latency_target_s
        return out

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}

    def to_frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame(list(self.node_types))


def _expand(models: Sequence[Any], cat: Catalog) -> tuple[list[ModelSpec], list[str], np.ndarray]:
    """Distinct specs, a name per model and each model's index into the specs."""
    if isinstance(models, (str, Path, ModelSpec)):
        models = [models]
    specs: dict[str, ModelSpec] = {}
    names: list[str] = []
    arch: list[int] = []
    for entry in models:
        ref, count = entry if isinstance(entry, tuple) else (entry, 1)
        if not isinstance(count, (int, np.integer)) or count < 1:
            raise InvalidSpecError(f"model count must be a whole number >= 1 (got {count!r} for '{ref}')")
        spec = resolve_model(ref, cat)
        key = spec.id
        specs.setdefault(key, spec)
        i = list(specs).index(key)
        names += [key] if count == 1 else [f"{key}#{k + 1}" for k in range(count)]
        arch += [i] * count
    if not names:
        raise InvalidSpecError("give at least one model")
    return list(specs.values()), names, np.array(arch)


def _weight_bytes(spec: ModelSpec, precision: str) -> float:
    return float(weight_bytes_per_device(spec, Sharding(), Precisions(weight=precision)))


@dataclass(frozen=True)
class _Type:
    hardware: str
    node: NodeMemory
    free_bytes: float  # fast tier left for models once the router and the batch's KV cache are in
    router_s: float
    base_s: np.ndarray  # router + prefill + decode per model


def _node_type(hw: str, specs: list[ModelSpec], arch: np.ndarray, router: ModelSpec | None, o: dict[str, Any]) -> _Type:
    cat = o["catalog"]
    cluster = resolve_cluster(hw, None, cat)
    node = node_memory(cluster, cat, hardware=hw, reserve_fraction=o["reserve_fraction"], host_links=o["host_links"])
    run = {k: o[k] for k in ("batch", "input_len", "output_len", "weight_precision")}
    exec_s = np.array([execution_s(s, hw, cluster.devices, catalog=cat, **run) for s in specs])
    tokens = o["batch"] * (o["input_len"] + o["output_len"])
    # the router stays in the fast tier (paper: 'The router and KV cache is always in HBM'), one per node
    kv = max(float(kv_cache_bytes(s, tokens)) for s in specs)
    router_s, reserved = 0.0, kv
    if router is not None:
        router_s = execution_s(router, hw, cluster.devices, catalog=cat, **{**run, "output_len": 1})
        router_kv = float(kv_cache_bytes(router, o["batch"] * o["input_len"]))
        reserved += _weight_bytes(router, o["weight_precision"]) + router_kv
    return _Type(hw, node, node.fast.capacity_bytes - reserved, router_s, router_s + exec_s[arch])


def _metric(stats: Any, metric: str) -> float:
    return float(getattr(stats, f"{metric}_s"))


def _row(t: _Type, sizes: np.ndarray, probs: np.ndarray, o: dict[str, Any]) -> dict[str, Any]:
    """Node counts, and the latency at the chosen count: the fewest nodes meeting the target, or
    the fewest that hold the models at all."""
    hold_cap = t.node.slow_capacity_bytes or t.free_bytes
    at_all = nodes_to_hold(sizes, probs, hold_cap)
    in_fast = nodes_to_hold(sizes, probs, t.free_bytes)
    target, metric = o["latency_target_s"], o["target_metric"]
    chosen, for_target, why = at_all, None, None
    if target is not None:
        top = max(in_fast, at_all) if in_fast else min(at_all + o["max_extra_nodes"], sizes.size)
        for n in range(at_all, top + 1):
            if _metric(serve(t.node, t.free_bytes, sizes, probs, t.base_s, n, o["policy"]).stats, metric) <= target:
                for_target = chosen = n
                break
        else:
            best = serve(t.node, t.free_bytes, sizes, probs, t.base_s, top, o["policy"]).stats
            why = (
                f"{metric} latency {_metric(best, metric):.3g} s at {top} nodes > target {target:g} s "
                f"(router {t.router_s:.3g} s + prefill and decode alone: {float(np.min(t.base_s)):.3g} s and up)"
            )
    s = serve(t.node, t.free_bytes, sizes, probs, t.base_s, chosen, o["policy"])
    first = t.node.slow[0] if t.node.slow else None
    return {
        "hardware": t.hardware,
        "devices_per_node": t.node.devices,
        "fast_tier": t.node.fast.name,
        "fast_bytes_per_node": t.free_bytes,
        "slow_tiers": "; ".join(
            f"{x.name} {x.capacity_bytes / 1e9:.0f} GB @ {x.copy_bandwidth_bytes_per_s / 1e9:.1f} GB/s"
            for x in t.node.slow
        ),
        "switch_bandwidth_bytes_per_s": first.copy_bandwidth_bytes_per_s if first else None,
        "switch_s": float(np.dot(probs, s.switch_s)),
        "router_s": t.router_s,
        "nodes_to_hold_in_fast": in_fast or None,
        "nodes_to_hold_at_all": at_all,
        "nodes_for_target": for_target,
        "nodes": chosen,
        "resident_models": float(s.hits.sum()),
        "hit_rate": s.stats.hit_rate,
        "mean_latency_s": s.stats.mean_s,
        "p50_latency_s": s.stats.p50_s,
        "p90_latency_s": s.stats.p90_s,
        "p99_latency_s": s.stats.p99_s,
        "spills_at_models": _spill_point(sizes, t.free_bytes),
        "target_missed": why,
    }


def _spill_point(sizes: np.ndarray, free_bytes: float) -> int | None:
    """How many models (in the order given) one node holds before they spill past its fast tier."""
    over = np.nonzero(np.cumsum(sizes) > free_bytes)[0]
    return int(over[0]) + 1 if over.size else None


def _curve(t: _Type, sizes: np.ndarray, pop: Any, o: dict[str, Any]) -> list[dict[str, Any]]:
    n = sizes.size
    points = set(np.unique(np.round(np.geomspace(1, n, min(n, o["curve_points"]))).astype(int)).tolist())
    spill = _spill_point(sizes, t.free_bytes)
    points |= {m for m in (spill, (spill or 0) - 1) if m and 1 <= m <= n}
    rows = []
    for m in sorted(points):
        probs = popularity_probs(pop if isinstance(pop, str) else np.asarray(pop)[:m], m)
        s = serve(t.node, t.free_bytes, sizes[:m], probs, t.base_s[:m], 1, o["policy"])
        rows.append(
            {
                "hardware": t.hardware,
                "models": m,
                "mean_latency_s": s.stats.mean_s if s.held else None,
                "p99_latency_s": s.stats.p99_s if s.held else None,
                "hit_rate": s.stats.hit_rate if s.held else None,
                "spills": bool(sizes[:m].sum() > t.free_bytes),
                "held": s.held,
            }
        )
    return rows


def plan_models(
    models: Sequence[Any],
    *,
    hardware: str | Sequence[str] = ("sn40l-node", "dgx-a100", "dgx-h100"),
    popularity: Any = "zipf:1.0",
    batch: int = 1,
    input_len: int = 1024,
    output_len: int = 256,
    latency_target_s: float | None = None,
    target_metric: str = "p99",
    policy: str = "lru",
    router: Any = None,
    weight_precision: str = "bf16",
    reserve_fraction: float = RESERVE_FRACTION,
    host_links: int | None = 1,
    max_extra_nodes: int = 64,
    curve_points: int = 24,
    catalog: Catalog | str | None = None,
) -> ModelsPlan:
    """Residency and switching for `models` (IDs, specs, paths, or (model, count) pairs: ("llama2-7b",
    850) is 850 experts of that architecture) on one or more node types. `popularity`: "zipf:<s>",
    "uniform" or a count per model. A request is one static batch routed to one model; its latency
    is router + switch on a miss + prefill + decode. See planner.residency for the model."""
    pop = popularity
    o = _options(locals())
    cat = o["catalog"]
    specs, names, arch = _expand(models, cat)
    probs = popularity_probs(pop, len(names))
    sizes = np.array([_weight_bytes(specs[i], weight_precision) for i in range(len(specs))])[arch]
    router_spec = resolve_model(router, cat) if router is not None else None
    types, rejected = [], {}
    for hw in [hardware] if isinstance(hardware, str) else list(hardware):
        try:
            t = _node_type(hw, specs, arch, router_spec, o)
        except PlannerError as e:
            rejected[hw] = str(e)
            continue
        too_big = sizes.max() > max(t.node.slow_capacity_bytes, t.free_bytes)
        if too_big:
            i = int(np.argmax(sizes))
            rejected[hw] = (
                f"model '{names[i]}' needs {sizes[i] / 1e9:.1f} GB but a {hw} node holds "
                f"{max(t.node.slow_capacity_bytes, t.free_bytes) / 1e9:.1f} GB of models in all its tiers"
            )
            continue
        types.append(t)
    if not types:
        why = "; ".join(f"{k}: {v}" for k, v in rejected.items())
        raise InvalidSpecError(f"no node type can hold the models: {why}")
    rows = [_row(t, sizes, probs, o) for t in types]
    curve = [r for t in types for r in _curve(t, sizes, pop, o)]
    if latency_target_s is not None:
        missed = {r["hardware"]: r["target_missed"] for r in rows if r["nodes_for_target"] is None}
        if len(missed) == len(rows):
            raise InfeasiblePlanError(
                "no node type meets the latency target: " + "; ".join(f"{k}: {v}" for k, v in missed.items())
            )
        rejected.update(missed)
    return ModelsPlan(
        models=len(names),
        architectures=tuple(s.id for s in specs),
        total_weight_bytes=float(sizes.sum()),
        popularity=pop if isinstance(pop, str) else "counts",
        policy=policy,
        router=router_spec.id if router_spec else None,
        batch=batch,
        input_len=input_len,
        output_len=output_len,
        latency_target_s=latency_target_s,
        target_metric=target_metric,
        node_types=tuple(rows),
        curve=tuple(curve),
        rejected=rejected,
    )


def _options(args: dict[str, Any]) -> dict[str, Any]:
    """Check the scalar options once; each gets a one-line error naming it."""
    for name in ("batch", "input_len", "output_len"):
        if not isinstance(args[name], (int, np.integer)) or args[name] < 1:
            raise InvalidSpecError(f"{name} must be a whole number >= 1 (got {args[name]!r})")
    if args["policy"] not in ("lru", "static"):
        raise InvalidSpecError(f"policy '{args['policy']}': use 'lru' or 'static'")
    if args["target_metric"] not in METRICS:
        raise InvalidSpecError(f"target_metric '{args['target_metric']}': use one of {', '.join(METRICS)}")
    t = args["latency_target_s"]
    if t is not None and not (math.isfinite(t) and t > 0):
        raise InvalidSpecError(f"latency_target_s must be > 0 (got {t})")
    if args["host_links"] is not None and args["host_links"] < 1:
        raise InvalidSpecError(f"host_links must be >= 1 (got {args['host_links']})")
    cat = args["catalog"]
    return {**args, "catalog": cat if isinstance(cat, Catalog) else load_catalog(cat)}
