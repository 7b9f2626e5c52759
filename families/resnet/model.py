"""ResNet-50 as torchvision defines it (v1.5: the stride sits on the 3x3 convolution), written out here.

Why a model in the repo: the cloud-edge seed cuts a ResNet-50, and `python -m split cut` has to be shown
on a graph the repo has no split code for. torchvision does not import beside the CPU torch on these
machines, so the network is defined here, in a family folder because it is model code, though it is no
ASR family: it is not in the export registry and no preprocess/runner/postprocess stage serves it; only
its ONNX export is used (by `python -m split resnet-table`). The module and parameter names are
torchvision's (`conv1`, `bn1`, `layer1.0.downsample.0`, `fc`, ...), so a torchvision `resnet50()`
state_dict loads into `resnet50()` unchanged. `width` scales every channel count (64 is torchvision's
network) so that tests can build a tiny one with the same structure.
"""
from __future__ import annotations

import torch
from torch import nn

LAYERS_50 = (3, 4, 6, 3)  # bottleneck blocks per stage


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride), 1x1 expand by 4, each with BatchNorm; identity or 1x1 projection."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """Stem (7x7/2 conv, BN, ReLU, 3x3/2 max pool), four bottleneck stages, global average pool, Linear."""

    def __init__(self, layers: tuple[int, ...] = LAYERS_50, num_classes: int = 1000, width: int = 64) -> None:
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._stage(width, layers[0], 1)
        self.layer2 = self._stage(width * 2, layers[1], 2)
        self.layer3 = self._stage(width * 4, layers[2], 2)
        self.layer4 = self._stage(width * 8, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width * 8 * Bottleneck.expansion, num_classes)
        # torchvision's initialisation: He (fan_out) for convolutions, BatchNorm at identity.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _stage(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * Bottleneck.expansion, 1, stride=stride,
                                                 bias=False),
                                       nn.BatchNorm2d(planes * Bottleneck.expansion))
        stage = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * Bottleneck.expansion
        stage += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet50(num_classes: int = 1000, width: int = 64, seed: int | None = 0) -> ResNet:
    """torchvision's resnet50() (at width 64), initialised from `seed` (None: torch's global generator)."""
    if seed is None:
        return ResNet(LAYERS_50, num_classes, width)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ResNet(LAYERS_50, num_classes, width)
