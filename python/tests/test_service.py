"""Services: Python clients and servers in separate processes."""

import os
import signal
import subprocess

import pytest

import shmkit
from conftest import python_child

# Answers each request with its bytes reversed, prefixed by the client's
# slot, until it is killed or stdin closes.
SERVER_CHILD = """
import sys, threading, os, shmkit
server = shmkit.Server(sys.argv[1])
print("serving", flush=True)
threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
for request in server:
    server.reply(request, b"%d:" % request.client + request.data[::-1])
"""

CLIENT_CHILD = """
import sys, shmkit
with shmkit.Client(sys.argv[1]) as client:
    for i in range(int(sys.argv[2])):
        request = b"%s-%d" % (sys.argv[3].encode(), i)
        response = client.call(request, timeout=60)
        slot, body = response.split(b":", 1)
        assert int(slot) == client.slot, response
        assert body == request[::-1], response
print("done", flush=True)
"""


def serving(name):
    server = python_child(SERVER_CHILD, name, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert server.stdout.readline() == "serving\n"
    return server


def stop(server):
    server.stdin.close()
    assert server.wait(timeout=60) == 0


def test_python_clients_in_three_processes_call_a_python_server(name):
    server = serving(name)
    try:
        clients = [
            python_child(CLIENT_CHILD, name, "500", tag, stdout=subprocess.PIPE) for tag in ("a", "b", "c")
        ]
        for client in clients:
            assert client.stdout.readline() == "done\n"
            assert client.wait(timeout=60) == 0
        assert shmkit.Client(name).call(b"abc", timeout=30).endswith(b":cba")
    finally:
        stop(server)


def test_pipelined_calls_are_answered_in_any_order(name):
    with shmkit.Server(name) as server, shmkit.Client(name) as client:
        calls = [client.send(b"call %d" % i) for i in range(3)]
        assert client.in_flight == 3
        requests = [server.recv(timeout=30) for _ in calls]
        assert [r.data for r in requests] == [b"call 0", b"call 1", b"call 2"]
        assert [r.id for r in requests] == [c.id for c in calls]
        assert all(r.client == client.slot for r in requests)
        for request in reversed(requests):
            server.reply(request, bytearray(b"re " + request.data))
        assert client.wait(calls[2], timeout=30) == b"re call 2"
        assert client.wait(calls[0], timeout=30) == b"re call 0"
        assert client.wait(calls[1], timeout=30) == b"re call 1"
        assert all(c.answered for c in calls)
        assert client.in_flight == 0
        with pytest.raises(shmkit.InvalidArgument):
            client.wait(calls[0], timeout=1)


def test_timeouts_leave_the_call_pending_and_nothing_else_waits(name):
    with shmkit.Client(name) as client:
        with pytest.raises(shmkit.Timeout):
            client.call(b"nobody serves", timeout=0.1)
        call = client.send(b"later")
        with pytest.raises(TimeoutError):
            client.wait(call, timeout=0.1)
        with shmkit.Server(name) as server:
            # The abandoned call's request comes first; its response is skipped.
            first = server.recv(timeout=30)
            assert first.data == b"nobody serves"
            server.reply(first, b"too late")
            second = server.recv(timeout=30)
            assert second.data == b"later"
            server.reply(second, b"now")
            assert client.wait(call, timeout=30) == b"now"


def test_a_killed_server_makes_a_waiting_call_raise_peer_gone(name):
    server = python_child(
        "import sys, shmkit, time\nserver = shmkit.Server(sys.argv[1])\nprint('serving', flush=True)\nsys.stdin.read()\n",
        name,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert server.stdout.readline() == "serving\n"
        with shmkit.Client(name) as client:
            call = client.send(b"never answered")
            os.kill(server.pid, signal.SIGKILL)
            assert server.wait(timeout=60) == -signal.SIGKILL
            with pytest.raises(shmkit.PeerGone):
                client.wait(call, timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_oversized_requests_and_closed_objects_raise(name):
    with shmkit.Server(name) as server, shmkit.Client(name) as client:
        with pytest.raises(shmkit.Timeout):
            server.recv(timeout=0.05)
        with pytest.raises(shmkit.TooLarge):
            client.call(bytes(client.max_request + 1), timeout=1)
        assert client.name == name == server.name
        assert server.clients == 1
    with pytest.raises(shmkit.Closed):
        client.call(b"x")
    with pytest.raises(shmkit.Closed):
        server.recv(timeout=0)


def test_a_python_client_calls_the_rust_server_shmkit_serve(name, cli):
    server = subprocess.Popen([cli, "serve", name, "--", "sed", "-u", r"s/.*/\U&/"], stderr=subprocess.PIPE)
    try:
        with shmkit.Client(name) as client:
            assert client.call(b"hello", timeout=60) == b"HELLO"
            assert client.call(b"from python", timeout=60) == b"FROM PYTHON"
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
