"""Offline import of Hugging Face `config.json` files into a ModelSpec.

Supported model types: llama, mistral, mixtral, qwen2, qwen3, qwen3_moe, deepseek_v3, gpt_oss,
gpt2, gpt_neox, opt. Each reader states the family's fixed choices (biases, norms, gating) that a
config.json leaves implicit because the modelling code hard-wires them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hardware_db.errors import InvalidSpecError
from hardware_db.loader import validate
from workloads.schema import ModelSpec

_ACTIVATIONS = {
    "silu": "silu",
    "swish": "silu",
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "relu": "relu",
}


class _Config:
    """Dictionary access that reports a missing key with the file and model type."""

    def __init__(self, raw: dict[str, Any], origin: str):
        self.raw, self.origin = raw, origin

    def req(self, *keys: str) -> Any:
        for k in keys:
            if self.raw.get(k) is not None:
                return self.raw[k]
        model_type = self.raw.get("model_type")
        raise InvalidSpecError(f"{self.origin}: missing '{keys[0]}' (needed for model_type {model_type})")

    def get(self, key: str, default: Any = None) -> Any:
        v = self.raw.get(key)
        return default if v is None else v

    def count(self, *keys: str, default: Any = None) -> int:
        """A size that must be a whole number >= 1 (heads, layers, widths), required unless a default is given."""
        value = self.req(*keys) if default is None else self.get(keys[0], default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 1 or value != int(value):
            raise InvalidSpecError(f"{self.origin}: {keys[0]} must be a whole number >= 1 (got {value!r})")
        return int(value)


def _activation(c: _Config, key: str = "hidden_act") -> str:
    act = str(c.get(key, "silu"))
    if act not in _ACTIVATIONS:
        raise InvalidSpecError(f"{c.origin}: {key} '{act}' is not supported (allowed: {', '.join(_ACTIVATIONS)})")
    return _ACTIVATIONS[act]


def _attention(c: _Config, heads: int, kv_heads: int, head_dim: int, **extra: Any) -> dict[str, Any]:
    kind = "mha" if kv_heads == heads else ("mqa" if kv_heads == 1 else "gqa")
    return {"kind": kind, "heads": heads, "kv_heads": kv_heads, "head_dim": head_dim, **extra}


def _period(pattern: list[str]) -> list[str]:
    """Shortest cyclic pattern that repeats to `pattern` (gpt-oss: [sliding, full])."""
    for n in range(1, len(pattern) + 1):
        if all(pattern[i] == pattern[i % n] for i in range(len(pattern))):
            return pattern[:n]
    return pattern


def _llama_like(c: _Config, *, qkv_bias: bool | None = None, qk_norm: bool = False) -> dict[str, Any]:
    hidden, heads = c.count("hidden_size"), c.count("num_attention_heads")
    kv_heads = c.count("num_key_value_heads", default=heads)
    head_dim = c.count("head_dim", default=hidden // heads)
    bias = bool(c.get("attention_bias", False)) if qkv_bias is None else qkv_bias
    attention = _attention(
        c, heads, kv_heads, head_dim, qkv_bias=bias, out_bias=bool(c.get("attention_bias", False)), qk_norm=qk_norm
    )
    window = c.get("sliding_window")
    uses_window = window is not None and c.get("use_sliding_window", True)
    if uses_window:
        attention["sliding_window"] = int(window)
    return {
        "layers": c.count("num_hidden_layers"),
        "hidden_size": hidden,
        "vocab_size": c.count("vocab_size"),
        "tied_embeddings": bool(c.get("tie_word_embeddings", False)),
        "max_seq_len": c.count("max_position_embeddings"),
        "norm": "rmsnorm",
        "position": "rope",
        "attention": attention,
        "ffn": {"size": c.count("intermediate_size"), "activation": _activation(c), "gated": True},
    }


def _llama(c: _Config) -> dict[str, Any]:
    return _llama_like(c)


def _mixtral(c: _Config) -> dict[str, Any]:
    d = _llama_like(c)
    d["moe"] = {
        "experts": c.count("num_local_experts"),
        "top_k": c.count("num_experts_per_tok"),
        "expert_ffn_size": c.count("intermediate_size"),
    }
    return d


def _qwen2(c: _Config) -> dict[str, Any]:
    return _llama_like(c, qkv_bias=True)  # Qwen2 hard-wires bias on q, k, v (not o)


def _qwen3(c: _Config) -> dict[str, Any]:
    return _llama_like(c, qk_norm=True)  # per-head RMSNorm on q and k


def _qwen3_moe(c: _Config) -> dict[str, Any]:
    d = _llama_like(c, qk_norm=True)
    if c.get("decoder_sparse_step", 1) != 1 or c.get("mlp_only_layers"):
        raise InvalidSpecError(
            f"{c.origin}: interleaved dense/MoE layers (decoder_sparse_step, mlp_only_layers) "
            "are not supported; only leading dense layers are"
        )
    d["moe"] = {
        "experts": c.count("num_experts"),
        "top_k": c.count("num_experts_per_tok"),
        "expert_ffn_size": c.count("moe_intermediate_size"),
    }
    return d


def _deepseek_v3(c: _Config) -> dict[str, Any]:
    d = _llama_like(c)
    heads = c.count("num_attention_heads")
    nope, rope = c.count("qk_nope_head_dim"), c.count("qk_rope_head_dim")
    d["attention"] = {
        "kind": "mla",
        "heads": heads,
        "kv_heads": heads,
        "head_dim": nope + rope,
        "mla": {
            "q_lora_rank": c.get("q_lora_rank"),
            "kv_lora_rank": c.count("kv_lora_rank"),
            "qk_nope_head_dim": nope,
            "qk_rope_head_dim": rope,
            "v_head_dim": c.count("v_head_dim"),
        },
    }
    moe_size = c.count("moe_intermediate_size")
    d["moe"] = {
        "experts": c.count("n_routed_experts"),
        "top_k": c.count("num_experts_per_tok"),
        "expert_ffn_size": moe_size,
        "shared_experts": int(c.get("n_shared_experts", 0)),
        "dense_layers": int(c.get("first_k_dense_replace", 0)),
    }
    return d


def _gpt_oss(c: _Config) -> dict[str, Any]:
    d = _llama_like(c, qkv_bias=True)
    d["attention"]["out_bias"] = True
    d["attention"]["sinks"] = True
    kinds = [("sliding" if t == "sliding_attention" else "full") for t in c.get("layer_types", [])]
    if kinds:
        d["attention"]["layer_pattern"] = _period(kinds)
    d["ffn"]["activation"] = "swiglu_clamped"
    d["moe"] = {
        "experts": c.count("num_local_experts"),
        "top_k": c.count("num_experts_per_tok", "experts_per_token"),
        "expert_ffn_size": c.count("intermediate_size"),
        "router_bias": True,
        "expert_bias": True,
    }
    return d


def _gpt2(c: _Config) -> dict[str, Any]:
    hidden, heads = c.count("n_embd"), c.count("n_head")
    return {
        "layers": c.count("n_layer"),
        "hidden_size": hidden,
        "vocab_size": c.count("vocab_size"),
        "tied_embeddings": True,
        "max_seq_len": c.count("n_positions"),
        "norm": "layernorm",
        "position": "learned",
        "attention": _attention(c, heads, heads, hidden // heads, qkv_bias=True, out_bias=True),
        "ffn": {
            "size": c.count("n_inner", default=4 * hidden),
            "activation": _activation(c, "activation_function"),
            "gated": False,
            "bias": True,
        },
    }


def _gpt_neox(c: _Config) -> dict[str, Any]:
    hidden, heads = c.count("hidden_size"), c.count("num_attention_heads")
    bias = bool(c.get("attention_bias", True))
    return {
        "layers": c.count("num_hidden_layers"),
        "hidden_size": hidden,
        "vocab_size": c.count("vocab_size"),
        "tied_embeddings": bool(c.get("tie_word_embeddings", False)),
        "max_seq_len": c.count("max_position_embeddings"),
        "norm": "layernorm",
        "position": "rope",
        "attention": _attention(c, heads, heads, hidden // heads, qkv_bias=bias, out_bias=bias),
        "ffn": {"size": c.count("intermediate_size"), "activation": _activation(c), "gated": False, "bias": True},
    }


def _opt(c: _Config) -> dict[str, Any]:
    hidden, heads = c.count("hidden_size"), c.count("num_attention_heads")
    if c.count("word_embed_proj_dim", default=hidden) != hidden:
        raise InvalidSpecError(f"{c.origin}: OPT with word_embed_proj_dim != hidden_size (opt-350m) is not supported")
    bias = bool(c.get("enable_bias", True))
    return {
        "layers": c.count("num_hidden_layers"),
        "hidden_size": hidden,
        "vocab_size": c.count("vocab_size"),
        "tied_embeddings": bool(c.get("tie_word_embeddings", True)),
        # OPT's learned position table has 2 extra rows (padding offset): negligible, not modelled.
        "max_seq_len": c.count("max_position_embeddings"),
        "norm": "layernorm",
        "position": "learned",
        "attention": _attention(c, heads, heads, hidden // heads, qkv_bias=bias, out_bias=bias),
        "ffn": {
            "size": c.count("ffn_dim"),
            "activation": _activation(c, "activation_function"),
            "gated": False,
            "bias": bias,
        },
    }


READERS: dict[str, Callable[[_Config], dict[str, Any]]] = {
    "llama": _llama,
    "mistral": _llama,
    "mixtral": _mixtral,
    "qwen2": _qwen2,
    "qwen3": _qwen3,
    "qwen3_moe": _qwen3_moe,
    "deepseek_v3": _deepseek_v3,
    "gpt_oss": _gpt_oss,
    "gpt2": _gpt2,
    "gpt_neox": _gpt_neox,
    "opt": _opt,
}


def _model_id(raw: dict[str, Any], path: Path | None) -> str:
    name = raw.get("_name_or_path") or (path.parent.name if path is not None else "") or raw["model_type"]
    slug = re.sub(r"[^a-z0-9.\-]+", "-", str(name).split("/")[-1].lower()).strip("-.")
    return slug if len(slug) >= 2 else f"hf-{raw['model_type']}".replace("_", "-")


def from_hf_config(raw: dict[str, Any], path: Path | None = None, model_id: str | None = None) -> ModelSpec:
    """Build a ModelSpec from a parsed config.json; `path` is only used in messages and the ID."""
    origin = str(path) if path is not None else "config.json"
    if not isinstance(raw, dict) or "model_type" not in raw:
        raise InvalidSpecError(f"{origin}: not a Hugging Face config (no 'model_type')")
    reader = READERS.get(raw["model_type"])
    if reader is None:
        raise InvalidSpecError(
            f"{origin}: model_type '{raw['model_type']}' is not supported (allowed: {', '.join(READERS)})"
        )
    fields = reader(_Config(raw, origin))
    mid = model_id or _model_id(raw, path)
    fields.update(id=mid, name=mid, family=str(raw["model_type"]), source=f"Hugging Face config.json ({origin})")
    return validate(origin, fields, ModelSpec)
