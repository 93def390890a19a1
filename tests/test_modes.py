"""Each training mode runs in both languages and computes the same thing in both (docs/twins.md, "Modes").

Lockstep on CPU, one thread, deterministic algorithms: in every mode the two languages produce the same
per-step losses and the same trained weights, bit for bit (the same ATen kernels, called in the same order),
so a mode can be compared across languages like the default. (The idiomatic pipeline draws different random
numbers by design: tests/test_pipeline.py covers it; the inference paths: tests/test_inference.py.)
"""

import pytest
import torch
from helpers import dumped

from bench import vocab
from bench.vocab import LANGUAGES
from suite.plugin import tiny

# bf16 alone is covered by bf16-cl (both flags) and the comparison with channels-last below.
LOCKSTEP_MODES = ["default", "foreach", "channels-last", "bf16-cl", "cudnn-benchmark"]


@pytest.fixture(scope="module")
def lockstep_run(tiny_run):
    """lockstep_run(lang, mode) -> (results document, trained weights): the mode's canonical tiny run (suite/plugin/
    tiny.py: CPU, one thread, deterministic, every step's loss), shared with the other tests of the session."""
    def get(lang, mode):
        run = tiny_run(lang, mode)
        return run.doc, dumped(run, "trained")
    return get


@pytest.mark.parametrize("mode", LOCKSTEP_MODES)
def test_mode_in_lockstep_across_languages(mode, lockstep_run):
    (py, py_weights), (cpp, cpp_weights) = lockstep_run("python", mode), lockstep_run("cpp", mode)
    lp, lc = py["step_losses"], cpp["step_losses"]
    print(f"\n{mode}: python {lp}\n{' ' * len(mode)}  c++    {lc}")
    assert len(lp) == len(lc) == tiny.EPOCHS * tiny.STEPS_PER_EPOCH
    assert lp == lc, f"{mode}: per-step losses differ"
    for key in py_weights:
        assert torch.equal(py_weights[key], cpp_weights[key]), f"{mode}: trained {key} differs"
    for key in ("precision", "channels_last", "optimizer_impl", "cudnn_benchmark"):
        assert py["config"][key] == cpp["config"][key]
    assert py["backend"] == cpp["backend"]
    assert py["final"] == cpp["final"]


@pytest.mark.parametrize("impl", ["per-tensor", "foreach"])
def test_python_optimizer_runs_the_kernels_its_mode_names(impl):
    """On CPU the two SGD implementations give the same numbers, so lockstep cannot tell them apart: check the
    option itself (left unset, PyTorch would pick foreach on CUDA while C++ loops per tensor)."""
    from types import SimpleNamespace

    from bench import model as M
    from bench import train

    optimizer = train.make_optimizer(M.make_model("resnet18"), SimpleNamespace(lr=0.1, optimizer_impl=impl))
    [group] = optimizer.param_groups
    assert group["foreach"] is (impl == "foreach")
    assert (group["momentum"], group["nesterov"], group["weight_decay"], group["dampening"]) == (
        vocab.MOMENTUM, vocab.NESTEROV, vocab.WEIGHT_DECAY, 0)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_foreach_and_per_tensor_sgd_agree(lang, lockstep_run):
    """The two optimizer implementations are the same update, to float rounding, in each language."""
    per_tensor, foreach = lockstep_run(lang, "default")[0], lockstep_run(lang, "foreach")[0]
    assert per_tensor["config"]["optimizer_impl"] == "per-tensor" and foreach["config"]["optimizer_impl"] == "foreach"
    for i, (a, b) in enumerate(zip(per_tensor["step_losses"], foreach["step_losses"])):
        assert abs(a - b) <= 1e-4 * abs(a), f"{lang} step {i}: per-tensor {a} vs foreach {b}"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_modes_really_change_the_computation(lang, lockstep_run):
    """Guards the guards: a mode flag that silently did nothing would match fp32 bit for bit."""
    fp32 = lockstep_run(lang, "default")[0]["step_losses"]
    cl = lockstep_run(lang, "channels-last")
    assert cl[0]["config"]["channels_last"] and cl[0]["step_losses"] != fp32, f"{lang}: channels_last had no effect"
    bf16 = lockstep_run(lang, "bf16-cl")[0]["step_losses"]  # against fp32 in the same layout
    fp32_cl = cl[0]["step_losses"]
    assert fp32_cl[0] != bf16[0], f"{lang}: bf16 autocast had no effect on the first forward"
    assert abs(fp32_cl[0] - bf16[0]) < 0.05 * fp32_cl[0], f"{lang}: bf16 is not a rounding of the fp32 loss"
    bench = lockstep_run(lang, "cudnn-benchmark")[0]
    assert bench["config"]["cudnn_benchmark"] is True and bench["backend"]["cudnn_benchmark"] is True
