"""Segments: keys, attachments as buffers, stat, listing, permissions, and
interop with multiprocessing.shared_memory."""

import os
import tempfile
from multiprocessing import resource_tracker, shared_memory

import numpy as np
import pytest

import shmkit
from conftest import unique


def sysv_key() -> int:
    """A System V key of this run's own: pid and a counter (never 0)."""
    return 0x5F000000 | (os.getpid() & 0xFFFF) << 8 | int(unique("k").rsplit("-", 1)[1]) & 0xFF


@pytest.fixture
def sysv_segment():
    segment = shmkit.Segment.create(sysv_key(), 8192, 0o600)
    yield segment
    try:
        segment.remove()
    except shmkit.NotFound:
        pass


def test_posix_segment_create_attach_stat_remove(posix_name):
    segment = shmkit.Segment.create(posix_name, 4096, mode=0o640)
    try:
        assert segment.kind == "posix" and segment.key == posix_name and segment.id is None
        with segment.attach() as attachment:
            view = memoryview(attachment)
            view[:5] = b"hello"
            assert attachment.read(0, 5) == b"hello"
            view.release()
            stat = segment.stat()
            assert (stat.kind, stat.key, stat.size, stat.mode) == ("posix", posix_name, 4096, 0o640)
            assert any(m.pid == os.getpid() for m in stat.attachers)
        assert any(s.key == posix_name for s in shmkit.segments())
        with shmkit.Segment.open(posix_name).attach(readonly=True) as reader:
            assert bytes(memoryview(reader)[:5]) == b"hello"
            with pytest.raises(TypeError):
                reader.write(0, b"no")
            assert memoryview(reader).readonly
    finally:
        segment.remove()
    with pytest.raises(shmkit.NotFound):
        shmkit.Segment.open(posix_name)


def test_sysv_segment_by_int_and_hex_key(sysv_segment):
    key = int(sysv_segment.key, 16)
    assert sysv_segment.kind == "sysv" and sysv_segment.id is not None
    same = shmkit.Segment.open(f"{key:#x}")
    assert same.id == sysv_segment.id
    with shmkit.Segment.open(key).attach() as attachment:
        array = np.frombuffer(attachment, dtype=np.uint32)
        array[:4] = [1, 2, 3, 4]
        assert attachment.read(0, 8) == (1).to_bytes(4, "little") + (2).to_bytes(4, "little")
        del array
    stat = sysv_segment.stat()
    assert stat.size == 8192 and stat.cpid == os.getpid()
    assert any(s.id == sysv_segment.id for s in shmkit.segments())


def test_ftok_key():
    with tempfile.NamedTemporaryFile() as anchor:
        key = f"ftok:{anchor.name}:7"
        segment = shmkit.Segment.create(key, 4096)
        try:
            assert shmkit.Segment.open(key).id == segment.id
        finally:
            segment.remove()


def test_detach_refuses_while_a_buffer_is_exported(posix_name):
    segment = shmkit.Segment.create(posix_name, 4096)
    try:
        attachment = segment.attach()
        array = np.frombuffer(attachment, dtype=np.uint8)
        with pytest.raises(BufferError):
            attachment.detach()
        array[0] = 7  # still mapped
        del array
        attachment.detach()
        assert attachment.detached
        with pytest.raises(ValueError):
            memoryview(attachment)
        with pytest.raises(ValueError):
            attachment.read(0, 1)
    finally:
        segment.remove()


def test_exceptions_of_segments(posix_name):
    with pytest.raises(shmkit.NotFound) as missing:
        shmkit.Segment.open(posix_name)
    assert isinstance(missing.value, FileNotFoundError)
    segment = shmkit.Segment.create(posix_name, 4096)
    try:
        with pytest.raises(FileExistsError):
            shmkit.Segment.create(posix_name, 4096)
        with segment.attach() as attachment:
            with pytest.raises(shmkit.OutOfBounds):
                attachment.read(4000, 200)
    finally:
        segment.remove()
    with pytest.raises(shmkit.InvalidArgument):
        shmkit.Segment.create("/no/slashes", 4096)
    with pytest.raises(ValueError):
        shmkit.Segment.create("not a key", 4096)
    with pytest.raises(TypeError):
        shmkit.Segment.open(1.5)
    with pytest.raises(shmkit.InvalidArgument):
        shmkit.Segment.create(posix_name, 0)


def test_not_a_segment(posix_name):
    os.mkfifo("/dev/shm" + posix_name, 0o600)
    with pytest.raises(shmkit.NotASegment):
        shmkit.Segment.open(posix_name)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to uid 65534")
def test_permission_denied_as_another_user(sysv_segment, posix_name):
    """Root bypasses the check (CAP_IPC_OWNER): a forked child drops to
    uid/gid 65534 first, then attaches a 0600 segment of root's."""
    posix = shmkit.Segment.create(posix_name, 4096, 0o600)
    try:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report which exceptions it got
            os.close(read)
            try:
                os.setresgid(65534, 65534, 65534)
                os.setresuid(65534, 65534, 65534)
                found = []
                for attempt in (lambda: sysv_segment.attach(), lambda: shmkit.Segment.open(posix_name)):
                    try:
                        attempt()
                        found.append("none")
                    except shmkit.PermissionDenied as err:
                        found.append("PermissionError" if isinstance(err, PermissionError) else "other")
                os.write(write, ",".join(found).encode())
            finally:
                os._exit(0)
        os.close(write)
        with os.fdopen(read, "rb") as report:
            got = report.read().decode()
        os.waitpid(pid, 0)
        assert got == "PermissionError,PermissionError"
    finally:
        posix.remove()


def test_multiprocessing_shared_memory_reads_a_shmkit_segment(posix_name):
    segment = shmkit.Segment.create(posix_name, 4096)
    try:
        with segment.attach() as attachment:
            attachment.write(0, b"from shmkit")
        theirs = shared_memory.SharedMemory(name=posix_name.lstrip("/"))
        # Python 3.11 registers an attach with its resource tracker, which
        # would unlink the segment at exit: this test removes it itself.
        resource_tracker.unregister(theirs._name, "shared_memory")
        try:
            assert bytes(theirs.buf[:11]) == b"from shmkit"
            theirs.buf[11:16] = b" back"
        finally:
            theirs.close()
        with segment.attach(readonly=True) as attachment:
            assert attachment.read(0, 16) == b"from shmkit back"
    finally:
        segment.remove()


def test_shmkit_reads_a_multiprocessing_shared_memory_segment():
    theirs = shared_memory.SharedMemory(create=True, size=4096)
    try:
        theirs.buf[:6] = b"python"
        segment = shmkit.Segment.open("/" + theirs.name)
        assert segment.kind == "posix" and segment.size == 4096
        with segment.attach() as attachment:
            assert attachment.read(0, 6) == b"python"
            attachment.write(6, b" + shmkit")
        assert bytes(theirs.buf[:15]) == b"python + shmkit"
    finally:
        theirs.close()
        theirs.unlink()


def test_truncated_segment_is_an_error_not_a_crash(posix_name):
    segment = shmkit.Segment.create(posix_name, 8192)
    try:
        with segment.attach() as attachment:
            attachment.write(4096, b"gone soon")
            os.truncate("/dev/shm" + posix_name, 0)  # as a hostile peer would
            with pytest.raises(shmkit.Truncated):
                attachment.read(4096, 9)
    finally:
        segment.remove()
