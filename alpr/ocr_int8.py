"""The plate recogniser's int8 form, what `alpr train-ocr` ships: its convolutions quantised
(`quantize`) and its Gelu activations kept in the integer domain (`integer_gelu`), so that ONNX Runtime
runs nearly the whole network on uint8 tensors. Needs onnx and onnxruntime's quantisation tools (the
`train` extra), as training does."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import numpy as np

GELU_SIGMOID_SCALE = 1.702
"""Gelu(x) ~ x * sigmoid(1.702 x) (Hendrycks and Gimpel's sigmoid form; at most 0.02 from the erf form,
within a quantisation step of these activations)."""

SIGMOID_SCALE = 1 / 255
"""The sigmoid's output as uint8: [0, 1] in 255 steps."""


def quantize(float_model: Path, out: Path, batches: list[np.ndarray]) -> None:
    """The convolutions (nearly all of the model's time) in int8, per channel, their activation ranges
    from the 99.999th percentile over `batches` (real crops as the recogniser reads them): 1.5-2 times as
    fast on CPU, and within a point of the float model on every set (min-max ranges lost up to 3 points;
    int8 attention failed to calibrate); then `integer_gelu`.
    Weights take 7 bits (reduce_range): x86 CPUs without VNNI (AVX2 only, e.g. AMD EPYC Milan) multiply
    uint8 by int8 in pairs summed into int16 (vpmaddubsw), which saturates with 8-bit weights, so one
    8-bit model read differently by CPU: on such a CPU the model shipped before this rule read 3 of 111
    US photos fewer than its arithmetic gives (the quantisation simulated in float). With 7-bit weights
    no pair can saturate, and every x86 CPU computes the same integers, no slower."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.inputs = iter([{"x": batch} for batch in batches])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.inputs, None)

    prepared = float_model.with_name("prepared.onnx")
    quant_pre_process(str(float_model), str(prepared), skip_symbolic_shape=True)
    quantize_static(
        str(prepared), str(out), Batches(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"],
        per_channel=True, reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.Percentile,
    )  # fmt: skip
    from onnxruntime.transformers.fusion_gelu import FusionGelu
    from onnxruntime.transformers.onnx_model import OnnxModel

    quantized = OnnxModel(onnx.load(str(out)))
    FusionGelu(quantized).apply()  # erf, div, mul, add back into one Gelu (quantization split it)
    quantized.prune_graph()
    del quantized.model.metadata_props[:]
    quantized.model.metadata_props.extend(onnx.load(str(float_model)).metadata_props)
    integer_gelu(quantized.model)
    onnx.save(quantized.model, str(out))


def integer_gelu(model: Any) -> int:
    """Each Gelu between a DequantizeLinear and a QuantizeLinear (uint8 in, uint8 out, one scale each)
    rewritten in place as x * sigmoid(1.702 x) on the uint8 tensors: a DQ -> Sigmoid -> Q and a
    DQ -> Mul -> Q, which ONNX Runtime fuses into QLinearSigmoid (a table of 256) and QLinearMul. The
    float Gelu and the conversions around it were a third of the recogniser's time (13 Gelus over 9
    million values per batch of 8 plates); this form is 14% faster in all (README, Speed). The number of
    Gelus rewritten."""
    from onnx import helper, numpy_helper

    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    producer = {output: node for node in graph.node for output in node.output}
    consumers: dict[str, list[Any]] = collections.defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)

    def scalar(name: str) -> np.ndarray | None:
        found = initializers.get(name)
        return None if found is None or found.dims else numpy_helper.to_array(found)

    def constant(name: str, value: np.ndarray) -> str:
        graph.initializer.append(numpy_helper.from_array(value, name))
        return name

    replaced: dict[int, list[Any]] = {}
    removed: set[int] = set()
    for node in graph.node:
        dequantize = producer.get(node.input[0]) if node.op_type == "Gelu" else None
        after = consumers[node.output[0]] if dequantize is not None else []
        if (
            dequantize is None or dequantize.op_type != "DequantizeLinear" or len(dequantize.input) != 3
            or len(consumers[dequantize.output[0]]) != 1 or len(after) != 1 or after[0].op_type != "QuantizeLinear"
            or any(scalar(name) is None for name in (*dequantize.input[1:], *after[0].input[1:3]))
            or scalar(dequantize.input[2]).dtype != np.uint8  # type: ignore[union-attr]
        ):  # fmt: skip
            continue
        quantized, scale, zero = dequantize.input
        (quantize_node,) = after
        out_scale_zero, outputs = list(quantize_node.input[1:]), list(quantize_node.output)
        n = len(replaced)
        steep = constant(f"integer_gelu_{n}_steep_scale", np.array(scalar(scale) * GELU_SIGMOID_SCALE, np.float32))  # type: ignore[operator]
        sig_scale = constant(f"integer_gelu_{n}_sigmoid_scale", np.array(SIGMOID_SCALE, np.float32))
        sig_zero = constant(f"integer_gelu_{n}_sigmoid_zero", np.array(0, np.uint8))
        name = f"integer_gelu_{n}"
        replaced[id(quantize_node)] = [
            helper.make_node("DequantizeLinear", [quantized, steep, zero], [f"{name}_steep"]),
            helper.make_node("Sigmoid", [f"{name}_steep"], [f"{name}_sigmoid"]),
            helper.make_node("QuantizeLinear", [f"{name}_sigmoid", sig_scale, sig_zero], [f"{name}_sigmoid_q"]),
            helper.make_node("DequantizeLinear", [f"{name}_sigmoid_q", sig_scale, sig_zero], [f"{name}_gate"]),
            helper.make_node("DequantizeLinear", [quantized, scale, zero], [f"{name}_x"]),
            helper.make_node("Mul", [f"{name}_x", f"{name}_gate"], [f"{name}_product"]),
            helper.make_node("QuantizeLinear", [f"{name}_product", *out_scale_zero], outputs),
        ]  # fmt: skip
        removed |= {id(dequantize), id(node)}
    rebuild(graph, replaced, removed)
    return len(replaced)


def float_gelu(model: Any) -> int:
    """`integer_gelu` undone in place: each rewritten Gelu back in float between its DequantizeLinear and
    QuantizeLinear, as quantisation left it (for benchmarks/bench_cores.py, which times both forms side by
    side). The number of Gelus restored."""
    from onnx import helper

    graph = model.graph
    by_output = {output: node for node in graph.node for output in node.output}
    restored: dict[int, Any] = {}
    removed: set[int] = set()
    n = 0
    while f"integer_gelu_{n}_x" in by_output:
        name = f"integer_gelu_{n}"
        dequantize = by_output[f"{name}_x"]
        quantize_node = next(node for node in graph.node if f"{name}_product" in node.input)
        parts = [by_output[f"{name}_{part}"] for part in ("steep", "sigmoid", "sigmoid_q", "gate", "product")]
        restored[id(quantize_node)] = [
            helper.make_node("DequantizeLinear", list(dequantize.input), [f"{name}_x"]),
            helper.make_node("Gelu", [f"{name}_x"], [f"{name}_gelu"], domain="com.microsoft"),
            helper.make_node("QuantizeLinear", [f"{name}_gelu", *quantize_node.input[1:]], list(quantize_node.output)),
        ]
        removed |= {id(dequantize), *(id(part) for part in parts)}
        n += 1
    rebuild(graph, restored, removed)
    unused = {f"integer_gelu_{k}_{part}" for k in range(n) for part in ("steep_scale", "sigmoid_scale", "sigmoid_zero")}
    kept = [initializer for initializer in graph.initializer if initializer.name not in unused]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return n


def rebuild(graph: Any, replaced: dict[int, list[Any]], removed: set[int]) -> None:
    """The graph's nodes in their order, each of `replaced` (by id) in place of the node it names and those
    of `removed` left out."""
    nodes = []
    for node in graph.node:
        if id(node) in replaced:
            nodes += replaced[id(node)]
        elif id(node) not in removed:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
