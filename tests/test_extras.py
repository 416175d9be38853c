"""Every third-party import in edge_eas is declared by pyproject.toml (the core install or an
extra), and the extras `requirements.py` names in its one-line "pip install 'edge-eas[...]'"
messages really install those modules. A new import that no extra brings fails here, not on a
user's device."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

from edge_eas.common.requirements import DISTRIBUTIONS, EXTRAS
from edge_eas.common.toml_compat import tomllib

REPO = Path(__file__).resolve().parents[1]
# found at run time when present, never required: the engine deploy installs where LiteRT has no wheel
ALTERNATIVES = {"tflite_runtime"}


def _name(req: str) -> str:
    return re.split(r"[\s<>=!~;\[]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def extras() -> dict[str, set[str]]:
    """pyproject's extras as distribution names, `edge-eas[x]` expanded; "" is the core install."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    raw = {"": project["dependencies"], **project["optional-dependencies"]}

    def expand(name: str) -> set[str]:
        out = set()
        for req in raw[name]:
            m = re.match(r"edge-eas\[([^\]]+)\]", req)
            out |= set().union(*(expand(e) for e in m.group(1).split(","))) if m else {_name(req)}
        return out
    return {name: expand(name) for name in raw}


def third_party_imports() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for f in (REPO / "edge_eas").rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for top in {n.split(".")[0] for n in names} - {"edge_eas"}:
                if top not in sys.stdlib_module_names:
                    found.setdefault(top, set()).add(str(f.relative_to(REPO)))
    return found


def dist(module: str) -> str:
    return DISTRIBUTIONS.get(module, module).lower().replace("_", "-")


def test_every_third_party_import_is_declared_by_an_extra() -> None:
    declared = set().union(*extras().values())
    missing = {m: sorted(files) for m, files in third_party_imports().items()
               if m not in ALTERNATIVES and dist(m) not in declared}
    assert not missing, f"imported but no extra installs it: {missing}"


def test_the_extras_named_in_error_messages_install_their_modules() -> None:
    ex = extras()
    for extra, mods in EXTRAS.items():
        assert extra in ex, extra
        assert {dist(m) for m in mods} <= ex[extra], (extra, {dist(m) for m in mods} - ex[extra])


def test_the_device_runtime_extra_is_lean() -> None:
    """What a device installs: numpy, cryptography, threadpoolctl; never torch or host tooling."""
    assert extras()["runtime"] == {"numpy", "cryptography", "threadpoolctl"}
