"""Inference paths and concurrent inference in both trainers (docs/twins.md, "Modes").

Every path must compute what eager computes with the run's own weights: each trainer dumps each path's
output on its latency input (--dump-logits, "<path>.bs<B>"). The AOTInductor packages are built once, in a process
of their own as everywhere (suite.harness.aoti_packages runs `python -m suite.experiments.aoti package`, cached
under BENCH_CACHE), and both languages load the same package from the folder it prints (--aoti-dir). The compiled
paths (torch.compile, AOTInductor: a compile each, about a minute on 2 cores
with a cold cache) are the thorough tier's (-m thorough); the default tier checks the paths a run cannot take and
concurrency on an eager run. The CUDA graph checks are opt-in (-m gpu).
"""

import pytest
import torch

from bench import model as M
from bench import weights as W
from bench.vocab import INFERENCE_PATHS, LANGUAGES, PROGRAMS
from suite import harness as H
from suite.schema import load_results

CONCURRENCY = (1, 2)
# CUDA paths against eager, relative to the largest logit. "fp32" convolutions run in TF32 on CUDA (PyTorch's
# default, both languages; 10-bit mantissa), and AOTInductor may pick other cuDNN algorithms than eager, so
# the two differ by TF32 roundings: 0.5% of the logit scale, a quarter of bf16's (8-bit mantissa) 2%. A path
# running other weights, or without the BatchNorm statistics, is off by the logit scale itself.
CUDA_REL_TOLERANCE = {"fp32": 0.005, "bf16": 0.02}
CONCURRENCY_ITERS = 3
LATENCY_SIZES = [1]
SMALL = ["--model", "resnet18", "--eval-only", "--test-limit", "8", "--threads", "1", "--latency-batch-sizes",
         ",".join(map(str, LATENCY_SIZES)), "--latency-iters", "2", "--latency-warmup", "1"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A weights file written by Python, with batch-norm statistics far from init: a path that ran the
    package's own weights, or dropped the running statistics, would not match eager."""
    model = M.make_model("resnet18")
    g = torch.Generator().manual_seed(11)
    M.init_weights(model, g)
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if name.endswith("running_mean"):
                buf.uniform_(-0.2, 0.2, generator=g)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 2.0, generator=g)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pt"
    W.save_weights(model, path)
    return path


def aoti_dir(device, precision):
    """The trainers' --aoti-dir for this configuration, its packages built on first use."""
    return str(H.aoti_packages("resnet18", device, precision, False, LATENCY_SIZES))


@pytest.fixture(scope="module")
def cpu_run(trainer_run, tiny_data, weights):
    """cpu_run(lang, precision): one small eval-only CPU run with these weights and every path (the compiled ones
    included), shared by the tests; returns (validated results, dumped outputs, stderr). fp32 asks for
    concurrency too."""
    def get(lang, precision="fp32"):
        paths = INFERENCE_PATHS if precision == "fp32" else ("eager", "aoti")
        args = SMALL + ["--device", "cpu", "--data", str(tiny_data), "--load-weights", str(weights),
                        "--precision", precision, "--inference-paths", ",".join(paths),
                        "--aoti-dir", aoti_dir("cpu", precision), "--dump-logits", "{out}/outputs.pt"]
        if precision == "fp32":
            args += ["--concurrency", ",".join(map(str, CONCURRENCY)), "--concurrency-iters", str(CONCURRENCY_ITERS)]
        run = trainer_run(lang, args)
        return run.doc, torch.load(run.folder / "outputs.pt", map_location="cpu", weights_only=True), run.stderr
    return get


def eager_paths(lang):
    """What the default tier's run asks for: no compile but the one C++ turns down (it has no torch.compile)."""
    return ["eager", "cuda-graph"] + (["compile"] if lang == "cpp" else [])


@pytest.fixture(scope="module")
def eager_run(run_cache, tiny_data, weights):
    """eager_run(lang): the eval-only CPU run of eager_paths(lang), with concurrency (both languages' at once)."""
    specs = [(lang, SMALL + ["--device", "cpu", "--data", str(tiny_data), "--load-weights", str(weights),
                             "--inference-paths", ",".join(eager_paths(lang)), "--concurrency",
                             ",".join(map(str, CONCURRENCY)), "--concurrency-iters", str(CONCURRENCY_ITERS)], None)
             for lang in LANGUAGES]
    return lambda lang: dict(zip(LANGUAGES, run_cache.runs(specs)))[lang]


def max_diff(a, b):
    return (a - b).abs().max().item()


@pytest.mark.thorough
@pytest.mark.parametrize("lang", LANGUAGES)
def test_compiled_paths_match_eager(cpu_run, lang):
    _, out, _ = cpu_run(lang)
    compiled = [p for p in ("compile", "aoti") if f"{p}.bs1" in out]
    assert compiled == (["compile", "aoti"] if lang == "python" else ["aoti"])
    assert max_diff(out["eager.bs1"], out["logits"][:1]) <= 1e-4, "eager.bs1 is not the first test image's output"
    for path in compiled:
        diff = max_diff(out[f"{path}.bs1"], out["eager.bs1"])
        print(f"{lang} {path} vs eager, bs 1: max |logit difference| = {diff:.3g}")
        assert diff <= 1e-4


@pytest.mark.thorough
def test_aoti_same_in_both_languages(cpu_run):
    """The same package with the same weights on the same input: the same logits in both languages."""
    py, cpp = cpu_run("python")[1], cpu_run("cpp")[1]
    diff = max_diff(py["aoti.bs1"], cpp["aoti.bs1"])
    print(f"aoti bs 1, Python vs C++: max |logit difference| = {diff:.3g}")
    assert diff <= 1e-5


def check_unavailable(doc, stderr, lang, requested):
    """The paths this CPU run cannot take are listed with their reason and said on stderr; the rest are measured."""
    expected = {"inference path cuda-graph": "CUDA graphs need a CUDA device"}
    if lang == "cpp" and "compile" in requested:
        expected["inference path compile"] = "torch.compile has no C++ API"
    assert {u["feature"]: u["reason"] for u in doc["unavailable"]} == expected
    for feature, reason in expected.items():
        assert f"{PROGRAMS[lang]}: note: {feature} skipped: {reason}" in stderr
    measured = [p for p in requested if f"inference path {p}" not in expected]
    assert [(lat["path"], lat["batch_size"]) for lat in doc["latency"]] == [(p, 1) for p in measured]
    assert doc["config"]["inference_paths"] == list(requested)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_unavailable_paths_are_listed_not_fatal(eager_run, lang):
    run = eager_run(lang)  # exit 0, results valid
    check_unavailable(run.doc, run.stderr, lang, eager_paths(lang))


@pytest.mark.thorough
@pytest.mark.parametrize("lang", LANGUAGES)
def test_unavailable_paths_are_listed_not_fatal_beside_the_compiled_ones(cpu_run, lang):
    doc, _, stderr = cpu_run(lang)
    check_unavailable(doc, stderr, lang, INFERENCE_PATHS)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_concurrency_entries(eager_run, lang):
    doc = eager_run(lang).doc
    assert [c["threads"] for c in doc["concurrency"]] == list(CONCURRENCY)
    for c in doc["concurrency"]:
        assert c["requests"] == c["threads"] * CONCURRENCY_ITERS == len(c["samples_ms"])
        print(f"{lang} {c['threads']} threads: {c['images_per_second']:.1f} images/s, median {c['median_ms']:.2f} ms")


@pytest.mark.slow  # another package build (~20 s on 2 cores): opt in with -m slow
@pytest.mark.parametrize("lang", LANGUAGES)
def test_bf16_aoti_matches_eager_bf16(cpu_run, lang):
    """The bf16 package runs the model under autocast, as the eager bf16 path does: it matches eager bf16
    within a few bf16 roundings and is as far from fp32 as eager bf16 is."""
    bf16, fp32 = cpu_run(lang, "bf16")[1], cpu_run(lang)[1]
    eager = bf16["eager.bs1"]
    diff = max_diff(bf16["aoti.bs1"], eager)
    to_fp32 = {path: max_diff(bf16[f"{path}.bs1"], fp32["eager.bs1"]) for path in ("eager", "aoti")}
    print(f"{lang} bf16 aoti vs eager bf16: max |logit difference| = {diff:.3g}, logits up to "
          f"{eager.abs().max().item():.3g}; vs eager fp32: eager bf16 {to_fp32['eager']:.3g}, "
          f"aoti bf16 {to_fp32['aoti']:.3g}")
    assert diff <= 0.02 * eager.abs().max().item()
    for path, gap in to_fp32.items():  # fp32 rounding differences are ~1e-8, bf16 ones ~1e-4 and more
        assert gap > 1e-5, f"the bf16 {path} path computed in fp32"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("lang", LANGUAGES)
def test_cuda_paths_match_eager(tmp_path, tiny_data, weights, exe_for, lang, precision):
    """CUDA graph replays (and the CUDA AOTInductor package) compute what eager computes; concurrent
    requests run on per-thread streams."""
    out, res = tmp_path / "outputs.pt", tmp_path / "results.json"
    args = SMALL + ["--device", "cuda", "--data", str(tiny_data), "--load-weights", str(weights),
                    "--precision", precision, "--inference-paths", "eager,aoti,cuda-graph",
                    "--aoti-dir", aoti_dir("cuda", precision),
                    "--concurrency", ",".join(map(str, CONCURRENCY)), "--concurrency-iters", str(CONCURRENCY_ITERS),
                    "--dump-logits", str(out), "--results", str(res)]
    proc = H.run_trainer(lang, args, exe_for(lang))
    assert proc.returncode == 0, f"{lang} trainer failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    doc, dumps = load_results(res), torch.load(out, map_location="cpu", weights_only=True)
    assert doc["unavailable"] == []
    assert [c["requests"] for c in doc["concurrency"]] == [n * CONCURRENCY_ITERS for n in CONCURRENCY]
    # Each path's own peak (its samples only), and "fp32" named for what it is on CUDA.
    assert all(isinstance(lat["peak_memory_bytes"], int) and lat["peak_memory_bytes"] > 0 for lat in doc["latency"])
    assert doc["precision_label"] == ("fp32 (TF32 convolutions)" if precision == "fp32" else "bf16 autocast")
    eager = dumps["eager.bs1"]
    scale = eager.abs().max().item()
    for path in ("cuda-graph", "aoti"):
        diff = max_diff(dumps[f"{path}.bs1"], eager)
        tolerance = CUDA_REL_TOLERANCE[precision] * scale
        print(f"{lang} {precision} ({doc['precision_label']}) {path} vs eager, bs 1: max |logit difference| = "
              f"{diff:.3g}, tolerance {tolerance:.3g} (logits up to {scale:.3g})")
        assert diff <= tolerance
