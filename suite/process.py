"""Process-state parity: the two languages' `process` sections compared (bench/process.py, cpp/process.cpp write
them), and what each process's own state must be.

    python -m suite.process PYTHON.json CPP.json     # exit 1 and one line per difference when they differ

A section is compared as flat keys: a path of "/"-separated names (`flags/cudnn_deterministic`,
`windows/epoch 1/anomaly_enabled`), list items by position, a null value as absent. The loaded libraries are keyed
by file name (`libraries/libgomp.so.1`) and valued by build id (the path where a file has none): the same code from
another folder is the same library, another build of it is not. The threads other than the timed one are compared by
their distinct states (how many threads reported depends on which got work first). Every difference fails unless an
entry of the reviewed allow-list (suite/process_allow.toml: a key pattern, fnmatch-style, its reason; with
`only = "python"` or `"cpp"` only where the key exists in that language alone; with `path`, a pattern over a
library's file path, only for such a library) allows it; then the checks each process's own state must pass
(CHECKS) are added.
"""

import argparse
import fnmatch
import json
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

PROG = "suite.process"
ALLOW_LIST = Path(__file__).with_name("process_allow.toml")
ABSENT = "(absent)"
LANGS = ("python", "cpp")
# An OpenMP runtime: GNU's libgomp (torch's bundled one included), Intel's libiomp5, LLVM's libomp.
OPENMP_RUNTIME = re.compile(r"/lib(g|i)?omp[^/]*\.so[^/]*$")
VALUE_WIDTH = 56
DEFAULT_SWITCH_INTERVAL = 0.005  # sys.getswitchinterval() of a fresh interpreter


class ProcessError(Exception):
    """An allow-list or a results file that cannot be used."""


@dataclass(frozen=True)
class Allowed:
    key: str  # fnmatch pattern over the flat keys
    reason: str
    only: str | None = None  # "python" / "cpp": allowed only where the key exists in that language alone
    path: str | None = None  # fnmatch pattern over a library's path: allowed only for a library loaded from there


@dataclass(frozen=True)
class Difference:
    key: str
    python: object
    cpp: object
    why: str = ""  # a check of one process's own state; empty for a difference between the languages


def load_allow_list(path=ALLOW_LIST):
    """The reviewed entries; each must have a key pattern and a reason."""
    try:
        entries = tomllib.loads(Path(path).read_text()).get("allow", [])
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ProcessError(f"{path}: {err}") from None
    for i, entry in enumerate(entries):
        if not {"key", "reason"} <= set(entry) <= {"key", "reason", "only", "path"} or \
                not all(isinstance(v, str) and v for v in entry.values()) or entry.get("only", "python") not in LANGS:
            raise ProcessError(f"{path}: allow entry {i + 1} needs a non-empty key and reason (and may say only = "
                               f"\"python\" or \"cpp\", and a library path), got {entry}")
    return [Allowed(**{**e, "key": key}) for e in entries for key in expand_braces(e["key"])]


def expand_braces(pattern):
    """'lib{a,b}.so' -> ['liba.so', 'libb.so'] (one brace list; fnmatch has none)."""
    match = re.search(r"\{([^{}]*)\}", pattern)
    if match is None:
        return [pattern]
    return [pattern[:match.start()] + alt + pattern[match.end():] for alt in match.group(1).split(",")]


def canonical(value):
    return json.dumps(value, sort_keys=True)


def library_paths(libraries):
    """{libraries/<file name>: path}; a file name loaded twice keeps the second under its path."""
    out = {}
    for lib in libraries or ():
        name = lib["path"].rsplit("/", 1)[-1]
        out[f"libraries/{name if f'libraries/{name}' not in out else lib['path']}"] = lib["path"]
    return out


def library_keys(libraries):
    """{libraries/<file name>: build id, or the path where the file has none}."""
    build_ids = {lib["path"]: lib["build_id"] for lib in libraries}
    return {key: build_ids[path] or path for key, path in library_paths(libraries).items()}


def flatten(value, prefix=""):
    """{flat key: scalar} of a section (see the module's docstring)."""
    if value is None:
        return {}
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list) and prefix == "libraries":
        return library_keys(value)
    elif isinstance(value, list) and prefix.startswith("threads/"):
        items = enumerate(sorted({canonical(s): s for s in value}.values(), key=canonical))
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return {prefix: value}
    out = {}
    for key, item in items:
        out.update(flatten(item, f"{prefix}/{key}" if prefix else str(key)))
    return out


def allowed_by(key, present_in, allow, paths=()):
    """The allow-list entry for a key that differs, present in the languages `present_in` (a library loaded from
    `paths`), or None."""
    return next((a for a in allow if fnmatch.fnmatchcase(key, a.key) and (a.only is None or present_in == {a.only})
                 and (a.path is None or (paths and all(fnmatch.fnmatchcase(p, a.path) for p in paths)))), None)


def differences(python, cpp, allow):
    """The flat keys whose values differ between the two sections, but those the allow-list allows."""
    flat = dict(zip(LANGS, (flatten(python), flatten(cpp))))
    paths = {lang: library_paths(section.get("libraries")) for lang, section in zip(LANGS, (python, cpp))}
    out = []
    for key in sorted(flat["python"].keys() | flat["cpp"].keys()):
        a, b = (flat[lang].get(key, ABSENT) for lang in LANGS)
        present_in = {lang for lang in LANGS if key in flat[lang]}
        if a != b and allowed_by(key, present_in, allow, [paths[lang][key] for lang in LANGS
                                                          if key in paths[lang]]) is None:
            out.append(Difference(key, a, b))
    return out


# ---------------------------------------------------------------------------------------------------------
# What one process's state must be, whatever the other's is
# ---------------------------------------------------------------------------------------------------------

def openmp_runtimes(section):
    return [lib["path"] for lib in section["libraries"] if OPENMP_RUNTIME.search(lib["path"])]


def timed_states(doc):
    """(where, state) of the timed thread at each window and of every other thread."""
    section = doc["process"]
    yield from ((f"windows/{name}", state) for name, state in section["windows"].items())
    for where, states in section["threads"].items():
        yield from ((f"threads/{where}/{i}", state) for i, state in enumerate(states))


def profiler_allowed(doc, where):
    """A traced run (--trace-steps) profiles its last epoch and its traced inference samples, in both languages."""
    cfg = doc["config"]
    return cfg["trace_steps"] > 0 and (where == f"windows/epoch {cfg['epochs']}" or where.startswith("windows/traced "))


def check_openmp(doc):
    runtimes = openmp_runtimes(doc["process"])
    if len(runtimes) != 1:
        yield "libraries", runtimes, f"{len(runtimes)} OpenMP runtimes loaded (exactly one is torch's)"


def check_debugging(doc):
    for where, state in timed_states(doc):
        if state["anomaly_enabled"]:
            yield f"{where}/anomaly_enabled", True, "anomaly mode on in a timed window"
        if state["profiler_enabled"] and not profiler_allowed(doc, where):
            yield f"{where}/profiler_enabled", True, "a profiler records in a timed window of an untraced run"


def check_gc(doc):
    gc = doc["process"]["gc"]
    if gc is None:
        return
    if not gc["enabled"]:
        yield "gc/enabled", False, "the garbage collector is off (docs/twins.md, \"Python's garbage collector\": on)"
    if gc["collections_in_windows"][2]:
        yield "gc/collections_in_windows/2", gc["collections_in_windows"][2], \
            "full garbage collections inside timed windows"


def check_interpreter(doc):
    python = doc["process"].get("interpreter")
    if python is None:
        return
    if python["switch_interval"] != DEFAULT_SWITCH_INTERVAL:
        yield "interpreter/switch_interval", python["switch_interval"], \
            f"the GIL changes hands at another interval than Python's default {DEFAULT_SWITCH_INTERVAL} s"
    if python["dev_mode"]:
        yield "interpreter/dev_mode", True, "Python's development mode (extra checks) is on"


def check_build(doc):
    build = doc["process"]["build"]
    for key, expected in (("optimized", True), ("ndebug", True), ("fast_math", False)):
        if build[key] != expected:
            yield f"build/{key}", build[key], f"built with {key} {build[key]}: not a release build"


CHECKS = (check_openmp, check_debugging, check_gc, check_interpreter, check_build)


def own_checks(doc):
    """What this language's process state must be by itself, as differences (the other side left empty)."""
    out = []
    for check in CHECKS:
        for key, value, why in check(doc):
            py, cpp = (value, "") if doc["language"] == "python" else ("", value)
            out.append(Difference(key, py, cpp, why))
    return out


def compare_documents(python_doc, cpp_doc, allow=None):
    """Every difference between the two runs' process states outside the allow-list, then each run's own
    checks; empty when the two processes did everything else the same."""
    allow = load_allow_list() if allow is None else allow
    return (differences(python_doc["process"], cpp_doc["process"], allow) + own_checks(python_doc)
            + own_checks(cpp_doc))


def short(value):
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= VALUE_WIDTH else text[:VALUE_WIDTH - 3] + "..."


def format_differences(diffs):
    """One line per difference, the two languages side by side."""
    width = max((len(d.key) for d in diffs), default=0)
    lines = [f"process state differs (Python vs C++): {len(diffs)} difference(s) outside {ALLOW_LIST.name}"]
    for d in diffs:
        lines.append(f"  {d.key:<{width}}  python: {short(d.python):<{VALUE_WIDTH}}  C++: {short(d.cpp)}"
                     + (f"  ({d.why})" if d.why else ""))
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog=f"python -m {PROG}", description=__doc__.split("\n\n")[0])
    p.add_argument("python", help="a Python trainer's results file")
    p.add_argument("cpp", help="a C++ trainer's results file of the same configuration")
    args = p.parse_args(argv)
    from suite.schema import ResultsError, load_results

    try:
        docs = [load_results(path) for path in (args.python, args.cpp)]
        if [d["language"] for d in docs] != ["python", "cpp"] or any("process" not in d for d in docs):
            raise ProcessError("give a Python results file, then a C++ one, both of schema version 6 or later")
        diffs = compare_documents(*docs)
    except (ResultsError, ProcessError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    print(format_differences(diffs) if diffs else "the same process state outside the allow-list")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
