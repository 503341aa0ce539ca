"""PyTorch workloads matching `bench.jax_workloads` step for step (same optimizer, batch, sizes)."""

import os

import torch
import torch.nn.functional as F

from bench import torch_models
from bench.conv_layers import RESNET18_64PX, timed
from bench.harness import Step

NUM_CLASSES = 10


def _batch(batch: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    torch.set_num_threads(len(os.sched_getaffinity(0)))  # As many threads as CPUs this worker may use.
    generator = torch.Generator().manual_seed(0)
    return (torch.rand(batch, 3, size, size, generator=generator),
            torch.randint(0, NUM_CLASSES, (batch,), generator=generator))


def _train_step(model: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> Step:
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(inputs), labels)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def classifier_train_step(model: str, batch: int, size: int, width: float = 1.0) -> Step:
    net = {"resnet18": torch_models.resnet18, "vgg16": torch_models.vgg16}[model](NUM_CLASSES, width)
    return _train_step(net, *_batch(batch, size))


def fusion_train_step(batch: int, size: int, width: float = 1.0, features: int = 256) -> Step:
    return _train_step(torch_models.Fusion(NUM_CLASSES, width, features), *_batch(batch, size))


def stream_inference_step(batch: int, size: int, width: float = 1.0) -> Step:
    stream = torch_models.resnet18(None, width, stop_after=3).eval()
    images, _ = _batch(batch, size)

    def step():
        with torch.no_grad():
            return stream(images)

    return step


def cached_head_train_step(batch: int, size: int, width: float = 1.0, features: int = 256) -> Step:
    stream = torch_models.resnet18(None, width, stop_after=3).eval()
    images, labels = _batch(batch, size)
    with torch.no_grad():
        fmap = stream(images)
    cached = torch.cat([fmap, fmap + 1.0], dim=1)  # Stand-ins for two cached streams.
    head = torch_models.fusion_head(cached.shape[1], features, NUM_CLASSES)
    return _train_step(head, cached, labels)


def conv_layer_pieces() -> Step:
    """Forward, d/dx and d/dW of every ResNet18 layer shape (`bench.conv_layers`), timed one by one."""
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    fns = {}
    for layer in RESNET18_64PX:
        x, w, g = (torch.randn(shape) for shape in layer.shapes_nchw())
        kw = dict(stride=layer.stride, padding=layer.padding)
        fns[f"{layer.name} fwd"] = lambda x=x, w=w, kw=kw: F.conv2d(x, w, **kw)
        fns[f"{layer.name} d/dx"] = lambda x=x, w=w, g=g, kw=kw: torch.nn.grad.conv2d_input(x.shape, w, g, **kw)
        fns[f"{layer.name} d/dW"] = lambda x=x, w=w, g=g, kw=kw: torch.nn.grad.conv2d_weight(x, w.shape, g, **kw)

    @torch.no_grad()
    def step():
        return timed(fns)

    step()  # Warm up oneDNN's primitive cache.
    return step
