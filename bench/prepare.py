"""Preparing CIFAR-10 on disk: download the official set, write a synthetic one, verify a folder, prepare the
default folder. Python only: none of it is timed, and neither trainer runs it; both read what it leaves
(bench/data.py's find_default_data and its C++ twin).

    python -m bench.prepare download DIR
    python -m bench.prepare synth DIR --train N --test M --seed S
    python -m bench.prepare verify DIR [--sha256sums]
    python -m bench.prepare default          # prepares and prints the folder a run without --data uses
"""

import argparse
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

from bench.data import (
    CHANNELS,
    NUM_CLASSES,
    OFFICIAL_DIR,
    RECORD_BYTES,
    SIDE,
    SYNTH_MARKER,
    SYNTHETIC_SEED,
    SYNTHETIC_TEST,
    SYNTHETIC_TRAIN,
    TEST_FILE,
    TRAIN_FILES,
    DataError,
    cache_dir,
    read_cifar_batch,
    synthetic_dir,
)

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
OFFICIAL_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
DOWNLOAD_TIMEOUT_S = 60  # per blocking read, not for the whole 163 MB
PROG = "bench.prepare"
SHA256SUMS = "SHA256SUMS"  # a folder's checksums, as `sha256sum FILES > SHA256SUMS` writes them


def write_batch(path, images_u8, labels):
    records = torch.cat([labels.to(torch.uint8)[:, None], images_u8.reshape(-1, RECORD_BYTES - 1)], dim=1)
    Path(path).write_bytes(records.contiguous().numpy().tobytes())


def write_meta(data_dir):
    (Path(data_dir) / "batches.meta.txt").write_text("\n".join(CLASSES) + "\n")


def synth_images(labels, generator):
    """Learnable, not trivial: each class is a colour plus an oriented stripe pattern, under heavy noise.

    A ResNet18 picks up the class colour within a few dozen SGD steps; the stripes and the noise keep
    the task from being solved perfectly, and label noise (in synth) caps the reachable accuracy.
    """
    n = labels.numel()
    class_rgb = torch.rand(NUM_CLASSES, CHANNELS, generator=torch.Generator().manual_seed(1234)) * 0.6 + 0.2
    yy, xx = torch.meshgrid(torch.arange(float(SIDE)), torch.arange(float(SIDE)), indexing="ij")
    angle = labels.to(torch.float32)[:, None, None] * (torch.pi / NUM_CLASSES)
    freq = 0.5 + 0.05 * labels.to(torch.float32)[:, None, None]
    phase = torch.rand(n, 1, 1, generator=generator) * 2 * torch.pi
    stripes = torch.sin(freq * (xx * torch.cos(angle) + yy * torch.sin(angle)) + phase)  # [n,32,32]
    brightness = 0.75 + 0.5 * torch.rand(n, 1, 1, 1, generator=generator)
    img = class_rgb[labels][:, :, None, None] * brightness + 0.15 * stripes[:, None]
    img = img + 0.25 * torch.randn(n, CHANNELS, SIDE, SIDE, generator=generator)
    return (img.clamp(0, 1) * 255).round().to(torch.uint8)


def synth(data_dir, train=SYNTHETIC_TRAIN, test=SYNTHETIC_TEST, seed=SYNTHETIC_SEED, label_noise=0.1):
    """Write a synthetic CIFAR-format dataset: deterministic per (train, test, seed), so a folder whose marker
    names the same set is kept as it is."""
    data_dir = Path(data_dir)
    params = {"train": train, "test": test, "seed": seed, "label_noise": label_noise}
    try:
        if json.loads((data_dir / SYNTH_MARKER).read_text()) == params:
            return data_dir
    except (OSError, ValueError):
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)

    def make(count):
        labels = torch.randint(0, NUM_CLASSES, (count,), generator=g)
        images = synth_images(labels, g)
        noisy = torch.rand(count, generator=g) < label_noise
        labels = torch.where(noisy, torch.randint(0, NUM_CLASSES, (count,), generator=g), labels)
        return images, labels

    images, labels = make(train)
    chunks = torch.arange(train).tensor_split(len(TRAIN_FILES))
    for name, idx in zip(TRAIN_FILES, chunks):
        write_batch(data_dir / name, images[idx], labels[idx])
    write_batch(data_dir / TEST_FILE, *make(test))
    write_meta(data_dir)
    (data_dir / SYNTH_MARKER).write_text(json.dumps(params) + "\n")  # last: a cut-off write leaves no marker
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


def default_data():
    """(folder, why the official set is not used or None): prepares the default folder: the official dataset
    in the cache (downloaded on first use); offline, the synthetic set."""
    try:  # BENCH_CIFAR10_URL: a mirror, or (tests) an address that fails, to exercise the fallback
        return download(cache_dir() / OFFICIAL_DIR, os.environ.get("BENCH_CIFAR10_URL", OFFICIAL_URL)), None
    except (OSError, DataError) as err:  # URLError is an OSError
        fallback = cache_dir() / synthetic_dir(SYNTHETIC_TRAIN, SYNTHETIC_TEST, SYNTHETIC_SEED)
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
        report[name] = {"records": labels.numel(), "classes": torch.bincount(labels, minlength=NUM_CLASSES).tolist()}
    return report


def check_sha256sums(data_dir):
    """The files SHA256SUMS in `data_dir` lists (`sha256sum` format), each checked: [names]; raises DataError
    naming the first file that is missing or does not match, or a missing SHA256SUMS."""
    sums = Path(data_dir) / SHA256SUMS
    try:
        lines = sums.read_text().splitlines()
    except OSError as err:
        raise DataError(f"cannot read {sums}: {err.strerror or err}") from None
    names = []
    for line in filter(str.strip, lines):
        digest, _, name = line.strip().partition(" ")
        name = name.strip().lstrip("*")  # sha256sum marks binary mode with '*'
        try:
            ok = hashlib.sha256((Path(data_dir) / name).read_bytes()).hexdigest() == digest.lower()
        except OSError as err:
            raise DataError(f"{Path(data_dir) / name} (listed in {SHA256SUMS}): {err.strerror or err}") from None
        if not ok:
            raise DataError(f"{Path(data_dir) / name} does not match its SHA-256 in {SHA256SUMS}")
        names.append(name)
    return names


def main(argv=None):
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("download", help="fetch the official binary dataset (md5-checked)")
    p.add_argument("dir")
    p.add_argument("--url", default=OFFICIAL_URL, help="a mirror of cifar-10-binary.tar.gz (same md5)")
    p = sub.add_parser("synth", help="write a synthetic dataset")
    p.add_argument("dir")
    p.add_argument("--train", type=int, default=SYNTHETIC_TRAIN)
    p.add_argument("--test", type=int, default=SYNTHETIC_TEST)
    p.add_argument("--seed", type=int, default=SYNTHETIC_SEED)
    p = sub.add_parser("verify", help="check counts, labels and sizes")
    p.add_argument("dir")
    p.add_argument("--sha256sums", action="store_true", help=f"also check every file {SHA256SUMS} in DIR lists")
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
            for name in check_sha256sums(args.dir) if args.sha256sums else ():
                print(f"{name}: SHA-256 OK")
        else:
            print(default_data_dir())
    except (DataError, OSError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
