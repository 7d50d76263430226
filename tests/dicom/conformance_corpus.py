"""The corpus the raw walk (ichnode/dicom/rawwalk.py) is compared with pydicom on.

One small synthetic CT instance, enriched three ways (every VR with a value and with an empty
value, a private block of every VR, sequences of defined and undefined length nested three deep),
written by pydicom in implicit VR LE, explicit VR LE and BE and deflated, then re-encoded by the
DCMTK tools into every transfer syntax they make (storescu sends files in their own syntax), plus
two hand-spliced explicit VR LE instances whose sequence items are implicit VR (PS3.5 6.2.2).
"""
from __future__ import annotations

import copy
import struct
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import (UID, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian,
                         ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000Lossless)

from ichnode.dicom.intake import split_part10
from ichnode.synth import SynthSpec, write_series

# One public element of every VR of PS3.5 table 6.2-1: Hanging Protocol selectors, (0072,005E-0083).
EVERY_VR = {
    "AE": "STORESCU", "AS": "081Y", "AT": [0x00100010, 0x7FE00010], "CS": ["ORIGINAL", "PRIMARY"],
    "DA": "20240104", "DS": ["1.5", "-2E3"], "DT": "20240104101500.123456+0100",
    "FD": [1.5, -2.25e300], "FL": [0.5, -8.0], "IS": ["42", "-7"], "LO": "Schädel",
    "LT": "line one\r\nline two", "OB": b"\x01\x02\x03\x00", "OD": struct.pack("<2d", 1.0, -2.5),
    "OF": struct.pack("<2f", 1.0, -2.5), "OL": struct.pack("<2L", 1, 0xFFFFFFFF),
    "OV": struct.pack("<Q", 2**64 - 1), "OW": b"\x01\x02\x03\x04", "PN": "Müller^Jörg",
    "SH": "short", "SL": [-(2**31), 2**31 - 1], "SS": [-(2**15), 2**15 - 1], "ST": "short text",
    "SV": [-(2**63), 2**63 - 1], "TM": "101500.5", "UC": "unlimited characters " * 4,
    "UI": "1.2.840.10008.5.1.4.1.1.2", "UL": [0, 2**32 - 1], "UN": b"\x00\xff",
    "UR": "https://example.org/ich?x=1", "US": [0, 2**16 - 1], "UT": "unlimited text " * 20,
    "UV": [0, 2**64 - 1],
}
SELECTOR_KEYWORD = {vr: f"Selector{vr}Value" for vr in EVERY_VR}
SELECTOR_KEYWORD["SQ"] = "SelectorCodeSequenceValue"
PRIVATE_CREATOR = "ICHNODE CONFORMANCE"
UNDEFINED = 0xFFFFFFFF

PYDICOM_SYNTAXES = {"implicit": ImplicitVRLittleEndian, "explicit": ExplicitVRLittleEndian,
                    "big": ExplicitVRBigEndian, "deflated": DeflatedExplicitVRLittleEndian}
VARIANTS = ("defined", "undefined", "empty")
# name -> DCMTK command re-encoding the "undefined" variant (explicit VR LE) into another syntax
DCMTK_COMMANDS = {
    "dcmconv-implicit": ["dcmconv", "+ti"],
    "dcmconv-explicit": ["dcmconv", "+te"],
    "dcmconv-big": ["dcmconv", "+tb"],
    "dcmconv-deflated": ["dcmconv", "+td"],
    "dcmconv-explicit-undefined-lengths-group-lengths": ["dcmconv", "+te", "-e", "+g"],
    "dcmconv-implicit-undefined-lengths-group-lengths": ["dcmconv", "+ti", "-e", "+g"],
    "dcmconv-big-group-lengths-padding": ["dcmconv", "+tb", "+g", "+p", "64", "32"],
    "dcmcjpeg-baseline": ["dcmcjpeg", "+eb"],
    "dcmcjpeg-extended": ["dcmcjpeg", "+ee"],
    "dcmcjpeg-spectral": ["dcmcjpeg", "+es"],
    "dcmcjpeg-lossless": ["dcmcjpeg", "+el"],
    "dcmcjpeg-lossless-sv1": ["dcmcjpeg", "+e1"],
    "dcmcrle": ["dcmcrle"],
    "dcmcjpls-lossless": ["dcmcjpls", "+el"],  # near-lossless refuses signed pixels
}
SPLICED = ("un-undefined-implicit-items", "sq-implicit-items")
NAMES = ([f"pydicom-{variant}-{syntax}" for variant in VARIANTS for syntax in PYDICOM_SYNTAXES]
         + ["pydicom-defined-j2k"] + list(DCMTK_COMMANDS) + [f"spliced-{name}" for name in SPLICED])


@dataclass(frozen=True)
class Encoded:
    """A corpus instance as C-STORE carries it (dataset bytes, transfer syntax) and as the walk
    reads it (deflated syntaxes inflated first, as intake.py does)."""
    path: Path
    transfer_syntax: UID
    sent: bytes
    walked: bytes

    @property
    def implicit(self) -> bool:
        return self.transfer_syntax.is_implicit_VR

    @property
    def little(self) -> bool:
        return self.transfer_syntax.is_little_endian


def load(path: Path) -> Encoded:
    meta, sent = split_part10(path.read_bytes())
    syntax = UID(meta.TransferSyntaxUID)
    walked = zlib.decompress(sent, -zlib.MAX_WBITS) if syntax.is_deflated else sent
    return Encoded(path, syntax, sent, walked)


def encode(ds: Dataset, implicit: bool, little: bool) -> bytes:
    """A dataset's bytes, without file meta, as pydicom writes them (raises on failure)."""
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = implicit, little
    write_dataset(fp, ds)
    return fp.getvalue()


def code_item(value: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", f"code {value}"
    return item


def with_every_vr(ds: Dataset, empty: bool) -> None:
    for vr, value in EVERY_VR.items():
        setattr(ds, SELECTOR_KEYWORD[vr], None if empty else value)
    ds.SelectorCodeSequenceValue = [] if empty else [code_item("113691")]
    block = ds.private_block(0x0011, PRIVATE_CREATOR, create=True)
    for offset, (vr, value) in enumerate(EVERY_VR.items()):
        block.add_new(offset, vr, None if empty else value)
    block.add_new(len(EVERY_VR), "SQ", [] if empty else [code_item("P1"), Dataset()])


def with_sequences(ds: Dataset, undefined: bool) -> None:
    """Nested sequences three deep, an empty sequence and an empty item, all before the
    elements intake.py reads (Study and Series UIDs, Rows...)."""
    inner = Dataset()
    inner.ReferencedSOPInstanceUID = "1.2.3.4"
    inner.PurposeOfReferenceCodeSequence = [code_item("121311")]
    item = Dataset()
    item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = ds.SOPClassUID, "9.9.9"
    item.SourceImageSequence = [inner]
    ds.ReferencedImageSequence = [item, Dataset()]
    ds.ProcedureCodeSequence = [code_item("P5-80600"), code_item("P5-80601")]
    ds.LanguageCodeSequence = []
    if undefined:
        for element in _sequences(ds):
            element.is_undefined_length = True
            for child in element.value:
                child.is_undefined_length_sequence_item = True


def _sequences(ds: Dataset):
    for element in ds:
        if element.VR == "SQ":
            yield element
            for item in element.value:
                yield from _sequences(item)


def base_instance(folder: Path) -> Dataset:
    truth = write_series(folder / "synth", SynthSpec(subtype="none", matrix=64, seed=5))
    ds = pydicom.dcmread(folder / "synth" / truth["files"][0])
    ds.SeriesDescription = "Schädel nativ"  # ISO_IR 100: the walk's values are decoded with it
    return ds


def variant(base: Dataset, name: str) -> Dataset:
    ds = copy.deepcopy(base)
    with_every_vr(ds, empty=name == "empty")
    with_sequences(ds, undefined=name == "undefined")
    return ds


def file_meta(ds: Dataset, syntax: UID) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = syntax
    return meta


def save(ds: Dataset, path: Path, syntax: UID) -> Path:
    ds = copy.deepcopy(ds)
    if syntax == ExplicitVRBigEndian:
        ds.PixelData = ds.pixel_array.astype(">i2" if ds.PixelRepresentation else ">u2").tobytes()
    elif syntax.is_compressed:
        ds.compress(syntax, generate_instance_uid=False)
    ds.file_meta = file_meta(ds, syntax)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def spliced(base: Dataset, name: str, path: Path) -> Path:
    """Explicit VR LE with one private element of undefined length whose items are implicit VR:
    a UN (what PS3.5 6.2.2 prescribes for a sequence whose VR the sender did not know) or an SQ
    (written so by some implementations; DCMTK cannot read it, pydicom can). pydicom writes the
    rest of the "undefined" variant around it, in place of a placeholder element."""
    ds = variant(base, "undefined")
    ds.private_block(0x0013, PRIVATE_CREATOR, create=True).add_new(0x10, "OB", b"SPLICE")
    placeholder = struct.pack("<HH2sHL", 0x0013, 0x1010, b"OB", 0, 6) + b"SPLICE"
    inner = Dataset()
    inner.ReferencedSOPInstanceUID = "7.7.7"
    inner.ProcedureCodeSequence = [code_item("X")]
    inner["ProcedureCodeSequence"].is_undefined_length = True
    items = b"".join(struct.pack("<HHL", 0xFFFE, 0xE000, UNDEFINED) + encode(item, True, True)
                     + struct.pack("<HHL", 0xFFFE, 0xE00D, 0) for item in (inner, code_item("Y")))
    vr = b"UN" if name == "un-undefined-implicit-items" else b"SQ"
    element = (struct.pack("<HH2sHL", 0x0013, 0x1010, vr, 0, UNDEFINED) + items
               + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0))
    save(ds, path, ExplicitVRLittleEndian)
    data = path.read_bytes()
    assert data.count(placeholder) == 1
    path.write_bytes(data.replace(placeholder, element))
    return path


def build(folder: Path, tool) -> dict[str, Path]:
    """Every corpus file by name; tool(name) is the path of a DCMTK tool (or skips)."""
    base, files = base_instance(folder), {}
    for variant_name in VARIANTS:
        ds = variant(base, variant_name)
        for syntax_name, syntax in PYDICOM_SYNTAXES.items():
            name = f"pydicom-{variant_name}-{syntax_name}"
            files[name] = save(ds, folder / f"{name}.dcm", syntax)
    j2k = folder / "pydicom-defined-j2k.dcm"
    files["pydicom-defined-j2k"] = save(variant(base, "defined"), j2k, JPEG2000Lossless)
    source = files["pydicom-undefined-explicit"]
    for name, (program, *options) in DCMTK_COMMANDS.items():
        files[name] = folder / f"{name}.dcm"
        run = subprocess.run([tool(program), *options, str(source), str(files[name])],
                             capture_output=True, text=True, timeout=60)
        if run.returncode != 0:
            raise RuntimeError(f"{name}: {run.stderr}")
    for name in SPLICED:
        files[f"spliced-{name}"] = spliced(base, name, folder / f"spliced-{name}.dcm")
    return files
