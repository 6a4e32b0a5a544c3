"""Fuzzing the CLI as a careless user would (issue 11): random and adversarial values for every
option of the estimate commands. Every run must end with exit 0 or 2, never a traceback; an error
is one line; a result holds no inf, NaN or negative time, memory, rate or cost."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli import main

# values a user mistypes or a script passes through unchecked
ADVERSARIAL = st.sampled_from(["0", "-1", "-5", "1.5", "nan", "inf", "-inf", "1e30", "abc", "", "99999999999"])
MODELS = st.sampled_from(["llama3.1-8b", "llama3.1-70b", "qwen3-30b-a3b", "mixtral-8x7b", "deepseek-v3", "gpt4"])
HARDWARE = st.sampled_from(["h100-sxm", "a100-sxm-80gb", "mi300x", "b200", "l4", "nvme-gen4", "dgx-h100", "h100"])
PRECISIONS = st.sampled_from(["bf16", "fp8", "fp4", "int4", "fp64", "float8"])


def number(low: int, high: int) -> st.SearchStrategy[str]:
    return st.one_of(st.integers(low, high).map(str), ADVERSARIAL)


def option(name: str, values: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    """The option with a value, or left out."""
    return st.one_of(st.just([]), values.map(lambda v: [name, v]))


def command(head: list[str], *options: st.SearchStrategy[list[str]]) -> st.SearchStrategy[list[str]]:
    return st.tuples(*options).map(lambda parts: head + [x for part in parts for x in part])


INFERENCE = command(
    ["estimate", "inference"],
    MODELS.map(lambda m: ["-m", m]),
    HARDWARE.map(lambda h: ["-H", h]),
    option("--devices", number(1, 16)),
    option("--tp", number(1, 8)),
    option("--ep", number(1, 8)),
    st.one_of(option("--batch", number(1, 512)), option("--concurrency", number(1, 512))),
    option("--input-len", number(1, 200_000)),
    option("--output-len", number(1, 4096)),
    option("--weight-precision", PRECISIONS),
    option("--kv-precision", PRECISIONS),
    option("--engine", st.sampled_from(["vllm", "vllm-v0", "sglang", "trtllm", "tgi"])),
    option("--arrival", st.sampled_from(["closed", "poisson", "burst"])),
    option("--token-budget", number(1, 32768)),
    option("--range-ratio", st.sampled_from(["0.8", "1", "0", "1.5", "nan", "-0.2"])),
    option("--poll-interval", st.sampled_from(["1", "30", "0", "-3"])),
    st.one_of(st.just([]), st.just(["--disaggregated"]), number(1, 8).map(lambda v: ["--prefill-devices", v])),
    option("--speculative", st.sampled_from(["mtp", "eagle", "ngram", "draft:llama3.1-8b", "medusa"])),
    option("--draft-tokens", number(0, 8)),
    option("--acceptance", st.sampled_from(["0.7", "0", "1", "1.5", "-0.1", "nan"])),
)
TRAINING = command(
    ["estimate", "training"],
    MODELS.map(lambda m: ["-m", m]),
    HARDWARE.map(lambda h: ["-H", h]),
    number(1, 512).map(lambda v: ["--devices", v]),
    option("--tp", number(1, 8)),
    option("--pp", number(1, 8)),
    option("--cp", number(1, 8)),
    option("--ep", number(1, 8)),
    option("--zero", number(0, 4)),
    option("--micro-batch", number(1, 8)),
    option("--global-batch", number(1, 2048)),
    option("--seq-len", number(1, 131072)),
    option("--recompute", st.sampled_from(["none", "selective", "full", "some"])),
    option("--virtual-stages", number(1, 8)),
    option("--precision", PRECISIONS),
)
KERNELS = st.one_of(
    command(
        ["estimate", "op"],
        HARDWARE.map(lambda h: ["-H", h]),
        option("--kind", st.sampled_from(["gemm", "attention", "memory", "conv"])),
        option("--m", number(1, 65536)),
        option("--n", number(1, 65536)),
        option("--k", number(1, 65536)),
        option("--seq-len", number(1, 131072)),
        option("--heads", number(1, 128)),
        option("--bytes", st.sampled_from(["1GiB", "0", "-1GiB", "lots", "1e40"])),
        option("--precision", PRECISIONS),
    ),
    command(
        ["estimate", "collective"],
        HARDWARE.map(lambda h: ["-H", h]),
        number(1, 256).map(lambda v: ["--devices", v]),
        option("--op", st.sampled_from(["all-reduce", "all-gather", "all-to-all", "scatter"])),
        option("--bytes", st.sampled_from(["1GiB", "0", "-1GiB", "lots", "1e40", "64MiB"])),
    ),
)

# result fields that are times, sizes, rates or money: never negative, never inf or NaN
_PHYSICAL = ("_s", "_bytes", "_per_s", "_usd", "_w", "_j", "bytes_per_device", "tokens")


def physical_values(data: Any, key: str = "") -> list[tuple[str, float]]:
    if isinstance(data, dict):
        return [kv for k, v in data.items() for kv in physical_values(v, k)]
    if isinstance(data, list):
        return [kv for v in data for kv in physical_values(v, key)]
    if isinstance(data, (int, float)) and not isinstance(data, bool) and key.endswith(_PHYSICAL):
        return [(key, float(data))]
    return []


TRIED: dict[str, int] = {"runs": 0, "ok": 0, "refused": 0}


def check(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    try:
        main([*args, "--format", "json"])
        code = 0
    except SystemExit as e:
        code = int(e.code or 0) if not isinstance(e.code, str) else 1
    out, err = capsys.readouterr()
    TRIED["runs"] += 1
    assert code in (0, 2), (args, code, err[-500:])
    assert "Traceback" not in out + err, args
    if code == 2:
        TRIED["refused"] += 1
        lines = [line for line in err.strip().splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), (args, err)
        return
    TRIED["ok"] += 1
    for key, value in physical_values(json.loads(out)):
        assert math.isfinite(value) and value >= 0, (args, key, value)


_FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_FUZZ
@given(args=INFERENCE)
def test_fuzz_estimate_inference(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    check(capsys, args)


@_FUZZ
@given(args=TRAINING)
def test_fuzz_estimate_training(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    check(capsys, args)


@_FUZZ
@given(args=KERNELS)
def test_fuzz_estimate_kernels(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    check(capsys, args)


# The Python API with the same carelessness: numbers of every kind, strings and None where a number
# belongs. Anything it cannot compute must raise a PlannerError, never a bare Python error.
_API_BAD = st.one_of(
    st.integers(-3, 0),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.sampled_from([None, "8", "abc", True, 2.5]),
)


def api_values(*good: int) -> st.SearchStrategy[Any]:
    """Mostly sensible values (so results get checked too), one draw in four adversarial."""
    sensible = st.sampled_from(good)
    return st.sampled_from((False, False, False, True)).flatmap(lambda bad: _API_BAD if bad else sensible)


API_VALUES = api_values(1, 2, 8, 64, 512, 2048)


def _api_check(call: Any) -> None:
    from hardware_db.errors import PlannerError

    try:
        result = call()
    except PlannerError:
        TRIED["refused"] += 1
        return
    TRIED["ok"] += 1
    for key, value in physical_values(result.to_dict()):
        assert math.isfinite(value) and value >= 0, (key, value)


@settings(max_examples=80, deadline=None)
@given(
    tp=api_values(1, 2, 4, 8),
    batch=API_VALUES,
    concurrency=API_VALUES,
    input_len=API_VALUES,
    output_len=API_VALUES,
    token_budget=API_VALUES,
    num_prompts=API_VALUES,
    draft_tokens=api_values(1, 2, 4),
)
def test_fuzz_api_estimate_inference(**kw: Any) -> None:
    from planner.inference import estimate_inference

    args = {k: v for k, v in kw.items() if v is not None}
    if "batch" in args and "concurrency" in args:
        args.pop("batch")
    if "draft_tokens" in args:
        args.update(speculative="ngram", acceptance=0.5)
    _api_check(lambda: estimate_inference("llama3.1-8b", "h100-sxm", **args))


@settings(max_examples=60, deadline=None)
@given(
    devices=api_values(8, 16, 64),
    tp=api_values(1, 2, 8),
    zero=api_values(0, 1, 2, 3),
    micro_batch=api_values(1, 2, 4),
    global_batch=api_values(64, 128, 512),
    seq_len=api_values(2048, 4096, 8192),
    virtual_stages=api_values(1, 2),
)
def test_fuzz_api_estimate_training(**kw: Any) -> None:
    from planner.training import estimate_training

    args = {k: v for k, v in kw.items() if v is not None}
    devices = args.pop("devices", 8)
    _api_check(lambda: estimate_training("llama3.1-8b", "h100-sxm", devices, **args))
