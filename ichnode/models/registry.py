"""Name -> network: everything that differs between the five networks, as data.

>>> spec = get("resnet50_cls")
>>> model = spec.build()                                    # the paper's configuration
>>> tiny = spec.build(small=True)                           # small variant for tests / CPU training
>>> x = spec.input.hu_to_input(hu_slices, (128, 128)).array  # (n, 3, 128, 128) float32

Per entry: builder and configurations; the **one** HU -> input function (``input``, see
:mod:`ichnode.models.inputs`) that training, evaluation and serving all use; the output heads and which
of them need a sidecar flag before anything is reported (``heads``, see :mod:`ichnode.models.heads`); the
heatmap kind; which engine runs it (``task``); and which modules ``ichnode train`` / ``ichnode evaluate``
run for it (``trainer`` / ``evaluator``, each with a ``cli(model, argv)`` function).

``version`` changes whenever the architecture or preprocessing changes in a way that makes saved
weights or results incomparable; ``info`` is the ``ModelInfo`` the engines report.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from torch import nn

from ichnode.domain import ModelInfo
from ichnode.models import inputs
from ichnode.models.dense_unet import PAPER_CLASSES as DENSE_UNET_CLASSES
from ichnode.models.dense_unet import PAPER_CONFIG as DENSE_UNET_PAPER
from ichnode.models.dense_unet import SMALL_CONFIG as DENSE_UNET_SMALL
from ichnode.models.dense_unet import DenseUNet
from ichnode.models.dtvit import ICH_CLASSES, LOCATION_CLASSES, DTViT
from ichnode.models.dtvit import PAPER_CONFIG as DTVIT_PAPER
from ichnode.models.dtvit import SMALL_CONFIG as DTVIT_SMALL
from ichnode.models.heads import (CAM, CLASS_PROBABILITY, GRAD_CAM, Head, Heads, sigmoid_channel,
                                  sigmoid_channels_from, softmax, softmax_channel)
from ichnode.models.resnet3d_multitask import PAPER_CONFIG as R3D_PAPER
from ichnode.models.resnet3d_multitask import SMALL_CONFIG as R3D_SMALL
from ichnode.models.resnet3d_multitask import ResNet3DMultiTask, cbrt_mm_to_ml
from ichnode.models.resnet50_cls import CLASSES as R50_CLASSES
from ichnode.models.resnet50_cls import PAPER_CONFIG as R50_PAPER
from ichnode.models.resnet50_cls import SMALL_CONFIG as R50_SMALL
from ichnode.models.resnet50_cls import ResNet50Classifier
from ichnode.models.vgg_wso import CLASSES as VGG_CLASSES
from ichnode.models.vgg_wso import PAPER_CONFIG as VGG_PAPER
from ichnode.models.vgg_wso import SMALL_CONFIG as VGG_SMALL
from ichnode.models.vgg_wso import VGG16WSO


# tasks (ModelSpec.task): which engine of ichnode.infer.deep runs the network
SLICE_CLASSIFICATION = "slice_classification"
SLICE_SEGMENTATION = "slice_segmentation"
VOLUME_REGRESSION = "volume_regression"


@dataclass(frozen=True)
class InputSpec:
    """What ``forward`` expects and how HU become it."""

    dims: int  # 2: axial slices, 3: a whole volume
    shape: tuple[int, ...]  # (C, H, W) or (C, D, H, W) of one sample in the paper configuration
    small_shape: tuple[int, ...]  # a valid sample of the small configuration
    values: str  # what the numbers are
    pipeline: Callable[[np.ndarray, tuple[int, ...]], inputs.NetworkInput]  # see hu_to_input
    size_multiple: int = 1  # every spatial size must be a multiple of this (pooling / patch stride)

    def hu_to_input(self, hu: np.ndarray, size: Sequence[int] | None = None) -> inputs.NetworkInput:
        """HU slices (n, y, x) (2D) or one HU volume (z, y, x) (3D) -> the network input at spatial ``size``
        (default: the paper's), batch axis first. The only way HU become this network's input."""
        size = tuple(int(v) for v in (self.shape[1:] if size is None else size))
        if len(size) != self.dims or any(v < 1 or v % self.size_multiple for v in size):
            raise ValueError(f"input size {size}: need {self.dims} sizes, multiples of {self.size_multiple}")
        return self.pipeline(hu, size)

    def trained_size(self, meta: Mapping[str, Any]) -> tuple[int, ...]:
        """The spatial input size the weights' sidecar records (``image_size``: 2D, ``input_size``: 3D)."""
        if self.dims == 2:
            return (int(meta["image_size"]),) * 2
        return tuple(int(v) for v in meta["input_size"])


@dataclass(frozen=True)
class ModelSpec:
    name: str
    seed: str  # source paper in the seeds folder
    paper: str
    version: str
    builder: Callable[..., nn.Module]
    defaults: Mapping[str, Any]  # the paper's configuration
    small: Mapping[str, Any]  # small variant (same architecture, fewer/narrower layers)
    input: InputSpec
    outputs: tuple[str, ...]  # keys of forward's dict
    task: str  # SLICE_CLASSIFICATION | SLICE_SEGMENTATION | VOLUME_REGRESSION
    heads: Heads
    trainer: str  # module run by `ichnode train MODEL`
    evaluator: str  # module run by `ichnode evaluate MODEL`
    heatmap: str | None = None  # heads.CAM | heads.GRAD_CAM | heads.CLASS_PROBABILITY
    size_option: str | None = None  # build option fixed by the input size (a ViT's position embedding)
    class_names: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # per output with a class axis

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(self.name, self.version)

    def config(self, small: bool = False, **overrides: Any) -> dict[str, Any]:
        cfg = dict(self.small if small else self.defaults)
        cfg.update(overrides)
        return cfg

    def build(self, small: bool = False, **overrides: Any) -> nn.Module:
        return self.builder(**self.config(small, **overrides))


def _frozen(d: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(d))


_SPECS = (
    ModelSpec(
        name="resnet3d_multitask",
        seed="000",
        paper="Gong et al. 2023, Front. Neurosci. 17:1118340 - multi-task 3D ResNet-34",
        version="1.0.0",
        builder=ResNet3DMultiTask,
        defaults=_frozen(R3D_PAPER),
        small=_frozen(R3D_SMALL),
        input=InputSpec(
            dims=3,
            shape=(1, 32, 224, 224),
            small_shape=(1, 8, 32, 32),
            values="window [40, 110] HU -> [0, 1], blank border cropped, anti-aliased in-plane then linear z "
                   "resize (paper: 32x224x224)",
            pipeline=inputs.resnet3d_multitask_input,
        ),
        outputs=("volume_cbrt", "prognosis_logit", "features"),
        task=VOLUME_REGRESSION,
        heads=Heads(
            volume=Head("volume_cbrt", cbrt_mm_to_ml, "hematoma volume (mL) = cbrt_mm_to_ml(volume_cbrt)"),
            # needs outcome labels; phantoms have none
            prognosis=Head("prognosis_logit", torch.sigmoid, "P(death) = sigmoid(prognosis_logit)",
                           trained_flag="prognosis_trained"),
        ),
        heatmap=GRAD_CAM,
        trainer="ichnode.training.regress3d",
        evaluator="ichnode.training.evaluate_synthetic",
    ),
    ModelSpec(
        name="dtvit",
        seed="001",
        paper="Fan, Lu, Fan - Dual-Task Vision Transformer (DTViT), ViT-B/16 encoder",
        version="1.0.0",
        builder=DTViT,
        defaults=_frozen(DTVIT_PAPER),
        small=_frozen(DTVIT_SMALL),
        input=InputSpec(
            dims=2,
            shape=(3, 224, 224),
            small_shape=(3, 32, 32),
            values="8-bit brain window (WL 40, WW 80) -> [0, 1], square, resized, 3 channels, ImageNet "
                   "mean/std (the paper's fixation-device removal is not applied: see ichnode.models.inputs)",
            pipeline=inputs.dtvit_input,
            size_multiple=16,  # the patch size
        ),
        outputs=("ich_logits", "location_logits"),
        task=SLICE_CLASSIFICATION,
        heads=Heads(
            hemorrhage=Head("ich_logits", partial(softmax_channel, index=1),
                            "P(hemorrhage) = softmax(ich_logits)[:, 1]"),
            # needs IPH location labels; head-ct-png has none
            location=Head("location_logits", softmax, "softmax(location_logits)", LOCATION_CLASSES,
                          trained_flag="location_trained"),
        ),
        trainer="ichnode.training.classify",
        evaluator="ichnode.training.crossval",
        size_option="img_size",
        class_names=_frozen({"ich_logits": ICH_CLASSES, "location_logits": LOCATION_CLASSES}),
    ),
    ModelSpec(
        name="dense_unet",
        seed="002",
        paper="Xu et al. 2021, Front. Neurosci. 14:541817 - Dense U-Net (DenseNet blocks 3, 6, 12, 8)",
        version="1.0.0",
        builder=DenseUNet,
        defaults=_frozen(DENSE_UNET_PAPER),
        small=_frozen(DENSE_UNET_SMALL),
        input=InputSpec(
            dims=2,
            shape=(1, 512, 512),
            small_shape=(1, 64, 64),
            values="brain window (WL 40, WW 80) -> [0, 1], square, anti-aliased resize (paper: 512x512)",
            pipeline=inputs.dense_unet_input,
            size_multiple=32,  # five 2x poolings
        ),
        outputs=("seg_logits",),
        task=SLICE_SEGMENTATION,
        heads=Heads(segmentation=Head("seg_logits", torch.sigmoid, "sigmoid(seg_logits) per class channel")),
        heatmap=CLASS_PROBABILITY,
        trainer="ichnode.training.segment",
        evaluator="ichnode.training.evaluate_synthetic",
        class_names=_frozen({"seg_logits": DENSE_UNET_CLASSES}),
    ),
    ModelSpec(
        name="vgg_wso",
        seed="003",
        paper="He et al. 2024, Heliyon e30270 - VGG-16 + window-setting optimisation + attention fusion",
        version="1.0.0",
        builder=VGG16WSO,
        defaults=_frozen(VGG_PAPER),
        small=_frozen(VGG_SMALL),
        input=InputSpec(
            dims=2,
            shape=(1, 512, 512),
            small_shape=(1, 64, 64),
            values="Hounsfield units, 8-bit brain window (the network windows itself), square, resized "
                   "(paper: 512x512)",
            pipeline=inputs.vgg_wso_input,
            size_multiple=16,  # four 2x poolings
        ),
        outputs=("logits", "cam", "features"),
        task=SLICE_CLASSIFICATION,
        heads=Heads(
            hemorrhage=Head("logits", partial(sigmoid_channel, index=0), "P(hemorrhage) = sigmoid(logits[:, 0])"),
            # needs subtype labels; head-ct-png has none
            subtypes=Head("logits", partial(sigmoid_channels_from, start=1), "sigmoid(logits[:, 1:])",
                          VGG_CLASSES[1:], trained_flag="subtypes_trained"),
        ),
        heatmap=CAM,
        trainer="ichnode.training.classify",
        evaluator="ichnode.training.crossval",
        class_names=_frozen({"logits": VGG_CLASSES, "cam": VGG_CLASSES}),
    ),
    ModelSpec(
        name="resnet50_cls",
        seed="004",
        paper="ResNet-50 hemorrhage yes/no classifier (224x224x3 in [0, 1])",
        version="1.0.0",
        builder=ResNet50Classifier,
        defaults=_frozen(R50_PAPER),
        small=_frozen(R50_SMALL),
        input=InputSpec(
            dims=2,
            shape=(3, 224, 224),
            small_shape=(3, 64, 64),
            values="8-bit brain window (WL 40, WW 80) -> [0, 1], square, resized, 3 channels (paper: 224x224)",
            pipeline=inputs.resnet50_cls_input,
        ),
        outputs=("logits", "features"),
        task=SLICE_CLASSIFICATION,
        heads=Heads(hemorrhage=Head("logits", partial(softmax_channel, index=1),
                                    "P(hemorrhage) = softmax(logits)[:, 1]")),
        trainer="ichnode.training.classify",
        evaluator="ichnode.training.crossval",
        class_names=_frozen({"logits": R50_CLASSES}),
    ),
)

REGISTRY: Mapping[str, ModelSpec] = MappingProxyType({s.name: s for s in _SPECS})
_BY_SEED = {s.seed: s for s in _SPECS}


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def get(name: str) -> ModelSpec:
    """Spec by name (or by seed number, e.g. "003")."""
    if name in REGISTRY:
        return REGISTRY[name]
    if name in _BY_SEED:
        return _BY_SEED[name]
    raise KeyError(f"unknown model {name!r}; known: {', '.join(REGISTRY)}")


def build(name: str, small: bool = False, **overrides: Any) -> nn.Module:
    return get(name).build(small=small, **overrides)
