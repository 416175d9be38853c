import json
import subprocess
import sys

import pytest

CLI = [sys.executable, "-m", "edge_eas.cli"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)


def test_help_lists_subcommands() -> None:
    out = run_cli("--help")
    assert out.returncode == 0 and "space" in out.stdout


def test_space_json_summary() -> None:
    out = run_cli("space", "--preset", "cifar", "--sample", "3", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["input_shape"] == [3, 32, 32] and len(doc["samples"]) == 3
    lo, hi = doc["mflops_range"]
    assert all(lo <= s["mflops"] <= hi for s in doc["samples"])


@pytest.mark.parametrize("arch, needle", [
    ('{"depths":[1,2],"kernels":[[3],[3,3]],"expands":[[3],[3,3]]}', "depths has 2 stages"),
    ('{"depths":[1,1,1],"kernels":[[4],[3],[3]],"expands":[[3],[3],[3]]}', "kernels[0][0]=4"),
    ('{"depths":[-1,1,1],"kernels":[[3],[3],[3]],"expands":[[3],[3],[3]]}', "depths[0]=-1"),
    ("{not json", "not valid JSON"),
    ("/no/such/file.json", "neither JSON"),
])
def test_bad_arch_is_one_line_error(arch: str, needle: str) -> None:
    out = run_cli("space", "--arch", arch)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and needle in out.stderr


def test_arch_from_file(tmp_path) -> None:
    f = tmp_path / "a.json"
    f.write_text('{"depths":[1,1,1],"kernels":[[3],[3],[3]],"expands":[[3],[3],[3]]}')
    out = run_cli("space", "--arch", str(f), "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["params"] > 0
