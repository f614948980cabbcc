"""Translators for torch operators OpenVINO's torch frontend lacks, given to ``ov.convert_model``.

Only ops the catalog's models actually hit: ``aten::diff``, which transformers 5 calls when a decoder gets
position ids but no attention mask (``masking_utils.find_packed_sequence_indices``; Whisper's decoder does).
Without it openvino 2026.4 stops with "No conversion rule found for operations: aten::diff".
"""

from __future__ import annotations

from typing import Any

_INT64_MAX = 2**63 - 1


def _is_none(context: Any, index: int) -> bool:
    """Whether optional input ``index`` is absent or a None constant (a tensor input is not a constant)."""
    if context.get_input_size() <= index:
        return True
    try:
        return context.get_values_from_const_input(index) is None
    except Exception:  # noqa: BLE001 - not a constant: a real tensor
        return False


def _diff(context: Any) -> list:
    """aten::diff(Tensor self, int n=1, int dim=-1, Tensor? prepend=None, Tensor? append=None)."""
    import numpy as np
    import openvino.opset13 as ops

    n = 1 if _is_none(context, 1) else int(context.get_values_from_const_input(1))
    dim = -1 if _is_none(context, 2) else int(context.get_values_from_const_input(2))
    parts = [context.get_input(i) for i in (3, 0, 4) if i == 0 or not _is_none(context, i)]
    x = parts[0] if len(parts) == 1 else ops.concat(parts, dim).output(0)

    def const(value: int):
        return ops.constant(np.array([value], dtype=np.int64))

    for _ in range(n):
        head = ops.slice(x, const(1), const(_INT64_MAX), const(1), const(dim))
        tail = ops.slice(x, const(0), const(-1), const(1), const(dim))
        if x.get_element_type().get_type_name() == "boolean":
            x = ops.not_equal(head, tail).output(0)  # torch: diff of bools is xor
        else:
            x = ops.subtract(head, tail).output(0)
    return [x]


def conversion_extensions() -> list:
    """The extensions to pass to ``ov.convert_model(..., extension=...)``."""
    from openvino.frontend.pytorch import ConversionExtension

    return [ConversionExtension("aten::diff", _diff)]
