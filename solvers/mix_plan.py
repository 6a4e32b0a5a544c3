"""The cheapest mix of GPU types that serves a request-length distribution within TTFT/TPOT targets:
Mélange (Griggs et al., "Mélange: Cost Efficient Large Language Model Serving by Exploiting GPU
Heterogeneity", arXiv 2404.14527). Small requests are often cheapest on small GPUs and large ones on
large GPUs, and a mix rounds up fewer instances than one type does.

Inputs, as Mélange takes them (released solver: github.com/tyler-griggs/melange-release,
melange/solver.py): per instance type a price and a profile, the largest request rate one instance
sustains within the SLO for each (input-length bucket, output-length bucket); the share of requests
per bucket; the total rate; and a slice factor. Profiles come from the user (a dict, or a CSV of
measurements) or from the engine here: per hardware type and TP, one vectorised serving estimate
over every bucket and a grid of in-flight requests (Poisson arrivals), the most requests whose TTFT
and TPOT meet the targets, and the rate by Little's law, c / (ttft + (output - 1) x tpot) — what
solvers.inference_plan does for one workload.

The ILP, as the released solver states it: each bucket's rate is cut into `slices` equal slices;
binary x[slice, type] puts each slice whole on one type (sum over types = 1); for each type the load
of its slices, sum of x x slice rate / throughput[type, bucket], is at most its integer instance
count n[type]; minimise sum of n[type] x price[type]. Solved with solvers.milp (HiGHS or CBC) under
a time limit that reports the status and MIP gap.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from hardware_db.errors import InfeasiblePlanError, InvalidSpecError, PlannerError, SolverLimitError, UnknownIdError
from planner.catalog import Catalog, load_catalog, resolve_model
from planner.cluster import resolve_cluster
from planner.inference import estimate_inference
from solvers.inference_plan import Slo, _price
from solvers.milp import Milp, MilpResult, solve
from solvers.pools import CONCURRENCY_GRID, ep_for
from workloads.lengths import (
    LengthDistribution,
    bucket_samples,
    load_length_distribution,
    normalised_shares,
    read_samples_csv,
)

Array = npt.NDArray[np.float64]
TP_OPTIONS = (1, 2, 4, 8)
MAX_SLICES = 64
ROUND_TOL = 1e-7  # a type's load within this of a whole number needs no extra instance (float noise)
SWEEP_LIMIT_S = 5.0  # time limit of each re-solve of a cost-vs-rate sweep


@dataclass(frozen=True)
class Profiles:
    """Instance types, their $/h, and the most requests/s one instance serves per bucket (0: cannot)."""

    types: tuple[str, ...]
    usd_per_hour: Array  # (types,)
    throughput: Array  # (types, input buckets, output buckets), requests/s
    ttft1_s: Array | None = None  # engine profiles: TTFT and TPOT at concurrency 1, for saying what binds
    tpot1_s: Array | None = None
    blocked: Any = None  # (types, m, n) str: "memory" or "context" where the bucket cannot run at all
    seconds: float = 0.0
    rejected: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MixPlan:
    instances: dict[str, int]  # instances (replicas) per type; every type, 0 when unused
    usd_per_hour: float
    usd_per_million_tokens: float | None  # output tokens: rate x mean output length
    rate_per_s: float
    slices: int
    usd_per_hour_per_instance: dict[str, float]
    load: dict[str, float]  # instances' worth of work per type
    utilization: dict[str, float]  # load / instances
    buckets_served: dict[str, list[str]]  # type -> buckets (slices of it / slices) it serves
    assignment: tuple[dict[str, Any], ...]  # one row per slice: bucket, slice, type, rate, load
    best_single_type: str | None  # cheapest type that serves every bucket alone
    best_single_usd_per_hour: float | None
    saving_usd_per_hour: float | None
    saving_fraction: float | None
    single_types: tuple[dict[str, Any], ...]  # runner-ups: each type alone, cheapest first
    status: str  # optimal or time_limit
    mip_gap: float
    solve_s: float
    profile_s: float
    solver: str
    buckets: tuple[str, ...]  # labels, input-major
    distribution: list[list[float]]
    throughput: dict[str, list[list[float]]]  # the profiles, requests/s per bucket
    mean_output_len: float | None
    model: str | None = None
    ttft_s: float | None = None
    tpot_s: float | None = None
    rejected: dict[str, str] = field(default_factory=dict)  # types left out, and why
    cost_vs_rate: tuple[dict[str, Any], ...] = ()
    cost_vs_slo: tuple[dict[str, Any], ...] = ()  # the mix's and the best single type's $/h as the SLO scales
    messages: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}

    def type_rows(self) -> list[dict[str, Any]]:
        """One row per type: instances, $/h, load, utilisation and the buckets it serves."""
        return [
            {
                "type": t,
                "instances": n,
                "usd_per_hour_per_instance": self.usd_per_hour_per_instance[t],
                "usd_per_hour": n * self.usd_per_hour_per_instance[t],
                "load": self.load[t],
                "utilization": self.utilization[t],
                "buckets": "; ".join(self.buckets_served[t]),
            }
            for t, n in self.instances.items()
        ]

    def to_frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.type_rows())

    def summary(self) -> dict[str, Any]:
        keys = ("usd_per_hour", "usd_per_million_tokens", "rate_per_s", "best_single_type", "best_single_usd_per_hour")
        out: dict[str, Any] = {k: getattr(self, k) for k in keys}
        out["instances"] = ", ".join(f"{n} x {t}" for t, n in self.instances.items() if n)
        more = ("saving_fraction", "status", "mip_gap", "solve_s", "profile_s", "slices", "model", "ttft_s", "tpot_s")
        return {**out, **{k: getattr(self, k) for k in more}}


def plan_mix(
    model: Any = None,
    hardware: str | Sequence[str] | None = None,
    *,
    rate: float,
    profiles: Mapping[str, Mapping[str, Any]] | None = None,
    profiles_csv: str | Path | None = None,
    distribution: Any = None,
    lengths: str | Path | None = None,
    slo: Slo | None = None,
    slices: int = 4,
    tps: Sequence[int] | None = None,
    prices: Mapping[str, float] | None = None,
    weight_precision: str = "bf16",
    engine: str = "vllm",
    time_limit_s: float = 30.0,
    solver: str = "cbc",
    mip_gap: float = 1e-4,
    rate_sweep: Sequence[float] | None = None,
    slo_sweep: Sequence[float] | None = None,
    catalog: Catalog | str | None = None,
) -> MixPlan:
    """The cheapest instance mix (module docstring). Either Mélange's own inputs (`profiles` as
    {type: {"usd_per_hour": c, "throughput": matrix}}, or `profiles_csv`, with `distribution` a
    shares matrix or a LengthDistribution), or the engine's (`model`, `hardware` IDs, optionally
    "ID:TP", `slo`, and a length distribution: `distribution` a LengthDistribution, a shipped name or
    a file, or `lengths` a CSV of samples). `rate_sweep`: multiples of `rate` to re-solve at, for a
    cost-versus-rate curve; `slo_sweep` (engine profiles only): multiples of both SLO targets to
    re-profile and re-solve at, for a cost-versus-SLO curve (the report's charts). CBC is the
    default solver: Mélange's released solver uses it, and on this ILP it is 5x faster than HiGHS."""
    _check_rate(rate)
    _check_slices(slices)
    engine_form = model is not None or hardware is not None
    if engine_form == (profiles is not None or profiles_csv is not None) or (profiles and profiles_csv):
        raise InvalidSpecError("give either model and hardware (profiles from the engine) or profiles / profiles_csv")
    dist = _distribution(distribution, lengths, need_edges=engine_form)
    shares = dist.shares if isinstance(dist, LengthDistribution) else dist
    if engine_form:
        if slo is None:
            raise InvalidSpecError("profiles from the engine need the SLO (slo=Slo(ttft_s, tpot_s))")
        assert isinstance(dist, LengthDistribution)
        cat = catalog if isinstance(catalog, Catalog) else load_catalog(catalog)
        spec = resolve_model(model, cat)
        prof = engine_profiles(
            spec,
            hardware or [],
            dist,
            slo,
            tps=tps,
            prices=prices,
            weight_precision=weight_precision,
            engine=engine,
            catalog=cat,
        )
    else:
        prof = (
            direct_profiles(profiles, shares.shape)
            if profiles is not None
            else csv_profiles(profiles_csv, shares.shape)
        )
    check_servable(prof, shares, dist if isinstance(dist, LengthDistribution) else None, slo)
    plan = _plan(prof, shares, dist, rate, slices, time_limit_s, solver, mip_gap)
    extra: dict[str, Any] = {"rejected": prof.rejected}
    if engine_form:
        assert slo is not None
        extra.update(model=spec.id, ttft_s=slo.ttft_s, tpot_s=slo.tpot_s)
    if rate_sweep:
        extra["cost_vs_rate"] = cost_vs_rate(
            prof, shares, rate, rate_sweep, slices, min(time_limit_s, SWEEP_LIMIT_S), solver
        )
    if slo_sweep:
        if not engine_form:
            raise InvalidSpecError("slo_sweep re-profiles with the engine: give model, hardware and slo")
        assert slo is not None and isinstance(dist, LengthDistribution)

        def profile(scaled: Slo) -> Profiles:
            return engine_profiles(
                spec,
                hardware or [],
                dist,
                scaled,
                tps=tps,
                prices=prices,
                weight_precision=weight_precision,
                engine=engine,
                catalog=cat,
            )

        extra["cost_vs_slo"] = cost_vs_slo(
            profile, slo, shares, rate, slo_sweep, slices, min(time_limit_s, SWEEP_LIMIT_S), solver
        )
    return MixPlan(**{**plan.__dict__, **extra})


def _check_rate(rate: float) -> None:
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not (math.isfinite(rate) and rate > 0):
        raise InvalidSpecError(f"rate must be a finite number of requests/s > 0 (got {rate!r})")


def _check_slices(slices: int) -> None:
    if isinstance(slices, bool) or not isinstance(slices, int) or not 1 <= slices <= MAX_SLICES:
        raise InvalidSpecError(f"slices must be a whole number in [1, {MAX_SLICES}] (got {slices!r})")


def _distribution(distribution: Any, lengths: str | Path | None, need_edges: bool) -> LengthDistribution | Array:
    """The length distribution, or for Mélange's own inputs a bare shares matrix."""
    if (distribution is None) == (lengths is None):
        raise InvalidSpecError("give the length distribution: distribution (a name, file or matrix) or lengths (CSV)")
    if lengths is not None:
        ins, outs = read_samples_csv(lengths)
        return bucket_samples(ins, outs, name=Path(lengths).stem, source=str(lengths))
    if isinstance(distribution, LengthDistribution):
        return distribution
    if isinstance(distribution, (str, Path)):
        return load_length_distribution(distribution)
    if need_edges:
        raise InvalidSpecError(
            "profiles from the engine need bucket edges: pass a LengthDistribution, a name or a file"
        )
    return normalised_shares(distribution, None, "distribution")


# ---- profiles ----------------------------------------------------------------------------------


def direct_profiles(profiles: Mapping[str, Mapping[str, Any]] | None, shape: tuple[int, ...]) -> Profiles:
    """Mélange's gpu_info: {type: {"usd_per_hour" (or "cost"): $/h, "throughput" (or "tputs"): matrix}}."""
    if not isinstance(profiles, Mapping) or not profiles:
        raise InvalidSpecError("profiles must map each type to {'usd_per_hour': $/h, 'throughput': matrix}")
    names, price, tput = [], [], []
    for name, p in profiles.items():
        if not isinstance(p, Mapping):
            raise InvalidSpecError(f"profiles['{name}'] must be {{'usd_per_hour': $/h, 'throughput': matrix}}")
        names.append(str(name))
        price.append(_usd(p.get("usd_per_hour", p.get("cost")), f"profiles['{name}']['usd_per_hour']"))
        tput.append(_throughput(p.get("throughput", p.get("tputs")), shape, f"profiles['{name}']['throughput']"))
    return Profiles(tuple(names), np.array(price), np.stack(tput))


def _usd(value: Any, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if not (math.isfinite(v) and v > 0):
        raise InvalidSpecError(f"{what} must be a price in $/hour > 0 (got {value!r})")
    return v


def _throughput(value: Any, shape: tuple[int, ...], what: str) -> Array:
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidSpecError(f"{what} must be a matrix of requests/s >= 0") from None
    if a.shape != shape:
        raise InvalidSpecError(f"{what} must be {' x '.join(map(str, shape))} like the distribution (got {a.shape})")
    if not np.all(np.isfinite(a)) or a.min() < 0:
        raise InvalidSpecError(f"{what} must hold finite requests/s >= 0 (0: the type cannot serve that bucket)")
    return a


_CSV_COLUMNS = ("type", "usd_per_hour", "input_bucket", "output_bucket", "max_rate_per_s")


def csv_profiles(path: str | Path | None, shape: tuple[int, ...]) -> Profiles:
    """Measured profiles, one row per (type, bucket): columns type, usd_per_hour, input_bucket,
    output_bucket (0-based indices into the distribution), max_rate_per_s. Missing buckets: 0."""
    try:
        with open(str(path), newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise InvalidSpecError(f"{path}: cannot read ({e.strerror})") from None
    if not rows or any(c not in rows[0] for c in _CSV_COLUMNS):
        raise InvalidSpecError(f"{path}: expected a CSV with columns {', '.join(_CSV_COLUMNS)}")
    prices: dict[str, float] = {}
    tput: dict[str, Array] = {}
    for k, r in enumerate(rows, start=2):
        name = r["type"].strip()
        prices.setdefault(name, _usd(r["usd_per_hour"], f"{path} line {k}: usd_per_hour"))
        i, j, value = _csv_cell(r, shape, f"{path} line {k}")
        tput.setdefault(name, np.zeros(shape))[i, j] = value
    return Profiles(tuple(prices), np.array(list(prices.values())), np.stack([tput[t] for t in prices]))


def _csv_cell(r: Mapping[str, str], shape: tuple[int, ...], where: str) -> tuple[int, int, float]:
    try:
        i, j, value = int(r["input_bucket"]), int(r["output_bucket"]), float(r["max_rate_per_s"])
    except (TypeError, ValueError):
        raise InvalidSpecError(
            f"{where}: input_bucket, output_bucket must be whole numbers, max_rate_per_s a number"
        ) from None
    if not (0 <= i < shape[0] and 0 <= j < shape[1]):
        raise InvalidSpecError(f"{where}: bucket ({i}, {j}) outside the {shape[0]} x {shape[1]} distribution")
    if not (math.isfinite(value) and value >= 0):
        raise InvalidSpecError(f"{where}: max_rate_per_s must be a finite number >= 0 (got {value})")
    return i, j, value


def engine_profiles(
    spec: Any,
    hardware: str | Sequence[str],
    dist: LengthDistribution,
    slo: Slo,
    *,
    tps: Sequence[int] | None = None,
    prices: Mapping[str, float] | None = None,
    weight_precision: str = "bf16",
    engine: str = "vllm",
    catalog: Catalog | None = None,
) -> Profiles:
    """Per hardware type and TP (an instance = one TP replica), the most requests/s within the SLO
    for every bucket, from one vectorised serving estimate per type (module docstring)."""
    start = time.perf_counter()
    cat = catalog if catalog is not None else load_catalog(None)
    names: list[str] = []
    rows: list[tuple[float, Array, Array, Array, Any]] = []
    rejected: dict[str, str] = {}
    for option in [hardware] if isinstance(hardware, str) else list(hardware):
        hw, pinned = _hardware_option(option)
        device, domain = _device(hw, cat)
        price = (prices or {}).get(hw, (prices or {}).get(device.id, _price(device)))
        if price is None:
            rejected[hw] = "no cloud price in the catalogue (give one with prices=)"
            continue
        for tp in (
            [pinned] if pinned else [t for t in (tps or TP_OPTIONS) if t <= domain and spec.attention.heads % t == 0]
        ):
            found = _type_profile(spec, hw, tp, dist, slo, weight_precision, engine, cat)
            if isinstance(found, str):
                rejected[f"{device.id}:tp{tp}"] = found
            else:
                names.append(f"{device.id}:tp{tp}")
                rows.append((float(price) * tp, *found))
    if not names:
        detail = "; ".join(f"{k}: {v}" for k, v in list(rejected.items())[:3]) or "no hardware given"
        raise InfeasiblePlanError(f"no instance type can serve {spec.id} ({detail})")
    cols = list(zip(*rows, strict=True))
    return Profiles(
        tuple(names),
        np.array(cols[0]),
        np.stack(cols[1]),
        np.stack(cols[2]),
        np.stack(cols[3]),
        np.stack(cols[4]),
        time.perf_counter() - start,
        rejected,
    )


def _hardware_option(option: str) -> tuple[str, int | None]:
    """'h100-sxm' (every TP option) or 'h100-sxm:2' / 'h100-sxm:tp2' (one TP)."""
    hw, _, tp = str(option).partition(":")
    if not tp:
        return hw, None
    digits = tp[2:] if tp.lower().startswith("tp") else tp
    if not digits.isdigit() or int(digits) < 1:
        raise InvalidSpecError(f"hardware option '{option}': expected ID or ID:TP with TP a whole number >= 1")
    return hw, int(digits)


def _device(hw: str, cat: Catalog) -> tuple[Any, int]:
    try:
        cluster = resolve_cluster(hw, None, cat)
    except UnknownIdError as e:
        raise InvalidSpecError(f"hardware: {e}") from None
    domain = cluster.scale_up.group if cluster.system is None else cluster.system.scale_up_domain
    return cluster.device, max(int(domain), 1)


def _type_profile(
    spec: Any, hw: str, tp: int, dist: LengthDistribution, slo: Slo, wp: str, engine: str, cat: Catalog
) -> tuple[Array, Array, Array, Any] | str:
    """Rates (m, n), TTFT and TPOT at concurrency 1, and what blocks a bucket outright; or why the
    type cannot run at all. Buckets past the model's context are blocked, not estimated."""
    over = dist.input_len + dist.output_len > spec.max_seq_len
    ins, outs = np.where(over, 1.0, dist.input_len)[..., None], np.where(over, 1.0, dist.output_len)[..., None]
    grid = CONCURRENCY_GRID.astype(np.float64)
    try:
        r = estimate_inference(
            spec,
            hw,
            tp,
            tp=tp,
            ep=ep_for(spec, tp),
            weight_precision=wp,
            catalog=cat,
            engine=engine,
            arrival="poisson",
            ttft_percentile=slo.percentile,
            concurrency=grid,
            input_len=ins,
            output_len=outs,
        )
    except PlannerError as e:
        return str(e)
    shape = ins.shape[:2] + grid.shape
    ttft_mean = np.broadcast_to(np.asarray(r.ttft_s, dtype=np.float64), shape)
    ttft = ttft_mean if slo.percentile is None else np.broadcast_to(np.asarray(r.ttft_percentile_s), shape)
    tpot = np.broadcast_to(np.asarray(r.tpot_s, dtype=np.float64), shape)
    fits = np.broadcast_to(np.asarray(r.fits, dtype=bool), shape) & (np.asarray(r.max_concurrency) >= grid)
    ok = fits & (ttft <= slo.ttft_s) & (tpot <= slo.tpot_s) & ~over[..., None]
    rate = grid / (ttft_mean + (outs - 1.0) * tpot)  # Little's law, as solvers.inference_plan
    best = np.where(ok, rate, 0.0).max(axis=-1)
    if not fits[..., 0].any():
        return "does not fit in memory at TP " + str(tp)
    blocked = np.where(over, "context", np.where(~fits[..., 0], "memory", ""))
    return best, ttft[..., 0].copy(), tpot[..., 0].copy(), blocked


def check_servable(prof: Profiles, shares: Array, dist: LengthDistribution | None, slo: Slo | None) -> None:
    """Every bucket that holds requests needs a type that serves it; else one line naming the
    bucket and the binding constraint (on the type that comes closest)."""
    dead = (shares > 0) & ~(prof.throughput > 0).any(axis=0)
    if not dead.any():
        return
    i, j = (int(v) for v in np.argwhere(dead)[0])
    label = dist.label(i, j) if dist is not None else f"(input bucket {i}, output bucket {j})"
    where = f"bucket {label} ({shares[i, j]:.1%} of requests)"
    if prof.ttft1_s is None or prof.tpot1_s is None or slo is None:
        raise InfeasiblePlanError(f"{where}: zero throughput in every profile, no type can serve it")
    raise InfeasiblePlanError(f"{where}: no type meets the SLO; {_binding(prof, i, j, slo, dist)}")


def _binding(prof: Profiles, i: int, j: int, slo: Slo, dist: LengthDistribution | None) -> str:
    assert prof.ttft1_s is not None and prof.tpot1_s is not None
    blocked = [str(b) for b in prof.blocked[:, i, j]]
    if all(b == "context" for b in blocked) and dist is not None:
        return f"context binds: {dist.input_len[i, j] + dist.output_len[i, j]:.0f} tokens exceed the model's context"
    ratio = np.maximum(prof.ttft1_s[:, i, j] / slo.ttft_s, prof.tpot1_s[:, i, j] / slo.tpot_s)
    ratio = np.where(np.array(blocked) == "", ratio, np.inf)
    if not np.isfinite(ratio).any():
        return "memory binds: the bucket does not fit on any type"
    t = int(np.argmin(ratio))
    tpot, ttft = prof.tpot1_s[t, i, j], prof.ttft1_s[t, i, j]
    if tpot > slo.tpot_s:
        return f"TPOT binds: {tpot * 1e3:.1f} ms > {slo.tpot_s * 1e3:.1f} ms on {prof.types[t]} even at concurrency 1"
    return f"TTFT binds: {ttft * 1e3:.0f} ms > {slo.ttft_s * 1e3:.0f} ms on {prof.types[t]} even at concurrency 1"


# ---- the ILP -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MixSolution:
    instances: npt.NDArray[np.int64]  # (types,)
    load: Array  # (types,)
    slice_bucket: npt.NDArray[np.int64]  # (slices,) flat bucket index
    slice_type: npt.NDArray[np.int64]  # (slices,)
    slice_rate: Array  # (slices,)
    result: MilpResult

    def usd_per_hour(self, prices: Array) -> float:
        return float(prices @ self.instances)


def instances_for(load: Any) -> Any:
    """Whole instances that carry `load` (instances' worth of work); float noise does not round up."""
    return np.ceil(np.maximum(np.asarray(load, dtype=np.float64) - ROUND_TOL, 0.0)).astype(np.int64)


def solve_mix(
    prices: Array,
    throughput: Array,
    bucket_rate: Array,
    slices: int,
    time_limit_s: float = 30.0,
    solver: str = "highs",
    mip_gap: float = 1e-4,
) -> MixSolution:
    """Mélange's ILP (module docstring). throughput: (types, buckets) requests/s, 0 where a type
    cannot serve a bucket (no x variable there); bucket_rate: (buckets,) requests/s."""
    n_types = len(prices)
    active = np.flatnonzero(bucket_rate > 0)
    slice_bucket = np.repeat(active, slices)
    slice_rate = bucket_rate[slice_bucket] / slices
    s_idx, t_idx = np.nonzero(throughput[:, slice_bucket].T > 0)  # feasible (slice, type) pairs
    load = slice_rate[s_idx] / throughput[t_idx, slice_bucket[s_idx]]
    p = Milp()
    x = p.add(len(s_idx), high=1.0, integer=True)
    n = p.add(n_types, cost=prices, integer=True)
    p.row(s_idx, x, 1.0, 1.0, 1.0, len(slice_bucket))  # each slice on exactly one type
    p.row(
        np.concatenate([t_idx, np.arange(n_types)]),
        np.concatenate([x, n]),
        np.concatenate([load, -np.ones(n_types)]),
        -np.inf,
        0.0,
        n_types,
    )
    res = solve(p, time_limit_s, solver, mip_gap)
    if res.x is None:
        if res.status == "infeasible":
            raise InfeasiblePlanError("no assignment of the slices to the types exists")
        raise SolverLimitError(f"no mix found within {time_limit_s:g} s ({solver}); raise the time limit")
    chosen = res.x[x] > 0.5
    slice_type = np.full(len(slice_bucket), -1, dtype=np.int64)
    slice_type[s_idx[chosen]] = t_idx[chosen]
    per_type = np.bincount(t_idx[chosen], weights=load[chosen], minlength=n_types).astype(np.float64)
    return MixSolution(instances_for(per_type), per_type, slice_bucket, slice_type, slice_rate, res)


def single_types(
    prices: Array, throughput: Array, bucket_rate: Array
) -> list[tuple[int, int, float] | tuple[int, None, None]]:
    """Each type alone: (type, instances, $/h), or (type, None, None) when it cannot serve a bucket."""
    active = bucket_rate > 0
    out: list[Any] = []
    for t in range(len(prices)):
        if np.any(throughput[t, active] <= 0):
            out.append((t, None, None))
            continue
        n = int(instances_for(float(np.sum(bucket_rate[active] / throughput[t, active]))))
        out.append((t, n, float(prices[t] * n)))
    return out


def _plan(
    prof: Profiles, shares: Array, dist: Any, rate: float, slices: int, limit: float, solver: str, gap: float
) -> MixPlan:
    shape = shares.shape
    tput = prof.throughput.reshape(len(prof.types), -1)
    bucket_rate = (shares * rate).ravel()
    sol = solve_mix(prof.usd_per_hour, tput, bucket_rate, slices, limit, solver, gap)
    singles = single_types(prof.usd_per_hour, tput, bucket_rate)
    ranked = sorted((s for s in singles if s[2] is not None), key=lambda s: (s[2], s[0]))
    best = ranked[0] if ranked else None
    cost = sol.usd_per_hour(prof.usd_per_hour)
    messages: list[str] = []
    if best is not None and best[2] is not None and best[2] < cost - 1e-9:  # only under a time limit or a gap
        sol = _single_solution(sol, best[0], int(best[1] or 0), len(prof.types), tput)
        cost = float(best[2])
        messages.append(f"the ILP stopped at {sol.result.status}; the best single type is cheaper and is used")
    labels = _labels(dist, shape)
    mean_out = dist.mean_output_len if isinstance(dist, LengthDistribution) else None
    return MixPlan(
        **_per_type(prof, sol, labels, slices),
        usd_per_hour=cost,
        usd_per_million_tokens=cost / (rate * mean_out * 3600.0) * 1e6 if mean_out else None,
        rate_per_s=float(rate),
        slices=slices,
        assignment=_assignment(prof, sol, labels, shape),
        best_single_type=prof.types[best[0]] if best else None,
        best_single_usd_per_hour=best[2] if best else None,
        saving_usd_per_hour=(best[2] - cost) if best and best[2] is not None else None,
        saving_fraction=(1.0 - cost / best[2]) if best and best[2] else None,
        single_types=tuple(_single_rows(prof, singles, labels, bucket_rate, tput)),
        status=sol.result.status,
        mip_gap=float(sol.result.gap),
        solve_s=float(sol.result.seconds),
        profile_s=float(prof.seconds),
        solver=sol.result.solver,
        buckets=tuple(labels),
        distribution=shares.tolist(),
        throughput={t: prof.throughput[k].tolist() for k, t in enumerate(prof.types)},
        mean_output_len=mean_out,
        messages=tuple(messages),
    )


def _single_solution(sol: MixSolution, t: int, n: int, n_types: int, tput: Array) -> MixSolution:
    load = np.zeros(n_types)
    load[t] = float(np.sum(sol.slice_rate / tput[t, sol.slice_bucket]))
    inst = np.zeros(n_types, dtype=np.int64)
    inst[t] = n
    types = np.full(len(sol.slice_bucket), t, dtype=np.int64)
    return MixSolution(inst, load, sol.slice_bucket, types, sol.slice_rate, sol.result)


def _labels(dist: Any, shape: tuple[int, ...]) -> list[str]:
    if isinstance(dist, LengthDistribution):
        return [dist.label(i, j) for i in range(shape[0]) for j in range(shape[1])]
    return [f"({i}, {j})" for i in range(shape[0]) for j in range(shape[1])]


def _per_type(prof: Profiles, sol: MixSolution, labels: list[str], slices: int) -> dict[str, Any]:
    served: dict[str, list[str]] = {t: [] for t in prof.types}
    for b in np.unique(sol.slice_bucket):
        on = sol.slice_type[sol.slice_bucket == b]
        for t in np.unique(on):
            share = "" if np.all(on == t) else f" ({int(np.sum(on == t))}/{slices})"
            served[prof.types[t]].append(labels[b] + share)
    return {
        "instances": {t: int(sol.instances[k]) for k, t in enumerate(prof.types)},
        "usd_per_hour_per_instance": {t: float(prof.usd_per_hour[k]) for k, t in enumerate(prof.types)},
        "load": {t: float(sol.load[k]) for k, t in enumerate(prof.types)},
        "utilization": {
            t: float(sol.load[k] / sol.instances[k]) if sol.instances[k] else 0.0 for k, t in enumerate(prof.types)
        },
        "buckets_served": served,
    }


def _assignment(
    prof: Profiles, sol: MixSolution, labels: list[str], shape: tuple[int, ...]
) -> tuple[dict[str, Any], ...]:
    tput = prof.throughput.reshape(len(prof.types), -1)
    rows = []
    for s, (b, t, r) in enumerate(zip(sol.slice_bucket, sol.slice_type, sol.slice_rate, strict=True)):
        i, j = divmod(int(b), shape[1])
        rows.append(
            {
                "bucket": labels[b],
                "input_bucket": i,
                "output_bucket": j,
                "slice": s,
                "type": prof.types[t],
                "rate_per_s": float(r),
                "load": float(r / tput[t, b]),
            }
        )
    return tuple(rows)


def _single_rows(
    prof: Profiles, singles: list[Any], labels: list[str], bucket_rate: Array, tput: Array
) -> list[dict[str, Any]]:
    rows = []
    for t, n, cost in singles:
        if n is None:
            missing = int(np.flatnonzero((bucket_rate > 0) & (tput[t] <= 0))[0])
            rows.append(
                {
                    "type": prof.types[t],
                    "instances": None,
                    "usd_per_hour": None,
                    "why": f"cannot serve {labels[missing]} within the SLO",
                }
            )
        else:
            rows.append({"type": prof.types[t], "instances": n, "usd_per_hour": cost, "why": ""})
    return sorted(rows, key=lambda r: (r["usd_per_hour"] is None, r["usd_per_hour"] or 0.0))


def cost_vs_rate(
    prof: Profiles, shares: Array, rate: float, multiples: Sequence[float], slices: int, limit: float, solver: str
) -> tuple[dict[str, Any], ...]:
    """The mix's and the best single type's $/h at rate x each multiple (same profiles: a type's
    capacity does not depend on the offered rate)."""
    tput = prof.throughput.reshape(len(prof.types), -1)
    rows = []
    for m in sorted(float(v) for v in multiples):
        if not (math.isfinite(m) and m > 0):
            raise InvalidSpecError(f"rate_sweep multiples must be > 0 (got {m})")
        bucket_rate = (shares * rate * m).ravel()
        sol = solve_mix(prof.usd_per_hour, tput, bucket_rate, slices, limit, solver)
        costs = [s for s in single_types(prof.usd_per_hour, tput, bucket_rate) if s[2] is not None]
        best = min(costs, key=lambda s: s[2]) if costs else None
        rows.append(
            {
                "rate_per_s": rate * m,
                "usd_per_hour": sol.usd_per_hour(prof.usd_per_hour),
                "best_single_type": prof.types[best[0]] if best else None,
                "best_single_usd_per_hour": best[2] if best else None,
            }
        )
    return tuple(rows)


def cost_vs_slo(
    profile: Any,
    slo: Slo,
    shares: Array,
    rate: float,
    multiples: Sequence[float],
    slices: int,
    limit: float,
    solver: str,
) -> tuple[dict[str, Any], ...]:
    """The mix's and the best single type's $/h with both SLO targets scaled by each multiple
    (re-profiled by the engine: a looser target lets an instance run more requests at once)."""
    rows = []
    for m in sorted(float(v) for v in multiples):
        if not (math.isfinite(m) and m > 0):
            raise InvalidSpecError(f"slo_sweep multiples must be > 0 (got {m})")
        scaled = Slo(slo.ttft_s * m, slo.tpot_s * m, slo.percentile)
        prof = profile(scaled)
        tput = prof.throughput.reshape(len(prof.types), -1)
        bucket_rate = (shares * rate).ravel()
        servable = bool(np.all((tput > 0).any(axis=0) | (bucket_rate == 0))) if len(prof.types) else False
        usd = best_usd = None
        if servable:
            usd = solve_mix(prof.usd_per_hour, tput, bucket_rate, slices, limit, solver).usd_per_hour(prof.usd_per_hour)
            costs = [c[2] for c in single_types(prof.usd_per_hour, tput, bucket_rate) if c[2] is not None]
            best_usd = min(costs) if costs else None
        rows.append(
            {
                "ttft_s": scaled.ttft_s,
                "tpot_s": scaled.tpot_s,
                "usd_per_hour": usd,
                "best_single_usd_per_hour": best_usd,
            }
        )
    return tuple(rows)
