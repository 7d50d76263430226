"""Series loading: every transfer syntax a scanner may send decodes to the same HU volume."""
import numpy as np
import pydicom
import pytest
from pydicom.uid import (ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000Lossless,
                         RLELossless)

from ichnode.assemble.series import load_volume, read_headers, stack_geometry
from ichnode.synth import SynthSpec, write_series

SPEC = SynthSpec(subtype="iph", matrix=64, fov_mm=230.0, seed=5)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ref")
    write_series(folder, SPEC)
    headers = read_headers(sorted(folder.glob("*.dcm")))
    return folder, load_volume(headers, stack_geometry(headers, 0.5))


def _recode(src_folder, dst_folder, syntax):
    dst_folder.mkdir()
    for path in sorted(src_folder.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        if syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
            ds.file_meta.TransferSyntaxUID = syntax
            ds.save_as(dst_folder / path.name, implicit_vr=syntax == ImplicitVRLittleEndian,
                       little_endian=True, enforce_file_format=True)
        else:
            ds.compress(syntax, encoding_plugin="pylibjpeg" if syntax == JPEG2000Lossless else None)
            ds.save_as(dst_folder / path.name, enforce_file_format=True)
    return dst_folder


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, RLELossless, JPEG2000Lossless])
def test_transfer_syntaxes_decode_to_the_same_volume(reference, tmp_path, syntax):
    folder, expected = reference
    try:
        recoded = _recode(folder, tmp_path / "recoded", syntax)
    except (RuntimeError, NotImplementedError) as exc:
        pytest.skip(f"no encoder for {syntax.name} here: {exc}")
    headers = read_headers(sorted(recoded.glob("*.dcm")))
    assert {str(ds.file_meta.TransferSyntaxUID) for ds in headers.datasets} == {str(syntax)}
    volume = load_volume(headers, stack_geometry(headers, 0.5))
    np.testing.assert_array_equal(volume.hu, expected.hu)


def test_jpeg_lossless_series_decodes(tmp_path):
    try:
        write_series(tmp_path, SynthSpec(subtype="iph", matrix=64, seed=5, jpeg_lossless=True))
    except RuntimeError as exc:
        pytest.skip(str(exc))
    headers = read_headers(sorted(tmp_path.glob("*.dcm")))
    assert str(headers.datasets[0].file_meta.TransferSyntaxUID) == "1.2.840.10008.1.2.4.70"
    volume = load_volume(headers, stack_geometry(headers, 0.5))
    assert volume.hu.shape[1:] == (64, 64) and volume.hu.max() > 500  # skull decoded


def test_unreadable_files_are_reported_not_raised(tmp_path):
    (tmp_path / "garbage.dcm").write_bytes(b"\x00" * 10)
    (tmp_path / "text.dcm").write_text("not dicom")
    headers = read_headers(sorted(tmp_path.iterdir()))
    assert headers.datasets == () and len(headers.unreadable) == 2
