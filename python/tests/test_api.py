"""The package's surface: what it exports has docstrings and type stubs."""

import ast
import inspect
import pathlib

import shmkit

STUBS = pathlib.Path(shmkit.__file__).with_name("__init__.pyi")


def public_members(cls):
    return [n for n, _ in inspect.getmembers(cls) if not n.startswith("_")]


def test_everything_exported_has_a_docstring():
    for name in shmkit.__all__:
        obj = getattr(shmkit, name)
        assert (obj.__doc__ or "").strip(), f"shmkit.{name} has no docstring"
        if inspect.isclass(obj) and not issubclass(obj, BaseException):
            for member in public_members(obj):
                doc = getattr(obj, member).__doc__
                assert (doc or "").strip(), f"shmkit.{name}.{member} has no docstring"


def test_stubs_cover_every_export_and_member():
    tree = ast.parse(STUBS.read_text())
    stubbed = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            stubbed[node.name] = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
        elif isinstance(node, ast.FunctionDef):
            stubbed[node.name] = set()
    assert set(shmkit.__all__) <= set(stubbed), set(shmkit.__all__) - set(stubbed)
    for name in shmkit.__all__:
        obj = getattr(shmkit, name)
        if inspect.isclass(obj) and not issubclass(obj, BaseException):
            missing = set(public_members(obj)) - stubbed[name]
            assert not missing, f"stubs of shmkit.{name} lack {missing}"


def test_exception_classes_derive_from_error_and_their_builtins():
    assert issubclass(shmkit.Timeout, TimeoutError)
    assert issubclass(shmkit.PermissionDenied, PermissionError)
    assert issubclass(shmkit.NotFound, FileNotFoundError)
    for name in ("PeerGone", "Closed", "Timeout", "Corrupt", "NotFound", "PermissionDenied"):
        assert issubclass(getattr(shmkit, name), shmkit.Error)
        assert getattr(shmkit, name).__module__ == "shmkit"


def test_package_is_typed():
    assert STUBS.with_name("py.typed").is_file()
