"""What the tests share: unique names, cleanup of what a test made, the
`shmkit` command-line tool, and child Python processes."""

import itertools
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
_counter = itertools.count()


def unique(prefix: str) -> str:
    """A name no other test (or run) uses: prefix, pid and a counter."""
    return f"pytest-{prefix}-{os.getpid()}-{next(_counter)}"


def _remove_ring_files(name: str) -> None:
    for kind in ("ring", "topic", "service"):
        try:
            os.unlink(f"/dev/shm/shmkit.{kind}.{name}")
        except FileNotFoundError:
            pass


@pytest.fixture
def name(request):
    """A fresh ring, topic or service name; whatever ring, topic or service
    of that name is left when the test ends (a killed peer's) is removed."""
    ring = unique(request.node.name.replace("[", "-").replace("]", "")[:40])
    yield ring
    _remove_ring_files(ring)


@pytest.fixture
def posix_name():
    """A fresh POSIX segment name; removed after the test if it exists."""
    segment = "/" + unique("seg")
    yield segment
    try:
        os.unlink("/dev/shm" + segment)
    except FileNotFoundError:
        pass


def _find_cli() -> pathlib.Path:
    """The `shmkit` binary: $SHMKIT_BIN if set, else target/debug/shmkit,
    built (or found up to date) by cargo now: a binary left from before a
    change to the ring format would not speak to this package."""
    if os.environ.get("SHMKIT_BIN"):
        return pathlib.Path(os.environ["SHMKIT_BIN"])
    subprocess.run(["cargo", "build", "--quiet", "-p", "shmkit-cli"], cwd=REPO, check=True)
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return target / "debug" / "shmkit"


@pytest.fixture(scope="session")
def cli() -> str:
    return str(_find_cli())


def python_child(code: str, *args: str, **popen) -> subprocess.Popen:
    """A child Python process running `code` (with this interpreter, so it
    imports the same shmkit)."""
    return subprocess.Popen([sys.executable, "-c", code, *args], text=True, **popen)
