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
as f V^2 and V follows f in the DVFS range, so as f^3; HBM runs on its own clock and keeps its
bandwidth. A compute-bound op is slowed by the clock ratio s, a memory-bound one barely at all:
s = cube root of the compute share of the dynamic budget left under the cap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from hardware_db.errors import InvalidSpecError

Array = npt.NDArray[np.float64]

# Share of the board's dynamic power range each unit draws when it alone is saturated. A GEMM at
# its achievable rate runs at the power limit (COMPUTE_SHARE = 1): MAMF-style matmul benchmarks
# on H100 SXM hold 700 W (stas00/ml-engineering, compute/accelerator, "power throttling" notes).
COMPUTE_SHARE = 1.0
MEMORY_SHARE = 0.45
LINK_SHARE = 0.15
# Idle board power as a share of TDP where the catalogue has no measured idle: POLCA (Patel et al.,
# arXiv 2308.12908, section 3) measures A100 idle at ~20% of TDP.
IDLE_FRACTION = 0.20
DVFS_EXPONENT = 3.0  # dynamic power ~ f V^2 with V ~ f (section docstring)
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
    if t.op.op_class == "comm":
        load: Any = LINK_SHARE
    else:
        u_c = np.minimum(np.asarray(t.compute_s, dtype=np.float64) / time, 1.0)
        u_m = np.minimum(np.asarray(t.memory_s, dtype=np.float64) / time, 1.0)
        compute = COMPUTE_SHARE * pw.clock_scale**DVFS_EXPONENT  # a slower clock draws less
        load = np.minimum(compute * u_c + MEMORY_SHARE * u_m, 1.0)
    power = pw.idle_w + pw.dynamic_w * load
    # an op that still exceeds the cap at the capped clock is held to it by the board's controller
    return power if pw.cap_w is None else np.minimum(power, pw.cap_w)


def pass_power_w(pw: DevicePower, times: Any) -> Any:
    """Mean board power over a pass: its ops' energy over its ops' time."""
    energy: Any = 0.0
    total: Any = 0.0
    for t in times:
        energy = energy + op_power_w(pw, t) * t.total_s
        total = total + t.total_s
    return energy / np.maximum(total, 1e-30)


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
