"""The CI wiring: both GitHub workflows, .ci/run, tox.ini and pyproject's torch floor say what docs/ci.md says.
Fast, no network."""

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


def load_tox_ini():
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(ROOT / "tox.ini")
    return ini


def set_env_lines(value):
    """tox's set_env value as {NAME: value}, comments and blank lines left out."""
    pairs = (line.split("=", 1) for line in value.splitlines() if "=" in line and not line.lstrip().startswith("#"))
    return {name.strip(): val.strip() for name, val in pairs}


def constraint_file(ini, env):
    value = set_env_lines(ini[env]["set_env"]).get("PIP_CONSTRAINT", "")
    assert value.startswith("{toxinidir}/"), f"[{env}] PIP_CONSTRAINT should be a file in the checkout: {value!r}"
    return ROOT / value.removeprefix("{toxinidir}/")


def pins(path):
    """{name: version} of a constraints file's `name==version` lines, names lower-case."""
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            found[name.strip().lower()] = version.strip()
    return found


OLDEST = "testenv:torch211"  # the suite on pyproject's torch floor


def test_tox_envs():
    ini = load_tox_ini()
    env_list = ini["tox"]["env_list"].replace(",", " ").split()
    assert "py" in env_list and "torch211" in env_list
    assert ini["testenv"]["package"] == "editable", "suite.harness finds the repo from bench.__file__"
    assert constraint_file(ini, "testenv") == ROOT / "constraints.txt"
    assert "python -m pytest {posargs}" in ini["testenv"]["commands"]
    for env in ("smoke", "bench", "lint"):
        assert f"testenv:{env}" in ini, env

    # torch211 is the py env on the oldest supported torch: its own constraints, its own C++ build folder
    assert OLDEST in ini, "tox.ini: no [testenv:torch211] (the suite on the oldest supported torch)"
    oldest = constraint_file(ini, OLDEST)
    assert oldest.is_file(), f"{oldest.name} missing"
    assert oldest != ROOT / "constraints.txt"
    pinned = pins(oldest)
    assert (pinned.get("torch"), pinned.get("torchvision")) == ("2.11.0", "0.26.0"), oldest.name
    base_env, env = set_env_lines(ini["testenv"]["set_env"]), set_env_lines(ini[OLDEST]["set_env"])
    del base_env["PIP_CONSTRAINT"], env["PIP_CONSTRAINT"]
    assert env == base_env, "[testenv:torch211] set_env: only PIP_CONSTRAINT may differ from [testenv]'s"
    commands = " ".join(ini[OLDEST]["commands"].split())
    build = re.search(r"--build-dir[= ](\S+)", commands)
    assert build, "[testenv:torch211] needs its own --build-dir (build/ is py's; sharing it rebuilds the trainer)"
    build_dir = Path(build.group(1).replace("{toxinidir}", str(ROOT)))
    build_dir = build_dir if build_dir.is_absolute() else ROOT / build_dir
    assert build_dir.resolve() != (ROOT / "build").resolve(), "[testenv:torch211] must not build into build/"
    rest = commands.replace(build.group(0), "")
    assert " ".join(rest.split()) == "python -m pytest {posargs}", "[testenv:torch211] runs what py runs"


def test_torch_floor_is_what_ci_tests():
    """pyproject's torch/torchvision floors are exactly what the torch211 env pins, so the floor cannot claim an
    untested torch; the newest pins (constraints.txt) are inside the ranges too."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    from packaging.requirements import Requirement  # pytest's own dependency
    from packaging.version import Version

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    reqs = {r.name.lower(): r for r in map(Requirement, deps)}
    ini = load_tox_ini()
    oldest, newest = pins(constraint_file(ini, OLDEST)), pins(constraint_file(ini, "testenv"))
    for name in ("torch", "torchvision"):
        floors = [s.version for s in reqs[name].specifier if s.operator == ">="]
        assert len(floors) == 1, f"pyproject: {name} needs one >= floor, got {reqs[name].specifier}"
        assert Version(floors[0]) == Version(oldest[name]), (
            f"pyproject's {name}>={floors[0]} is not the version tox -e torch211 tests ({oldest[name]})")
        for pinned in (oldest, newest):
            assert reqs[name].specifier.contains(pinned[name]), f"{name}=={pinned[name]} outside pyproject's range"
