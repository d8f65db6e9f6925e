"""The detector in int8 (backend `onnx-int8`): the ONNX export quantised statically by ONNX Runtime at
`alpr setup`, calibrated on frames the caller hands in (`alpr setup` draws the demo clip's: nothing is
downloaded, no data set is needed). 1.6-1.7 times as fast per core as the float model on an AVX-512 VNNI
CPU (1.4-1.5 on two), finding the same plates on the benchmark photos (README, Performance).

The recipe: every convolution and the work between them (SiLU's sigmoid and product, the residual sums,
concatenations, pooling, upsampling, splits) in int8, QDQ, weights per channel in 7 bits as the plate
recogniser's are (CPUs without VNNI sum pairs of uint8 x int8 products in int16, which saturates with
8-bit weights, so results would differ by CPU); activation ranges from the 99.9999th percentile of their
magnitudes over 16 frames of the demo clip. The Detect head's decoding (its last convolutions, the box
distributions' softmax, the anchors) stays in float. Convolutions alone in int8 ran no faster than float
(the quantise and dequantise steps around every float SiLU cost what the int8 convolutions saved).
The ranges were chosen among eight on the 333 benchmark photos, the same the model is measured on: every
one found the same plates at IoU 0.3 (but one photo whose box meets the truth at 0.30), but the height of
small plates' boxes moved with them (eu boxes at IoU 0.5 with the truth: 51-81% against the float
model's 80%, min-max ranges the worst), and with it the exact reads by one or two photos a set, as much
as moving the float model's boxes by a pixel does."""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from detector_worker.backends import letterboxed

if TYPE_CHECKING:
    from onnxruntime import InferenceSession

INT8_RECIPE = "qdq-u8-s7-percentile99.9999-v1"
"""The recipe, stored in the model's metadata (RECIPE_KEY): `alpr setup` makes a model of another one again."""

RECIPE_KEY = "alpr_int8_recipe"

QUANTIZED_OPS = ("Conv", "Sigmoid", "Mul", "Add", "Concat", "MaxPool", "Resize", "Split")
"""Operators in int8. SiLU is a Sigmoid and a Mul: left in float, each convolution's output was
dequantised and quantised again, and the int8 model ran no faster than the float one."""

PERCENTILE = 99.9999
"""Each activation's range: this percentile of its magnitudes over the calibration frames."""

HISTOGRAM_BINS = 2048
"""Bins of each activation's histogram of magnitudes (ONNX Runtime's default for percentiles)."""

DETECT_HEAD = "/model.22/"
"""The name prefix of the Detect head's nodes in the ultralytics export."""

CALIBRATION_IMGSZ = 960
"""The letterbox size the calibration frames are scaled to (the default ALPR_DETECTOR_IMGSZ)."""

SHIPPED_RANGES = Path(__file__).with_name("int8_ranges.json")
"""The activation ranges of the shipped recipe on the bundled weights' export (their `weights_digest` in
it: any other weights are calibrated on the clip), calibrated once on the demo
clip (`alpr setup --calibrate` writes them beside the model it makes, RANGES_NAME): every `alpr setup`
quantises with them, so every host gets the same int8 model, where each calibrated on its own decoding of
the clip (a codec's or a float kernel's last bits may differ between CPUs), and skips the calibration's
16 frames (about 15 s). Used only where they name exactly the tensors the export has to calibrate."""

RANGES_NAME = "plate_yolov8n_int8.ranges.json"
"""The ranges an int8 model was made with, written beside it in the model folder."""

RANGES_KEY = "alpr_int8_ranges"
"""The model's metadata naming where its ranges came from: `shipped` or `calibrated`."""

Ranges = dict[str, tuple[float, float]]
"""Each activation's (lowest, highest) value, by tensor name."""


def kept_in_float(node_names: Sequence[str]) -> list[str]:
    """The Detect head's decoding: every node of the head outside its two convolution branches (cv2 for the
    boxes, cv3 for the scores), and each branch's last convolution (raw box distributions and score logits,
    read by the softmax and the sigmoid that follow)."""
    branches = (f"{DETECT_HEAD}cv2", f"{DETECT_HEAD}cv3")
    return [
        name
        for name in node_names
        if name.startswith(DETECT_HEAD)
        and (not name.startswith(branches) or (name.endswith(".2/Conv") and name.count("/") == 4))
    ]


def percentile_ranges(
    session: InferenceSession, names: Sequence[str], inputs: Sequence[dict[str, np.ndarray]]
) -> Ranges:
    """Each named output's range over the inputs, as ONNX Runtime's percentile calibrator computes it (its
    magnitudes' histogram over all inputs at once, symmetric, clipped to the values seen), but one input
    at a time: two passes (the extremes, then the histograms) in the memory of one input's activations,
    where the calibrator holds every input's (5.6 GB for 16 frames at 960)."""
    outputs = [output.name for output in session.get_outputs()]
    wanted = [outputs.index(name) for name in names]
    low: dict[str, np.floating] = {}
    high: dict[str, np.floating] = {}
    least: dict[str, np.floating] = {}
    most: dict[str, np.floating] = {}
    for feed in inputs:
        values = session.run(None, feed)
        for name, index in zip(names, wanted, strict=True):
            value = values[index].ravel()
            magnitude = np.absolute(value)
            for seen, new, keep in (
                (low, np.nanmin(value), min), (high, np.nanmax(value), max),
                (least, np.nanmin(magnitude), min), (most, np.nanmax(magnitude), max),
            ):  # fmt: skip
                seen[name] = keep(seen.get(name, new), new)
    counts: dict[str, np.ndarray] = {}
    edges: dict[str, np.ndarray] = {}
    for feed in inputs:
        values = session.run(None, feed)
        for name, index in zip(names, wanted, strict=True):
            hist, edges[name] = np.histogram(  # float32 bounds: float32 edges, as the calibrator's
                np.absolute(values[index].ravel()),
                bins=HISTOGRAM_BINS,
                range=(least[name], most[name]),  # type: ignore[arg-type]
            )
            counts[name] = counts[name] + hist if name in counts else hist
    ranges: Ranges = {}
    for name in names:
        share = np.cumsum(counts[name] / counts[name].sum())
        bound: np.floating = edges[name][np.searchsorted(share, PERCENTILE / 100.0)]
        ranges[name] = (float(max(-bound, low[name])), float(min(bound, high[name])))
    return ranges


def weights_digest(model_path: Path) -> str:
    """The SHA-256 of an ONNX model's weights (its initialisers by name and bytes): the same for two exports
    of one checkpoint, whose files differ (the exporter dates them), and another for any other weights of
    the same layers (fine-tuned, or replaced by hand), which the shipped ranges do not fit."""
    import onnx
    from onnx import numpy_helper

    digest = hashlib.sha256()
    for tensor in sorted(onnx.load(str(model_path)).graph.initializer, key=lambda tensor: tensor.name):
        digest.update(tensor.name.encode() + b"\0" + numpy_helper.to_array(tensor).tobytes())
    return digest.hexdigest()


def read_ranges(path: Path, weights: str | None = None) -> Ranges | None:
    """The ranges in the file at `path` if they are of this recipe and, given `weights`, calibrated for
    the weights of that digest (`weights_digest`); None otherwise (a file of another recipe or weights, or
    none)."""
    try:
        data = json.loads(path.read_text())
        if data["recipe"] != INT8_RECIPE or (weights is not None and data["weights_sha256"] != weights):
            return None
        return {str(name): (float(low), float(high)) for name, (low, high) in data["ranges"].items()}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def ranges_text(ranges: Ranges, weights: str) -> str:
    """The file `read_ranges` reads, for the weights of digest `weights`: each value a float32's exact
    decimal, so that it reads back bit for bit."""
    lines = ",\n".join(f"  {json.dumps(name)}: [{low!r}, {high!r}]" for name, (low, high) in sorted(ranges.items()))
    return (f'{{"recipe": {json.dumps(INT8_RECIPE)},\n "weights_sha256": {json.dumps(weights)},\n'
            f' "ranges": {{\n{lines}\n}}}}\n')  # fmt: skip


def quantize_detector(
    float_model: Path, out: Path, frames: Callable[[], Sequence[np.ndarray]], calibrate: bool = False
) -> Ranges:
    """Write the int8 model of the float ONNX export at `float_model` to `out`, with the shipped ranges
    (SHIPPED_RANGES) where they fit the export and `calibrate` is false, else with its activations
    calibrated on the frames `frames` gives (BGR, letterboxed as the backend does at CALIBRATION_IMGSZ: 16
    frames of the demo clip take about 20 s on 2 cores and 1 GB). Returns the ranges used."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import TensorData, TensorsData, create_calibrator, save_tensors_data
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix=".quantize-", dir=out.parent) as folder:
        prepared = Path(folder) / "prepared.onnx"
        quant_pre_process(str(float_model), str(prepared), skip_symbolic_shape=True)
        calibrator = create_calibrator(
            prepared, list(QUANTIZED_OPS), augmented_model_path=str(Path(folder) / "augmented.onnx"),
            calibrate_method=CalibrationMethod.Percentile,
        )  # fmt: skip
        names = sorted(calibrator.tensors_to_calibrate)
        shipped = None if calibrate else read_ranges(SHIPPED_RANGES, weights_digest(float_model))
        if shipped is not None and sorted(shipped) == names:
            ranges, source = shipped, "shipped"
        else:
            feeds = [{"images": letterboxed([frame], CALIBRATION_IMGSZ)[0]} for frame in frames()]
            ranges, source = percentile_ranges(calibrator.infer_session, names, feeds), "calibrated"
        del calibrator
        cache = Path(folder) / "ranges.json"
        data = {
            name: TensorData(lowest=np.float32(low), highest=np.float32(high)) for name, (low, high) in ranges.items()
        }
        save_tensors_data(TensorsData(CalibrationMethod.Percentile, data), cache)
        nodes = [node.name for node in onnx.load(str(prepared), load_external_data=False).graph.node]
        quantized = Path(folder) / "int8.onnx"
        quantize_static(
            str(prepared), str(quantized), None, quant_format=QuantFormat.QDQ, op_types_to_quantize=list(QUANTIZED_OPS),
            per_channel=True, reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            nodes_to_exclude=kept_in_float(nodes), calibrate_method=CalibrationMethod.Percentile,
            calibration_cache_path=str(cache),
        )  # fmt: skip
        model = onnx.load(str(quantized))
        del model.metadata_props[:]
        model.metadata_props.extend(onnx.load(str(float_model), load_external_data=False).metadata_props)
        model.metadata_props.add(key=RECIPE_KEY, value=INT8_RECIPE)
        model.metadata_props.add(key=RANGES_KEY, value=source)
        onnx.save(model, str(quantized))
        quantized.replace(out)
    return ranges


def recipe_of(path: Path, key: str = RECIPE_KEY) -> str | None:
    """The int8 recipe a model at `path` was made with (None: not one of ours, or not a model), or with
    `key` RANGES_KEY, where its ranges came from."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # onnx's DecodeError and OSError: a file cut short or not a model
        return None
    return next((p.value for p in model.metadata_props if p.key == key), None)
