"""Least-loaded expert parallelism (LLEP; Nguyen et al., arXiv 2601.17111, and its reference code
github.com/SalesforceAIResearch/LeastLoadedEP, `compute_llep_lpt_plan`), per batch and layer.

Experts stay in the contiguous layout. When a batch's busiest GPU exceeds the mean by the trigger
ratio λ, the experts are taken largest first; each GPU may take α x the mean; an expert whose
native GPU is full (counting the native experts still to come) spills its excess tokens, with a
copy of its weights, to the GPU with the least effective load, in chunks of at least m tokens
(a smaller remainder goes whole). Below λ the batch runs as plain EP.

The cost beyond plain EP is the weight copies: each spill moves one expert's weights from its
native GPU to the helper before the helper's GEMMs can start.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]

# The paper's controlled runs (section 5; ARCHITECTURE.md names them as the defaults)
ALPHA, MIN_CHUNK, TRIGGER = 1.0, 1024, 1.3


@dataclass(frozen=True)
class Spill:
    layer: int
    expert: int
    src_gpu: int
    dst_gpu: int
    tokens: float


def llep_layer(
    counts: Array, gpus: int, alpha: float = ALPHA, min_chunk: float = MIN_CHUNK, trigger: float = TRIGGER
) -> tuple[Array, list[tuple[int, int, int, float]]]:
    """GPU loads after LLEP's least-loaded assignment of one layer's batch, and its spills
    (expert, native GPU, helper GPU, tokens)."""
    experts = len(counts)
    local = experts // gpus
    native = counts.reshape(gpus, local).sum(axis=1)
    mean = float(counts.sum()) / gpus
    if mean == 0 or native.max() / mean < trigger:
        return native.astype(np.float64), []
    cap = max(float(np.floor(alpha * np.floor(counts.sum() / gpus))), 1.0)  # whole tokens, as the reference
    pending = native.astype(np.float64)
    assigned = np.zeros(gpus)
    spills: list[tuple[int, int, int, float]] = []
    for e in np.argsort(-counts, kind="stable"):
        tokens = float(counts[e])
        if tokens == 0:
            break
        home = e // local
        pending[home] -= tokens
        room = cap - (assigned[home] + pending[home])
        if room >= tokens:
            assigned[home] += tokens
            continue
        kept = max(room, 0.0)
        assigned[home] += kept
        left = tokens - kept
        while left > 0:
            effective = assigned + pending
            effective_other = np.where(np.arange(gpus) == home, np.inf, effective)
            order = np.argsort(effective_other, kind="stable")[: gpus - 1]
            taken = False
            for helper in order:
                free = cap - effective[helper]
                if free <= 0:
                    continue
                chunk = min(left, free)
                if chunk < min_chunk and left > chunk:
                    continue
                assigned[helper] += chunk
                spills.append((int(e), int(home), int(helper), chunk))
                left -= chunk
                taken = True
                break
            if not taken:  # every helper full: the least loaded takes the rest
                if gpus == 1:
                    assigned[home] += left
                    break
                helper = int(order[0])
                assigned[helper] += left
                spills.append((int(e), int(home), helper, left))
                left = 0.0
    return assigned, spills


def llep(
    loads: Array, gpus: int, alpha: float = ALPHA, min_chunk: float = MIN_CHUNK, trigger: float = TRIGGER
) -> tuple[Array, list[Spill]]:
    """Every layer: GPU loads (layers x gpus) and the spills."""
    out = np.empty((loads.shape[0], gpus))
    spills: list[Spill] = []
    for layer, counts in enumerate(loads):
        out[layer], s = llep_layer(counts, gpus, alpha, min_chunk, trigger)
        spills += [Spill(layer, *x) for x in s]
    return out, spills
