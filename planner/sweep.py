"""Sweeps: the Cartesian product of lists of knobs, evaluated vectorised, on local processes, or
on a Dask cluster, returned as one DataFrame or streamed as DataFrames of bounded size (one row per
scenario, in grid order).

Knobs that change the model graph (model, hardware, devices, parallelism, precisions, recompute...)
split the grid into groups; inside a group the workload knobs (batch, concurrency, lengths,
micro/global batch) are numpy arrays, so each group is one vectorised estimate call, or one per
CHUNK_ROWS rows of a large group. Those chunks are the unit of work for the process pool and for
Dask; a few are in flight at a time and they come back in grid order, so memory stays flat however
large the grid. The grid is sized (rows, and memory as one table) and checked for contradictory
knobs before any work. A combination the engine rejects (heads not divisible by tp, ...) stays in
the frame with `fits = False` and the reason in `error`.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hardware_db.errors import InvalidSpecError, PlannerError

KINDS = ("inference", "training")
ARRAY_KNOBS = {
    "inference": ("batch", "concurrency", "input_len", "output_len"),
    "training": ("micro_batch", "global_batch", "seq_len"),
}
STRUCTURAL_KNOBS = {
    "inference": (
        "model",
        "hardware",
        "devices",
        "tp",
        "pp",
        "ep",
        "dp",
        "weight_precision",
        "kv_precision",
        "disaggregated",
        "prefill_devices",
        "prefill_tp",
    ),
    "training": (
        "model",
        "hardware",
        "devices",
        "tp",
        "pp",
        "dp",
        "ep",
        "cp",
        "zero",
        "recompute",
        "virtual_stages",
        "sequence_parallel",
        "precision",
    ),
}


# Rows evaluated per unit of work (one engine call): memory stays flat however large the grid,
# and an interrupt or a worker's result never waits on more than this many rows.
CHUNK_ROWS = 50_000
# Rows a sweep may hold in memory at once: `sweep()`'s DataFrame, and .xlsx / .json / table output
# (about 1 KB a row, so ~1 GB). CSV streams in chunks and has no limit.
BUFFERED_ROW_LIMIT = 1_000_000


def _as_list(name: str, value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        if not value:
            raise InvalidSpecError(f"sweep knob '{name}' is an empty list")
        return list(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return [value]


@dataclass(frozen=True)
class Grid:
    """A sweep's grid, sized before any work: the structural combinations (one engine call each, or
    one per CHUNK_ROWS of them) times the workload combinations they share."""

    kind: str
    structural: dict[str, list[Any]]
    arrays: dict[str, list[Any]]

    @property
    def groups(self) -> int:
        return math.prod(len(v) for v in self.structural.values())

    @property
    def rows_per_group(self) -> int:
        return math.prod(len(v) for v in self.arrays.values())

    @property
    def rows(self) -> int:
        return self.groups * self.rows_per_group

    def iter_groups(self) -> Iterator[dict[str, Any]]:
        """Structural combinations in grid order, made lazily (a grid may have millions)."""
        names = list(self.structural)
        return (dict(zip(names, combo, strict=True)) for combo in itertools.product(*self.structural.values()))

    def tasks(self, chunk_rows: int, catalog_dir: str | None) -> Iterator[tuple[Any, ...]]:
        """Units of work in grid order: (kind, group, arrays, first row, end row, catalog, columns)."""
        columns = self.columns()
        for group in self.iter_groups():
            for start in range(0, self.rows_per_group, chunk_rows):
                stop = min(start + chunk_rows, self.rows_per_group)
                yield (self.kind, group, self.arrays, start, stop, catalog_dir, columns)

    def task_count(self, chunk_rows: int) -> int:
        return self.groups * math.ceil(self.rows_per_group / chunk_rows)

    def columns(self) -> list[str]:
        """Every row's columns, in order: the knobs, the result fields, the reason a row failed last.
        Fixed up front, so streamed chunks (and failed rows) share one header."""
        result = _result_fields(self.kind)
        knobs = ["kind", *self.structural]
        return list(dict.fromkeys([*knobs, *result, *self.arrays, "fits", "error"]))


def _result_fields(kind: str) -> list[str]:
    from dataclasses import fields

    from planner.inference import InferenceResult
    from planner.training import TrainingResult

    cls = InferenceResult if kind == "inference" else TrainingResult
    # the data fields (not the op times or the power model, nor nested records such as the tier
    # placement: a mean over the call's scenarios, which a chunk would change), then the figures
    # derived from them
    return [f.name for f in fields(cls) if f.compare and not str(f.type).startswith("dict")] + list(cls.DERIVED)


def plan_grid(kind: str, knobs: Mapping[str, Any]) -> Grid:
    """The grid of a sweep, checked before any work: known knobs, model and hardware given, no
    contradictory knobs (every row would fail), numeric workload knobs."""
    if kind not in KINDS:
        raise InvalidSpecError(f"unknown sweep kind '{kind}' (allowed: {', '.join(KINDS)})")
    allowed = set(ARRAY_KNOBS[kind]) | set(STRUCTURAL_KNOBS[kind])
    unknown = sorted(set(knobs) - allowed)
    if unknown:
        raise InvalidSpecError(f"unknown sweep knob '{unknown[0]}' for {kind} (allowed: {', '.join(sorted(allowed))})")
    for required in ("model", "hardware"):
        if required not in knobs:
            raise InvalidSpecError(f"a sweep needs '{required}'")
    if kind == "training" and "devices" not in knobs:
        raise InvalidSpecError("a training sweep needs 'devices'")
    if kind == "inference" and "batch" in knobs and "concurrency" in knobs:
        raise InvalidSpecError(
            "a sweep gives batch (one static batch) or concurrency (serving), not both: every row would fail"
        )
    structural = {k: _as_list(k, v) for k, v in knobs.items() if k in STRUCTURAL_KNOBS[kind]}
    arrays = {k: _as_list(k, v) for k, v in knobs.items() if k in ARRAY_KNOBS[kind]}
    for name, values in arrays.items():
        bad = [v for v in values if isinstance(v, bool) or not isinstance(v, (int, float))]
        if bad:
            raise InvalidSpecError(f"sweep knob '{name}' takes numbers, got {bad[0]!r}")
    return Grid(kind, structural, arrays)


def evaluate_chunk(
    kind: str,
    group: dict[str, Any],
    arrays: dict[str, list[Any]],
    start: int,
    stop: int,
    catalog_dir: str | None,
    columns: list[str],
) -> Any:
    """Rows start..stop of one structural combination's workload grid, in one vectorised engine call,
    as a DataFrame with `columns`. A combination the engine rejects keeps its rows, with the reason."""
    import pandas as pd

    from planner.catalog import load_catalog

    workload = _workload_columns(arrays, start, stop)
    n = stop - start
    data: dict[str, Any] = {"kind": kind, **group}
    try:
        result = _call(kind, group, workload, load_catalog(catalog_dir))
    except PlannerError as e:
        data.update({**workload, "fits": False, "error": str(e)})
    else:
        for name in _result_fields(kind):
            data[name] = _column(getattr(result, name), n)
        data["error"] = ""
    return pd.DataFrame(data, index=pd.RangeIndex(n)).reindex(columns=columns)  # absent fields: NaN, not object


def _workload_columns(arrays: dict[str, list[Any]], start: int, stop: int) -> dict[str, Any]:
    """The workload knobs of rows start..stop of the Cartesian product (itertools.product order)."""
    if not arrays:
        return {}
    shape = tuple(len(v) for v in arrays.values())
    index = np.unravel_index(np.arange(start, stop), shape)
    return {
        name: np.asarray(values, dtype=np.float64)[i] for (name, values), i in zip(arrays.items(), index, strict=True)
    }


def _column(value: Any, n: int) -> Any:
    """One result field as a column of n rows: per-scenario arrays as they are, anything else repeated."""
    if isinstance(value, np.ndarray) and value.size == n and n > 1:
        return value.reshape(n)
    if isinstance(value, np.ndarray):
        value = value.reshape(()).item() if value.size == 1 else value.tolist()
    if value is None:
        return np.nan  # a float column, as in failed rows, so the chunks' dtypes agree
    return [value] * n if isinstance(value, (list, tuple, dict)) else value


def _call(kind: str, group: dict[str, Any], columns: dict[str, Any], cat: Any) -> Any:
    from planner.inference import estimate_inference
    from planner.training import estimate_training

    args = {k: v for k, v in group.items() if k not in ("model", "hardware", "devices")}
    if kind == "inference":
        return estimate_inference(
            group["model"], group["hardware"], group.get("devices"), catalog=cat, **args, **columns
        )
    return estimate_training(group["model"], group["hardware"], int(group["devices"]), catalog=cat, **args, **columns)


def stream(
    grid: Grid,
    *,
    workers: int = 0,
    client: Any = None,
    catalog: str | Path | None = None,
    progress: bool | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> Iterator[Any]:
    """The grid's rows as DataFrames of at most chunk_rows rows, in grid order, evaluated in process,
    on `workers` local processes, or on a Dask `client`; at most a few chunks are held at once.
    Closing the iterator (or an interrupt) stops the worker processes and cancels the Dask tasks."""
    cat_dir = str(catalog) if catalog is not None else None
    tasks = grid.tasks(chunk_rows, cat_dir)
    client = dask_client(client)
    if client is not None:
        chunks = _run_dask(client, tasks)
    elif workers and workers > 1:
        chunks = _run_processes(workers, tasks)
    else:
        chunks = (evaluate_chunk(*task) for task in tasks)
    bar = _progress(grid.task_count(chunk_rows), progress)
    try:
        for chunk in chunks:
            bar.advance()
            yield chunk
    finally:
        bar.close()
        chunks.close()


def sweep_chunks(
    kind: str = "inference",
    *,
    workers: int = 0,
    client: Any = None,
    catalog: str | Path | None = None,
    progress: bool | None = None,
    chunk_rows: int = CHUNK_ROWS,
    **knobs: Any,
) -> Iterator[Any]:
    """Like sweep(), for grids of any size: DataFrames of at most chunk_rows rows, in grid order."""
    return stream(
        plan_grid(kind, knobs),
        workers=workers,
        client=client,
        catalog=catalog,
        progress=progress,
        chunk_rows=chunk_rows,
    )


def sweep(
    kind: str = "inference",
    *,
    workers: int = 0,
    client: Any = None,
    catalog: str | Path | None = None,
    progress: bool | None = None,
    max_rows: int | None = BUFFERED_ROW_LIMIT,
    **knobs: Any,
) -> Any:
    """Evaluate the Cartesian product of the knob lists; returns a pandas DataFrame.

    workers=N runs chunks on N local processes; client= (a dask.distributed Client) runs them on a
    Dask cluster. progress: a progress bar on stderr (default: when the sweep takes more than a moment
    and stderr is a terminal). The frame is held in memory, so a grid of more than max_rows rows is
    refused before any work (max_rows=None lifts it); sweep_chunks() streams a grid of any size."""
    import pandas as pd

    grid = plan_grid(kind, knobs)
    if max_rows is not None and grid.rows > max_rows:
        raise InvalidSpecError(
            f"a sweep of {grid.rows:,} rows is more than max_rows={max_rows:,} held in memory "
            "(sweep_chunks() streams it in chunks; the CLI streams it to a .csv file)"
        )
    chunks = stream(grid, workers=workers, client=client, catalog=catalog, progress=progress)
    return pd.concat(list(chunks), ignore_index=True).infer_objects()  # text columns with failed rows' NaN


def row_bytes(grid: Grid, catalog: str | Path | None = None) -> int:
    """Memory one row takes in a DataFrame (strings included), measured on the grid's first row."""
    first = next(grid.iter_groups())
    cat_dir = str(catalog) if catalog is not None else None
    frame = evaluate_chunk(grid.kind, first, grid.arrays, 0, 1, cat_dir, grid.columns())
    return max(int(frame.memory_usage(index=False, deep=True).sum()), 8 * len(frame.columns))


def size_line(grid: Grid, bytes_per_row: int, streamed: bool) -> str:
    """What a sweep will produce, said before the work: rows, and memory as one table (or per chunk)."""
    from planner.formatting import human_value

    line = (
        f"sweep: {grid.rows:,} rows ({grid.groups:,} configurations x {grid.rows_per_group:,} workloads), "
        f"about {human_value('table_bytes', grid.rows * bytes_per_row)} as one table"
    )
    if streamed:
        chunk = min(grid.rows, CHUNK_ROWS)
        line += f"; streamed in chunks of {chunk:,} rows (about {human_value('chunk_bytes', chunk * bytes_per_row)})"
    return line


def check_buffered(grid: Grid, what: str) -> None:
    """Output that holds the whole sweep in memory (.xlsx, .json, a table) is refused past
    BUFFERED_ROW_LIMIT rows, before any work; CSV streams and has no limit."""
    if grid.rows > BUFFERED_ROW_LIMIT:
        raise InvalidSpecError(
            f"a sweep of {grid.rows:,} rows is too large for {what} (limit {BUFFERED_ROW_LIMIT:,} rows, held "
            "in memory): write CSV (--out FILE.csv or --format csv), which streams any number of rows"
        )


@dataclass
class Tally:
    """Rows seen and rows the engine rejected, counted as chunks stream past."""

    rows: int = 0
    failed: int = 0
    first_error: str = ""

    def count(self, chunks: Iterable[Any]) -> Iterator[Any]:
        for chunk in chunks:
            failed = chunk["error"] != ""
            self.rows += len(chunk)
            self.failed += int(failed.sum())
            if not self.first_error and failed.any():
                self.first_error = str(chunk["error"][failed].iloc[0])
            yield chunk

    def check(self) -> None:
        """A sweep in which every row failed is bad input, not a result (exit 2, and no file)."""
        if self.rows and self.failed == self.rows:
            raise InvalidSpecError(f"every one of the {self.rows:,} rows failed; the first: {self.first_error}")


def write_csv(chunks: Iterable[Any], handle: Any) -> None:
    """Chunks as one CSV (the header once), appended as they come."""
    for i, chunk in enumerate(chunks):
        chunk.to_csv(handle, header=i == 0, index=False)


def write_sweep(chunks: Iterable[Any], path: str | Path, force: bool = False) -> Tally:
    """A sweep to a file, atomically: .csv streams chunk by chunk into a temporary file renamed at
    the end; .xlsx and .json are built in memory (check_buffered first). An interrupt or an error
    leaves no file."""
    import pandas as pd

    from planner.export import write_frame
    from planner.files import atomic_file

    tally = Tally()
    counted = tally.count(chunks)
    if Path(path).suffix.lower() == ".csv":
        with atomic_file(path, force, "w") as f:
            write_csv(counted, f)
            tally.check()
        return tally
    frame = pd.concat(list(counted), ignore_index=True).infer_objects()
    tally.check()
    write_frame(frame, path, force)
    return tally


def _progress(total: int, enabled: bool | None) -> Any:
    """A rich progress bar that only appears after half a second (quick sweeps stay quiet)."""
    import sys

    class Bar:
        def __init__(self) -> None:
            self.done, self.start = 0, time.perf_counter()
            self.bar: Any = None
            self.task: Any = None

        def advance(self) -> None:
            self.done += 1
            show = enabled if enabled is not None else sys.stderr.isatty()
            if self.bar is None and show and time.perf_counter() - self.start > 0.5 and self.done < total:
                from rich.console import Console
                from rich.progress import Progress

                self.bar = Progress(console=Console(stderr=True), transient=True)
                self.bar.start()
                self.task = self.bar.add_task("sweep", total=total, completed=self.done)
            if self.bar is not None:
                self.bar.update(self.task, completed=self.done)

        def close(self) -> None:
            if self.bar is not None:
                self.bar.stop()

    return Bar()


def _ignore_sigint() -> None:
    """Worker processes leave Ctrl-C (sent to the whole process group) to the parent, which stops them."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _in_order(
    tasks: Iterable[tuple[Any, ...]],
    submit: Callable[[tuple[Any, ...]], Any],
    result_of: Callable[[Any], Any],
    window: int,
    pending: deque[Any],
) -> Iterator[Any]:
    """Results in task order with at most `window` tasks in flight (memory stays bounded while the
    workers keep busy); `pending` holds the tasks submitted and not yet collected."""
    for task in tasks:
        pending.append(submit(task))
        if len(pending) >= window:
            yield result_of(pending.popleft())
    while pending:
        yield result_of(pending.popleft())


def _run_processes(workers: int, tasks: Iterable[tuple[Any, ...]]) -> Generator[Any, None, None]:
    import multiprocessing

    pool = multiprocessing.get_context().Pool(workers, initializer=_ignore_sigint)
    try:
        yield from _in_order(
            tasks, lambda t: pool.apply_async(evaluate_chunk, t), lambda r: r.get(), 2 * workers, deque()
        )
        pool.close()
    finally:
        pool.terminate()  # after close(): the workers have finished; else (an interrupt, an error) stop them now
        pool.join()


def dask_client(client: Any) -> Any:
    """A dask.distributed Client: the one given, or one connected to a scheduler address (None: no
    Dask). Without dask installed, or with something else, a one-line error."""
    if client is None or hasattr(client, "submit"):
        return client
    if not isinstance(client, str):
        raise InvalidSpecError(f"client= takes a dask.distributed Client or a scheduler address (got {client!r})")
    try:
        from distributed import Client
    except ImportError:
        raise PlannerError("Dask sweeps need dask and distributed: pip install 'planner[dask]'") from None
    try:
        return Client(client, timeout="10s")
    except OSError as e:
        raise PlannerError(f"cannot reach the Dask scheduler at {client} ({e})") from None


def _run_dask(client: Any, tasks: Iterable[tuple[Any, ...]]) -> Generator[Any, None, None]:
    window = 2 * max(1, len(client.scheduler_info().get("workers", {})))
    pending: deque[Any] = deque()
    try:
        yield from _in_order(
            tasks, lambda t: client.submit(evaluate_chunk, *t, pure=False), lambda f: f.result(), window, pending
        )
    finally:
        if pending:  # interrupted or failed: the tasks still queued or running on the cluster
            client.cancel(list(pending))


def load_grid(path: str | Path) -> tuple[str, dict[str, Any]]:
    """A sweep grid from YAML: `kind:` (inference or training) and one list (or value) per knob."""
    from hardware_db.loader import read_yaml

    data = read_yaml(Path(path))
    kind = data.pop("kind", "inference")
    if not data:
        raise InvalidSpecError(f"{path}: the grid has no knobs")
    return str(kind), data
