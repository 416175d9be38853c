"""`tomllib` on Python 3.11+, the `tomli` backport before it (pyproject.toml's extras name it for
those Pythons): one import for every module that reads TOML."""

import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised by the Python 3.8/3.9 runs
    import tomli as tomllib

__all__ = ["tomllib"]
