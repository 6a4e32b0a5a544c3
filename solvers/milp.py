"""One mixed-integer program, two solvers: HiGHS (through scipy, the default: the model is built as
sparse matrices, so building it costs milliseconds) or CBC (through pulp, which ships it). Both
run under a time limit and report what they proved: the objective, the best bound and the gap.

A program is min c.x subject to lo <= A x <= hi, lb <= x <= ub, some x integer. Callers add rows
as sparse (row, column, value) triples (`Milp.row`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from hardware_db.errors import InvalidSpecError

Array = npt.NDArray[np.float64]
SOLVERS = ("highs", "cbc")


@dataclass
class Milp:
    """A program under construction: variables first (`add`), then rows (`row`)."""

    c: list[Array] = field(default_factory=list)
    lb: list[Array] = field(default_factory=list)
    ub: list[Array] = field(default_factory=list)
    integer: list[Array] = field(default_factory=list)
    n: int = 0
    rows: list[Any] = field(default_factory=list)  # (row index array, column array, value array)
    lo: list[Array] = field(default_factory=list)
    hi: list[Array] = field(default_factory=list)
    m: int = 0

    def add(self, count: int, *, cost: Any = 0.0, low: Any = 0.0, high: Any = np.inf, integer: bool = False) -> Any:
        """`count` new variables; returns their column indices."""
        idx = np.arange(self.n, self.n + count)
        self.c.append(np.broadcast_to(np.asarray(cost, dtype=np.float64), (count,)))
        self.lb.append(np.broadcast_to(np.asarray(low, dtype=np.float64), (count,)))
        self.ub.append(np.broadcast_to(np.asarray(high, dtype=np.float64), (count,)))
        self.integer.append(np.full(count, 1.0 if integer else 0.0))
        self.n += count
        return idx

    def row(self, rows: Any, cols: Any, vals: Any, lo: Any, hi: Any, count: int) -> None:
        """`count` new rows; `rows` index them from 0. lo/hi broadcast to count."""
        r, c, v = np.broadcast_arrays(np.asarray(rows), np.asarray(cols), np.asarray(vals, dtype=np.float64))
        self.rows.append((r.ravel() + self.m, c.ravel(), v.ravel()))
        self.lo.append(np.broadcast_to(np.asarray(lo, dtype=np.float64), (count,)))
        self.hi.append(np.broadcast_to(np.asarray(hi, dtype=np.float64), (count,)))
        self.m += count


@dataclass(frozen=True)
class MilpResult:
    x: Array | None  # None when no feasible point was found in time
    objective: float
    bound: float  # the best lower bound proved (minimisation)
    gap: float  # (objective - bound) / |objective|; 0 when proved optimal
    status: str  # optimal, time_limit (x is the incumbent), infeasible, no_solution (time ran out first)
    seconds: float
    solver: str


def solve(p: Milp, time_limit_s: float, solver: str = "highs", gap: float = 1e-4) -> MilpResult:
    if solver not in SOLVERS:
        raise InvalidSpecError(f"unknown MIP solver '{solver}' (allowed: {', '.join(SOLVERS)})")
    if not (np.isfinite(time_limit_s) and time_limit_s > 0):
        raise InvalidSpecError(f"--time-limit-s must be a number of seconds > 0 (got {time_limit_s})")
    start = time.perf_counter()
    out = _highs(p, time_limit_s, gap) if solver == "highs" else _cbc(p, time_limit_s, gap)
    return MilpResult(*out, seconds=time.perf_counter() - start, solver=solver)


def _matrix(p: Milp) -> Any:
    from scipy import sparse

    r, c, v = (np.concatenate([t[i] for t in p.rows]) for i in range(3))
    return sparse.csr_matrix((v, (r, c)), shape=(p.m, p.n))


def _highs(p: Milp, limit: float, gap: float) -> tuple[Any, float, float, float, str]:
    from scipy.optimize import Bounds, LinearConstraint, milp

    res = milp(
        np.concatenate(p.c),
        constraints=LinearConstraint(_matrix(p), np.concatenate(p.lo), np.concatenate(p.hi)),
        integrality=np.concatenate(p.integer),
        bounds=Bounds(np.concatenate(p.lb), np.concatenate(p.ub)),
        options={"time_limit": float(limit), "mip_rel_gap": gap, "disp": False},
    )
    bound = float(getattr(res, "mip_dual_bound", np.nan) or np.nan)
    if res.status == 2:
        return None, np.inf, np.inf, np.inf, "infeasible"
    if res.x is None:
        return None, np.inf, bound, np.inf, "no_solution"
    obj = float(res.fun)
    status = "optimal" if res.status == 0 else "time_limit"
    g = float(getattr(res, "mip_gap", 0.0) or 0.0) if status == "time_limit" else 0.0
    return res.x, obj, (obj if status == "optimal" else bound), g, status


def _cbc(p: Milp, limit: float, gap: float) -> tuple[Any, float, float, float, str]:
    import pulp

    a = _matrix(p).tocsr()
    c, lb, ub, integer = (np.concatenate(x) for x in (p.c, p.lb, p.ub, p.integer))
    lo, hi = np.concatenate(p.lo), np.concatenate(p.hi)
    x = [
        pulp.LpVariable(
            f"x{i}",
            None if not np.isfinite(lb[i]) else float(lb[i]),
            None if not np.isfinite(ub[i]) else float(ub[i]),
            cat="Integer" if integer[i] else "Continuous",
        )
        for i in range(p.n)
    ]
    prob = pulp.LpProblem("milp", pulp.LpMinimize)
    prob += pulp.LpAffineExpression([(x[i], float(c[i])) for i in np.nonzero(c)[0]])
    for r in range(p.m):
        cols, vals = a.indices[a.indptr[r] : a.indptr[r + 1]], a.data[a.indptr[r] : a.indptr[r + 1]]
        expr = pulp.LpAffineExpression([(x[j], float(v)) for j, v in zip(cols, vals, strict=True)])
        if lo[r] == hi[r]:
            prob += expr == float(lo[r])
        else:
            if np.isfinite(lo[r]):
                prob += expr >= float(lo[r])
            if np.isfinite(hi[r]):
                prob += expr <= float(hi[r])
    prob.solve(pulp.PULP_CBC_CMD(msg=False, timeLimit=float(limit), gapRel=gap))
    if prob.status == pulp.LpStatusInfeasible:
        return None, np.inf, np.inf, np.inf, "infeasible"
    if prob.sol_status not in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible):
        return None, np.inf, np.nan, np.inf, "no_solution"
    values = np.array([v.value() or 0.0 for v in x])
    obj = float(c @ values)
    if prob.sol_status == pulp.LpSolutionOptimal:
        return values, obj, obj, 0.0, "optimal"
    return values, obj, np.nan, np.nan, "time_limit"  # CBC through pulp does not hand back its bound
