"""Parity proofs: the Python and C++ trainers compute the same thing (docs/twins.md is the contract).

Each test fails when the twins drift: a different stem, a skipped flip, another order of random draws,
another schedule or optimizer formula. All run on CPU; the real-image accuracy check is opt-in (slow).
"""

import json
from pathlib import Path

import pytest
import torch
from helpers import dumped, other, run_ok

from bench import data as D
from bench import model as M
from bench.vocab import LANGUAGES, MODELS
from suite import harness as H
from suite.plugin import tiny
from suite.plugin.tiny import NO_LATENCY
from suite.process import load_allow_list

REAL_SUBSET = H.ROOT / ".data" / "cifar10-real-subset"  # git-ignored; where the GPU session looks too (docs/gpu.md)
# CUDA lockstep: bit-identity is asserted where the kernels are deterministic (init, data, the first step);
# beyond it, float32 rounding differences of order 1e-7 that compound over 6 steps stay far below this.
CUDA_LOCKSTEP_RTOL = 1e-4
# The timed-interval runs' sleep per step, and the time each step adds to the record without waiting.
SLEEP_S, ADDED_S = 2.0, 1000.0


# 1. Architecture ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def initial_weights(tiny_run, trainer_pair, tiny_data):
    """initial_weights(model) -> {lang: (results, --dump-init weights)}: ResNet18's from the canonical runs; ResNet34
    from an eval-only pair of its own (the only ResNet34 runs of the default tier)."""
    def get(model):
        if model == tiny.MODEL:
            runs = {lang: tiny_run(lang) for lang in LANGUAGES}
        else:
            runs = trainer_pair([*tiny.base_args(tiny_data, model=model), *NO_LATENCY, "--eval-only",
                                 "--test-limit", "8", "--dump-init", "{out}/init.pt"])
        return {lang: (run.doc, dumped(run, "init")) for lang, run in runs.items()}
    return get


@pytest.mark.parametrize("model", list(MODELS))
def test_architecture_identical(initial_weights, expected_params, model):
    runs = initial_weights(model)
    py, cpp = runs["python"][1], runs["cpp"][1]
    reference = M.make_model(model).state_dict()
    assert list(py) == list(reference), "Python weights file keys differ from the Python model"
    assert list(cpp) == list(py), "C++ state_dict keys or their order differ from Python's"
    for key in py:
        assert (cpp[key].shape, cpp[key].dtype) == (py[key].shape, py[key].dtype), key
    buffers = [k for k in py if k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert len(buffers) == 3 * sum(1 for k in py if k.endswith("running_mean")) > 0
    for lang in LANGUAGES:
        assert runs[lang][0]["param_count"] == expected_params[model], lang
    assert sum(v.numel() for k, v in cpp.items() if k not in buffers) == expected_params[model]


# 2. Weights to logits -----------------------------------------------------------------------------------------

CUDA = pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                                                       reason="needs CUDA")])


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize("writer", LANGUAGES)
def test_weights_cross_load_same_logits(tiny_run, cross_read, writer, device):
    """Weights trained and saved by one language give the same logits and accuracy in the other (the reader's
    eval-only run of the writer's canonical run's weights; on CUDA with deterministic algorithms: the same kernels
    for the same shapes in both)."""
    written, read = tiny_run(writer, device=device), cross_read(other(writer), device)
    a, b = dumped(written, "logits")["logits"], dumped(read, "logits")["logits"]
    diff = (a - b).abs().max().item()
    print(f"{writer} -> {other(writer)}: max |logit difference| = {diff:.3g} over {tuple(a.shape)}")
    assert diff <= 1e-4
    assert written.doc["final"]["test_accuracy"] == read.doc["final"]["test_accuracy"]


# 3. Lockstep training ----------------------------------------------------------------------------------------

def print_losses(lp, lc):
    print("\nstep  python loss     c++ loss        rel diff")
    for i, (a, b) in enumerate(zip(lp, lc)):
        print(f"{i:4d}  {a:.8f}  {b:.8f}  {abs(a - b) / abs(a):.2e}")


def test_lockstep_training(tiny_run):
    """Identical init, first batch, every per-step loss (bit for bit: both call the same ATen kernels in the
    same order) and identical trained weights, with a warm-up before the first timed step (the canonical runs)."""
    runs = {lang: tiny_run(lang) for lang in LANGUAGES}
    py, cpp = ({name: dumped(runs[lang], name) for name in tiny.FILES} for lang in LANGUAGES)
    for key in py["init"]:
        assert torch.equal(py["init"][key], cpp["init"][key]), f"initial {key} differs"
    assert torch.equal(py["batch"]["labels"], cpp["batch"]["labels"]), "different shuffle order"
    assert torch.equal(py["batch"]["images"], cpp["batch"]["images"]), "different crop/flip draws"
    lp, lc = runs["python"].doc["step_losses"], runs["cpp"].doc["step_losses"]
    print_losses(lp, lc)
    assert len(lp) == len(lc) == tiny.EPOCHS * tiny.STEPS_PER_EPOCH  # a full batch, then a partial one, each epoch
    assert lp == lc, "per-step losses differ"
    for key in py["trained"]:
        assert torch.equal(py["trained"][key], cpp["trained"][key]), f"trained {key} differs"
    assert [e["lr"] for e in runs["python"].doc["epochs"]] == [e["lr"] for e in runs["cpp"].doc["epochs"]]
    assert torch.equal(py["logits"]["logits"], cpp["logits"]["logits"])
    for run in runs.values():
        assert run.doc["config"]["warmup_steps"] > 0 and run.doc["warmup_seconds"] > 0


@pytest.mark.parametrize("lang", LANGUAGES)
def test_warmup_leaves_the_run_untouched(tiny_run, trainer_pair, tiny_data, lang):
    """Warm-up steps train on a throwaway optimizer with draws of their own and restore the weights and
    BatchNorm buffers: the canonical run (with a warm-up) is bit for bit the same run without one (its own run),
    and says how long its warm-up took."""
    warm = tiny_run(lang)
    cold = trainer_pair(tiny.argv(tiny_data, warmup_steps=0))[lang]
    assert cold.doc["warmup_seconds"] is None and warm.doc["warmup_seconds"] > 0
    assert warm.doc["config"]["warmup_steps"] > 0 and cold.doc["config"]["warmup_steps"] == 0
    assert warm.doc["step_losses"] == cold.doc["step_losses"], "warm-up changed the run's per-step losses"
    cold_w, warm_w = dumped(cold, "trained"), dumped(warm, "trained")
    for key in cold_w:  # running_mean/var and num_batches_tracked included
        assert torch.equal(warm_w[key], cold_w[key]), f"warm-up changed the trained {key}"
    assert [e["test_loss"] for e in warm.doc["epochs"]] == [e["test_loss"] for e in cold.doc["epochs"]]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_lockstep_training_cuda(tiny_run):
    """Lockstep on CUDA with deterministic algorithms (the canonical runs on CUDA): init and data bit-identical
    (both are made on the CPU generator), the first step's loss bit-identical (the same deterministic kernels on
    the same inputs); later steps and the trained weights within CUDA_LOCKSTEP_RTOL, printed, for kernels whose
    reductions cuDNN and cuBLAS may order differently from one process to the next even when deterministic in
    each."""
    runs = {lang: tiny_run(lang, device="cuda") for lang in LANGUAGES}
    py, cpp = ({name: dumped(runs[lang], name) for name in ("init", "batch", "trained")} for lang in LANGUAGES)
    for key in py["init"]:
        assert torch.equal(py["init"][key], cpp["init"][key]), f"initial {key} differs"
    assert torch.equal(py["batch"]["images"], cpp["batch"]["images"]), "different crop/flip draws"
    lp, lc = runs["python"].doc["step_losses"], runs["cpp"].doc["step_losses"]
    print_losses(lp, lc)
    assert runs["python"].doc["device"]["type"] == runs["cpp"].doc["device"]["type"] == "cuda"
    assert len(lp) == len(lc) == tiny.EPOCHS * tiny.STEPS_PER_EPOCH and lp[0] == lc[0], "the first loss differs"
    worst = max(abs(a - b) / abs(a) for a, b in zip(lp, lc))
    weights = max(((py["trained"][k].double() - cpp["trained"][k].double()).abs().max()
                   / py["trained"][k].double().abs().max().clamp_min(1e-12)).item()
                  for k in py["trained"] if py["trained"][k].is_floating_point())
    print(f"CUDA lockstep: losses bit-identical: {lp == lc}; worst relative loss difference {worst:.2e}, "
          f"worst relative weight difference {weights:.2e} (tolerance {CUDA_LOCKSTEP_RTOL:.0e})")
    assert worst <= CUDA_LOCKSTEP_RTOL and weights <= CUDA_LOCKSTEP_RTOL


def shape_of(value):
    """A document's keys and value types, recursively (lists by their first element)."""
    if isinstance(value, dict):
        return {k: shape_of(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape_of(value[0])] if value else []
    return "number" if isinstance(value, (int, float)) and not isinstance(value, bool) else type(value).__name__


def test_results_documents_have_the_same_shape(tiny_run):
    """Beyond the validator: every key and type of the two languages' documents is the same (the canonical runs:
    step losses, latency, concurrency and traces included)."""
    runs = {lang: tiny_run(lang) for lang in LANGUAGES}
    py, cpp = (runs[lang].doc for lang in LANGUAGES)
    assert py["latency"] and py["concurrency"] and py["traces"] and "step_losses" in py
    shapes = {lang: shape_of(run.doc) for lang, run in runs.items()}
    assert shapes["cpp"]["process"].pop("gc") == "NoneType", "C++ has no garbage collector"  # docs/twins.md
    assert shapes["cpp"]["process"].pop("interpreter") == "NoneType", "C++ has no interpreter"
    assert set(shapes["python"]["process"].pop("interpreter")) == {"version", "implementation", "gil_enabled",
                                                                   "switch_interval", "dev_mode"}
    assert shapes["python"]["process"].pop("gc") == {"enabled": "bool", "thresholds": ["number"], "frozen": "number",
                                                     "collections_in_windows": ["number"],
                                                     "seconds_in_windows": "number"}
    # Variables Python's own imports set (process_allow.toml, only = "python"): in C++'s environment only when the
    # suite's process had set them already (an earlier test's in-process torch.compile), so not part of the shape.
    set_by_python = {a.key.removeprefix("environment/values/") for a in load_allow_list()
                     if a.key.startswith("environment/values/") and a.only == "python"}
    for shape in shapes.values():
        shape["process"]["environment"]["values"] = {k: v for k, v in shape["process"]["environment"]["values"].items()
                                                     if k not in set_by_python}
    assert shapes["python"] == shapes["cpp"]
    assert py["torch_version"] == cpp["torch_version"] and py["device"] == cpp["device"]
    # Each run writes into its own folder: the configs name it, the same way ("{out}/traces").
    config = {lang: json.loads(json.dumps(run.doc["config"]).replace(str(run.folder), "{out}"))
              for lang, run in runs.items()}
    assert config["python"] == config["cpp"] and py["dataset"] == cpp["dataset"]
    assert py["process"]["test_hooks"] == cpp["process"]["test_hooks"] == {}
    from bench.results import SCHEMA_VERSION  # C++'s kSchemaVersion has no other tie to it

    assert py["schema_version"] == cpp["schema_version"] == SCHEMA_VERSION


@pytest.fixture(scope="module")
def clock_hooked(trainer_pair, tiny_data):
    """Both trainers with both clock hooks (the only runs that sleep): BENCH_SLEEP_PER_STEP_MS sleeps SLEEP_S in every
    training step, BENCH_ADD_MS_PER_STEP adds ADDED_S to every step's record without waiting; 2 steps, no warm-up."""
    args = [*tiny.base_args(tiny_data), *tiny.sizes(train=2 * tiny.BATCH, test=tiny.BATCH, epochs=1), *NO_LATENCY,
            "--warmup-steps", "0"]
    return trainer_pair(args, env={"BENCH_SLEEP_PER_STEP_MS": str(SLEEP_S * 1000),
                                   "BENCH_ADD_MS_PER_STEP": str(ADDED_S * 1000)})


@pytest.mark.parametrize("lang", LANGUAGES)
def test_timed_intervals_cover_what_they_claim(clock_hooked, lang):
    """An epoch's time holds every training step and no evaluation, in both languages, shown with the
    BENCH_SLEEP_PER_STEP_MS hook. A sleep is a guaranteed minimum: 2 steps of 2 s make train_seconds >= 4 s
    whatever the machine. A step's sleep inside the evaluation would add 2 s to eval_seconds; without it, the
    evaluation (a forward of 16 images) takes less than the epoch's own work besides its sleeps (forward and
    backward of 32 images), on any machine, loaded or not: the bound is relative to the same run's speed (an
    absolute bound failed on a 2-core Xeon with torch 2.15, and on a starved process here). tests/test_traces.py
    proves the same from the profiler's traces."""
    [epoch] = clock_hooked[lang].doc["epochs"]
    hooks = 2 * (SLEEP_S + ADDED_S)
    assert epoch["train_seconds"] >= hooks, f"{lang}: a training step fell outside the epoch"
    work = epoch["train_seconds"] - hooks
    assert epoch["eval_seconds"] < work + SLEEP_S / 2, (
        f"{lang}: a training step's sleep landed in the evaluation (eval {epoch['eval_seconds']:.2f} s, "
        f"the epoch's work besides its sleeps {work:.2f} s)")


@pytest.mark.parametrize("lang", LANGUAGES)
def test_added_time_is_recorded_not_waited_and_the_hooks_are_named(clock_hooked, lang):
    """BENCH_ADD_MS_PER_STEP: each step's ADDED_S is in the epoch's time, its rate and the window's total, and was
    never waited (the process took less than one step's worth); the results name both hooks."""
    run = clock_hooked[lang]
    [epoch] = run.doc["epochs"]
    assert 2 * ADDED_S < epoch["train_seconds"] < 2 * ADDED_S + run.seconds
    assert epoch["images_per_second"] == pytest.approx(2 * tiny.BATCH / epoch["train_seconds"])
    assert run.doc["total_seconds"] >= epoch["train_seconds"]
    assert run.seconds < ADDED_S, f"{lang}: the process waited for the added time"
    assert run.doc["process"]["test_hooks"] == {"BENCH_SLEEP_PER_STEP_MS": str(SLEEP_S * 1000),
                                                "BENCH_ADD_MS_PER_STEP": str(ADDED_S * 1000)}


# 4. Data ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["synthetic", "real-subset"])
def test_same_decoded_and_augmented_data(tiny_run, trainer_pair, tiny_data, which):
    """The first augmented batch and the test images, both languages: the canonical runs on the synthetic set; on the
    real images, one epoch of one batch of their own (other data)."""
    folder = tiny_data if which == "synthetic" else REAL_SUBSET
    if not Path(folder).is_dir():
        pytest.skip(f"{folder} not present")
    if which == "real-subset":  # the real images are what their SHA256SUMS says
        import hashlib

        for line in (folder / "SHA256SUMS").read_text().splitlines():
            digest, name = line.split()
            assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, f"{name} is corrupt"
        runs = trainer_pair([*tiny.base_args(folder), *tiny.sizes(train=64, test=64, batch=64, epochs=1), *NO_LATENCY,
                             "--seed", "11", "--warmup-steps", "0", "--dump-batch", "{out}/batch.pt"])
    else:
        runs = {lang: tiny_run(lang) for lang in LANGUAGES}
    py, cpp = (dumped(runs[lang], "batch") for lang in LANGUAGES)
    assert torch.equal(py["test_images"], cpp["test_images"]), "decoding/normalization differs"
    assert torch.equal(py["images"], cpp["images"]), "augmentation differs"
    assert torch.equal(py["labels"], cpp["labels"])
    assert runs["python"].doc["dataset"] == runs["cpp"].doc["dataset"], "dataset identity (kind/hash/counts) differs"
    # And both match an independent decoding of the files: label byte, then CHW pixels.
    n = py["test_images"].shape[0]
    raw = (Path(folder) / "test_batch.bin").read_bytes()[: n * D.RECORD_BYTES]
    rec = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(n, D.RECORD_BYTES)
    mean = torch.tensor(D.CIFAR_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(D.CIFAR_STD).view(1, 3, 1, 1)
    expected = (rec[:, 1:].view(n, 3, 32, 32).float() / 255 - mean) / std
    assert torch.allclose(py["test_images"], expected, atol=1e-6)


def test_random_crop_flip_matches_reference():
    """The batched gather equals pad + slice + flip done image by image."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (16, 3, 32, 32), generator=g, dtype=torch.uint8)
    perm, crops, flips = D.draw_epoch_augmentation(16, g)
    out = D.random_crop_flip(images, crops, flips)
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    for i in range(16):
        dy, dx = crops[i].tolist()
        ref = padded[i, :, dy:dy + 32, dx:dx + 32]
        if flips[i]:
            ref = ref.flip(-1)
        assert torch.equal(out[i], ref), f"image {i} (crop {dy},{dx} flip {int(flips[i])})"
    assert 0 < int(flips.sum()) < 16 and crops.min() >= 0 and crops.max() <= 8


# 5. Accuracy on real images (opt-in) ---------------------------------------------------------------------------

REAL_SUBSET_MIN_EPOCHS = 3  # on 2 CPU cores: about 5 minutes per ResNet18 trainer


@pytest.mark.slow
@pytest.mark.skipif(not REAL_SUBSET.is_dir(), reason="needs .data/cifar10-real-subset")
def test_real_subset_accuracy_agrees(results_dir, cpp_exe, run_config, model):
    """Same seed and config on the real images: final test accuracies within 2 points.

    The full subset (5085 train / 1017 test), batch 128, lr 0.1, max(--epochs, 3) epochs, the suite's device
    and threads; results files land in --results-dir. docs/results/parity-real-subset.md holds the committed
    numbers and the commands (CPU: --models resnet18, under 15 minutes on 2 cores).
    """
    epochs = max(run_config.epochs, REAL_SUBSET_MIN_EPOCHS)
    args = ["--model", model, "--data", str(REAL_SUBSET), "--epochs", str(epochs), "--device", run_config.device,
            "--threads", str(run_config.threads), "--seed", str(run_config.seed), "--latency-iters", "10",
            "--latency-batch-sizes", "1"]
    from suite.schema import load_results

    acc = {}
    for lang in LANGUAGES:
        res = results_dir / f"real-subset-{lang}-{model}-{epochs}ep.json"
        run_ok(lang, args + ["--results", str(res)], cpp_exe, echo=f"{lang} {model} real subset")
        doc = load_results(res)
        assert doc["dataset"]["kind"] == "subset" and doc["dataset"]["train_records"] == 5085
        acc[lang] = doc["final"]["test_accuracy"]
    print(f"real subset, {model}, {epochs} epochs: python {acc['python']:.2f}% cpp {acc['cpp']:.2f}%")
    assert abs(acc["python"] - acc["cpp"]) <= 2.0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("lang", LANGUAGES)
def test_training_peak_memory_excludes_the_warmup_cuda(tiny_run, trainer_pair, tiny_data, lang):
    """The training window's peak opens after the warm-up: its cloned weights and throwaway optimizer state
    (about twice the weights) must not show, so runs with and without warm-up peak alike (the canonical CUDA run,
    and the same without its warm-up)."""
    warm = tiny_run(lang, device="cuda").doc["peak_memory_bytes"]
    cold = trainer_pair(tiny.argv(tiny_data, device="cuda", warmup_steps=0))[lang].doc["peak_memory_bytes"]
    print(f"{lang}: training peak {cold} bytes without warm-up, {warm} with")
    assert cold > 0 and abs(warm - cold) <= 0.05 * cold
