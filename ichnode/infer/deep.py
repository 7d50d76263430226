"""Engine adapters for the five source-paper networks (``ichnode.models``), with their shipped weights.

Every adapter implements the ``Engine`` protocol of ``ichnode.domain`` (``info`` + ``analyse(volume)``).
One engine per registry ``task``; what differs between networks of a task is registry data, not code here:

======================  ====  =====================================================================
name                    seed  what it adds to Findings
======================  ====  =====================================================================
resnet50_cls            004   ``probabilities["any"]``: slice P(hemorrhage), aggregated over slices
dtvit                   001   ``probabilities["any"]``; IPH location only when its head is trained
vgg_wso                 003   ``probabilities["any"]`` + CAM heatmap; CAM boxes in ``analyse_detailed``;
                              subtype probabilities only when the subtype head is trained
dense_unet              002   label volume + segment classes, per-class probabilities, heatmap
resnet3d_multitask      000   ``model_volume_ml`` + Grad-CAM heatmap; prognosis only when trained
======================  ====  =====================================================================

Each value an engine adds is attributed to it in ``Findings.sources``, so that after a merge with other
engines the SR still names the network that produced it.

Weights: ``ichnode/weights/<name>.pt`` (a state dict, loaded with ``weights_only=True``) and its sidecar
``<name>.json`` (``small`` + ``overrides``: how to build the network; ``image_size`` / ``input_size``,
``classes``, and the flags of heads that need labels). **A head whose flag is not true is never read**
(``ichnode.models.heads``): the shipped DTViT location, VGG subtype and 3D ResNet prognosis heads were
trained without labels, so nothing of them reaches Findings, the SR or the worklist. **A model whose
weights are missing stops the node at start** (:func:`build_deep` raises a ConfigError naming it):
never another engine's figures under its name.

Execution: the device comes from ``EngineConfig.device`` (``auto``: CUDA when available, else the CPU
with ``torch.set_num_threads(config.threads)``); forward passes run under ``torch.inference_mode()`` and,
on CUDA only, autocast to float16 (mixed precision; the CPU stays float32). Slice-wise networks take
``config.batch_size`` slices per forward pass. The series score of a slice-wise model is
``config.aggregation`` over its slice scores: ``max``, or ``mean_topK`` (mean of the K highest slices).

Inputs: ``spec.input.hu_to_input(hu, size)`` at the size the sidecar records - the same function the
training code used (``ichnode.models.inputs``); maps at network resolution go back onto the HU grid with
the returned ``NetworkInput.to_native``.
"""
from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ichnode.config import EngineConfig
from ichnode.domain import ALL_CLASSES, Engine, Findings, Volume
from ichnode.errors import ConfigError
from ichnode.log import get_logger
from ichnode.models.explain import Box, cam_box, cam_heatmap, grad_cam
from ichnode.models.heads import CAM, GRAD_CAM, Head
from ichnode.models.registry import SLICE_CLASSIFICATION, SLICE_SEGMENTATION, VOLUME_REGRESSION, ModelSpec, get

log = get_logger("ichnode.infer.deep")

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"


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


def _batches(n: int, batch_size: int):
    for z0 in range(0, n, batch_size):
        yield z0, min(z0 + batch_size, n)


# ------------------------------------------------------------------------------------------ engines
@dataclass(frozen=True)
class DeepResult:
    """Findings plus what does not fit the stable Findings type."""

    findings: Findings
    slice_scores: np.ndarray  # (z,) per-slice score the series score aggregates
    boxes: dict[int, Box] = field(default_factory=dict)  # CAM heatmap: box per positive slice index


class TorchEngine:
    """Base: weights, device, mixed precision, batching, aggregation, which heads may be read."""

    task: str  # the registry task this engine runs

    def __init__(self, name: str, config: EngineConfig | None = None, weights_dir: str | Path | None = None):
        self.config = config or EngineConfig()
        self.spec: ModelSpec = get(name)
        if self.spec.task != self.task:
            raise ValueError(f"{self.spec.name} is a {self.spec.task} network, not {self.task}")
        self.device = select_device(self.config.device, self.config.threads)
        model, self.meta = load_weights(self.spec.name, weights_dir)
        self.model = model.to(self.device).eval()
        self.info = self.spec.info
        self.input_size = self.spec.input.trained_size(self.meta)
        self.batch_size = int(self.config.batch_size)
        self.aggregation = self.config.aggregation
        parse_aggregation(self.aggregation)
        for role, head in self.spec.heads.untrained(self.meta).items():
            log.info("model_head_not_reported", model=self.spec.name, head=role, flag=head.trained_flag)

    def reported(self, head: Head | None) -> Head | None:
        """``head`` when the weights' sidecar says it is trained, else None: an untrained head reports nothing."""
        return head if head is not None and head.trained(self.meta) else None

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


class SliceClassifierEngine(TorchEngine):
    """Slice P(hemorrhage) (the registry's ``hemorrhage`` head) -> series "any" (004, 001, 003).

    With a CAM heatmap (003): the CAM's hemorrhage channel, per slice normalised to [0, 1] and scaled by
    that slice's probability, so slices the network calls negative stay dark; the CAM box (20 % of the
    maximum, largest region) of every slice with P >= ``box_threshold`` is in ``analyse_detailed(...).boxes``.
    Subtype probabilities and the IPH location (of the highest-scoring slice) only from trained heads.
    No label volume (``segment_classes`` is empty).
    """

    task = SLICE_CLASSIFICATION
    box_threshold = 0.5

    def analyse_detailed(self, volume: Volume) -> DeepResult:
        heads = self.spec.heads
        subtypes, location = self.reported(heads.subtypes), self.reported(heads.location)
        hu = volume.hu
        nz = hu.shape[0]
        scores = np.zeros(nz, np.float64)
        subtype_scores = np.zeros((nz, len(subtypes.classes)), np.float64) if subtypes else None
        location_scores = np.zeros((nz, len(location.classes)), np.float64) if location else None
        heatmap = np.zeros(hu.shape, np.float32) if self.spec.heatmap == CAM else None
        for z0, z1 in _batches(nz, self.batch_size):
            x = self.spec.input.hu_to_input(hu[z0:z1], self.input_size)
            out = self.forward(x.array)
            p = heads.hemorrhage(out)
            scores[z0:z1] = p.cpu().numpy()
            if subtypes:
                subtype_scores[z0:z1] = subtypes(out).cpu().numpy()
            if location:
                location_scores[z0:z1] = location(out).cpu().numpy()
            if heatmap is not None:
                cam = cam_heatmap(out["cam"], 0, self.input_size)  # channel 0: hemorrhage
                cam = x.to_native(cam[:, None], hu.shape[1:])[:, 0]
                heatmap[z0:z1] = (cam * p[:, None, None]).clamp(0, 1).cpu().numpy()
        probabilities = {"any": aggregate(scores, self.aggregation)}
        if subtypes:
            for k, cls in enumerate(subtypes.classes):
                probabilities[cls] = aggregate(subtype_scores[:, k], self.aggregation)
        iph_location = None
        if location:
            iph_location = location.classes[int(np.argmax(location_scores[int(np.argmax(scores))]))]
        boxes: dict[int, Box] = {}
        if heatmap is not None:
            for z in np.flatnonzero(scores >= self.box_threshold):
                box = cam_box(heatmap[z])
                if box is not None:
                    boxes[int(z)] = box
            if not heatmap.any():
                heatmap = None
        findings = Findings(model=self.info, labels=self._empty_labels(volume), segment_classes=(),
                            probabilities=probabilities, heatmap=heatmap, iph_location=iph_location,
                            sources=Findings.produced_by(self.info, {Findings.HEATMAP: heatmap,
                                                                     Findings.IPH_LOCATION: iph_location},
                                                         probabilities))
        return DeepResult(findings, scores, boxes)


class DenseUNetEngine(TorchEngine):
    """Slice-wise segmentation (002). Per pixel and class a sigmoid probability (BCE-trained); a voxel is
    labelled with the most probable class when that probability is >= ``threshold`` (0.5). Logits are
    resized bilinearly from the network size back to the slice matrix before the sigmoid. Per-class
    probability = aggregation over slices of the slice's highest pixel probability; the heatmap is the
    highest class probability per voxel. The classes are the sidecar's (what the weights were trained on)."""

    task = SLICE_SEGMENTATION
    threshold = 0.5

    def __init__(self, name: str = "dense_unet", config: EngineConfig | None = None,
                 weights_dir: str | Path | None = None):
        super().__init__(name, config, weights_dir)
        self.classes = tuple(self.meta["classes"])
        unknown = [c for c in self.classes if c not in ALL_CLASSES]
        if unknown:
            raise ValueError(f"{self.spec.name} weights name unknown classes {unknown}")

    def analyse_detailed(self, volume: Volume) -> DeepResult:
        head = self.spec.heads.segmentation
        hu = volume.hu
        nz = hu.shape[0]
        labels = np.zeros(hu.shape, np.uint8)
        heatmap = np.zeros(hu.shape, np.float32)
        slice_max = np.zeros((nz, len(self.classes)), np.float64)
        for z0, z1 in _batches(nz, self.batch_size):
            x = self.spec.input.hu_to_input(hu[z0:z1], self.input_size)
            logits = self.forward(x.array)[head.output]
            with torch.inference_mode():
                prob = head.read(x.to_native(logits, hu.shape[1:]))
                best, cls = prob.max(dim=1)
                labels[z0:z1] = torch.where(best >= self.threshold, cls + 1, 0).to(torch.uint8).cpu().numpy()
                heatmap[z0:z1] = best.cpu().numpy()
                slice_max[z0:z1] = prob.amax(dim=(2, 3)).cpu().numpy()
        probabilities = {c: aggregate(slice_max[:, k], self.aggregation) for k, c in enumerate(self.classes)}
        scores = slice_max.max(axis=1) if len(self.classes) else np.zeros(nz)
        probabilities["any"] = aggregate(scores, self.aggregation)
        heatmap = heatmap if heatmap.any() else None
        findings = Findings(model=self.info, labels=labels, segment_classes=self.classes,
                            probabilities=probabilities, heatmap=heatmap,
                            sources=Findings.produced_by(self.info, {Findings.LABELS: labels,
                                                                     Findings.HEATMAP: heatmap}, probabilities))
        return DeepResult(findings, scores)


class VolumeRegressorEngine(TorchEngine):
    """The whole volume -> hematoma volume (mL) from the ``volume`` head (000), and with a Grad-CAM heatmap
    kind the Grad-CAM of that output on the last convolutional layer, mapped back to the volume grid.

    The prognosis head is read only when the sidecar says ``"prognosis_trained": true``; the shipped
    weights were trained on phantoms, which have no outcome labels, so ``prognosis_probability`` stays
    None. Research only either way.
    """

    task = VOLUME_REGRESSION
    gradcam = True

    def __init__(self, name: str = "resnet3d_multitask", config: EngineConfig | None = None,
                 weights_dir: str | Path | None = None):
        super().__init__(name, config, weights_dir)

    def analyse_detailed(self, volume: Volume) -> DeepResult:
        heads = self.spec.heads
        prognosis_head = self.reported(heads.prognosis)
        x = self.spec.input.hu_to_input(volume.hu, self.input_size)
        out = self.forward(x.array)
        volume_ml = float(heads.volume(out)[0])
        prognosis = float(prognosis_head(out)[0]) if prognosis_head else None
        heatmap = None
        if self.gradcam and self.spec.heatmap == GRAD_CAM:
            cam = grad_cam(self.model, torch.from_numpy(x.array).to(self.device), target=heads.volume.output)
            heatmap = x.to_native(cam[:, None].float(), volume.hu.shape)[0, 0].clamp(0, 1).cpu().numpy()
            if not heatmap.any():
                heatmap = None
        findings = Findings(model=self.info, labels=self._empty_labels(volume), segment_classes=(),
                            heatmap=heatmap, model_volume_ml=volume_ml, prognosis_probability=prognosis,
                            sources=Findings.produced_by(self.info, {Findings.MODEL_VOLUME: volume_ml,
                                                                     Findings.HEATMAP: heatmap,
                                                                     Findings.PROGNOSIS: prognosis}))
        return DeepResult(findings, np.asarray([volume_ml]))


ENGINES = {engine.task: engine for engine in (SliceClassifierEngine, DenseUNetEngine, VolumeRegressorEngine)}


def build_deep(name: str, config: EngineConfig | None = None, weights_dir: str | Path | None = None) -> Engine:
    """The adapter of ``name`` with its weights. Missing weights are a ConfigError at start: a node
    that silently ran another engine than the one configured would report that engine's figures
    under a configuration that names another."""
    config = config or EngineConfig()
    spec = get(name)
    try:
        return ENGINES[spec.task](spec.name, config, weights_dir)
    except FileNotFoundError as exc:
        raise ConfigError(f"engine.models: {spec.name}: no weights ({exc}); remove it from "
                          "engine.models or install its weights") from None
