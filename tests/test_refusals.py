"""Inputs that cannot be computed are refused with the option and the allowed range (issue 11)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hardware_db.errors import InvalidSpecError
from planner.catalog import load_catalog, resolve_model
from planner.kernels import estimate_collective, estimate_gemm


def test_a_memory_or_storage_part_is_not_a_compute_device() -> None:
    with pytest.raises(InvalidSpecError, match="'nvme-gen4' is a ssd, not a compute device"):
        estimate_gemm("nvme-gen4", 10, 10, 10)


def test_a_collective_needs_two_devices() -> None:
    with pytest.raises(InvalidSpecError, match="--devices must be >= 2 for a collective"):
        estimate_collective("h100-sxm", 1, "all-reduce", 1e9)


def test_a_hugging_face_config_with_zero_heads_is_refused(tmp_path: Path) -> None:
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 4096,
        "num_attention_heads": 0,
        "num_hidden_layers": 32,
        "intermediate_size": 14336,
        "vocab_size": 128256,
        "max_position_embeddings": 8192,
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    with pytest.raises(InvalidSpecError, match="num_attention_heads must be a whole number >= 1"):
        resolve_model(str(path), load_catalog())


def test_an_unwritable_output_is_one_line(tmp_path: Path) -> None:
    from hardware_db.errors import PlannerError
    from planner.files import write_atomic

    with pytest.raises(PlannerError, match=r"cannot write '/proc/x\.json'"):
        write_atomic("/proc/x.json", "{}")


def test_plan_lengths_and_input_len_conflict(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from cli import main

    samples = tmp_path / "lengths.csv"
    samples.write_text("input_len,output_len\n100,20\n300,40\n")
    args = ["plan", "inference", "-m", "llama3.1-8b", "-H", "h100-sxm", "--rate", "5", "--ttft", "1", "--tpot", "0.05"]
    with pytest.raises(SystemExit) as e:
        main([*args, "--lengths", str(samples), "--input-len", "512"])
    assert e.value.code == 2 and "not both" in capsys.readouterr().err


def test_a_sweep_client_must_be_a_dask_client_or_address() -> None:
    from planner.sweep import dask_client

    assert dask_client(None) is None
    with pytest.raises(InvalidSpecError, match=r"client= takes a dask\.distributed Client"):
        dask_client(42)


def test_a_sweep_client_address_without_dask_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from hardware_db.errors import PlannerError
    from planner.sweep import dask_client

    monkeypatch.setitem(sys.modules, "distributed", None)  # as if dask were not installed
    with pytest.raises(PlannerError, match="need dask and distributed"):
        dask_client("tcp://127.0.0.1:8786")


@pytest.mark.parametrize("budget", [-5.0, float("nan"), float("inf"), 0.0])
def test_a_training_token_budget_must_be_positive_and_finite(budget: float) -> None:
    """Issue 11: --token-budget -5 printed a negative training time and $-0; nan printed nan."""
    from solvers.training_plan import plan_training

    with pytest.raises(InvalidSpecError, match="--token-budget must be a finite number of tokens > 0"):
        plan_training("llama3.1-8b", "h100-sxm", 8, 64, 2048, token_budget=budget)
