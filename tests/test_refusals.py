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
