"""PyTorch references of the benchmarked models, written here because torchvision is not installed.

Same architectures as `ctxfuse_jax.models` (torchvision's ResNet18 and VGG16, channel counts
scaled by `width`, inputs normalised inside the model) and the seed-000 fusion network, so a
JAX/PyTorch throughput ratio compares the frameworks and nothing else.
"""

import torch
from torch import nn

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
VGG16_LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def _channels(base: int, width: float) -> int:
    return max(1, int(base * width))


class Normalize(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.residual = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return torch.relu(self.residual(x) + self.shortcut(x))


def resnet18(num_classes: int | None, width: float = 1.0, stop_after: int = 4) -> nn.Sequential:
    """ResNet18; `stop_after=3` cuts it after layer3 (a fusion stream), `num_classes=None` drops the head."""
    c = [_channels(64 * 2**i, width) for i in range(4)]
    layers = [Normalize(), nn.Conv2d(3, c[0], 7, 2, 3, bias=False), nn.BatchNorm2d(c[0]), nn.ReLU(inplace=True),
              nn.MaxPool2d(3, 2, 1)]
    cin = c[0]
    for i in range(stop_after):
        layers += [BasicBlock(cin, c[i], 1 if i == 0 else 2), BasicBlock(c[i], c[i], 1)]
        cin = c[i]
    if num_classes is not None:
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)]
    return nn.Sequential(*layers)


def torchvision_names(net: nn.Sequential) -> dict[str, str]:
    """{key of `net.state_dict()`: torchvision's name for it} for a `resnet18` built here, so its
    weights go through the project's converter (`ctxfuse_jax.weights.layout`) as torchvision's
    would. The input normalisation's constants are not weights and have no entry."""
    names, blocks = {}, 0
    stems = iter(("conv1", "bn1"))
    for index, module in enumerate(net):
        if isinstance(module, (nn.Conv2d, nn.BatchNorm2d)):
            prefix = {"": next(stems)}
        elif isinstance(module, BasicBlock):
            block = f"layer{blocks // 2 + 1}.{blocks % 2}"
            blocks += 1
            prefix = {"residual.0": f"{block}.conv1", "residual.1": f"{block}.bn1", "residual.3": f"{block}.conv2",
                      "residual.4": f"{block}.bn2", "shortcut.0": f"{block}.downsample.0",
                      "shortcut.1": f"{block}.downsample.1"}
        elif isinstance(module, nn.Linear):
            prefix = {"": "fc"}
        else:
            continue
        for key in module.state_dict():
            path, leaf = key.rsplit(".", 1) if "." in key else ("", key)
            names[f"{index}.{key}"] = f"{prefix[path]}.{leaf}"
    return names


def vgg16(num_classes: int, width: float = 1.0) -> nn.Sequential:
    layers, cin = [Normalize()], 3
    for layer in VGG16_LAYERS:
        if layer == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            cout = _channels(layer, width)
            layers += [nn.Conv2d(cin, cout, 3, 1, 1), nn.ReLU(inplace=True)]
            cin = cout
    hidden = _channels(4096, width)
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(7), nn.Flatten(),
                         nn.Linear(cin * 49, hidden), nn.ReLU(inplace=True), nn.Dropout(),
                         nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(),
                         nn.Linear(hidden, num_classes))


def fusion_head(in_channels: int, features: int, num_classes: int) -> nn.Sequential:
    """Two 3x3 conv + BN + ReLU over concatenated stream features, average pool, linear."""
    return nn.Sequential(
        nn.Conv2d(in_channels, features, 3, 1, 1, bias=False), nn.BatchNorm2d(features), nn.ReLU(inplace=True),
        nn.Conv2d(features, features, 3, 1, 1, bias=False), nn.BatchNorm2d(features), nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(features, num_classes))


class Fusion(nn.Module):
    """Seed 000's Joint model: two frozen ResNet18 streams cut after layer3 and a trainable head."""

    def __init__(self, num_classes: int, width: float = 1.0, features: int = 256):
        super().__init__()
        self.streams = nn.ModuleList([resnet18(None, width, stop_after=3) for _ in range(2)])
        self.streams.requires_grad_(False)
        self.head = fusion_head(2 * _channels(256, width), features, num_classes)

    def train(self, mode: bool = True):
        super().train(mode)
        self.streams.eval()  # Frozen streams use their running BN statistics.
        return self

    def forward(self, x):
        with torch.no_grad():
            features = torch.cat([stream(x) for stream in self.streams], dim=1)
        return self.head(features)
