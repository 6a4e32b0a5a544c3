"""Roofline of one kernel: time = max(compute time, memory time) + a per-kernel overhead.

Here: the shape factor of a GEMM (evaluate.op_time applies it). Achieved compute is peak x the
family's large-GEMM fraction x this factor:
- tile padding: the output is cut into tiles, and a tile hanging past the edge does no useful
  work. Skinny GEMMs (decode, small m) pick narrower tiles, as cuBLAS/CUTLASS heuristics do, so
  their padding is bounded by the next power of two of m (at least 16 rows);
- occupancy: with fewer tiles than compute units, units sit idle unless the k loop is split.
  Stream-K / split-K schedulers (CUTLASS 3, cuBLAS) split k into chunks of at least 512 and
  spread a ragged last wave, so only a problem too small to fill the units even then loses more.
  A grouped GEMM (the routed experts of a MoE layer: one kernel over every touched expert's
  rows) fills the units with all its groups' tiles at once and does not split k: DeepGEMM's
  grouped layouts, Triton's fused_moe and CUTLASS's grouped GEMM each walk a tile's full depth.
  Each group's rows are padded to the tile on their own; routed rows vary from expert to expert
  (Poisson about the mean under uniform routing), so an expert just past a tile boundary pays a
  whole extra tile (expected_row_tiles);
- the output write (evaluate.op_time): a tile stores its output once its k loop is done. Where the
  accumulators live in the math warps' registers (Ampere, Ada, Hopper, CDNA) that store does not
  overlap the loop, so a GEMM takes its loop (the longer of its math and its input reads) plus its
  output write: at short k the write is as long as the loop. TileLang's FP16 8192 x 8192 sweep on
  H800 runs 386 TFLOPS at k = 256 and 766 at k = 16384; loop plus write gives 390 and 760.
Achieved bandwidth is the datasheet figure x the family's streaming fraction. Everything
broadcasts over numpy arrays.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


def _as_array(x: object) -> Array:
    return np.asarray(x, dtype=np.float64)


SPLIT_K_MIN_DEPTH = 512


def gemm_shape_efficiency(
    m: Any, n: Any, k: Any, units: int, tile_m: int, tile_n: int, groups: Any = None, routed: bool = False
) -> Array:
    """Useful fraction of the tensor cores for an (m x n) output with depth k: padding x occupancy.
    Any of them may be arrays (a sweep); in a model pass only m (tokens) varies. `groups`: a
    grouped GEMM of that many (m x n x k) problems in one kernel (None: one plain GEMM); `routed`:
    its groups' rows are routed tokens, Poisson about the mean m, not m each."""
    scalar = isinstance(m, (int, float)) and isinstance(n, (int, float)) and isinstance(k, (int, float))
    if scalar and groups is None:
        return _scalar_shape_efficiency(float(m), float(n), float(k), units, tile_m, tile_n)  # type: ignore[return-value]
    if scalar and isinstance(groups, (int, float)):  # one grouped GEMM: the array path on 0-d values
        one = gemm_shape_efficiency(np.asarray(float(m)), float(n), float(k), units, tile_m, tile_n, groups, routed)
        return float(one)  # type: ignore[return-value]
    pad_m, tiles_m = _row_terms(m, tile_m, routed=routed and groups is not None)
    if isinstance(n, (int, float)) and isinstance(k, (int, float)) and not isinstance(groups, np.ndarray):
        # a model pass: only m varies, so the column terms are plain floats (one array product left)
        n_f = max(float(n), 1.0)
        tiles_n_f = math.ceil(n_f / tile_n)
        per_tile = max(1.0, math.floor(max(k, 1.0) / SPLIT_K_MIN_DEPTH)) if groups is None else max(groups, 1.0)
        column = n_f / (tiles_n_f * tile_n)
        return pad_m * column * np.minimum(1.0, tiles_m * (tiles_n_f * per_tile / units))
    n_arr = np.maximum(n, 1.0)
    tiles_n = np.ceil(n_arr / tile_n)
    if groups is None:
        splits = np.maximum(1.0, np.floor(np.maximum(k, 1.0) / SPLIT_K_MIN_DEPTH))
        per_row_tile = tiles_n * splits / units  # scalar in a model pass
    else:
        per_row_tile = tiles_n * np.maximum(groups, 1.0) / units
    return pad_m * (n_arr / (tiles_n * tile_n)) * np.minimum(1.0, tiles_m * per_row_tile)


_ROW_TERMS: dict[tuple[int, int, bool], tuple[Any, Array, Array]] = {}


def _row_terms(m: Any, tile_m: int, routed: bool = False) -> tuple[Array, Array]:
    """Row padding and row-tile count for token counts m (per group: their mean). Every GEMM of a
    pass shares one m array, so the terms are kept for the last few arrays (the array itself is
    held, so its id stays unique)."""
    key = (id(m), tile_m, routed)
    hit = _ROW_TERMS.get(key)
    if hit is not None and hit[0] is m:
        return hit[1], hit[2]
    m_arr = np.maximum(_as_array(m), 1.0)
    # next power of two of m: frexp's exponent of (m - 1), far cheaper than 2 ** ceil(log2 m)
    tm = np.minimum(np.maximum(np.ldexp(1.0, np.frexp(m_arr - 1.0)[1]), 16.0), float(tile_m))  # np.clip costs 3x
    # routed groups' rows vary about their mean, and each group is padded to the tile on its own
    tiles_m = expected_row_tiles(m_arr, tm) if routed else np.ceil(m_arr / tm)
    pad_m = m_arr / (tiles_m * tm)
    if len(_ROW_TERMS) >= 8:
        _ROW_TERMS.pop(next(iter(_ROW_TERMS)))
    _ROW_TERMS[key] = (m, pad_m, tiles_m)
    return pad_m, tiles_m


def _scalar_shape_efficiency(m: float, n: float, k: float, units: int, tile_m: int, tile_n: int) -> float:
    """The same as gemm_shape_efficiency for one plain GEMM, in plain floats (numpy on 0-d arrays is slow)."""
    m, n = max(m, 1.0), max(n, 1.0)
    tm = min(float(tile_m), max(16.0, math.ldexp(1.0, math.frexp(m - 1.0)[1])))
    tiles_m, tiles_n = math.ceil(m / tm), math.ceil(n / tile_n)
    splits = max(1.0, math.floor(max(k, 1.0) / SPLIT_K_MIN_DEPTH))
    padding = m / (tiles_m * tm) * (n / (tiles_n * tile_n))
    return padding * min(1.0, tiles_m * tiles_n * splits / units)


# Abramowitz & Stegun 7.1.26: erf(x) = 1 - t (a1 + a2 t + ... + a5 t^4) exp(-x^2), t = 1 / (1 + p x),
# absolute error below 1.5e-7 (numpy has no erf)
_ERF_P = 0.3275911
_ERF_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def _normal_cdf(z: Array) -> Array:
    x = np.abs(z) * (1.0 / math.sqrt(2.0))
    t = 1.0 / (1.0 + _ERF_P * x)
    a1, a2, a3, a4, a5 = _ERF_A
    erf = 1.0 - t * (a1 + t * (a2 + t * (a3 + t * (a4 + t * a5)))) * np.exp(-x * x)
    return 0.5 * (1.0 + np.sign(z) * erf)


def expected_row_tiles(m: Array, tile: Array) -> Array:
    """E[ceil(X / tile)] for the X ~ Poisson(m) rows one group receives (a routed expert's tokens
    under uniform routing), at least one tile: the sum over j of P(X > j tile). Terms more than six
    standard deviations below the mean count 1; the others take the Poisson tail from Wilson and
    Hilferty's cube-root normal form of its chi-square identity, P(X <= x) = P(chi2_2(x+1) > 2m)
    (within 0.05% of the pmf summed term by term for m from 1 to 3,000 and tiles of 16-128 rows, tests)."""
    m = np.maximum(m, 1e-9)
    sd = np.sqrt(m)
    below = np.maximum(np.floor((m - 6.0 * sd) / tile), 0.0)
    terms = int(np.max(np.ceil(12.0 * sd / tile))) + 2
    j = below + np.arange(terms, dtype=np.float64).reshape((terms,) + (1,) * np.ndim(m))
    nu = 2.0 * (j * tile + 1.0)
    c = 2.0 / (9.0 * nu)
    z = (np.cbrt(2.0 * m / nu) - 1.0 + c) / np.sqrt(c)
    return np.maximum(below + _normal_cdf(z).sum(axis=0), 1.0)


# Fused attention kernels (FlashAttention 2/3/4, CK) walk the score matrix in 128 x 128 tiles: one
# thread block per query tile loops over key tiles. Two losses follow from that loop:
# - a causal kernel skips tiles above the diagonal but computes the diagonal tile whole, so a
#   prompt of n tiles runs n(n+1)/2 tiles for n^2/2 tiles' worth of useful scores;
# - each block's first key tile cannot overlap a previous one (a double-buffered pipeline fills:
#   Q and the first K/V tile load, then the output is normalised and written), about one tile step.
ATTENTION_TILE = 128
ATTENTION_PIPELINE_FILL_TILES = 1.0


def attention_tile_efficiency(length: Any, causal: bool = True, materialised: bool = False) -> Any:
    """Useful share of the score tiles an attention kernel spends time on, for `length`-token
    prompts (query and key lengths equal). `materialised` (unfused attention: batched GEMMs over
    the whole score matrix) computes the masked upper triangle too and has no per-block loop."""
    L = np.maximum(np.asarray(length, dtype=np.float64), 1.0)
    useful = L * (L + 1.0) / 2.0 if causal else L * L
    if materialised:
        return useful / (L * L)
    n = np.ceil(L / ATTENTION_TILE)
    tiles = n * (n + 1.0) / 2.0 if causal else n * n
    return useful / ((tiles + ATTENTION_PIPELINE_FILL_TILES * n) * ATTENTION_TILE**2)
