"""Robustness scoring throughput: corrupted test images classified per second, ours against the usual way.

Ours is what configs/robustness.py runs: one `preset_family` per ImageNet-C corruption at one
severity (`imagenet_c/<name>`, `degrade.presets`), and `make_condition_step` + `evaluate_conditions`
corrupt each batch on device and classify it in one jitted step. The usual alternative is the
`imagecorruptions` package (ImageNet-C's own NumPy / OpenCV / scikit-image code, packaged) corrupting
each image on the host, then a PyTorch forward of the same ResNet18 (`bench.torch_models`) in
batches. Both score the same images (the embedded objects' test split at 224 px, ImageNet-C's size)
under the same corruptions and severity, with the same batch and the same weights: a random
ResNet18 (width 0.25, 24 classes) whose BN statistics are measured on the images, copied into ours
through `ctxfuse_jax.weights.convert_state_dict`. Each side runs in its own process on the same
CPUs, interleaved round by round (`bench.harness`). First, both must give the same logits on the
clean images, or the bench stops; how close the two implementations' corrupted images are is
measured and printed.

    PYTHONPATH=. python -m bench.robustness_throughput                        # 64 images, severity 3
    PYTHONPATH=. python -m bench.robustness_throughput --images 32 --rounds 2 # a quick check

Needs `pip install imagecorruptions` (the `bench` extra of setup.py). Its 1.1.2 release predates
setuptools 81 and scikit-image 0.19: `import_imagecorruptions` stands in `pkg_resources.resource_filename`
(used only for the frost images) and passes scikit-image's `channel_axis=-1` where it still says
`multichannel=True`; the corruptions' arithmetic is left as it is.
"""

import argparse
import importlib
import os
import sys
import tempfile
import types

import numpy as np

from bench import harness

CORRUPTIONS = ("gaussian_blur", "defocus_blur", "gaussian_noise", "motion_blur")
ARCH, WIDTH, NUM_CLASSES, SIZE = "resnet18", 0.25, 24, 224
BATCH = 32  # both sides
WEIGHT = "weight:"
OURS = "ours: corrupt on device + forward, one jitted step (JAX)"
OURS_CLEAN = "ours, forward only (the clean images, as many)"
OURS_CORRUPT = "ours, corrupting only (the same presets, jitted, on device)"
REFERENCE = "reference: imagecorruptions on the host + PyTorch forward"
LOGIT_TOLERANCE = 1e-3  # of the largest logit: float32 summation orders differ


def import_imagecorruptions():
    """`imagecorruptions` 1.1.2 on today's setuptools and scikit-image (see the module docstring)."""
    if "pkg_resources" not in sys.modules:
        try:
            importlib.import_module("pkg_resources")
        except ImportError:
            shim = types.ModuleType("pkg_resources")
            shim.resource_filename = lambda package, name: os.path.join(
                os.path.dirname(importlib.import_module(package).__file__), name)
            sys.modules["pkg_resources"] = shim
    import imagecorruptions
    from imagecorruptions import corruptions
    from skimage.filters import gaussian

    def gaussian_compatible(image, *args, multichannel=None, **kwargs):
        if multichannel:
            kwargs.setdefault("channel_axis", -1)
        return gaussian(image, *args, **kwargs)

    corruptions.gaussian = gaussian_compatible
    return imagecorruptions


def _load(path: str) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def _prepare_here(path: str, num_images: int, severity: int, report_path: str) -> None:
    """The images, the weights, and the checks (logits, corrupted images), in one process that
    holds TensorFlow, JAX and PyTorch."""
    import jax
    import torch

    from bench import challenge_torch
    from ctxfuse_jax.data import pipeline
    from ctxfuse_jax.data.embedded import load_embedded
    from ctxfuse_jax.degrade import presets
    from ctxfuse_jax.models import build_model
    from ctxfuse_jax.models.variables import unflatten
    from ctxfuse_jax.weights import convert_state_dict

    with tempfile.TemporaryDirectory() as data_dir:
        split = pipeline.materialize(load_embedded("objects", "test", image_size=SIZE, data_dir=data_dir,
                                                   num_examples=4 * num_images), ("image", "label"))
    images, labels = split.arrays["image"][:num_images], split.arrays["label"][:num_images]
    net = challenge_torch.random_resnet18(NUM_CLASSES, WIDTH, images)
    weights = challenge_torch.torchvision_weights(net)
    model = build_model(ARCH, width=WIDTH, num_classes=NUM_CLASSES)
    variables = unflatten(convert_state_dict(weights, model))
    clean = images.astype(np.float32) / 255
    ours = np.asarray(jax.jit(model.apply)(variables, clean))
    with torch.no_grad():
        theirs = net(torch.from_numpy(clean.transpose(0, 3, 1, 2).copy())).numpy()
    gap = float(np.abs(ours - theirs).max() / np.abs(theirs).max())
    if gap > LOGIT_TOLERANCE or (ours.argmax(1) != theirs.argmax(1)).any():
        raise AssertionError(f"JAX and PyTorch logits differ on clean images: max gap {gap:.2e} of the largest")
    lines = [f"clean logits agree: max |JAX - PyTorch| = {gap:.1e} of the largest logit, same arg-max on all "
             f"{num_images} images ({len(np.unique(theirs.argmax(1)))} classes predicted)"]
    corrupt = import_imagecorruptions().corrupt
    shown = min(8, num_images)
    for name in CORRUPTIONS:
        degradation = presets.get_preset(f"imagenet_c/{name}")[str(severity)]
        ours_images = np.asarray(jax.jit(degradation)(clean[:shown], jax.random.PRNGKey(0))) * 255
        theirs_images = np.stack([corrupt(image, corruption_name=name, severity=severity)
                                  for image in images[:shown]]).astype(np.float32)
        change = np.abs(theirs_images - images[:shown]).mean()
        lines.append(f"{name} {severity}: mean |ours - imagecorruptions| {np.abs(ours_images - theirs_images).mean():.1f} "
                     f"8-bit levels (each changes the clean image by {np.abs(ours_images - images[:shown]).mean():.1f} "
                     f"/ {change:.1f})")
    np.savez(path, image=images, label=labels, **{WEIGHT + k: v for k, v in weights.items()})
    with open(report_path, "w") as f:
        f.write("\n".join(lines))


def prepare(path: str, num_images: int, severity: int) -> str:
    """`_prepare_here` in a process of its own; returns its check lines."""
    import multiprocessing

    report_path = f"{path}.txt"
    process = multiprocessing.get_context("spawn").Process(target=_prepare_here,
                                                           args=(path, num_images, severity, report_path))
    process.start()
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"preparing the images and weights failed (exit code {process.exitcode})")
    with open(report_path) as f:
        return f.read()


def ours_step(data_path: str, severity: int, batch_size: int = BATCH, clean: bool = False) -> harness.Step:
    """Each call scores every image under every corruption with the evaluator (the first compiles);
    `clean`: the same number of forward passes on the clean images, so the forward's share shows."""
    import jax

    from bench.compile_events import CompileEvents
    from ctxfuse_jax.data.pipeline import ArraySplit
    from ctxfuse_jax.evaluate.conditions import Family, preset_family
    from ctxfuse_jax.evaluate.evaluator import evaluate_conditions, frozen_players, make_condition_step
    from ctxfuse_jax.models import build_model
    from ctxfuse_jax.models.variables import unflatten
    from ctxfuse_jax.train import sharding
    from ctxfuse_jax.train.state import PlayerSpec
    from ctxfuse_jax.weights import convert_state_dict

    arrays = _load(data_path)
    model = build_model(ARCH, width=WIDTH, num_classes=NUM_CLASSES)
    weights = {k[len(WEIGHT):]: v for k, v in arrays.items() if k.startswith(WEIGHT)}
    players = frozen_players({"model": unflatten(convert_state_dict(weights, model))})
    split = ArraySplit({"image": arrays["image"], "label": arrays["label"]})
    families = [Family(name, (str(severity),), lambda images, batch, bank, level, key: images) if clean
                else preset_family(name, f"imagenet_c/{name}", (str(severity),), "all") for name in CORRUPTIONS]
    step_fn = make_condition_step({"model": PlayerSpec(model)}, lambda fw, x: {"model": fw("model", x)}, families)
    mesh = sharding.make_mesh()
    jax.random.fold_in(jax.random.PRNGKey(0), 0).block_until_ready()

    def step() -> harness.Parts:
        with CompileEvents() as events:
            scores = evaluate_conditions(step_fn, players, split, families, batch_size, mesh,
                                         num_classes=NUM_CLASSES, seed=0)
        correct = np.mean([scores.correct("model", name).mean() for name in CORRUPTIONS])
        return harness.Parts({**events.parts(), "step programs": step_fn._cache_size(), "accuracy": correct})

    return step


def ours_corrupt_step(data_path: str, severity: int, batch_size: int = BATCH) -> harness.Step:
    """Each call corrupts every image under every corruption with the presets the condition step
    applies (`degrade.presets`), one jitted program per corruption, nothing classified: the
    counterpart of the reference's corrupting alone."""
    import jax

    from ctxfuse_jax.degrade import presets

    images = _load(data_path)["image"]
    batches = [jax.device_put(images[start:start + batch_size].astype(np.float32) / 255)
               for start in range(0, len(images), batch_size)]
    corrupt = {name: jax.jit(presets.get_preset(f"imagenet_c/{name}")[str(severity)]) for name in CORRUPTIONS}
    key = jax.random.PRNGKey(0)

    def step() -> harness.Parts:
        for name, fn in corrupt.items():
            for i, batch in enumerate(batches):
                fn(batch, jax.random.fold_in(key, i)).block_until_ready()
        return harness.Parts({})

    return step


def reference_step(data_path: str, severity: int, batch_size: int = BATCH) -> harness.Step:
    """Each call corrupts every image with imagecorruptions, one image at a time, and classifies the
    corrupted images in batches with the PyTorch ResNet18."""
    import time

    import torch

    from bench import challenge_torch

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    corrupt = import_imagecorruptions().corrupt
    arrays = _load(data_path)
    weights = {k[len(WEIGHT):]: v for k, v in arrays.items() if k.startswith(WEIGHT)}
    net = challenge_torch.resnet18_from(weights, NUM_CLASSES, WIDTH)
    images, labels = arrays["image"], arrays["label"]
    np.random.seed(0)  # imagecorruptions draws noise and motion angles from NumPy's global generator

    def step() -> harness.Parts:
        corrupt_s = forward_s = 0.0
        correct = []
        for name in CORRUPTIONS:
            for start in range(0, len(images), batch_size):
                begin = time.perf_counter()
                batch = np.stack([corrupt(image, corruption_name=name, severity=severity)
                                  for image in images[start:start + batch_size]])
                middle = time.perf_counter()
                with torch.no_grad():
                    logits = net(torch.from_numpy(batch.transpose(0, 3, 1, 2).copy()).float() / 255)
                correct.append((logits.argmax(1).numpy() == labels[start:start + batch_size]))
                corrupt_s += middle - begin
                forward_s += time.perf_counter() - middle
        return harness.Parts({"corrupt s": corrupt_s, "forward s": forward_s,
                              "accuracy": float(np.concatenate(correct).mean())})

    return step


def main(num_images: int = 64, severity: int = 3, rounds: int = 3) -> str:
    with tempfile.TemporaryDirectory() as workdir:
        data_path = os.path.join(workdir, "data.npz")
        checks = prepare(data_path, num_images, severity)
        items = num_images * len(CORRUPTIONS)
        module = "bench.robustness_throughput"
        results = harness.compare({
            OURS: harness.Workload(f"{module}:ours_step", {"data_path": data_path, "severity": severity}, items),
            OURS_CLEAN: harness.Workload(f"{module}:ours_step", {"data_path": data_path, "severity": severity,
                                                                   "clean": True}, items),
            OURS_CORRUPT: harness.Workload(f"{module}:ours_corrupt_step", {"data_path": data_path,
                                                                          "severity": severity}, items),
            REFERENCE: harness.Workload(f"{module}:reference_step", {"data_path": data_path, "severity": severity},
                                        items, tune_host_memory=False),
        }, rounds=rounds, steps=1)
    ours, reference, forward, corrupting = results[OURS], results[REFERENCE], results[OURS_CLEAN], results[OURS_CORRUPT]
    reference_corrupting_per_s = items / reference.part_median_s("corrupt s")
    lines = ["| method | images/s (median) | vs reference | median call (s) | first call (s) | "
             "corrupt / forward (s) | accuracy | peak RSS (MiB) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in (ours, forward, corrupting, reference):
        split = (f"{r.part_median_s('corrupt s'):.2f} / {r.part_median_s('forward s'):.2f}" if "corrupt s" in r.parts
                 else f"{r.median_s - forward.median_s:.2f} / {forward.median_s:.2f} (by difference)" if r is ours
                 else f"{r.median_s:.2f} / -" if r is corrupting else f"- / {r.median_s:.2f}")
        accuracy = f"{r.part_median_s('accuracy'):.3f}" if "accuracy" in r.parts else "-"
        lines.append(f"| {r.name} | {r.per_s:.1f} | {r.per_s / reference.per_s:.2f}x | {r.median_s:.2f} | "
                     f"{r.first_step_s:.1f} | {split} | {accuracy} | {r.peak_rss_mib:.0f} |")
    first = ours.first_parts
    return (f"{num_images} images x {len(CORRUPTIONS)} corruptions ({', '.join(CORRUPTIONS)}) at severity {severity}, "
            f"{SIZE} px, {ARCH} width {WIDTH}, {NUM_CLASSES} classes, batch {BATCH}; {os.cpu_count()} CPUs, "
            f"{rounds} timed calls each.\n\n" + "\n".join(lines) + "\n\n"
            f"Ratio ours / reference: **{ours.per_s / reference.per_s:.1f}x**. Corrupting alone: ours "
            f"{corrupting.per_s:.0f} images/s, imagecorruptions {reference_corrupting_per_s:.0f} images/s (its part of "
            f"the reference's calls): **{corrupting.per_s / reference_corrupting_per_s:.1f}x**. Ours, first call: "
            f"{first['compilations']:.0f} compilations in {first['compile s']:.1f} s; the condition step is "
            f"{first['step programs']:.0f} program for all corruptions; timed calls: "
            f"{sum(ours.parts.get('compilations', ())):.0f} compilations. Timed calls (s): ours "
            f"{' / '.join(f'{t:.2f}' for t in ours.step_times)}, reference "
            f"{' / '.join(f'{t:.2f}' for t in reference.step_times)}.\n\nChecks: " + "; ".join(checks.splitlines()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64, help="test images (each scored under every corruption)")
    parser.add_argument("--severity", type=int, default=3, choices=range(1, 6))
    parser.add_argument("--rounds", type=int, default=3, help="timed calls per method after the first")
    args = parser.parse_args()
    print(main(args.images, args.severity, args.rounds))
