"""Power oversubscription of a row (after POLCA, Patel et al., arXiv 2308.12908): how many servers
a power budget holds when they are provisioned at their rated power but rarely draw it, and what
the servers that get capped at the peaks lose.

A row's budget must cover the servers' coincident peak. Uncapped, that is peak_ratio x rated power
per server (POLCA measures LLM inference servers peaking at 79% of provisioned power and training
at 97%, so inference alone leaves 1 / 0.79 = 1.27x headroom). POLCA's policy (also its patent,
US 2025/0377708 A1) adds two thresholds: above the first, the low-priority servers are capped;
above the second, all of them. Planning for the worst case with the first stage engaged, the row
holds the most servers N with

    N x rated_w x ((1 - q) x peak_ratio + q x capped_ratio) <= budget_w

where q is the low-priority share and capped_ratio their peak under the cap. What a capped server
loses comes from the engine: the same estimate with power_cap_w (planner.power).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from hardware_db.errors import InvalidSpecError

# POLCA's measured peaks of provisioned power (as issue 14 quotes the paper; its full text was not
# available to re-read here): LLM inference servers 79%, training 97%.
POLCA_INFERENCE_PEAK = 0.79
POLCA_TRAINING_PEAK = 0.97


@dataclass(frozen=True)
class Oversubscription:
    budget_w: float
    server_rated_w: float
    peak_ratio: float
    low_priority_share: float
    capped_ratio: float
    servers_provisioned: int  # at rated power, no oversubscription
    servers_uncapped: int  # at the measured peak, nobody capped
    servers: int  # with the low-priority share capped at the peaks
    gain: float  # servers / servers_provisioned - 1
    worst_case_w: float  # the row's draw with every server at its (capped) peak

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def oversubscribe(
    budget_w: float,
    server_rated_w: float,
    peak_ratio: float,
    *,
    low_priority_share: float = 0.0,
    capped_ratio: float | None = None,
) -> Oversubscription:
    """Servers a row budget holds (module docstring)."""
    for name, value, high in (
        ("the power budget (--row-kw)", budget_w, math.inf),
        ("the server's rated power (--server-kw)", server_rated_w, math.inf),
        ("--peak-ratio", peak_ratio, 1.0),
        ("--low-priority-share", low_priority_share, 1.0),
    ):
        ok = isinstance(value, (int, float)) and math.isfinite(value) and 0.0 <= value <= high
        if not ok or (name != "--low-priority-share" and value <= 0):
            raise InvalidSpecError(f"{name} must be a finite number in (0, {high:g}] (got {value!r})")
    capped = peak_ratio if capped_ratio is None else capped_ratio
    if not (0 < capped <= peak_ratio):
        raise InvalidSpecError(f"--capped-ratio must be in (0, peak ratio {peak_ratio:g}] (got {capped})")
    per_server = server_rated_w * ((1.0 - low_priority_share) * peak_ratio + low_priority_share * capped)
    n = math.floor(budget_w / per_server + 1e-9)
    base = math.floor(budget_w / server_rated_w + 1e-9)
    return Oversubscription(
        budget_w=budget_w,
        server_rated_w=server_rated_w,
        peak_ratio=peak_ratio,
        low_priority_share=low_priority_share,
        capped_ratio=capped,
        servers_provisioned=base,
        servers_uncapped=math.floor(budget_w / (server_rated_w * peak_ratio) + 1e-9),
        servers=n,
        gain=n / base - 1.0 if base else math.inf,
        worst_case_w=n * per_server,
    )


def peak_ratio_of(result: Any, host_overhead: float, rated_overhead: float) -> float:
    """A workload's peak draw over its server's rating, from an estimate: the busiest phase's board
    power (prefill for serving, the compute of a training step) with the typical host overhead, over
    TDP with the rated overhead."""
    from planner.power import pass_power_w

    pw = result.device_power
    busiest = max(
        float(pass_power_w(pw, [t for t in times if t.op.op_class != "comm"])) for _, times in result.op_times
    )
    return busiest * (1.0 + host_overhead) / (pw.tdp_w * (1.0 + rated_overhead))


def capped_loss(result: Any, peak_ratio: float, capped_ratio: float, rerun: Any) -> float:
    """Throughput a capped server loses: its GPUs capped at capped_ratio / peak_ratio of their
    busiest phase's power; `rerun(power_cap_w)` repeats the estimate under that cap."""
    from planner.power import pass_power_w

    if capped_ratio >= peak_ratio:
        return 0.0
    pw = result.device_power
    busiest = max(
        float(pass_power_w(pw, [t for t in times if t.op.op_class != "comm"])) for _, times in result.op_times
    )
    cap = max(busiest * capped_ratio / peak_ratio, pw.idle_w * 1.01)
    capped = rerun(cap)
    field = "tokens_per_s" if hasattr(result, "step_time_s") else "throughput_tokens_per_s"
    return float(1.0 - getattr(capped, field) / getattr(result, field))
