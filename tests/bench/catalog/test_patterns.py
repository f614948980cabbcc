"""Failure patterns: one signature for one way of failing, whichever model it hit, with a cause and a fix."""

from hwbench_pipeline.bench.catalog.patterns import UNKNOWN, explain, group_failures, mask, signature


def _failed(model_type, failure_class, message, raised_at="transformers.models.x.modeling_x:forward",
            target="cpu-torch"):
    return {"model_type": model_type, "target": target, "status": "failed", "failure_class": failure_class,
            "message": message, "raised_at": raised_at}


def test_names_numbers_shapes_and_paths_are_masked():
    assert mask("RuntimeError: weight of size [1024, 80, 5], expected input[1, 12000, 80] to have 80 channels") \
        == "RuntimeError: weight of size <shape>, expected input<shape> to have <n> channels"
    assert mask("TypeError: PatchTSTModel.forward() missing 1 required positional argument: 'past_values'") \
        == mask("TypeError: InformerModel.forward() missing 2 required positional argument: 'past_time_features'")
    assert "<path>" in mask("ImportError: \\nfound nothing in /usr/lib/python3/x.py")


def test_failures_of_one_kind_on_different_models_are_one_pattern_with_its_fix():
    rows = [
        _failed("patchtst", "runtime_error", "TypeError: PatchTSTModel.forward() missing 1 required positional "
                                             "argument: 'past_values'"),
        _failed("informer", "runtime_error", "TypeError: InformerModel.forward() missing 1 required positional "
                                             "argument: 'past_time_features'"),
        _failed("detr", "missing_dependency", "ImportError: TimmBackbone requires the timm library",
                target="cpu-onnxruntime"),
        {"model_type": "vit", "target": "cpu-torch", "status": "ok"},
    ]
    patterns = group_failures(rows)
    assert [(p.count, p.architectures) for p in patterns] == [(2, ["informer", "patchtst"]), (1, ["detr"])]
    assert "input recipe" in patterns[0].fix and "install" in patterns[1].fix
    assert patterns[1].targets == ["cpu-onnxruntime"]


def test_the_frame_where_it_was_raised_separates_patterns_and_an_unmatched_one_says_so():
    a = _failed("m1", "runtime_error", "ValueError: boom", raised_at="torch.nn.functional:pad")
    b = _failed("m2", "runtime_error", "ValueError: boom", raised_at="transformers.x:forward")
    assert signature(a) != signature(b)
    patterns = group_failures([a, b])
    assert len(patterns) == 2 and {p.cause for p in patterns} == {UNKNOWN.cause}


def test_a_missing_openvino_conversion_is_explained():
    row = _failed("mixtral", "unsupported_operator", "BenchmarkFailure: openvino conversion failed "
                  "(OpConversionFailure): -- No conversion rule found for operations: aten::histc",
                  target="cpu-openvino")
    [pattern] = group_failures([row])
    assert "OpenVINO" in pattern.cause and "ONNX" in pattern.fix


def test_rotary_sections_that_do_not_fit_the_heads_are_explained():
    row = {"failure_class": "runtime_error", "raised_at": "transformers.models.glm4v.modeling_glm4v:forward",
           "message": "RuntimeError: split_with_sizes expects split_sizes to sum exactly to 64 (input tensor's size "
                      "at dimension -1), but got split_sizes=[8, 12, 12]"}
    assert "mrope_section" in explain(signature(row)).cause
