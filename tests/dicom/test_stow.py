"""DICOMweb STOW-RS destinations: config validation, and send_stow against Orthanc's DICOMweb plugin."""
from pathlib import Path

import pytest

from ichnode.config import StowDestination, load_config
from ichnode.dicom.sender import describe
from ichnode.dicom.stow import send_stow
from ichnode.errors import ConfigError, SendError
from ichnode.synth import SynthSpec, write_series

from tests.helpers import free_port
from tests.orthanc_peer import Orthanc, dicomweb_plugin, orthanc_binary


def test_stow_destination_loads(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("destinations:\n"
                    "  - {name: web, kind: stow, url: 'http://pacs.example:8042/dicom-web'}\n"
                    "  - {name: dimse, ae_title: PACS, host: pacs, port: 104}\n")
    web, dimse = load_config(path).destinations
    assert (web.kind, web.url) == ("stow", "http://pacs.example:8042/dicom-web")
    assert (dimse.kind, dimse.ae_title, dimse.host, dimse.port) == ("dimse", "PACS", "pacs", 104)
    assert not hasattr(web, "port") and not hasattr(dimse, "url")  # one record per kind


@pytest.mark.parametrize("entry, key", [
    ("{name: w, kind: stow}", r"destinations\[0\]\.url"),
    ("{name: w, kind: stow, url: 'ftp://pacs/dicom-web'}", r"destinations\[0\]\.url"),
    ("{name: w, kind: stow, url: 'http://pacs:99999/dicom-web'}", r"destinations\[0\]\.url"),
    ("{name: w, kind: stow, url: 'http://pacs/dicom-web', port: 104}", r"destinations\[0\]\.port"),
    ("{name: w, kind: dicomweb-ish, url: 'http://pacs/dicom-web'}", r"destinations\[0\]\.kind"),
    ("{name: d, ae_title: PACS, host: pacs, port: 104, url: 'http://pacs/'}", r"destinations\[0\]\.url"),
    ("{name: d, ae_title: PACS, port: 104}", r"destinations\[0\]\.host"),
])
def test_bad_destination_is_named(tmp_path, entry, key):
    path = tmp_path / "c.yaml"
    path.write_text(f"destinations: [{entry}]\n")
    with pytest.raises(ConfigError, match=key):
        load_config(path)


@pytest.fixture
def orthanc_web(tmp_path):
    if orthanc_binary() is None or dicomweb_plugin() is None:
        pytest.skip("Orthanc or its DICOMweb plugin is not installed "
                    "(Debian packages orthanc, orthanc-dicomweb; scripts/setup --test installs them)")
    servers = []

    def start(**kwargs) -> Orthanc:
        server = Orthanc(tmp_path / f"orthanc{len(servers)}", dicomweb=True, **kwargs)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


def _slices(folder: Path, count: int, matrix: int) -> list[Path]:
    write_series(folder, SynthSpec(matrix=matrix, thickness_mm=10.0, seed=5))
    return sorted(folder.glob("CT*.dcm"))[:count]


def test_send_stow_stores_every_instance(tmp_path, orthanc_web):
    orthanc = orthanc_web()
    items = [describe(p) for p in _slices(tmp_path / "series", 4, 64)]
    sent = []
    send_stow(items, StowDestination("web", url=orthanc.dicomweb_url), timeout_s=30,
              on_sent=sent.append)
    assert sorted(sent) == sorted(i.sop_uid for i in items)
    stored = {orthanc.get(f"/instances/{i}")["MainDicomTags"]["SOPInstanceUID"]
              for i in orthanc.get("/instances")}
    assert stored == set(sent)


def test_send_stow_records_only_what_the_response_references(tmp_path, orthanc_web):
    # A real partial failure: Orthanc's storage is capped at 1 MB, so of three 0.5 MB instances
    # only the first is stored; the others must neither be marked sent nor pass silently.
    orthanc = orthanc_web(extra={"MaximumStorageSize": 1})
    items = [describe(p) for p in _slices(tmp_path / "series", 3, 512)]
    sent = []
    with pytest.raises(SendError, match="instance"):
        send_stow(items, StowDestination("web", url=orthanc.dicomweb_url), timeout_s=30,
                  on_sent=sent.append)
    stored = {orthanc.get(f"/instances/{i}")["MainDicomTags"]["SOPInstanceUID"]
              for i in orthanc.get("/instances")}
    assert set(sent) == stored
    assert len(sent) < len(items)


def test_send_stow_unreachable_raises_send_error(tmp_path):
    items = [describe(p) for p in _slices(tmp_path / "series", 1, 32)]
    sent = []
    dest = StowDestination("web", url=f"http://127.0.0.1:{free_port()}/dicom-web")
    with pytest.raises(SendError, match="web"):
        send_stow(items, dest, timeout_s=5, on_sent=sent.append)
    assert sent == []
