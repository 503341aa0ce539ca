"""Seed 002's phase-3 training step in PyTorch: the reference of `bench.bg_invariant`.

The three networks written again in torch (NCHW) from the authors' description, as
`tests/test_models_bg.py` rebuilds them, and loaded with the weights `bench.bg_invariant_workloads`
drew: the small CNN classifier (its Dense kernel's rows reordered once so that torch's NCHW flatten
needs no transpose), the U-Net and the tiled background generator (all tiles of a batch through the
patch network at once). One step does what the JAX step does, with torch.optim.Adam:

    mask = unet(x) >= 0.5                                     (no grad)
    b = G(z1) (no grad); logits = C([m x + b (1-m), x]); ce + clean ce -> Adam step of C
    b = G(z2); logits = C'([m x + b (1-m), x]) (C' updated, its params not differentiated);
    -ce + relu(mean(b) - 0.5) -> Adam step of G
"""

import os

import numpy as np
import torch
import torch.nn.functional as F

from bench.harness import Parts, Step

SLOPE = 0.2  # the generator's LeakyReLU


def _params(weights: dict[str, np.ndarray], player: str) -> dict[str, dict[str, np.ndarray]]:
    """{layer: {kernel, bias}} of one player from 'player/layer/kernel' entries."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for key, value in weights.items():
        name, layer, leaf = key.split("/")
        if name == player:
            out.setdefault(layer, {})[leaf] = value
    return out


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def _conv(params: dict, padding: int) -> torch.nn.Conv2d:
    """A Conv2d holding a Flax HWIO kernel (both correlate: no flip)."""
    kh, kw, cin, cout = params["kernel"].shape
    layer = torch.nn.Conv2d(cin, cout, (kh, kw), padding=padding)
    with torch.no_grad():
        layer.weight.copy_(_tensor(params["kernel"].transpose(3, 2, 0, 1)))
        layer.bias.copy_(_tensor(params["bias"]))
    return layer


def _transposed(params: dict) -> torch.nn.ConvTranspose2d:
    """A stride-2 4x4 ConvTranspose2d computing the generator's doubling: Flax correlates the
    zero-spread input, padded by 2, with its (H, W, in, out) kernel as it is; torch scatters, i.e.
    correlates with the spatially flipped (in, out, H, W) weight, padded by k - 1 - padding."""
    kh, kw, cin, cout = params["kernel"].shape
    layer = torch.nn.ConvTranspose2d(cin, cout, (kh, kw), stride=2, padding=1)
    with torch.no_grad():
        layer.weight.copy_(_tensor(params["kernel"][::-1, ::-1].transpose(2, 3, 0, 1)))
        layer.bias.copy_(_tensor(params["bias"]))
    return layer


def _linear(kernel: np.ndarray, bias: np.ndarray) -> torch.nn.Linear:
    layer = torch.nn.Linear(*kernel.shape)
    with torch.no_grad():
        layer.weight.copy_(_tensor(kernel.T))
        layer.bias.copy_(_tensor(bias))
    return layer


def _numbered(params: dict, prefix: str) -> list[str]:
    return sorted((k for k in params if k.startswith(prefix)), key=lambda k: int(k.rsplit("_", 1)[1]))


class SmallCNN(torch.nn.Module):
    """[3x3 'same' conv, ReLU, 2x2 max-pool] x n, flatten, Dense 128 + ReLU, logits."""

    def __init__(self, params: dict, size: int):
        super().__init__()
        convs = _numbered(params, "conv_")
        layers = []
        for name in convs:
            layers += [_conv(params[name], 1), torch.nn.ReLU(), torch.nn.MaxPool2d(2)]
        self.features = torch.nn.Sequential(*layers)
        side, channels = size // 2 ** len(convs), params[convs[-1]]["kernel"].shape[-1]
        dense = params["dense"]["kernel"]  # rows in Flax's (H, W, C) flatten order -> torch's (C, H, W)
        dense = dense.reshape(side, side, channels, -1).transpose(2, 0, 1, 3).reshape(dense.shape)
        self.dense = _linear(dense, params["dense"]["bias"])
        self.head = _linear(params["head"]["kernel"], params["head"]["bias"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.dense(self.features(x).flatten(1))))


class UNet(torch.nn.Module):
    """Down: conv + ReLU (kept as a skip), pool; bottom conv; up: upsample, conv + ReLU, cat skip; 1x1, sigmoid."""

    def __init__(self, params: dict):
        super().__init__()
        self.down = torch.nn.ModuleList([_conv(params[k], 1) for k in _numbered(params, "down_")])
        self.bottom = _conv(params["bottom"], 1)
        self.up = torch.nn.ModuleList([_conv(params[k], 1) for k in _numbered(params, "up_")])
        self.to_mask = _conv(params["to_mask"], 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for conv in self.down:
            x = torch.relu(conv(x))
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = torch.relu(self.bottom(x))
        for conv, skip in zip(self.up, reversed(skips)):
            x = torch.cat([torch.relu(conv(F.interpolate(x, scale_factor=2, mode="nearest"))), skip], dim=1)
        return torch.sigmoid(self.to_mask(x))


class Generator(torch.nn.Module):
    """Noise (B, tiles**2, seed*seed*C) -> (B, C, size, size): every tile of the batch through the patch
    network (3x3 conv, stride-2 transposed convs, 1x1 conv, sigmoid) at once, tile (r, c) from z[:, r*tiles + c]."""

    def __init__(self, params: dict, seed: int, tiles: int):
        super().__init__()
        self.seed, self.tiles = seed, tiles
        self.seed_conv = _conv(params["seed_conv"], 1)
        self.ups = torch.nn.ModuleList([_transposed(params[k]) for k in _numbered(params, "up_")])
        self.to_pixels = _conv(params["to_pixels"], 0)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        batch, tiles = z.shape[0], self.tiles
        # Each noise vector is a seed map in (H, W, C) order.
        x = z.reshape(batch * tiles * tiles, self.seed, self.seed, -1).permute(0, 3, 1, 2)
        x = F.leaky_relu(self.seed_conv(x), SLOPE)
        for up in self.ups:
            x = F.leaky_relu(up(x), SLOPE)
        x = torch.sigmoid(self.to_pixels(x))
        channels, patch = x.shape[1], x.shape[2]
        x = x.reshape(batch, tiles, tiles, channels, patch, patch).permute(0, 3, 1, 4, 2, 5)
        return x.reshape(batch, channels, tiles * patch, tiles * patch)


class Phase3:
    """The alternating phase-3 game on one resident batch; `step(z1, z2)` takes the noise of the
    classifier's and the generator's pass (None: drawn with torch.randn) and returns the metrics."""

    def __init__(self, arrays: dict[str, np.ndarray], tiles: int = 2, classifier_lr: float = 1e-3,
                 generator_lr: float = 1e-4, clean_weight: float = 1.0, brightness_weight: float = 1.0,
                 seed: int = 0):
        weights = {k: v for k, v in arrays.items() if k.count("/") == 2}
        images = arrays["image"]
        size = images.shape[1]
        self.x = _tensor(images.transpose(0, 3, 1, 2)) / 255  # uint8 NHWC -> float NCHW in [0, 1]
        self.y = torch.from_numpy(arrays["label"].astype(np.int64))
        self.classifier = SmallCNN(_params(weights, "classifier"), size)
        self.unet = UNet(_params(weights, "mask_net")).eval()
        generator = _params(weights, "generator")
        seed_map = size // tiles // 2 ** len(_numbered(generator, "up_"))  # a patch halved once per doubling
        self.noise_shape = (len(images), tiles * tiles, seed_map * seed_map * images.shape[-1])
        self.generator = Generator(generator, seed_map, tiles)
        for p in self.unet.parameters():
            p.requires_grad_(False)
        self.classifier_opt = torch.optim.Adam(self.classifier.parameters(), lr=classifier_lr)
        self.generator_opt = torch.optim.Adam(self.generator.parameters(), lr=generator_lr)
        self.clean_weight, self.brightness_weight = clean_weight, brightness_weight
        self.rng = torch.Generator().manual_seed(seed)

    def _classify(self, mask: torch.Tensor, backgrounds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(ce on the composites, ce on the clean images): one classifier pass over both."""
        pasted = mask * self.x + backgrounds * (1 - mask)
        logits = self.classifier(torch.cat([pasted, self.x]))
        n = len(self.y)
        return F.cross_entropy(logits[:n], self.y), F.cross_entropy(logits[n:], self.y)

    def step(self, z1: torch.Tensor | None = None, z2: torch.Tensor | None = None) -> dict[str, float]:
        z1 = torch.randn(self.noise_shape, generator=self.rng) if z1 is None else z1
        z2 = torch.randn(self.noise_shape, generator=self.rng) if z2 is None else z2
        with torch.no_grad():
            mask = (self.unet(self.x) >= 0.5).float()
            backgrounds = self.generator(z1)
        ce, clean = self._classify(mask, backgrounds)
        loss = ce + self.clean_weight * clean
        self.classifier_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.classifier_opt.step()
        metrics = {"classifier/loss": loss.item(), "classifier/cross_entropy": ce.item(),
                   "classifier/clean_cross_entropy": clean.item(),
                   "classifier/background_mean": backgrounds.mean().item()}

        backgrounds = self.generator(z2)
        self.classifier.requires_grad_(False)  # the generator's gradient only
        try:
            ce, clean = self._classify(mask, backgrounds)
        finally:
            self.classifier.requires_grad_(True)
        penalty = F.relu(backgrounds.mean() - 0.5)
        loss = -ce + self.brightness_weight * penalty
        self.generator_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.generator_opt.step()
        metrics.update({"generator/loss": loss.item(), "generator/cross_entropy": ce.item(),
                        "generator/clean_cross_entropy": clean.item(),
                        "generator/background_mean": backgrounds.mean().item(),
                        "generator/brightness_penalty": penalty.item()})
        return metrics


def _load(data_path: str) -> dict[str, np.ndarray]:
    torch.set_num_threads(len(os.sched_getaffinity(0)))  # As many threads as CPUs this worker may use.
    with np.load(data_path) as data:
        return {k: data[k] for k in data.files}


def train_step(data_path: str) -> Step:
    """A `Step`: one phase-3 step on `bench.bg_invariant_workloads.prepare`'s batch and weights."""
    phase3 = Phase3(_load(data_path))
    return phase3.step


def unet_pieces(data_path: str) -> Step:
    """The U-Net alone: forward under no_grad ('fwd'), and forward plus the gradient of sum(mask * g)
    in its params ('grad'), timed one by one, as `bg_invariant_workloads.unet_pieces`."""
    from bench.conv_layers import timed

    arrays = _load(data_path)
    unet = UNet(_params({k: v for k, v in arrays.items() if k.count("/") == 2}, "mask_net"))
    x = _tensor(arrays["image"].transpose(0, 3, 1, 2)) / 255
    cotangent = _tensor(np.random.default_rng(0).normal(size=arrays["image"].shape).transpose(0, 3, 1, 2))

    def forward():
        with torch.no_grad():
            return unet(x)

    def grad():
        unet.zero_grad(set_to_none=True)
        (unet(x) * cotangent).sum().backward()

    fns = {"fwd": forward, "grad": grad}

    def step() -> Parts:
        return timed(fns)

    step()  # Warm up oneDNN's primitive cache.
    return step
