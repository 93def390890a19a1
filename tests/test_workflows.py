"""The CI wiring: both GitHub workflows, .ci/run and tox.ini say what docs/ci.md says. Fast, no network."""

import configparser
import re
from pathlib import Path

import pytest
import yaml  # in the `test` extra

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"


def load_workflow(name):
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the bare key `on` as the boolean True
    doc["on"] = doc.pop(True, doc.get("on"))
    return doc


def steps(doc):
    return [step for job in doc["jobs"].values() for step in job["steps"]]


def scripts(doc):
    return "\n".join(step.get("run", "") for step in steps(doc))


def uploads(doc):
    return [s for s in steps(doc) if s.get("uses", "").startswith("actions/upload-artifact@")]


def readme_test_command():
    """The one line in the fenced block that follows the README's "Run the tests" line."""
    readme = ROOT / "README.md"
    if not readme.is_file():
        pytest.fail("README.md missing: .ci/run must run README.md's test command", pytrace=False)
    lines = readme.read_text().splitlines()
    start = next((i for i, line in enumerate(lines) if "Run the tests" in line), None)
    assert start is not None, 'README.md has no line containing "Run the tests"'
    fence = next((i for i in range(start + 1, len(lines)) if lines[i].strip().startswith("```")), None)
    assert fence is not None, 'README.md: no ``` block after "Run the tests"'
    body = []
    for line in lines[fence + 1:]:
        if line.strip().startswith("```"):
            break
        if line.strip():
            body.append(line.strip())
    assert len(body) == 1, f'README.md: the block after "Run the tests" should hold one command line, got {body}'
    return body[0]


def test_ci_run_is_the_readme_test_command():
    command = readme_test_command()
    run = (ROOT / ".ci" / "run").read_text().splitlines()
    assert command in (line.strip() for line in run), f".ci/run does not run README.md's test command: {command}"
    assert run[0].startswith("#!") and "bash" in run[0]
    assert "set -euo pipefail" in run


def test_cpu_workflow():
    doc = load_workflow("cpu.yml")
    assert "pull_request" in doc["on"]
    assert doc["on"]["push"]["branches"] == ["main"]
    (job,) = doc["jobs"].values()
    assert job["runs-on"] == "ubuntu-latest"
    assert re.search(r"^\s*bash \.ci/run\b", scripts(doc), re.M), "the CPU workflow must run .ci/run"
    setup = [s for s in steps(doc) if s.get("uses", "").startswith("actions/setup-python@")]
    assert setup and str(setup[0]["with"]["python-version"]) == "3.11" and setup[0]["with"]["cache"] == "pip"
    assert "download.pytorch.org/whl/cpu" in job["env"]["PIP_INDEX_URL"]
    cached = [s["with"]["path"] for s in steps(doc) if s.get("uses", "").startswith("actions/cache@")]
    assert "build" in cached and "~/.cache/torch-api-bench" in cached
    assert any(s.get("if") == "failure()" for s in uploads(doc)), "upload pytest output when the run fails"


def test_gpu_workflow():
    doc = load_workflow("gpu-regression.yml")
    assert {"workflow_dispatch", "schedule", "push"} <= set(doc["on"])
    assert {"epochs", "baseline"} <= set(doc["on"]["workflow_dispatch"]["inputs"])
    assert doc["on"]["schedule"][0]["cron"]
    (job,) = doc["jobs"].values()
    labels = job["runs-on"]
    assert isinstance(labels, list) and "self-hosted" in labels and "gpu" in labels
    text = scripts(doc)
    assert "python3 -m pytest tests/test_trainers.py tests/test_benchmarks.py" in text
    for option in ("--device cuda", "--benchmark-compare=", "--benchmark-compare-fail=median:10%",
                   "--benchmark-json out/benchmark.json", "--report out/report", "--results-dir out/results"):
        assert option in text, option
    assert "GITHUB_STEP_SUMMARY" in text and "out/report/report.md" in text
    summary = [s for s in steps(doc) if "GITHUB_STEP_SUMMARY" in s.get("run", "")]
    assert all(s.get("if") == "always()" for s in summary)
    up = uploads(doc)
    assert up and up[0].get("if") == "always()" and up[0]["with"]["path"].rstrip("/") == "out"


@pytest.mark.parametrize("name", ["cpu.yml", "gpu-regression.yml"])
def test_workflows_never_pip_install_directly(name):
    # cpu.yml installs only through .ci/run (tox); GPU runners have no internet
    assert not re.search(r"pip3?\s+install", scripts(load_workflow(name)))


def test_tox_envs():
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(ROOT / "tox.ini")
    assert "py" in ini["tox"]["env_list"].replace(",", " ").split()
    assert ini["testenv"]["package"] == "editable", "bench.harness finds the repo from bench.__file__"
    assert "constraints.txt" in ini["testenv"]["set_env"]
    assert "python -m pytest {posargs}" in ini["testenv"]["commands"]
    for env in ("smoke", "bench", "lint"):
        assert f"testenv:{env}" in ini, env
