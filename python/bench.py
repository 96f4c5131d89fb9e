#!/usr/bin/env python3
"""Python-to-Python benchmark: shmkit rings beside multiprocessing.Pipe and
multiprocessing.Queue, measured in the same run.

Two measurements, each between two processes (the child started with the
"spawn" method, so it shares nothing with the parent but what the transport
carries):

- round trip: the parent sends a 64-byte message, the child echoes it back;
  the figure is the median time of one round trip;
- throughput: the child sends 1 MiB numpy arrays (float64), the parent
  receives each as an array; the figure is arrays and GiB per second. For
  shmkit both ways are shown: `recv()` (a copy into bytes) and `read()`
  (numpy.frombuffer on the message in the ring, no copy).

Usage: python bench.py [--quick] [--round-trips N] [--arrays N]
Needs numpy and shmkit (pip install ./python). Figures depend on the
machine and its load: take them on an idle one.
"""

import argparse
import multiprocessing as mp
import os
import statistics
import time

import sys

import numpy as np

# This script sits beside the package's sources (python/shmkit), which
# lack the compiled module: import the installed package, not those.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]

import shmkit  # noqa: E402

SMALL = 64
ARRAY_BYTES = 1 << 20
RING_CAPACITY = 4 << 20  # the largest message is about half of it


def ring_names(tag):
    base = f"bench-{tag}-{os.getpid()}"
    return base + "-ping", base + "-pong"


# --- children (top level: "spawn" imports this module) ------------------------


def shmkit_echo(ping, pong, count):
    with shmkit.Consumer(ping) as inbox, shmkit.Producer(pong) as outbox:
        for _ in range(count):
            outbox.send(inbox.recv())


def pipe_echo(conn, count):
    for _ in range(count):
        conn.send_bytes(conn.recv_bytes())


def queue_echo(inbox, outbox, count):
    for _ in range(count):
        outbox.put(inbox.get())


def shmkit_arrays(name, count):
    array = np.arange(ARRAY_BYTES // 8, dtype=np.float64)
    with shmkit.Producer(name, capacity=RING_CAPACITY) as producer:
        for _ in range(count):
            producer.send(array)


def pipe_arrays(conn, count):
    array = np.arange(ARRAY_BYTES // 8, dtype=np.float64)
    for _ in range(count):
        conn.send_bytes(array)
    conn.close()


def queue_arrays(queue, count):
    array = np.arange(ARRAY_BYTES // 8, dtype=np.float64)
    for _ in range(count):
        queue.put(array)


# --- measurements ------------------------------------------------------------


def round_trips(ping_once, count):
    """Median seconds of `ping_once()` over `count` calls (after a warm-up)."""
    for _ in range(min(1000, count // 10)):
        ping_once()
    times = []
    clock = time.perf_counter
    for _ in range(count):
        start = clock()
        ping_once()
        times.append(clock() - start)
    return statistics.median(times)


def rt_shmkit(ctx, count):
    ping, pong = ring_names("rt")
    warm = min(1000, count // 10)
    with shmkit.Producer(ping) as outbox, shmkit.Consumer(pong) as inbox:
        child = ctx.Process(target=shmkit_echo, args=(ping, pong, count + warm))
        child.start()
        message = b"x" * SMALL

        def once():
            outbox.send(message)
            inbox.recv()

        result = round_trips(once, count)
        child.join()
    return result


def rt_pipe(ctx, count):
    mine, theirs = ctx.Pipe()
    warm = min(1000, count // 10)
    child = ctx.Process(target=pipe_echo, args=(theirs, count + warm))
    child.start()
    message = b"x" * SMALL

    def once():
        mine.send_bytes(message)
        mine.recv_bytes()

    result = round_trips(once, count)
    child.join()
    return result


def rt_queue(ctx, count):
    inbox, outbox = ctx.Queue(), ctx.Queue()
    warm = min(1000, count // 10)
    child = ctx.Process(target=queue_echo, args=(outbox, inbox, count + warm))
    child.start()
    message = b"x" * SMALL

    def once():
        outbox.put(message)
        inbox.get()

    result = round_trips(once, count)
    child.join()
    return result


def timed(receive_one, count):
    """Seconds to receive `count` arrays, timed from the first one's
    arrival (so that the child's start-up is not counted)."""
    receive_one()
    start = time.perf_counter()
    for _ in range(count):
        receive_one()
    return time.perf_counter() - start


def tp_shmkit(ctx, count, zero_copy):
    name = ring_names("tp-zc" if zero_copy else "tp-copy")[0]
    total = 0.0
    with shmkit.Consumer(name, capacity=RING_CAPACITY) as consumer:
        child = ctx.Process(target=shmkit_arrays, args=(name, count + 1))
        child.start()

        def receive_one():
            nonlocal total
            if zero_copy:
                with consumer.read() as message:
                    array = np.frombuffer(message, dtype=np.float64)
                    total += array[-1]
                    del array
            else:
                total += np.frombuffer(consumer.recv(), dtype=np.float64)[-1]

        seconds = timed(receive_one, count)
        child.join()
    assert total == (count + 1) * (ARRAY_BYTES // 8 - 1)
    return seconds


def tp_pipe(ctx, count):
    mine, theirs = ctx.Pipe(duplex=False)
    child = ctx.Process(target=pipe_arrays, args=(theirs, count + 1))
    child.start()
    theirs.close()
    total = 0.0

    def receive_one():
        nonlocal total
        total += np.frombuffer(mine.recv_bytes(), dtype=np.float64)[-1]

    seconds = timed(receive_one, count)
    child.join()
    assert total == (count + 1) * (ARRAY_BYTES // 8 - 1)
    return seconds


def tp_queue(ctx, count):
    queue = ctx.Queue(maxsize=8)
    child = ctx.Process(target=queue_arrays, args=(queue, count + 1))
    child.start()
    total = 0.0

    def receive_one():
        nonlocal total
        total += queue.get()[-1]

    seconds = timed(receive_one, count)
    child.join()
    assert total == (count + 1) * (ARRAY_BYTES // 8 - 1)
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few iterations: checks that it runs, not a measurement")
    parser.add_argument("--round-trips", type=int, default=20_000, metavar="N")
    parser.add_argument("--arrays", type=int, default=2_000, metavar="N")
    args = parser.parse_args()
    if args.quick:
        args.round_trips, args.arrays = 200, 20
    ctx = mp.get_context("spawn")

    print(f"64 B round trip between two Python processes, median of {args.round_trips}:")
    for label, run in (("shmkit ring", rt_shmkit), ("multiprocessing.Pipe", rt_pipe), ("multiprocessing.Queue", rt_queue)):
        print(f"  {label:36} {run(ctx, args.round_trips) * 1e6:9.1f} µs")

    print(f"\n1 MiB numpy arrays from one Python process to another, {args.arrays} arrays:")
    runs = (
        ("shmkit ring, read() (zero-copy view)", lambda: tp_shmkit(ctx, args.arrays, zero_copy=True)),
        ("shmkit ring, recv() (copy)", lambda: tp_shmkit(ctx, args.arrays, zero_copy=False)),
        ("multiprocessing.Pipe (send_bytes)", lambda: tp_pipe(ctx, args.arrays)),
        ("multiprocessing.Queue (pickle)", lambda: tp_queue(ctx, args.arrays)),
    )
    for label, run in runs:
        seconds = run()
        rate = args.arrays / seconds
        print(f"  {label:36} {rate:9.0f} arrays/s {rate * ARRAY_BYTES / (1 << 30):7.2f} GiB/s")


if __name__ == "__main__":
    main()
