"""Power and energy: what an accelerator draws while it runs an estimate's ops, the node around it,
and the clock a power cap leaves it.

Board power is idle plus a dynamic part that follows what each op keeps busy:

    P(op) = P_idle + (TDP - P_idle) x min(1, COMPUTE_SHARE x u_compute + MEMORY_SHARE x u_memory
                                           + LINK_SHARE x u_link)

u_compute = compute_s / time (the math units at their achievable rate), u_memory = memory_s / time
(HBM at its achievable bandwidth), u_link = 1 for the time of a collective. A pass draws the
time-weighted mean of its ops. Serving mixes prefill passes (compute-bound, near TDP) and decode
steps (memory-bound, well below); training adds the exposed communication, the pipeline bubble
(near idle) and the optimizer (memory-bound).

A power cap lowers the clock until the board fits under it. Dynamic power of the math units goes
as f^DVFS_EXPONENT; HBM runs on its own clock and keeps its bandwidth. A compute-bound op is slowed
by the clock ratio s, a memory-bound one barely at all (decode never reaches a cap: Ma et al., "The
Illusion of Power Capping in LLM Decode", arXiv 2605.11999); an op still above the cap at that
clock is held to it by the board's controller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from hardware_db.errors import InvalidSpecError

Array = npt.NDArray[np.float64]

# Share of the board's dynamic power range each unit draws when it alone is saturated.
# - COMPUTE_SHARE 1: a GEMM at its achievable rate runs at the power limit (Epoch's single-H100 test:
#   at 70% of peak FLOP/s the GPU sat at 700 W; epoch-research/training-cost-trends, energy.py).
# - MEMORY_SHARE 0.75: an HBM-bound step still keeps every SM issuing loads at full clock. No source
#   gives HBM's share of an H100's board power, so this is the project's one calibration of the
#   power model: the ML.ENERGY v3.0 row of Llama-3.1-8B on one H100 at batch 16 (513 W; validation/
#   measurements.yaml, marked calibration). The other ML.ENERGY rows only evaluate it.
# - LINK_SHARE 0.15: SMs near idle while NVLink or the NIC moves data. An assumption, unsourced: it
#   weighs only the exposed communication of training steps.
COMPUTE_SHARE = 1.0
MEMORY_SHARE = 0.75
LINK_SHARE = 0.15
# Idle board power as a share of TDP where the catalogue has no measured idle. A bare A100 idles at
# 13-16% of TDP (nvidia-smi, 0% utilisation: 52-54 W on 400 W SXM, 44-48 W on 300 W PCIe; HF space
# seawolf2357/PLUS_Lab_GPUs gpus.csv, 2025-07-03), and a GPU holding a loaded model draws 26-50 W
# more (the CUDA context; Vadari, "The Model Parking Tax", arXiv 2605.23918): about 20% for a
# serving GPU between requests.
IDLE_FRACTION = 0.20
# Dynamic power ~ C V^2 f, and near the top of the DVFS range V rises about half as fast as f (a
# 10% higher clock needs ~5% more voltage: 1.10 x 1.05^2 = 1.21, an exponent of 2;
# diomgis.com/learn/power-thermals-and-clock-throttling). A cube law would overstate the power a
# clock cut saves.
DVFS_EXPONENT = 2.0
MIN_CLOCK_SCALE = 0.3  # no cap may take the clock below this (the DVFS range ends)


@dataclass(frozen=True)
class DevicePower:
    tdp_w: float
    idle_w: float
    clock_scale: float = 1.0  # the math units' clock ratio under a power cap (clock_scale())
    cap_w: float | None = None  # the cap the board's controller holds it under

    @property
    def dynamic_w(self) -> float:
        return self.tdp_w - self.idle_w


def device_power(device: Any, clock: float = 1.0, cap_w: float | None = None) -> DevicePower:
    """TDP and idle of one accelerator (idle from the catalogue, else IDLE_FRACTION of TDP), the
    clock ratio it runs at and the power cap it runs under."""
    if device.power is None:
        raise InvalidSpecError(f"{device.id} has no power figures in the catalogue")
    tdp = float(device.power.tdp_w)
    idle = float(device.power.idle_w) if device.power.idle_w is not None else IDLE_FRACTION * tdp
    return DevicePower(tdp, idle, clock, cap_w)


def op_power_w(pw: DevicePower, t: Any) -> Any:
    """Board power while one op (an evaluate.OpTime) runs; arrays where its times are arrays."""
    time = np.maximum(np.asarray(t.time_s, dtype=np.float64), 1e-30)
    return pw.idle_w + pw.dynamic_w * _loaded_s(pw, t.op.op_class, t.compute_s, t.memory_s, time) / time


def _loaded_s(pw: DevicePower, op_class: str, compute_s: Any, memory_s: Any, time_s: Any) -> Any:
    """Seconds of full dynamic power an op's run is worth: its time x its load (module docstring),
    with compute_s, memory_s <= time_s so no share exceeds 1, and the load held under a cap."""
    ceiling = 1.0 if pw.cap_w is None else min(1.0, (pw.cap_w - pw.idle_w) / pw.dynamic_w)
    if op_class == "comm":
        return min(LINK_SHARE, ceiling) * time_s
    compute = COMPUTE_SHARE * pw.clock_scale**DVFS_EXPONENT  # a slower clock draws less
    return np.minimum(compute * compute_s + MEMORY_SHARE * memory_s, ceiling * time_s)


def pass_power_w(pw: DevicePower, times: Any) -> Any:
    """Mean board power over a pass: its ops' energy over its ops' time. `times`: OpTimes, or a
    serving pass's lazy column (replica.Column), read without building its per-op rows."""
    rows = (
        times.power_inputs()
        if hasattr(times, "power_inputs")
        else ((t.op.op_class, t.compute_s, t.memory_s, t.time_s, t.op.count) for t in times)
    )
    loaded: Any = 0.0
    total: Any = 0.0
    for op_class, compute_s, memory_s, time_s, count in rows:
        loaded = loaded + _loaded_s(pw, op_class, compute_s, memory_s, time_s) * count
        total = total + time_s * count
    return pw.idle_w + pw.dynamic_w * loaded / np.maximum(total, 1e-30)


def clock_scale(pw: DevicePower, cap_w: float | None) -> float:
    """The clock ratio a cap leaves a compute-bound op: its dynamic power, COMPUTE_SHARE of the
    range at full clock, must fit in what the cap leaves above idle."""
    if cap_w is None:
        return 1.0
    if not (np.isfinite(cap_w) and cap_w > 0):
        raise InvalidSpecError(f"--power-cap-w must be watts > 0 (got {cap_w})")
    if cap_w <= pw.idle_w:
        raise InvalidSpecError(f"--power-cap-w ({cap_w:g} W) is at or below the board's idle power ({pw.idle_w:g} W)")
    budget = (cap_w - pw.idle_w) / (pw.dynamic_w * COMPUTE_SHARE)
    return float(np.clip(budget ** (1.0 / DVFS_EXPONENT), MIN_CLOCK_SCALE, 1.0))


def system_power_w(avg_power_w: Any, devices: int) -> Any:
    """Accelerators at their average draw plus their hosts, by the typical host overhead of
    planner.costs.DEFAULT_TCO; None when the board power is unknown."""
    if avg_power_w is None:
        return None
    from planner.costs import DEFAULT_TCO

    total = np.asarray(avg_power_w, dtype=np.float64) * devices * (1.0 + DEFAULT_TCO.host_overhead_fraction)
    return float(total) if total.ndim == 0 else total
