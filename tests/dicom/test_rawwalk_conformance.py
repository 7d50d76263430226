"""Differential conformance: the C-STORE header check's raw walk (ichnode/dicom/rawwalk.py) reads
what pydicom's reader reads, on a corpus covering every VR in every transfer syntax DCMTK makes
(tests/dicom/conformance_corpus.py) and on random datasets; and on damaged bytes it fails only
with ValueError or struct.error, promptly."""
from __future__ import annotations

import contextlib
import signal
import struct
from io import BytesIO

import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.filereader import data_element_generator
from pydicom.datadict import tag_for_keyword
from pydicom.uid import UID

from ichnode.dicom.intake import _TAGS, NUMBER_OF_FRAMES, PIXEL_DATA, Instance, inspect_instance
from ichnode.dicom.rawwalk import (ITEM, ITEM_END, LENGTH_16_VRS, LENGTH_32_VRS, MAX_DEPTH,
                                   SEQUENCE_END, UNDEFINED, read_top_level)

from tests.dicom import conformance_corpus as corpus
from tests.helpers import require_tool

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on odd values it reads


class _EveryTag:
    def __contains__(self, tag: int) -> bool:
        return True


EVERY_TAG = _EveryTag()
ALL_VRS = {vr.decode() for vr in LENGTH_16_VRS | LENGTH_32_VRS}
SELECTORS = {tag_for_keyword(keyword) for keyword in corpus.SELECTOR_KEYWORD.values()}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return corpus.build(tmp_path_factory.mktemp("conformance"), require_tool)


def pydicom_reads(data: bytes, implicit: bool, little: bool, stop_tag: int):
    """pydicom's top-level elements before stop_tag, and the position and header size of
    stop_tag's element (None when reading ended without reaching it)."""
    fp, stopped_at = BytesIO(data), []

    def stop_when(tag, vr, length):
        if tag >= stop_tag:
            stopped_at.append(int(tag))
        return tag >= stop_tag

    elements = list(data_element_generator(fp, implicit, little, stop_when=stop_when))
    if stopped_at != [stop_tag]:
        return elements, None
    position = fp.tell()
    stop_element = next(data_element_generator(fp, implicit, little))
    if isinstance(stop_element, DataElement):  # an undefined-length sequence, parsed
        return elements, (position, stop_element.file_tell - position)
    return elements, (position, stop_element.value_tell - position)


def assert_walk_agrees(data: bytes, implicit: bool, little: bool, stop_tag: int = PIXEL_DATA):
    """The walk returns pydicom's defined-length top-level elements raw (tag, VR, length,
    position, bytes), skips those of undefined length and stops where pydicom stops."""
    found, stop = read_top_level(data, implicit, little, EVERY_TAG, stop_tag)
    elements, expected_stop = pydicom_reads(data, implicit, little, stop_tag)
    # pydicom yields undefined-length sequences parsed (DataElement), the rest raw
    defined = {int(e.tag): e for e in elements
               if isinstance(e, RawDataElement) and e.length != UNDEFINED}
    assert set(found) == set(defined), "the walk and pydicom see different top-level elements"
    for tag, walked in found.items():
        read = defined[tag]
        assert (walked.VR, walked.length, walked.value_tell, walked.value) == \
            (read.VR, read.length, read.value_tell, read.value or b""), hex(tag)
    assert stop == expected_stop
    return found


# --- the corpus ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", corpus.NAMES)
def test_walk_reads_the_raw_elements_pydicom_reads(files, name):
    encoded = corpus.load(files[name])
    found = assert_walk_agrees(encoded.walked, encoded.implicit, encoded.little)
    assert _TAGS - {NUMBER_OF_FRAMES} <= set(found)  # what intake.py asks for (a CT has no frames)


@pytest.mark.parametrize("name", corpus.NAMES)
def test_walked_values_decode_to_what_dcmread_reads(files, name):
    encoded = corpus.load(files[name])
    found, _ = read_top_level(encoded.walked, encoded.implicit, encoded.little, EVERY_TAG,
                              PIXEL_DATA)
    walked, read = Dataset(found), pydicom.dcmread(encoded.path)
    for tag in found:
        assert walked[tag].value == read[tag].value, f"{read[tag]}"
    assert walked.SeriesDescription == "Schädel nativ"  # decoded with the Specific Character Set


@pytest.mark.parametrize("name", corpus.NAMES)
def test_intake_accepts_every_corpus_instance(files, name):
    encoded, read = corpus.load(files[name]), pydicom.dcmread(files[name])
    verdict = inspect_instance(encoded.sent, encoded.transfer_syntax, read.SOPClassUID, 1 << 30)
    assert verdict == Instance(read.StudyInstanceUID, read.SeriesInstanceUID, read.SOPInstanceUID,
                               read.SOPClassUID, "CT", "Schädel nativ",
                               int(read.ImagesInAcquisition))


def test_corpus_covers_every_vr_in_every_syntax(files):
    """Each file has the elements of all 34 VRs at its top level (explicit VR files name them),
    and the corpus holds every transfer syntax named: a tool that silently drops something, or
    a corpus change that loses it, fails here."""
    syntaxes = set()
    for name in corpus.NAMES:
        encoded = corpus.load(files[name])
        syntaxes.add(encoded.transfer_syntax)
        elements, _ = pydicom_reads(encoded.walked, encoded.implicit, encoded.little, PIXEL_DATA)
        assert {int(element.tag) for element in elements} >= SELECTORS, name
        if not encoded.implicit:
            assert {element.VR for element in elements} >= ALL_VRS, name
    assert len(ALL_VRS) == 34 and {"SV", "UV", "OV", "OL", "UC", "UR"} <= ALL_VRS
    assert syntaxes == {UID(uid) for uid in (
        "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99",
        "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.53",
        "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80",
        "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.5")}


# --- where the walk is deliberately stricter than pydicom ----------------------------------------

def _header(tag: int, vr: bytes, length: int, implicit: bool = False, little: bool = True) -> bytes:
    endian = "<" if little else ">"
    if implicit or tag >> 16 == 0xFFFE:
        return struct.pack(endian + "HHL", tag >> 16, tag & 0xFFFF, length)
    if vr in LENGTH_32_VRS:
        return struct.pack(endian + "HH2sHL", tag >> 16, tag & 0xFFFF, vr, 0, length)
    return struct.pack(endian + "HH2sH", tag >> 16, tag & 0xFFFF, vr, length & 0xFFFF)


def test_unknown_vr_is_refused_not_guessed():
    """pydicom reads an unknown VR with a 16-bit length, DCMTK with a 32-bit one: no guess."""
    data = _header(0x00080060, b"CS", 2) + b"CT" + _header(0x00090010, b"XX", 2) + b"ab"
    with pytest.raises(ValueError, match="no known VR"):
        read_top_level(data, False, True, _TAGS, PIXEL_DATA)


def test_implicit_dataset_under_an_explicit_syntax_is_refused():
    """pydicom switches to implicit VR with a warning; the node refuses what the peer mislabels."""
    ds = Dataset()
    ds.Modality, ds.StudyInstanceUID = "CT", "1.2.3"
    with pytest.raises(ValueError):
        read_top_level(corpus.encode(ds, True, True), False, True, _TAGS, PIXEL_DATA)


def nested(depth: int) -> Dataset:
    ds = Dataset()
    ds.Modality = "CT"
    for _ in range(depth):
        item, ds = ds, Dataset()
        ds.ReferencedImageSequence = [item]
        ds["ReferencedImageSequence"].is_undefined_length = True
        item.is_undefined_length_sequence_item = True
    ds.StudyInstanceUID = "1.2.3"
    return ds


@pytest.mark.parametrize("implicit", [True, False])
def test_sequences_nested_to_max_depth_are_read_and_deeper_refused(implicit):
    assert_walk_agrees(corpus.encode(nested(MAX_DEPTH), implicit, True), implicit, True)
    with pytest.raises(ValueError, match="nested too deep"):
        read_top_level(corpus.encode(nested(MAX_DEPTH + 1), implicit, True), implicit, True, _TAGS,
                       PIXEL_DATA)


# --- random datasets -----------------------------------------------------------------------------

_TEXT = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 ._-^", max_size=20)
_CODE = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _", max_size=16)


def _numbers(low, high):
    return st.lists(st.integers(low, high), max_size=3)


def _bytes(multiple: int):
    return st.binary(max_size=24).map(lambda b: b[:len(b) // multiple * multiple])


VALUES = {
    "AE": _CODE, "AS": st.sampled_from(["", "081Y", "003M"]), "AT": _numbers(0, 2**32 - 1),
    "CS": st.lists(_CODE, max_size=3), "DA": st.sampled_from(["", "20240104"]),
    "DS": st.lists(st.integers(-10**6, 10**6).map(str), max_size=3),
    "DT": st.sampled_from(["", "20240104101500.5"]),
    "FD": st.lists(st.floats(allow_nan=False), max_size=3),
    "FL": st.lists(st.floats(width=32, allow_nan=False), max_size=3),
    "IS": st.lists(st.integers(-2**31, 2**31 - 1).map(str), max_size=3), "LO": _TEXT, "LT": _TEXT,
    "OB": _bytes(1), "OD": _bytes(8), "OF": _bytes(4), "OL": _bytes(4), "OV": _bytes(8),
    "OW": _bytes(2), "PN": _TEXT, "SH": _TEXT, "SL": _numbers(-2**31, 2**31 - 1),
    "SS": _numbers(-2**15, 2**15 - 1), "ST": _TEXT, "SV": _numbers(-2**63, 2**63 - 1),
    "TM": st.sampled_from(["", "101500", "101500.123"]), "UC": _TEXT,
    "UI": st.sampled_from(["", "1.2.3", "1.2.840.10008.5.1.4.1.1.2"]), "UL": _numbers(0, 2**32 - 1),
    "UN": _bytes(1), "UR": st.sampled_from(["", "https://example.org/a"]),
    "US": _numbers(0, 2**16 - 1), "UT": _TEXT, "UV": _numbers(0, 2**64 - 1),
}
assert set(VALUES) | {"SQ"} == ALL_VRS


def _items(elements):
    return st.lists(st.tuples(st.booleans(), elements), max_size=2)  # (undefined length, elements)


# An element spec is (VR, value); a sequence's value is (undefined length, [(undefined, elements)]).
ELEMENTS = st.recursive(
    st.lists(st.sampled_from(sorted(VALUES)).flatmap(lambda vr: st.tuples(st.just(vr), VALUES[vr])),
             max_size=6),
    lambda children: st.lists(st.one_of(
        st.sampled_from(sorted(VALUES)).flatmap(lambda vr: st.tuples(st.just(vr), VALUES[vr])),
        st.tuples(st.just("SQ"), st.tuples(st.booleans(), _items(children)))), max_size=6),
    max_leaves=12)
SYNTAXES = st.sampled_from([(True, True), (False, True), (False, False)])  # (implicit, little)


def build(elements) -> Dataset:
    """Private elements (0011,1000+) of the VRs and values given, after a public one."""
    ds = Dataset()
    ds.Modality = "CT"
    block = ds.private_block(0x0011, "ICHNODE RANDOM", create=True)
    for offset, (vr, value) in enumerate(elements):
        if vr != "SQ":
            block.add_new(offset, vr, value)
            continue
        undefined, items = value
        sequence = []
        for item_undefined, item_elements in items:
            sequence.append(build(item_elements))
            sequence[-1].is_undefined_length_sequence_item = item_undefined
        block.add_new(offset, "SQ", sequence)
        ds[block.get_tag(offset)].is_undefined_length = undefined
    return ds


@settings(max_examples=150, deadline=None)
@given(elements=ELEMENTS, syntax=SYNTAXES, stop=st.integers(0, 8))
def test_random_datasets_are_read_as_pydicom_reads_them(elements, syntax, stop):
    implicit, little = syntax
    ds = build(elements)
    tags = [int(tag) for tag in ds.keys()]
    stop_tag = tags[stop] if stop < len(tags) else PIXEL_DATA  # also stop in the middle
    assert_walk_agrees(corpus.encode(ds, implicit, little), implicit, little, stop_tag)


# --- damaged bytes -------------------------------------------------------------------------------

@contextlib.contextmanager
def time_limit(seconds: float):
    def expire(signum, frame):
        raise TimeoutError(f"the walk took longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def intact(files):
    return [corpus.load(files[name]) for name in
            ("pydicom-undefined-explicit", "pydicom-undefined-implicit", "pydicom-undefined-big",
             "spliced-un-undefined-implicit-items")]


DAMAGE = st.lists(st.tuples(st.floats(0, 1), st.binary(min_size=1, max_size=8)), max_size=4)


def assert_fails_cleanly(data: bytes, implicit: bool, little: bool) -> None:
    """The walk either raises ValueError or struct.error, or returns elements and a Pixel Data
    position that lie inside data; within 2 s either way."""
    with time_limit(2.0):
        try:
            found, stop = read_top_level(data, implicit, little, _TAGS, PIXEL_DATA)
        except (ValueError, struct.error):
            return
    for element in found.values():
        assert len(element.value) == element.length
        assert element.value_tell + element.length <= len(data)
    assert stop is None or stop[0] + stop[1] <= len(data)


@settings(max_examples=300, deadline=None)
@given(which=st.integers(0, 3), cut=st.floats(0, 1), damage=DAMAGE)
def test_damaged_instances_fail_only_with_value_or_struct_errors(intact, which, cut, damage):
    encoded = intact[which]
    data = bytearray(encoded.walked[:int(len(encoded.walked) * cut)])
    for where, replacement in damage:
        at = int(len(data) * where)
        data[at:at + len(replacement)] = replacement
    assert_fails_cleanly(bytes(data), encoded.implicit, encoded.little)


# Pieces of a dataset's structure, (tag, VR, value length, value): None is the length drawn. Each
# is repeated up to thousands of times: deep nesting, items in items, stray delimiters, lengths
# pointing anywhere.
PIECES = {
    "sequence": (0x00091000, b"SQ", UNDEFINED, b""), "un": (0x00091001, b"UN", UNDEFINED, b""),
    "item": (ITEM, b"", UNDEFINED, b""), "item of drawn length": (ITEM, b"", None, b""),
    "item end": (ITEM_END, b"", 0, b""), "sequence end": (SEQUENCE_END, b"", 0, b""),
    "modality": (0x00080060, b"CS", 2, b"CT"),
    "name of drawn length": (0x00100010, b"PN", None, b"AB"),
    "OB of drawn length": (0x00091002, b"OB", None, b""),
    "pixel data of drawn length": (PIXEL_DATA, b"OW", None, b""),
}
STRUCTURE = st.lists(st.tuples(st.sampled_from(sorted(PIECES)),
                               st.sampled_from([1, 2, 3, 17, 3000]),  # times
                               st.sampled_from([0, 1, 8, 0xFFFF, UNDEFINED - 1])),  # drawn length
                     max_size=8)


def _pieces(structure, implicit: bool, little: bool) -> bytes:
    data = b""
    for name, count, drawn_length in structure:
        tag, vr, length, value = PIECES[name]
        data += (_header(tag, vr, drawn_length if length is None else length, implicit, little)
                 + value) * count
    return data


@settings(max_examples=400, deadline=None)
@given(structure=STRUCTURE, syntax=SYNTAXES)
def test_malformed_structure_fails_only_with_value_or_struct_errors(structure, syntax):
    implicit, little = syntax
    assert_fails_cleanly(_pieces(structure, implicit, little), implicit, little)


def test_items_nested_in_items_are_refused_not_recursed():
    data = _header(0x00081140, b"SQ", UNDEFINED) + _header(ITEM, b"", UNDEFINED) * 5000
    with pytest.raises(ValueError, match="nested too deep"):
        read_top_level(data, False, True, _TAGS, PIXEL_DATA)
