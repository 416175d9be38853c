"""The bundle manifest as a typed value: the writer's bytes are the old ones minus the one field
no reader used, and bundles written before still load.

tests/fixtures/old_manifest_digits_init.json is the manifest.json that `edge_eas export` wrote,
before the manifest became a dataclass, for `edge_eas init --space digits --num-classes 4
--seed 0` (an untrained run: its weights and cost tables are deterministic, so its members'
digests are too).
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from edge_eas.format.bundle_reader import BundleError, open_bundle
from edge_eas.format.manifest import MANIFEST, MANIFEST_DIGEST_PREFIX, Manifest
from edge_eas.host.bundle import export_bundle
from edge_eas.host.untrained import init_run
from edge_eas.net.space import SearchSpace
from edge_eas.runtime import Runtime

OLD = Path(__file__).parent / "fixtures" / "old_manifest_digits_init.json"
TIME = re.compile(r'"time": "[^"]*"')


@pytest.fixture(scope="module")
def new_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("manifest")
    init_run(SearchSpace.preset("digits"), d / "run", num_classes=4, seed=0)
    export_bundle(d / "run", d / "new.eas")
    return d / "new.eas"


def _manifest_bytes(bundle: Path) -> bytes:
    with zipfile.ZipFile(bundle) as zf:
        return zf.read(MANIFEST)


def _with_manifest(src: Path, dst: Path, manifest: bytes) -> Path:
    """`src` with its manifest replaced (and the digest the archive's comment records)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for name in zin.namelist():
            zout.writestr(name, manifest if name == MANIFEST else zin.read(name))
        zout.comment = MANIFEST_DIGEST_PREFIX + hashlib.sha256(manifest).hexdigest().encode()
    return dst


def test_the_manifest_written_is_the_old_one_minus_decision_sizes(new_bundle: Path) -> None:
    """`generator.decision_sizes` was written and never read: the device derives the decision
    layout from the space (SearchSpace.decision_sizes). A bundle's manifest has no field that no
    reader uses, so it is dropped; every other byte is as before (key order, indent, newline)."""
    new = _manifest_bytes(new_bundle).decode()
    old = OLD.read_text()
    assert '"decision_sizes"' in old and '"decision_sizes"' not in new
    expected = re.sub(r',\n  "decision_sizes": \[[^\]]*\]', "", old)
    expected = TIME.sub(TIME.search(new).group(0), expected)  # type: ignore[union-attr]
    assert new == expected


def test_a_bundle_written_before_still_loads_and_specialises_the_same(new_bundle: Path, tmp_path: Path) -> None:
    old_bytes = OLD.read_bytes()
    old_bundle = _with_manifest(new_bundle, tmp_path / "old.eas", old_bytes)  # the members' digests are the old ones
    old, new = open_bundle(old_bundle), open_bundle(new_bundle)
    assert old.members[MANIFEST] == old_bytes and old.members.keys() == new.members.keys()
    assert old.manifest.created != new.manifest.created
    assert old.manifest == replace(new.manifest, created=old.manifest.created)
    archs = [Runtime.load(b).specialize(classes=[0, 1], budget_mflops=1.0, engine="numpy").arch
             for b in (old_bundle, new_bundle)]
    assert archs[0] == archs[1]


def test_to_bytes_round_trips_the_stored_bytes(new_bundle: Path) -> None:
    stored = _manifest_bytes(new_bundle)
    assert Manifest.from_json(stored).to_bytes() == stored


def _doc(new_bundle: Path) -> dict[str, Any]:
    return json.loads(_manifest_bytes(new_bundle))


@pytest.mark.parametrize("mutate,match", [
    (lambda d: d.update(format="zip"), r"^B is not an edge_eas bundle \(format 'zip'\)$"),
    (lambda d: d.update(version=2), r"^B uses bundle format 2, newer than this runtime's 1: upgrade edge_eas"),
    (lambda d: d["members"].pop("generator.safetensors"), r"^B: manifest lists no generator.safetensors$"),
    (lambda d: d["members"].update(x={"size": 1}), r"^B: manifest entry for x has no size and SHA-256"),
    (lambda d: d.pop("space"), r"^B: manifest has no space \(an old or tampered bundle: re-export it\)$"),
    (lambda d: d["generator"].pop("cost_tables"), r"^B: manifest has no generator.cost_tables"),
    (lambda d: d.update(class_names="abc"), r"^B: manifest field class_names has the wrong type"),
    (lambda d: d.update(weights=[]), r"^B: manifest field weights is not a JSON object"),
], ids=["format", "version", "required-member", "member-entry", "field", "nested-field", "type", "record"])
def test_a_bad_manifest_is_refused_in_one_line(new_bundle: Path, mutate: Any, match: str) -> None:
    doc = _doc(new_bundle)
    mutate(doc)
    with pytest.raises(BundleError, match=match):
        Manifest.from_dict(doc, "B")


def test_invalid_json_and_unknown_fields(new_bundle: Path) -> None:
    with pytest.raises(BundleError, match=r"^B: manifest.json is not valid JSON"):
        Manifest.from_json(b"\xff{", "B")
    doc = _doc(new_bundle)
    doc["added_by_a_later_writer"] = 1
    doc.pop("untrained")  # bundles from before `edge_eas init` have no such field
    m = Manifest.from_dict(doc)
    assert m.untrained is False and "added_by_a_later_writer" not in m.to_dict()
