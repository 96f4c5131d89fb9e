"""Topics: a Python subscriber of publishers in other processes."""

import pytest

import shmkit
from conftest import python_child

PUBLISHER_CHILD = """
import sys, shmkit
with shmkit.Publisher(sys.argv[1]) as publisher:
    print("open", flush=True)
    sys.stdin.readline()  # go
    for i in range(int(sys.argv[2])):
        publisher.send(b"%s %d" % (sys.argv[3].encode(), i))
"""


def test_python_subscriber_of_two_publisher_processes(name):
    import subprocess

    count = 500
    with shmkit.Subscriber(name) as subscriber:
        children = [
            python_child(PUBLISHER_CHILD, name, str(count), tag, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            for tag in ("a", "b")
        ]
        # Both joined before either sends: then the stream ends only when
        # both closed.
        for child in children:
            assert child.stdout.readline() == "open\n"
        for child in children:
            child.stdin.write("go\n")
            child.stdin.flush()
        received = list(subscriber)
        for child in children:
            assert child.wait(timeout=60) == 0
    for tag in (b"a", b"b"):
        mine = [int(m.split()[1]) for m in received if m.split()[0] == tag]
        assert mine == list(range(count)), tag
    assert len(received) == 2 * count


def test_subscriber_timeout_and_closed(name):
    with shmkit.Subscriber(name) as subscriber:
        with pytest.raises(shmkit.Timeout):
            subscriber.recv(timeout=0.1)
        with shmkit.Publisher(name) as publisher:
            publisher.send(b"one")
            assert subscriber.recv(timeout=30) == b"one"
            assert subscriber.last_publisher == publisher.id
            assert subscriber.last_sequence == 0
        with pytest.raises(shmkit.Closed):
            subscriber.recv(timeout=30)


def test_option_mismatch_with_an_existing_topic(name):
    with shmkit.Publisher(name, capacity=4096) as publisher:
        with pytest.raises(shmkit.OptionMismatch) as raised:
            shmkit.Subscriber(name, capacity=8192)
        assert isinstance(raised.value, ValueError)
        assert str(raised.value) == f"topic {name} exists with capacity 4096, not the 8192 asked for"
        with pytest.raises(shmkit.OptionMismatch):
            shmkit.Publisher(name, capacity=1 << 18)  # the default, given: checked
        with shmkit.Subscriber(name):  # no capacity given: the topic's
            with shmkit.Publisher(name, capacity=4096) as same:
                assert same.max_message == publisher.max_message


def test_python_subscriber_of_the_rust_publisher_shmkit_pub(name, cli, tmp_path):
    import subprocess

    count = 10_000
    lines = tmp_path / "lines"
    lines.write_bytes(b"".join(b"pub %d\n" % i for i in range(count)))
    received = []
    with shmkit.Subscriber(name) as subscriber, open(lines, "rb") as stdin:
        publisher = subprocess.Popen([cli, "pub", name], stdin=stdin)
        while True:
            try:
                received.append(subscriber.recv(timeout=60))
            except shmkit.Closed:
                break
    assert publisher.wait(timeout=60) == 0
    assert received == [b"pub %d" % i for i in range(count)]
