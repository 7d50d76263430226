"""Bad input corpus, sent through a running node over DICOM (pynetdicom as a broken or hostile
sender; raw bytes where a real SCU would refuse to send them). Each case checks the DIMSE status
and/or the "not analysed" reason, and that nothing is lost or written where it should not be;
after each case the node must still answer C-ECHO and store a good instance."""
from __future__ import annotations

import random
import socket

import pydicom
import pytest
from pydicom.uid import MRImageStorage

from ichnode.dicom.status import StoreStatus
from ichnode.store.jobs import JobState
from ichnode.synth import SynthSpec, write_series

from tests.helpers import wait_until
from tests.reliability.peers import (association, dataset_bytes, echo_ok, files_under, send_dataset,
                                     send_raw, start_node, write_with_meta)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns on what we send
MATRIX = 64


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad-input")
    node = start_node(tmp, **{"assembly.quiet_seconds": 1.0, "node.network_timeout_s": 5.0})
    node.tmp = tmp
    canary = write_series(tmp / "canary", SynthSpec(subtype="none", matrix=MATRIX, seed=80))
    node.canary = pydicom.dcmread(tmp / "canary" / canary["files"][0])
    yield node
    node.stop()


@pytest.fixture(autouse=True)
def still_serving(node):
    yield
    assert echo_ok(node.port), "the node stopped answering C-ECHO"
    with association(node.port) as assoc:
        assert send_dataset(assoc, node.canary) == StoreStatus.SUCCESS, "the node stopped storing"


_seeds = iter(range(800, 900))


def make_series(node, name, **spec) -> tuple[dict, list[pydicom.Dataset]]:
    folder = node.tmp / name
    truth = write_series(folder, SynthSpec(matrix=MATRIX, seed=next(_seeds), **spec))
    return truth, [pydicom.dcmread(folder / f) for f in truth["files"]]


def send_all(node, datasets) -> list[int]:
    with association(node.port) as assoc:
        return [send_dataset(assoc, ds) for ds in datasets]


def job_of(node, series_uid, timeout=60):
    def finished():
        for job in node.store.jobs((JobState.DONE, JobState.FAILED)):
            if node.store.series(job.series_key).series_uid == series_uid:
                return job
        return None
    return wait_until(finished, timeout, what=f"the job of series …{series_uid[-8:]}")


def recorded(node, sop_uid) -> bool:
    return node.store.instance_path(str(sop_uid)) is not None


# --- refused at C-STORE --------------------------------------------------------------------------

def test_truncated_file(node):
    _, (ds, *_) = make_series(node, "truncated")
    src = node.tmp / "truncated" / "CT0000.dcm"
    meta, body = dataset_bytes(src)
    in_pixels = write_with_meta(node.tmp / "trunc-pixels.dcm", meta, body[:len(body) - 3000])
    in_header = write_with_meta(node.tmp / "trunc-header.dcm", meta, body[:300])
    with association(node.port) as assoc:
        assert send_raw(assoc, in_pixels) == StoreStatus.CANNOT_UNDERSTAND
        assert send_raw(assoc, in_header) == StoreStatus.CANNOT_UNDERSTAND
    assert not recorded(node, ds.SOPInstanceUID)
    assert not files_under(node.config.spool_dir, "*.partial")


def test_garbage_bytes(node):
    _, (ds, *_) = make_series(node, "garbage")
    meta, _ = dataset_bytes(node.tmp / "garbage" / "CT0000.dcm")
    rng = random.Random(4)
    bodies = [bytes(rng.getrandbits(8) for _ in range(4096)), b"\x00" * 64, b"\xff" * 513]
    with association(node.port) as assoc:
        for i, body in enumerate(bodies):
            path = write_with_meta(node.tmp / f"garbage{i}.dcm", meta, body)
            assert send_raw(assoc, path) == StoreStatus.CANNOT_UNDERSTAND
    # Not even DICOM: random bytes on the TCP port (no valid PDU type). The node drops the
    # connection. (A valid PDU header announcing bytes that never come: see test_access.py.)
    with socket.create_connection(("127.0.0.1", node.port), timeout=30) as sock:
        sock.sendall(b"\xff" + bytes(rng.getrandbits(8) for _ in range(2047)))
        try:
            answer = sock.recv(4096)
        except ConnectionResetError:
            answer = b""
        assert answer == b"" or answer[0] == 0x07  # closed, or an A-ABORT PDU
    assert not recorded(node, ds.SOPInstanceUID)


def test_wrong_sop_class_for_context(node):
    _, (ds, *_) = make_series(node, "wrong-class")
    ds.SOPClassUID = MRImageStorage  # the dataset says MR; it is sent under the CT context
    ds.save_as(node.tmp / "mr-in-ct.dcm", enforce_file_format=True)
    meta, body = dataset_bytes(node.tmp / "mr-in-ct.dcm")
    meta.file_meta.MediaStorageSOPClassUID = pydicom.uid.CTImageStorage
    path = write_with_meta(node.tmp / "mr-in-ct-raw.dcm", meta, body)
    with association(node.port) as assoc:
        assert send_raw(assoc, path) == StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS
        # An MR instance under its own context: the node does not accept MR at all.
        assert MRImageStorage not in {cx.abstract_syntax for cx in assoc.accepted_contexts}
        with pytest.raises(ValueError, match="presentation context"):
            assoc.send_c_store(ds)
    assert not recorded(node, ds.SOPInstanceUID)


@pytest.mark.parametrize("uid_name, value", [
    ("SOPInstanceUID", "../../../../../tmp/ichnode-escape"),
    ("SeriesInstanceUID", "1.2.3/../../../escape"),
    ("StudyInstanceUID", "1.2.3\\..\\..\\escape"),
])
def test_uids_with_path_characters(node, uid_name, value):
    _, (ds, *_) = make_series(node, f"path-{uid_name}")
    setattr(ds, uid_name, value)
    if uid_name == "SOPInstanceUID":
        ds.file_meta.MediaStorageSOPInstanceUID = value
    path = node.tmp / f"path-{uid_name}.dcm"
    ds.save_as(path, enforce_file_format=True)
    with association(node.port) as assoc:
        assert send_raw(assoc, path) == StoreStatus.CANNOT_UNDERSTAND
    assert not recorded(node, ds.SOPInstanceUID)
    assert not [p for p in node.tmp.parent.rglob("*escape*")]
    assert all(node.config.spool_dir in p.parents for p in files_under(node.config.data_dir / "spool"))


def test_oversized_dataset(tmp_path):
    small = start_node(tmp_path, **{"node.max_instance_mb": 1})
    try:
        write_series(tmp_path / "big", SynthSpec(subtype="none", matrix=MATRIX, seed=81))
        big = pydicom.dcmread(sorted((tmp_path / "big").glob("CT*.dcm"))[0])
        big.Rows = big.Columns = 1024
        big.PixelData = bytes(1024 * 1024 * 2)  # 2 MB of pixels
        with association(small.port) as assoc:
            assert send_dataset(assoc, big) == StoreStatus.OUT_OF_RESOURCES
            big.Rows = big.Columns = 512
            big.PixelData = big.PixelData[: 512 * 512 * 2]  # 0.5 MB: under the limit
            big.SOPInstanceUID = pydicom.uid.generate_uid()
            assert send_dataset(assoc, big) == StoreStatus.SUCCESS
        assert len(files_under(small.config.spool_dir, "*.dcm")) == 1
        assert echo_ok(small.port)
    finally:
        small.stop()


# --- stored, then "not analysed" with the reason -----------------------------------------------

@pytest.mark.parametrize("keyword", ["ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"])
def test_missing_geometry(node, keyword):
    truth, datasets = make_series(node, f"missing-{keyword}")
    for ds in datasets:
        del ds[keyword]
    assert set(send_all(node, datasets)) == {StoreStatus.SUCCESS}  # kept: nothing is lost
    job = job_of(node, truth["series_uid"])
    assert job.outcome == "not analysed" and f"images lack {keyword}" in job.reason
    assert [pydicom.dcmread(p).Modality for p in job.results] == ["SR"]


def test_inconsistent_rows_columns(node):
    truth, datasets = make_series(node, "sizes")
    odd = datasets[7]
    odd.Rows = odd.Columns = MATRIX // 2
    odd.PixelData = odd.PixelData[: (MATRIX // 2) ** 2 * 2]
    assert set(send_all(node, datasets)) == {StoreStatus.SUCCESS}
    job = job_of(node, truth["series_uid"])
    assert job.outcome == "not analysed" and "inconsistent image sizes" in job.reason


def test_one_slice_series(node):
    truth, datasets = make_series(node, "one-slice")
    assert send_all(node, datasets[12:13]) == [StoreStatus.SUCCESS]
    job = job_of(node, truth["series_uid"])
    assert job.outcome == "not analysed" and "only 1 slice" in job.reason


def test_mixed_orientations(node):
    truth, datasets = make_series(node, "mixed")
    for ds in datasets[::2]:
        ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]  # coronal among axial slices
    assert set(send_all(node, datasets)) == {StoreStatus.SUCCESS}
    job = job_of(node, truth["series_uid"])
    assert job.outcome == "not analysed" and "mixed image orientations" in job.reason


# --- duplicates ----------------------------------------------------------------------------------

def test_duplicate_sop_instance_uid(node):
    """Decision: an identical re-send is acknowledged again and changes nothing; a re-send with
    different content replaces the stored instance (the latest wins), is logged as
    instance_replaced, and reopens the series so a new job analyses the new content."""
    truth, datasets = make_series(node, "duplicate", subtype="none")
    assert set(send_all(node, datasets)) == {StoreStatus.SUCCESS}
    first = job_of(node, truth["series_uid"])
    series_key = first.series_key
    generation = node.store.series(series_key).generation

    same = pydicom.dcmread(node.tmp / "duplicate" / truth["files"][3])
    assert send_all(node, [same]) == [StoreStatus.SUCCESS]
    assert node.store.series(series_key).generation == generation  # nothing reopened
    assert not node.store.series(series_key).open

    changed = pydicom.dcmread(node.tmp / "duplicate" / truth["files"][3])
    changed.WindowCenter = "50"  # a corrected instance with the same SOP Instance UID
    assert send_all(node, [changed]) == [StoreStatus.SUCCESS]
    stored = pydicom.dcmread(node.store.instance_path(str(changed.SOPInstanceUID)))
    assert str(stored.WindowCenter) == "50"
    series = node.store.series(series_key)
    assert series.generation == generation + 1 and series.instance_count == len(datasets)
    wait_until(lambda: [j for j in node.store.jobs((JobState.DONE, JobState.FAILED))
                        if j.series_key == series_key and j.id != first.id], 60,
               what="the job for the replaced instance")
