"""Making a model traceable before an exporter sees it."""

from __future__ import annotations

from typing import Any

#: what an exported mixture-of-experts model runs instead of grouped matmuls
EXPORTED_EXPERTS = "batched_mm"


def traceable_experts(model: Any) -> str | None:
    """Switch a mixture-of-experts model from grouped matmuls (transformers' default, which the ONNX and OpenVINO
    exporters cannot trace: data-dependent group sizes) to batched matmuls: every expert on every token, weighted
    by the router, in static shapes, so the graph is right for any input. Returns the implementation switched
    to, or None when nothing changed. The exported model computes more than torch's (all experts per token)."""
    config = getattr(model, "config", None)
    if getattr(config, "_experts_implementation", None) != "grouped_mm" \
            or not hasattr(model, "set_experts_implementation"):
        return None
    try:
        model.set_experts_implementation(EXPORTED_EXPERTS)
    except (ValueError, AttributeError, NotImplementedError):  # a model without switchable experts
        return None
    return EXPORTED_EXPERTS
