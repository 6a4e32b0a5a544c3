"""Small helpers for results that are scalars for one scenario and arrays for a sweep."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hardware_db.errors import InvalidSpecError


def scalar_or_array(x: Any) -> Any:
    """A Python number when `x` holds one value, else the numpy array."""
    a = np.asarray(x)
    return a.reshape(()).item() if a.size == 1 else a


def plain(d: dict[str, Any]) -> dict[str, Any]:
    """JSON-ready copy: arrays become lists, numpy scalars Python numbers."""
    return {
        k: (v.tolist() if isinstance(v, np.ndarray) else v.item() if isinstance(v, np.generic) else v)
        for k, v in d.items()
    }


def frame(d: dict[str, Any]) -> Any:
    """A one-row DataFrame for one scenario, one row per scenario for a sweep."""
    import pandas as pd

    d = _flat(d)
    return pd.DataFrame(d if any(isinstance(v, list) for v in d.values()) else [d])


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts (a tier placement) become columns named by their path: tier_placement_bytes.hbm.weights."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def mean(x: Any) -> float:
    """Mean as a float; np.mean's overhead (~10 us) dominates one-scenario estimates otherwise."""
    if isinstance(x, np.ndarray):
        return float(x.item()) if x.size == 1 else float(x.mean())
    return float(x)


# Sweeps run in slices of this many scenarios. Each slice pays the estimate's Python work once
# (~5 ms of op lists, placement and power per call), so small slices lose; past ~128k the numpy
# temporaries (1 MB each) fall out of cache. Measured on the 2-core VM, llama3.1-70b on 8 x H100:
# 100,000 scenarios take 96 / 78 / 59 ms at 16k / 64k / 128k slices; 1,000,000 take
# 770 / 600 / 580 / 810 ms at 16k / 64k / 128k / 256k.
CHUNK = 131072


def sweep_size(*values: Any) -> int:
    """Scenarios in a broadcast of the given knobs (1 when all are scalars)."""
    shape = np.broadcast_shapes(*(np.shape(v) for v in values if v is not None))
    return int(np.prod(shape)) if shape else 1


def in_chunks(fn: Any, knobs: dict[str, Any], **fixed: Any) -> Any:
    """Evaluate `fn` over broadcast `knobs` in CHUNK-sized slices and merge the results: array
    fields are concatenated (reshaped to the broadcast shape); per-slice summaries are combined
    conservatively (a flag holds only if it holds in every slice, a capacity is the smallest, a
    reason is the first that is not "fits"). The per-op breakdown is left out of chunked sweeps;
    what a result derives from it (its class's DERIVED names) is computed per slice and kept."""
    import dataclasses

    present = {k: v for k, v in knobs.items() if v is not None}
    shape = np.broadcast_shapes(*(np.shape(v) for v in present.values()))
    flat = {k: np.broadcast_to(np.asarray(v, dtype=np.float64), shape).reshape(-1) for k, v in present.items()}
    total = int(np.prod(shape))
    parts = [fn(**{k: v[i : i + CHUNK] for k, v in flat.items()}, **fixed) for i in range(0, total, CHUNK)]
    merged: dict[str, Any] = {}
    for f in dataclasses.fields(parts[0]):
        values = [getattr(p, f.name) for p in parts]
        first = values[0]
        if f.name == "op_times":
            merged[f.name] = ()
        elif f.name in knobs and knobs[f.name] is not None:
            merged[f.name] = np.broadcast_to(np.asarray(knobs[f.name]), shape)
        elif isinstance(first, np.ndarray) or (
            isinstance(first, float) and any(isinstance(v, np.ndarray) for v in values)
        ):
            merged[f.name] = np.concatenate(
                [np.broadcast_to(v, (min(CHUNK, total - i * CHUNK),)) for i, v in enumerate(values)]
            ).reshape(shape)
        elif isinstance(first, bool):
            merged[f.name] = all(values)
        elif isinstance(first, (int, float)) and not isinstance(first, bool):
            merged[f.name] = min(values)
        elif isinstance(first, str) and f.name.endswith("reason"):
            merged[f.name] = next((v for v in values if v != "fits"), first)
        elif isinstance(first, dict) and f.name.endswith("_bytes"):  # {tier: {class: mean bytes}}
            sizes = [min(CHUNK, total - i * CHUNK) / total for i in range(len(values))]
            merged[f.name] = _weighted_means(values, sizes)
        else:
            merged[f.name] = first
    out = type(parts[0])(**merged)
    # figures a result derives lazily from its op times (which chunked sweeps leave out): each
    # slice's, concatenated, stored where functools.cached_property looks first
    for name in getattr(out, "DERIVED", ()):
        values = [np.broadcast_to(getattr(p, name), (min(CHUNK, total - i * CHUNK),)) for i, p in enumerate(parts)]
        out.__dict__[name] = np.concatenate(values).reshape(shape)
    return out


def _weighted_means(records: list[dict[str, Any]], weights: list[float]) -> dict[str, Any]:
    """Nested {key: {key: number}} records averaged with the given weights (absent keys count 0)."""
    out: dict[str, Any] = {}
    for record, w in zip(records, weights, strict=True):
        for k, v in record.items():
            if isinstance(v, dict):
                inner = out.setdefault(k, {})
                for kk, vv in v.items():
                    inner[kk] = inner.get(kk, 0.0) + w * vv
            else:
                out[k] = out.get(k, 0.0) + w * v
    return out


def whole(option: str, value: Any, low: float = 1.0) -> Any:
    """`value` (a number or an array) as float64 after checking every element is a finite whole
    number >= low; the error names the CLI option."""
    if isinstance(value, (str, bytes, bool)) or value is None:  # numpy would read "8" or True as a number
        raise InvalidSpecError(f"{option} must be a whole number >= {low:g} (got {value!r})")
    if isinstance(value, (int, float)):  # one scenario: no numpy reductions
        if not (math.isfinite(value) and value >= low and value == round(value)):
            raise InvalidSpecError(f"{option} must be a whole number >= {low:g} (got {value})")
        return np.float64(value)
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidSpecError(f"{option} must be a whole number >= {low:g} (got {value!r})") from None
    if not np.all(np.isfinite(a)) or np.any(a < low) or np.any(a != np.round(a)):
        raise InvalidSpecError(f"{option} must be a whole number >= {low:g} (got {value})")
    return a


def reason_per_scenario(fits: Any, reason: Any) -> Any:
    """The fit reason of each scenario of a sweep: a reason already given per scenario as is, else
    "fits" where it fits and the reason where it does not (one string for one scenario)."""
    f = np.asarray(fits)
    if isinstance(reason, np.ndarray):
        return reason.reshape(()).item() if reason.size == 1 else reason
    if f.size <= 1:
        return reason
    return np.where(f, "fits", reason).astype(object)


def formatted(template: str, *columns: Any) -> Any:
    """`template.format(*row)` for every row of the columns (1-D arrays of one length), as an object
    array. Values are rounded to the 0.1 the messages print and each distinct row is formatted
    once, so a sweep's per-scenario messages cost a sort, not a Python loop over its rows."""
    table = np.round(np.stack([np.asarray(c, dtype=np.float64).ravel() for c in columns], axis=1), 1)
    if not len(table):
        return np.array([], dtype=object)
    rows, inverse = np.unique(table, axis=0, return_inverse=True)
    texts = np.array([template.format(*row) for row in rows.tolist()], dtype=object)
    return texts[np.ravel(inverse)]


def messages(shape: tuple[int, ...], cases: Any, default: str = "fits") -> Any:
    """Per scenario, the template of the first case whose mask holds, filled with that case's value
    (rounded to the 0.1 it prints), or `default`: one sort over the integer keys of the scenarios
    some case holds for, and one take, so a 100,000-row sweep pays no per-row Python work."""
    key = np.zeros(shape, dtype=np.int64)  # 0: the default; else case number x 2^40 + value x 10
    for number, (mask, value, _) in reversed(list(enumerate(cases, start=1))):
        tenths = np.rint(np.broadcast_to(np.asarray(value, dtype=np.float64), shape) * 10).astype(np.int64)
        key = np.where(mask, (number << 40) + tenths, key)
    out = np.empty(shape, dtype=object)
    out.fill(default)  # np.full on an object array costs ~10x this
    hit = np.flatnonzero(key)
    if hit.size:
        codes, inverse = np.unique(key.ravel()[hit], return_inverse=True)
        # codes sort by case number (the high bits): fill each case's template for its run of codes
        starts = np.searchsorted(codes, np.arange(1, len(cases) + 2, dtype=np.int64) << 40)
        texts: list[str] = []
        for number, (_, _, template) in enumerate(cases):
            texts += _filled(template, (codes[starts[number] : starts[number + 1]] & ((1 << 40) - 1)).tolist())
        out.ravel()[hit] = np.array(texts, dtype=object)[inverse]
    return out


def _filled(template: str, tenths: list[int]) -> list[str]:
    """template.format(t / 10) for each t (>= 0); a lone {:.1f} is written from the integer's
    digits, which is the same text at half the cost of float formatting."""
    before, placeholder, after = template.partition("{:.1f}")
    if placeholder and "{" not in before + after:
        return [f"{before}{t // 10}.{t % 10}{after}" for t in tenths]
    return [template.format(t / 10) for t in tenths]


def count(option: str, value: Any, low: int = 1) -> int:
    """A scalar count (devices, a parallel degree) as an int, after checking it is a whole number
    >= low; the error names the CLI option."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < low or value != int(value):
        raise InvalidSpecError(f"{option} must be a whole number >= {low} (got {value!r})")
    return int(value)
