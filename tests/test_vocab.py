"""One flag table: bench/vocab.py FLAGS, and what is generated from it. The C++ trainer's table (vocab_table.h in
its build folder) is what bench/generate.py writes now, both --help texts are help_text(), docs/trainers.md holds
the generated flag table, the Python parser's Args and defaults follow the table, and both trainers' results
record every flag where the table says."""

import dataclasses
import subprocess

import pytest

from bench import flags, generate, vocab
from bench.results import run_config
from bench.vocab import FLAGS, LANGUAGES
from suite.schema import results_schema

RECIPE_KEYS = ("momentum", "weight_decay", "nesterov", "schedule")

# Every flag that config records, away from its default (the checks below would miss a value that equals its
# default), in a run short enough for a unit test: --eval-only, a few images, one latency sample. --load-weights
# stays unset: it needs a weights file. The distributed flags are recorded in a single process too (read by
# torchrun jobs only).
RECORDED_RUN = [
    "--model", "resnet34", "--epochs", "2", "--batch-size", "8", "--lr", "0.05", "--train-limit", "16",
    "--test-limit", "8", "--device", "cpu", "--seed", "3", "--repeat", "4", "--threads", "1",
    "--latency-batch-sizes", "2", "--latency-iters", "1", "--latency-warmup", "0", "--warmup-steps", "1",
    "--eval-only", "--deterministic", "--cudnn-benchmark", "--record-step-losses", "--trace-steps", "1",
    "--trace-dir", "{out}/traces", "--precision", "bf16", "--channels-last", "--optimizer-impl", "foreach",
    "--data-pipeline", "idiomatic", "--workers", "0", "--inference-paths", "eager,cuda-graph", "--aoti-dir", "{out}",
    "--concurrency", "1", "--concurrency-iters", "2", "--grad-sync", "flat", "--no-sync-blocks", "2",
]


def test_cpp_table_is_what_the_generator_writes_now(cpp_exe):
    """CMake regenerated the header when bench/ changed: the build holds no stale table."""
    header = cpp_exe.parent / "generated" / "vocab_table.h"
    assert header.read_text() == generate.cpp_header(), f"{header} is stale: rebuild (CMake regenerates it)"


def backend_lines(out, lang):
    """--help's text after help_text(lang): a blank line, then one line per data-parallel backend (vocab's
    DIST_FEATURES, in order), each `<feature>: available` or `<feature>: unavailable: <why this build has not>`."""
    assert out.startswith(flags.help_text(lang) + "\n"), "--help does not start with help_text()"
    lines = out[len(flags.help_text(lang)) + 1:].splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == list(vocab.DIST_FEATURES.values())
    for line in lines:
        state = line.split(": ", 1)[1]
        assert state == "available" or state.startswith("unavailable: ") and len(state) > len("unavailable: ")
    return lines


def test_cpp_help_is_the_generated_text(cpp_exe):
    proc = subprocess.run([str(cpp_exe), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    backend_lines(proc.stdout, "cpp")


def test_python_help_is_the_same_text(capsys):
    with pytest.raises(SystemExit) as done:
        flags.parse_args(["--help"])
    assert done.value.code == 0
    assert backend_lines(capsys.readouterr().out, "python")[0] == f"{vocab.DIST_FEATURES['cpu']}: available", \
        "this torch has gloo"
    python, cpp = (flags.help_text(lang).split("\noptions:\n") for lang in LANGUAGES)
    assert python[1] == cpp[1], "the flags' lines differ between the languages"
    assert python[0].startswith(f"usage: {vocab.PROGRAMS['python']} ") and cpp[0].startswith("usage: bench_train ")


def test_docs_flag_table_is_current():
    doc = generate.TRAINERS_DOC.read_text()
    assert generate.with_flag_table(doc) == doc, "docs/trainers.md is stale: run `python -m bench.generate docs`"


def test_python_args_are_the_table():
    assert [field.name for field in dataclasses.fields(flags.Args)] == [flag.dest for flag in FLAGS]


@pytest.mark.parametrize("flag", [f for f in FLAGS if f.kind != "switch"], ids=lambda f: f.name)
def test_each_default_parses_back_to_itself(flag):
    """The default's text (what C++ parses at start, and what --help shows) given on the command line is the
    default, as the parser sets it when the flag is absent."""
    expected = list(flag.default) if flag.kind in ("ints", "names") else flag.default
    assert getattr(flags.parse_args([flag.name, flags.default_arg(flag)]), flag.dest) == expected
    assert getattr(flags.parse_args([]), flag.dest) == expected


def test_the_schema_config_is_the_flag_table_and_the_recipe():
    schema = results_schema()["properties"]["config"]["properties"]
    assert set(schema) == {flag.config_key for flag in FLAGS if flag.config_key} | set(RECIPE_KEYS)


def value_at(doc, dotted):
    for key in dotted.split("."):
        doc = doc[key]
    return doc


@pytest.mark.parametrize("lang", LANGUAGES)
def test_results_record_every_flag_where_the_table_says(lang, cached_run, tiny_data):
    doc, out, _ = cached_run(lang, ["--data", str(tiny_data), *RECORDED_RUN])
    args = flags.parse_args(["--data", str(tiny_data), *(a.replace("{out}", str(out)) for a in RECORDED_RUN)])
    assert doc["config"] == run_config(args)
    assert list(doc["config"]) == [flag.config_key for flag in FLAGS if flag.config_key] + [*RECIPE_KEYS]
    assert (doc["config"]["momentum"], doc["config"]["weight_decay"], doc["config"]["nesterov"],
            doc["config"]["schedule"]) == (vocab.MOMENTUM, vocab.WEIGHT_DECAY, vocab.NESTEROV, vocab.SCHEDULE)
    # A single process: the distributed section's flags are recorded by torchrun jobs (tests/test_dist.py).
    assert doc["distributed"] is None
    elsewhere = {flag.results_key: value_at(doc, flag.results_key) for flag in FLAGS
                 if flag.results_key and not flag.config_key and not flag.results_key.startswith("distributed.")}
    assert elsewhere == {"dataset.path": str(tiny_data), "backend.deterministic": True, "step_losses": []}
