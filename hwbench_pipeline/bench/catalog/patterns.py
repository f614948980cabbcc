"""Failure patterns: failures grouped by what went wrong, not by which model it happened to.

A failure's signature is its failure class, its exception type, its message with names, numbers, shapes and
paths masked, and the frame where it was raised. Failures with one signature are one pattern; each pattern
gets the probable cause and the fix to try from the first rule of ``RULES`` that matches it (docs/catalog.md).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

_MASKS: tuple[tuple[re.Pattern, str], ...] = (
    (re.compile(r"(/[\w.\-]+)+(\.\w+)?"), "<path>"),
    (re.compile(r"0x[0-9a-fA-F]+"), "<hex>"),
    (re.compile(r"[\[(]\s*-?\d+(\s*,\s*-?\d+)*\s*,?\s*[\])]"), "<shape>"),
    (re.compile(r"torch\.Size\(<shape>\)"), "<shape>"),
    (re.compile(r"'[^']*'|\"[^\"]*\"|`[^`]*`"), "<name>"),
    (re.compile(r"\b[A-Z][A-Za-z0-9]*(Model|Config|Embeddings?|Layer|Attention|Encoder|Decoder|Backbone|Block|"
                r"Module|For[A-Z]\w*)\w*\b"), "<class>"),
    (re.compile(r"\b\d+(\.\d+)?(e-?\d+)?\b"), "<n>"),
    (re.compile(r"\s+"), " "),
)


def mask(message: str) -> str:
    """The message (its start, on one line) with names, classes, numbers, shapes, addresses and paths masked."""
    text = " ".join((message or "").split())[:600]
    for pattern, replacement in _MASKS:
        text = pattern.sub(replacement, text)
    return text.strip()[:300]


def signature(row: dict) -> str:
    return " | ".join(str(part) for part in (row.get("failure_class"), mask(row.get("message") or ""),
                                              row.get("raised_at") or ""))


@dataclass(frozen=True)
class Rule:
    pattern: re.Pattern
    cause: str
    fix: str


RULES: tuple[Rule, ...] = (
    Rule(re.compile(r"missing_dependency"), "the model needs an optional package that is not installed",
         "install the package the message names (a registry package), then run the sweep again"),
    Rule(re.compile(r"out_of_memory"), "the model or its activations do not fit this host's memory",
         "a smaller preset or batch, or a host with more memory"),
    Rule(re.compile(r"timeout"), "one forward pass took longer than the probe's time limit",
         "raise architectures.timeout_s, or probe a smaller preset"),
    Rule(re.compile(r"worker_crashed"), "the process died in native code (a signal)",
         "run the model alone under a debugger; a native-kernel bug is reported upstream"),
    Rule(re.compile(r"(?i)onnx.*(opset|operator|unsupported)|not supported.*onnx|export_error.*Unsupported"),
         "the ONNX exporter lacks an operator or a pattern this model uses",
         "a newer opset, the other exporter (dynamo / TorchScript), or rewrite the operator in the model"),
    Rule(re.compile(r"(?i)openvino conversion failed.*(no conversion rule|conversion is failed for)"),
         "OpenVINO's PyTorch frontend has no conversion for an operator this model uses",
         "convert through an ONNX export instead of from torch, or a newer openvino"),
    Rule(re.compile(r"export_error"), "the model could not be exported or converted for this runtime",
         "check the message: data-dependent control flow and Python-side shapes are the usual causes"),
    Rule(re.compile(r"numerical_mismatch"), "the runtime's output differs from torch beyond the tolerance",
         "check the precision that actually ran and the operators the runtime fused"),
    Rule(re.compile(r"split_with_sizes expects split_sizes to sum exactly"),
         "the config's multimodal rotary sections (mrope_section) do not add up to the rotary width of its heads",
         "a config with the rope_parameters of a published checkpoint (mrope_section, partial_rotary_factor)"),
    Rule(re.compile(r"(?i)expected input.*channels|not enough values to unpack|size mismatch|shape .* is invalid|"
                    r"must match the size|do not match|sizes of tensors must match|mat\d? and mat\d? shapes"),
         "the generic input recipe does not give this architecture the input shape it needs",
         "a per-architecture input recipe (catalog/inputs.py)"),
    Rule(re.compile(r"(?i)missing .* required positional argument|unexpected keyword argument|got an unexpected"),
         "the model's forward takes inputs the generic recipes do not make",
         "a per-architecture input recipe (catalog/inputs.py)"),
    Rule(re.compile(r"model_build_error"), "transformers' default config for this type does not build",
         "a per-architecture config fix in the registry, or report the default config upstream"),
)
UNKNOWN = Rule(re.compile(""), "not yet classified", "read the message and the frame; add a rule")


def explain(sig: str) -> Rule:
    return next((rule for rule in RULES if rule.pattern.search(sig)), UNKNOWN)


@dataclass
class FailurePattern:
    signature: str
    failure_class: str
    count: int
    architectures: list[str]
    targets: list[str]
    example: str  # one full message
    cause: str
    fix: str

    def table_row(self, run_id: str) -> dict:
        return {"run_id": run_id, "signature": self.signature, "failure_class": self.failure_class,
                "count": self.count, "architectures": ", ".join(self.architectures),
                "targets": ", ".join(self.targets), "example": self.example, "cause": self.cause, "fix": self.fix}


def group_failures(rows: list[dict]) -> list[FailurePattern]:
    """The failed rows' patterns, most frequent first."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        if row.get("status") != "ok":
            groups[signature(row)].append(row)
    patterns = []
    for sig, members in groups.items():
        rule = explain(sig)
        patterns.append(FailurePattern(
            signature=sig, failure_class=str(members[0].get("failure_class")), count=len(members),
            architectures=sorted({str(m.get("model_type") or m.get("family")) for m in members}),
            targets=sorted({str(m.get("target")) for m in members}), example=str(members[0].get("message"))[:1000],
            cause=rule.cause, fix=rule.fix))
    return sorted(patterns, key=lambda p: (-p.count, p.signature))
