"""Expert loads: tokens routed per (MoE layer, expert), read from a file or drawn from a stated
synthetic distribution, and what an expert placement makes of them per GPU.

A placement is a `phy2log` map (layers x slots, the logical expert each physical slot holds, as
DeepSeek's EPLB and vLLM/SGLang write it); slot j lives on GPU j // (slots / gpus). A replicated
expert's tokens split evenly over its replicas, as the engines route them, unless `shares` (layers
x slots, the share of its expert's tokens each slot takes) says otherwise.

The engine needs one number from all this: the busiest rank's routed tokens over the mean, summed
over layers (sum_l max_g load[l, g] / sum_l mean_g load[l, g]): a MoE layer ends when its busiest
rank does, and its time is near linear in the tokens that rank receives.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from hardware_db.errors import InvalidSpecError

Array = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def check_loads(loads: Any, experts: int | None = None, what: str = "expert loads") -> Array:
    """Loads as a float (layers x experts) array; one layer may come as a 1-D array. Refuses a wrong
    shape, negative or non-finite counts, and a layer with no tokens at all."""
    try:
        a = np.array(loads, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidSpecError(f"{what} must be numbers, tokens per (layer, expert)") from None
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[1] == 0 or a.shape[0] == 0:
        raise InvalidSpecError(f"{what} must be a (layers x experts) table, got shape {np.shape(loads)}")
    if experts is not None and a.shape[1] != experts:
        raise InvalidSpecError(f"{what} have {a.shape[1]} experts per layer; the model has {experts}")
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        raise InvalidSpecError(f"{what} must be finite token counts >= 0")
    if np.any(a.sum(axis=1) <= 0):
        raise InvalidSpecError(f"{what}: layer {int(np.argmin(a.sum(axis=1)))} routes no tokens")
    return a


def read_loads(path: str | Path) -> Array:
    """Tokens per (layer, expert) from a file:
    - .npy / .npz (first array): the table itself;
    - .json: a list of lists, or an object whose "loads" (or SGLang's "logical_count") holds one;
    - .csv: a wide table (a row per layer, a column per expert; a header row and a leading
      "layer" column are skipped), or a long one with columns layer, expert, tokens."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise InvalidSpecError(f"expert loads file '{p}' does not exist")
    suffix = p.suffix.lower()
    try:
        if suffix in (".npy", ".npz"):
            data = np.load(p, allow_pickle=False)
            table: Any = data[data.files[0]] if suffix == ".npz" else data
        elif suffix == ".json":
            table = _json_table(json.loads(p.read_text()), p)
        elif suffix == ".csv":
            table = _csv_table(p)
        else:
            raise InvalidSpecError(f"{p}: expert loads must be .csv, .json, .npy or .npz")
    except (OSError, ValueError) as e:
        if isinstance(e, InvalidSpecError):
            raise
        raise InvalidSpecError(f"{p}: cannot read expert loads ({e})") from None
    return check_loads(table, what=f"{p}: expert loads")


def _json_table(doc: Any, p: Path) -> Any:
    if isinstance(doc, dict):
        for key in ("loads", "logical_count"):
            if key in doc:
                return doc[key]
        raise InvalidSpecError(f"{p}: a JSON object needs a 'loads' field (layers x experts)")
    return doc


def _csv_table(p: Path) -> Any:
    rows = [r for r in csv.reader(p.read_text().splitlines()) if r and any(c.strip() for c in r)]
    if not rows:
        raise InvalidSpecError(f"{p}: no rows")
    head = [c.strip().lower() for c in rows[0]]
    if {"layer", "expert", "tokens"} <= set(head):  # long form
        li, ei, ti = head.index("layer"), head.index("expert"), head.index("tokens")
        body = np.array([(float(r[li]), float(r[ei]), float(r[ti])) for r in rows[1:]]).reshape(-1, 3)
        index = body[:, :2]
        if len(body) == 0 or np.any(index < 0) or np.any(index != np.round(index)):
            raise InvalidSpecError(f"{p}: layer and expert must be whole numbers >= 0")
        layer, expert = index.astype(np.int64).T
        out = np.zeros((layer.max() + 1, expert.max() + 1))
        np.add.at(out, (layer, expert), body[:, 2])
        return out
    if not _numeric(rows[0]):
        rows = rows[1:]
    first_is_index = head[:1] == ["layer"]
    return [[float(c) for c in (r[1:] if first_is_index else r)] for r in rows]


def _numeric(row: list[str]) -> bool:
    try:
        [float(c) for c in row]
    except ValueError:
        return False
    return True


def synthetic_loads(
    layers: int,
    experts: int,
    *,
    tokens: float = 65536.0,
    top_k: int = 1,
    zipf: float | None = None,
    hot: tuple[float, int] | None = None,
    seed: int = 0,
) -> Array:
    """Routed tokens per (layer, expert) when nothing is measured: `tokens` tokens each routed to
    top_k experts, with expert popularity either Zipf(s) (the r-th most popular expert's share is
    proportional to r^-s) or `hot` = (share, k): that share of the routed pairs goes to k hot
    experts, the rest spread evenly (the "x% of tokens into k experts" form papers use). Which
    experts are hot is drawn per layer from `seed`; counts are a multinomial draw of the pairs."""
    if (zipf is None) == (hot is None):
        raise InvalidSpecError("give one synthetic distribution: a Zipf exponent or a hot share and count")
    if layers < 1 or experts < 1 or top_k < 1 or not tokens > 0:
        raise InvalidSpecError("synthetic loads need layers, experts, top_k >= 1 and tokens > 0")
    if zipf is not None:
        if not (np.isfinite(zipf) and zipf >= 0):
            raise InvalidSpecError(f"Zipf exponent must be >= 0 (got {zipf})")
        shares = np.arange(1, experts + 1, dtype=np.float64) ** -float(zipf)
    else:
        assert hot is not None
        share, k = hot
        if not (0 <= share <= 1) or not (1 <= k <= experts):
            raise InvalidSpecError(
                f"hot experts: share must be in [0, 1] and count in [1, {experts}] (got {share}, {k})"
            )
        rest = experts - k
        shares = np.full(experts, (1.0 - share) / rest if rest else 0.0)
        shares[:k] = share / k if rest else 1.0 / k
    shares = shares / shares.sum()
    rng = np.random.default_rng(seed)
    pairs = round(tokens * top_k)
    out = np.empty((layers, experts))
    for layer in range(layers):
        out[layer, rng.permutation(experts)] = rng.multinomial(pairs, shares)
    return out


def parse_hot(text: str) -> tuple[float, int]:
    """'80:4' (80% of routed tokens into 4 hot experts), as LLEP's scripts write it."""
    try:
        pct, k = text.split(":")
        return float(pct) / 100.0, int(k)
    except ValueError:
        raise InvalidSpecError(f"--hot must look like 80:4 (80% of tokens into 4 experts), got '{text}'") from None


def contiguous(layers: int, experts: int) -> IntArray:
    """The default EP layout: expert e in slot e, so on GPU e // (experts / gpus)."""
    return np.tile(np.arange(experts, dtype=np.int64), (layers, 1))


def check_placement(phy2log: Any, layers: int, experts: int, gpus: int) -> IntArray:
    """A phy2log map that holds every expert at least once, with slots divisible by the GPUs."""
    m = read_placement(phy2log) if isinstance(phy2log, (str, Path)) else np.asarray(phy2log)
    if m.ndim == 1:
        m = np.tile(m, (layers, 1))
    if m.ndim != 2 or m.shape[0] != layers:
        raise InvalidSpecError(f"expert placement must be (layers x slots) with {layers} layers, got shape {m.shape}")
    if not np.issubdtype(m.dtype, np.integer) or np.any(m < 0) or np.any(m >= experts):
        raise InvalidSpecError(f"expert placement must hold expert ids 0..{experts - 1}")
    if m.shape[1] % gpus:
        raise InvalidSpecError(f"expert placement has {m.shape[1]} slots per layer: not a multiple of {gpus} GPUs")
    held = np.zeros((layers, experts), dtype=bool)
    np.put_along_axis(held, m, True, axis=1)
    if not held.all():
        layer, expert = (i[0] for i in np.nonzero(~held))
        raise InvalidSpecError(f"expert placement leaves expert {expert} of layer {layer} without a slot")
    return m.astype(np.int64)


def read_placement(path: str | Path) -> Any:
    """A phy2log map from `planner plan experts --format json` (its "phy2log" field), a JSON list of
    lists, or a CSV with a row per layer and a column per slot."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise InvalidSpecError(f"expert placement file '{p}' does not exist")
    try:
        if p.suffix.lower() == ".json":
            doc = json.loads(p.read_text())
            table = doc.get("phy2log") if isinstance(doc, dict) else doc
            if table is None:
                raise InvalidSpecError(f"{p}: a JSON object needs a 'phy2log' field (layers x slots)")
        else:
            rows = [r for r in csv.reader(p.read_text().splitlines()) if r]
            table = [[int(c) for c in r] for r in (rows if _numeric(rows[0]) else rows[1:])]
        return np.asarray(table, dtype=np.int64)
    except (OSError, ValueError, TypeError) as e:
        if isinstance(e, InvalidSpecError):
            raise
        raise InvalidSpecError(f"{p}: cannot read an expert placement ({e})") from None


def replica_counts(phy2log: IntArray, experts: int) -> IntArray:
    """Slots each logical expert holds, per layer (EPLB's logcnt)."""
    out = np.zeros((phy2log.shape[0], experts), dtype=np.int64)
    np.add.at(out, (np.arange(phy2log.shape[0])[:, None], phy2log), 1)
    return out


def slot_loads(loads: Array, phy2log: IntArray, shares: Array | None = None) -> Array:
    """Tokens each physical slot serves (layers x slots)."""
    per_expert = np.take_along_axis(loads, phy2log, axis=1)
    if shares is not None:
        return per_expert * shares
    counts = replica_counts(phy2log, loads.shape[1])
    return per_expert / np.take_along_axis(counts, phy2log, axis=1)


def gpu_loads(loads: Array, phy2log: IntArray, gpus: int, shares: Array | None = None) -> Array:
    """Tokens each GPU serves per layer (layers x gpus): its slots' tokens."""
    s = slot_loads(loads, phy2log, shares)
    return s.reshape(s.shape[0], gpus, -1).sum(axis=2)


def contiguous_gpu_loads(loads: Array, gpus: int) -> Array:
    """Tokens per GPU and layer in the default EP layout: expert e on GPU e * gpus // experts
    (e // (experts / gpus) when the GPUs divide the experts)."""
    experts = loads.shape[1]
    gpu = np.arange(experts) * gpus // experts
    return loads @ np.eye(gpus)[gpu]


def balance(per_gpu: Array) -> Array:
    """Max over mean GPU load, per layer (1 is perfect)."""
    return per_gpu.max(axis=1) / np.maximum(per_gpu.mean(axis=1), 1e-300)


def max_over_mean(per_gpu: Array) -> float:
    """The busiest rank's tokens over the mean, over all layers: sum_l max / sum_l mean."""
    return float(per_gpu.max(axis=1).sum() / max(per_gpu.mean(axis=1).sum(), 1e-300))


@dataclass(frozen=True)
class Routing:
    """How a MoE model's routed tokens fall on its EP ranks: an imbalance ratio (max over mean rank
    load), or measured loads (layers x experts) with a placement (phy2log; contiguous if None)."""

    imbalance: float | None = None
    loads: Any = None
    placement: Any = None

    def __post_init__(self) -> None:
        if self.imbalance is not None and self.loads is not None:
            raise InvalidSpecError("give --expert-imbalance or --expert-loads, not both")
        if self.loads is None and self.placement is not None:
            raise InvalidSpecError("--expert-placement needs --expert-loads")
        if self.imbalance is not None:
            x = self.imbalance
            ok = isinstance(x, (int, float, np.floating)) and not isinstance(x, bool)
            if not ok or not (np.isfinite(x) and x >= 1.0):
                raise InvalidSpecError(f"--expert-imbalance must be a number >= 1 (max over mean rank load; got {x!r})")

    @property
    def given(self) -> bool:
        return self.imbalance is not None or self.loads is not None

    def ratio(self, moe_experts: int | None, ep: int, slots: int | None = None, placed: bool = True) -> float:
        """The busiest of `ep` ranks' routed tokens over the mean; 1.0 when nothing is given.
        placed=False: another pool of the same model (a disaggregated prefill pool), which holds
        the experts in the contiguous layout of its own EP size."""
        if not self.given:
            return 1.0
        if moe_experts is None:
            raise InvalidSpecError("expert loads and imbalance need a mixture-of-experts model")
        if ep < 2:
            if placed:
                raise InvalidSpecError("expert loads and imbalance need expert parallelism (--ep > 1)")
            return 1.0
        if self.imbalance is not None:
            if placed and self.imbalance > ep:
                raise InvalidSpecError(
                    f"--expert-imbalance ({self.imbalance:g}) cannot exceed ep ({ep}): a rank takes all tokens at most"
                )
            return float(min(self.imbalance, ep))
        table = read_loads(self.loads) if isinstance(self.loads, (str, Path)) else check_loads(self.loads)
        if table.shape[1] != moe_experts:
            raise InvalidSpecError(f"expert loads have {table.shape[1]} experts per layer; the model has {moe_experts}")
        n_slots = slots if (slots is not None and placed) else moe_experts
        placement = self.placement if placed else None
        if placement is None:
            if n_slots != moe_experts:
                raise InvalidSpecError(
                    "redundant expert slots need an --expert-placement (e.g. from planner plan experts)"
                )
            placement = contiguous(table.shape[0], moe_experts)
        m = check_placement(placement, table.shape[0], moe_experts, ep)
        if m.shape[1] != n_slots:
            raise InvalidSpecError(
                f"expert placement has {m.shape[1]} slots per layer; experts + redundant = {n_slots}"
            )
        return max_over_mean(gpu_loads(table, m, ep))


NO_ROUTING = Routing()  # balanced: every EP rank gets the mean
