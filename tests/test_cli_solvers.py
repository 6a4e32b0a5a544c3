"""The second wave's commands as a user runs them: each prints its answer (JSON parses, with the
figures the README quotes), writes its report, and refuses bad input with exit 2 and one line."""

from __future__ import annotations

import json

import pytest

from cli import main


def _json(capsys, args):  # type: ignore[no-untyped-def]
    main([*args, "--format", "json"])
    return json.loads(capsys.readouterr().out)


def test_plan_mix_agent_fleet_and_tco_answer(tmp_path, capsys):  # type: ignore[no-untyped-def]
    mix = _json(
        capsys,
        [
            "plan",
            "mix",
            "-m",
            "llama3.1-8b",
            "-H",
            "l40s",
            "-H",
            "h100-sxm",
            "--rate",
            "20",
            "--ttft",
            "2",
            "--tpot",
            "0.05",
            "--distribution",
            "azure-conversation-2023",
        ],
    )
    assert mix["usd_per_hour"] <= mix["best_single_usd_per_hour"] + 1e-9
    agent = _json(capsys, ["plan", "agent", "voice-agent", "-H", "h100-sxm", "-H", "a100-sxm-80gb"])
    assert agent["usd_per_hour"] > 0 and agent["critical_path"]
    fleet = _json(capsys, ["plan", "fleet", "example"])
    assert fleet["npv_usd"] > 0 and fleet["status"] in ("optimal", "time_limit")
    owned = _json(capsys, ["tco", "inference", "-m", "llama3.1-8b", "-H", "h100-sxm", "--concurrency", "16"])
    rented = _json(
        capsys,
        ["tco", "inference", "-m", "llama3.1-8b", "-H", "h100-sxm", "--concurrency", "16", "--ownership", "on-demand"],
    )
    assert 0 < owned["total_usd_per_hour"] < rented["total_usd_per_hour"]
    run = _json(
        capsys,
        [
            "tco",
            "training",
            "-m",
            "llama3.1-8b",
            "-H",
            "h100-sxm",
            "--devices",
            "8",
            "--global-batch",
            "64",
            "--token-budget",
            "1e10",
        ],
    )
    assert run["usd_per_run"] == pytest.approx(run["total_usd_per_hour"] * run["train_s"] / 3600)
    row = _json(capsys, ["tco", "oversubscribe", "--row-kw", "408", "--server-kw", "10.2"])
    assert (row["servers_provisioned"], row["servers"]) == (40, 50)
    html = tmp_path / "fleet.html"
    main(["plan", "fleet", "example", "--out", str(html)])
    assert "<html" in html.read_text()[:200].lower()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["plan", "mix", "--rate", "10"], "length distribution"),
        (["plan", "agent", "voice-agent", "--sla-s", "0.01"], "shorter than the fastest critical path"),
        (["plan", "fleet", "nope"], "does not exist"),
        (["tco", "inference", "-m", "llama3.1-8b", "-H", "l40s"], "no capex"),
        (["tco", "inference", "-m", "llama3.1-8b", "-H", "h100-sxm", "--pue", "0.5"], "--pue"),
        (["tco", "oversubscribe", "--row-kw", "100", "--server-kw", "0"], "--server-kw"),
        (["estimate", "inference", "-m", "llama3.1-8b", "-H", "h100-sxm", "--power-cap-w", "50"], "idle"),
        (
            ["estimate", "inference", "-m", "llama3.1-8b", "-H", "h100-sxm", "--expert-imbalance", "2"],
            "mixture-of-experts",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, args, message):  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as e:
        main(args)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and message in err, err
