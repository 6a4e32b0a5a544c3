"""Multi-year fleet scenarios: demand per calendar year per workload (serving or training), the
devices already owned, what can be bought each year at what price, the sites (power and space)
and the cost assumptions. `solvers.fleet_plan` turns one into the cheapest fleet (NPV of TCO);
this module only reads and checks the file, so every mistake is one line naming the file, the
field and what is allowed.

A per-year value is one number (every year), a list (one per year, in order) or a mapping
{year: value}. A purchasable device's price mapping may leave years out: not for sale then.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationError

from hardware_db.errors import InvalidSpecError
from hardware_db.loader import format_validation_error, read_yaml
from hardware_db.schema import Id, Spec

# Shipped examples. Not under workloads/data: the catalogue reads every YAML file there.
FLEET_DATA = Path(__file__).resolve().parent / "fleets"
MAX_YEARS = 30
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$", min_length=1, max_length=64)]
Year = Annotated[int, Field(ge=1990, le=2200)]
WORKLOAD_KINDS = ("serving", "training")
PerYearValue = float | tuple[float, ...] | dict[int, float]


def _per_year(low: float, high: float, unit: str, *, open_low: bool = False) -> BeforeValidator:
    """Shape (number, list, {year: number}) and range of a per-year field; years are matched to
    the scenario's later (check_years), once the horizon is known."""
    bound = f"({low:g}, {high:g}]" if open_low else f"[{low:g}, {high:g}]"

    def number(v: Any, where: str) -> float:
        if isinstance(v, str):  # YAML 1.1 reads 1.0e12 (no sign in the exponent) as a string
            with contextlib.suppress(ValueError):
                v = float(v.replace("_", ""))
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if not ok or not (low < v <= high if open_low else low <= v <= high):
            raise ValueError(f"{where}must be a number in {bound} {unit} (got {v!r})")
        return float(v)

    def parse(v: Any) -> PerYearValue:
        if isinstance(v, Mapping):
            out = {}
            for k, x in v.items():
                if not (isinstance(k, int) and not isinstance(k, bool)):
                    raise ValueError(f"keys must be calendar years, e.g. 2026 (got {k!r})")
                out[k] = number(x, f"[{k}] ")
            return out
        if isinstance(v, (list, tuple)):
            return tuple(number(x, f"[{i}] ") for i, x in enumerate(v))
        return number(v, "")

    return BeforeValidator(parse)


class Site(Spec):
    id: Name
    power_mw: Annotated[PerYearValue, _per_year(0, 100_000, "MW of IT power")]
    space_devices: Annotated[PerYearValue, _per_year(0, 1e8, "devices")]
    note: str | None = None


class ServingDemand(Spec):
    """Requests to serve each year at a TTFT/TPOT target (a sustained Poisson rate)."""

    id: Name
    kind: Literal["serving"]
    model: str = Field(min_length=1)
    rate_per_s: Annotated[PerYearValue, _per_year(0, 1e8, "requests/s")]
    input_len: int = Field(ge=1, le=10_000_000)
    output_len: int = Field(ge=1, le=1_000_000)
    ttft_s: float = Field(gt=0, le=3600)
    tpot_s: float = Field(gt=0, le=60)
    percentile: float | None = Field(default=None, gt=0, lt=1, description="None: targets hold for the mean")
    note: str | None = None


class TrainingDemand(Spec):
    """Tokens to train each year; throughput per device is measured on a job of `devices`."""

    id: Name
    kind: Literal["training"]
    model: str = Field(min_length=1)
    tokens_per_year: Annotated[PerYearValue, _per_year(0, 1e18, "tokens")]
    seq_len: int = Field(ge=1, le=10_000_000)
    global_batch: int = Field(ge=1, le=10_000_000, description="sequences per step")
    devices: int = Field(default=64, ge=1, le=1_000_000, description="job size the per-device rate is measured on")
    note: str | None = None


Workload = Annotated[ServingDemand | TrainingDemand, Field(discriminator="kind")]


class Inventory(Spec):
    """Devices owned at the start: in service from `bought` until the end of their life."""

    hardware: Id
    count: int = Field(ge=1, le=100_000_000)
    bought: Year
    site: Name
    life_years: float | None = Field(default=None, gt=0, le=30, description="[the scenario's tco.life_years]")
    remaining_years: float | None = Field(default=None, gt=0, le=30, description="from start_year, or life_years")
    price_usd: float | None = Field(default=None, ge=0, le=1e8, description="price paid; maintenance basis")

    def life(self, start_year: int, default_life: float) -> float:
        """Total service life in years from `bought`."""
        if self.remaining_years is not None:
            return start_year - self.bought + self.remaining_years
        return self.life_years or default_life

    note: str | None = None


class Purchasable(Spec):
    """A device on sale: price per device per year (years left out: not for sale)."""

    hardware: Id
    price_usd: Annotated[PerYearValue, _per_year(0, 1e8, "USD per device", open_low=True)]
    sites: tuple[Name, ...] | None = Field(default=None, min_length=1, description="[every site]")
    life_years: float | None = Field(default=None, gt=0, le=30, description="[the scenario's tco.life_years]")
    max_per_year: int | None = Field(default=None, ge=0, le=100_000_000, description="supply limit, all sites")
    note: str | None = None


class TcoOverrides(Spec):
    """planner.costs.TcoAssumptions fields to replace (the rest keep DEFAULT_TCO)."""

    life_years: float | None = Field(default=None, gt=0, le=30)
    pue: float | None = Field(default=None, ge=1, le=5)
    usd_per_kwh: float | None = Field(default=None, ge=0, le=10)
    colocation_usd_per_kw_month: float | None = Field(default=None, ge=0, le=10_000)
    maintenance_fraction_per_year: float | None = Field(default=None, ge=0, le=1)
    network_usd_per_device: float | None = Field(default=None, ge=0, le=1e6)
    host_overhead_fraction: float | None = Field(default=None, ge=0, le=5)


class FleetScenario(Spec):
    name: str = Field(min_length=1)
    start_year: Year
    end_year: Year
    discount_rate: float = Field(default=0.08, ge=0, le=1)
    capex: Literal["annualized", "upfront"] = "annualized"
    tco: TcoOverrides = TcoOverrides()
    sites: tuple[Site, ...] = Field(min_length=1, max_length=1000)
    workloads: tuple[Workload, ...] = Field(min_length=1, max_length=1000)
    inventory: tuple[Inventory, ...] = ()
    purchasable: tuple[Purchasable, ...] = ()
    source: str | None = None
    note: str | None = None

    @property
    def years(self) -> tuple[int, ...]:
        return tuple(range(self.start_year, self.end_year + 1))

    def assumptions(self) -> Any:
        """planner.costs.DEFAULT_TCO with this scenario's overrides and discount rate."""
        from planner.costs import DEFAULT_TCO

        return DEFAULT_TCO.with_(**self.tco.model_dump(), discount_rate=self.discount_rate)

    def per_year(self, value: PerYearValue, *, partial: bool = False) -> tuple[float | None, ...]:
        """One value per scenario year (None for a year a partial mapping leaves out)."""
        if isinstance(value, dict):
            return tuple(value.get(y) if partial else value[y] for y in self.years)
        if isinstance(value, tuple):
            return value
        return (value,) * len(self.years)


def load_fleet(path: str | Path) -> FleetScenario:
    """Read and check one scenario file (a bare name finds a shipped example, e.g. 'example')."""
    p = Path(path).expanduser()
    if not p.is_file() and p.suffix == "" and (FLEET_DATA / f"{p.name}.yaml").is_file():
        p = FLEET_DATA / f"{p.name}.yaml"
    if not p.is_file():
        shipped = ", ".join(sorted(x.stem for x in FLEET_DATA.glob("*.yaml")))
        raise InvalidSpecError(f"fleet scenario '{p}' does not exist (shipped examples: {shipped})")
    return parse_fleet(read_yaml(p), p)


def parse_fleet(data: Any, path: str | Path = "<scenario>") -> FleetScenario:
    if not isinstance(data, Mapping):
        raise InvalidSpecError(f"{path}: expected a mapping of scenario fields (name, start_year, ...)")
    try:
        sc = FleetScenario.model_validate(data)
    except ValidationError as err:
        raise InvalidSpecError(
            format_validation_error(path, data, err, FleetScenario, WORKLOAD_KINDS, "workload kind")
        ) from None
    check_scenario(sc, path)
    return sc


def check_scenario(sc: FleetScenario, path: str | Path) -> None:
    """What one field cannot say alone: the horizon, per-year values against it, unique IDs,
    references to sites, devices still in service."""
    if not 0 <= sc.end_year - sc.start_year < MAX_YEARS:
        raise InvalidSpecError(
            f"{path}: end_year: must be in [start_year, start_year + {MAX_YEARS - 1}] = "
            f"[{sc.start_year}, {sc.start_year + MAX_YEARS - 1}] (got {sc.end_year})"
        )
    _unique(path, "sites", [s.id for s in sc.sites])
    _unique(path, "workloads", [w.id for w in sc.workloads])
    _unique(path, "purchasable", [p.hardware for p in sc.purchasable], "hardware")
    site_ids = [s.id for s in sc.sites]
    for i, s in enumerate(sc.sites):
        _check_years(sc, path, f"sites[{i}] ({s.id})", {"power_mw": s.power_mw, "space_devices": s.space_devices})
    for i, w in enumerate(sc.workloads):
        field = "rate_per_s" if isinstance(w, ServingDemand) else "tokens_per_year"
        _check_years(sc, path, f"workloads[{i}] ({w.id})", {field: getattr(w, field)})
    for i, p in enumerate(sc.purchasable):
        where = f"purchasable[{i}] ({p.hardware})"
        _check_years(sc, path, where, {"price_usd": p.price_usd}, partial=True)
        for site in p.sites or ():
            _known_site(path, f"{where}.sites", site, site_ids)
    for i, inv in enumerate(sc.inventory):
        _check_inventory(sc, path, i, inv, site_ids)


def _unique(path: str | Path, field: str, ids: list[str], key: str = "id") -> None:
    for i, x in enumerate(ids):
        if x in ids[:i]:
            raise InvalidSpecError(f"{path}: {field}[{i}].{key}: '{x}' is listed twice")


def _known_site(path: str | Path, where: str, site: str, site_ids: list[str]) -> None:
    if site not in site_ids:
        raise InvalidSpecError(f"{path}: {where}: unknown site '{site}' (sites: {', '.join(site_ids)})")


def _check_years(
    sc: FleetScenario, path: str | Path, where: str, fields: dict[str, PerYearValue], partial: bool = False
) -> None:
    years = sc.years
    for name, v in fields.items():
        if isinstance(v, tuple) and len(v) != len(years):
            raise InvalidSpecError(
                f"{path}: {where}.{name}: a list needs one value per year {years[0]}..{years[-1]} "
                f"({len(years)} values, got {len(v)})"
            )
        if isinstance(v, dict):
            extra = sorted(set(v) - set(years))
            missing = [] if partial else [y for y in years if y not in v]
            if extra or missing:
                what = f"years outside {years[0]}..{years[-1]}: {extra}" if extra else f"missing years {missing}"
                raise InvalidSpecError(f"{path}: {where}.{name}: {what}")


def _check_inventory(sc: FleetScenario, path: str | Path, i: int, inv: Inventory, site_ids: list[str]) -> None:
    where = f"inventory[{i}] ({inv.hardware})"
    _known_site(path, f"{where}.site", inv.site, site_ids)
    if inv.bought > sc.start_year:
        raise InvalidSpecError(
            f"{path}: {where}.bought: must be <= start_year {sc.start_year} (got {inv.bought}); "
            "future purchases are decisions, not inventory"
        )
    if inv.life_years is not None and inv.remaining_years is not None:
        raise InvalidSpecError(f"{path}: {where}: give life_years or remaining_years, not both")
    life = inv.life(sc.start_year, sc.assumptions().life_years)
    if inv.bought + life <= sc.start_year:
        raise InvalidSpecError(
            f"{path}: {where}.life_years: bought {inv.bought} with a {life:g}-year life, it retires before "
            f"{sc.start_year}; raise life_years above {sc.start_year - inv.bought:g} or drop the entry"
        )
