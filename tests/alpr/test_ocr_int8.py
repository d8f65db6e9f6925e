"""The recogniser's Gelu kept in uint8 (`alpr.ocr_int8.integer_gelu`): the rewritten graph computes
x * sigmoid(1.702 x) on the quantised tensors, within a step of the quantised erf Gelu, ONNX Runtime runs
it as QLinearSigmoid and QLinearMul, and the shipped model holds no float Gelu."""

import collections
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from alpr.ocr_int8 import float_gelu, integer_gelu
from ocr_worker.ppocr_engine import bundled_model_path

IN_SCALE, IN_ZERO, OUT_SCALE, OUT_ZERO = 0.04, 120, 0.025, 10


def quantised_gelu_model() -> onnx.ModelProto:
    """uint8 x -> DequantizeLinear -> Gelu -> QuantizeLinear -> uint8 y, as the quantiser leaves a Gelu."""
    constants = [
        numpy_helper.from_array(np.array(IN_SCALE, np.float32), "in_scale"),
        numpy_helper.from_array(np.array(IN_ZERO, np.uint8), "in_zero"),
        numpy_helper.from_array(np.array(OUT_SCALE, np.float32), "out_scale"),
        numpy_helper.from_array(np.array(OUT_ZERO, np.uint8), "out_zero"),
    ]
    nodes = [
        helper.make_node("DequantizeLinear", ["x", "in_scale", "in_zero"], ["xf"]),
        helper.make_node("Gelu", ["xf"], ["g"], domain="com.microsoft"),
        helper.make_node("QuantizeLinear", ["g", "out_scale", "out_zero"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "gelu", [helper.make_tensor_value_info("x", TensorProto.UINT8, [256])],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, [256])], constants,
    )  # fmt: skip
    imports = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=imports, ir_version=8)


def run(model: onnx.ModelProto, x: np.ndarray, optimized: Path | None = None) -> np.ndarray:
    options = ort.SessionOptions()
    if optimized is not None:
        options.optimized_model_filepath = str(optimized)
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_the_rewritten_gelu_is_the_sigmoid_form_on_the_quantised_values_and_runs_fused(tmp_path):
    x = np.arange(256, dtype=np.uint8)
    model = quantised_gelu_model()
    before = run(model, x).astype(int)
    assert integer_gelu(model) == 1
    assert [node.op_type for node in model.graph.node].count("Gelu") == 0
    after = run(model, x, tmp_path / "optimized.onnx").astype(int)
    values = (x.astype(np.float64) - IN_ZERO) * IN_SCALE
    gate = np.round(255 / (1 + np.exp(-1.702 * values))) / 255  # the sigmoid as uint8 in [0, 1]
    expected = np.clip(np.round(values * gate / OUT_SCALE) + OUT_ZERO, 0, 255)
    assert np.abs(after - expected).max() <= 1  # rounding of the fused kernels
    assert np.abs(after - before).max() <= 2  # the sigmoid form is within 0.02 of Gelu: a step or so here
    fused = collections.Counter(node.op_type for node in onnx.load(str(tmp_path / "optimized.onnx")).graph.node)
    assert fused["QLinearSigmoid"] == 1 and fused["QLinearMul"] == 1 and fused["Sigmoid"] == fused["Mul"] == 0


def test_a_gelu_not_between_uint8_conversions_is_left_as_it_is():
    float_in = quantised_gelu_model()
    del float_in.graph.node[0]
    float_in.graph.node[0].input[0] = "x"
    float_in.graph.input[0].type.tensor_type.elem_type = TensorProto.FLOAT
    assert integer_gelu(float_in) == 0
    assert [node.op_type for node in float_in.graph.node] == ["Gelu", "QuantizeLinear"]


def test_the_shipped_recogniser_runs_every_gelu_in_uint8(tmp_path):
    shipped = onnx.load(str(bundled_model_path("plate")))
    assert not [node for node in shipped.graph.node if node.op_type == "Gelu"]
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(bundled_model_path("plate")), options, providers=["CPUExecutionProvider"])
    fused = collections.Counter(node.op_type for node in onnx.load(str(tmp_path / "optimized.onnx")).graph.node)
    assert fused["QLinearSigmoid"] == 13 and fused["QLinearMul"] == 13 and fused["Gelu"] == 0


def test_the_benchmarks_float_form_is_the_rewrite_undone():
    """benchmarks/bench_cores.py times the shipped model against `float_gelu` of it: the Gelus back in float,
    and rewritten again it computes exactly what ships."""
    shipped = onnx.load(str(bundled_model_path("plate")))
    in_float = onnx.load(str(bundled_model_path("plate")))
    assert float_gelu(in_float) == 13
    assert [node.op_type for node in in_float.graph.node].count("Gelu") == 13
    assert not [i for i in in_float.graph.initializer if i.name.startswith("integer_gelu_")]
    lines = np.random.default_rng(0).uniform(-1, 1, (4, 3, 48, 160)).astype(np.float32)

    def read(model: onnx.ModelProto) -> np.ndarray:
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run(None, {"x": lines})[0]

    assert np.abs(read(in_float) - read(shipped)).max() > 1e-3  # another model
    assert integer_gelu(in_float) == 13
    assert np.array_equal(read(in_float), read(shipped))
