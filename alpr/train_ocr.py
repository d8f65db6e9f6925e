"""`alpr train-ocr`: fine-tunes the PP-OCRv6 small recogniser into a plate specialist and writes the
ONNX model with its card. The pretrained model (from rapidocr 3.10.0) is converted to torch with
onnx2torch (its SAME_UPPER paddings made explicit), its 18,710-class head cut to blank + A-Z0-9
(rows taken from the pretrained head, so training starts where PP-OCRv6 stands), then trained with
CTC on real plate crops (the visible photos cut at jittered boxes, and the crops set) mixed with
synthetic plates (ocr_worker/synthetic.py), both prepared exactly as reading prepares them. The
real images fall into five folds by a hash of their file names (alpr/folds.py); by default four are
trained on and fold 0 is not: it measures each epoch (and, with keep="best", chooses it; the default
keeps the last, 126 images being too few to choose by). Fewer folds give a model whose reads of the
others are unseen, which `alpr calibrate --unseen-reads` fits the confidence on. Training needs
the `train` extra (onnx2torch); running the model does not."""

from __future__ import annotations

import json
import logging
import platform
import random
import shutil
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from alpr.folds import FOLDS, FOUR_FIFTHS, fold, held_out
from alpr.ocr_int8 import quantize
from alpr.train_crops import RealCrop, cut, read_crop_images, real_crops
from common.errors import InputError
from ocr_worker.ppocr_engine import PLATE_ALPHABET, bundled_model_path, input_batch
from ocr_worker.synthetic import sample as synthetic_sample
from ocr_worker.text_lines import PlateTextLocator

log = logging.getLogger(__name__)

INPUT_WIDTH = 160
"""Every line is trained on, and read, at this width (narrower ones padded, wider squeezed): a model
trained at one width reads worst at another (the model card records what was measured). The width
goes into the model's metadata, where the engine finds it."""

BATCH = 32
"""Crops per training step."""

KEEP_RULES = ("best", "last")
"""Which epoch is written: the best on the held-out crops (first of ties), or the last (lr annealed; the default)."""


def to_batch(crops: list[np.ndarray]) -> np.ndarray:
    """Crops as the recogniser reads them: INPUT_WIDTH wide."""
    return input_batch(crops, INPUT_WIDTH)


def onnx2torch_reading_the_exporter() -> None:
    """Point onnx2torch at the module torch's ONNX exporter keeps its state in. onnx2torch reads the opset
    being exported (its Shape node, traced) from `torch.onnx.symbolic_helper` as it found it when imported;
    importing torchvision.ops (ultralytics does: the detector) imports the submodule of that name, torch's
    backward-compatibility copy without GLOBALS, which takes the name's place. onnx2torch imported after it
    failed every export (AttributeError on `_export_onnx_opset_version`): this file's test, after the
    detector's in one pytest process, and `alpr train-ocr` in any process that had loaded ultralytics."""
    import importlib

    from onnx2torch.utils import common

    if not hasattr(common.symbolic_helper, "GLOBALS"):  # the one torch.onnx binds itself (torch 2.14)
        common.symbolic_helper = importlib.import_module("torch.onnx._internal.torchscript_exporter.symbolic_helper")


def plate_model(work: Path) -> Any:
    """PP-OCRv6 small as a torch module with a plate head, returning logits (no softmax)."""
    import onnx
    import torch
    from onnx import helper, numpy_helper
    from onnx2torch import convert

    onnx2torch_reading_the_exporter()
    model = onnx.load(str(bundled_model_path("v6")))
    for node in model.graph.node:  # onnx2torch reads explicit pads only
        for attribute in list(node.attribute):
            if attribute.name == "auto_pad" and attribute.s == b"SAME_UPPER":
                kernel = next(a.ints for a in node.attribute if a.name == "kernel_shape")
                strides = next((a.ints for a in node.attribute if a.name == "strides"), [1, 1])
                total = [max(k - s, 0) for k, s in zip(kernel, strides, strict=True)]
                node.attribute.remove(attribute)
                pads = [t // 2 for t in total] + [t - t // 2 for t in total]
                node.attribute.append(helper.make_attribute("pads", pads))
    characters = next(p.value for p in model.metadata_props if p.key == "character").splitlines()
    vocabulary = ["<blank>", *characters, " "]
    columns = [0] + [vocabulary.index(c) for c in PLATE_ALPHABET]
    for initializer in model.graph.initializer:  # the head: 120 x 18710 (+ bias) -> 120 x 37
        if initializer.name in ("linear_8.w_0", "linear_8.b_0"):
            array = numpy_helper.to_array(initializer)
            cut_array = array[:, columns] if array.ndim == 2 else array[columns]
            initializer.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(cut_array), initializer.name))
    path = work / "plate_init.onnx"
    onnx.save(model, str(path))
    module = convert(str(path))
    for name, buffer in list(module.initializers.named_buffers()):  # weights held as constants train too
        if buffer.dtype == torch.float32 and buffer.numel() > 1:
            delattr(module.initializers, name)
            module.initializers.register_parameter(name, torch.nn.Parameter(buffer.clone()))
    softmax = [n for n in module.graph.nodes if n.op == "call_module" and "Softmax" in str(n.target)][-1]
    softmax.replace_all_uses_with(softmax.args[0])
    module.graph.erase_node(softmax)
    module.recompile()
    return module


def exact_by_subset(crops: list[RealCrop], reads: list[str]) -> dict[str, float]:
    """Share of exact reads per subset (us, eu, br, crops) and over all."""
    right: dict[str, list[bool]] = {}
    for crop, read in zip(crops, reads, strict=True):
        right.setdefault(crop.subset, []).append(read == crop.plate)
    scores = {k: round(sum(v) / len(v), 4) for k, v in sorted(right.items())}
    scores["all"] = round(sum(sum(v) for v in right.values()) / max(len(crops), 1), 4)
    return scores


def greedy_text(logits: np.ndarray) -> str:
    best, text, previous = logits.argmax(-1), [], 0
    for k in best:
        if k != previous and k != 0:
            text.append(PLATE_ALPHABET[k - 1])
        previous = k
    return "".join(text)


def prepared_batch(
    items: Sequence[RealCrop | None], images: dict[Path, np.ndarray], rng: random.Random, locator: PlateTextLocator
) -> tuple[np.ndarray, list[str]]:
    """A training batch: each real crop cut as a detector's box gives it, each None a synthetic plate."""
    pieces, texts = [], []
    for crop in items:
        if crop is None:
            image, text = synthetic_sample(rng)
            pieces.append(locator.locate([image])[0])
        else:
            pieces.append(cut(crop, images[crop.image], rng, locator))
            text = crop.plate
        texts.append(text)
    return to_batch(pieces), texts


class EpochBatches:
    """An epoch's batches for torch's DataLoader (`--workers`): batch k is drawn from the seed
    "`run`:k", so it is the same crops whichever worker process prepares it, and in any order."""

    def __init__(self, items: list[RealCrop | None], images: dict[Path, np.ndarray], run: str) -> None:
        self.items, self.images, self.run = items, images, run
        self.locator: PlateTextLocator | None = None  # made in the worker process that first needs it

    def __len__(self) -> int:
        return -(-len(self.items) // BATCH)

    def __getitem__(self, index: int) -> tuple[np.ndarray, list[str]]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        self.locator = self.locator or PlateTextLocator(threads=1)
        first = index * BATCH
        return prepared_batch(
            self.items[first : first + BATCH], self.images, random.Random(f"{self.run}:{index}"), self.locator
        )


def epoch_batches(
    items: list[RealCrop | None],
    images: dict[Path, np.ndarray],
    run: str,
    workers: int,
    rng: random.Random,
    locator: PlateTextLocator,
) -> Iterable[tuple[np.ndarray, list[str]]]:
    """An epoch's batches: prepared here from the run's one random stream `rng` (what the shipped model
    was trained with), or with `workers` > 0 in that many processes, each batch from its own seed."""
    if not workers:
        return (prepared_batch(items[first : first + BATCH], images, rng, locator)
                for first in range(0, len(items), BATCH))  # fmt: skip
    import torch

    dataset: Any = EpochBatches(items, images, run)  # a map-style dataset, as DataLoader takes
    return torch.utils.data.DataLoader(
        dataset, batch_size=None, num_workers=workers, collate_fn=as_prepared, prefetch_factor=4
    )


def as_prepared(batch: Any) -> Any:
    """DataLoader's collate step for batches made whole by EpochBatches: none."""
    return batch


def device_name(device: str) -> str:
    """What the card says trained the model."""
    import torch

    if device == "cpu":
        return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    name = torch.cuda.get_device_name(torch.device(device))
    return f"{device} ({name}; CTC's backward pass on CUDA is not deterministic: a seed gives other weights)"


def check_run(
    keep: str,
    folds: frozenset[int],
    device: str,
    workers: int,
    epochs: int = 1,
    synthetic_share: float = 0.5,
    outputs: Sequence[Path | None] = (),
) -> None:
    """ValueError or InputError for a run `train` cannot do, before any work (an index past the CUDA
    devices failed with a traceback once the model was converted; 0 epochs in the LR scheduler, a share of
    1 dividing by zero, and an `outputs` file that is a folder or in a missing one, after the model loaded)."""
    if epochs < 1:
        raise ValueError(f"epochs must be 1 or more, not {epochs}")
    if not 0 <= synthetic_share < 1:  # nan too
        raise ValueError(f"synthetic_share must be at least 0 and below 1, not {synthetic_share}")
    for path in filter(None, outputs):
        if path.is_dir() or not path.absolute().parent.is_dir():
            raise InputError(f"{path} is a folder or in a folder that does not exist: name a file to write")
    if keep not in KEEP_RULES:
        raise ValueError(f"keep must be one of {KEEP_RULES}, not {keep!r}")
    if not folds or not folds <= set(range(FOLDS)):
        raise ValueError(f"folds must be a non-empty subset of 0-{FOLDS - 1}, not {sorted(folds)}")
    if keep == "best" and 0 in folds:
        raise InputError("--keep best chooses an epoch by fold 0, which --folds trains on")
    if workers < 0:
        raise ValueError(f"workers must be 0 or more, not {workers}")
    if device != "cpu":
        import torch

        found = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if int(device.partition(":")[2] or 0) >= found:
            raise InputError(f"--device {device}: torch sees {found or 'no'} CUDA device(s) here")


def train(
    datasets: Path,
    out: Path,
    epochs: int,
    seed: int,
    synthetic_share: float,
    keep: str = "last",
    float_out: Path | None = None,
    folds: frozenset[int] = FOUR_FIFTHS,
    device: str = "cpu",
    workers: int = 0,
) -> dict[str, Any]:
    """Train on the real images of `folds` (by default all but the held-out fold 0), keep the last
    epoch ("last") or the one best on the held-out fold ("best"), write `out` (ONNX) and its card, and
    the float model to `float_out` if given; the card's dict. Fold 0 is measured every epoch: when it
    is trained on too, its figures are no longer a held-out measure, and the card says so. `device`
    runs the model (cpu, cuda, cuda:N); `workers` > 0 prepares the batches in that many processes, each
    batch from a seed of its own (another random stream than the default's one, which the shipped
    model was trained with)."""
    check_run(keep, folds, device, workers, epochs, synthetic_share, (out, float_out))
    import warnings

    import torch

    warnings.filterwarnings("ignore", category=UserWarning, module="onnx2torch")  # its own deprecation notices
    torch.manual_seed(seed)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="alpr-train-") as folder:  # the 21 MB converted base, not kept
        model = plate_model(Path(folder)).to(device)
    crops = real_crops(datasets)
    images, crops = read_crop_images(crops)
    training = [c for c in crops if fold(c.image.name) in folds]
    validation = [c for c in crops if held_out(c.image.name)]
    locator = PlateTextLocator(threads=torch.get_num_threads())
    prepared = [cut(c, images[c.image], None, locator) for c in validation]

    def validate() -> dict[str, float]:
        model.eval()
        reads = []
        with torch.no_grad():
            for first in range(0, len(validation), BATCH):
                logits = model(torch.from_numpy(to_batch(prepared[first : first + BATCH])).to(device)).cpu().numpy()
                reads += [greedy_text(row) for row in logits]
        model.train()
        return exact_by_subset(validation, reads)

    history = [{"epoch": 0, **validate()}]
    best_state, best = {k: v.clone() for k, v in model.state_dict().items()}, history[0]["all"]
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-4, weight_decay=1e-4)
    ctc = torch.nn.CTCLoss(blank=0, zero_infinity=True)
    synthetic_per_epoch = int(len(training) * synthetic_share / (1 - synthetic_share))
    steps = epochs * -(-(len(training) + synthetic_per_epoch) // BATCH)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=2e-4, total_steps=steps, pct_start=0.1)
    if workers:  # OpenCV's thread pool does not survive a fork (a worker asking for one thread hung): none
        cv2.setNumThreads(1)
    started = time.time()
    for epoch in range(1, epochs + 1):
        items: list[RealCrop | None] = [*training, *([None] * synthetic_per_epoch)]
        rng.shuffle(items)
        total = 0.0
        batches = epoch_batches(items, images, f"{seed}:{epoch}", workers, rng, locator)
        for array, texts in batches:
            logp = model(torch.from_numpy(array).to(device)).log_softmax(-1).permute(1, 0, 2)
            targets = torch.tensor([PLATE_ALPHABET.index(c) + 1 for t in texts for c in t], device=device)
            loss = ctc(logp, targets, torch.full((len(texts),), logp.shape[0], dtype=torch.long, device=device),
                       torch.tensor([len(t) for t in texts], device=device))  # fmt: skip
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss.detach()) * len(texts)
        history.append({"epoch": epoch, "loss": round(total / len(items), 4), **validate(),
                        "seconds": round(time.time() - started)})  # fmt: skip
        print(json.dumps(history[-1]), flush=True)
        if keep == "last" or history[-1]["all"] > best:
            best, best_state = history[-1]["all"], {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    model.cpu()
    calibration = [cut(c, images[c.image], None, locator) for c in random.Random(seed).sample(training, 160)]
    with tempfile.TemporaryDirectory(prefix="alpr-export-") as folder:
        export(model, Path(folder) / "float.onnx")
        if float_out is not None:
            shutil.copyfile(Path(folder) / "float.onnx", float_out)
        quantize(Path(folder) / "float.onnx", out, [to_batch([line]) for line in calibration])
    from ocr_worker.ppocr_engine import PpocrEngine

    engine = PpocrEngine(out)
    int8 = exact_by_subset(validation, ["".join(c[0][0] for c in engine.recognize(line)) for line in prepared])
    card = {
        "model": out.name, "base": "PP-OCRv6_rec_small (rapidocr 3.10.0), head cut to blank + A-Z0-9",
        "data": {"real_training_crops": len(training), "trained_folds": sorted(folds),
                 "measured_crops": len(validation), "measured_crops_trained_on": 0 in folds,
                 "synthetic_per_epoch": synthetic_per_epoch, "datasets": str(datasets)},
        "training": {"epochs": epochs, "seed": seed, "batch": BATCH, "optimiser": "AdamW wd 1e-4, one-cycle lr to 2e-4",
                     "input_width": INPUT_WIDTH, "loss": "CTC", "device": device_name(device),
                     "batch_workers": workers, "minutes": round((time.time() - started) / 60, 1)},
        "held_out_greedy_exact": history, "keep": keep,
        "chosen_epoch": epochs if keep == "last" else max(history, key=lambda h: h["all"])["epoch"],
        "shipped": "int8 convolutions (7-bit weights, per channel; percentile calibration on 160 training crops), "
                   "Gelu in uint8 as x * sigmoid(1.702 x)",
        "held_out_greedy_exact_shipped": int8,
    }  # fmt: skip
    out.with_suffix(".json").write_text(json.dumps(card, indent=1) + "\n")
    return card


def export(model: Any, out: Path) -> None:
    """The model with a softmax, as ONNX with a dynamic batch and width, its alphabet in the metadata
    (as PP-OCR models carry theirs), so PpocrEngine reads it as it reads them."""
    import warnings

    import onnx
    import torch

    class WithSoftmax(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: Any) -> Any:
            return self.inner(x).softmax(-1)

    wrapped = WithSoftmax(model).eval()
    onnx2torch_reading_the_exporter()  # its nodes, traced, read the opset exported
    with warnings.catch_warnings():  # the tracer's notes on onnx2torch's shape arithmetic: widths stay dynamic
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapped, (torch.zeros(1, 3, 48, 160),), str(out), input_names=["x"], output_names=["probabilities"],
            dynamic_axes={"x": {0: "batch", 3: "width"}, "probabilities": {0: "batch", 1: "steps"}},
            opset_version=17, dynamo=False,
        )  # fmt: skip
    exported = onnx.load(str(out))
    exported.metadata_props.add(key="character", value="\n".join(PLATE_ALPHABET))
    exported.metadata_props.add(key="input_width", value=str(INPUT_WIDTH))
    onnx.save(exported, str(out))
