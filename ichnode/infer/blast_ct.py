"""BLAST-CT as an engine: ``engine.models: [blast_ct]``.

BLAST-CT (Monteiro et al., Lancet Digital Health 2020; PyPI ``blast-ct`` 2.1.0, Apache-2.0) is a 3D
DeepMedic that segments four lesion classes on head CT. Its network and inference arithmetic are
re-implemented in :mod:`ichnode.infer.blast_ct_net` (same labels as the package's own pipeline); the
weights are not shipped: ``engine.blast_ct.weights_dir`` names the folder with ``model_1.pt`` ..
``model_12.pt`` (state dicts). See docs/models/blast-ct.md.

Class mapping into Findings (label value k means ``segment_classes[k - 1]``):

=====================================  ==========================================================
BLAST-CT class                         ichnode
=====================================  ==========================================================
1 intraparenchymal hemorrhage          ``IPH``
2 extra-axial hemorrhage               ``EXTRA``: extra-axial (SDH or EDH, not told apart)
3 perilesional oedema                  dropped: oedema is not hemorrhage (label 0)
4 intraventricular hemorrhage          ``IVH``
=====================================  ==========================================================

BLAST-CT has no subarachnoid class: its Findings do not name SAH, so the SR says nothing about SAH.

The volume's stack is taken as its own grid (a gantry-tilted series is seen as the network would see
a tilted scan). Resampling to 1 mm is linear, the labels go back to the volume's grid by nearest
neighbour, as in the package.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ichnode.config import BLAST_CT_MEMBERS, BlastCtConfig, EngineConfig
from ichnode.domain import Findings, ModelInfo, Volume
from ichnode.errors import ConfigError
from ichnode.infer import blast_ct_net as net
from ichnode.log import get_logger

log = get_logger("ichnode.infer.blast_ct")

NAME = "blast-ct"
PACKAGE_VERSION = "2.1.0"
# BLAST-CT label -> ichnode class (None: not a hemorrhage, left out)
CLASS_MAP = {1: "IPH", 2: "EXTRA", 3: None, 4: "IVH"}
SEGMENT_CLASSES = ("IPH", "EXTRA", "IVH")


def member_list(cfg: BlastCtConfig) -> tuple[int, ...]:
    """``members`` as numbers ("all": 1..12)."""
    if isinstance(cfg.members, str):
        return tuple(range(1, BLAST_CT_MEMBERS + 1))
    return tuple(cfg.members)


def _lookup() -> np.ndarray:
    """BLAST-CT label -> label value in SEGMENT_CLASSES (0 for background and oedema)."""
    table = np.zeros(net.NUM_CLASSES, dtype=np.uint8)
    for label, name in CLASS_MAP.items():
        if name is not None:
            table[label] = SEGMENT_CLASSES.index(name) + 1
    return table


class BlastCtEngine:
    """Runs one BLAST-CT member or an ensemble (probabilities averaged over members) on a Volume."""

    def __init__(self, config: EngineConfig):
        from ichnode.infer.deep import select_device  # shared device rule of the deep engines

        cfg = config.blast_ct
        self.members = member_list(cfg)
        weights = cfg.weights_dir
        if weights is None or not Path(weights).is_dir():
            raise ConfigError(f"engine.blast_ct.weights_dir: no such folder (got "
                              f"{str(weights) if weights else None!r}); it must hold model_1.pt .. model_12.pt")
        missing = [m for m in self.members if not (Path(weights) / f"model_{m}.pt").is_file()]
        if missing:
            raise ConfigError(f"engine.blast_ct.weights_dir: has no model_{missing[0]}.pt (got {str(weights)!r})")
        self.device = select_device(cfg.device or config.device, config.threads)
        self.models = [net.load_member(Path(weights) / f"model_{m}.pt", self.device) for m in self.members]
        self.chunk = net.chunk_for(self.device)
        self.info = ModelInfo(NAME, f"{PACKAGE_VERSION}+members={','.join(map(str, self.members))}")
        self._air_label: int | None = None
        self._table = _lookup()

    def labels_1mm(self, volume: Volume) -> np.ndarray:
        """BLAST-CT's own labels (0..4) on its 1 mm grid (for checks against the package)."""
        image = net.normalise(net.resample_to_1mm(volume.hu, volume.spacing_mm))
        if self._air_label is None:
            self._air_label = net.constant_label(self.models, self.device)
        return net.predict_labels(image, self.models, self.device, self.chunk, self._air_label)

    def blast_labels(self, volume: Volume) -> np.ndarray:
        """BLAST-CT's labels (0..4) on the volume's grid, as the package would write them."""
        return net.labels_to_grid(self.labels_1mm(volume), volume.hu.shape, volume.spacing_mm)

    def analyse(self, volume: Volume) -> Findings:
        start = time.perf_counter()
        blast = self.blast_labels(volume)
        labels = self._table[blast]
        log.info("blast_ct_done", seconds=round(time.perf_counter() - start, 2), members=len(self.members),
                 device=self.device.type, oedema_voxels_dropped=int((blast == 3).sum()))
        return Findings(model=self.info, labels=labels, segment_classes=SEGMENT_CLASSES,
                        sources=Findings.produced_by(self.info, {Findings.LABELS: labels}))
