"""BLAST-CT engine (ichnode.infer.blast_ct): weights, arithmetic, class mapping, config, the node.

The weights are not in the repository: tests that need them skip unless ../shared/data/blast-ct-v1
holds model_1.pt .. model_12.pt. The network runs on small crops only (a few 30^3 output tiles).
"""
from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pydicom
import pytest
import torch
import yaml

from ichnode.config import load_config
from ichnode.domain import Volume
from ichnode.errors import ConfigError
from ichnode.infer import blast_ct_net as net
from ichnode.results.read import sr_measurements, sr_texts, sr_value
from ichnode.synth import SynthSpec, make_phantom
from ichnode.synth.dicom_writer import write_phantom
from ichnode.synth.phantom import Grid

from tests.helpers import SHARED_DATA, dciodvfy_errors

WEIGHTS = SHARED_DATA / "blast-ct-v1"
needs_weights = pytest.mark.skipif(
    not all((WEIGHTS / f"model_{m}.pt").is_file() for m in range(1, 13)),
    reason=f"BLAST-CT weights absent: {WEIGHTS}/model_1.pt .. model_12.pt (see ../shared/data/README.md)")


def blast_config(**blast):
    return load_config(overrides={"engine.models": ["blast_ct"], "engine.threads": 2,
                                  "engine.blast_ct.weights_dir": str(WEIGHTS), "engine.blast_ct.members": [1],
                                  **{f"engine.blast_ct.{k}": v for k, v in blast.items()}})


def cropped_iph_phantom(slices: int = 6, width_mm: float = 56.0):
    """A 10 mL lobar IPH phantom (5 mm, 256 matrix) cut down to a small box around the lesion, so
    that the network runs on 1 x 2 x 2 tiles only."""
    ph = make_phantom(SynthSpec(subtype="iph", volume_ml=10.0, thickness_mm=5.0, matrix=256, seed=0))
    box = ph.truth()["bbox"]
    g = ph.grid
    half = int(width_mm / g.dy / 2)
    k0 = (box["z"][0] + box["z"][1]) // 2 - slices // 2
    i0 = (box["y"][0] + box["y"][1]) // 2 - half
    j0 = (box["x"][0] + box["x"][1]) // 2 - half
    sl = (slice(k0, k0 + slices), slice(i0, i0 + 2 * half), slice(j0, j0 + 2 * half))
    hu = ph.hu[sl]
    origin = g.origin + k0 * g.step + i0 * g.dy * g.col + j0 * g.dx * g.row
    grid = Grid(hu.shape, origin, g.step, g.row, g.col, g.dx, g.dy)
    return dataclasses.replace(ph, hu=hu, mask=ph.mask[sl], labels=ph.labels[sl], grid=grid)


# ------------------------------------------------------------------------------- weights, network
@needs_weights
def test_every_member_loads_strictly():
    for m in range(1, 13):
        model = net.load_member(WEIGHTS / f"model_{m}.pt")  # load_state_dict(strict=True) inside
        assert sum(p.numel() for p in model.parameters()) > 1_000_000


def test_blocks_of_tiles_give_the_same_logits_as_single_tiles():
    """The speed-up: a 60 x 30 x 30 output block equals its two 30^3 tiles run as the package does."""
    torch.manual_seed(0)
    model = net.DeepMedic().eval()
    for m in model.modules():  # non-trivial batch norm statistics
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    x = torch.rand(1, 1, 60 + 80, 110, 110) * 2 - 1
    with torch.inference_mode():
        block = model(x)
        tiles = torch.cat([model(x[:, :, :110]), model(x[:, :, 30:140])], dim=2)
    assert block.shape == (1, 5, 60, 30, 30)
    torch.testing.assert_close(block, tiles, rtol=1e-4, atol=1e-4)


def test_resampling_round_trip_and_grid_size():
    hu = np.random.default_rng(0).normal(40, 10, (7, 21, 21)).astype(np.float32)
    spacing = (5.0, 0.5, 0.5)
    one = net.resample_to_1mm(hu, spacing)
    assert one.shape == (31, 11, 11)  # round((n - 1) * spacing + 1), Python rounding as the package
    np.testing.assert_allclose(one[::5, :, :], hu[:, ::2, ::2], atol=1e-4)  # grid points coincide
    np.testing.assert_allclose(one[1, 0, 0], 0.8 * hu[0, 0, 0] + 0.2 * hu[1, 0, 0], rtol=1e-5)
    labels = np.arange(31 * 11 * 11, dtype=np.int64).reshape(31, 11, 11)
    back = net.labels_to_grid(labels, hu.shape, spacing)
    assert back.shape == hu.shape and back[3, 4, 5] == labels[15, 2, 3]  # 4*0.5 -> 2, 5*0.5 -> 2.5 -> 3


def test_normalisation_is_the_package_window():
    out = net.normalise(np.array([-1000, -15, 42.5, 100, 3000], dtype=np.float32))
    np.testing.assert_allclose(out, [-1, -1, 0, 1, 1], atol=1e-6)


# ------------------------------------------------------------------------------- engine on a phantom
@pytest.fixture(scope="module")
def phantom_run():
    from ichnode.infer.blast_ct import BlastCtEngine

    ph = cropped_iph_phantom()
    volume = Volume("1.2.3", "1.2.3.4", ph.hu.astype(np.float32), ph.spacing_mm, ())
    engine = BlastCtEngine(blast_config().engine)
    blast = engine.blast_labels(volume)
    return ph, engine, volume, blast, engine.analyse(volume)


@needs_weights
def test_synthetic_iph_is_found_as_iph(phantom_run):
    ph, engine, _, _, findings = phantom_run
    assert engine.info.name == "blast-ct" and engine.info.version == "2.1.0+members=1"
    assert findings.segment_classes == ("IPH", "EXTRA", "IVH")
    iph = findings.labels == 1
    assert (iph & ph.mask).sum() >= 0.8 * ph.mask.sum()
    assert iph.sum() <= 2.0 * ph.mask.sum()
    assert findings.labels.max() <= 3 and findings.labels.dtype == np.uint8


@needs_weights
def test_oedema_is_not_returned(phantom_run):
    _, _, _, blast, findings = phantom_run
    oedema = blast == 3
    assert oedema.any(), "the phantom's IPH should get a rim of perilesional oedema from BLAST-CT"
    assert not findings.labels[oedema].any()
    # the other classes map one to one: IPH 1 -> 1, extra-axial 2 -> 2, IVH 4 -> 3
    for blast_label, ours in ((1, 1), (2, 2), (4, 3)):
        assert (findings.labels[blast == blast_label] == ours).all()


# ------------------------------------------------------------------------------- configuration
def test_missing_weights_dir_is_a_config_error():
    with pytest.raises(ConfigError, match=r"engine\.blast_ct\.weights_dir.*None"):
        load_config(overrides={"engine.models": ["blast_ct"]})


def test_absent_weights_folder_names_key_and_value(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ConfigError, match=rf"engine\.blast_ct\.weights_dir: no such folder .*{missing.name}"):
        load_config(overrides={"engine.models": ["blast_ct"], "engine.blast_ct.weights_dir": str(missing)})


def test_absent_member_file_is_named(tmp_path):
    (tmp_path / "model_1.pt").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"has no model_2\.pt"):
        load_config(overrides={"engine.models": ["blast_ct"], "engine.blast_ct.weights_dir": str(tmp_path),
                               "engine.blast_ct.members": [1, 2]})


@pytest.mark.parametrize("members", [[0], [13], [1, 1], [], "some"])
def test_bad_members(tmp_path, members):
    with pytest.raises(ConfigError, match=r"engine\.blast_ct\.members"):
        load_config(overrides={"engine.models": ["blast_ct"], "engine.blast_ct.weights_dir": str(tmp_path),
                               "engine.blast_ct.members": members})


def test_weights_are_not_checked_when_blast_ct_is_not_configured():
    assert load_config().engine.blast_ct.weights_dir is None


@needs_weights
def test_all_members():
    from ichnode.infer.blast_ct import member_list

    cfg = blast_config(members="all").engine.blast_ct
    assert member_list(cfg) == tuple(range(1, 13))


# ------------------------------------------------------------------------------- the node
@needs_weights
def test_process_writes_seg_sr_sc_naming_the_algorithm(tmp_path):
    series = tmp_path / "in"
    write_phantom(series, cropped_iph_phantom())
    config = tmp_path / "ichnode.yaml"
    config.write_text(yaml.safe_dump({
        "engine": {"models": ["blast_ct"], "threads": 2,
                   "blast_ct": {"weights_dir": str(WEIGHTS), "members": [1]}},
        # the crop is 6 slices, 30 mm: below the default eligibility minimum
        "eligibility": {"min_slices": 4, "min_coverage_mm": 20.0},
    }))
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "ichnode.cli", "process", str(series), "-o", str(out),
                             "-c", str(config)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    files = sorted(p for p in out.rglob("*") if p.is_file())
    modalities = sorted(pydicom.dcmread(f, stop_before_pixels=True).Modality for f in files)
    assert "SEG" in modalities and "SR" in modalities and "OT" in modalities, modalities
    sr = pydicom.dcmread(next(f for f in files if f.name.startswith("SR_")))
    texts = " ".join(sr_texts(sr))
    assert "blast-ct" in texts and "2.1.0+members=1" in texts
    assert sr_value(sr, "IPH Intraparenchymal hemorrhage", "Volume", "segmentation") > 5.0
    groups = {m.group.split()[0] for m in sr_measurements(sr)}
    assert {"IPH", "IVH", "EXTRA"} <= groups
    assert "SAH" not in groups, "BLAST-CT has no SAH class: the SR must not report SAH (absent or not)"
    seg = pydicom.dcmread(next(f for f in files if f.name.startswith("SEG_")))
    assert {s.SegmentLabel for s in seg.SegmentSequence} == {"IPH", "EXTRA", "IVH"}
    if _have("dciodvfy"):
        for f in files:
            assert dciodvfy_errors(f) == [], f.name


def _have(tool: str) -> bool:
    import shutil

    return shutil.which(tool) is not None
