"""Per-op rows of an estimate: the rows themselves, the results that carry them, and their
aggregation per phase and op class for tables and reports."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from planner.arrays import frame, mean, plain


@dataclass(frozen=True)
class OpRow:
    phase: str
    op: str
    op_class: str
    count: float
    flops: float  # all instances in one pass
    bytes: float
    time_s: float
    bound: str

    @property
    def arithmetic_intensity(self) -> float:
        return self.flops / self.bytes if self.bytes else float("inf")

    @property
    def achieved_flops_per_s(self) -> float:
        return self.flops / self.time_s if self.time_s else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "arithmetic_intensity": self.arithmetic_intensity,
            "achieved_flops_per_s": self.achieved_flops_per_s,
        }


def op_rows(phase: str, times: Sequence[Any]) -> list[OpRow]:
    """Rows from evaluate.OpTime values (means over a sweep's scenarios)."""
    return [
        OpRow(
            phase,
            t.op.name,
            t.op.op_class,
            t.op.count,
            mean(t.op.flops) * t.op.count,
            mean(t.op.bytes) * t.op.count,
            mean(t.total_s),
            t.bound,
        )
        for t in times
    ]


class WithOps:
    """For result dataclasses with an `op_times` field ((phase, [OpTime]) pairs): the per-op rows,
    built only when asked for, and dict/frame export."""

    op_times: tuple[tuple[str, Any], ...]

    @functools.cached_property
    def ops(self) -> tuple[OpRow, ...]:
        return tuple(r for phase, times in self.op_times for r in op_rows(phase, times))

    def to_dict(self, ops: bool = True) -> dict[str, Any]:
        # fields kept out of comparisons (the op times, the power model) are not data either
        d = plain({f.name: getattr(self, f.name) for f in fields(self) if f.compare})  # type: ignore[arg-type]
        if ops:
            d["ops"] = [r.to_dict() for r in self.ops]
        return d

    def to_frame(self, breakdown: bool = False) -> Any:
        """One row per scenario (or, with breakdown=True, one per op), columns with units in their names."""
        if breakdown:
            import pandas as pd

            return pd.DataFrame([r.to_dict() for r in self.ops])
        return frame(self.to_dict(ops=False))


def by_phase_and_class(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Sum op time, FLOPs and bytes per (phase, op class); share of each phase's time."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    totals: dict[str, float] = {}
    for r in rows:
        key = (r["phase"], r["op_class"])
        g = groups.setdefault(
            key,
            {
                "phase": r["phase"],
                "op_class": r["op_class"],
                "time_s": 0.0,
                "flops": 0.0,
                "bytes": 0.0,
                "bounds": set(),
            },
        )
        g["time_s"] += r["time_s"]
        g["flops"] += r["flops"]
        g["bytes"] += r["bytes"]
        g["bounds"].add(r["bound"])
        totals[r["phase"]] = totals.get(r["phase"], 0.0) + r["time_s"]
    out = []
    for g in groups.values():
        share = g["time_s"] / totals[g["phase"]] if totals[g["phase"]] else 0.0
        out.append(
            {
                "phase": g["phase"],
                "op_class": g["op_class"],
                "time_s": g["time_s"],
                "share": f"{share:.1%}",
                "total_flops_per_token": None,
                "flops": g["flops"],
                "moved_bytes": g["bytes"],
                "bound": ", ".join(sorted(g["bounds"])),
            }
        )
    for o in out:
        del o["total_flops_per_token"]
    return sorted(out, key=lambda o: (o["phase"], -o["time_s"]))
