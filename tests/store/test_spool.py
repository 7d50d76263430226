import pytest

from ichnode.store.spool import Spool


def test_write_is_atomic_and_named_by_uids(tmp_path):
    spool = Spool(tmp_path)
    path = spool.path_for("1.2", "1.2.3", "1.2.3.4")
    assert spool.write(path, [b"abc", b"def"]) == 6
    assert path.read_bytes() == b"abcdef"
    assert list(path.parent.iterdir()) == [path]


def test_hostile_uids_cannot_escape_the_spool(tmp_path):
    spool = Spool(tmp_path / "spool")
    path = spool.path_for("../../etc", "a/b", "..")
    assert path.resolve().is_relative_to((tmp_path / "spool").resolve())
    assert ".." not in path.relative_to(tmp_path / "spool").parts
    assert spool.path_for("../x", "1", "2") != spool.path_for("..\\x", "1", "2")


def test_failed_write_leaves_nothing(tmp_path):
    spool = Spool(tmp_path)
    path = spool.path_for("1", "2", "3")

    def chunks():
        yield b"partial"
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        spool.write(path, chunks())
    assert not path.exists()
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_partials_from_a_crash_are_removed(tmp_path):
    spool = Spool(tmp_path)
    leftover = tmp_path / "1" / "2" / "3.dcm.123.456.partial"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"half")
    assert spool.remove_partials() == 1 and not leftover.exists()
