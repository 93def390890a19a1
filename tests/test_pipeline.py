"""The idiomatic data pipeline (--data-pipeline idiomatic, docs/twins.md "Modes") in both languages.

It does not draw the matched pipeline's random numbers, so nothing here compares the languages' batches.
Instead: both trainers run with it (in-process and worker loaders), every image they train on is a crop of
a zero-padded training image, maybe mirrored, with that image's label, and evaluation sees the matched
pipeline's test images. All on CPU with a tiny synthetic set (but for C++'s pinned-memory loader, which only a
CUDA run with worker loaders has: -m gpu): the canonical tiny runs (suite/plugin/tiny.py) the session shares, and
runs of their own where a test needs another configuration.
"""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from helpers import dumped

from bench import data as D
from bench.vocab import LANGUAGES
from suite.plugin import tiny
from suite.plugin.tiny import BATCH, NO_LATENCY, TEST, TRAIN

IDIOMATIC = ["--data-pipeline", "idiomatic"]
MEAN = torch.tensor(D.CIFAR_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(D.CIFAR_STD).view(1, 3, 1, 1)


def to_uint8(normalized):
    """Undo the CIFAR normalization; the values must land on whole pixel values."""
    pixels = (normalized * STD + MEAN) * 255
    assert (pixels - pixels.round()).abs().max() < 1e-2, "not CIFAR-normalized uint8 pixels"
    return pixels.round().to(torch.uint8)


def find_sources(images_u8, train_u8):
    """For each image, every (training index, dy, dx, flipped) whose 32x32 window at (dy, dx) of the 4-pixel
    zero-padded training image equals it, as is or mirrored: an exact lookup over all N x 81 windows x 2 flips."""
    pad = D.PAD
    windows = F.pad(train_u8, (pad, pad, pad, pad)).unfold(2, 32, 1).unfold(3, 32, 1)  # [N,3,9,9,32,32]
    windows = windows.permute(0, 2, 3, 1, 4, 5).reshape(-1, 3 * 32 * 32)  # [N*9*9, 3072], (n, dy, dx) order
    where = {}
    for (n, dy, dx), window in zip(itertools.product(range(train_u8.shape[0]), range(9), range(9)), windows.numpy()):
        where.setdefault(window.tobytes(), []).append((n, dy, dx))
    # flipped = 1: the image is the mirrored window.
    return [[(*hit, flipped) for flipped, window in ((0, image), (1, image.flip(-1)))
             for hit in where.get(window.contiguous().numpy().tobytes(), [])] for image in images_u8]


# 1 + 2. Both trainers train with it, on correctly augmented batches ---------------------------------------------

# On CUDA, C++'s worker loader hands its batches over through PinnedLoaderBatches, which exists nowhere else.
CUDA = pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                                                       reason="needs CUDA")])


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize("lang", LANGUAGES)
def test_idiomatic_trains_on_augmented_batches(tiny_run, tiny_data, lang, device):
    """The canonical idiomatic run: worker loaders (--workers' default, 2); in-process loading (--workers 0):
    test_idiomatic_seed_makes_runs_repeatable."""
    run = tiny_run(lang, "idiomatic", device)
    doc = run.doc
    assert (doc["config"]["data_pipeline"], doc["config"]["workers"], doc["device"]["type"]) == \
        ("idiomatic", 2, device)
    assert math.isfinite(doc["final"]["train_loss"]) and math.isfinite(doc["final"]["test_loss"])
    assert doc["dataset"]["train_records"] == TRAIN

    batch = dumped(run, "batch")
    images, labels = to_uint8(batch["images"]), batch["labels"]
    assert images.shape == (BATCH, 3, 32, 32) and labels.shape == (BATCH,)
    train_u8, train_labels = D.load_split(tiny_data, train=True, limit=TRAIN)
    sources = []
    for i, hits in enumerate(find_sources(images, train_u8)):
        same_label = [h for h in hits if train_labels[h[0]] == labels[i]]
        assert same_label, f"image {i} is no crop/flip of a training image with its label {int(labels[i])}"
        sources.append(same_label[0])
    index, dy, dx, flipped = (torch.tensor(column) for column in zip(*sources))
    assert index.unique().numel() == BATCH, "a training image appears twice in one batch"
    assert not torch.equal(index, torch.arange(BATCH)), "the training set is not shuffled"
    # Each is drawn per image: a batch all mirrored, all unmirrored or all centred would be a broken draw.
    assert 0 < int(flipped.sum()) < BATCH, f"flips {flipped.tolist()}"
    assert ((dy != D.PAD) | (dx != D.PAD)).any() and dy.unique().numel() > 1 and dx.unique().numel() > 1


# Thorough (once per CI run): three runs of its own per language, since repeatability needs two processes of one
# configuration. The default tier's idiomatic checks read the canonical runs (augmented batches, evaluation).
@pytest.mark.thorough
@pytest.mark.parametrize("lang", LANGUAGES)
def test_idiomatic_seed_makes_runs_repeatable(trainer_pair, tiny_data, lang):
    """With in-process loading (--workers 0) --seed fixes the shuffle and every crop and flip: two runs with
    the same seed (repeats 1 and 2 of one configuration: --repeat changes nothing) train identically, another
    seed does not. Runs of their own: repeatability needs two processes of one configuration."""
    args = [*tiny.base_args(tiny_data), *tiny.sizes(test=8, epochs=1), *NO_LATENCY, *IDIOMATIC, "--workers", "0",
            "--warmup-steps", "0", "--deterministic", "--record-step-losses"]
    losses = {run: trainer_pair([*args, "--seed", str(seed), "--repeat", str(repeat)])[lang].doc["step_losses"]
              for run, seed, repeat in (("a", 3, 1), ("b", 3, 2), ("c", 4, 1))}
    assert losses["a"] == losses["b"], f"{lang}: the same seed gave different training"
    assert losses["a"] != losses["c"], f"{lang}: --seed does not reach the idiomatic pipeline"


# 3. Evaluation sees the matched pipeline's test images --------------------------------------------------------

def test_python_test_transform_is_the_matched_normalization(tiny_data):
    from bench import pipeline as P

    test_set = P.CifarBinary(tiny_data, train=False, transform=P.test_transform(), limit=TEST)
    images_u8, labels = D.load_split(tiny_data, train=False, limit=TEST)
    assert len(test_set) == TEST
    items = [test_set[i] for i in range(TEST)]
    got = torch.stack([image for image, _ in items])
    assert type(got) is torch.Tensor and got.dtype == torch.float32
    # transforms v2 scales by * (1/255), the matched pipeline by / 255: equal up to float rounding.
    torch.testing.assert_close(got, D.normalize(images_u8), rtol=0, atol=1e-6)
    assert [label for _, label in items] == labels.tolist()
    raw = P.CifarBinary(tiny_data, train=True, limit=TRAIN)  # no transform: the records, still uint8
    assert torch.equal(torch.stack([raw[i][0] for i in range(TRAIN)]), D.load_split(tiny_data, True, TRAIN)[0])


@pytest.mark.parametrize("lang", LANGUAGES)
def test_idiomatic_evaluation_equals_matched(tiny_run, run_cache, tiny_data, lang):
    """Trained weights evaluated by the idiomatic test loader score what the matched pipeline scored: the
    same images, normalized the same way, in the same order and batches. The canonical runs' weights, each
    evaluated by its own language's idiomatic loader (both languages' eval-only runs at once)."""
    matched = {x: tiny_run(x) for x in LANGUAGES}
    specs = [(x, [*tiny.eval_argv(tiny_data, matched[x].folder / tiny.FILES["trained"][1]), *IDIOMATIC,
                  "--workers", "0"], None) for x in LANGUAGES]
    idiomatic = dict(zip(LANGUAGES, run_cache.runs(specs)))[lang]
    want, got = matched[lang].doc["final"], idiomatic.doc["final"]
    print(f"{lang}: matched test loss {want['test_loss']!r} acc {want['test_accuracy']}, "
          f"idiomatic {got['test_loss']!r} acc {got['test_accuracy']}")
    assert idiomatic.doc["config"]["data_pipeline"] == "idiomatic"
    assert got["test_loss"] == pytest.approx(want["test_loss"], rel=1e-5)
    assert got["test_accuracy"] == want["test_accuracy"]


# Bad input ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def without_batch_3(tiny_data, tmp_path_factory):
    """The tiny set without data_batch_3.bin."""
    folder = tmp_path_factory.mktemp("data")
    for name in D.TRAIN_FILES + [D.TEST_FILE]:
        if name != "data_batch_3.bin":
            (folder / name).write_bytes((tiny_data / name).read_bytes())
    return folder


@pytest.mark.parametrize("lang", LANGUAGES)
def test_idiomatic_missing_data_file(trainer_processes, without_batch_3, one_line_error, lang):
    proc = trainer_processes([*tiny.base_args(without_batch_3), *tiny.sizes(), *NO_LATENCY, *IDIOMATIC,
                              "--workers", "2"])[lang].proc
    line = one_line_error(proc, lang, 1, "error: missing data file", "data_batch_3.bin")
    assert proc.stderr.strip() == line, f"more than the error on stderr (worker tracebacks?):\n{proc.stderr[-2000:]}"
    if lang == "python":  # and the dataset itself raises the same DataError
        from bench import pipeline as P

        with pytest.raises(D.DataError, match="missing data file.*data_batch_3.bin"):
            P.CifarBinary(without_batch_3, train=True)
