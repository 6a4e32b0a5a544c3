"""Sweeps: grid semantics, the three backends agree, and the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware_db.errors import InvalidSpecError
from planner.sweep import plan_grid, sweep

GRID = dict(
    model=["llama3.1-8b", "qwen3-8b"],
    hardware=["h100-sxm", "mi300x"],
    devices=[2],
    tp=[1, 2, 3],
    concurrency=[1, 16, 64],
    input_len=[512, 2048],
    output_len=[256],
)


def test_grid_is_the_cartesian_product_and_keeps_rejected_rows() -> None:
    frame = sweep("inference", **GRID)
    assert len(frame) == 2 * 2 * 3 * 3 * 2
    bad = frame[frame["tp"] == 3]
    assert (~bad["fits"].astype(bool)).all() and bad["error"].str.contains("must equal tp x pp x dp").all()
    good = frame[frame["tp"] != 3]
    assert (good["error"] == "").all() and (good["tpot_s"] > 0).all()
    one = good[(good.model == "llama3.1-8b") & (good.hardware == "h100-sxm") & (good.tp == 1)]
    assert list(one["concurrency"]) == [1, 1, 16, 16, 64, 64] and list(one["input_len"]) == [512, 2048] * 3


def test_backends_agree() -> None:
    distributed = pytest.importorskip("distributed")
    local = sweep("inference", **GRID)
    procs = sweep("inference", workers=2, **GRID)
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as lc,
        distributed.Client(lc) as client,
    ):
        remote = sweep("inference", client=client, **GRID)
    assert local.equals(procs)
    assert local.equals(remote)


def test_training_sweep_vectorises_the_workload_knobs() -> None:
    frame = sweep(
        "training",
        model="llama3.1-8b",
        hardware="h100-sxm",
        devices=[8],
        tp=[1, 8],
        global_batch=[64, 128],
        seq_len=[2048, 4096],
    )
    assert len(frame) == 8 and (frame["step_time_s"] > 0).all()


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        (dict(model="llama3.1-8b", hardware="h100-sxm", batchsize=[1]), "unknown sweep knob 'batchsize'"),
        (dict(hardware="h100-sxm"), "a sweep needs 'model'"),
        (dict(model="llama3.1-8b", hardware="h100-sxm", tp=[]), "sweep knob 'tp' is an empty list"),
    ],
)
def test_bad_grids(knobs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidSpecError, match=message):
        plan_grid("inference", knobs)


def test_cli_sweep_writes_excel(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cli import main

    grid = tmp_path / "grid.yaml"
    grid.write_text(
        "kind: training\nmodel: llama3.1-8b\nhardware: h100-sxm\ndevices: [8]\ntp: [1, 2]\n"
        "global_batch: [64]\nseq_len: [2048, 4096]\n"
    )
    out = tmp_path / "r.xlsx"
    main(["sweep", "--grid", str(grid), "--out", str(out)])
    assert out.stat().st_size > 0
    grid.write_text("kind: inference\nmodel: llama3.1-8b\nhardware: h100-sxm\nbogus: [1]\n")
    with pytest.raises(SystemExit) as e:
        main(["sweep", "--grid", str(grid)])
    assert e.value.code == 2 and "unknown sweep knob 'bogus'" in capsys.readouterr().err


# Issue 11, point 4: sized up front, streamed in bounded chunks, interruptible.
def _grid_file(tmp_path: Path, **knobs: object) -> Path:
    import yaml

    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(knobs, sort_keys=False))
    return path


# 2 x 100 x 100 x 50 = 1,000,000 rows: long enough (tens of seconds) to be interrupted mid-stream.
BIG = dict(
    kind="inference",
    model="llama3.1-8b",
    hardware=["h100-sxm", "h200-sxm"],
    devices=1,
    batch=list(range(1, 101)),
    input_len=list(range(128, 128 + 100 * 64, 64)),
    output_len=list(range(16, 16 + 50 * 16, 16)),
)


def test_grid_is_sized_before_any_work() -> None:
    grid = plan_grid("inference", {k: v for k, v in BIG.items() if k != "kind"})
    assert (grid.groups, grid.rows_per_group, grid.rows) == (2, 500_000, 1_000_000)
    assert grid.task_count(50_000) == 20
    assert grid.columns()[:3] == ["kind", "model", "hardware"] and grid.columns()[-1] == "error"


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        (
            dict(model="llama3.1-8b", hardware="h100-sxm", batch=[1, 2], concurrency=[1, 2]),
            r"a sweep gives batch \(one static batch\) or concurrency \(serving\), not both",
        ),
        (
            dict(model="llama3.1-8b", hardware="h100-sxm", concurrency=["many"]),
            "sweep knob 'concurrency' takes numbers",
        ),
    ],
)
def test_contradictory_grids_are_rejected_before_any_work(knobs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidSpecError, match=message):
        plan_grid("inference", knobs)
    with pytest.raises(InvalidSpecError, match="a training sweep needs 'devices'"):
        plan_grid("training", dict(model="llama3.1-8b", hardware="h100-sxm"))


def test_cli_contradictory_grid_exits_2_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cli import main

    # The grid: batch and concurrency together, 10^7 combinations.
    grid = _grid_file(
        tmp_path,
        kind="inference",
        model="llama3.1-8b",
        hardware="h100-sxm",
        batch=list(range(1, 1001)),
        concurrency=list(range(1, 10001)),
    )
    out = tmp_path / "r.csv"
    with pytest.raises(SystemExit) as e:
        main(["sweep", "--grid", str(grid), "--out", str(out)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: a sweep gives batch") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == [grid]


def test_cli_every_row_failing_exits_2_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cli import main

    grid = _grid_file(
        tmp_path, kind="inference", model="llama3.1-8b", hardware="h100-sxm", tp=[3, 5], concurrency=[1, 2]
    )
    with pytest.raises(SystemExit) as e:
        main(["sweep", "--grid", str(grid), "--out", str(tmp_path / "r.csv")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "error: every one of the 4 rows failed; the first: attention heads" in err
    assert list(tmp_path.iterdir()) == [grid]


def test_cli_states_rows_and_memory_and_streams_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pandas as pd

    from cli import main

    grid = _grid_file(tmp_path, kind="inference", **GRID)
    out = tmp_path / "r.csv"
    main(["sweep", "--grid", str(grid), "--out", str(out)])
    err = capsys.readouterr().err
    assert "sweep: 72 rows (12 configurations x 6 workloads), about " in err and " as one table; streamed" in err
    assert "wrote" in err and "(72 rows, 24 failed)" in err
    written = pd.read_csv(out, keep_default_na=False)
    assert len(written) == 72 and list(written.columns) == list(sweep("inference", **GRID).columns)


@pytest.mark.parametrize("suffix", [".xlsx", ".json"])
def test_buffered_formats_refuse_grids_past_the_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], suffix: str
) -> None:
    import time

    from cli import main

    knobs = dict(BIG, hardware=["h100-sxm", "h200-sxm", "b200"])  # 1.5 million rows
    started = time.perf_counter()
    with pytest.raises(SystemExit) as e:
        main(["sweep", "--grid", str(_grid_file(tmp_path, **knobs)), "--out", str(tmp_path / f"r{suffix}")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert f"a sweep of 1,500,000 rows is too large for {suffix} output (limit 1,000,000 rows" in err
    assert "write CSV" in err and time.perf_counter() - started < 5  # refused before any work
    with pytest.raises(InvalidSpecError, match="more than max_rows=1,000,000"):
        sweep(**{k: v for k, v in knobs.items() if k != "kind"})


@pytest.mark.parametrize("workers", [0, 2])
def test_chunks_are_bounded_and_in_grid_order(workers: int) -> None:
    import pandas as pd

    from planner.sweep import stream

    whole = sweep("inference", **GRID)
    chunks = list(stream(plan_grid("inference", GRID), workers=workers, chunk_rows=2))
    assert {len(c) for c in chunks} == {2} and len(chunks) == 12 * 3  # 6 workloads per group: 3 chunks of 2
    assert pd.concat(chunks, ignore_index=True).infer_objects().equals(whole)


def test_closing_a_stream_stops_its_worker_processes() -> None:
    import multiprocessing

    from planner.sweep import stream

    chunks = stream(plan_grid("inference", {k: v for k, v in BIG.items() if k != "kind"}), workers=2)
    first = next(chunks)
    assert len(first) == 50_000 and len(multiprocessing.active_children()) == 2
    chunks.close()
    assert multiprocessing.active_children() == []


def test_closing_a_stream_cancels_its_dask_tasks() -> None:
    distributed = pytest.importorskip("distributed")
    from planner.sweep import stream

    with (
        distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as lc,
        distributed.Client(lc) as client,
    ):
        chunks = stream(plan_grid("inference", GRID), client=client, chunk_rows=1)
        next(chunks)
        assert client.futures  # a window of tasks in flight
        chunks.close()
        assert not client.futures


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@pytest.mark.parametrize("workers", ["0", "2"])
def test_ctrl_c_exits_130_leaves_no_file_and_stops_workers(tmp_path: Path, workers: str) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    exe = Path(sys.executable).parent / "planner"
    out = tmp_path / "r.csv"
    grid = _grid_file(tmp_path, **BIG)
    proc = subprocess.Popen(
        [str(exe), "sweep", "--grid", str(grid), "--out", str(out), "--workers", workers],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".r.csv.*.tmp")) and time.monotonic() < deadline:  # streaming has begun
        time.sleep(0.05)
    time.sleep(1.0)
    workers_seen = _children(proc.pid)
    assert proc.poll() is None, "the sweep ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "interrupted" and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.yaml"]  # no r.csv, no temporary file
    assert len(workers_seen) == (2 if workers == "2" else 0)
    for pid in workers_seen:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


_ROW_FIELDS = ("ttft_s", "tpot_s", "throughput_tokens_per_s", "memory_per_device_bytes", "max_concurrency")


@settings(max_examples=8, deadline=None)
@given(
    concurrency=st.lists(st.integers(1, 256), min_size=1, max_size=3, unique=True),
    input_len=st.lists(st.sampled_from([256, 2048, 8192]), min_size=1, max_size=2, unique=True),
    tp=st.lists(st.sampled_from([1, 2]), min_size=1, max_size=2, unique=True),
)
def test_every_sweep_row_equals_its_single_estimate(
    concurrency: list[int], input_len: list[int], tp: list[int]
) -> None:
    """Issue 11: 259 of 300 sampled rows of a 46,080-row sweep had a `fits` flag that disagreed with
    the one-at-a-time estimate. Each row must equal the scalar call, field by field."""
    import numpy as np

    from planner.inference import estimate_inference

    frame = sweep(
        "inference",
        model="qwen3-32b",
        hardware="h100-sxm",
        devices=[2],
        tp=tp,
        concurrency=concurrency,
        input_len=input_len,
        output_len=[256],
    )
    for row in frame.itertuples():
        one = estimate_inference(
            "qwen3-32b", "h100-sxm", 2, tp=row.tp, concurrency=row.concurrency, input_len=row.input_len, output_len=256
        )
        assert bool(row.fits) == bool(one.fits)
        for field in _ROW_FIELDS:
            assert getattr(row, field) == pytest.approx(float(np.ravel(getattr(one, field))[0]), rel=1e-9), field


@settings(max_examples=5, deadline=None)
@given(
    global_batch=st.lists(st.sampled_from([64, 128, 256]), min_size=1, max_size=2, unique=True),
    seq_len=st.lists(st.sampled_from([2048, 8192]), min_size=1, max_size=2, unique=True),
    tp=st.lists(st.sampled_from([1, 8]), min_size=1, max_size=2, unique=True),
)
def test_every_training_sweep_row_equals_its_single_estimate(
    global_batch: list[int], seq_len: list[int], tp: list[int]
) -> None:
    from planner.training import estimate_training

    frame = sweep(
        "training",
        model="llama3.1-8b",
        hardware="h100-sxm",
        devices=[8],
        tp=tp,
        global_batch=global_batch,
        seq_len=seq_len,
    )
    for row in frame.itertuples():
        one = estimate_training(
            "llama3.1-8b", "h100-sxm", 8, tp=row.tp, global_batch=row.global_batch, seq_len=row.seq_len
        )
        assert bool(row.fits) == bool(one.fits) and row.fit_reason == one.fit_reason
        for field in ("step_time_s", "tokens_per_s", "memory_per_device_bytes"):
            assert getattr(row, field) == pytest.approx(float(getattr(one, field)), rel=1e-9), field


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(st.floats(0.0, 5e4, allow_nan=False), min_size=1, max_size=60),
    seed=st.integers(0, 2**16),
)
def test_per_scenario_messages_read_as_their_templates(values: list[float], seed: int) -> None:
    """arrays.messages writes a lone {:.1f} from the tenths' digits (for speed): every scenario's
    text is its first holding case's template formatted with the value rounded to 0.1."""
    from planner.arrays import messages

    rng = np.random.default_rng(seed)
    v = np.array(values)
    cases = [
        (rng.random(v.size) < 0.4, 2.0 * v, "KV cache needs {:.1f} GB"),
        (rng.random(v.size) < 0.6, v, "{:.1f} GB spill past hbm"),
        (rng.random(v.size) < 0.5, v, "other format {:.2f}"),
    ]
    out = messages(v.shape, cases)
    for i in range(v.size):
        want = next((t.format(np.rint(x[i] * 10) / 10) for m, x, t in cases if m[i]), "fits")
        assert out[i] == want
