"""CIFAR-10 in its official binary format: read, identify, normalize, crop+flip, per-epoch draws, batches, and
the default folder a run without --data reads. Twin of cpp/data.cpp (and cpp/data.h), in this order.

Preparing the files (download, synthesize, verify, the default folder) is bench/prepare.py: it is not timed, and
neither trainer runs it.
"""

import functools
import hashlib
import os
from pathlib import Path

import torch
import torch.nn.functional as F

# The five train files, then the test file: the order of the split and of the dataset hash.
TRAIN_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)]
TEST_FILE = "test_batch.bin"
CHANNELS = 3
SIDE = 32  # image height and width
RECORD_BYTES = 1 + CHANNELS * SIDE * SIDE  # one label byte, then the CHW pixels
NUM_CLASSES = 10
OFFICIAL_TRAIN_RECORDS = 50000
OFFICIAL_TEST_RECORDS = 10000
# Per-channel statistics of the 50000 official training images.
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
PAD = 4  # zero padding of the random crop
SYNTH_MARKER = "synthetic.json"  # in a synthetic set's folder (bench/prepare.py writes it)
# The default data folders in the cache: the official set, else the synthetic set that stands in offline.
OFFICIAL_DIR = "cifar-10-batches-bin"
SYNTHETIC_TRAIN, SYNTHETIC_TEST, SYNTHETIC_SEED = 5000, 1000, 0


class DataError(Exception):
    """A data file is missing or malformed; the message names the file."""


def read_cifar_batch(path):
    """One binary batch file -> (uint8 [N,3,32,32], int64 [N])."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing data file: {path}")
    raw = path.read_bytes()
    if len(raw) == 0 or len(raw) % RECORD_BYTES:
        raise DataError(f"{path}: size {len(raw)} is not a positive multiple of the {RECORD_BYTES}-byte record")
    records = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(-1, RECORD_BYTES)
    labels = records[:, 0].to(torch.int64)
    if labels.numel() and int(labels.max()) >= NUM_CLASSES:
        bad = int((labels >= NUM_CLASSES).nonzero()[0])
        raise DataError(f"{path}: record {bad} has label {int(labels[bad])} (> {NUM_CLASSES - 1})")
    images = records[:, 1:].reshape(-1, CHANNELS, SIDE, SIDE).clone()
    return images, labels


def load_split(data_dir, train, limit=0):
    """The train split (five files in order) or the test split, cut to the first `limit` records (0 = all)."""
    if not Path(data_dir).is_dir():
        raise DataError(f"data folder not found: {data_dir}")
    files = TRAIN_FILES if train else [TEST_FILE]
    parts = [read_cifar_batch(Path(data_dir) / name) for name in files]
    images = torch.cat([p[0] for p in parts])
    labels = torch.cat([p[1] for p in parts])
    if limit:
        images, labels = images[:limit], labels[:limit]
    return images, labels


def file_records(path):
    return Path(path).stat().st_size // RECORD_BYTES


def dataset_identity(data_dir, train_records, test_records):
    """Which data a result came from: kind, content hash of all six files, records used."""
    data_dir = Path(data_dir)
    digest = hashlib.sha256()
    for name in TRAIN_FILES + [TEST_FILE]:
        with open(data_dir / name, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    if (data_dir / SYNTH_MARKER).exists():
        kind = "synthetic"
    elif (sum(file_records(data_dir / n) for n in TRAIN_FILES) == OFFICIAL_TRAIN_RECORDS
          and file_records(data_dir / TEST_FILE) == OFFICIAL_TEST_RECORDS):
        kind = "official"
    else:
        kind = "subset"
    return {"kind": kind, "path": str(data_dir), "sha256": digest.hexdigest(),  # the folder as given
            "train_records": train_records, "test_records": test_records}


@functools.cache
def cifar_stats(device):
    """(mean, std) as float32 [1,3,1,1] on `device`, built once: a host-to-device copy per batch would make
    the host wait for the device inside every training step."""
    mean = torch.tensor(CIFAR_MEAN, dtype=torch.float32).view(1, CHANNELS, 1, 1).to(device)
    std = torch.tensor(CIFAR_STD, dtype=torch.float32).view(1, CHANNELS, 1, 1).to(device)
    return mean, std


def normalize(images_u8):
    """uint8 images -> float32 normalized with the CIFAR-10 statistics (the same four ops as C++)."""
    mean, std = cifar_stats(images_u8.device)
    return images_u8.to(torch.float32).div(255).sub(mean).div(std)


def random_crop_flip(images_u8, crops, flips):
    """Random 32x32 crop of the 4-pixel zero-padded images, then a horizontal flip where flips == 1.

    One gather for the whole batch on the images' device: out[b,c,i,j] = padded[b, c, dy+i, dx+j'] with
    j' = 31-j for flipped images. `crops` [B,2] holds (dy, dx) in 0..8, `flips` [B] holds 0 or 1.
    """
    b = images_u8.shape[0]
    device = images_u8.device
    padded = F.pad(images_u8, (PAD, PAD, PAD, PAD))
    ar = torch.arange(SIDE, device=device)
    rows = crops[:, 0:1] + ar
    cols = crops[:, 1:2] + torch.where(flips[:, None] == 1, (SIDE - 1) - ar, ar)
    batch_idx = torch.arange(b, device=device)[:, None, None, None]
    chan_idx = torch.arange(CHANNELS, device=device)[None, :, None, None]
    return padded[batch_idx, chan_idx, rows[:, None, :, None], cols[:, None, None, :]]


def draw_epoch_augmentation(n, generator):
    """The epoch's shuffle and augmentation parameters, drawn in this order from the CPU generator."""
    perm = torch.randperm(n, generator=generator)
    crops = torch.randint(0, 2 * PAD + 1, (n, 2), generator=generator)
    flips = torch.randint(0, 2, (n,), generator=generator)
    return perm, crops, flips


def matched_batches(images_u8, labels, generator, batch_size):
    """One epoch of the matched pipeline: the epoch's draws, then normalized, augmented batches on the device.

    The images stay uint8 on the training device; each batch is gathered, cropped, flipped and normalized
    there. The last partial batch is kept.
    """
    device = images_u8.device
    n = images_u8.shape[0]
    # non_blocking: a blocking host-to-device copy waits for the device (cudaStreamSynchronize) inside the timed
    # epoch. The draws are pageable memory, which CUDA stages before the call returns: freeing them is safe.
    perm, crops, flips = (t.to(device, non_blocking=True) for t in draw_epoch_augmentation(n, generator))
    for start in range(0, n, batch_size):
        pos = slice(start, min(start + batch_size, n))
        idx = perm[pos]
        yield normalize(random_crop_flip(images_u8[idx], crops[pos], flips[pos])), labels[idx]


def ordered_batches(images, labels, batch_size):
    """The resident, normalized images in order, in batches."""
    for start in range(0, images.shape[0], batch_size):
        yield images[start:start + batch_size], labels[start:start + batch_size]


def cache_root():
    """$BENCH_CACHE, else ~/.cache/torch-api-bench, as text joined without normalizing (as C++ joins it)."""
    if "BENCH_CACHE" in os.environ:
        return os.environ["BENCH_CACHE"]
    return os.path.join(os.path.expanduser("~"), ".cache", "torch-api-bench")


def cache_dir():
    """cache_root() as a Path (the Python side's callers join paths)."""
    return Path(cache_root())


def synthetic_dir(train, test, seed):
    """The folder name, in the cache, of the synthetic set of `train` and `test` records drawn from `seed`."""
    return f"synthetic-{train}-{test}-{seed}"


def find_default_data():
    """(folder, note or None): the folder a run without --data reads, as `python -m bench.prepare default` left
    it in the cache: the official set, else the synthetic set (the note says so loudly). Never downloads; nothing
    prepared is a DataError naming the command."""
    official = os.path.join(cache_root(), OFFICIAL_DIR)
    if all(os.path.isfile(os.path.join(official, name)) for name in TRAIN_FILES + [TEST_FILE]):
        return official, None
    synthetic = os.path.join(cache_root(), synthetic_dir(SYNTHETIC_TRAIN, SYNTHETIC_TEST, SYNTHETIC_SEED))
    if os.path.isfile(os.path.join(synthetic, SYNTH_MARKER)):
        return synthetic, (f"no official CIFAR-10 in {official}: using the SYNTHETIC set {synthetic}; "
                           "results say dataset kind 'synthetic'")
    raise DataError(f"no --data given and no prepared data in {official}: run `python -m bench.prepare default` "
                    "(downloads CIFAR-10, or writes the synthetic set offline) or pass --data DIR")


