"""Rings between Python, the `shmkit` tool and Rust processes; the
zero-copy view; Ctrl-C; a killed peer."""

import os
import signal
import subprocess
import threading
import time
import zlib

import numpy as np
import pytest

import shmkit
from conftest import python_child

MESSAGES = 100_000


def line(i: int) -> bytes:
    """Message i: its number and a checksum of it."""
    body = f"message {i}".encode()
    return body + b" %08x" % zlib.crc32(body)


def check_lines(lines):
    """Every line is message i, in order, with a valid checksum."""
    for i, got in enumerate(lines):
        body, _, crc = got.rpartition(b" ")
        assert int(crc, 16) == zlib.crc32(body), f"message {i}: bad checksum in {got!r}"
        assert got == line(i), f"message {i}: got {got!r}"


def test_python_producer_to_cli_recv(name, cli):
    recv = subprocess.Popen([cli, "recv", name], stdout=subprocess.PIPE)
    output = []
    reader = threading.Thread(target=lambda: output.append(recv.stdout.read()))
    reader.start()
    with shmkit.Producer(name) as producer:
        for i in range(MESSAGES):
            producer.send(line(i), timeout=60)
    reader.join(timeout=120)
    assert recv.wait(timeout=60) == 0
    lines = output[0].split(b"\n")
    assert lines[-1] == b""
    assert len(lines) - 1 == MESSAGES
    check_lines(lines[:-1])


def test_cli_send_to_python_consumer(name, cli, tmp_path):
    data = tmp_path / "lines"
    data.write_bytes(b"".join(line(i) + b"\n" for i in range(MESSAGES)))
    with open(data, "rb") as stdin:
        send = subprocess.Popen([cli, "send", name], stdin=stdin)
        received = []
        with shmkit.Consumer(name) as consumer:
            while True:  # as iteration does, but never waiting for ever
                try:
                    received.append(consumer.recv(timeout=60))
                except shmkit.Closed:
                    break
    assert send.wait(timeout=60) == 0
    assert len(received) == MESSAGES
    check_lines(received)


def test_peer_gone_after_kill_9_of_rust_producer(name, cli):
    send = subprocess.Popen([cli, "send", name], stdin=subprocess.PIPE)
    try:
        with shmkit.Consumer(name) as consumer:
            send.stdin.write(b"one\ntwo\n")
            send.stdin.flush()
            assert consumer.recv(timeout=30) == b"one"
            assert consumer.recv(timeout=30) == b"two"
            os.kill(send.pid, signal.SIGKILL)
            send.wait(timeout=30)
            with pytest.raises(shmkit.PeerGone) as raised:
                consumer.recv(timeout=30)
            assert str(send.pid) in str(raised.value)
    finally:
        send.kill()
        send.wait()


CONSUMER_CHILD = """
import sys, time, numpy, shmkit
consumer = shmkit.Consumer(sys.argv[1])
print("ready", flush=True)
try:
    consumer.recv()
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
    raise
"""


def sleeping(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rpartition(")")[2].split()[0] == "S"


def test_keyboard_interrupt_during_blocking_recv(name):
    child = python_child(CONSUMER_CHILD, name, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert child.stdout.readline() == "ready\n"
        # Ready means it is about to call recv; once it sleeps it waits in it.
        deadline = time.monotonic() + 30
        while not sleeping(child.pid):
            assert time.monotonic() < deadline, "the child never blocked"
        sent = time.monotonic()
        os.kill(child.pid, signal.SIGINT)
        out, err = child.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        child.kill()
        child.wait()
    assert out == "KeyboardInterrupt\n", err
    assert "KeyboardInterrupt" in err
    assert child.returncode == -signal.SIGINT
    # About 100 ms by design; generous because the machine is loaded.
    assert took < 10, f"took {took:.1f} s"


PRODUCER_CHILD = """
import sys, shmkit
with shmkit.Producer(sys.argv[1]) as producer:
    for i in range(int(sys.argv[2])):
        producer.send(i.to_bytes(8, "little") * 4)
"""


def test_python_consumer_and_python_producer_in_separate_processes(name):
    child = python_child(PRODUCER_CHILD, name, "1000")
    with shmkit.Consumer(name) as consumer:
        received = [int.from_bytes(m[:8], "little") for m in consumer]
    assert child.wait(timeout=60) == 0
    assert received == list(range(1000))


def ring_mappings(name):
    """(start, end) of every mapping of ring `name`'s segment in this process."""
    path = f"/dev/shm/shmkit.ring.{name}"
    spans = []
    with open("/proc/self/maps") as maps:
        for row in maps:
            fields = row.split()
            if len(fields) >= 6 and fields[5] == path:
                start, end = (int(x, 16) for x in fields[0].split("-"))
                spans.append((start, end))
    return spans


def test_numpy_view_is_zero_copy_inside_the_ring_mapping(name):
    sent = np.arange(1000, dtype=np.float64)
    with shmkit.Producer(name) as producer, shmkit.Consumer(name) as consumer:
        producer.send(sent)
        with consumer.read(timeout=30) as message:
            array = np.frombuffer(message, dtype=np.float64)
            address = array.ctypes.data
            assert np.array_equal(array, sent)
            assert not array.flags.writeable
            spans = ring_mappings(name)
            assert spans, "the ring is not mapped"
            assert any(start <= address and address + array.nbytes <= end for start, end in spans)
            del array


def test_view_after_release_raises(name):
    with shmkit.Producer(name) as producer, shmkit.Consumer(name) as consumer:
        producer.send(b"released soon")
        with consumer.read(timeout=30) as message:
            assert bytes(message) == b"released soon"
            assert message.tobytes() == b"released soon"
        assert message.released
        with pytest.raises(ValueError):
            memoryview(message)
        with pytest.raises(ValueError):
            np.frombuffer(message, dtype=np.uint8)
        with pytest.raises(ValueError):
            message.tobytes()
        # The consumer goes on.
        producer.send(b"next")
        assert consumer.recv(timeout=30) == b"next"


def test_release_while_an_array_is_alive_raises_buffer_error(name):
    with shmkit.Producer(name) as producer, shmkit.Consumer(name) as consumer:
        producer.send(np.arange(16, dtype=np.int32))
        producer.send(b"second")
        message = consumer.read(timeout=30)
        array = np.frombuffer(message, dtype=np.int32)
        with pytest.raises(BufferError):
            message.release()
        # Not released: the array still reads the message, and the
        # consumer refuses to move on past it.
        assert array.sum() == sum(range(16))
        with pytest.raises(shmkit.Error, match="still held"):
            consumer.recv(timeout=1)
        del array
        message.release()
        with pytest.raises(ValueError):
            memoryview(message)
        assert consumer.recv(timeout=30) == b"second"


def test_a_dropped_message_gives_its_space_back(name):
    with shmkit.Producer(name) as producer, shmkit.Consumer(name) as consumer:
        producer.send(b"first")
        producer.send(b"second")
        consumer.read(timeout=30)  # dropped at once, never used
        assert consumer.recv(timeout=30) == b"second"


def test_iteration_ends_at_close_and_recv_raises_closed(name):
    with shmkit.Producer(name) as producer, shmkit.Consumer(name) as consumer:
        for word in (b"a", b"b", bytearray(b"c"), memoryview(b"d")):
            producer.send(word)
        producer.close()
        assert list(consumer) == [b"a", b"b", b"c", b"d"]
        with pytest.raises(shmkit.Closed):
            consumer.recv(timeout=30)


def test_timeout_is_a_timeout_error(name):
    with shmkit.Consumer(name) as consumer:
        started = time.monotonic()
        with pytest.raises(shmkit.Timeout) as raised:
            consumer.recv(timeout=0.2)
        assert time.monotonic() - started >= 0.2
        assert isinstance(raised.value, TimeoutError)
        assert isinstance(raised.value, shmkit.Error)
        with pytest.raises(TimeoutError):
            consumer.read(timeout=0)
        with pytest.raises(ValueError):
            consumer.recv(timeout=-1)


def test_send_timeout_when_the_ring_is_full(name):
    with shmkit.Producer(name, capacity=4096) as producer, shmkit.Consumer(name):
        with pytest.raises(shmkit.Timeout):
            for _ in range(10_000):
                producer.send(b"x" * 100, timeout=0.1)


def test_too_large_message(name):
    with shmkit.Producer(name, capacity=4096) as producer:
        with pytest.raises(shmkit.TooLarge):
            producer.send(b"x" * (producer.max_message + 1))
        with pytest.raises(ValueError):
            producer.send(b"x" * 4096)


def test_invalid_ring_name_and_capacity():
    with pytest.raises(shmkit.InvalidArgument):
        shmkit.Producer("no/slashes")
    with pytest.raises(ValueError):
        shmkit.Consumer(f"pytest-capacity-{os.getpid()}", capacity=1000)


def test_second_consumer_is_in_use(name):
    with shmkit.Consumer(name):
        with pytest.raises(shmkit.InUse):
            shmkit.Consumer(name)


def test_corrupt_ring_segment(name):
    with open(f"/dev/shm/shmkit.ring.{name}", "wb") as garbage:
        garbage.write(b"\xa5" * 8192)
    os.chmod(f"/dev/shm/shmkit.ring.{name}", 0o600)
    with pytest.raises(shmkit.Corrupt):
        shmkit.Consumer(name)


def test_closed_endpoint_raises_closed(name):
    producer = shmkit.Producer(name)
    producer.close()
    producer.close()
    assert producer.closed
    with pytest.raises(shmkit.Closed):
        producer.send(b"late")


def test_option_mismatch_with_an_existing_ring(name):
    with shmkit.Producer(name, capacity=4096):
        with pytest.raises(shmkit.OptionMismatch) as raised:
            shmkit.Consumer(name, capacity=8192)
        assert isinstance(raised.value, ValueError)
        with shmkit.Consumer(name) as consumer:  # no capacity given: the ring's
            assert consumer.max_message > 0


def test_peer_left_when_the_consumer_closed_and_the_ring_fills(name):
    with shmkit.Producer(name, capacity=4096) as producer:
        shmkit.Consumer(name).close()
        with pytest.raises(shmkit.PeerLeft):
            for _ in range(10_000):
                producer.send(b"x" * 100, timeout=30)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the ring to another user")
def test_untrusted_owner_of_an_existing_ring(name):
    shmkit.Producer(name).close()  # the ring stays, closed, for a consumer
    os.chown(f"/dev/shm/shmkit.ring.{name}", 65534, 65534)
    with pytest.raises(shmkit.UntrustedOwner) as raised:
        shmkit.Consumer(name)
    assert isinstance(raised.value, PermissionError)
