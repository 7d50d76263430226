"""Training and evaluation data from synthetic head CT phantoms (``ichnode.synth``), held in memory.

Phantoms have exact ground truth (hemorrhage mask on the written voxel grid, its volume, subtype,
shape and location), so they can train the networks that need pixel- or volume-level labels, which the
public 2D PNG set does not have:

* :func:`sample_specs` - a deterministic, seeded list of :class:`~ichnode.synth.SynthSpec` over subtypes
  (``iph``, ``ivh``, ``sah``, ``sdh``, ``edh``, ``none``), volumes (log-uniform), IPH shape and location,
  slice thickness and matrix. Phantom seeds are ``seed_start + i``: training and evaluation use disjoint
  ranges (:data:`TRAIN_SEED_START`, :data:`EVAL_SEED_START`), so anatomy, lesion shape and noise differ.
* :func:`build_slice_set` - seed 002 (Dense U-Net): 2D axial slices through the registry's
  ``get("dense_unet").input.hu_to_input`` (brain window [0, 80] HU -> [0, 1], square, anti-aliased resize
  to ``image_size``), the function the inference engine uses, with a class-index target per pixel. Targets
  are the truth mask downsampled by block averaging (a pixel is blood when at least half of the native
  pixels it covers are).
* :func:`build_volume_set` - seed 000 (3D ResNet): whole phantoms through
  ``get("resnet3d_multitask").input.hu_to_input`` (window [40, 110] HU, blank border cropped, resize to
  ``input_size``) with the true volume in mL.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ichnode.models.registry import get
from ichnode.synth import SynthSpec, make_phantom
from ichnode.synth.phantom import Phantom

#: Dense U-Net classes trained here (one sigmoid channel each), in the order of the network's output.
SEG_CLASSES = ("IPH", "IVH", "SAH", "SDH", "EDH")
SUBTYPE_CLASS = {"iph": "IPH", "ivh": "IVH", "sah": "SAH", "sdh": "SDH", "edh": "EDH"}
TRAIN_SEED_START = 10_000
EVAL_SEED_START = 900_000
DEFAULT_SUBTYPES = ("iph", "iph", "ivh", "sah", "sdh", "edh", "none")  # IPH twice: regular + irregular


def sample_specs(
    n: int,
    seed: int = 0,
    *,
    seed_start: int = TRAIN_SEED_START,
    subtypes: Sequence[str] = DEFAULT_SUBTYPES,
    volume_ml: tuple[float, float] = (2.0, 80.0),
    thicknesses: Sequence[float] = (5.0, 5.0, 2.5),
    matrices: Sequence[int] = (128, 256),
    fov_mm: float = 230.0,
) -> list[SynthSpec]:
    """``n`` phantom specs drawn with ``numpy.random.default_rng(seed)``; subtypes cycle in order (so every
    subtype is equally present), the rest is random: volume log-uniform in ``volume_ml``, IPH shape and
    location, thickness and matrix from the given lists. Phantom seeds are ``seed_start + i``."""
    rng = np.random.default_rng(seed)
    lo, hi = math.log(volume_ml[0]), math.log(volume_ml[1])
    specs = []
    for i in range(n):
        subtype = subtypes[i % len(subtypes)]
        specs.append(SynthSpec(
            subtype=subtype,
            volume_ml=0.0 if subtype == "none" else round(float(math.exp(rng.uniform(lo, hi))), 2),
            thickness_mm=float(rng.choice(thicknesses)),
            matrix=int(rng.choice(matrices)),
            fov_mm=fov_mm,
            seed=seed_start + i,
            shape=str(rng.choice(["regular", "irregular"])) if subtype == "iph" else "regular",
            location=str(rng.choice(["deep", "lobar", "infratentorial"])) if subtype == "iph" else "lobar",
        ))
    return specs


def render(spec: SynthSpec) -> Phantom:
    """``make_phantom`` without its volume-tolerance warning (the truth counts the actual voxels)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return make_phantom(spec)


def truth_classes(phantom: Phantom, classes: Sequence[str] = SEG_CLASSES) -> np.ndarray:
    """uint8 (z, y, x) class-index map of the phantom: 0 background, k = ``classes[k - 1]``."""
    out = np.zeros(phantom.mask.shape, np.uint8)
    if phantom.spec.subtype in SUBTYPE_CLASS and SUBTYPE_CLASS[phantom.spec.subtype] in classes:
        out[phantom.mask] = classes.index(SUBTYPE_CLASS[phantom.spec.subtype]) + 1
    return out


def downsample_labels(labels: np.ndarray, size: int) -> np.ndarray:
    """(z, H, W) class-index map -> (z, size, size): per class, block mean >= 0.5 (integer factors), else
    nearest neighbour. H == W is expected (square CT matrix)."""
    z, h, w = labels.shape
    if (h, w) == (size, size):
        return labels.copy()
    out = np.zeros((z, size, size), np.uint8)
    if h == w and h % size == 0:
        f = h // size
        for k in np.unique(labels[labels > 0]):
            frac = (labels == k).reshape(z, size, f, size, f).mean(axis=(2, 4))
            out[frac >= 0.5] = k
        return out
    iy = np.minimum(((np.arange(size) + 0.5) * h / size).astype(int), h - 1)
    ix = np.minimum(((np.arange(size) + 0.5) * w / size).astype(int), w - 1)
    return labels[:, iy][:, :, ix]


@dataclass
class SliceSet:
    """Dense U-Net training slices: inputs (N, 1, S, S) float32 in [0, 1], labels (N, S, S) uint8 class
    indices (0 background, k = classes[k - 1]); ``phantom`` / ``z`` say where each slice comes from."""

    inputs: np.ndarray
    labels: np.ndarray
    phantom: np.ndarray  # (N,) index into the spec list
    z: np.ndarray  # (N,) slice index in that phantom
    classes: tuple[str, ...]
    image_size: int

    def __len__(self) -> int:
        return len(self.inputs)

    def one_hot(self, index: np.ndarray | slice | None = None) -> np.ndarray:
        """(n, C, S, S) float32 per-class targets for BCE (one sigmoid channel per class)."""
        lab = self.labels if index is None else self.labels[index]
        return (lab[:, None] == np.arange(1, len(self.classes) + 1, dtype=np.uint8)[None, :, None, None]
                ).astype(np.float32)


def phantom_slices(phantom: Phantom, image_size: int, classes: Sequence[str] = SEG_CLASSES
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Every axial slice of one phantom as (inputs (z, 1, S, S), labels (z, S, S))."""
    inputs = get("dense_unet").input.hu_to_input(phantom.hu, (image_size, image_size)).array
    return inputs, downsample_labels(truth_classes(phantom, classes), image_size)


def build_slice_set(
    specs: Iterable[SynthSpec],
    image_size: int = 128,
    classes: Sequence[str] = SEG_CLASSES,
    *,
    max_positive: int = 10,
    negatives: int = 2,
    seed: int = 0,
) -> SliceSet:
    """Slices for seed 002: per phantom up to ``max_positive`` slices with hemorrhage (evenly spread when
    there are more) and ``negatives`` random slices without (hemorrhage-free phantoms: ``negatives`` + 2)."""
    rng = np.random.default_rng(seed)
    xs, ys, ps, zs = [], [], [], []
    for i, spec in enumerate(specs):
        x, y = phantom_slices(render(spec), image_size, classes)
        area = y.reshape(len(y), -1).astype(bool).sum(axis=1)
        pos, neg = np.flatnonzero(area > 0), np.flatnonzero(area == 0)
        if len(pos) > max_positive:
            pos = pos[np.round(np.linspace(0, len(pos) - 1, max_positive)).astype(int)]
        n_neg = negatives + (2 if len(pos) == 0 else 0)
        neg = rng.choice(neg, size=min(n_neg, len(neg)), replace=False) if len(neg) else neg
        keep = np.sort(np.concatenate([pos, neg]).astype(int))
        xs.append(x[keep])
        ys.append(y[keep])
        ps.append(np.full(len(keep), i, np.int32))
        zs.append(keep.astype(np.int32))
    return SliceSet(np.concatenate(xs), np.concatenate(ys), np.concatenate(ps), np.concatenate(zs),
                    tuple(classes), image_size)


@dataclass
class VolumeSet:
    """Seed 000 inputs (N, 1, D, H, W) float32 in [0, 1] and true hemorrhage volumes (N,) in mL."""

    inputs: np.ndarray
    volume_ml: np.ndarray
    subtypes: tuple[str, ...]
    input_size: tuple[int, int, int]

    def __len__(self) -> int:
        return len(self.inputs)


def build_volume_set(specs: Iterable[SynthSpec], input_size: Sequence[int] = (32, 64, 64)) -> VolumeSet:
    """Whole phantoms through seed 000's registry input (the inference engine's path) + true volume."""
    to_input = get("resnet3d_multitask").input.hu_to_input
    size = tuple(int(v) for v in input_size)
    xs, vs, st = [], [], []
    for spec in specs:
        p = render(spec)
        xs.append(to_input(p.hu, size).array[0])
        vs.append(p.volume_ml)
        st.append(spec.subtype)
    return VolumeSet(np.stack(xs).astype(np.float32), np.asarray(vs, np.float32), tuple(st), size)
