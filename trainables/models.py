"""The CNNs a sweep can train: the seed article's small Keras CNN, He et al.'s CIFAR ResNets
(ResNet-8 and ResNet-20) and a CIFAR ResNet-18.

Weights are initialised with PyTorch's defaults from torch's global RNG (the trainer seeds it).
"""

from __future__ import annotations

import torch
from torch import nn

from trainables.config import MODEL_NAMES


class SeedCNN(nn.Module):
    """The seed article's Keras model: three conv (3x3, same padding, ReLU) + 2x2 max-pool stages
    with 32, 64 and 128 filters, then Dense 256 (ReLU), 128 (ReLU) and 10 logits."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for out_ch in (32, 64, 128):
            layers += [
                nn.Conv2d(in_ch, out_ch, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(128 * 4 * 4, 256),
            nn.ReLU(inplace=True),
            nn.Linear(256, 128),
            nn.ReLU(inplace=True),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 conv-BN projection) shortcut."""

    expansion = 1

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class _ResNet(nn.Module):
    """A 3x3 stride-1 conv-BN stem (no max-pool), one stage of ``blocks`` BasicBlocks per width
    (stride 2 from the second stage), global average pooling and a linear classifier."""

    def __init__(self, widths: tuple[int, ...], blocks: int, num_classes: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        stages: list[nn.Module] = []
        in_ch = widths[0]
        for i, out_ch in enumerate(widths):
            first = BasicBlock(in_ch, out_ch, 1 if i == 0 else 2)
            stages.append(
                nn.Sequential(first, *(BasicBlock(out_ch, out_ch) for _ in range(blocks - 1)))
            )
            in_ch = out_ch
        self.layers = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pool(self.layers(self.stem(x)))
        return self.fc(torch.flatten(out, 1))


class ResNet18(_ResNet):
    """ResNet-18 for 32x32 inputs: a 64-filter stem and four stages of two BasicBlocks (64, 128,
    256, 512 filters)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__((64, 128, 256, 512), 2, num_classes)


class CifarResNet(_ResNet):
    """He et al. 2016's ResNet for CIFAR (section 4.2), ``depth`` = 6n + 2: a 16-filter stem and
    three stages of n BasicBlocks (16, 32 and 64 filters). The shortcut that changes shape is a
    1x1 conv-BN projection (the paper's option B; option A pads with zeros): 78,042 parameters
    at depth 8, 272,474 at depth 20. A BatchNorm residual net at about seed_cnn's cost on a CPU
    (ResNet-8), or 3x it (ResNet-20)."""

    def __init__(self, depth: int, num_classes: int = 10) -> None:
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(
                f"CifarResNet depth {depth} is not 6n + 2 with n >= 1 (8, 14, 20, ...)"
            )
        super().__init__((16, 32, 64), (depth - 2) // 6, num_classes)


def build_model(name: str, *, num_classes: int = 10) -> nn.Module:
    """A fresh, randomly initialised model by name (one of :data:`MODEL_NAMES`)."""
    if name == "seed_cnn":
        return SeedCNN(num_classes)
    if name == "resnet8":
        return CifarResNet(8, num_classes)
    if name == "resnet20":
        return CifarResNet(20, num_classes)
    if name == "resnet18":
        return ResNet18(num_classes)
    raise ValueError(f"unknown model {name!r}: choose one of {', '.join(MODEL_NAMES)}")
