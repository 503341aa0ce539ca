"""The backgrounds challenge as its authors run it, in PyTorch: the reference of `bench.challenge`.

MadryLab/backgrounds_challenge (`challenge_eval.py`, `tools/model_utils.adv_bgs_eval_model`) loops
over the foregrounds; for each it iterates a DataLoader of every background in batches of 32,
pastes the foreground on them in torch (`fg * mask + bg * (1 - mask)`), runs the model, and asks
whether any background moves the prediction off the foreground's label. Written again here, with
the backgrounds held in memory (theirs decode JPEGs in 8 loader workers, again for every
foreground), under `torch.no_grad()` (theirs builds autograd graphs it never uses) and, by default,
without the early return after the first fooling batch, so every (foreground, background) pair is
scored, as our evaluator scores it: each of these favours the reference.
"""

import os

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from bench import torch_models
from bench.harness import Parts, Step

BATCH = 32  # challenge_eval.py's default --batch_size
SEED = 0


def _nchw(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> float32 NCHW in [0, 1], as torchvision's ToTensor makes them."""
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).float() / 255


def random_resnet18(num_classes: int, width: float, calibration: np.ndarray, seed: int = SEED) -> torch.nn.Sequential:
    """`torch_models.resnet18` in eval mode: random weights (torch's init, BN scales and shifts
    drawn), BN statistics measured on `calibration` (uint8 NHWC images). With statistics that fit
    its inputs, a random net's predictions vary with the image (with torch's or drawn statistics
    this one predicts one class for every composite), so equal predictions mean something."""
    torch.manual_seed(seed)
    net = torch_models.resnet18(num_classes, width)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
            torch.nn.init.normal_(module.bias, std=0.1)
            module.reset_running_stats()
            module.momentum = None  # a plain average over the calibration batch
    net.train()
    with torch.no_grad():
        net(_nchw(calibration))
    return net.eval()


def torchvision_weights(net: torch.nn.Sequential) -> dict[str, np.ndarray]:
    """The net's weights under torchvision's names, as numpy (what `weights.layout` converts)."""
    state = net.state_dict()
    return {name: state[key].numpy() for key, name in torch_models.torchvision_names(net).items()}


def resnet18_from(weights: dict[str, np.ndarray], num_classes: int, width: float) -> torch.nn.Sequential:
    """A `torch_models.resnet18` holding `weights` (torchvision names), in eval mode."""
    net = torch_models.resnet18(num_classes, width)
    state = net.state_dict()
    for key, name in torch_models.torchvision_names(net).items():
        state[key] = torch.from_numpy(np.asarray(weights[name]))
    net.load_state_dict(state)
    return net.eval()


def challenge(net: torch.nn.Module, foregrounds: torch.Tensor, masks: torch.Tensor, labels: torch.Tensor,
              backgrounds: torch.Tensor, batch_size: int = BATCH,
              early_exit: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(predictions (F, B), -1 where never scored; vulnerable (F,)): `adv_bgs_eval_model` per foreground.

    foregrounds and masks (F, 3, H, W) float (masks 0/1), backgrounds (B, 3, H, W) float.
    """
    loader = DataLoader(TensorDataset(backgrounds, torch.zeros(len(backgrounds), dtype=torch.long)),
                        batch_size=batch_size, shuffle=False)
    predictions = torch.full((len(foregrounds), len(backgrounds)), -1, dtype=torch.long)
    vulnerable = torch.zeros(len(foregrounds), dtype=torch.bool)
    with torch.no_grad():
        for i in range(len(foregrounds)):
            im, mask = foregrounds[i:i + 1], masks[i:i + 1]
            big_im, big_mask = im.repeat(batch_size, 1, 1, 1), mask.repeat(batch_size, 1, 1, 1)
            start = 0
            for inp, _ in loader:
                if inp.shape[0] != batch_size:  # the last batch
                    big_im, big_mask = im.repeat(inp.shape[0], 1, 1, 1), mask.repeat(inp.shape[0], 1, 1, 1)
                combined = inp * (1 - big_mask) + big_mask * big_im
                _, pred = net(combined).topk(1, 1, True, True)
                pred = pred.cpu().detach()[:, 0]
                predictions[i, start:start + len(pred)] = pred
                start += len(pred)
                if (pred != labels[i]).any().item():
                    vulnerable[i] = True
                    if early_exit:
                        break
    return predictions.numpy(), vulnerable.numpy()


def challenge_step(data_path: str, num_classes: int, width: float, batch_size: int = BATCH,
                   predictions_path: str = "") -> Step:
    """Each call runs the whole challenge on `bench.challenge_workloads.prepare`'s data and weights;
    the first call writes the (F, B) predictions to `predictions_path` if given."""
    torch.set_num_threads(len(os.sched_getaffinity(0)))  # As many threads as CPUs this worker may use.
    with np.load(data_path) as data:
        arrays = {k: data[k] for k in data.files}
    weights = {k[len("weight:"):]: v for k, v in arrays.items() if k.startswith("weight:")}
    net = resnet18_from(weights, num_classes, width)
    foregrounds = _nchw(arrays["image"])
    masks = _nchw(np.repeat(arrays["mask"], 3, axis=-1) * np.uint8(255))  # fg_mask tiled to 3 channels, 0/1
    labels = torch.from_numpy(arrays["label"].astype(np.int64))
    backgrounds = _nchw(arrays["bank"][arrays["chosen"]])
    written = [not predictions_path]

    def step() -> Parts:
        predictions, vulnerable = challenge(net, foregrounds, masks, labels, backgrounds, batch_size)
        if not written[0]:
            np.save(predictions_path, predictions)
            written[0] = True
        return Parts({"vulnerable": float(vulnerable.sum())})

    return step
