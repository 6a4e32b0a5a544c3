"""The cheapest fleet over several years: what to buy, where, what to retire, and which devices
carry which workload each year, at the least net present value of the total cost of ownership.

Capacities come from the engine once per scenario (or are given): requests/s one device sustains
within a serving workload's TTFT/TPOT targets (solvers.plan_inference, fewest devices), or tokens/s
per device of a training job (solvers.plan_training on `devices` of that type), each with the mean
board power at that operating point (planner.power through the estimate).

The mixed-integer program (solvers.milp, HiGHS or CBC). Cohort c: devices of one type h(c) at one
site s(c), bought in one year (existing inventory, or a purchase decision in year b(c)); in
service in years y with b(c) <= y < b(c) + life.

  buy[c]            integer   devices bought (purchase cohorts; price given for year b(c))
  n[c,t]            integer   devices of c installed in year t (n[c,b(c)] = buy[c]); retirement is
                              n[c,t-1] - n[c,t] >= 0, never reinstalled; existing: n[c,t0] <= count
  u[h,s,w,t] >= 0   continuous  devices of h at s serving workload w (fractions of a device: a
                              fleet is thousands of devices, so rounding moves the cost < 0.1 %)
  sum_w u[h,s,w,t] <= sum_{c of h at s} n[c,t]                       allocation
  sum_{h,s} capacity[h,w] u[h,s,w,t] >= demand[w,t]                  demand, every year
  sum_c n[c,t] TDP[h(c)] (1 + host overhead) <= power budget[s,t]    provisioned IT power, per site
  sum_c n[c,t] <= space[s,t];   sum_s buy[h,s,t] <= max_per_year[h]  space; supply
  min  sum_t (1 + r)^-(t - t0) (capex + network + energy + facility + maintenance)[t]

Costs per year t (planner.costs' formulas, per device):
  capex       annualized (default): price x CRF(r, life) in each year of its life inside the
              horizon, whether or not it is still installed (the loan runs on); the years past the
              horizon are the residual value it keeps. upfront: the price in the year bought, no
              residual value (penalises late purchases). Existing devices: sunk, none.
  network     network_usd_per_device, treated as capex
  energy      u x avg power x (1 + host overhead) x PUE x $/kWh x 8760 h (idle installed devices
              are taken as powered off)
  facility    TDP x (1 + host overhead) / 1000 x colocation $/kW-month x 12, per installed device
  maintenance price paid x maintenance fraction per year, per installed device
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hardware_db.errors import InfeasiblePlanError, InvalidSpecError, PlannerError, SolverLimitError
from planner.catalog import Catalog, load_catalog
from planner.costs import HOURS_PER_YEAR, TcoAssumptions, capital_recovery_factor
from solvers.milp import SOLVERS, Milp, solve
from workloads.fleet import FleetScenario, ServingDemand, TrainingDemand, load_fleet, parse_fleet

SECONDS_PER_YEAR = HOURS_PER_YEAR * 3600.0
COMPONENTS = ("capex", "network", "energy", "facility", "maintenance")
TDP_FALLBACK_SHARE = 0.8  # mean board power as a share of TDP when the estimate gives none
ROUND = 1e-6


@dataclass(frozen=True)
class Capacity:
    """One device of a type on one workload: requests/s (serving, within the SLO) or tokens/s
    (training), and its mean board power there."""

    per_device: float
    avg_power_w: float
    config: str = ""
    power_source: str = "given"  # given, engine, or the TDP fallback with the reason


# ---------------------------------------------------------------------------------------------
# capacities from the engine


def engine_capacities(
    sc: FleetScenario, hardware: list[str], cat: Catalog
) -> tuple[dict[tuple[str, str], Capacity], dict[tuple[str, str], str]]:
    """Capacity per (hardware, workload) and, where there is none, why (the engine's one line)."""
    caps: dict[tuple[str, str], Capacity] = {}
    rejected: dict[tuple[str, str], str] = {}
    for w in sc.workloads:
        for hw in hardware:
            try:
                if isinstance(w, ServingDemand):
                    caps[hw, w.id] = _serving_capacity(sc, w, hw, cat)
                else:
                    caps[hw, w.id] = _training_capacity(w, hw, cat)
            except PlannerError as e:
                rejected[hw, w.id] = str(e)
    return caps, rejected


def _serving_capacity(sc: FleetScenario, w: ServingDemand, hw: str, cat: Catalog) -> Capacity:
    """Goodput per device of the fewest-device deployment at the peak year's rate (the rate only
    sets how many replicas round up, so the peak keeps that rounding smallest)."""
    from solvers.inference_plan import Slo, Workload, plan_inference

    rate = max(max(v or 0.0 for v in sc.per_year(w.rate_per_s)), 1.0)
    slo = Slo(w.ttft_s, w.tpot_s, w.percentile)
    best = plan_inference(
        w.model, hw, Workload(rate, w.input_len, w.output_len), slo, top=1, objective="devices", catalog=cat
    ).best
    config = f"{best.mode} {best.weight_precision} tp={best.tp} pp={best.pp} c={best.concurrency_per_replica}"
    if best.mode == "disaggregated":
        config += f" (prefill tp={best.prefill_tp} x {best.prefill_replicas}, decode x {best.replicas})"
    power, source = _serving_power(w, hw, best, cat)
    return Capacity(best.goodput_per_device, power, config, source)


def _serving_power(w: ServingDemand, hw: str, b: Any, cat: Catalog) -> tuple[float, str]:
    """The chosen deployment's mean board power per device, from its estimate re-run."""
    from planner.inference import estimate_inference

    common = dict(
        ep=b.ep,
        input_len=w.input_len,
        output_len=w.output_len,
        weight_precision=b.weight_precision,
        arrival="poisson",
        catalog=cat,
    )
    try:
        if b.mode == "aggregated":
            r = estimate_inference(
                w.model, hw, b.tp * b.pp, tp=b.tp, pp=b.pp, concurrency=b.concurrency_per_replica, **common
            )
        else:
            r = estimate_inference(
                w.model,
                hw,
                b.devices,
                tp=b.tp,
                disaggregated=True,
                prefill_devices=b.prefill_tp * b.prefill_replicas,
                prefill_tp=b.prefill_tp,
                concurrency=b.concurrency_per_replica * b.replicas,
                **common,
            )
        if r.avg_power_w is not None:
            return float(r.avg_power_w), "engine"
        reason = "no power figures"
    except PlannerError as e:
        reason = str(e)
    return _tdp_fallback(hw, cat, reason)


def _tdp_fallback(hw: str, cat: Catalog, reason: str) -> tuple[float, str]:
    tdp = _tdp(hw, None, cat)
    return TDP_FALLBACK_SHARE * tdp, f"{TDP_FALLBACK_SHARE:g} x TDP (the estimate gave none: {reason})"


def _training_capacity(w: TrainingDemand, hw: str, cat: Catalog) -> Capacity:
    from solvers.training_plan import plan_training

    r = plan_training(w.model, hw, w.devices, w.global_batch, w.seq_len, top=1, catalog=cat).best.result
    power, source = (float(r.avg_power_w), "engine") if r.avg_power_w is not None else _tdp_fallback(hw, cat, "none")
    config = f"{w.devices} devices tp={r.tp} pp={r.pp} dp={r.dp}"
    return Capacity(float(r.tokens_per_s) / w.devices, power, config, source)


# ---------------------------------------------------------------------------------------------
# the program's inputs


@dataclass(frozen=True)
class _Cohort:
    h: int  # hardware index
    s: int  # site index
    first: int  # first year index in the horizon it is installed
    last: int  # last year index in the horizon it may be installed
    count: float | None  # existing devices; None for a purchase decision
    price: float  # price paid per device (maintenance basis; capex of a purchase)
    bought: int  # calendar year
    life: float


@dataclass
class _Inputs:
    sc: FleetScenario
    a: TcoAssumptions
    years: tuple[int, ...]
    hw: list[str]
    sites: list[str]
    wl: list[str]
    demand: Any  # W x T, requests/s or tokens/s
    cap: Any  # H x W, per device (0: cannot)
    power_w: Any  # H x W, mean board power per device at that operating point
    prov_w: Any  # H, provisioned IT power per device: TDP x (1 + host overhead)
    budget_w: Any  # S x T
    space: Any  # S x T
    supply: Any  # H, purchases per year (inf: no limit)
    cohorts: list[_Cohort]
    disc: Any  # T, (1 + r)^-(t - t0)
    caps: dict[tuple[str, str], Capacity]
    rejected: dict[tuple[str, str], str]
    messages: list[str] = field(default_factory=list)


def _inputs(
    sc: FleetScenario,
    caps: Mapping[tuple[str, str], Any] | None,
    tdp_w: Mapping[str, float] | None,
    catalog: Catalog | str | None,
) -> _Inputs:
    hw = list(dict.fromkeys([i.hardware for i in sc.inventory] + [p.hardware for p in sc.purchasable]))
    if not hw:
        raise InvalidSpecError("the scenario has no inventory and nothing purchasable: nothing to plan with")
    cat: Catalog | None = catalog if isinstance(catalog, Catalog) else None
    if caps is None or tdp_w is None or any(i.price_usd is None for i in sc.inventory):
        cat = cat or load_catalog(None if isinstance(catalog, Catalog) else catalog)
    rejected: dict[tuple[str, str], str] = {}
    if caps is None:
        assert cat is not None
        got, rejected = engine_capacities(sc, hw, cat)
    else:
        got = {k: v if isinstance(v, Capacity) else Capacity(float(v[0]), float(v[1])) for k, v in caps.items()}
    a = sc.assumptions()
    years, wl, sites = sc.years, [w.id for w in sc.workloads], [s.id for s in sc.sites]
    cap = np.array([[got[h, w].per_device if (h, w) in got else 0.0 for w in wl] for h in hw])
    power = np.array([[got[h, w].avg_power_w if (h, w) in got else 0.0 for w in wl] for h in hw])
    tdp = np.array([_tdp(h, tdp_w, cat) for h in hw])
    inp = _Inputs(
        sc=sc,
        a=a,
        years=years,
        hw=hw,
        sites=sites,
        wl=wl,
        demand=np.array([_demand(sc, w) for w in sc.workloads]),
        cap=cap,
        power_w=power,
        prov_w=tdp * (1.0 + a.host_overhead_fraction),
        budget_w=np.array([[v or 0.0 for v in sc.per_year(s.power_mw)] for s in sc.sites]) * 1e6,
        space=np.array([[v or 0.0 for v in sc.per_year(s.space_devices)] for s in sc.sites]),
        supply=np.array([_supply(sc, h) for h in hw]),
        cohorts=[],
        disc=(1.0 + a.discount_rate) ** -np.arange(len(years), dtype=np.float64),
        caps={k: v for k, v in got.items() if k[0] in hw and k[1] in wl},
        rejected=rejected,
    )
    inp.cohorts = _existing(inp, cat) + _purchases(inp)
    for (h, w), c in inp.caps.items():
        if c.power_source.endswith(")"):  # the TDP fallback, with its reason
            inp.messages.append(f"{h} on {w}: power taken as {c.power_source}")
    return inp


def _demand(sc: FleetScenario, w: Any) -> list[float]:
    """Requests/s (serving) or tokens/s averaged over the year (training)."""
    if isinstance(w, ServingDemand):
        return [float(v or 0.0) for v in sc.per_year(w.rate_per_s)]
    return [float(v or 0.0) / SECONDS_PER_YEAR for v in sc.per_year(w.tokens_per_year)]


def _supply(sc: FleetScenario, h: str) -> float:
    p = next((p for p in sc.purchasable if p.hardware == h), None)
    return math.inf if p is None or p.max_per_year is None else float(p.max_per_year)


def _tdp(h: str, tdp_w: Mapping[str, float] | None, cat: Catalog | None) -> float:
    if tdp_w is not None and h in tdp_w:
        return float(tdp_w[h])
    if cat is None:
        raise InvalidSpecError(f"no TDP for '{h}': give tdp_w={{'{h}': watts}} or a catalogue")
    device = cat.device(h)
    if device.power is None:
        raise InvalidSpecError(f"{h} has no power figures in the catalogue (TDP needed for the power budget)")
    return float(device.power.tdp_w)


def _existing(inp: _Inputs, cat: Catalog | None) -> list[_Cohort]:
    out = []
    t0 = inp.years[0]
    for inv in inp.sc.inventory:
        life = inv.life(inp.years[0], inp.a.life_years)
        last = min(math.ceil(inv.bought + life) - 1, inp.years[-1]) - t0
        price = inv.price_usd
        if price is None:
            assert cat is not None
            price = cat.device(inv.hardware).prices.capex_usd
            if price is None:
                price = 0.0
                inp.messages.append(
                    f"{inv.hardware} bought {inv.bought}: no price given or in the catalogue; "
                    "its maintenance is taken as 0"
                )
        h, s = inp.hw.index(inv.hardware), inp.sites.index(inv.site)
        out.append(_Cohort(h, s, 0, last, float(inv.count), float(price), inv.bought, life))
    return out


def _purchases(inp: _Inputs) -> list[_Cohort]:
    out = []
    for p in inp.sc.purchasable:
        life = p.life_years or inp.a.life_years
        prices = inp.sc.per_year(p.price_usd, partial=True)
        for t, price in enumerate(prices):
            if price is None:
                continue
            last = min(t + math.ceil(life) - 1, len(inp.years) - 1)
            for site in p.sites or inp.sites:
                out.append(
                    _Cohort(inp.hw.index(p.hardware), inp.sites.index(site), t, last, None, price, inp.years[t], life)
                )
    return out


# ---------------------------------------------------------------------------------------------
# costs per device


def _capex_per_year(inp: _Inputs, c: _Cohort) -> float:
    """Capex and network charged in each installed year of a purchase (annualized mode)."""
    crf = capital_recovery_factor(inp.a.discount_rate, c.life)
    return (c.price + inp.a.network_usd_per_device) * crf


def _buy_cost(inp: _Inputs, c: _Cohort) -> float:
    """NPV of a purchase's capex and network, over the whole horizon."""
    if inp.sc.capex == "upfront":
        return (c.price + inp.a.network_usd_per_device) * float(inp.disc[c.first])
    return _capex_per_year(inp, c) * float(inp.disc[c.first : c.last + 1].sum())


def _hold_cost(inp: _Inputs, c: _Cohort) -> float:
    """Facility and maintenance per installed device-year (undiscounted)."""
    a = inp.a
    facility = inp.prov_w[c.h] / 1000.0 * a.colocation_usd_per_kw_month * 12.0
    return float(facility + c.price * a.maintenance_fraction_per_year)


def _energy_cost(inp: _Inputs) -> Any:
    """$ per device-year in use, H x W."""
    a = inp.a
    return inp.power_w * (1.0 + a.host_overhead_fraction) * a.pue * a.usd_per_kwh * HOURS_PER_YEAR / 1000.0


# ---------------------------------------------------------------------------------------------
# the program


@dataclass
class _Cols:
    buy: dict[int, int] = field(default_factory=dict)  # cohort -> column
    inst: dict[tuple[int, int], int] = field(default_factory=dict)  # (cohort, t) -> column
    use: dict[tuple[int, int, int, int], int] = field(default_factory=dict)  # (h, s, w, t) -> column


@dataclass
class _Rows:
    r: list[int] = field(default_factory=list)
    c: list[int] = field(default_factory=list)
    v: list[float] = field(default_factory=list)
    lo: list[float] = field(default_factory=list)
    hi: list[float] = field(default_factory=list)

    def add(self, terms: list[tuple[int, float]], lo: float, hi: float) -> None:
        i = len(self.lo)
        for col, val in terms:
            self.r.append(i)
            self.c.append(col)
            self.v.append(val)
        self.lo.append(lo)
        self.hi.append(hi)

    def into(self, p: Milp) -> None:
        if self.lo:
            p.row(
                np.array(self.r), np.array(self.c), np.array(self.v), np.array(self.lo), np.array(self.hi), len(self.lo)
            )


def _build(
    inp: _Inputs, upto: int, drop: frozenset[str] = frozenset(), minimise: str | None = None
) -> tuple[Milp, _Cols]:
    """The program over years 0..upto; `drop` leaves out row families (power, space, supply) and
    `minimise` replaces the cost by one family's use in year `upto` (the diagnosis of infeasibility)."""
    p, cols = Milp(), _Cols()
    _add_inventory(inp, p, cols, upto, minimise)
    _add_use(inp, p, cols, upto, minimise)
    families = {"monotone": _monotone_rows, "alloc": _alloc_rows, "demand": _demand_rows}
    families.update({"power": _power_rows, "space": _space_rows, "supply": _supply_rows})
    for name, rows in families.items():
        if name not in drop:
            rows(inp, cols, upto).into(p)
    return p, cols


def _add_inventory(inp: _Inputs, p: Milp, cols: _Cols, upto: int, minimise: str | None) -> None:
    for ci, c in enumerate(inp.cohorts):
        if c.first > upto:
            continue
        ub = c.count if c.count is not None else float(min(inp.space[c.s].max(), inp.supply[c.h]))
        for t in range(c.first, min(c.last, upto) + 1):
            cost = inp.disc[t] * _hold_cost(inp, c)
            if minimise is not None:
                cost = (inp.prov_w[c.h] if minimise == "power" else 1.0) if t == upto else 0.0
            elif c.count is None and t == c.first:
                cost += _buy_cost(inp, c)
            col = int(p.add(1, cost=cost, high=ub, integer=True)[0])
            cols.inst[ci, t] = col
            if c.count is None and t == c.first:
                cols.buy[ci] = col


def _add_use(inp: _Inputs, p: Milp, cols: _Cols, upto: int, minimise: str | None) -> None:
    energy = _energy_cost(inp)
    present = {(c.h, c.s) for c in inp.cohorts}
    for h, s in sorted(present):
        for w in range(len(inp.wl)):
            if inp.cap[h, w] <= 0:
                continue
            for t in range(upto + 1):
                cost = 0.0 if minimise is not None else inp.disc[t] * energy[h, w]
                cols.use[h, s, w, t] = int(p.add(1, cost=cost)[0])


def _monotone_rows(inp: _Inputs, cols: _Cols, upto: int) -> _Rows:
    rows = _Rows()
    for ci, c in enumerate(inp.cohorts):
        for t in range(c.first + 1, min(c.last, upto) + 1):
            rows.add([(cols.inst[ci, t], 1.0), (cols.inst[ci, t - 1], -1.0)], -np.inf, 0.0)
    return rows


def _installed_terms(inp: _Inputs, cols: _Cols, t: int, keep: Any, weight: Any = None) -> list[tuple[int, float]]:
    return [
        (col, 1.0 if weight is None else float(weight(inp.cohorts[ci])))
        for (ci, tt), col in cols.inst.items()
        if tt == t and keep(inp.cohorts[ci])
    ]


def _alloc_rows(inp: _Inputs, cols: _Cols, upto: int) -> _Rows:
    rows = _Rows()
    for t in range(upto + 1):
        for h, s in sorted({(c.h, c.s) for c in inp.cohorts}):
            uses = [(col, 1.0) for (hh, ss, _, tt), col in cols.use.items() if (hh, ss, tt) == (h, s, t)]
            if uses:
                inst = _installed_terms(inp, cols, t, lambda c, h=h, s=s: (c.h, c.s) == (h, s))
                rows.add(uses + [(col, -1.0) for col, _ in inst], -np.inf, 0.0)
    return rows


def _demand_rows(inp: _Inputs, cols: _Cols, upto: int) -> _Rows:
    rows = _Rows()
    for t in range(upto + 1):
        for w in range(len(inp.wl)):
            if inp.demand[w, t] > 0:
                terms = [(col, float(inp.cap[h, w])) for (h, _, ww, tt), col in cols.use.items() if (ww, tt) == (w, t)]
                rows.add(terms, float(inp.demand[w, t]), np.inf)
    return rows


def _power_rows(inp: _Inputs, cols: _Cols, upto: int) -> _Rows:
    rows = _Rows()
    for t in range(upto + 1):
        for s in range(len(inp.sites)):
            terms = _installed_terms(inp, cols, t, lambda c, s=s: c.s == s, lambda c: inp.prov_w[c.h])
            rows.add(terms, -np.inf, float(inp.budget_w[s, t]))
    return rows


def _space_rows(inp: _Inputs, cols: _Cols, upto: int) -> _Rows:
    rows = _Rows()
    for t in range(upto + 1):
        for s in range(len(inp.sites)):
            rows.add(_installed_terms(inp, cols, t, lambda c, s=s: c.s == s), -np.inf, float(inp.space[s, t]))
    return rows


def _supply_rows(inp: _Inputs, cols: _Cols, upto: int) -> _Rows:
    rows = _Rows()
    for h in range(len(inp.hw)):
        if not math.isfinite(inp.supply[h]):
            continue
        for t in range(upto + 1):
            terms = [(col, 1.0) for ci, col in cols.buy.items() if (inp.cohorts[ci].h, inp.cohorts[ci].first) == (h, t)]
            if terms:
                rows.add(terms, -np.inf, float(inp.supply[h]))
    return rows


# ---------------------------------------------------------------------------------------------
# why no plan exists


def _diagnose(inp: _Inputs, limit: float, solver: str) -> str:
    """The first year whose prefix is infeasible, and the constraint family that binds there."""
    for t, year in enumerate(inp.years):
        if _feasible(inp, t, frozenset(), limit, solver):
            continue
        unserved = _unserved(inp, t)
        if unserved:
            return f"no fleet meets the demand in {year}: {unserved}"
        fixes = [f for f in ("power", "space", "supply") if _feasible(inp, t, frozenset({f}), limit, solver)]
        if not fixes:
            return f"no fleet meets the demand in {year}: power, space and supply limits bind together"
        either = " (lifting any one of these makes it feasible)" if len(fixes) > 1 else ""
        return (
            f"no fleet meets the demand in {year}: "
            + "; ".join(_binding(inp, t, f, limit, solver) for f in fixes)
            + either
        )
    return "no fleet meets the demand over the horizon (the years' limits conflict)"


def _feasible(inp: _Inputs, t: int, drop: frozenset[str], limit: float, solver: str) -> bool:
    p, _ = _build(inp, t, drop, minimise="space")
    return solve(p, limit, solver).status != "infeasible"


def _unserved(inp: _Inputs, t: int) -> str:
    """A workload with demand in year t that no device on hand or on sale by then can serve."""
    avail = {c.h for c in inp.cohorts if c.first <= t <= c.last}
    for w, name in enumerate(inp.wl):
        if inp.demand[w, t] > 0 and not any(inp.cap[h, w] > 0 for h in avail):
            why = "; ".join(f"{inp.hw[h]}: {inp.rejected.get((inp.hw[h], name), 'no capacity given')}" for h in avail)
            return f"no device on hand or on sale can serve workload '{name}' ({why or 'no devices'})"
    return ""


def _binding(inp: _Inputs, t: int, family: str, limit: float, solver: str) -> str:
    year = inp.years[t]
    if family == "supply":
        return "the purchase limits (max_per_year) bind"
    res = solve(_build(inp, t, frozenset({family}), minimise=family)[0], limit, solver)
    need = res.objective if res.x is not None else math.nan
    if family == "power":
        have = ", ".join(f"{s} {inp.budget_w[i, t] / 1e6:g} MW" for i, s in enumerate(inp.sites))
        return f"the power budget binds: it needs at least {need / 1e6:.2f} MW of IT power, the sites have {have}"
    have = ", ".join(f"{s} {inp.space[i, t]:g}" for i, s in enumerate(inp.sites))
    return f"the space binds: it needs at least {need:.0f} devices installed in {year}, the sites hold {have}"


# ---------------------------------------------------------------------------------------------
# the result


@dataclass(frozen=True)
class FleetPlan:
    """The cheapest fleet: per year and type what is installed, bought, retired and in use per
    workload; costs per year and component (undiscounted and NPV); $/M tokens per workload."""

    name: str
    years: tuple[int, ...]
    status: str  # optimal or time_limit (then mip_gap says how far from proved)
    mip_gap: float
    npv_usd: float
    bound_usd: float
    solve_s: float
    solver: str
    capex_mode: str
    fleet: tuple[dict[str, Any], ...]  # one row per year x hardware
    sites: tuple[dict[str, Any], ...]  # one row per year x site
    costs: tuple[dict[str, Any], ...]  # one row per year x component
    workloads: tuple[dict[str, Any], ...]  # one row per year x workload
    capacities: tuple[dict[str, Any], ...]  # one row per (hardware, workload)
    existing: tuple[dict[str, Any], ...]  # per inventory entry: device-years kept of those available
    messages: tuple[str, ...] = ()

    def summary(self) -> dict[str, Any]:
        bought: dict[str, int] = {}
        for r in self.fleet:
            bought[r["hardware"]] = bought.get(r["hardware"], 0) + r["bought"]
        return {
            "scenario": self.name,
            "years": f"{self.years[0]}-{self.years[-1]}",
            "npv_usd": self.npv_usd,
            "status": self.status,
            "mip_gap": self.mip_gap,
            "solve_s": self.solve_s,
            "solver": self.solver,
            "capex_mode": self.capex_mode,
            "bought": ", ".join(f"{n:g} {h}" for h, n in bought.items() if n) or "nothing",
            "old_devices_kept": ", ".join(
                f"{e['hardware']} ({e['bought']}) {e['kept_share']:.0%}" for e in self.existing
            ),
        }

    def to_dict(self) -> dict[str, Any]:
        keys = ("fleet", "sites", "costs", "workloads", "capacities", "existing")
        return {
            **{k: getattr(self, k) for k in ("name", "status", "mip_gap", "npv_usd", "bound_usd", "solve_s")},
            **{"solver": self.solver, "capex_mode": self.capex_mode, "years": list(self.years)},
            **{k: [dict(r) for r in getattr(self, k)] for k in keys},
            "messages": list(self.messages),
        }

    def to_frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame(list(self.fleet))

    def cost_frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame(list(self.costs))


def _value(x: Any, col: int | None) -> float:
    if col is None:
        return 0.0
    v = float(x[col])
    return float(round(v)) if abs(v - round(v)) < 1e-6 else v


def _installed(inp: _Inputs, cols: _Cols, x: Any) -> Any:
    """C x T installed devices (0 outside a cohort's years)."""
    n = np.zeros((len(inp.cohorts), len(inp.years)))
    for (ci, t), col in cols.inst.items():
        n[ci, t] = _value(x, col)
    return n


def _uses(inp: _Inputs, cols: _Cols, x: Any) -> Any:
    """H x S x W x T devices in use."""
    u = np.zeros((len(inp.hw), len(inp.sites), len(inp.wl), len(inp.years)))
    for (h, s, w, t), col in cols.use.items():
        u[h, s, w, t] = max(float(x[col]), 0.0)
    return u


def _retired(inp: _Inputs, n: Any) -> tuple[Any, Any]:
    """C x T devices leaving at the start of year t (all, and those at the end of their life)."""
    out, eol = np.zeros_like(n), np.zeros_like(n)
    for ci, c in enumerate(inp.cohorts):
        for t in range(max(c.first, 0), len(inp.years)):
            before = (c.count or 0.0) if t == 0 else n[ci, t - 1]
            if c.count is None and t == c.first:
                continue
            out[ci, t] = max(before - n[ci, t], 0.0)
            if t > c.last:
                eol[ci, t] = out[ci, t]
    return out, eol


def _fleet_rows(inp: _Inputs, n: Any, u: Any) -> list[dict[str, Any]]:
    retired, eol = _retired(inp, n)
    host = 1.0 + inp.a.host_overhead_fraction
    rows = []
    for t, year in enumerate(inp.years):
        for h, hw in enumerate(inp.hw):
            mine = [ci for ci, c in enumerate(inp.cohorts) if c.h == h]
            inst = float(sum(n[ci, t] for ci in mine))
            row: dict[str, Any] = {
                "year": year,
                "hardware": hw,
                "installed": inst,
                "bought": float(
                    sum(n[ci, t] for ci in mine if inp.cohorts[ci].count is None and inp.cohorts[ci].first == t)
                ),
                "retired": float(retired[mine, t].sum()),
                "retired_end_of_life": float(eol[mine, t].sum()),
            }
            row.update({f"in_use_{w}": float(u[h, :, wi, t].sum()) for wi, w in enumerate(inp.wl)})
            row["power_provisioned_w"] = inst * float(inp.prov_w[h])
            row["power_avg_w"] = float((u[h, :, :, t].sum(axis=0) * inp.power_w[h]).sum() * host)
            row["power_budget_w"] = float(inp.budget_w[:, t].sum())
            rows.append(row)
    return rows


def _site_rows(inp: _Inputs, n: Any) -> list[dict[str, Any]]:
    rows = []
    for t, year in enumerate(inp.years):
        for s, site in enumerate(inp.sites):
            mine = [ci for ci, c in enumerate(inp.cohorts) if c.s == s]
            rows.append(
                {
                    "year": year,
                    "site": site,
                    "installed": float(n[mine, t].sum()),
                    "space_devices": float(inp.space[s, t]),
                    "power_provisioned_w": float(sum(n[ci, t] * inp.prov_w[inp.cohorts[ci].h] for ci in mine)),
                    "power_budget_w": float(inp.budget_w[s, t]),
                }
            )
    return rows


def _year_costs(inp: _Inputs, n: Any, u: Any, amortized: bool = False) -> Any:
    """H x S x T x component $ (undiscounted). amortized: capex as the annuity whatever the mode
    (the basis of $/M tokens)."""
    out = np.zeros((len(inp.hw), len(inp.sites), len(inp.years), len(COMPONENTS)))
    a = inp.a
    for ci, c in enumerate(inp.cohorts):
        for t in range(c.first, c.last + 1):
            out[c.h, c.s, t, 3] += n[ci, t] * inp.prov_w[c.h] / 1000.0 * a.colocation_usd_per_kw_month * 12.0
            out[c.h, c.s, t, 4] += n[ci, t] * c.price * a.maintenance_fraction_per_year
        if c.count is not None:
            continue
        bought = n[ci, c.first]
        if inp.sc.capex == "upfront" and not amortized:
            out[c.h, c.s, c.first, 0] += bought * c.price
            out[c.h, c.s, c.first, 1] += bought * a.network_usd_per_device
        else:
            crf = capital_recovery_factor(a.discount_rate, c.life)
            out[c.h, c.s, c.first : c.last + 1, 0] += bought * c.price * crf
            out[c.h, c.s, c.first : c.last + 1, 1] += bought * a.network_usd_per_device * crf
    out[:, :, :, 2] = np.einsum("hswt,hw->hst", u, _energy_cost(inp))
    return out


def _cost_rows(inp: _Inputs, costs: Any) -> list[dict[str, Any]]:
    per = costs.sum(axis=(0, 1))  # T x component
    return [
        {"year": year, "component": comp, "usd": float(per[t, k]), "npv_usd": float(per[t, k] * inp.disc[t])}
        for t, year in enumerate(inp.years)
        for k, comp in enumerate(COMPONENTS)
    ]


def _workload_rows(inp: _Inputs, n: Any, u: Any) -> list[dict[str, Any]]:
    """Each workload's share of the year's cost: its own energy, and the devices' fixed costs in
    proportion to the devices it uses (idle devices' costs spread the same way)."""
    costs = _year_costs(inp, n, u, amortized=True)
    fixed = costs[..., [0, 1, 3, 4]].sum(axis=-1)  # H x S x T
    used = u.sum(axis=2)  # H x S x T
    share = np.divide(u, used[:, :, None, :], out=np.zeros_like(u), where=used[:, :, None, :] > 0)
    usd = np.einsum("hswt,hst->wt", share, fixed) + np.einsum("hswt,hw->wt", u, _energy_cost(inp))
    rows = []
    for w, wl in enumerate(inp.sc.workloads):
        per_token = wl.output_len if isinstance(wl, ServingDemand) else 1.0
        for t, year in enumerate(inp.years):
            tokens = inp.demand[w, t] * per_token * SECONDS_PER_YEAR
            rows.append(
                {
                    "year": year,
                    "workload": wl.id,
                    "kind": wl.kind,
                    "demand": float(inp.demand[w, t]),
                    "demand_unit": "requests/s" if isinstance(wl, ServingDemand) else "tokens/s",
                    "devices_in_use": float(u[:, :, w, t].sum()),
                    "usd": float(usd[w, t]),
                    "tokens": float(tokens),
                    "usd_per_million_tokens": float(usd[w, t] / tokens * 1e6) if tokens > 0 else None,
                }
            )
    return rows


def _existing_rows(inp: _Inputs, n: Any) -> list[dict[str, Any]]:
    rows = []
    for ci, c in enumerate(inp.cohorts):
        if c.count is None:
            continue
        available = c.count * (c.last - c.first + 1)
        kept = float(n[ci, c.first : c.last + 1].sum())
        rows.append(
            {
                "hardware": inp.hw[c.h],
                "site": inp.sites[c.s],
                "bought": c.bought,
                "count": c.count,
                "in_service_until": inp.years[0] + c.last,
                "device_years_available": available,
                "device_years_kept": kept,
                "kept_share": kept / available if available else 0.0,
            }
        )
    return rows


def _capacity_rows(inp: _Inputs) -> list[dict[str, Any]]:
    rows = []
    for h in inp.hw:
        for w in inp.wl:
            c = inp.caps.get((h, w))
            rows.append(
                {
                    "hardware": h,
                    "workload": w,
                    "per_device": c.per_device if c else 0.0,
                    "avg_power_w": c.avg_power_w if c else None,
                    "config": c.config if c else "",
                    "power_source": c.power_source if c else "",
                    "rejected": inp.rejected.get((h, w), "" if c else "no capacity given"),
                }
            )
    return rows


# ---------------------------------------------------------------------------------------------
# the entry point


def plan_fleet(
    scenario: FleetScenario | str | Path | Mapping[str, Any],
    *,
    capacities: Mapping[tuple[str, str], Capacity | tuple[float, float]] | None = None,
    tdp_w: Mapping[str, float] | None = None,
    time_limit_s: float = 60.0,
    solver: str = "highs",
    mip_gap: float = 1e-4,
    catalog: Catalog | str | None = None,
) -> FleetPlan:
    """The cheapest fleet for a scenario (a FleetScenario, a file, a shipped example's name, or the
    file's mapping). `capacities` ({(hardware, workload): Capacity or (per_device, avg_power_w)})
    replaces the engine calls; a pair left out cannot serve. `tdp_w` replaces catalogue TDPs."""
    if solver not in SOLVERS:
        raise InvalidSpecError(f"unknown MIP solver '{solver}' (allowed: {', '.join(SOLVERS)})")
    if not (math.isfinite(time_limit_s) and time_limit_s > 0):  # checked before the engine runs
        raise InvalidSpecError(f"--time-limit-s must be a number of seconds > 0 (got {time_limit_s})")
    sc = _scenario(scenario)
    inp = _inputs(sc, capacities, tdp_w, catalog)
    p, cols = _build(inp, len(inp.years) - 1)
    res = solve(p, time_limit_s, solver, gap=mip_gap)
    if res.status == "infeasible":
        raise InfeasiblePlanError(f"{sc.name}: {_diagnose(inp, time_limit_s, solver)}")
    if res.x is None:
        raise SolverLimitError(
            f"{sc.name}: no feasible fleet found within --time-limit-s {time_limit_s:g} ({solver}); raise the limit"
        )
    n, u = _installed(inp, cols, res.x), _uses(inp, cols, res.x)
    return FleetPlan(
        name=sc.name,
        years=inp.years,
        status=res.status,
        mip_gap=float(res.gap),
        npv_usd=float(res.objective),
        bound_usd=float(res.bound),
        solve_s=float(res.seconds),
        solver=solver,
        capex_mode=sc.capex,
        fleet=tuple(_fleet_rows(inp, n, u)),
        sites=tuple(_site_rows(inp, n)),
        costs=tuple(_cost_rows(inp, _year_costs(inp, n, u))),
        workloads=tuple(_workload_rows(inp, n, u)),
        capacities=tuple(_capacity_rows(inp)),
        existing=tuple(_existing_rows(inp, n)),
        messages=tuple(inp.messages),
    )


def _scenario(scenario: FleetScenario | str | Path | Mapping[str, Any]) -> FleetScenario:
    if isinstance(scenario, FleetScenario):
        return scenario
    if isinstance(scenario, Mapping):
        return parse_fleet(scenario)
    return load_fleet(scenario)
