"""Cheapest serving deployments under TTFT/TPOT targets, aggregated or disaggregated.

For each hardware option and weight precision:
- aggregated: a replica of TP x PP devices (EP for MoE) runs continuous batching under the chosen
  engine's scheduler (planner.serving) with open-loop Poisson arrivals, as production traffic
  comes; the serving estimate is evaluated over a grid of mean in-flight requests in one vectorised
  call, and the replica's goodput is the largest request rate (c / (ttft + (output - 1) x tpot))
  whose TTFT (mean or percentile, queueing for the prompt budget included) and TPOT meet the
  targets; replicas = ceil(rate / goodput).
- disaggregated (DistServe / Dynamo style): a prefill pool and a decode pool, each with its own TP,
  rate-matched. A prefill replica is an M/D/1 server (planner.queueing) whose TTFT adds the KV
  transfer to the decode pool; a decode replica holds as many requests as keep TPOT under target.
Objectives: lowest $/hour (default; needs a cloud price in the catalogue), fewest devices, or most
goodput per device. Every rejected option names the constraint that binds.

Workload lengths are fixed, or the mean of a CSV of samples (columns input_len, output_len); the
KV cache is sized for the longest sample.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hardware_db.errors import InfeasiblePlanError, InvalidSpecError, PlannerError
from planner.catalog import Catalog, load_catalog, resolve_model
from planner.cluster import resolve_cluster
from planner.inference import estimate_inference
from planner.queueing import md1_max_rate, md1_wait_percentile_s, md1_wait_s
from solvers.pools import CONCURRENCY_GRID, ep_for, pool_sides

OBJECTIVES = ("cost", "devices", "goodput", "tco")
_CONCURRENCY_GRID = CONCURRENCY_GRID


@dataclass(frozen=True)
class Slo:
    ttft_s: float
    tpot_s: float
    percentile: float | None = None  # None: the targets hold for the mean; 0.9: for the 90th percentile

    def __post_init__(self) -> None:
        for option, value in (("--ttft", self.ttft_s), ("--tpot", self.tpot_s)):
            if not (math.isfinite(value) and value > 0):
                raise InvalidSpecError(f"{option} must be a finite number of seconds > 0 (got {value})")
        if self.percentile is not None and not 0 < self.percentile < 1:
            raise InvalidSpecError(f"--percentile must be in (0, 1), got {self.percentile}")


@dataclass(frozen=True)
class Workload:
    """Requests to serve: a Poisson rate (requests/s) with mean prompt and output lengths (tokens);
    the KV cache is sized for the longest request (max lengths, the means unless given)."""

    rate_per_s: float
    input_len: float
    output_len: float
    max_input_len: float | None = None
    max_output_len: float | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate_per_s) and self.rate_per_s > 0):
            raise InvalidSpecError(f"--rate must be a finite number of requests/s > 0 (got {self.rate_per_s})")
        for option, value in (("--input-len", self.input_len), ("--output-len", self.output_len)):
            if not (math.isfinite(value) and value >= 1):
                raise InvalidSpecError(f"{option} must be >= 1 token (got {value})")
        set_ = object.__setattr__
        set_(self, "max_input_len", max(self.max_input_len or self.input_len, self.input_len))
        set_(self, "max_output_len", max(self.max_output_len or self.output_len, self.output_len))

    @classmethod
    def from_csv(cls, path: str | Path, rate_per_s: float) -> Workload:
        try:
            with open(path, newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
            ins = np.array([float(r["input_len"]) for r in rows])
            outs = np.array([float(r["output_len"]) for r in rows])
        except (OSError, KeyError, ValueError) as e:
            raise InvalidSpecError(f"{path}: expected a CSV with columns input_len, output_len ({e})") from None
        if not len(ins):
            raise InvalidSpecError(f"{path}: no samples")
        if not (np.all(np.isfinite(ins)) and np.all(np.isfinite(outs))) or ins.min() < 1 or outs.min() < 1:
            raise InvalidSpecError(f"{path}: input_len and output_len must be >= 1 token in every row")
        return cls(rate_per_s, float(ins.mean()), float(outs.mean()), float(ins.max()), float(outs.max()))


@dataclass(frozen=True)
class InferencePlan:
    rank: int
    hardware: str
    mode: str  # aggregated or disaggregated
    weight_precision: str
    tp: int
    pp: int
    ep: int
    replicas: int
    prefill_tp: int | None
    prefill_replicas: int | None
    devices: int
    concurrency_per_replica: int
    ttft_s: float
    tpot_s: float
    utilization: float  # offered rate / capacity of the chosen replicas
    goodput_per_device: float  # requests/s one device can carry within the SLO
    usd_per_hour: float | None
    usd_per_million_tokens: float | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class InferencePlans:
    model: str
    objective: str
    slo: Slo
    workload: Workload
    plans: tuple[InferencePlan, ...]
    evaluated: int
    rejected: dict[str, str] = field(default_factory=dict)  # option -> binding constraint
    candidates: tuple[dict[str, Any], ...] = ()  # every option that met the SLO, best first

    @property
    def best(self) -> InferencePlan:
        return self.plans[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "objective": self.objective,
            "slo": self.slo.__dict__,
            "workload": self.workload.__dict__,
            "evaluated": self.evaluated,
            "rejected": self.rejected,
            "plans": [p.to_dict() for p in self.plans],
        }

    def to_frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame([p.to_dict() for p in self.plans])


def _price(device: Any) -> float | None:
    return min((c.usd_per_hour for c in device.prices.cloud), default=None)


def plan_inference(
    model: Any,
    hardware: str | list[str] | tuple[str, ...],
    workload: Workload,
    slo: Slo,
    *,
    weight_precisions: tuple[str, ...] = ("bf16", "fp8"),
    kv_precision: str | None = None,
    objective: str = "cost",
    disaggregated: bool | None = None,
    top: int = 5,
    catalog: Catalog | str | None = None,
    engine: str = "vllm",
    speculative: str | None = None,
    draft_tokens: int = 0,
    acceptance: float | None = None,
) -> InferencePlans:
    """The plans that serve `workload` within `slo`, ranked by `objective` (module docstring).
    disaggregated: None searches both modes, True/False only one. engine: the serving engine whose
    scheduler is modelled; speculative, draft_tokens, acceptance: speculative decoding (planner.speculative)."""
    if objective not in OBJECTIVES:
        raise InvalidSpecError(f"unknown objective '{objective}' (allowed: {', '.join(OBJECTIVES)})")
    cat = catalog if isinstance(catalog, Catalog) else load_catalog(catalog)
    spec = resolve_model(model, cat)
    options = [hardware] if isinstance(hardware, str) else list(hardware)
    plans: list[dict[str, Any]] = []
    rejected: dict[str, str] = {}
    evaluated = 0
    for hw in options:
        cluster = resolve_cluster(hw, None, cat)
        device = cluster.device
        price = _price(device) if objective != "tco" else device.prices.capex_usd
        if objective == "cost" and price is None:
            rejected[hw] = "no cloud price in the catalogue (objective cost)"
            continue
        if objective == "tco" and price is None:
            rejected[hw] = "no capex in the catalogue (objective tco)"
            continue
        domain = cluster.scale_up.group if cluster.system is None else cluster.system.scale_up_domain
        tps = [t for t in (1, 2, 4, 8, 16, 32, 64, 72) if t <= max(domain, 1) and spec.attention.heads % t == 0]
        for wp in weight_precisions:
            for tp in tps:
                common = dict(
                    tp=tp,
                    ep=ep_for(spec, tp),
                    weight_precision=wp,
                    kv_precision=kv_precision,
                    catalog=cat,
                    engine=engine,
                    arrival="poisson",
                    ttft_percentile=slo.percentile,
                    speculative=speculative,
                    draft_tokens=draft_tokens,
                    acceptance=acceptance,
                )
                key = f"{hw} {wp} tp={tp}"
                if disaggregated is not True:
                    evaluated += 1
                    found = _aggregated(spec, hw, workload, slo, common)
                    if isinstance(found, str):
                        rejected[f"{key} aggregated"] = found
                    else:
                        plans.append({**found, "hardware": device.id, "weight_precision": wp, "price": price})
            if disaggregated is not False:
                evaluated += 1
                drafter = dict(speculative=speculative, draft_tokens=draft_tokens, acceptance=acceptance)
                found = _disaggregated(spec, hw, workload, slo, tps, wp, kv_precision, cat, drafter)
                if isinstance(found, str):
                    rejected[f"{hw} {wp} disaggregated"] = found
                else:
                    plans.append({**found, "hardware": device.id, "weight_precision": wp, "price": price})
    if not plans:
        worst = "; ".join(f"{k}: {v}" for k, v in list(rejected.items())[:3])
        raise InfeasiblePlanError(
            f"no deployment of {spec.id} meets TTFT <= {slo.ttft_s} s and TPOT <= "
            f"{slo.tpot_s} s at {workload.rate_per_s} req/s ({worst})"
        )
    if objective == "tco":
        for p in plans:  # owned $ per device-hour at the plan's own power draw (planner.costs)
            p["price"] = _owned_per_device_hour(spec, p, workload, cat, engine)
    order: Any = {
        "tco": lambda p: (p["devices"] * p["price"], p["devices"]),
        "cost": lambda p: (p["devices"] * (p["price"] or math.inf), p["devices"]),
        "devices": lambda p: (p["devices"], p["devices"] * (p["price"] or 0.0)),
        "goodput": lambda p: (-p["goodput_per_device"], p["devices"]),
    }[objective]
    plans.sort(key=order)
    tokens_per_hour = workload.rate_per_s * workload.output_len * 3600.0
    out = []
    for i, p in enumerate(plans[:top]):
        hourly = p["price"] * p["devices"] if p["price"] else None
        out.append(
            InferencePlan(
                rank=i + 1,
                hardware=p["hardware"],
                mode=p["mode"],
                weight_precision=p["weight_precision"],
                tp=p["tp"],
                pp=p.get("pp", 1),
                ep=p["ep"],
                replicas=p["replicas"],
                prefill_tp=p.get("prefill_tp"),
                prefill_replicas=p.get("prefill_replicas"),
                devices=p["devices"],
                concurrency_per_replica=p["concurrency"],
                ttft_s=p["ttft_s"],
                tpot_s=p["tpot_s"],
                utilization=p["utilization"],
                goodput_per_device=p["goodput_per_device"],
                usd_per_hour=hourly,
                usd_per_million_tokens=hourly / tokens_per_hour * 1e6 if hourly else None,
            )
        )
    for p in plans:
        p["usd_per_hour"] = p["price"] * p["devices"] if p["price"] else None
    return InferencePlans(spec.id, objective, slo, workload, tuple(out), evaluated, rejected, tuple(plans))


def _owned_per_device_hour(spec: Any, p: dict[str, Any], w: Workload, cat: Catalog, engine: str) -> float:
    """Owned TCO per device-hour (planner.costs defaults) of a plan at its operating point's power."""
    from planner.costs import DEFAULT_TCO, owned
    from planner.power import device_power

    kw = dict(weight_precision=p["weight_precision"], catalog=cat, input_len=w.input_len, output_len=w.output_len)
    if p["mode"] == "aggregated":
        r = estimate_inference(
            spec,
            p["hardware"],
            p["tp"] * p.get("pp", 1),
            tp=p["tp"],
            pp=p.get("pp", 1),
            ep=p["ep"],
            concurrency=p["concurrency"],
            engine=engine,
            arrival="poisson",
            **kw,
        )
    else:
        devices = p["prefill_tp"] + p["tp"]
        r = estimate_inference(
            spec,
            p["hardware"],
            devices,
            tp=p["tp"],
            ep=p["ep"],
            concurrency=p["concurrency"],
            disaggregated=True,
            prefill_devices=p["prefill_tp"],
            prefill_tp=p["prefill_tp"],
            **kw,
        )
    device = cat.device(p["hardware"])
    b = owned(float(p["price"]), 1, float(r.avg_power_w), device_power(device).tdp_w, DEFAULT_TCO)
    return b.total_usd_per_hour


# Pipeline stages a serving replica may add when TP alone cannot hold the model.
_PIPELINE_OPTIONS = (1, 2, 4)


def _aggregated(spec: Any, hw: str, w: Workload, slo: Slo, common: dict[str, Any]) -> dict[str, Any] | str:
    """The replica's best concurrency; pipeline stages are added only when one stage cannot hold the model."""
    tp = common["tp"]
    reason = ""
    for pp in _PIPELINE_OPTIONS:
        if pp > spec.layers:
            break
        try:
            probe = estimate_inference(
                spec,
                hw,
                tp * pp,
                pp=pp,
                concurrency=1,
                input_len=w.max_input_len,
                output_len=w.max_output_len,
                **common,
            )
        except PlannerError as e:
            return str(e)
        if probe.fits and probe.max_concurrency >= 1:
            return _aggregated_at(spec, hw, w, slo, common, pp, probe.max_concurrency)
        reason = (
            f"does not fit even with pp={pp}: {probe.fit_reason}" if pp > 1 else f"does not fit: {probe.fit_reason}"
        )
    return reason


def _aggregated_at(
    spec: Any, hw: str, w: Workload, slo: Slo, common: dict[str, Any], pp: int, max_concurrency: int
) -> dict[str, Any] | str:
    tp = common["tp"]
    grid = _CONCURRENCY_GRID[max_concurrency >= _CONCURRENCY_GRID]
    r = estimate_inference(
        spec, hw, tp * pp, pp=pp, concurrency=grid, input_len=w.input_len, output_len=w.output_len, **common
    )
    shape = grid.shape
    ttft = np.broadcast_to(np.asarray(r.ttft_s if slo.percentile is None else r.ttft_percentile_s), shape)
    tpot = np.broadcast_to(np.asarray(r.tpot_s), shape)
    ok = (ttft <= slo.ttft_s) & (tpot <= slo.tpot_s) & np.broadcast_to(np.asarray(r.fits, dtype=bool), shape)
    if not ok.any():
        if tpot[0] > slo.tpot_s:
            return f"TPOT {tpot[0] * 1e3:.1f} ms > {slo.tpot_s * 1e3:.1f} ms even at concurrency 1"
        return f"TTFT {ttft[0] * 1e3:.0f} ms > {slo.ttft_s * 1e3:.0f} ms even at concurrency 1"
    rate = grid / (np.broadcast_to(np.asarray(r.ttft_s), shape) + (w.output_len - 1) * tpot)
    best = int(np.argmax(np.where(ok, rate, -1.0)))
    replicas = math.ceil(w.rate_per_s / rate[best])
    devices = replicas * tp * pp
    return {
        "mode": "aggregated",
        "tp": tp,
        "pp": pp,
        "ep": common["ep"],
        "replicas": replicas,
        "devices": devices,
        "concurrency": int(grid[best]),
        "ttft_s": float(ttft[best]),
        "tpot_s": float(tpot[best]),
        "utilization": float(w.rate_per_s / (replicas * rate[best])),
        "goodput_per_device": float(rate[best]) / (tp * pp),
    }


def _disaggregated(
    spec: Any,
    hw: str,
    w: Workload,
    slo: Slo,
    tps: list[int],
    wp: str,
    kv: str | None,
    cat: Catalog,
    drafter: dict[str, Any] | None = None,
) -> dict[str, Any] | str:
    """The cheapest rate-matched pair of pools of one type over the TP options of each."""
    best: dict[str, Any] | None = None
    prefill, decode, reasons = pool_sides(
        spec, hw, tps, wp, kv, w.input_len, w.output_len, slo.tpot_s, cat, None, drafter
    )
    feasible = []
    for p in prefill:
        rate_p = md1_max_rate(p.service_s, slo.ttft_s, slo.percentile, fixed_s=p.same_hardware_transfer_s)
        if rate_p > 0:
            feasible.append((p, rate_p))
        else:
            reasons.append(
                f"tp={p.tp}: prefill {p.service_s * 1e3:.0f} ms + KV transfer exceeds TTFT {slo.ttft_s * 1e3:.0f} ms"
            )
    for p, rate_p in feasible:
        for d in decode:
            r_p, r_d = math.ceil(w.rate_per_s / rate_p), math.ceil(w.rate_per_s / d.rate_per_s)
            devices = r_p * p.tp + r_d * d.tp
            if best is None or devices < best["devices"]:
                per_replica = w.rate_per_s / r_p
                wait = (
                    md1_wait_s(per_replica, p.service_s)
                    if slo.percentile is None
                    else md1_wait_percentile_s(per_replica, p.service_s, slo.percentile)
                )
                util = max(w.rate_per_s / (r_p * rate_p), w.rate_per_s / (r_d * d.rate_per_s))
                best = {
                    "mode": "disaggregated",
                    "tp": d.tp,
                    "ep": d.ep,
                    "replicas": r_d,
                    "prefill_tp": p.tp,
                    "prefill_replicas": r_p,
                    "devices": devices,
                    "concurrency": d.concurrency,
                    "ttft_s": p.same_hardware_transfer_s + p.service_s + wait,
                    "tpot_s": d.tpot_s,
                    "utilization": util,
                    "goodput_per_device": w.rate_per_s / devices,
                }
    if best is None:
        return "; ".join(reasons[:2]) or "no pool configuration"
    return best
