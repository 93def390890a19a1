"""Everything else the two processes do is the same too: the results' `process` section (bench/process.py,
cpp/process.cpp), compared by suite/process.py outside the reviewed allow-list (suite/process_allow.toml).

- In every mode, on the suite's canonical tiny runs (suite/plugin/tiny.py: traced, with latency and concurrency;
  tests/test_traces.py reads the same), the two languages' process states are the same outside the allow-list.
- Each family of confounders bites: one run per language with every drift BENCH_PLANT and the environment can plant
  in it (a flag flipped, anomaly mode, other thread counts, no_grad instead of inference mode, another malloc and
  OpenMP runtime and flush-to-zero by LD_PRELOAD, a variable set, one CPU, THP off, full collections in Python's
  windows), untraced, against the other language's clean traced run: the comparison names every family. A C++ build
  with other flags is shown by compiling the build facts with them (a full second build takes minutes).
"""

import fnmatch
import json
import os
import shutil
import subprocess

import pytest
import torch

from bench import process as P
from bench.vocab import LANGUAGES, PYTHON_ONLY_PLANTS
from suite import harness as H
from suite import process as S
from suite.plugin import tiny
from suite.schema import load_results

PLANT_SOURCE = H.ROOT / "tests" / "plants"
# Every BENCH_PLANT drift each trainer takes (C++ has no garbage collector and no interpreter).
PLANTS = {"python": P.PLANTS, "cpp": tuple(p for p in P.PLANTS if p not in PYTHON_ONLY_PLANTS)}
# family (docs/confounders.md) -> the keys (fnmatch patterns) its planted drift must show
FAMILIES = {
    "libraries loaded": ["libraries/libbenchplant.so"],
    "OpenMP runtimes": ["libraries/libgomp*"],
    "threads beyond intra-op": ["interop_threads", "threads/concurrency 2/*/intra_op_threads"],
    "global flags": ["flags/cudnn_deterministic", "flags/denormals_flushed"],
    # the clean runs trace their last epoch
    "debugging left on": ["windows/epoch 1/anomaly_enabled", f"windows/epoch {tiny.EPOCHS}/profiler_enabled"],
    "grad mode in inference": ["windows/latency eager bs=*/inference_mode"],
    "environment": ["environment/values/PYTORCH_CUDA_ALLOC_CONF", "environment/values/LD_PRELOAD"],
    "placement and memory": ["placement/affinity", "memory/thp_disabled_by_process", "memory/malloc"],
    "Python's garbage collector": ["gc/collections_in_windows/2"],
    "Python's interpreter": ["interpreter/switch_interval"],
    "test hooks": ["test_hooks/BENCH_PLANT"],
}


@pytest.fixture(scope="session")
def run_pair(tiny_run, run_config):
    """run_pair(mode): the (Python, C++) results of the canonical tiny run of that mode (once per session:
    tests/test_traces.py reads the same). Any pair of runs of one configuration will do."""
    return lambda mode: tuple(tiny_run(lang, mode, run_config.resolved_device).doc for lang in LANGUAGES)


@pytest.mark.parametrize("mode", ["default", "bf16", "channels-last", "bf16-cl", "foreach", "cudnn-benchmark",
                                  "idiomatic"])
def test_both_languages_run_in_the_same_process_state(run_pair, mode):
    diffs = S.compare_documents(*run_pair(mode))
    assert not diffs, f"{mode}:\n{S.format_differences(diffs)}"


def test_the_section_records_each_family(run_pair):
    """What the comparison compares is there and true, in both languages: a recorder that recorded nothing, or the
    same constant in both, would compare equal."""
    for doc in run_pair("default"):
        section, lang = doc["process"], doc["language"]
        names = {lib["path"].rsplit("/", 1)[-1]: lib["build_id"] for lib in section["libraries"]}
        assert names.get("libtorch_cpu.so") and names.get("libc10.so"), f"{lang}: {sorted(names)}"
        assert len(S.openmp_runtimes(section)) == 1 and section["memory"]["malloc"].endswith(".so.6"), lang
        assert "ATen parallel backend: OpenMP" in section["parallel_info"] and section["torch_config"], lang
        windows = section["windows"]
        epochs = {f"epoch {e}" for e in range(1, tiny.EPOCHS + 1)}
        assert set(windows) == epochs | {"latency eager bs=1", "latency eager bs=4", "traced eager bs=1",
                                         "traced eager bs=4", "concurrency 2"}, f"{lang}: {sorted(windows)}"
        traced = windows[f"epoch {tiny.EPOCHS}"]  # the traced epoch: the last
        assert traced["grad_enabled"] and traced["profiler_enabled"] and not windows["epoch 1"]["profiler_enabled"]
        assert windows["latency eager bs=1"]["inference_mode"] and windows["epoch 1"]["intra_op_threads"] == 1
        assert [s["inference_mode"] for s in section["threads"]["concurrency 2"]] == [True, True], lang
        assert section["flags"]["denormals_flushed"] == 0.0 and section["build"]["optimized"], lang
        assert section["environment"]["watched"] == list(P.WATCHED_ENV_PREFIXES), lang
        assert section["placement"]["affinity"] == P.cpu_list(os.sched_getaffinity(0)), lang
        assert section["test_hooks"] == {}, lang
    py, cpp = run_pair("default")
    assert py["process"]["gc"]["enabled"] and py["process"]["gc"]["collections_in_windows"][2] == 0
    assert py["process"]["interpreter"]["switch_interval"] == S.DEFAULT_SWITCH_INTERVAL
    assert cpp["process"]["gc"] is None and cpp["process"]["interpreter"] is None


def test_loader_workers_are_recorded(run_pair):
    """The idiomatic pipeline's DataLoader workers (C++ threads, Python processes) report their state."""
    for doc in run_pair("idiomatic"):
        states = doc["process"]["threads"]["loader"]
        assert states and all(s["intra_op_threads"] == 1 for s in states), (doc["language"], states)


# ---------------------------------------------------------------------------------------------------------
# Each family's drift, planted in one language, fails the comparison naming it
# ---------------------------------------------------------------------------------------------------------

def compiler_file(name):
    """The compiler's copy of a runtime library (e.g. the system's libgomp), or None."""
    found = subprocess.run(["cc", f"-print-file-name={name}"], capture_output=True, text=True).stdout.strip()
    return os.path.realpath(found) if os.path.isabs(found) else None


@pytest.fixture(scope="session")
def preload(tmp_path_factory):
    """LD_PRELOAD for a planted run: tests/plants/preload.c (its own malloc, flush-to-zero at load) and the
    system's libgomp (another OpenMP runtime than torch's), by path: a bare name would be found in bench_train's
    RUNPATH, torch's own folder."""
    if shutil.which("cc") is None:
        pytest.skip("no C compiler (cc) to build the preloaded library")
    lib = tmp_path_factory.mktemp("plant") / "libbenchplant.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", str(lib), str(PLANT_SOURCE / "preload.c")], check=True)
    return [str(lib)] + ([compiler_file("libgomp.so.1")] if compiler_file("libgomp.so.1") else [])


@pytest.fixture(scope="session")
def planted(preload, exe_for, tiny_data, run_config, tmp_path_factory):
    """planted(lang): that trainer's results with every drift planted (untraced: the clean runs are traced), and
    the differences from the other language's clean run."""
    done = {}

    def get(lang, clean):
        if lang not in done:
            out = tmp_path_factory.mktemp(f"planted-{lang}") / "results.json"
            env = {"BENCH_PLANT": ",".join(PLANTS[lang]), "LD_PRELOAD": ":".join(preload),
                   "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}
            canonical = tiny.argv(tiny_data, device=run_config.resolved_device, traced=False)
            args = [*(a.replace("{out}", str(out.parent)) for a in canonical), "--results", str(out)]
            proc = H.run_trainer(lang, args, exe_for(lang), env=env)
            assert proc.returncode == 0, f"{lang} planted run failed:\n{proc.stderr[-3000:]}"
            doc = load_results(out)
            done[lang] = S.compare_documents(doc, clean) if lang == "python" else S.compare_documents(clean, doc)
        return done[lang]
    return get


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("lang", LANGUAGES)
def test_a_planted_drift_fails_the_comparison(lang, family, planted, preload, run_pair):
    """The drift planted in `lang` alone makes the comparison fail, naming each of the family's keys."""
    expected = FAMILIES[family]
    if family.startswith("Python's") and lang == "cpp":
        pytest.skip("C++ has no garbage collector and no interpreter")
    if family == "OpenMP runtimes" and len(preload) < 2:
        pytest.skip("no system libgomp to preload (cc -print-file-name=libgomp.so.1)")
    if family == "placement and memory" and len(os.sched_getaffinity(0)) < 2:
        expected = [k for k in expected if k != "placement/affinity"]  # one CPU: pinning to it changes nothing
    py, cpp = run_pair("default")
    diffs = planted(lang, cpp if lang == "python" else py)
    message = S.format_differences(diffs)
    for pattern in expected:
        assert any(fnmatch.fnmatchcase(d.key, pattern) for d in diffs), f"{family}: {pattern} not named:\n{message}"
    print(message)


def test_a_cpp_build_with_other_flags_fails_the_comparison(run_pair, tmp_path):
    """cpp/build_facts.cpp compiled as a Debug build would be (no optimization, assertions on), with fast-math and
    the other C++ ABI: in place of the trainer's own build facts, the comparison names each."""
    py, cpp = run_pair("default")
    probe = tmp_path / "probe"
    cmd = ["c++", "-std=c++20", "-O0", "-UNDEBUG", "-ffast-math", "-D_GLIBCXX_USE_CXX11_ABI=0",
           '-DBENCH_BUILD_TYPE="Debug"', f"-I{H.ROOT / 'cpp'}", str(H.ROOT / "cpp" / "build_facts.cpp"),
           str(H.ROOT / "cpp" / "json.cpp"), str(PLANT_SOURCE / "build_probe.cpp"), "-o", str(probe)]
    subprocess.run(cmd, check=True)
    assert cpp["process"]["build"] == {"build_type": "Release", "optimized": True, "ndebug": True, "fast_math": False,
                                       "cxx11_abi": torch.compiled_with_cxx11_abi()}  # the trainer's own build
    debug = json.loads(subprocess.run([str(probe)], capture_output=True, text=True, check=True).stdout)
    diffs = S.compare_documents(py, {**cpp, "process": {**cpp["process"], "build": debug}})
    assert {d.key for d in diffs} >= {"build/build_type", "build/optimized", "build/ndebug", "build/fast_math",
                                      "build/cxx11_abi"}, S.format_differences(diffs)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_an_unknown_plant_is_a_usage_error(lang, cpp_exe, tiny_data, one_line_error):
    proc = H.run_trainer(lang, ["--data", str(tiny_data), "--eval-only"], cpp_exe if lang == "cpp" else None,
                         env={"BENCH_PLANT": "anomaly,bogus"})
    one_line_error(proc, lang, 2, "BENCH_PLANT must be comma-separated names from", "'bogus'")


# ---------------------------------------------------------------------------------------------------------
# The comparison itself, on constructed sections
# ---------------------------------------------------------------------------------------------------------

def section(**changes):
    base = {"program": "/bin/x", "libraries": [{"path": "/a/libtorch_cpu.so", "build_id": "aa"},
                                               {"path": "/a/libgomp.so.1", "build_id": "bb"}],
            "flags": {"cudnn_deterministic": False}, "threads": {"loader": [{"n": 1}, {"n": 1}]}, "gc": None}
    return {**base, **changes}


def test_libraries_compare_by_file_name_and_build_id():
    same_elsewhere = section(libraries=[{"path": "/b/libtorch_cpu.so", "build_id": "aa"},
                                        {"path": "/b/libgomp.so.1", "build_id": "bb"}])
    assert S.differences(section(), same_elsewhere, []) == []
    rebuilt = section(libraries=[{"path": "/a/libtorch_cpu.so", "build_id": "cc"},
                                 {"path": "/a/libgomp.so.1", "build_id": None}])
    assert [(d.key, d.python, d.cpp) for d in S.differences(section(), rebuilt, [])] == [
        ("libraries/libgomp.so.1", "bb", "/a/libgomp.so.1"), ("libraries/libtorch_cpu.so", "aa", "cc")]


def test_other_threads_compare_by_distinct_states():
    assert S.differences(section(), section(threads={"loader": [{"n": 1}]}), []) == []
    [d] = S.differences(section(), section(threads={"loader": [{"n": 1}, {"n": 2}]}), [])
    assert (d.key, d.python, d.cpp) == ("threads/loader/1/n", S.ABSENT, 2)


def test_the_allow_list_allows_by_key_and_by_language(tmp_path):
    allow = tmp_path / "allow.toml"
    allow.write_text('[[allow]]\nkey = "libraries/lib{x,y}.so"\nonly = "python"\nreason = "r"\n'
                     '[[allow]]\nkey = "program"\nreason = "r"\n')
    entries = S.load_allow_list(allow)
    assert [e.key for e in entries] == ["libraries/libx.so", "libraries/liby.so", "program"]
    extra = section(program="/bin/y", libraries=section()["libraries"] + [{"path": "/p/libx.so", "build_id": "dd"}])
    assert S.differences(extra, section(), entries) == []  # Python alone has it: allowed
    assert [d.key for d in S.differences(section(), extra, entries)] == ["libraries/libx.so"]  # C++ alone: not
    both = section(libraries=extra["libraries"][:2] + [{"path": "/q/libx.so", "build_id": "ee"}])
    assert [d.key for d in S.differences(extra, both, entries)] == ["libraries/libx.so"]  # two builds: not
    allow.write_text('[[allow]]\nkey = "x"\n')
    with pytest.raises(S.ProcessError, match="allow entry 1 needs a non-empty key and reason"):
        S.load_allow_list(allow)


def test_the_reviewed_allow_list_loads_and_says_why():
    entries = S.load_allow_list()
    assert entries and all(len(e.reason) > 20 for e in entries)
    assert not S.allowed_by("libraries/libtorch_cpu.so", {"python"}, entries), "torch itself may never differ"


def test_a_process_with_two_openmp_runtimes_fails_its_own_check():
    two = section(libraries=section()["libraries"] + [{"path": "/opt/intel/libiomp5.so", "build_id": "ff"}])
    doc = {"language": "cpp", "process": {**two, "windows": {}, "threads": {},
                                          "build": {"optimized": True, "ndebug": True, "fast_math": False}},
           "config": {"trace_steps": 0, "epochs": 1}}
    [d] = S.own_checks(doc)
    assert d.key == "libraries" and "2 OpenMP runtimes" in d.why and d.cpp == ["/a/libgomp.so.1",
                                                                             "/opt/intel/libiomp5.so"]
    assert "2 OpenMP runtimes" in S.format_differences([d])


def test_the_command_line_compares_two_results_files(run_pair, tmp_path, capsys):
    py, cpp = run_pair("default")
    paths = []
    for doc in (py, cpp, {**cpp, "process": {**cpp["process"], "interop_threads": 99}}):
        paths.append(tmp_path / f"{len(paths)}.json")
        paths[-1].write_text(json.dumps(doc))
    assert S.main([str(paths[0]), str(paths[1])]) == 0
    assert S.main([str(paths[0]), str(paths[2])]) == 1 and "interop_threads" in capsys.readouterr().out
    assert S.main([str(paths[1]), str(paths[0])]) == 2


def test_the_report_shows_the_section_and_flags_a_differing_run(run_pair, tmp_path):
    from suite.report import build_report

    py, cpp = run_pair("default")
    drifted = {**cpp, "process": {**cpp["process"], "interop_threads": 99}}
    for name, docs in {"same": (py, cpp), "differs": (py, drifted)}.items():
        paths = []
        for doc in docs:
            paths.append(tmp_path / f"{name}-{doc['language']}.json")
            paths[-1].write_text(json.dumps(doc))
        md = build_report(paths, tmp_path / name).read_text()
        table = md.split("### Process state")[1].split("###")[0]
        assert "| Python | resnet18 | default |" in table and "| C++ | resnet18 | default |" in table, table
        verdict = "**process state differs**: 1 difference(s)" if name == "differs" else \
            "the same process state outside the allow-list"
        assert f"- resnet18, default: Python vs C++: {verdict}" in table, table
        assert (name == "differs") == (f"`interop_threads`: Python {py['process']['interop_threads']}, C++ 99" in table)
