"""Under CI (CI=true) a test skipped for a missing tool fails, naming it; other skips stay skips (conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
PROBE = '''
import pytest
from missing_tools import skip_missing_tool

def test_needs_a_tool():
    skip_missing_tool("the probe tool (apt-get install probe)")

@pytest.fixture()
def tool():
    skip_missing_tool("the probe fixture's tool")

def test_needs_a_fixture_tool(tool):
    pass

def test_skips_for_another_reason():
    pytest.skip("not this platform")
'''


def run_probe(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess:
    (tmp_path / "test_probe.py").write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    if ci is not None:
        env["CI"] = ci
    # conftest.py loaded as a plugin: the probe lives outside tests/
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-n", "0", "-rA",
                           "-q", str(tmp_path / "test_probe.py"), "--rootdir", str(tmp_path)],
                          capture_output=True, text=True, env=env, cwd=tmp_path)


def test_in_ci_a_missing_tool_fails_and_names_it(tmp_path):
    result = run_probe(tmp_path, "true")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 failed, 1 skipped, 1 error" in result.stdout, result.stdout  # the fixture's skip: an error in setup
    assert "CI=true, so this test may not skip: missing tool: the probe tool (apt-get install probe)" in result.stdout
    assert "missing tool: the probe fixture's tool" in result.stdout


def test_outside_ci_a_missing_tool_skips(tmp_path):
    result = run_probe(tmp_path, None)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 skipped" in result.stdout, result.stdout
