"""End to end: DCMTK's storescu sends Explicit VR Little Endian CT instances with SV and UV elements
(which the C-STORE header walk once refused, issue 13) to a running node, which stores them; and
a UN sequence of implicit VR items (CP-246), sent byte for byte, is stored too."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian

from ichnode.dicom.status import StoreStatus
from ichnode.synth import SynthSpec, write_series

from tests.dicom import conformance_corpus as corpus
from tests.reliability.peers import acknowledged, association, send_raw, start_node, storescu

SV, UV = [-(2**63), 2**63 - 1], [0, 2**64 - 1]


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    node = start_node(tmp_path_factory.mktemp("rawwalk-node"))
    yield node
    node.stop()


@pytest.fixture
def dcmtk_storescu(monkeypatch):
    """storescu is DCMTK's: the virtual environment's bin, where pynetdicom puts its own
    storescu, leaves PATH (it is on it when the environment is activated)."""
    venv_bin = Path(sys.executable).parent
    path = [folder for folder in os.environ["PATH"].split(os.pathsep) if Path(folder) != venv_bin]
    monkeypatch.setenv("PATH", os.pathsep.join(path))


def ct_with_sv_and_uv(folder):
    truth = write_series(folder, SynthSpec(subtype="none", matrix=64, seed=131))
    path = folder / truth["files"][0]
    ds = pydicom.dcmread(path)
    ds.SelectorSVValue, ds.SelectorUVValue = SV, UV
    ds.save_as(path)
    return path


def every_vr_with_un_of_undefined_length(folder):
    """The corpus instance with all 34 VRs and a UN sequence of implicit VR items (CP-246;
    storescu re-encodes it, the raw send below does not)."""
    folder.mkdir()
    return corpus.spliced(corpus.base_instance(folder), "un-undefined-implicit-items",
                          folder / "every-vr.dcm")


@pytest.mark.parametrize("make", [ct_with_sv_and_uv, every_vr_with_un_of_undefined_length])
def test_storescu_sends_sv_and_uv_elements_and_the_node_stores_them(node, tmp_path, make,
                                                                    dcmtk_storescu):
    path = make(tmp_path / "instance")
    sent_ds = pydicom.dcmread(path)
    assert sent_ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    sent = storescu([path], node.port)
    output = sent.stdout + sent.stderr
    assert acknowledged(output) == {str(path)}, output[-2000:]
    stored = node.store.instance_path(str(sent_ds.SOPInstanceUID))
    assert stored is not None
    stored_ds = pydicom.dcmread(stored)
    assert (stored_ds.SelectorSVValue, stored_ds.SelectorUVValue) == (sent_ds.SelectorSVValue,
                                                                     sent_ds.SelectorUVValue)


def test_un_sequence_of_implicit_vr_items_sent_as_is_is_stored(node, tmp_path):
    path = every_vr_with_un_of_undefined_length(tmp_path / "instance")
    assert b"UN\0\0\xff\xff\xff\xff" in path.read_bytes()
    with association(node.port) as assoc:
        assert send_raw(assoc, path) == StoreStatus.SUCCESS
    assert node.store.instance_path(str(pydicom.dcmread(path).SOPInstanceUID)) is not None
