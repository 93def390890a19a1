"""CIFAR-10 in its official binary format: read, verify, synthesize, download, augment.

Twin of cpp/data.cpp (reading, identity, normalize, crop+flip, per-epoch draws, the default folder). The
download, synth, verify and default commands exist only here: they prepare files, they are not part of what
is timed, and neither trainer runs them.

    python -m bench.data download DIR
    python -m bench.data synth DIR --train N --test M --seed S
    python -m bench.data verify DIR
    python -m bench.data default          # prepares and prints the folder a run without --data uses
"""

import argparse
import functools
import hashlib
import json
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

import torch
import torch.nn.functional as F

TRAIN_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)]
TEST_FILE = "test_batch.bin"
IMAGE_BYTES = 3 * 32 * 32
RECORD_BYTES = 1 + IMAGE_BYTES  # one label byte, then the CHW pixels
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
# Per-channel statistics of the 50000 official training images.
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
PAD = 4  # zero padding of the random crop

OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
OFFICIAL_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
SYNTH_MARKER = "synthetic.json"
# The default data folders in the cache: the official set, else the synthetic set that stands in offline.
OFFICIAL_DIR = "cifar-10-batches-bin"
SYNTHETIC_DIR = "synthetic-5000-1000-0"
DOWNLOAD_TIMEOUT_S = 60  # per blocking read, not for the whole 163 MB


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
    if labels.numel() and int(labels.max()) > 9:
        bad = int((labels > 9).nonzero()[0])
        raise DataError(f"{path}: record {bad} has label {int(labels[bad])} (> 9)")
    images = records[:, 1:].reshape(-1, 3, 32, 32).clone()
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
    elif sum(file_records(data_dir / n) for n in TRAIN_FILES) == 50000 and file_records(data_dir / TEST_FILE) == 10000:
        kind = "official"
    else:
        kind = "subset"
    return {"kind": kind, "path": str(data_dir), "sha256": digest.hexdigest(),  # the folder as given
            "train_records": train_records, "test_records": test_records}


@functools.cache
def cifar_stats(device):
    """(mean, std) as float32 [1,3,1,1] on `device`, built once: a host-to-device copy per batch would make
    the host wait for the device inside every training step."""
    mean = torch.tensor(CIFAR_MEAN, dtype=torch.float32).view(1, 3, 1, 1).to(device)
    std = torch.tensor(CIFAR_STD, dtype=torch.float32).view(1, 3, 1, 1).to(device)
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
    ar = torch.arange(32, device=device)
    rows = crops[:, 0:1] + ar
    cols = crops[:, 1:2] + torch.where(flips[:, None] == 1, 31 - ar, ar)
    batch_idx = torch.arange(b, device=device)[:, None, None, None]
    chan_idx = torch.arange(3, device=device)[None, :, None, None]
    return padded[batch_idx, chan_idx, rows[:, None, :, None], cols[:, None, None, :]]


def draw_epoch_augmentation(n, generator):
    """The epoch's shuffle and augmentation parameters, drawn in this order from the CPU generator."""
    perm = torch.randperm(n, generator=generator)
    crops = torch.randint(0, 2 * PAD + 1, (n, 2), generator=generator)
    flips = torch.randint(0, 2, (n,), generator=generator)
    return perm, crops, flips


def global_batches(n, batch_size, world_size=1):
    """(start, stop) positions of each global batch of an epoch of n records: world_size * batch_size rows each,
    the last partial one kept when it has a row for every rank."""
    rows = world_size * batch_size
    return [(start, min(start + rows, n)) for start in range(0, n, rows) if min(start + rows, n) - start >= world_size]


def rank_rows(start, stop, rank, world_size):
    """Rank `rank`'s positions in the global batch [start, stop): the batch cut into world_size equal consecutive
    slices (a partial batch's remainder rows are left out, so every rank's batch has the same size)."""
    per_rank = (stop - start) // world_size
    return start + rank * per_rank, start + (rank + 1) * per_rank


def matched_batches(images_u8, labels, generator, batch_size, rank=0, world_size=1):
    """One epoch of the matched pipeline: the epoch's draws, then normalized, augmented batches on the device.

    The images stay uint8 on the training device; each batch is gathered, cropped, flipped and normalized
    there. The last partial batch is kept. Data-parallel, every rank makes the same draws and takes its rows of
    each global batch (global_batches, rank_rows).
    """
    device = images_u8.device
    n = images_u8.shape[0]
    perm, crops, flips = (t.to(device) for t in draw_epoch_augmentation(n, generator))
    for start, stop in global_batches(n, batch_size, world_size):
        pos = slice(*rank_rows(start, stop, rank, world_size))
        idx = perm[pos]
        yield normalize(random_crop_flip(images_u8[idx], crops[pos], flips[pos])), labels[idx]


def ordered_batches(images, labels, batch_size):
    """The resident, normalized images in order, in batches."""
    for start in range(0, images.shape[0], batch_size):
        yield images[start:start + batch_size], labels[start:start + batch_size]


# ---------------------------------------------------------------------------------------------------------
# Preparing data on disk (not timed, Python only)
# ---------------------------------------------------------------------------------------------------------

def write_batch(path, images_u8, labels):
    records = torch.cat([labels.to(torch.uint8)[:, None], images_u8.reshape(-1, IMAGE_BYTES)], dim=1)
    Path(path).write_bytes(records.contiguous().numpy().tobytes())


def write_meta(data_dir):
    (Path(data_dir) / "batches.meta.txt").write_text("\n".join(CLASSES) + "\n")


def synth_images(labels, generator):
    """Learnable, not trivial: each class is a colour plus an oriented stripe pattern, under heavy noise.

    A ResNet18 picks up the class colour within a few dozen SGD steps; the stripes and the noise keep
    the task from being solved perfectly, and label noise (in synth) caps the reachable accuracy.
    """
    n = labels.numel()
    class_rgb = torch.rand(10, 3, generator=torch.Generator().manual_seed(1234)) * 0.6 + 0.2
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    angle = labels.to(torch.float32)[:, None, None] * (torch.pi / 10)
    freq = 0.5 + 0.05 * labels.to(torch.float32)[:, None, None]
    phase = torch.rand(n, 1, 1, generator=generator) * 2 * torch.pi
    stripes = torch.sin(freq * (xx * torch.cos(angle) + yy * torch.sin(angle)) + phase)  # [n,32,32]
    brightness = 0.75 + 0.5 * torch.rand(n, 1, 1, 1, generator=generator)
    img = class_rgb[labels][:, :, None, None] * brightness + 0.15 * stripes[:, None]
    img = img + 0.25 * torch.randn(n, 3, 32, 32, generator=generator)
    return (img.clamp(0, 1) * 255).round().to(torch.uint8)


def synth(data_dir, train=5000, test=1000, seed=0, label_noise=0.1):
    """Write a synthetic CIFAR-format dataset: deterministic per (train, test, seed)."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)

    def make(count):
        labels = torch.randint(0, 10, (count,), generator=g)
        images = synth_images(labels, g)
        noisy = torch.rand(count, generator=g) < label_noise
        labels = torch.where(noisy, torch.randint(0, 10, (count,), generator=g), labels)
        return images, labels

    images, labels = make(train)
    chunks = torch.arange(train).tensor_split(len(TRAIN_FILES))
    for name, idx in zip(TRAIN_FILES, chunks):
        write_batch(data_dir / name, images[idx], labels[idx])
    write_batch(data_dir / TEST_FILE, *make(test))
    write_meta(data_dir)
    (data_dir / SYNTH_MARKER).write_text(json.dumps(
        {"train": train, "test": test, "seed": seed, "label_noise": label_noise}) + "\n")
    return data_dir


def md5_of(path):
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(data_dir, url=OFFICIAL_URL, md5=OFFICIAL_MD5):
    """Fetch and extract the official binary tarball into data_dir; a no-op when it is already there."""
    data_dir = Path(data_dir)
    if all((data_dir / n).is_file() for n in TRAIN_FILES + [TEST_FILE]):
        return data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=data_dir) as tmp:
        archive = Path(tmp) / "cifar-10-binary.tar.gz"
        # A timeout, so that a machine whose firewall drops packets fails (and falls back) instead of hanging.
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(archive, "wb") as f:
            shutil.copyfileobj(response, f, 1 << 20)
        got = md5_of(archive)
        if got != md5:
            raise DataError(f"{url}: md5 {got} does not match the expected {md5}; nothing extracted")
        # The "data" filter refuses links and absolute paths (Python >= 3.10.12 / 3.11.4 have it).
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                name = Path(member.name).name
                if member.isfile() and (name.endswith(".bin") or name == "batches.meta.txt"):
                    member.name = name  # flatten cifar-10-batches-bin/ into data_dir
                    tar.extract(member, tmp, **safe)
        for name in TRAIN_FILES + [TEST_FILE, "batches.meta.txt"]:
            os.replace(Path(tmp) / name, data_dir / name)
    return data_dir


def cache_root():
    """$BENCH_CACHE, else ~/.cache/torch-api-bench, as text joined without normalizing (as C++ joins it)."""
    if "BENCH_CACHE" in os.environ:
        return os.environ["BENCH_CACHE"]
    return os.path.join(os.path.expanduser("~"), ".cache", "torch-api-bench")


def cache_dir():
    return Path(cache_root())


def find_default_data():
    """(folder, note or None): the folder a run without --data reads, as `python -m bench.data default` left it
    in the cache: the official set, else the synthetic set (the note says so loudly). Never downloads; nothing
    prepared is a DataError naming the command. Twin of find_default_data in cpp/data.cpp."""
    official = os.path.join(cache_root(), OFFICIAL_DIR)
    if all(os.path.isfile(os.path.join(official, name)) for name in TRAIN_FILES + [TEST_FILE]):
        return official, None
    synthetic = os.path.join(cache_root(), SYNTHETIC_DIR)
    if os.path.isfile(os.path.join(synthetic, SYNTH_MARKER)):
        return synthetic, (f"no official CIFAR-10 in {official}: using the SYNTHETIC set {synthetic}; "
                           "results say dataset kind 'synthetic'")
    raise DataError(f"no --data given and no prepared data in {official}: run `python -m bench.data default` "
                    "(downloads CIFAR-10, or writes the synthetic set offline) or pass --data DIR")


def default_data():
    """(folder, why the official set is not used or None): prepares the default folder: the official dataset
    in the cache (downloaded on first use); offline, the synthetic set."""
    try:  # BENCH_CIFAR10_URL: a mirror, or (tests) an address that fails, to exercise the fallback
        return download(cache_dir() / OFFICIAL_DIR, os.environ.get("BENCH_CIFAR10_URL", OFFICIAL_URL)), None
    except (OSError, DataError) as err:  # URLError is an OSError
        fallback = cache_dir() / SYNTHETIC_DIR
        if not (fallback / SYNTH_MARKER).exists():
            synth(fallback)
        return fallback, f"could not get the official CIFAR-10 ({err})"


def default_data_dir():
    """default_data()'s folder; a fallback to the synthetic set is said loudly."""
    folder, why_not_official = default_data()
    if why_not_official:
        print(f"WARNING: {why_not_official}; using the SYNTHETIC set in {folder}. "
              "Results from it say dataset kind 'synthetic'.", file=sys.stderr)
    return folder


def verify(data_dir):
    """Per-file record counts and class histogram; raises DataError naming the first bad file."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"data folder not found: {data_dir}")
    report = {}
    for name in TRAIN_FILES + [TEST_FILE]:
        _, labels = read_cifar_batch(data_dir / name)
        report[name] = {"records": labels.numel(), "classes": torch.bincount(labels, minlength=10).tolist()}
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(prog="bench.data", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("download", help="fetch the official binary dataset (md5-checked)")
    p.add_argument("dir")
    p.add_argument("--url", default=OFFICIAL_URL, help="a mirror of cifar-10-binary.tar.gz (same md5)")
    p = sub.add_parser("synth", help="write a synthetic dataset")
    p.add_argument("dir")
    p.add_argument("--train", type=int, default=5000)
    p.add_argument("--test", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    sub.add_parser("verify", help="check counts, labels and sizes").add_argument("dir")
    sub.add_parser("default", help="print (and prepare) the folder used when --data is not given")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "download":
            print(download(args.dir, url=args.url))
        elif args.cmd == "synth":
            if args.train < len(TRAIN_FILES) or args.test < 1:
                parser.error("--train must be >= 5 and --test >= 1")
            print(synth(args.dir, args.train, args.test, args.seed))
        elif args.cmd == "verify":
            for name, info in verify(args.dir).items():
                print(f"{name}: {info['records']} records, classes {info['classes']}")
        else:
            print(default_data_dir())
    except (DataError, OSError) as err:
        print(f"bench.data: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
