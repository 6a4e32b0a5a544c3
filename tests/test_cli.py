"""The CLI as a user meets it: outputs, formats, and one clear line (exit 2) for bad input."""

from __future__ import annotations

import csv
import html
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from cli import main
from planner.training import estimate_training

FIXTURES = Path(__file__).parent / "fixtures"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_hardware_show_json_is_si_and_has_ridge_points(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "hardware", "show", "h100-sxm", "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data["compute"]["peak_dense"]["bf16"] == pytest.approx(989.4e12, rel=0.01)
    hbm = next(t for t in data["memory"] if t["tier"] == "hbm")
    assert hbm["bandwidth_bytes_per_s"] == pytest.approx(3.35e12)
    ridge = data["derived"]["ridge_point_bf16_flops_per_byte"]
    assert ridge == pytest.approx(989.4e12 / 3.35e12, rel=0.01)


def test_hardware_show_table_has_human_units(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "hardware", "show", "h100-sxm")
    assert code == 0
    assert "3.35 TB/s" in out and "TFLOP/s" in out and "700 W" in out


def test_hardware_list_csv(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "hardware", "list", "--kind", "tpu", "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {r["id"] for r in rows} >= {"tpu-v4", "tpu-v5e", "tpu-v5p", "tpu-v6e"}
    assert all(r["kind"] == "tpu" for r in rows)


def test_systems_and_links_lists(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "hardware", "systems", "--format", "json")
    assert code == 0 and any(s["id"] == "gb200-nvl72" and s["devices"] == 72 for s in json.loads(out))
    code, out, _ = run(capsys, "hardware", "links", "--format", "json")
    assert code == 0 and any(lk["id"] == "nvlink4" for lk in json.loads(out))
    code, out, _ = run(capsys, "hardware", "show", "dgx-h100", "--format", "json")
    assert code == 0 and json.loads(out)["devices"] == 8


def test_models_show_derived(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "models", "show", "llama3.1-70b", "--format", "json")
    assert code == 0
    d = json.loads(out)["derived"]
    assert d["params_total"] == pytest.approx(70.6e9, rel=0.01)
    assert d["kv_bytes_per_token"] == 327_680


def test_models_show_config_json_path(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "models", "show", str(FIXTURES / "hf" / "llama.json"), "--format", "json")
    assert code == 0
    assert json.loads(out)["derived"]["params_total"] == pytest.approx(8.03e9, rel=0.01)


def test_models_list_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "models", "list")
    assert code == 0 and "deepseek-v3" in out and "mla" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("hardware", "show", "h100"), "error: unknown hardware 'h100' (did you mean: h100-sxm, h100-pcie, h100-nvl?)"),
        (("models", "show", "llama3-70b"), "error: unknown model 'llama3-70b' (did you mean:"),
        (("models", "show", "missing/config.json"), "error: model file 'missing/config.json' does not exist"),
        (("models", "show", "llama3.1-8b", "--kv-precision", "fp12"), "error: unknown precision 'fp12' (allowed:"),
        (("hardware", "list", "--kind", "fpga"), "error: unknown kind 'fpga' (allowed: gpu, npu"),
        (("hardware", "list", "--format", "xml"), "error: Invalid value for '--format'"),
        (
            ("hardware", "list", "--catalog", "/nonexistent/dir"),
            "error: catalog folder '/nonexistent/dir' does not exist",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    code, out, err = run(capsys, *args)
    assert code == 2
    assert err.startswith(message), err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and out == ""


def test_malformed_user_yaml_exits_2_naming_file_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "mine.yaml").write_text(
        "devices:\n  - id: acme\n    name: A\n    vendor: a\n    kind: gpu\n"
        "    family: x\n    launch_year: 1999\n    memory: []\n"
    )
    code, _, err = run(capsys, "hardware", "list", "--catalog", str(tmp_path))
    assert code == 2
    assert str(tmp_path / "mine.yaml") in err and "launch_year" in err and "greater than or equal to 2010" in err


def test_user_override_prints_a_notice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "mine.yaml").write_text(
        "models:\n  - id: llama3.1-8b\n    name: my llama\n    family: llama\n    source: my own config file\n"
        "    layers: 2\n    hidden_size: 64\n    vocab_size: 100\n    max_seq_len: 128\n"
        "    attention: {kind: gqa, heads: 4, kv_heads: 2, head_dim: 16}\n"
        "    ffn: {size: 128, activation: silu}\n"
    )
    code, out, err = run(capsys, "models", "show", "llama3.1-8b", "--catalog", str(tmp_path), "--format", "json")
    assert code == 0 and json.loads(out)["layers"] == 2
    assert "overrides the built-in entry" in err


def test_help_does_not_import_heavy_libraries() -> None:
    probe = (
        "import sys\nfrom cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('plotly', 'pandas', 'pulp', 'scipy', 'networkx') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out
    assert "hardware" in out and "models" in out


def test_console_script_is_installed() -> None:
    exe = Path(sys.executable).parent / "planner"
    result = subprocess.run([str(exe), "hardware", "show", "nope-gpu"], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.startswith("error: unknown hardware 'nope-gpu'")


def test_estimate_inference_json_has_contract_keys(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "estimate",
        "inference",
        "--model",
        "llama3.1-70b",
        "--hardware",
        "h100-sxm",
        "--devices",
        "8",
        "--tp",
        "8",
        "--concurrency",
        "32",
        "--format",
        "json",
    )
    assert code == 0
    d = json.loads(out)
    for key in (
        "ttft_s",
        "tpot_s",
        "e2e_latency_s",
        "throughput_tokens_per_s",
        "max_batch",
        "memory_per_device_bytes",
        "fits",
        "bound",
        "ops",
    ):
        assert key in d
    assert d["ops"] and {"phase", "op", "op_class", "time_s", "bound"} <= set(d["ops"][0])


def test_estimate_training_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "estimate", "training", "-m", "llama3.1-8b", "-H", "h100-sxm", "--devices", "8", "--global-batch", "64"
    )
    assert code == 0 and "step_time_s" in out and "mfu" in out and "pp_bubble_s" in out


def test_estimate_op_and_collective(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "estimate",
        "op",
        "-H",
        "h100-sxm",
        "--kind",
        "gemm",
        "--m",
        "8192",
        "--n",
        "8192",
        "--k",
        "8192",
        "--format",
        "json",
    )
    assert code == 0 and json.loads(out)["bound"] == "compute"
    moe = ("estimate", "op", "-H", "b200", "--kind", "moe", "--model", "deepseek-r1", "--ep", "8", "--precision", "fp4")
    code, out, _ = run(capsys, *moe, "--tokens", "8", "--format", "json")
    small = json.loads(out)
    code, out, _ = run(capsys, *moe, "--tokens", "16384", "--format", "json")
    large = json.loads(out)
    assert code == 0 and small["kind"] == "moe-layer" and small["bound"] == "memory"
    assert large["time_s"] > small["time_s"] and large["achieved_flops_per_s"] > 100 * small["achieved_flops_per_s"]
    code, out, _ = run(capsys, *moe, "--tokens", "16384", "--matmul-precision", "bf16", "--format", "json")
    assert code == 0 and json.loads(out)["precision"] == "bf16" and json.loads(out)["time_s"] > large["time_s"]
    code, out, _ = run(
        capsys,
        "estimate",
        "collective",
        "-H",
        "h100-sxm",
        "--devices",
        "8",
        "--op",
        "all-reduce",
        "--bytes",
        "1GiB",
        "--format",
        "json",
    )
    assert code == 0 and json.loads(out)["bytes"] == 2**30


def test_validate_prints_summary(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "validate", "--category", "collective")
    assert code == 0 and "error per category" in out and "coll-h200-allreduce-4node-4gib" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("estimate", "collective", "-H", "h100-sxm", "--devices", "8", "--op", "all-reduce", "--bytes", "1 parsec"),
            "error: --bytes: expected a quantity like '80 GB'",
        ),
        (
            ("estimate", "collective", "-H", "h100-sxm", "--devices", "8", "--op", "allreduce"),
            "error: unknown collective 'allreduce' (allowed: all-reduce",
        ),
        (
            ("estimate", "inference", "-m", "llama3.1-70b", "-H", "h100-sxm", "--devices", "6", "--tp", "4"),
            "error: --devices (6) must equal tp x pp x dp",
        ),
        (
            ("estimate", "training", "-m", "llama3.1-8b", "-H", "h100-sxm", "--devices", "8", "--recompute", "some"),
            "error: unknown recompute 'some' (allowed: none, selective, full)",
        ),
        (("estimate", "op", "-H", "h100-sxm", "--kind", "conv"), "error: unknown --kind 'conv'"),
        (("estimate", "op", "-H", "h100-sxm", "--kind", "moe"), "error: --kind moe needs --model"),
        (
            ("estimate", "op", "-H", "b200", "--kind", "moe", "--model", "deepseek-r1", "--ep", "7"),
            "error: ep=7 must divide deepseek-r1's 256 experts",
        ),
        (("validate", "--category", "nope"), "error: no validation rows in category 'nope'"),
    ],
)
def test_estimate_bad_input_exits_2(capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str) -> None:
    code, _, err = run(capsys, *args)
    assert code == 2 and err.startswith(message), err
    assert len(err.strip().splitlines()) == 1


def test_out_writes_report_and_data_never_overwrites(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ("estimate", "inference", "-m", "llama3.1-8b", "-H", "h100-sxm", "--concurrency", "16")
    html = tmp_path / "r.html"
    code, _, err = run(capsys, *base, "--out", str(html))
    assert code == 0 and html.read_text().startswith("<!DOCTYPE html>") and "wrote" in err
    assert 'src="http' not in html.read_text()  # plotly.js is embedded: the file works offline
    before = html.stat().st_mtime_ns
    code, _, err = run(capsys, *base, "--out", str(html))
    assert code == 2 and err.startswith(f"error: refusing to overwrite '{html}'") and html.stat().st_mtime_ns == before
    code, _, _ = run(capsys, *base, "--out", str(html), "--force")
    assert code == 0
    for suffix in (".csv", ".json", ".xlsx"):
        code, _, _ = run(capsys, *base, "--out", str(tmp_path / f"r{suffix}"))
        assert code == 0 and (tmp_path / f"r{suffix}").stat().st_size > 0
    assert next(csv.DictReader(io.StringIO((tmp_path / "r.csv").read_text())))["model"] == "llama3.1-8b"
    code, _, err = run(capsys, *base, "--out", str(tmp_path / "r.txt"))
    assert code == 2 and "use one of .csv, .xlsx, .json" in err
    code, _, err = run(capsys, *base, "--out", str(tmp_path / "nope" / "r.csv"))
    assert code == 2 and "does not exist" in err
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary files behind


def test_excel_headers_carry_units(tmp_path: Path) -> None:
    import openpyxl

    import planner
    from planner.export import write_frame

    r = planner.estimate_training("llama3.1-8b", "h100-sxm", 8, global_batch=64)
    write_frame(r.to_frame(), tmp_path / "t.xlsx")
    headers = [c.value for c in next(openpyxl.load_workbook(tmp_path / "t.xlsx").active.iter_rows(max_row=1))]
    assert "step_time_s [s]" in headers and "memory_per_device_bytes [bytes]" in headers and "model" in headers


def test_plan_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "plan",
        "training",
        "-m",
        "llama3.1-8b",
        "-H",
        "h100-sxm",
        "--devices",
        "16",
        "--global-batch",
        "64",
        "--top",
        "3",
        "--format",
        "json",
    )
    assert code == 0
    d = json.loads(out)
    assert len(d["plans"]) == 3 and d["evaluated"] > 100 and d["rejected"]
    code, out, _ = run(
        capsys,
        "plan",
        "inference",
        "-m",
        "llama3.1-8b",
        "-H",
        "h100-sxm",
        "-H",
        "mi300x",
        "--rate",
        "5",
        "--ttft",
        "0.5",
        "--tpot",
        "0.05",
        "--out",
        str(tmp_path / "p.html"),
    )
    assert code == 0 and "best plans" in out and (tmp_path / "p.html").exists()
    samples = tmp_path / "lengths.csv"
    samples.write_text("input_len,output_len\n512,128\n2048,512\n")
    code, out, _ = run(
        capsys,
        "plan",
        "inference",
        "-m",
        "llama3.1-8b",
        "-H",
        "h100-sxm",
        "--rate",
        "5",
        "--ttft",
        "1",
        "--tpot",
        "0.05",
        "--lengths",
        str(samples),
        "--percentile",
        "0.9",
        "--format",
        "csv",
    )
    assert code == 0 and out.startswith("rank,hardware")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("plan", "training", "-m", "llama3.1-8b", "-H", "h100-sxm", "--devices", "8", "--objective", "speed"),
            "error: unknown objective 'speed'",
        ),
        (("plan", "training", "-m", "llama3.1-405b", "-H", "l4", "--devices", "2"), "error: no plan for llama3.1-405b"),
        (
            (
                "plan",
                "inference",
                "-m",
                "llama3.1-8b",
                "-H",
                "h100-sxm",
                "--rate",
                "5",
                "--ttft",
                "0.5",
                "--tpot",
                "0.05",
                "--mode",
                "split",
            ),
            "error: unknown --mode 'split'",
        ),
        (
            (
                "plan",
                "inference",
                "-m",
                "llama3.1-8b",
                "-H",
                "h100-sxm",
                "--rate",
                "5",
                "--ttft",
                "0.5",
                "--tpot",
                "0.05",
                "--lengths",
                "/nonexistent.csv",
            ),
            "error: /nonexistent.csv: expected a CSV",
        ),
    ],
)
def test_plan_bad_input_exits_2(capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str) -> None:
    code, _, err = run(capsys, *args)
    assert code == 2 and err.startswith(message), err
    assert len(err.strip().splitlines()) == 1


def test_unknown_attention_kernel_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "estimate", "op", "-H", "mi300x", "--kind", "attention", "--attention-kernel", "fa3")
    assert code == 2
    assert err.count("\n") == 1 and "allowed: flash-attention-2, unfused" in err
    code, out, _ = run(capsys, "hardware", "show", "b200", "--format", "json")
    assert json.loads(out)["derived"]["attention_kernels"] == "flash-attention-4, flash-attention-2, unfused"


# Issue 11, point 5: plans that answer the question asked.
SERVE = ("plan", "inference", "-m", "llama3.1-70b", "-H", "h100-sxm", "-H", "mi300x", "--rate", "10")


def test_plan_inference_weight_precision_option(capsys: pytest.CaptureFixture[str]) -> None:
    def searched(*extra: str) -> tuple[set[str], int]:
        code, out, err = run(capsys, *SERVE, "--ttft", "0.5", "--tpot", "0.05", "--top", "40", "-f", "json", *extra)
        assert code == 0, err
        d = json.loads(out)
        return {p["weight_precision"] for p in d["plans"]}, d["counts"]["options_evaluated"]

    both, evaluated_both = searched()
    assert both == {"bf16", "fp8"}  # the default searches both, as the help says
    assert searched("--weight-precision", "bf16") == ({"bf16"}, evaluated_both // 2)
    assert searched("--weight-precision", "fp8,bf16") == (both, evaluated_both)
    assert searched("--weight-precision", "fp8", "--weight-precision", "bf16") == (both, evaluated_both)
    code, _, err = run(capsys, *SERVE, "--ttft", "0.5", "--tpot", "0.05", "--weight-precision", "bf16,fp12")
    assert code == 2 and err.startswith("error: unknown precision 'fp12' (allowed:") and err.count("\n") == 1


def test_plan_inference_report_states_the_question_and_the_rejections(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "plans.html"
    code, _, err = run(capsys, *SERVE, "--ttft", "0.5", "--tpot", "0.05", "--percentile", "0.9", "--out", str(path))
    assert code == 0, err
    page = path.read_text()
    question = page[page.index("The question") : page.index("Chosen plan")]  # at the top, before the answer
    for fact in (
        "10 requests/s",
        "&lt;= 500 ms (p90)",
        "&lt;= 50 ms (mean time per output token)",
        "1024 tokens mean",
        "256 tokens mean",
    ):
        assert fact in question, fact
    rejections = page[page.index("Rejections and the constraint that bound each") :]
    assert "h100-sxm bf16 tp=1 aggregated" in rejections and "even at concurrency 1" in rejections


def test_plan_inference_pareto_has_log_cost_axis_units_and_hardware_colours() -> None:
    from planner.report import serving_pareto_figure
    from solvers import Slo, Workload, plan_inference

    plans = plan_inference("llama3.1-70b", ["h100-sxm", "mi300x"], Workload(10, 1024, 256, 1024, 256), Slo(0.5, 0.05))
    fig = serving_pareto_figure(list(plans.candidates), plans.to_dict()["plans"][0])
    assert fig.layout.xaxis.type == "log" and "$/h" in fig.layout.xaxis.title.text
    assert "ms" in fig.layout.yaxis.title.text
    assert {b.args[0]["xaxis.type"] for b in fig.layout.updatemenus[0].buttons} == {"log", "linear"}
    points = [t for t in fig.data if t.name != "chosen"]
    colour = {t.name.split(" ")[0]: t.marker.color for t in points}
    assert set(colour) == {"h100-sxm", "mi300x"} and len(set(colour.values())) == 2
    assert all(colour[t.name.split(" ")[0]] == t.marker.color for t in points)  # one colour per hardware type
    assert all("/h" in t.hovertemplate and "ms" in t.hovertemplate for t in fig.data)


def test_plan_training_counts_add_up_and_say_what_they_count(capsys: pytest.CaptureFixture[str]) -> None:
    args = ("plan", "training", "-m", "llama3.1-8b", "-H", "h100-sxm", "--devices", "16", "--global-batch", "64")
    code, out, _ = run(capsys, *args, "-f", "json")
    assert code == 0
    d = json.loads(out)
    c = d["counts"]
    assert c["candidates_evaluated"] == d["evaluated"]
    assert c["candidates_evaluated"] == c["candidates_fitting"] + c["rejected_after_evaluation"]
    assert c["candidates_searched"] == c["candidates_fitting"] + sum(d["rejected"].values())
    assert c["rejected_after_evaluation"] > 0 and c["rejected_before_evaluation"] > 0
    code, out, _ = run(capsys, *args)
    flat = " ".join(out.split())
    assert f"{c['candidates_searched']:,} candidates searched: {c['candidates_fitting']:,} fit" in flat
    assert f"({c['candidates_evaluated']:,} evaluated in all)" in flat
    assert "after evaluation" in flat and "before evaluation" in flat
    assert "candidates evaluated, objective" not in flat  # the old title set one count against others


@pytest.mark.parametrize(
    ("devices", "pp", "global_batch", "heading"),
    [
        ("64", "4", "512", "One step's timeline (all 256 micro-batches)"),
        ("1024", "16", "8192", "One step's timeline: the first 128 of 1024 micro-batches ("),
    ],
)
def test_training_report_timeline_draws_the_step_or_labels_the_cut(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], devices: str, pp: str, global_batch: str, heading: str
) -> None:
    path = tmp_path / "training.html"
    args = ("estimate", "training", "-m", "llama3.1-70b", "-H", "h100-sxm", "--devices", devices, "--tp", "8")
    code, _, err = run(capsys, *args, "--pp", pp, "--global-batch", global_batch, "--out", str(path))
    assert code == 0, err
    page = html.unescape(path.read_text())
    assert heading in page
    if "first" in heading:
        step_s = estimate_training("llama3.1-70b", "h100-sxm", 1024, tp=8, pp=16, global_batch=8192).step_time_s
        assert f"of the {step_s:.3g} s step" in page and "896 more micro-batches not drawn" in page


def _cpu_s(pid: int) -> float:
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def test_ctrl_c_during_plan_training_exits_130_and_writes_nothing(tmp_path: Path) -> None:
    """Issue 11, point 4: typer turned the KeyboardInterrupt into a silent exit 0."""
    import signal
    import time

    out = tmp_path / "plans.html"
    args = ["plan", "training", "-m", "deepseek-v3", "-H", "h100-sxm", "--devices", "16384", "--global-batch", "2048"]
    exe = Path(sys.executable).parent / "planner"
    proc = subprocess.Popen(
        [str(exe), *args, "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while _cpu_s(proc.pid) < 2.0 and time.monotonic() < deadline:  # past start-up, inside the search (~7 s)
        time.sleep(0.05)
    assert proc.poll() is None, "the plan ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    stdout, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err == "interrupted\n" and stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_that_click_turns_into_abort_still_exits_130(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """A Ctrl-C outside the command (while click parses or handles) reaches main() as Abort."""
    import click

    import cli

    def interrupted(*args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as e:
            raise click.exceptions.Abort() from e

    monkeypatch.setattr(cli, "app", interrupted)
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 130 and capsys.readouterr().err == "interrupted\n"
