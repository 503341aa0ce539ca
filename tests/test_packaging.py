"""Packaging: a wheel built from this checkout holds every module of the package and the files it reads.

The other tests run against the checkout itself (`pythonpath = .` in pytest.ini, editable install), so a
folder that setup.py's `find_packages` leaves out (no `__init__.py`) imports fine here and is silently
missing from a wheel or a `pip install .`. These tests ask setup.py itself: they run it with
`setuptools.setup` replaced by a recorder, so they check the package list setup.py really computes.
.ci/run also builds and installs a wheel and runs it; this is the fast check of the same thing.
"""

import fnmatch
import pathlib
import runpy

import setuptools

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = "ctxfuse_jax"


def _setup_arguments(monkeypatch) -> dict:
    recorded = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: recorded.update(kwargs))
    monkeypatch.chdir(ROOT)  # find_packages() searches the current directory, as in a build.
    runpy.run_path(str(ROOT / "setup.py"), run_name="__main__")
    return recorded


def _source_files(suffix_is_py: bool) -> list[pathlib.Path]:
    files = [path for path in (ROOT / PACKAGE).rglob("*")
             if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"]
    return sorted(path for path in files if (path.suffix == ".py") == suffix_is_py)


def test_every_folder_with_modules_is_in_setup_packages(monkeypatch):
    packages = set(_setup_arguments(monkeypatch)["packages"])
    folders = {".".join(path.parent.relative_to(ROOT).parts) for path in _source_files(suffix_is_py=True)}
    missing = sorted(folders - packages)
    assert not missing, (f"setup.py's find_packages leaves out {missing}: a wheel would lack these modules. "
                         "Give each folder an __init__.py.")


def test_files_the_package_reads_are_package_data(monkeypatch):
    # Today the package reads no files of its own (the embedded dataset is drawn by code), so this guards
    # the future: a non-Python file put inside ctxfuse_jax/ must be listed in setup.py's package_data.
    package_data = _setup_arguments(monkeypatch).get("package_data", {})
    unlisted = []
    for path in _source_files(suffix_is_py=False):
        package = ".".join(path.parent.relative_to(ROOT).parts)
        patterns = [*package_data.get(package, []), *package_data.get("", [])]
        if not any(fnmatch.fnmatch(path.name, pattern) for pattern in patterns):
            unlisted.append(str(path.relative_to(ROOT)))
    assert not unlisted, (f"{unlisted} would be missing from a wheel: list them in setup.py's package_data "
                          "(or move them out of the package).")
