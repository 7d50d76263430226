"""STOW-RS input: a DICOMweb client (dicomweb-client) stores a series into a running node, which
analyses it like one received by C-STORE; refusals come back in FailedSOPSequence."""
from __future__ import annotations

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.uid import MRImageStorage

from ichnode.store.jobs import JobState
from ichnode.synth import SynthSpec, write_series
from ichnode.web.auth import hash_password

from tests.helpers import wait_until
from tests.reliability.peers import start_node
from tests.web.conftest import PASSWORD

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture
def node(tmp_path):
    node = start_node(tmp_path, **{
        "assembly.quiet_seconds": 1.0, "web.enabled": True, "web.port": 0,
        "web.users": [{"name": "ann", "password_hash": hash_password(PASSWORD)}]})
    node.base = f"http://127.0.0.1:{node.web.port}"
    yield node
    node.stop()


def multipart(*payloads: bytes, boundary: str = "ichnode-test") -> tuple[bytes, str]:
    body = b"".join(b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + p +
                    b"\r\n" for p in payloads) + b"--" + boundary.encode() + b"--\r\n"
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


def test_a_series_stored_by_stow_rs_is_analysed(node, tmp_path):
    truth = write_series(tmp_path / "series", SynthSpec(subtype="iph", volume_ml=15, matrix=128, seed=12))
    datasets = [pydicom.dcmread(tmp_path / "series" / f) for f in truth["files"]]
    session = requests.Session()
    session.auth = ("ann", PASSWORD)
    client = DICOMwebClient(f"{node.base}/dicomweb", session=session)
    response = client.store_instances(datasets)
    stored = [str(item.ReferencedSOPInstanceUID) for item in response.ReferencedSOPSequence]
    assert sorted(stored) == sorted(str(ds.SOPInstanceUID) for ds in datasets)
    job = wait_until(lambda: next(iter(node.store.jobs((JobState.DONE, JobState.FAILED))), None), 120,
                     what="the analysis of the STOW-RS series")
    assert job.state is JobState.DONE and job.outcome == "analysed", job.reason
    assert node.store.series(job.series_key).instance_count == len(datasets)


def test_refusals_are_listed_and_nothing_else_is_lost(node, tmp_path):
    truth = write_series(tmp_path / "series", SynthSpec(subtype="none", matrix=64, seed=13))
    good = (tmp_path / "series" / truth["files"][0]).read_bytes()
    mr = pydicom.dcmread(tmp_path / "series" / truth["files"][1])
    mr.SOPClassUID = mr.file_meta.MediaStorageSOPClassUID = MRImageStorage
    mr.save_as(tmp_path / "mr.dcm", enforce_file_format=True)
    body, content_type = multipart(good, (tmp_path / "mr.dcm").read_bytes(), b"not DICOM at all")
    answer = requests.post(f"{node.base}/dicomweb/studies", data=body, auth=("ann", PASSWORD),
                           headers={"Content-Type": content_type}, timeout=30)
    assert answer.status_code == 202  # some stored, some not
    result = answer.json()
    (stored,) = result["00081199"]["Value"]
    assert stored["00081155"]["Value"] == [pydicom.dcmread(tmp_path / "series" / truth["files"][0]).SOPInstanceUID]
    reasons = sorted(item["00081197"]["Value"][0] for item in result["00081198"]["Value"])
    assert reasons == [0x0122, 0xC000]  # MR: SOP class not supported; garbage: cannot understand
    assert node.store.instance_path(str(mr.SOPInstanceUID)) is None


def test_stow_needs_a_user_and_a_dicom_multipart(node):
    body, content_type = multipart(b"x")
    anonymous = requests.post(f"{node.base}/dicomweb/studies", data=body,
                              headers={"Content-Type": content_type}, timeout=30)
    assert anonymous.status_code == 401
    wrong = requests.post(f"{node.base}/dicomweb/studies", data=b"{}", auth=("ann", PASSWORD),
                          headers={"Content-Type": "application/json"}, timeout=30)
    assert wrong.status_code == 415
