"""Best training plans: every consistent split of a model over N devices, ranked.

The space: TP (inside the scale-up domain unless allowed otherwise; heads divisible), CP, PP (at most
the layers), DP (what is left), EP for MoE (dividing the experts and DP x TP), virtual pipeline
stages, ZeRO 0-3, micro-batch size (dividing the per-replica batch) and recompute mode; sequence
parallelism is on whenever TP > 1 (it only saves memory and turns all-reduces into reduce-scatter /
all-gather of the same volume).

How it stays fast: one engine call per (TP, CP, PP, EP) group evaluates every (micro-batch, ZeRO,
recompute, virtual stages) combination of that group as numpy arrays; a group is skipped without
evaluation when even its lightest variant cannot hold the weights (provably dominated: every other
variant needs at least as much memory). Candidates the rules reject are counted with the rule that
binds; those that do not fit name the memory that binds.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from hardware_db.errors import InfeasiblePlanError, InvalidSpecError, PlannerError
from planner.catalog import Catalog, load_catalog, resolve_model
from planner.cluster import resolve_cluster
from planner.memory import RESERVE_FRACTION, weight_bytes_per_device
from planner.ops import Precisions, Sharding
from planner.training import RECOMPUTE, TrainingResult, estimate_training

OBJECTIVES = ("tokens_per_s", "time", "cost", "tco")


@dataclass(frozen=True)
class TrainingPlan:
    rank: int
    result: TrainingResult
    usd_per_hour: float | None  # the fleet's cloud price where the catalogue has one (owned TCO: objective tco)
    usd_per_million_tokens: float | None
    train_time_s: float | None = None  # to train the token budget, when one is given
    train_cost_usd: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "usd_per_hour": self.usd_per_hour,
            "usd_per_million_tokens": self.usd_per_million_tokens,
            "train_time_s": self.train_time_s,
            "train_cost_usd": self.train_cost_usd,
            **self.result.to_dict(),
        }


@dataclass(frozen=True)
class TrainingPlans:
    """Ranked plans, the candidates evaluated, and why the rest were rejected."""

    model: str
    hardware: str
    devices: int
    objective: str
    plans: tuple[TrainingPlan, ...]
    evaluated: int
    rejected: dict[str, int] = field(default_factory=dict)  # reason -> candidates
    candidates: Any = None  # pandas DataFrame of every evaluated candidate (for reports)

    @property
    def best(self) -> TrainingPlan:
        return self.plans[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "hardware": self.hardware,
            "devices": self.devices,
            "objective": self.objective,
            "evaluated": self.evaluated,
            "rejected": self.rejected,
            "plans": [p.to_dict() for p in self.plans],
        }

    def to_frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame([{k: v for k, v in p.to_dict().items() if not isinstance(v, list)} for p in self.plans])


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def plan_training(
    model: Any,
    hardware: str,
    devices: int,
    global_batch: int,
    seq_len: int,
    *,
    precision: str = "bf16",
    objective: str = "tokens_per_s",
    top: int = 5,
    micro_batches: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8),
    zero_stages: tuple[int, ...] = (0, 1, 2, 3),
    recompute: tuple[str, ...] = RECOMPUTE,
    virtual_stages: tuple[int, ...] = (1, 2, 4),
    context_parallel: tuple[int, ...] | None = None,
    sequence_parallel: tuple[bool, ...] = (True, False),
    tp_across_domains: bool = False,
    token_budget: float | None = None,
    catalog: Catalog | str | None = None,
) -> TrainingPlans:
    """Search every consistent plan (see the module docstring) and rank them by `objective`:
    tokens/s (default), time to train `token_budget` tokens, or its cost. On a fixed fleet all three
    rank alike (time = budget / tokens/s, cost = time x the fleet's $/hour); the plans report the
    time and cost of the budget when one is given."""
    if objective not in OBJECTIVES:
        raise InvalidSpecError(f"unknown objective '{objective}' (allowed: {', '.join(OBJECTIVES)})")
    if token_budget is not None and not (
        isinstance(token_budget, (int, float)) and math.isfinite(token_budget) and token_budget > 0
    ):
        raise InvalidSpecError(f"--token-budget must be a finite number of tokens > 0 (got {token_budget})")
    cat = catalog if isinstance(catalog, Catalog) else load_catalog(catalog)
    spec = resolve_model(model, cat)
    cluster = resolve_cluster(hardware, devices, cat)
    domain = cluster.scale_up.group if not tp_across_domains else devices
    capacity = cluster.device.main_memory.capacity_bytes * (1 - RESERVE_FRACTION)
    heads = spec.attention.heads
    experts = spec.moe.experts if spec.moe else 1
    cps = context_parallel or tuple(c for c in (1, 2, 4, 8, 16) if seq_len % (2 * c) == 0 or c == 1)
    rejected: Counter[str] = Counter()
    per_group = len(micro_batches) * len(zero_stages) * len(recompute)
    groups: list[Any] = []
    for tp, cp in itertools.product(_divisors(devices), cps):
        if devices % (tp * cp):
            continue
        if tp > domain:
            rejected[f"tp > scale-up domain ({domain})"] += per_group * len(virtual_stages)
            continue
        if heads % tp:
            rejected[f"heads ({heads}) not divisible by tp"] += per_group * len(virtual_stages)
            continue
        for pp in _divisors(devices // (tp * cp)):
            dp = devices // (tp * cp * pp)
            if pp > spec.layers:
                rejected[f"pp > layers ({spec.layers})"] += per_group * len(virtual_stages)
                continue
            for ep, sp in itertools.product(
                _divisors(math.gcd(experts, dp * tp)) if spec.moe else [1], sequence_parallel if tp > 1 else (False,)
            ):
                group = _evaluate_group(
                    spec,
                    hardware,
                    cat,
                    devices,
                    tp,
                    pp,
                    cp,
                    ep,
                    dp,
                    sp,
                    global_batch,
                    seq_len,
                    precision,
                    micro_batches,
                    zero_stages,
                    recompute,
                    virtual_stages,
                    capacity,
                    rejected,
                )
                if group is not None:
                    groups.append(group)
    if not groups:
        raise InfeasiblePlanError(f"no plan for {spec.id} on {devices} x {cluster.device.id}: {_binding(rejected)}")
    import pandas as pd

    frame = pd.concat(groups, ignore_index=True)
    fits = frame[frame["fits"]]
    for reason, n in frame[~frame["fits"]]["reject"].value_counts().items():
        rejected[str(reason)] += int(n)
    if fits.empty:
        raise InfeasiblePlanError(f"no plan for {spec.id} on {devices} x {cluster.device.id}: {_binding(rejected)}")
    price = _usd_per_device_hour(cluster.device)
    ranked = fits.sort_values("tokens_per_s", ascending=False).head(top)
    plans = []
    for i, row in enumerate(ranked.itertuples(index=False)):
        r = estimate_training(
            spec,
            hardware,
            devices,
            tp=row.tp,
            pp=row.pp,
            cp=row.cp,
            ep=row.ep,
            zero=row.zero,
            sequence_parallel=bool(row.sequence_parallel),
            micro_batch=row.micro_batch,
            global_batch=global_batch,
            seq_len=seq_len,
            recompute=row.recompute,
            virtual_stages=row.virtual_stages,
            precision=precision,
            catalog=cat,
        )
        hourly = price * devices if price else None
        if objective == "tco":  # owned, at this plan's own power draw (planner.costs defaults)
            hourly = _owned_hourly(cluster.device, devices, r.avg_power_w)
        per_m = hourly / 3600.0 / r.tokens_per_s * 1e6 if hourly else None
        train_s = token_budget / r.tokens_per_s if token_budget else None
        train_usd = hourly * train_s / 3600.0 if hourly and train_s else None
        plans.append(TrainingPlan(i + 1, r, hourly, per_m, train_s, train_usd))
    if objective == "cost" and price is None:
        raise InvalidSpecError(f"objective 'cost' needs a price for {cluster.device.id} in the catalogue")
    if objective == "tco":  # cost follows time on a fixed fleet, except for each plan's power draw
        plans = [
            replace(p, rank=i + 1)
            for i, p in enumerate(sorted(plans, key=lambda p: p.usd_per_hour / p.result.tokens_per_s))
        ]
    if objective != "tokens_per_s" and not token_budget:
        raise InvalidSpecError(f"objective '{objective}' needs token_budget (tokens to train)")
    return TrainingPlans(
        spec.id, cluster.device.id, devices, objective, tuple(plans), len(frame), dict(rejected), frame
    )


def _binding(rejected: Counter[str]) -> str:
    """The constraint that binds: memory when any split passed the layout rules, else the commonest rule."""
    memory = [(k, v) for k, v in rejected.items() if k.startswith("memory")]
    picked = memory or rejected.most_common(3)
    return "; ".join(f"{k} ({v} candidates)" for k, v in picked)


def _owned_hourly(device: Any, devices: int, avg_power_w: float) -> float:
    from planner.costs import DEFAULT_TCO, owned

    if device.prices.capex_usd is None:
        raise InvalidSpecError(f"objective 'tco' needs a capex for {device.id} in the catalogue")
    from planner.power import device_power

    tdp = device_power(device).tdp_w
    return owned(device.prices.capex_usd, devices, avg_power_w, tdp, DEFAULT_TCO).total_usd_per_hour


def _usd_per_device_hour(device: Any) -> float | None:
    cloud = device.prices.cloud
    return min(c.usd_per_hour for c in cloud) if cloud else None


def _evaluate_group(
    spec: Any,
    hardware: str,
    cat: Catalog,
    devices: int,
    tp: int,
    pp: int,
    cp: int,
    ep: int,
    dp: int,
    sp: bool,
    global_batch: int,
    seq_len: int,
    precision: str,
    micro_batches: tuple[int, ...],
    zero_stages: tuple[int, ...],
    recompute: tuple[str, ...],
    virtual_stages: tuple[int, ...],
    capacity: float,
    rejected: Counter[str],
) -> Any:
    """All (micro-batch, ZeRO, recompute, virtual stages) variants of one split, in one engine call."""
    vs = [v for v in virtual_stages if v == 1 or (pp > 1 and pp * v <= spec.layers)]
    rejected["virtual stages need pp > 1 and pp x v <= layers"] += (
        (len(virtual_stages) - len(vs)) * len(micro_batches) * len(zero_stages) * len(recompute)
    )
    mbs = [b for b in micro_batches if global_batch % (b * dp) == 0]
    rejected["global batch not divisible by micro-batch x dp"] += (
        (len(micro_batches) - len(mbs)) * len(vs) * len(zero_stages) * len(recompute)
    )
    if not mbs or not vs:
        return None
    # Provably dominated: weights alone, sharded as far as ZeRO-3 allows, already exceed the memory.
    lightest = weight_bytes_per_device(spec, Sharding(tp=tp, pp=pp, ep=ep, cp=cp), Precisions("bf16")) / dp
    if lightest > capacity:
        rejected["memory: weights alone exceed the device"] += len(mbs) * len(vs) * len(zero_stages) * len(recompute)
        return None
    grid = np.array(list(itertools.product(mbs, zero_stages, range(len(recompute)), vs)), dtype=np.int64)
    codes = np.array([RECOMPUTE.index(r) for r in recompute])[grid[:, 2]]
    try:
        r = estimate_training(
            spec,
            hardware,
            devices,
            tp=tp,
            pp=pp,
            cp=cp,
            ep=ep,
            sequence_parallel=sp,
            micro_batch=grid[:, 0],
            zero=grid[:, 1],
            recompute=codes,
            virtual_stages=grid[:, 3],
            global_batch=global_batch,
            seq_len=seq_len,
            precision=precision,
            catalog=cat,
        )
    except PlannerError as e:
        rejected[str(e)] += len(grid)
        return None
    import pandas as pd

    n = len(grid)
    cols = {k: np.broadcast_to(np.asarray(getattr(r, k)), (n,)) for k in _RESULT_COLUMNS}
    fits = cols["fits"].astype(bool)
    return pd.DataFrame(
        {
            "tp": tp,
            "pp": pp,
            "cp": cp,
            "ep": ep,
            "dp": dp,
            "sequence_parallel": sp,
            "micro_batch": grid[:, 0],
            "zero": grid[:, 1],
            "recompute": np.asarray(RECOMPUTE)[codes],
            "virtual_stages": grid[:, 3],
            **{k: v for k, v in cols.items() if k != "fits"},
            "fits": fits,
            "reject": np.where(fits, "", f"memory: needs more than the {capacity / 1e9:.0f} GB usable"),
        }
    )


_RESULT_COLUMNS = (
    "tokens_per_s",
    "step_time_s",
    "mfu",
    "memory_per_device_bytes",
    "fits",
    "pp_bubble_s",
    "dp_comm_exposed_s",
    "tp_comm_s",
)
