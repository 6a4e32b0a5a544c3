"""Request length distributions for the GPU-mix planner (solvers.mix_plan): the share of requests in
each (prompt-length bucket, output-length bucket), the workload form Mélange takes (Griggs et al.,
arXiv 2404.14527, section 5.1: "request size" buckets over input and output lengths).

Three sources, one result (`LengthDistribution`):
- a shipped summary of a public trace, by name (`workloads/lengths/NAME.yaml`, `shipped_distributions()`);
- a bucket table: a YAML file in that schema, or a CSV with columns
  input_lo,input_hi,output_lo,output_hi,share (optional input_len,output_len per bucket);
- a CSV of request samples (columns input_len,output_len), cut into buckets by `bucket_samples`.

Buckets are half-open [lo, hi) in tokens; the last bucket of each axis also holds its upper edge.
Each bucket carries the prompt and output length it is profiled at: the mean of its samples when they
are known, else the midpoint of its edges.
"""

from __future__ import annotations

import csv
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from hardware_db.errors import InvalidSpecError
from hardware_db.loader import read_yaml

Array = npt.NDArray[np.float64]

# Not under workloads/data: the catalogue loads every YAML file there as hardware/model entries.
LENGTHS_DATA = Path(__file__).resolve().parent / "lengths"
SHARE_TOLERANCE = 1e-3  # shares may be rounded; they are renormalised within this of 1


@dataclass(frozen=True)
class LengthDistribution:
    name: str
    input_edges: tuple[float, ...]  # m + 1 increasing edges, tokens
    output_edges: tuple[float, ...]  # n + 1
    shares: Array  # (m, n): share of requests per bucket, sums to 1
    input_len: Array = field(default_factory=lambda: np.zeros(0))  # (m, n) tokens each bucket is profiled at
    output_len: Array = field(default_factory=lambda: np.zeros(0))
    source: str = ""

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        ins, outs = _edges("input_edges", self.input_edges), _edges("output_edges", self.output_edges)
        set_(self, "input_edges", ins)
        set_(self, "output_edges", outs)
        set_(self, "shares", normalised_shares(self.shares, (len(ins) - 1, len(outs) - 1), self.name))
        mid_in, mid_out = np.meshgrid(midpoints(ins), midpoints(outs), indexing="ij")
        for attr, mid in (("input_len", mid_in), ("output_len", mid_out)):
            value = np.asarray(getattr(self, attr), dtype=np.float64)
            if value.size == 0:
                value = mid
            if value.shape != mid.shape:
                raise InvalidSpecError(f"{self.name}: {attr} must be a {mid.shape[0]} x {mid.shape[1]} table")
            value = np.where(np.isfinite(value) & (value >= 1), value, mid)  # empty buckets: the midpoint
            set_(self, attr, np.maximum(np.round(value), 1.0))

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.input_edges) - 1, len(self.output_edges) - 1)

    @property
    def mean_input_len(self) -> float:
        return float((self.shares * self.input_len).sum())

    @property
    def mean_output_len(self) -> float:
        return float((self.shares * self.output_len).sum())

    def label(self, i: int, j: int) -> str:
        """A bucket's name, e.g. 'in 512-1024 x out 128-256'."""
        a, b = self.input_edges, self.output_edges
        return f"in {a[i]:g}-{a[i + 1]:g} x out {b[j]:g}-{b[j + 1]:g}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "input_edges": list(self.input_edges),
            "output_edges": list(self.output_edges),
            "shares": self.shares.tolist(),
            "input_len": self.input_len.tolist(),
            "output_len": self.output_len.tolist(),
            "source": self.source,
        }


def _edges(what: str, edges: Sequence[float]) -> tuple[float, ...]:
    e = tuple(float(x) for x in edges)
    if len(e) < 2 or not all(math.isfinite(x) for x in e) or e[0] < 0 or any(b <= a for a, b in itertools.pairwise(e)):
        raise InvalidSpecError(f"{what} must be >= 2 increasing token counts >= 0 (got {list(edges)})")
    return e


def midpoints(edges: Sequence[float]) -> Array:
    e = np.asarray(edges, dtype=np.float64)
    return (e[:-1] + e[1:]) / 2.0


def normalised_shares(shares: Any, shape: tuple[int, int] | None, what: str = "distribution") -> Array:
    """Shares as a float table that sums to 1; a clear error for a wrong shape, a negative or
    non-finite share, or a total off 1 by more than SHARE_TOLERANCE."""
    try:
        a = np.asarray(shares, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidSpecError(f"{what}: shares must be a table of numbers") from None
    if a.ndim != 2 or a.size == 0 or (shape is not None and a.shape != shape):
        want = f"{shape[0]} x {shape[1]}" if shape is not None else "a non-empty 2-D"
        raise InvalidSpecError(f"{what}: shares must be {want} table (input buckets x output buckets), got {a.shape}")
    if not np.all(np.isfinite(a)) or a.min() < 0:
        raise InvalidSpecError(f"{what}: every share must be a finite number >= 0")
    total = float(a.sum())
    if abs(total - 1.0) > SHARE_TOLERANCE:
        raise InvalidSpecError(f"{what}: shares must sum to 1 (within {SHARE_TOLERANCE:g}), got {total:.6g}")
    return a / total


def default_edges(longest: float, first: int) -> tuple[float, ...]:
    """1, then powers of two from 2**first, up to the first edge above `longest`."""
    edges = [1.0]
    k = first
    while edges[-1] <= longest:
        edges.append(float(2**k))
        k += 1
    return tuple(edges)


def bucket_samples(
    inputs: Any,
    outputs: Any,
    input_edges: Sequence[float] | None = None,
    output_edges: Sequence[float] | None = None,
    *,
    name: str = "samples",
    source: str = "",
) -> LengthDistribution:
    """Cut request samples into buckets: the share of samples per bucket and their mean lengths.
    Default edges: powers of two (prompts from 64 tokens, outputs from 16) up past the longest."""
    ins, outs = np.asarray(inputs, dtype=np.float64).ravel(), np.asarray(outputs, dtype=np.float64).ravel()
    if ins.size == 0 or ins.shape != outs.shape:
        raise InvalidSpecError(f"{name}: need the same number (>= 1) of input and output lengths")
    if not (np.all(np.isfinite(ins)) and np.all(np.isfinite(outs))) or min(ins.min(), outs.min()) < 1:
        raise InvalidSpecError(f"{name}: input_len and output_len must be >= 1 token in every sample")
    ie = _edges("input_edges", input_edges or default_edges(float(ins.max()), 6))
    oe = _edges("output_edges", output_edges or default_edges(float(outs.max()), 4))
    i, j = _index(ins, ie, "input_len", name), _index(outs, oe, "output_len", name)
    shape = (len(ie) - 1, len(oe) - 1)
    counts = np.zeros(shape)
    np.add.at(counts, (i, j), 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_in = _bucket_sum(i, j, ins, shape) / counts
        mean_out = _bucket_sum(i, j, outs, shape) / counts
    return LengthDistribution(name, ie, oe, counts / counts.sum(), mean_in, mean_out, source)


def _index(values: Array, edges: tuple[float, ...], column: str, name: str) -> Any:
    e = np.asarray(edges)
    if values.min() < e[0] or values.max() > e[-1]:
        raise InvalidSpecError(f"{name}: {column} outside the bucket edges [{e[0]:g}, {e[-1]:g}]")
    return np.minimum(np.searchsorted(e, values, side="right") - 1, len(e) - 2)


def _bucket_sum(i: Any, j: Any, values: Array, shape: tuple[int, int]) -> Array:
    out = np.zeros(shape)
    np.add.at(out, (i, j), values)
    return out


def read_samples_csv(path: str | Path) -> tuple[Array, Array]:
    """Columns input_len, output_len (one request a row), as in solvers.inference_plan.Workload.from_csv."""
    rows = _csv_rows(path)
    try:
        return (np.array([float(r["input_len"]) for r in rows]), np.array([float(r["output_len"]) for r in rows]))
    except (KeyError, ValueError, TypeError) as e:
        raise InvalidSpecError(f"{path}: expected a CSV with columns input_len, output_len ({e})") from None


def _csv_rows(path: str | Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise InvalidSpecError(f"{path}: cannot read ({e.strerror})") from None
    if not rows:
        raise InvalidSpecError(f"{path}: no rows")
    return rows


def shipped_distributions() -> list[str]:
    return sorted(p.stem for p in LENGTHS_DATA.glob("*.yaml"))


def load_length_distribution(
    name_or_path: str | Path,
    *,
    input_edges: Sequence[float] | None = None,
    output_edges: Sequence[float] | None = None,
) -> LengthDistribution:
    """A shipped summary by name, a YAML bucket table, or a CSV (samples or a bucket table, told
    apart by their columns). The edges apply to a CSV of samples only."""
    text = str(name_or_path)
    shipped = LENGTHS_DATA / f"{text}.yaml"
    if shipped.is_file():
        return _from_yaml(shipped)
    path = Path(text)
    if not path.is_file():
        names = ", ".join(shipped_distributions())
        raise InvalidSpecError(f"unknown length distribution '{text}' (shipped: {names}; or a .yaml/.csv file)")
    if path.suffix.lower() in (".yaml", ".yml"):
        return _from_yaml(path)
    rows = _csv_rows(path)
    if "share" in rows[0]:
        return _from_table(rows, path)
    ins, outs = read_samples_csv(path)
    return bucket_samples(ins, outs, input_edges, output_edges, name=path.stem, source=str(path))


def _from_yaml(path: Path) -> LengthDistribution:
    data = read_yaml(path)
    try:
        table = data["counts"] if "counts" in data else data["shares"]
        shares = np.asarray(table, dtype=np.float64)
        total = shares.sum() if "counts" in data else 1.0
        return LengthDistribution(
            str(data.get("name", path.stem)),
            tuple(data["input_edges"]),
            tuple(data["output_edges"]),
            shares / total if total > 0 else shares,
            np.asarray(data.get("input_len") or [], dtype=np.float64),
            np.asarray(data.get("output_len") or [], dtype=np.float64),
            str(data.get("source", "")).strip(),
        )
    except KeyError as e:
        raise InvalidSpecError(
            f"{path}: missing field {e} (need input_edges, output_edges, counts or shares)"
        ) from None
    except (TypeError, ValueError) as e:
        raise InvalidSpecError(f"{path}: {e}") from None


_TABLE = ("input_lo", "input_hi", "output_lo", "output_hi", "share")


def _from_table(rows: list[dict[str, str]], path: Path) -> LengthDistribution:
    """A bucket table: one row per bucket; missing buckets hold no requests."""
    try:
        cells = [tuple(float(r[c]) for c in _TABLE) for r in rows]
        lens = [(float(r.get("input_len") or "nan"), float(r.get("output_len") or "nan")) for r in rows]
    except (KeyError, ValueError, TypeError) as e:
        raise InvalidSpecError(f"{path}: a bucket table needs columns {', '.join(_TABLE)} ({e})") from None
    ie = tuple(sorted({c[0] for c in cells} | {c[1] for c in cells}))
    oe = tuple(sorted({c[2] for c in cells} | {c[3] for c in cells}))
    shape = (len(ie) - 1, len(oe) - 1)
    shares, mean_in, mean_out = np.zeros(shape), np.full(shape, np.nan), np.full(shape, np.nan)
    for (ilo, ihi, olo, ohi, share), (li, lo) in zip(cells, lens, strict=True):
        i, j = ie.index(ilo), oe.index(olo)
        if ie[i + 1] != ihi or oe[j + 1] != ohi:
            raise InvalidSpecError(f"{path}: bucket {ilo:g}-{ihi:g} x {olo:g}-{ohi:g} overlaps another bucket")
        shares[i, j] += share
        mean_in[i, j], mean_out[i, j] = li, lo
    return LengthDistribution(
        path.stem, ie, oe, normalised_shares(shares, shape, str(path)), mean_in, mean_out, str(path)
    )
