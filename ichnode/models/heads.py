"""What is read from a network's outputs, head by head, and whether it may be read at all.

A :class:`Head` names one output of ``forward``, turns its raw values into what is reported
(probabilities, millilitres) and, for a head that needs labels the training data may lack, names the
sidecar key (``<name>.json`` beside the weights) that says it was trained. **A head whose flag is not
``true`` reports nothing**: the engines do not read it, so no number from it reaches the SR, the worklist
or a notification (:meth:`Head.trained`; a missing flag counts as untrained).

Training and serving read P(hemorrhage) through the same :class:`Head`, so they cannot disagree.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch

# heatmap kinds (ModelSpec.heatmap)
CAM = "cam"  # class activation map of the network's "cam" output, hemorrhage channel
GRAD_CAM = "grad_cam"  # Grad-CAM of the volume head on the last convolutional layer
CLASS_PROBABILITY = "class_probability"  # highest per-pixel class probability of a segmentation


def softmax_channel(logits: torch.Tensor, index: int) -> torch.Tensor:
    return torch.softmax(logits, dim=1)[:, index]


def softmax(logits: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits, dim=1)


def sigmoid_channel(logits: torch.Tensor, index: int) -> torch.Tensor:
    return torch.sigmoid(logits[:, index])


def sigmoid_channels_from(logits: torch.Tensor, start: int) -> torch.Tensor:
    return torch.sigmoid(logits[:, start:])


@dataclass(frozen=True)
class Head:
    output: str  # key of forward's dict
    read: Callable[[torch.Tensor], torch.Tensor]  # raw output (float32) -> the reported values
    meaning: str  # how it reads, for sidecars and model cards
    classes: tuple[str, ...] = ()  # names along the last axis of read's result, where it has one
    trained_flag: str | None = None  # sidecar key that must be true; None: trained with the network

    def __call__(self, out: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.read(out[self.output].float())

    def trained(self, meta: Mapping[str, Any]) -> bool:
        return self.trained_flag is None or meta.get(self.trained_flag) is True


@dataclass(frozen=True)
class Heads:
    """The heads of one network by role; a role the network lacks is None."""

    hemorrhage: Head | None = None  # P(hemorrhage) of a slice
    subtypes: Head | None = None  # P(subtype) of a slice, one per class
    location: Head | None = None  # IPH location class probabilities of a slice
    segmentation: Head | None = None  # per-pixel class probabilities (classes from the sidecar)
    volume: Head | None = None  # hematoma volume, mL
    prognosis: Head | None = None  # P(death), research only

    def present(self) -> dict[str, Head]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def needing_labels(self) -> dict[str, Head]:
        """Heads that are trained only when the data has their labels (they carry a sidecar flag)."""
        return {role: h for role, h in self.present().items() if h.trained_flag is not None}

    def untrained(self, meta: Mapping[str, Any]) -> dict[str, Head]:
        return {role: h for role, h in self.present().items() if not h.trained(meta)}
