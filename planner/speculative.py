"""Speculative decoding: a cheap drafter proposes k tokens, the target model verifies them in one pass.

Each step the target runs one forward over k + 1 tokens per sequence (the KV cache is read once for
all of them), after the drafter's k sequential steps. With a per-token acceptance probability a,
independent across positions (Leviathan et al., "Fast Inference from Transformers via Speculative
Decoding", ICML 2023, eq. 1), a step yields on average
    E = (1 - a^(k+1)) / (1 - a)      tokens (the accepted prefix plus the target's own next token)
so TPOT = (verify + k x draft) / E. Drafters:
- mtp: DeepSeek-V3's multi-token prediction module (arXiv 2412.19437 section 2.2): one more
  transformer block of the target's shape plus the shared output head, per draft token;
- eagle: EAGLE / EAGLE-3 (arXiv 2401.15077, 2503.01840): one decoder layer over the target's hidden
  states plus the LM head, per draft token; costed like mtp;
- ngram: prompt-lookup drafting (vLLM `ngram`), no model: free drafts;
- draft:<model>: a separate small model of the same tokenizer, run at the target's TP.
The acceptance rate is the user's: it depends on the data and the drafter (DeepSeek reports 85-90%
for its second token, arXiv 2412.19437 section 5.4.3).
"""

from __future__ import annotations

from dataclasses import dataclass

from hardware_db.errors import InvalidSpecError
from workloads.schema import ModelSpec

METHODS = ("mtp", "eagle", "ngram", "draft:<model>")
# Ops outside the decoder layers: run once per drafted token whatever the drafter's depth.
HEAD_OPS = ("embedding", "final_norm", "lm_head")


@dataclass(frozen=True)
class Speculation:
    method: str  # mtp, eagle, ngram or draft
    draft_tokens: int
    acceptance: float
    draft_model: ModelSpec | None = None

    @property
    def tokens_per_step(self) -> float:
        """Expected tokens one verification step yields (module docstring)."""
        a, k = self.acceptance, self.draft_tokens
        return float(k + 1) if a >= 1.0 else (1.0 - a ** (k + 1)) / (1.0 - a)

    @property
    def one_layer_drafter(self) -> bool:
        return self.method in ("mtp", "eagle")


def speculation(
    method: str | None, draft_tokens: int, acceptance: float | None, draft: ModelSpec | None
) -> Speculation | None:
    """The checked knobs, or None without speculative decoding. `draft` is the resolved model of
    a `draft:<model>` method."""
    if method is None:
        if draft_tokens or acceptance is not None:
            raise InvalidSpecError(
                "--draft-tokens and --acceptance need --speculative (mtp, eagle, ngram, draft:MODEL)"
            )
        return None
    kind = "draft" if method.startswith("draft:") else method
    if kind not in ("mtp", "eagle", "ngram", "draft"):
        raise InvalidSpecError(f"unknown --speculative '{method}' (allowed: {', '.join(METHODS)})")
    if not isinstance(draft_tokens, int) or isinstance(draft_tokens, bool) or not 1 <= draft_tokens <= 16:
        raise InvalidSpecError(f"--draft-tokens must be a whole number in 1..16 (got {draft_tokens})")
    if acceptance is None or not (0.0 <= float(acceptance) <= 1.0):
        raise InvalidSpecError(f"--acceptance must be a probability in [0, 1] (got {acceptance})")
    if kind == "draft" and draft is None:
        raise InvalidSpecError("draft:<model> needs a model id or path after 'draft:'")
    return Speculation(kind, draft_tokens, float(acceptance), draft)
