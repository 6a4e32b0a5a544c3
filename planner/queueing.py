"""Closed-form queueing for serving: the prefill work of a replica seen as one server.

Prompts need a deterministic service time D and arrive as a Poisson stream of rate lam. That is an
M/D/1 queue, as DistServe (Zhong et al., OSDI 2024, section 3.1) analyses a prefill instance:
  rho  = lam x D                         (utilisation; stable only below 1)
  Wq   = rho x D / (2 (1 - rho))         (Pollaczek-Khinchine for deterministic service)
For a percentile target the waiting time's tail is taken as exponential with the exact mean and
P(wait > 0) = rho (the usual heavy-traffic approximation for M/G/1):
  Wq_p = (Wq / rho) x ln(rho / (1 - p))  when 1 - p < rho, else 0.
The functions take numpy arrays (the engine evaluates many scenarios at once) or plain floats.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def md1_wait_s(rate_per_s: Any, service_s: Any) -> Any:
    """Mean time in queue of an M/D/1 server (infinite when rho >= 1)."""
    rho = np.asarray(rate_per_s, dtype=np.float64) * service_s
    with np.errstate(divide="ignore", invalid="ignore"):
        wait = np.where(rho < 1.0, rho * service_s / (2.0 * (1.0 - rho)), np.inf)
    return float(wait) if wait.ndim == 0 else wait


def md1_wait_percentile_s(rate_per_s: Any, service_s: Any, p: float) -> Any:
    """The p-quantile of the M/D/1 waiting time (exponential-tail approximation, module docstring)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"percentile must be in (0, 1), got {p}")
    rho = np.asarray(rate_per_s, dtype=np.float64) * service_s
    mean = np.asarray(md1_wait_s(rate_per_s, service_s))
    with np.errstate(divide="ignore", invalid="ignore"):
        tail = np.where(rho > 1.0 - p, mean / rho * np.log(np.maximum(rho, 1e-300) / (1.0 - p)), 0.0)
    wait = np.where(rho >= 1.0, np.inf, tail)
    return float(wait) if wait.ndim == 0 else wait


def md1_max_rate(service_s: float, ttft_target_s: float, p: float | None = None, fixed_s: float = 0.0) -> float:
    """The largest Poisson rate one server sustains with (mean, or p-quantile) TTFT <= target, where
    TTFT = fixed_s + service_s + wait. Solved in closed form for the mean, by bisection otherwise."""
    budget = ttft_target_s - fixed_s - service_s
    if budget < 0.0 or not math.isfinite(budget):
        return 0.0
    if p is None:
        # rho D / (2 (1 - rho)) <= budget  <=>  rho <= 2 budget / (D + 2 budget)
        return 2.0 * budget / (service_s + 2.0 * budget) / service_s
    lo, hi = 0.0, 1.0 / service_s
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if md1_wait_percentile_s(mid, service_s, p) <= budget:
            lo = mid
        else:
            hi = mid
    return lo
