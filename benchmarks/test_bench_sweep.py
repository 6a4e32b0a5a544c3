"""Peak memory of large sweeps streamed to CSV (issue 11, point 4): it stays flat however large the
grid, where holding the rows as one table would take about 1 KB each (~1 GB per million rows).

Each sweep runs as `planner sweep --grid ... --out rows.csv` under a fresh Python parent whose only
child it is, so RUSAGE_CHILDREN's ru_maxrss is the sweep's own peak RSS. The 10^6-row sweep
(~40 s on 2 cores) always runs; the 10^7-row one (~6 min) runs under `make bench` and is skipped by
`make bench-fast` (which sets --benchmark-max-time below one second)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

# As one table, a million rows take ~1 GB: a streamed sweep must stay far below that at any size.
PEAK_RSS_LIMIT_BYTES = 600e6
HARDWARE = ("h100-sxm", "h200-sxm", "b200", "mi300x", "a100-sxm-80gb", "h100-pcie", "h100-nvl", "gh200", "mi325x")
HARDWARE += ("l40s",)
PROBE = (
    "import resource, subprocess, sys\n"
    "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
    "print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)\n"  # Linux: KiB
)


def _grid(hardware: int, output_lens: int) -> dict[str, object]:
    """hardware x 100 batches x 100 prompt lengths x output_lens output lengths rows."""
    return {
        "kind": "inference",
        "model": "llama3.1-8b",
        "hardware": list(HARDWARE[:hardware]),
        "devices": 1,
        "batch": list(range(1, 101)),
        "input_len": list(range(128, 128 + 100 * 64, 64)),
        "output_len": list(range(16, 16 + output_lens * 16, 16)),
    }


def _peak_rss_bytes(grid_path: Path, out: Path) -> int:
    exe = str(Path(sys.executable).parent / "planner")
    command = [sys.executable, "-c", PROBE, exe, "sweep", "--grid", str(grid_path), "--out", str(out), "--force"]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    rc, peak = (int(x) for x in done.stdout.split())
    assert rc == 0, done.stderr
    return peak


@pytest.mark.parametrize(
    ("rows", "hardware", "output_lens"), [(1_000_000, 2, 50), (10_000_000, 10, 100)], ids=["1e6", "1e7"]
)
def test_streamed_sweep_peak_rss(  # type: ignore[no-untyped-def]
    benchmark, request, tmp_path: Path, rows: int, hardware: int, output_lens: int
) -> None:
    quick = float(request.config.getoption("benchmark_max_time", None) or 1.0) < 1.0
    if rows > 1_000_000 and quick:
        pytest.skip("the 10^7-row sweep takes minutes: `make bench` runs it")
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump(_grid(hardware, output_lens), sort_keys=False))
    out = tmp_path / "rows.csv"
    peak = benchmark.pedantic(_peak_rss_bytes, args=(grid, out), rounds=1, iterations=1)
    with out.open("rb") as f:
        written = sum(1 for _ in f) - 1  # less the header
    out.unlink()  # ~4 GB at 10^7 rows
    benchmark.extra_info.update(rows=written, peak_rss_bytes=peak, peak_rss_bytes_per_row=peak / written)
    assert written == rows
    assert peak < PEAK_RSS_LIMIT_BYTES, f"peak RSS {peak / 1e6:.0f} MB for {rows:,} rows"
