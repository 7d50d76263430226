"""Engine adapters for the five source-paper networks (``ichnode.models``), with their shipped weights.

Every adapter implements the ``Engine`` protocol of ``ichnode.domain`` (``info`` + ``analyse(volume)``):

======================  ====  =====================================================================
name                    seed  what it adds to Findings
======================  ====  =====================================================================
resnet50_cls            004   ``probabilities["any"]``: slice P(hemorrhage), aggregated over slices
dtvit                   001   ``probabilities["any"]`` (the location head is untrained: not reported)
vgg_wso                 003   ``probabilities["any"]`` + CAM heatmap; CAM boxes in ``analyse_detailed``
dense_unet              002   label volume + segment classes, per-class probabilities, heatmap
resnet3d_multitask      000   ``model_volume_ml`` (+ prognosis only when the weights say it is trained)
                              and a Grad-CAM heatmap
======================  ====  =====================================================================

Weights: ``ichnode/weights/<name>.pt`` (a state dict, loaded with ``weights_only=True``) and its sidecar
``<name>.json`` (``small`` + ``overrides``: how to build the network; ``image_size`` / ``input_size``,
``classes``, which heads are trained). **A model whose weights are missing is replaced by the classical
engine** (:func:`build_deep` logs ``model_weights_missing`` as a warning and returns a
``ClassicalEngine``), so a node configured with a model nobody trained still analyses series.

Execution: the device comes from ``EngineConfig.device`` (``auto``: CUDA when available, else the CPU
with ``torch.set_num_threads(config.threads)``); forward passes run under ``torch.inference_mode()`` and,
on CUDA only, autocast to float16 (mixed precision; the CPU stays float32). Slice-wise networks take
``config.batch_size`` slices per forward pass. The series score of a slice-wise model is
``config.aggregation`` over its slice scores: ``max``, or ``mean_topK`` (mean of the K highest slices).

Input mapping: the 2D classifiers (004, 001, 003) were trained on 8-bit PNGs mapped to pseudo-HU on the
brain window [0, 80] (``ichnode.training.png_dataset``). On a CT slice the same input is produced by
clipping HU to [0, 80] and quantising to 256 levels (what the PNG export did), padding to a square and
then running the network's registry preparation at the weights' ``image_size``. The Dense U-Net (002) is
trained on phantom slices prepared by :func:`dense_unet_inputs` (brain window -> [0, 1], resize), and
seed 000 on whole volumes by :func:`resnet3d_inputs` (window [40, 110], blank border cropped, resize).
"""
from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ichnode.config import EngineConfig
from ichnode.domain import ALL_CLASSES, Engine, Findings, ModelInfo, Volume
from ichnode.infer.classical import ClassicalEngine
from ichnode.log import get_logger
from ichnode.models import preprocess as pp
from ichnode.models.explain import Box, cam_box, cam_heatmap, grad_cam
from ichnode.models.registry import ModelSpec, get
from ichnode.models.resnet3d_multitask import cbrt_mm_to_ml

log = get_logger("ichnode.infer.deep")

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
CLASSIFIERS = ("resnet50_cls", "dtvit", "vgg_wso")
DEEP_MODELS = ("resnet3d_multitask", "dtvit", "dense_unet", "vgg_wso", "resnet50_cls")
PSEUDO_HU = (0.0, 80.0)  # the PNG set's intensity range in HU (brain window)
AIR_HU = -1000.0


# --------------------------------------------------------------------------------- device, weights
def select_device(device: str = "auto", threads: int = 2) -> torch.device:
    """``auto``: CUDA when available, else CPU. On the CPU ``torch.set_num_threads(threads)``."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("engine.device is cuda but no CUDA device is available")
        return torch.device("cuda")
    if threads and threads > 0:
        torch.set_num_threads(int(threads))
    return torch.device("cpu")


def autocast(device: torch.device):
    """Mixed precision on CUDA only (float16); a no-op context on the CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def load_weights(name: str, weights_dir: str | Path | None = None, map_location: str | torch.device = "cpu"
                 ) -> tuple[torch.nn.Module, dict]:
    """(network in eval mode, sidecar dict) from ``<weights_dir>/<name>.pt`` + ``.json``.

    Raises FileNotFoundError when either file is missing."""
    spec = get(name)
    path = Path(weights_dir or WEIGHTS_DIR) / f"{spec.name}.pt"
    sidecar = path.with_suffix(".json")
    for p in (path, sidecar):
        if not p.is_file():
            raise FileNotFoundError(f"no weights for {spec.name}: {p} is missing")
    meta = json.loads(sidecar.read_text())
    model = spec.build(small=bool(meta.get("small", False)), **meta.get("overrides", {}))
    model.load_state_dict(torch.load(path, map_location=map_location, weights_only=True))
    return model.eval(), meta


# ------------------------------------------------------------------------------------ aggregation
def parse_aggregation(how: str) -> int | None:
    """``"max"`` -> None; ``"mean_topK"`` -> K (>= 1)."""
    if how == "max":
        return None
    m = re.fullmatch(r"mean_top([1-9][0-9]*)", how)
    if not m:
        raise ValueError(f"aggregation must be max or mean_topK (e.g. mean_top3), got {how!r}")
    return int(m.group(1))


def aggregate(scores, how: str = "max") -> float:
    """Series score from slice scores: the maximum, or the mean of the K highest (all when fewer)."""
    s = np.asarray(scores, np.float64).ravel()
    k = parse_aggregation(how)
    if s.size == 0:
        return 0.0
    if k is None:
        return float(s.max())
    return float(np.sort(s)[::-1][:k].mean())


# ------------------------------------------------------------------------- input preparation (pure)
def square_box(h: int, w: int) -> tuple[int, int, int, int]:
    """Where an (h, w) image sits in its centred max(h, w) square: (top, left, h, w)."""
    s = max(h, w)
    return (s - h) // 2, (s - w) // 2, h, w


def pad_square(stack: np.ndarray, fill: float = AIR_HU) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """(B, H, W) -> (B, S, S), S = max(H, W), centred; returns (padded, (top, left, H, W))."""
    b, h, w = stack.shape
    s = max(h, w)
    top, left, _, _ = square_box(h, w)
    if h == w:
        return stack, (0, 0, h, w)
    out = np.full((b, s, s), fill, dtype=np.float32)
    out[:, top:top + h, left:left + w] = stack
    return out, (top, left, h, w)


def pseudo_hu(hu: np.ndarray) -> np.ndarray:
    """HU -> what the PNG classifiers saw: clipped to [0, 80] HU and quantised to 256 levels."""
    lo, hi = PSEUDO_HU
    v = np.rint((np.clip(np.asarray(hu, np.float32), lo, hi) - lo) / (hi - lo) * 255.0)
    return (v / np.float32(255.0) * np.float32(hi - lo) + np.float32(lo)).astype(np.float32)


def classifier_inputs(name: str, hu_slices: np.ndarray, size: int) -> np.ndarray:
    """(B, H, W) HU -> (B, C, size, size) input of a PNG-trained classifier (004 / 001 / 003), the same as
    ``png_dataset.prepare`` gives for a PNG of the slice exported with the brain window."""
    hu, _ = pad_square(np.asarray(hu_slices, np.float32))
    x = pp.resize(pseudo_hu(hu), (size, size))  # (B, S, S), pseudo-HU in [0, 80]
    if name == "vgg_wso":  # the network windows HU itself
        return x[:, None]
    x = pp.window(x, *pp.BRAIN_WINDOW)[:, None]
    x = np.repeat(x, 3, axis=1)
    if name == "resnet50_cls":
        return x
    if name == "dtvit":  # fixation-device removal was off in training (PNGs have no air HU)
        return pp.imagenet_normalize(x)
    raise ValueError(f"{name} is not a PNG-trained slice classifier")


def dense_unet_inputs(hu_slices: np.ndarray, size: int) -> np.ndarray:
    """(B, H, W) HU -> (B, 1, size, size): brain window [0, 80] -> [0, 1], square, anti-aliased resize."""
    hu, _ = pad_square(np.asarray(hu_slices, np.float32))
    return pp.resize(pp.window(hu, *pp.BRAIN_WINDOW), (size, size))[:, None]


def resnet3d_inputs(hu_volume: np.ndarray, size) -> tuple[np.ndarray, tuple[slice, ...]]:
    """Seed 000's ``prepare_resnet3d_multitask`` (window [40, 110] -> [0, 1], blank border cropped, linear
    resize), returning the crop box too (to map Grad-CAM back). The in-plane reduction is done first with
    anti-aliasing (a 512 matrix shrinks 8-fold; plain trilinear would sample noise instead of averaging
    it, so 128-, 256- and 512-matrix series would look different to the network), then z linearly.
    Returns ((1, D, H, W) float32, bbox)."""
    d, h, w = (int(v) for v in size)
    x = pp.window(np.asarray(hu_volume, np.float32), *pp.ICH_WINDOW_000)
    x, bbox = pp.crop_blank_border(x, threshold=0.0, margin=2, largest_component=True)
    x = pp.resize(x, (h, w), mode="linear")  # per slice, anti-aliased
    return pp.resize(x, (d, h, w), mode="linear")[None], bbox


def _to_native(maps: torch.Tensor, pad: tuple[int, int, int, int], square: int) -> torch.Tensor:
    """(B, C, s, s) maps at network size -> (B, C, H, W) at the slice's size (bilinear, padding cut)."""
    top, left, h, w = pad
    if maps.shape[-1] != square:
        maps = F.interpolate(maps, size=(square, square), mode="bilinear", align_corners=False)
    return maps[..., top:top + h, left:left + w]


def _batches(n: int, batch_size: int):
    for z0 in range(0, n, batch_size):
        yield z0, min(z0 + batch_size, n)


# ------------------------------------------------------------------------------------------ engines
@dataclass(frozen=True)
class DeepResult:
    """Findings plus what does not fit the stable Findings type."""

    findings: Findings
    slice_scores: np.ndarray  # (z,) per-slice score the series score aggregates
    boxes: dict[int, Box] = field(default_factory=dict)  # seed 003: CAM box per positive slice index


class TorchEngine:
    """Base: weights, device, mixed precision, batching, aggregation."""

    def __init__(self, name: str, config: EngineConfig | None = None, weights_dir: str | Path | None = None):
        self.config = config or EngineConfig()
        self.spec: ModelSpec = get(name)
        self.device = select_device(self.config.device, self.config.threads)
        model, self.meta = load_weights(self.spec.name, weights_dir)
        self.model = model.to(self.device).eval()
        self.info = ModelInfo(self.spec.name, self.spec.version)
        self.batch_size = int(self.config.batch_size)
        self.aggregation = self.config.aggregation
        parse_aggregation(self.aggregation)

    def forward(self, x: np.ndarray) -> dict[str, torch.Tensor]:
        """One forward pass in inference mode (autocast on CUDA); outputs as float32 on the device."""
        with torch.inference_mode(), autocast(self.device):
            out = self.model(torch.from_numpy(np.ascontiguousarray(x)).to(self.device))
        return {k: v.float() for k, v in out.items()}

    def analyse(self, volume: Volume) -> Findings:
        return self.analyse_detailed(volume).findings

    def analyse_detailed(self, volume: Volume) -> DeepResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def _empty_labels(self, volume: Volume) -> np.ndarray:
        return np.zeros(volume.hu.shape, np.uint8)


def slice_probability(name: str, out: dict[str, torch.Tensor]) -> torch.Tensor:
    """P(hemorrhage) per slice, as ``ichnode.training.classify.positive_probability`` trains it."""
    if name == "resnet50_cls":
        return torch.softmax(out["logits"], dim=1)[:, 1]
    if name == "dtvit":
        return torch.softmax(out["ich_logits"], dim=1)[:, 1]
    if name == "vgg_wso":
        return torch.sigmoid(out["logits"][:, 0])
    raise ValueError(f"no slice probability for {name}")


class SliceClassifierEngine(TorchEngine):
    """Seeds 004 (ResNet-50), 001 (DTViT), 003 (VGG-16 WSO): slice P(hemorrhage) -> series "any".

    003 adds its CAM (channel "any") as the heatmap: per slice normalised to [0, 1] and scaled by that
    slice's probability, so slices the network calls negative stay dark; the CAM box (20 % of the maximum,
    largest region) of every slice with P >= ``box_threshold`` is in ``analyse_detailed(...).boxes``.
    No label volume (``segment_classes`` is empty). Heads the weights' sidecar marks untrained (DTViT
    location, VGG subtypes) are not reported.
    """

    box_threshold = 0.5

    def __init__(self, name: str, config: EngineConfig | None = None, weights_dir: str | Path | None = None):
        if get(name).name not in CLASSIFIERS:
            raise ValueError(f"{name} is not a slice classifier")
        super().__init__(name, config, weights_dir)
        self.image_size = int(self.meta["image_size"])

    def analyse_detailed(self, volume: Volume) -> DeepResult:
        name = self.spec.name
        hu = volume.hu
        nz, h, w = hu.shape
        square = max(h, w)
        scores = np.zeros(nz, np.float64)
        heatmap = np.zeros(hu.shape, np.float32) if name == "vgg_wso" else None
        subtype_scores = np.zeros((nz, 5), np.float64)
        locations = np.zeros((nz, 3), np.float64)
        for z0, z1 in _batches(nz, self.batch_size):
            out = self.forward(classifier_inputs(name, hu[z0:z1], self.image_size))
            p = slice_probability(name, out)
            scores[z0:z1] = p.cpu().numpy()
            if name == "vgg_wso":
                subtype_scores[z0:z1] = torch.sigmoid(out["logits"][:, 1:]).cpu().numpy()
                cam = cam_heatmap(out["cam"], 0, (self.image_size, self.image_size))
                cam = _to_native(cam[:, None], square_box(h, w), square)[:, 0]
                heatmap[z0:z1] = (cam * p[:, None, None]).clamp(0, 1).cpu().numpy()
            if name == "dtvit":
                locations[z0:z1] = torch.softmax(out["location_logits"], dim=1).cpu().numpy()
        probabilities = {"any": aggregate(scores, self.aggregation)}
        iph_location = None
        if name == "vgg_wso" and self.meta.get("subtypes_trained", False):
            from ichnode.models.vgg_wso import CLASSES

            for k, cls in enumerate(CLASSES[1:]):
                probabilities[cls] = aggregate(subtype_scores[:, k], self.aggregation)
        if name == "dtvit" and self.meta.get("location_trained", False):
            from ichnode.models.dtvit import LOCATION_CLASSES

            iph_location = LOCATION_CLASSES[int(np.argmax(locations[int(np.argmax(scores))]))]
        boxes: dict[int, Box] = {}
        if heatmap is not None:
            for z in np.flatnonzero(scores >= self.box_threshold):
                box = cam_box(heatmap[z])
                if box is not None:
                    boxes[int(z)] = box
            if not heatmap.any():
                heatmap = None
        findings = Findings(model=self.info, labels=self._empty_labels(volume), segment_classes=(),
                            probabilities=probabilities, heatmap=heatmap, iph_location=iph_location)
        return DeepResult(findings, scores, boxes)


class DenseUNetEngine(TorchEngine):
    """Seed 002: slice-wise segmentation. Per pixel and class a sigmoid probability (BCE-trained); a voxel
    is labelled with the most probable class when that probability is >= ``threshold`` (0.5). Logits are
    resized bilinearly from the network size back to the slice matrix before the sigmoid. Per-class
    probability = aggregation over slices of the slice's highest pixel probability; the heatmap is the
    highest class probability per voxel."""

    threshold = 0.5

    def __init__(self, name: str = "dense_unet", config: EngineConfig | None = None,
                 weights_dir: str | Path | None = None):
        super().__init__(name, config, weights_dir)
        self.image_size = int(self.meta["image_size"])
        self.classes = tuple(self.meta["classes"])
        unknown = [c for c in self.classes if c not in ALL_CLASSES]
        if unknown:
            raise ValueError(f"dense_unet weights name unknown classes {unknown}")

    def analyse_detailed(self, volume: Volume) -> DeepResult:
        hu = volume.hu
        nz, h, w = hu.shape
        square = max(h, w)
        labels = np.zeros(hu.shape, np.uint8)
        heatmap = np.zeros(hu.shape, np.float32)
        slice_max = np.zeros((nz, len(self.classes)), np.float64)
        for z0, z1 in _batches(nz, self.batch_size):
            x = dense_unet_inputs(hu[z0:z1], self.image_size)
            logits = self.forward(x)["seg_logits"]
            with torch.inference_mode():
                prob = torch.sigmoid(_to_native(logits, square_box(h, w), square))
                best, cls = prob.max(dim=1)
                labels[z0:z1] = torch.where(best >= self.threshold, cls + 1, 0).to(torch.uint8).cpu().numpy()
                heatmap[z0:z1] = best.cpu().numpy()
                slice_max[z0:z1] = prob.amax(dim=(2, 3)).cpu().numpy()
        probabilities = {c: aggregate(slice_max[:, k], self.aggregation) for k, c in enumerate(self.classes)}
        scores = slice_max.max(axis=1) if len(self.classes) else np.zeros(nz)
        probabilities["any"] = aggregate(scores, self.aggregation)
        findings = Findings(model=self.info, labels=labels, segment_classes=self.classes,
                            probabilities=probabilities, heatmap=heatmap if heatmap.any() else None)
        return DeepResult(findings, scores)


class VolumeRegressorEngine(TorchEngine):
    """Seed 000: the whole volume -> hematoma volume (mL) from the cube-root regression head, and a
    Grad-CAM heatmap of that output on the last convolutional layer, mapped back to the volume grid.

    The prognosis head is reported only when the sidecar says ``"prognosis_trained": true`` (the
    shipped weights are trained on phantoms, which have no outcome labels: their prognosis head is
    untrained, so ``prognosis_probability`` stays None). Research only either way.
    """

    gradcam = True

    def __init__(self, name: str = "resnet3d_multitask", config: EngineConfig | None = None,
                 weights_dir: str | Path | None = None):
        super().__init__(name, config, weights_dir)
        self.input_size = tuple(int(v) for v in self.meta["input_size"])

    def analyse_detailed(self, volume: Volume) -> DeepResult:
        x, bbox = resnet3d_inputs(volume.hu, self.input_size)
        out = self.forward(x[None])
        volume_ml = float(cbrt_mm_to_ml(out["volume_cbrt"])[0])
        prognosis = None
        if self.meta.get("prognosis_trained", False):
            prognosis = float(torch.sigmoid(out["prognosis_logit"])[0])
        heatmap = None
        if self.gradcam:
            cam = grad_cam(self.model, torch.from_numpy(x[None]).to(self.device), target="volume_cbrt")
            crop = tuple(s.indices(n)[1] - s.indices(n)[0] for s, n in zip(bbox, volume.hu.shape))
            cam = F.interpolate(cam[:, None].float(), size=crop, mode="trilinear", align_corners=False)[0, 0]
            heatmap = np.zeros(volume.hu.shape, np.float32)
            heatmap[bbox] = cam.clamp(0, 1).cpu().numpy()
            if not heatmap.any():
                heatmap = None
        findings = Findings(model=self.info, labels=self._empty_labels(volume), segment_classes=(),
                            heatmap=heatmap, model_volume_ml=volume_ml, prognosis_probability=prognosis)
        return DeepResult(findings, np.asarray([volume_ml]))


ENGINES = {"resnet50_cls": SliceClassifierEngine, "dtvit": SliceClassifierEngine,
           "vgg_wso": SliceClassifierEngine, "dense_unet": DenseUNetEngine,
           "resnet3d_multitask": VolumeRegressorEngine}


def build_deep(name: str, config: EngineConfig | None = None, weights_dir: str | Path | None = None) -> Engine:
    """The adapter of ``name`` with its weights; **the classical engine when the weights are missing**
    (logged as a warning, so the node keeps analysing; ``info`` then names the classical engine, which
    the SR reports as the algorithm)."""
    config = config or EngineConfig()
    spec = get(name)
    try:
        return ENGINES[spec.name](spec.name, config, weights_dir)
    except FileNotFoundError as exc:
        log.warning("model_weights_missing", model=spec.name, reason=str(exc), fallback="classical")
        return ClassicalEngine(config.classical)
