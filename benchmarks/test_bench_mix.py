"""The GPU mix at Mélange's size (arXiv 2404.14527, section 6: four GPU types, a 10 x 10 grid of
request-size buckets, slice factor 4): llama3.1-8b on a10g, l40s, a100-sxm-80gb and h100-sxm (TP 1),
TTFT 2 s and TPOT 50 ms, 200 requests/s. The length distribution is a stated synthetic one:
independent log-normal prompt (median 1,000 tokens, sigma 1.2) and output (median 200, sigma 0.9)
lengths over power-of-two buckets. Measured, not asserted: building the 4 profiles from the engine
(one vectorised estimate per type), and the ILP (1,600 binaries + 4 integers; target <= 1 s)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import ndtr

from planner.catalog import resolve_model
from solvers.inference_plan import Slo
from solvers.mix_plan import engine_profiles, solve_mix
from workloads.lengths import LengthDistribution

TYPES = ["a10g:1", "l40s:1", "a100-sxm-80gb:1", "h100-sxm:1"]
SLO = Slo(2.0, 0.05)
RATE = 200.0
SLICES = 4


def _lognormal_mass(edges: list[float], median: float, sigma: float) -> np.ndarray:
    cdf = ndtr((np.log(edges) - math.log(median)) / sigma)
    cdf[0], cdf[-1] = 0.0, 1.0
    return np.diff(cdf)


@pytest.fixture(scope="module")
def dist() -> LengthDistribution:
    ins = [1.0] + [2.0**k for k in range(5, 15)]  # 10 prompt buckets, 1 .. 16,384 tokens
    outs = [1.0] + [2.0**k for k in range(3, 13)]  # 10 output buckets, 1 .. 4,096 tokens
    shares = np.outer(_lognormal_mass(ins, 1000.0, 1.2), _lognormal_mass(outs, 200.0, 0.9))
    return LengthDistribution("synthetic-lognormal", ins, outs, shares)


def test_mix_profiles_4_types_10x10(benchmark, dist, catalog):  # type: ignore[no-untyped-def]
    spec = resolve_model("llama3.1-8b", catalog)
    prof = benchmark(engine_profiles, spec, TYPES, dist, SLO, catalog=catalog)
    benchmark.extra_info.update(
        servable_buckets={t: int((prof.throughput[k] > 0).sum()) for k, t in enumerate(prof.types)}
    )


@pytest.mark.parametrize("solver", ["highs", "cbc"])
def test_mix_ilp_4_types_10x10_4_slices(benchmark, dist, catalog, solver):  # type: ignore[no-untyped-def]
    prof = engine_profiles(resolve_model("llama3.1-8b", catalog), TYPES, dist, SLO, catalog=catalog)
    tput = prof.throughput.reshape(len(prof.types), -1)
    rate = (dist.shares * RATE).ravel()
    sol = benchmark.pedantic(
        solve_mix, args=(prof.usd_per_hour, tput, rate, SLICES, 30.0, solver), rounds=3, iterations=1
    )
    r = sol.result
    benchmark.extra_info.update(status=r.status, mip_gap=r.gap, usd_per_hour=sol.usd_per_hour(prof.usd_per_hour))
    print(f"mix ILP ({solver}): {r.seconds:.2f} s (target <= 1 s), status {r.status}, gap {r.gap:.3%}, {sol.instances}")
