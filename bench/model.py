"""CIFAR ResNet18/34 (3x3 stem, no max-pool), its initialization and its weights file. Twin of cpp/model.cpp."""

import io
import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.runtime import first_line
from bench.vocab import MODELS

WIDTHS = [64, 128, 256, 512]
NUM_CLASSES = 10


class WeightsError(Exception):
    """A weights file is unreadable or does not fit the model."""


class BasicBlock(nn.Module):
    def __init__(self, in_planes, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + (self.downsample(x) if self.downsample is not None else x)
        return F.relu(out)


class ResNet(nn.Module):
    def __init__(self, num_blocks, num_classes=NUM_CLASSES):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        in_planes = 64
        for i, (blocks, width) in enumerate(zip(num_blocks, WIDTHS)):
            stride = 1 if i == 0 else 2
            layer = []
            for b in range(blocks):
                layer.append(BasicBlock(in_planes, width, stride if b == 0 else 1))
                in_planes = width
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(out)


def make_model(name):
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r} (choose from {', '.join(MODELS)})")
    return ResNet(MODELS[name])


@torch.no_grad()
def init_weights(model, generator):
    """PyTorch's default init distribution, drawn by us so both languages draw the same numbers in order."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            bound = 1.0 / math.sqrt(m.weight[0].numel())
            m.weight.uniform_(-bound, bound, generator=generator)
            if m.bias is not None:
                m.bias.uniform_(-bound, bound, generator=generator)
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.fill_(1.0)
            m.bias.zero_()


def param_count(model):
    return sum(p.numel() for p in model.parameters())


def save_tensor_dict(tensors, path):
    """{name: tensor} as a torch pickle of CPU contiguous tensors (weights files, --dump-* files)."""
    torch.save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, path)


def save_weights(model, path):
    """The state dict, in its order: torch.load and C++ torch::pickle_load read it."""
    save_tensor_dict(model.state_dict(), path)


# torch.save writes a zip archive: it starts with a local file header and ends with the end-of-directory
# record (22 bytes, then a comment of at most 64 KiB, which torch never writes).
ZIP_START = b"PK\x03\x04"
ZIP_END = b"PK\x05\x06"
ZIP_END_SPAN = 22 + 65535


def archive_problem(data):
    """Why `data`, a weights file's bytes, cannot be a torch archive, or None. Checked before torch reads it,
    so that an empty, foreign or truncated file gets one clear cause in both languages instead of torch's
    generic notices. Twin of archive_problem in cpp/model.cpp."""
    if not data:
        return "the file is empty"
    if not data.startswith(ZIP_START):
        return "not a torch archive (torch.save writes a zip file)"
    if ZIP_END not in data[-ZIP_END_SPAN:]:
        return "truncated: the torch archive (a zip file) has no end record"
    return None


def read_weights(path):
    """The object a weights file holds, loaded safely (weights_only); WeightsError names the file and cause."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:  # the file itself: the same text as C++'s strerror
        raise WeightsError(f"cannot read weights file {path}: {err.strerror or err}") from None
    problem = archive_problem(data)
    if problem:
        raise WeightsError(f"cannot read weights file {path}: {problem}")
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a bad archive
        raise WeightsError(f"cannot read weights file {path}: torch cannot load it: "
                           f"{first_line(err).split('. ')[0]}") from None


def check_fits(own, loaded, path, model_name):
    """Every key, shape and dtype of the model's state dict, and nothing else; shapes print as lists in
    both languages."""
    if not isinstance(loaded, dict):
        raise WeightsError(f"weights file {path} does not hold a dict of tensors")
    unfit = f"weights file {path} does not fit {model_name}: "
    for key, value in own.items():
        if key not in loaded:
            raise WeightsError(f"{unfit}missing {key}")
        got = loaded[key]
        if not isinstance(got, torch.Tensor) or got.shape != value.shape or got.dtype != value.dtype:
            shape = list(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise WeightsError(f"{unfit}{key} is {shape}, expected {list(value.shape)}")
    extra = [k for k in loaded if k not in own]
    if extra:
        raise WeightsError(f"{unfit}unexpected {extra[0]}")


def load_weights(model, path, model_name):
    loaded = read_weights(path)
    check_fits(model.state_dict(), loaded, path, model_name)
    model.load_state_dict(loaded)
