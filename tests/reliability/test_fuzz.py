"""Fuzzing the DICOM parsing paths with hypothesis (derandomized: the same examples every run).

Mutated bytes of a valid CT instance (bit flips, overwrites, insertions, deletions, truncation,
mostly in the header where the parser works) go through:
- `read_headers` and the header checks that follow it in the pipeline: a file is either read or
  listed as unreadable, and a series is either usable or NotEligible with a reason; nothing else
  escapes;
- the C-STORE handler's decode path (`inspect_instance`): always a verdict, never an exception;
- the running node over DICOM: every answer is one of the node's named statuses (never pynetdicom's
  0xC211 "handler raised"), and the association stays up.
"""
from __future__ import annotations

import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ichnode.assemble.eligibility import check_headers
from ichnode.assemble.series import read_headers, stack_geometry
from ichnode.config import EligibilityConfig
from ichnode.dicom.intake import Instance, Refused, inspect_instance
from ichnode.dicom.status import StoreStatus
from ichnode.errors import NotEligible
from ichnode.synth import SynthSpec, write_series

from tests.reliability.peers import association, dataset_bytes, send_raw, start_node, write_with_meta

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns on damaged bytes
HEADER = 1600  # most mutations land in the first bytes: the file meta and the header elements
OPS = st.lists(st.tuples(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]),
                         st.one_of(st.integers(0, HEADER), st.integers(0, 1 << 20)),
                         st.integers(0, 255)),
               min_size=1, max_size=6)
FUZZ = settings(derandomize=True, database=None, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def mutate(data: bytes, ops) -> bytes:
    buf = bytearray(data)
    for op, pos, value in ops:
        pos = pos % (len(buf) + 1)
        if op == "flip" and pos < len(buf):
            buf[pos] ^= 1 << (value % 8)
        elif op == "set" and pos < len(buf):
            buf[pos] = value
        elif op == "insert":
            buf[pos:pos] = bytes([value]) * (1 + value % 5)
        elif op == "delete":
            del buf[pos:pos + 1 + value % 9]
        elif op == "truncate":
            del buf[pos:]
    return bytes(buf)


class Valid(tuple):
    """(folder, file bytes, file meta, dataset bytes) of one valid instance; short repr in reports."""

    def __repr__(self) -> str:
        return f"<valid CT instance, {len(self[1])} bytes>"


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    truth = write_series(tmp / "series", SynthSpec(subtype="none", matrix=32, seed=90))
    path = tmp / "series" / truth["files"][10]
    meta, body = dataset_bytes(path)
    return Valid((tmp, path.read_bytes(), meta, body))


@settings(FUZZ, max_examples=300)
@given(ops=OPS)
def test_read_headers_on_mutated_files(valid, ops):
    tmp, data, _, _ = valid
    path = tmp / "mutated.dcm"
    path.write_bytes(mutate(data, ops))
    headers = read_headers([path])
    assert len(headers.datasets) + len(headers.unreadable) == 1
    if headers.datasets:
        try:
            check_headers(headers.datasets, EligibilityConfig())
            stack_geometry(headers, 0.5)
        except NotEligible:
            pass


@settings(FUZZ, max_examples=300)
@given(ops=OPS)
def test_store_decode_path_on_mutated_datasets(valid, ops):
    _, _, meta, body = valid
    verdict = inspect_instance(mutate(body, ops), str(meta.file_meta.TransferSyntaxUID),
                               pydicom.uid.CTImageStorage, 64 << 20)
    assert isinstance(verdict, (Instance, Refused))
    if isinstance(verdict, Refused):
        assert verdict.status in StoreStatus and verdict.reason


@pytest.fixture(scope="module")
def fuzz_node(tmp_path_factory):
    node = start_node(tmp_path_factory.mktemp("fuzz-node"), **{"assembly.quiet_seconds": 300.0})
    yield node
    node.stop()


@settings(FUZZ, max_examples=60)
@given(ops=OPS)
def test_node_answers_mutated_instances_with_named_statuses(valid, fuzz_node, ops):
    tmp, _, meta, body = valid
    path = write_with_meta(tmp / "mutated-send.dcm", meta, mutate(body, ops))
    with association(fuzz_node.port) as assoc:
        assert assoc.is_established
        status = send_raw(assoc, path)
        assert status in {s.value for s in StoreStatus}, hex(status) if status is not None else None
        assert assoc.is_established
