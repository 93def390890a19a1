"""CIFAR ResNet18/34 (3x3 stem, no max-pool) and its initialization. Twin of cpp/model.cpp. Weights files are
bench/weights.py."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.data import CHANNELS, NUM_CLASSES
from bench.vocab import MODELS

STEM = 64  # channels after conv1
WIDTHS = (64, 128, 256, 512)  # of the four stages
FIRST_STRIDES = (1, 2, 2, 2)  # of each stage's first block


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
    def __init__(self, blocks_per_stage, num_classes=NUM_CLASSES):
        super().__init__()
        self.conv1 = nn.Conv2d(CHANNELS, STEM, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(STEM)
        in_planes = STEM
        for stage, (blocks, width, stride) in enumerate(zip(blocks_per_stage, WIDTHS, FIRST_STRIDES)):
            layer = []
            for b in range(blocks):
                layer.append(BasicBlock(in_planes, width, stride if b == 0 else 1))
                in_planes = width
            setattr(self, f"layer{stage + 1}", nn.Sequential(*layer))
        self.fc = nn.Linear(WIDTHS[-1], num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(out)


def make_model(name):
    if name not in MODELS:
        raise ValueError(f"unknown model '{name}' (choose from {', '.join(MODELS)})")
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
