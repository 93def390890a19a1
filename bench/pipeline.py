"""The idiomatic data pipeline (--data-pipeline idiomatic): how Python users typically feed CIFAR training.

A torchvision dataset over the same binary files, per-image transforms v2, and a DataLoader with worker
processes and pinned memory. Twin of cpp/pipeline.cpp (LibTorch's own dataset + DataLoader). It does not
draw the same random numbers as the matched pipeline (bench/data.py): neither pipeline is bit-reproducible
across languages here, by design (docs/twins.md, "Modes").
"""

from dataclasses import dataclass

import torch
from torchvision import tv_tensors
from torchvision.datasets import VisionDataset
from torchvision.transforms import v2

from bench import data as D
from bench import process


@dataclass(frozen=True)
class PipelineOptions:
    """What the idiomatic pipeline needs of the command line (C++: struct PipelineOptions)."""

    batch_size: int
    workers: int
    seed: int
    train_limit: int
    test_limit: int


class CifarBinary(VisionDataset):
    """The train or test split of the CIFAR-10 binary files, first `limit` records (0 = all).

    The images stay uint8 CHW in memory; `transform` does the per-image work when an item is read.
    Missing or malformed files raise bench.data.DataError here, before any training. `report` (may be None) is
    called at each item: a process.ThreadReporter, which records the first caller's thread (a worker process's).
    """

    def __init__(self, root, train=True, transform=None, limit=0, report=None):
        super().__init__(root, transform=transform)
        self.train = train
        self.images, self.labels = D.load_split(root, train, limit)
        self.report = report

    def __len__(self):
        return self.images.shape[0]

    def __getitem__(self, index):
        if self.report is not None:
            self.report()  # a thread that runs ATen ops for training: recorded once per process
        image = tv_tensors.Image(self.images[index])  # tells transforms v2 this tensor is an image
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])

    def extra_repr(self):
        return f"Split: {'train' if self.train else 'test'}"


def train_transform():
    # padding=4 pads with zeros (black, before normalization), as the matched pipeline does.
    return v2.Compose([v2.RandomCrop(D.SIDE, padding=D.PAD), v2.RandomHorizontalFlip(),
                       v2.ToDtype(torch.float32, scale=True), v2.Normalize(D.CIFAR_MEAN, D.CIFAR_STD)])


def test_transform():
    return v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(D.CIFAR_MEAN, D.CIFAR_STD)])


def idiomatic_loaders(data_dir, device, options):
    """(train_loader, test_loader): shuffled and augmented per image / in order, normalized.

    Workers are processes (C++'s are threads). The shuffle draws from the loader's generator and each worker
    seeds itself from it; with --workers 0 the transforms draw from torch's global generator in this
    process, so that is seeded too (as C++ seeds its default generator). The worker processes are started
    here, before any timed interval, as LibTorch's DataLoader starts its threads in its constructor.
    """
    torch.manual_seed(options.seed)
    train_set = CifarBinary(data_dir, train=True, transform=train_transform(), limit=options.train_limit,
                            report=process.thread_reporter("loader"))
    test_set = CifarBinary(data_dir, train=False, transform=test_transform(), limit=options.test_limit,
                           report=process.thread_reporter("loader"))
    common = {"batch_size": options.batch_size, "num_workers": options.workers, "pin_memory": device.type == "cuda",
              "persistent_workers": options.workers > 0, "drop_last": False}
    train_loader = torch.utils.data.DataLoader(train_set, shuffle=True,
                                               generator=torch.Generator().manual_seed(options.seed), **common)
    test_loader = torch.utils.data.DataLoader(test_set, shuffle=False, **common)  # nothing random to seed
    if options.workers > 0:  # persistent workers: the first iter() forks them, later ones reuse them
        iter(train_loader), iter(test_loader)
    return train_loader, test_loader


def device_batches(loader, device):
    """One pass of `loader`, each batch copied to the device (asynchronously from pinned memory)."""
    for x, y in loader:
        yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)
