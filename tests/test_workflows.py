"""The CI wiring runs what exists: the workflow files parse; every command in them, in .ci/run and in tox.ini names
a tox env, a Python module, a pytest option or marker, or a file that exists; .ci/run runs README.md's test
command and stops at its first failure; the README's benchmark command is the same chain ending in an env that
exists; pyproject's torch floor is the oldest torch CI tests; docs/layout.md maps every source file; every relative
link of the README and docs/ resolves. Fast, no network."""

import configparser
import importlib
import json
import os
import re
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml  # in the `test` extra
from packaging.requirements import Requirement  # pytest's own dependency
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
CI_RUN = ROOT / ".ci" / "run"
SEPARATORS = set(";&|()\n")
# Shell words that start a compound command rather than name a program.
KEYWORDS = {"if", "then", "else", "elif", "fi", "do", "done", "while", "until", "for", "{", "}", "!", "time"}


def shell_commands(script):
    """The simple commands of a shell script as word lists, program first: split at newlines, ;, &, |, ( and ) (so
    the body of a $(...) is a command too), without leading keywords and variable assignments; the script of a
    `sh -c`/`bash -c` is read too. Quoting follows shlex (POSIX); a backslash-newline joins lines, as in bash."""
    lexer = shlex.shlex(script.replace("\\\n", " "), posix=True, punctuation_chars="".join(SEPARATORS))
    lexer.whitespace, lexer.whitespace_split = " \t\r", True
    command = []
    for word in [*lexer, "\n"]:
        if word and set(word) <= SEPARATORS:
            while command and (command[0] in KEYWORDS or ("=" in command[0] and not command[0].startswith("-"))):
                command.pop(0)
            if command:
                yield command
                if command[0] in ("sh", "bash") and command[1:2] == ["-c"]:
                    yield from shell_commands(command[2])
            command = []
        else:
            command.append(word)


def load_workflow(path):
    doc = yaml.safe_load(path.read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the bare key `on` as the boolean True
    return doc


def steps(doc):
    return [step for job in doc["jobs"].values() for step in job["steps"]]


@cache
def tox_ini():
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(ROOT / "tox.ini")
    return ini


def tox_commands(section):
    """A tox env's commands as a shell script, in the checkout ({toxinidir}) and without pytest arguments."""
    return re.sub(r"\{posargs[^}]*\}", "", tox_ini()[section]["commands"].replace("{toxinidir}/", ""))


def scripts():
    """{where: shell script} of everything CI runs: workflow steps, .ci/run and tox's envs."""
    found = {f"{path.name}: {step.get('name', step['run'][:40])}": step["run"]
             for path in WORKFLOWS for step in steps(load_workflow(path)) if "run" in step}
    found[".ci/run"] = CI_RUN.read_text()
    found.update({f"tox.ini [{section}]": tox_commands(section) for section in tox_ini().sections()
                  if "commands" in tox_ini()[section]})
    return found


def commands(program):
    """(where, words after the program) of every command that runs `program`; for a Python module, `python -m`
    with the module (python/python3, or a path to one; the module itself when it is a program too, like pytest or
    tox)."""
    for where, script in scripts().items():
        for command in shell_commands(script):
            if command[0] == program:
                yield where, command[1:]
            elif Path(command[0]).name in ("python", "python3") and command[1:3] == ["-m", program]:
                yield where, command[3:]


def test_workflow_files_parse():
    assert WORKFLOWS, "no .github/workflows/*.yml"
    for path in WORKFLOWS:
        doc = load_workflow(path)
        assert doc["on"] and doc["jobs"], path.name
        for step in steps(doc):
            assert ("run" in step) != ("uses" in step), f"{path.name}: a step runs a script or uses an action: {step}"


def test_every_python_module_ci_runs_imports():
    """`python -m M` in CI: M imports here, unless the same script pip-installs it first (tox in .ci/run)."""
    for where, script in scripts().items():
        installed = set()
        for command in shell_commands(script):
            if Path(command[0]).name not in ("python", "python3") or command[1:2] != ["-m"]:
                continue
            module, rest = command[2], command[3:]
            if module == "pip" and rest[:1] == ["install"]:
                installed |= {Requirement(word).name for word in rest[1:] if not word.startswith("-")}
            elif module not in installed:
                try:
                    importlib.import_module(module)
                except ImportError as err:
                    pytest.fail(f"{where}: python -m {module}: {err}", pytrace=False)


def test_every_tox_env_ci_runs_exists():
    known = set(tox_ini()["tox"]["env_list"].replace(",", " ").split())
    known |= {section.removeprefix("testenv:") for section in tox_ini().sections() if section.startswith("testenv:")}
    for where, args in commands("tox"):
        for env in args[args.index("-e") + 1].split(",") if "-e" in args else []:
            assert env in known, f"{where}: tox -e {env}: no such env in tox.ini"


def tracked_top_level():
    proc = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode:
        pytest.skip("not a git checkout: which paths are the repository's is unknown")
    return {line.split("/")[0] for line in proc.stdout.splitlines()}


def test_every_file_ci_names_exists():
    """A word that is a path in the repository (its first part is a tracked file or folder) names something that
    exists, or a glob that matches; words with a shell variable are left alone. Outputs (out/, build/) are not
    tracked, so they are not checked."""
    top = tracked_top_level()
    missing = []
    for where, script in scripts().items():
        for command in shell_commands(script):
            for word in command[1:]:
                path = word.split("=", 1)[1] if word.startswith("--") and "=" in word else word
                if "$" in path or path.split("/")[0] not in top:
                    continue
                if not (any(ROOT.glob(path)) if set("*?[") & set(path) else (ROOT / path).exists()):
                    missing.append(f"{where}: {word}")
    for path in WORKFLOWS:  # what the steps' settings name: cache keys' hashFiles(...) and pip's dependency files
        text = path.read_text()
        for call in text.split("hashFiles(")[1:]:
            for pattern in shlex.split(call.split(")")[0].replace(",", " ")):
                if not any(ROOT.glob(pattern)):
                    missing.append(f"{path.name}: hashFiles('{pattern}')")
        for step in steps(load_workflow(path)):
            for name in step.get("with", {}).get("cache-dependency-path", "").split():
                if not (ROOT / name).exists():
                    missing.append(f"{path.name}: cache-dependency-path {name}")
    assert not missing, "CI names files that do not exist:\n" + "\n".join(missing)


@cache
def pytest_options():
    """Every long option `pytest --help` lists here: pytest's, its plugins' and conftest.py's."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "--help", "-p", "no:cacheprovider"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return set(re.findall(r"--[\w-]+", proc.stdout))


def check_pytest_args(where, args, markers):
    """The long options are pytest's or its plugins' or conftest's; a -m expression names registered markers."""
    for i, word in enumerate(args):
        if word.startswith("--") and len(word) > 2:
            assert word.split("=")[0] in pytest_options(), f"{where}: pytest has no option {word}"
        if word == "-m":
            names = set(args[i + 1].replace("(", " ").replace(")", " ").split()) - {"and", "or", "not"}
            assert names <= markers, f"{where}: -m {args[i + 1]!r}: markers not in pytest.ini: {names - markers}"


def test_every_pytest_option_and_marker_ci_uses_exists():
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(ROOT / "pytest.ini")
    markers = {line.split(":")[0].strip() for line in ini["pytest"]["markers"].splitlines() if line.strip()}
    check_pytest_args("pytest.ini addopts", shlex.split(ini["pytest"]["addopts"]), markers)
    for where, args in commands("pytest"):
        check_pytest_args(where, args, markers)


def test_workflows_never_pip_install():
    """cpu.yml installs through .ci/run (tox, pinned by the constraints files); GPU runners have no internet."""
    for where, script in scripts().items():
        if where.split(":")[0] in {path.name for path in WORKFLOWS}:
            for command in shell_commands(script):
                pip = command[1:] if command[0] in ("pip", "pip3") else command[3:] if command[1:3] == ["-m", "pip"] \
                    else []
                assert pip[:1] != ["install"], f"{where}: {shlex.join(command)}"


def readme_command(label):
    """The one line in the fenced block that follows the README's line containing `label`."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = next((i for i, line in enumerate(lines) if label in line), None)
    assert start is not None, f'README.md has no line containing "{label}"'
    fence = next((i for i in range(start + 1, len(lines)) if lines[i].strip().startswith("```")), None)
    assert fence is not None, f'README.md: no ``` block after "{label}"'
    body = []
    for line in lines[fence + 1:]:
        if line.strip().startswith("```"):
            break
        if line.strip():
            body.append(line.strip())
    assert len(body) == 1, f'README.md: the block after "{label}" should hold one command line, got {body}'
    return body[0]


def readme_python_calls(label):
    """The README command's simple commands as word lists: `python3 -m venv DIR` first, then only DIR's python, so
    that the fake python3 below sees every one of them."""
    calls = list(shell_commands(readme_command(label)))
    assert calls and calls[0][:3] == ["python3", "-m", "venv"] and len(calls[0]) == 4, (
        f"README's command under {label!r} should start by making a virtual environment: {calls}")
    venv_python = f"{calls[0][3]}/bin/python"
    assert all(words[0] == venv_python for words in calls[1:]), (
        f"README's command under {label!r} runs more than python3 and {venv_python}: {calls}")
    return calls


# A python3 that records what it was asked to run (the program as the script named it, then the arguments) and
# exits 0, or 1 for `-m $FAKE_PYTHON_FAILS`; `-m venv DIR` makes DIR/bin/python, another copy of the recording
# shim, so that a command chain through the new environment goes on.
FAKE_PYTHON = """
import json, os, shutil, sys
program, args = sys.argv[1], sys.argv[2:]
program = "python3" if program == os.environ["FAKE_PYTHON_SHIM"] else os.path.relpath(program)
with open(os.environ["FAKE_PYTHON_LOG"], "a") as log:
    log.write(json.dumps([program, *args]) + "\\n")
if args == ["--version"]:
    print("Python 3.x (fake)")
if args[:2] == ["-m", os.environ.get("FAKE_PYTHON_FAILS", "")]:
    sys.exit(1)
if args[:2] == ["-m", "venv"]:
    os.makedirs(os.path.join(args[-1], "bin"), exist_ok=True)
    shutil.copy(os.environ["FAKE_PYTHON_SHIM"], os.path.join(args[-1], "bin", "python"))
"""


def run_ci_with_fake_python(tmp_path, fails=""):
    """.ci/run, as the workflows run it (bash, from a copy of the checkout's script in a folder of its own, so that
    the virtual environment it makes is not the checkout's), with a python3 on PATH that records its arguments
    (FAKE_PYTHON) and an apt-get that does nothing (a run as root installs nothing here): what the script runs, and
    in what order, without installing or testing anything. Returns the process and the calls that are not the
    script's own probes (`--version`, `-c ...`)."""
    (tmp_path / "fake_python.py").write_text(FAKE_PYTHON)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "python3"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{tmp_path / "fake_python.py"}" "$0" "$@"\n')
    (bin_dir / "apt-get").write_text("#!/bin/sh\nexit 0\n")
    for tool in (shim, bin_dir / "apt-get"):
        tool.chmod(0o755)
    script = tmp_path / "checkout" / ".ci" / "run"
    script.parent.mkdir(parents=True)
    script.write_text(CI_RUN.read_text())
    log = tmp_path / "calls.jsonl"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_PYTHON_LOG": str(log),
           "FAKE_PYTHON_SHIM": str(shim), "FAKE_PYTHON_FAILS": fails}
    proc = subprocess.run(["bash", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return proc, [call for call in calls if call[1:] != ["--version"] and call[1:2] != ["-c"]]


def test_ci_run_runs_the_readme_test_command(tmp_path):
    proc, calls = run_ci_with_fake_python(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    expected = readme_python_calls("Run the tests")
    assert calls == expected, f".ci/run does not run README.md's test command: {readme_command('Run the tests')}"
    assert any(command[:2] == ["bash", ".ci/run"] for path in WORKFLOWS for step in steps(load_workflow(path))
               for command in shell_commands(step.get("run", ""))), "no workflow runs .ci/run"


def test_ci_run_stops_at_the_first_failure(tmp_path):
    """Whichever step of the chain fails, nothing after it runs and .ci/run fails."""
    chain = readme_python_calls("Run the tests")
    for i, step in enumerate(chain):
        (tmp_path / str(i)).mkdir()
        proc, calls = run_ci_with_fake_python(tmp_path / str(i), fails=step[2])
        assert proc.returncode != 0 and calls == chain[:i + 1], (step, calls)


def test_the_readme_benchmark_command_is_the_test_command_with_the_bench_env():
    """The benchmark's command makes the same environment and installs the same tox as the test command, then runs
    tox envs that exist in tox.ini."""
    bench, tests = readme_python_calls("Run the benchmark"), readme_python_calls("Run the tests")
    assert bench[:-1] == tests[:-1], f"the two README commands set up differently: {bench[:-1]} vs {tests[:-1]}"
    *_, tox = bench
    assert tox[1:3] == ["-m", "tox"] and "-e" in tox, f"README's benchmark command does not end in tox -e: {tox}"
    known = {section.removeprefix("testenv:") for section in tox_ini().sections() if section.startswith("testenv:")}
    envs = tox[tox.index("-e") + 1].split(",")
    assert set(envs) <= known, f"README's benchmark command runs tox envs tox.ini lacks: {set(envs) - known}"


def constraint_file(section):
    """The constraints file of a tox env (its PIP_CONSTRAINT), or None."""
    for line in tox_ini()[section].get("set_env", "").splitlines():
        name, _, value = line.partition("=")
        if name.strip() == "PIP_CONSTRAINT":
            return ROOT / value.strip().replace("{toxinidir}/", "")
    return None


def pins(path):
    """{name: version} of a constraints file's `name==version` lines, names lower-case."""
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            found[name.strip().lower()] = version.strip()
    return found


def ci_envs():
    """The tox envs .ci/run runs, by their tox.ini section."""
    [(_, args)] = [(where, args) for where, args in commands("tox") if where == ".ci/run"]
    return [f"testenv:{env}" if f"testenv:{env}" in tox_ini() else "testenv" for env in args[args.index("-e") + 1]
            .split(",")]


def installs(section):
    """Whether a tox env installs the project and its torch into an environment of its own."""
    return tox_ini()[section].get("skip_install", "false").strip() != "true"


def test_ci_envs_differ_only_in_their_pins_and_build_folder():
    """Every env CI runs in an environment of its own is the same suite: the same settings but the constraints file,
    the same pytest command but each its own --build-dir (one build folder per torch: sharing one would rebuild the
    trainer every run)."""
    envs = [section for section in ci_envs() if installs(section)]
    assert len(envs) > 1, envs
    settings, builds = [], []
    for section in envs:
        env = {line.split("=", 1)[0].strip(): line.split("=", 1)[1].strip()
               for line in tox_ini()[section].get("set_env", tox_ini()["testenv"]["set_env"]).splitlines()
               if "=" in line and not line.lstrip().startswith("#") and not line.strip().startswith("PIP_CONSTRAINT")}
        words = tox_ini()[section].get("commands", tox_ini()["testenv"]["commands"]).split()
        build = words.index("--build-dir") if "--build-dir" in words else None
        builds.append(Path(words[build + 1].replace("{toxinidir}/", "")) if build is not None else Path("build"))
        settings.append((env, [w for i, w in enumerate(words) if build is None or i not in (build, build + 1)]))
    assert all(s == settings[0] for s in settings), f"{envs} differ in more than their pins and build folder"
    assert len(set(builds)) == len(builds), f"{envs} share a build folder: {builds}"


def test_torch_floor_is_what_ci_tests():
    """pyproject's torch/torchvision floors are exactly the oldest pins of the envs CI runs, so the floor cannot
    claim an untested torch; every env's pins are inside the ranges too."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    reqs = {r.name.lower(): r for r in map(Requirement, deps)}
    pinned = {section: pins(constraint_file(section)) for section in ci_envs() if installs(section)}
    oldest = min(pinned, key=lambda section: Version(pinned[section]["torch"]))
    for name in ("torch", "torchvision"):
        floors = [s.version for s in reqs[name].specifier if s.operator == ">="]
        assert len(floors) == 1, f"pyproject: {name} needs one >= floor, got {reqs[name].specifier}"
        assert Version(floors[0]) == Version(pinned[oldest][name]), (
            f"pyproject's {name}>={floors[0]} is not the oldest {name} CI tests ([{oldest}]: {pinned[oldest][name]})")
        for section, versions in pinned.items():
            assert reqs[name].specifier.contains(versions[name]), (
                f"[{section}] pins {name}=={versions[name]}, outside pyproject's range")


def test_the_thorough_tier_runs_once_in_pys_environment():
    """CI runs the thorough tier once, with py's interpreter (py's pins, no second environment); every other env it
    runs, and pytest.ini's defaults, leave it out."""
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(ROOT / "pytest.ini")
    addopts = shlex.split(ini["pytest"]["addopts"])
    assert "not thorough" in addopts[addopts.index("-m") + 1]
    tiers = {}
    for section in ci_envs():
        [command] = [c for c in shell_commands(tox_commands(section)) if "pytest" in c]
        tiers[section] = command[command.index("-m", 3) + 1] if "-m" in command[3:] else "default"
        if tiers[section] == "thorough":
            assert not installs(section) and command[0] == "{toxworkdir}/py/bin/python", command
    assert sorted(tiers.values()).count("thorough") == 1 and "testenv" in tiers and tiers["testenv"] == "default", tiers


def named_paths(text):
    """Every repository path a Markdown text names in backquotes, `{h,cpp}` expanded."""
    paths = set()
    for token in re.findall(r"`([^`\s]+)`", text):
        if "/" not in token and not re.fullmatch(r"[\w.-]+\.(py|txt|toml|ini|h|cpp|json|yml)", token):
            continue  # a command or an API name, not a path
        if token.startswith(("build/", "out/", ".venv/", "~")) or token.endswith("/bin/python"):
            continue  # outputs, there only after a build or a run
        if token.startswith("-") or "://" in token or "<" in token:
            continue  # a flag or a URL
        stem, _, alternatives = token.partition("{")
        for ending in alternatives.rstrip("}").split(",") if alternatives else [""]:
            paths.add((stem + ending).rstrip("/").replace("*", ""))
    return paths


def test_the_layout_page_matches_the_tree():
    """docs/layout.md, the map of the repository, names only what exists, and every trainer and suite source file;
    the README's short tour of it names only what exists."""
    named = named_paths((ROOT / "docs" / "layout.md").read_text())
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert not missing, f"docs/layout.md names paths that do not exist: {missing}"
    sources = {f"{folder}/{f.name}" for folder in ("bench", "cpp", "suite") for f in (ROOT / folder).iterdir()
               if f.suffix in (".py", ".h", ".cpp") and f.name != "__init__.py"}
    unnamed = sorted(sources - named)
    assert not unnamed, f"source files docs/layout.md does not name: {unnamed}"
    tour = (ROOT / "README.md").read_text().split("## Where things are", 1)[1].split("\n## ", 1)[0]
    missing = sorted(p for p in named_paths(tour) if not (ROOT / p).exists())
    assert not missing, f"README's 'Where things are' names paths that do not exist: {missing}"


MARKDOWN_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def test_every_relative_link_of_the_readme_and_docs_resolves():
    """A relative link in README.md or docs/*.md (not docs/results/ or the example report: records of their time)
    points at a file or folder that exists; its #anchor, if any, at a heading of that page."""
    broken = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in MARKDOWN_LINK.findall(page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
            elif anchor and dest.suffix == ".md":
                slugs = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
                         for h in re.findall(r"^#+ (.*)$", dest.read_text(), re.M)}
                if anchor not in slugs:
                    broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "links that do not resolve:\n" + "\n".join(broken)
