"""Closed-form queueing for serving plans.

A prefill instance serves prompts one at a time with a deterministic service time D (the prefill
pass); prompts arrive as a Poisson stream of rate lam. That is an M/D/1 queue, as DistServe
(Zhong et al., OSDI 2024, section 3.1) analyses a prefill instance:
  rho  = lam x D                         (utilisation; stable only below 1)
  Wq   = rho x D / (2 (1 - rho))         (Pollaczek-Khinchine for deterministic service)
  TTFT = D + Wq
For a percentile target the waiting time's tail is taken as exponential with the exact mean and
P(wait > 0) = rho (the usual heavy-traffic approximation for M/G/1):
  Wq_p = (Wq / rho) x ln(rho / (1 - p))  when 1 - p < rho, else 0.
"""

from __future__ import annotations

import math


def md1_wait_s(rate_per_s: float, service_s: float) -> float:
    """Mean time in queue of an M/D/1 server (infinite when rho >= 1)."""
    rho = rate_per_s * service_s
    if rho >= 1.0:
        return math.inf
    return rho * service_s / (2.0 * (1.0 - rho))


def md1_wait_percentile_s(rate_per_s: float, service_s: float, p: float) -> float:
    """The p-quantile of the M/D/1 waiting time (exponential-tail approximation, module docstring)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"percentile must be in (0, 1), got {p}")
    rho = rate_per_s * service_s
    if rho >= 1.0:
        return math.inf
    if rho <= 0.0 or 1.0 - p >= rho:
        return 0.0
    return md1_wait_s(rate_per_s, service_s) / rho * math.log(rho / (1.0 - p))


def md1_max_rate(service_s: float, ttft_target_s: float, p: float | None = None, fixed_s: float = 0.0) -> float:
    """The largest Poisson rate one server sustains with (mean, or p-quantile) TTFT <= target, where
    TTFT = fixed_s + service_s + wait. Solved in closed form for the mean, by bisection otherwise."""
    budget = ttft_target_s - fixed_s - service_s
    if budget < 0.0:
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
