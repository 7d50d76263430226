"""Name -> network: builder, paper (default) and small hyper-parameters, version, expected input.

>>> spec = get("resnet50_cls")
>>> model = spec.build()              # the paper's configuration
>>> tiny = spec.build(small=True)     # small variant for tests / CPU training
>>> x = spec.input.prepare(hu_slice)  # numpy float32, no batch axis

``version`` changes whenever the architecture or preprocessing changes in a way that makes saved
weights or results incomparable; ``info`` is the ``ModelInfo`` the engines report.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
from torch import nn

from ichnode.domain import ModelInfo
from ichnode.models import preprocess as pp
from ichnode.models.dense_unet import PAPER_CLASSES as DENSE_UNET_CLASSES
from ichnode.models.dense_unet import PAPER_CONFIG as DENSE_UNET_PAPER
from ichnode.models.dense_unet import SMALL_CONFIG as DENSE_UNET_SMALL
from ichnode.models.dense_unet import DenseUNet
from ichnode.models.dtvit import ICH_CLASSES, LOCATION_CLASSES, DTViT
from ichnode.models.dtvit import PAPER_CONFIG as DTVIT_PAPER
from ichnode.models.dtvit import SMALL_CONFIG as DTVIT_SMALL
from ichnode.models.resnet3d_multitask import PAPER_CONFIG as R3D_PAPER
from ichnode.models.resnet3d_multitask import SMALL_CONFIG as R3D_SMALL
from ichnode.models.resnet3d_multitask import ResNet3DMultiTask
from ichnode.models.resnet50_cls import CLASSES as R50_CLASSES
from ichnode.models.resnet50_cls import PAPER_CONFIG as R50_PAPER
from ichnode.models.resnet50_cls import SMALL_CONFIG as R50_SMALL
from ichnode.models.resnet50_cls import ResNet50Classifier
from ichnode.models.vgg_wso import CLASSES as VGG_CLASSES
from ichnode.models.vgg_wso import PAPER_CONFIG as VGG_PAPER
from ichnode.models.vgg_wso import SMALL_CONFIG as VGG_SMALL
from ichnode.models.vgg_wso import VGG16WSO


@dataclass(frozen=True)
class InputSpec:
    """What ``forward`` expects for one sample (batch axis not included)."""

    dims: int  # 2: one axial slice, 3: a whole volume
    shape: tuple[int, ...]  # (C, H, W) or (C, D, H, W) of the paper configuration
    small_shape: tuple[int, ...]  # a valid input of the small configuration
    values: str  # what the numbers are
    prepare: Callable[[np.ndarray], np.ndarray]  # HU slice (y, x) / volume (z, y, x) -> input


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
            values="HU window [40, 110] -> [0, 1], blank border cropped, linear resize to 32x224x224",
            prepare=pp.prepare_resnet3d_multitask,
        ),
        outputs=("volume_cbrt", "prognosis_logit", "features"),
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
            values="fixation device removed, brain window -> [0, 1], 3 channels, ImageNet mean/std",
            prepare=pp.prepare_dtvit,
        ),
        outputs=("ich_logits", "location_logits"),
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
            values="brain window (WL 40, WW 80) -> [0, 1], 512x512; H, W multiples of 32",
            prepare=pp.prepare_dense_unet,
        ),
        outputs=("seg_logits",),
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
            values="Hounsfield units (the network windows itself), 512x512; H, W multiples of 16",
            prepare=pp.prepare_vgg_wso,
        ),
        outputs=("logits", "cam", "features"),
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
            values="brain window (WL 40, WW 80) -> [0, 1], 224x224, 3 channels",
            prepare=pp.prepare_resnet50_cls,
        ),
        outputs=("logits", "features"),
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
