"""Prepared spool slots (ichnode/store/slots.py): an instance is flushed into a pre-written file,
renamed to its spool name and cut to its own bytes later. Every state a power cut can leave is
finished at start, and a torn write (never acknowledged) is never taken for an instance."""
from __future__ import annotations

import os
from pathlib import Path

import pydicom

from ichnode.dicom.status import StoreStatus
from ichnode.store import slots as slotting
from ichnode.store.disk import DiskGuard, disk_state
from ichnode.store.jobs import JobState
from ichnode.store.spool import Spool
from ichnode.synth import SynthSpec, write_series

from tests.helpers import wait_until
from tests.reliability.peers import association, send_dataset, start_node


def _instances(tmp_path: Path, count: int = 3) -> list[tuple[pydicom.Dataset, bytes]]:
    truth = write_series(tmp_path / "series", SynthSpec(subtype="none", matrix=64, seed=5))
    files = [tmp_path / "series" / name for name in truth["files"][:count]]
    return [(pydicom.dcmread(f), f.read_bytes()) for f in files]


def _slot_bytes(data: bytes) -> int:
    return (len(data) * 3 // 2) & ~1  # the instance fits, and is more than half a slot


def _spool_with_slots(root: Path, count: int, slot_bytes: int) -> Spool:
    spool = Spool(root)
    spool.use_slots(count, slot_bytes)
    wait_until(lambda: spool.slots.ready >= count, 60, what="prepared slots")
    return spool


def _path(spool: Spool, ds: pydicom.Dataset) -> Path:
    return spool.path_for(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)


def test_an_instance_written_into_a_slot_ends_as_its_exact_bytes(tmp_path):
    (ds, data), = _instances(tmp_path, 1)
    spool = _spool_with_slots(tmp_path / "spool", 3, _slot_bytes(data))
    try:
        path = _path(spool, ds)
        assert spool.write(path, [data[:1000], data[1000:]]) == len(data)
        assert spool.slots.taken == 1  # the slot path was taken, not the ordinary one
        spool.settle()
        assert path.read_bytes() == data
        assert spool.same_content(path, [data])
    finally:
        spool.close()


def test_instances_a_slot_cannot_hold_are_written_the_ordinary_way(tmp_path):
    (ds, data), = _instances(tmp_path, 1)
    spool = _spool_with_slots(tmp_path / "spool", 2, len(data) // 2 * 2)  # too small by the trailer
    try:
        path = _path(spool, ds)
        spool.write(path, [data])
        assert spool.slots.taken == 0 and path.read_bytes() == data
    finally:
        spool.close()


def test_every_state_a_power_cut_leaves_is_finished_at_start(tmp_path):
    instances = _instances(tmp_path, 3)
    slot_bytes = max(_slot_bytes(data) for _, data in instances)
    root = tmp_path / "spool"
    spool = _spool_with_slots(root, 6, slot_bytes)
    spool.close()
    ready = sorted((root / ".slots").glob("*.slot"))
    (renamed_lost, data_a), (not_cut, data_b), (torn, data_c) = instances
    # A: flushed into its slot; the rename never reached the disk.
    slotting.SlotPool.fill(ready[0], [data_a], len(data_a))
    # B: flushed and renamed; the cut to its length never reached the disk.
    slotting.SlotPool.fill(ready[1], [data_b], len(data_b))
    path_b = _path(spool, not_cut)
    path_b.parent.mkdir(parents=True, exist_ok=True)
    os.replace(ready[1], path_b)
    # C: torn: the trailer reached the disk, one block of the instance did not.
    slotting.SlotPool.fill(ready[2], [data_c], len(data_c))
    with open(ready[2], "r+b") as fh:
        fh.seek(len(data_c) - 100)
        fh.write(bytes(100))
    # A slot of a size the configuration no longer uses.
    (root / ".slots" / "old.slot").write_bytes(bytes(slot_bytes + 2))
    # A complete slot that is no instance the node would take: kept for an operator, never reused.
    slotting.SlotPool.fill(ready[3], [b"not DICOM"], 9)

    spool = Spool(root)
    try:
        assert spool.use_slots(6, slot_bytes) == 1
        assert _path(spool, renamed_lost).read_bytes() == data_a
        assert path_b.read_bytes() == data_b
        assert not _path(spool, torn).exists()
        assert not (root / ".slots" / "old.slot").exists()
        # The torn slot is an intact empty slot again: the next trailer cuts its stale bytes off.
        assert ready[2].exists() and spool.slots.ready >= 3
        assert ready[3].read_bytes().startswith(b"not DICOM")
        assert ready[3] not in spool.slots._ready
    finally:
        spool.close()


def test_a_node_receives_a_series_through_its_slots(tmp_path):
    truth = write_series(tmp_path / "series", SynthSpec(subtype="none", matrix=64, seed=9))
    files = [tmp_path / "series" / name for name in truth["files"]]
    slot_kb = -(-max(f.stat().st_size for f in files) * 5 // 4 // 1024)
    node = start_node(tmp_path, **{"spool.prepared_slots": len(files) + 2, "spool.slot_kb": slot_kb,
                                   "assembly.quiet_seconds": 1})
    try:
        wait_until(lambda: node.spool.slots.ready >= len(files) + 2, 60, what="prepared slots")
        with association(node.port) as assoc:
            assert all(send_dataset(assoc, pydicom.dcmread(f)) == 0 for f in files)
        assert node.spool.slots.taken == len(files)
        job = wait_until(lambda: next(iter(node.store.jobs((JobState.DONE, JobState.FAILED))), None),
                         120, what="the series' analysis")
        assert job.state is JobState.DONE and job.outcome == "analysed", job.reason
        stored = {ds.SOPInstanceUID: ds for ds in map(pydicom.dcmread,
                                                      node.store.instance_paths(job.series_key))}
        sent = {ds.SOPInstanceUID: ds for ds in map(pydicom.dcmread, files)}
        assert stored.keys() == sent.keys()
        assert all(stored[uid].PixelData == ds.PixelData for uid, ds in sent.items())
        assert list((tmp_path / "var" / "spool").rglob("*.dcm"))  # cut: no trailer is left
        for path in (tmp_path / "var" / "spool").rglob("*.dcm"):
            with open(path, "rb") as fh:
                assert slotting.read_trailer(fh.fileno(), path.stat().st_size, False) is None
    finally:
        node.stop()


def test_instances_bound_for_ready_slots_are_taken_under_the_disk_watermark(tmp_path):
    """Writing into a ready slot takes no new space: with the disk below the watermark by less than
    the slots hold, images that fit a slot are stored and one that needs new space is refused."""
    truth = write_series(tmp_path / "large", SynthSpec(subtype="none", matrix=512, seed=9))
    large = [tmp_path / "large" / name for name in truth["files"][:3]]
    (small, _), = _instances(tmp_path, 1)  # 64 x 64: under half a slot, written the ordinary way
    slot_kb, count = -(-max(f.stat().st_size for f in large) * 5 // 4 // 1024), 32
    node = start_node(tmp_path, **{"spool.prepared_slots": count, "spool.slot_kb": slot_kb})
    try:
        wait_until(lambda: node.spool.slots.ready >= count, 60, what="prepared slots")
        held_mb = count * slot_kb / 1024
        node.store_handler.disk_guard = DiskGuard(node.config.spool_dir,
                                                  disk_state(tmp_path).free_mb + held_mb / 2, 100)
        with association(node.port) as assoc:
            assert send_dataset(assoc, small) == StoreStatus.OUT_OF_RESOURCES
            assert [send_dataset(assoc, pydicom.dcmread(f)) for f in large] == [StoreStatus.SUCCESS] * 3
        assert node.spool.slots.taken == 3
        assert node.store.instance_path(small.SOPInstanceUID) is None
    finally:
        node.stop()


def test_slots_are_prepared_only_while_the_disk_guard_allows(tmp_path):
    allowed = []
    pool = slotting.SlotPool(tmp_path / "slots", 4, 8192, may_grow=lambda size: bool(allowed))
    (tmp_path / "slots").mkdir()
    assert pool.prepare_batch() == 0 and pool.ready == 0
    assert list((tmp_path / "slots").iterdir()) == []
    allowed.append(True)
    assert pool.prepare_batch() == 4 and pool.ready == 4
    assert sorted(p.stat().st_size for p in (tmp_path / "slots").iterdir()) == [8192] * 4
    assert pool.prepare_batch() == 0  # full
