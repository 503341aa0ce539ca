"""Batch blur throughput: ctxfuse_jax.degrade.blur vs scipy.ndimage (and dm-pix for Gaussians).

    PYTHONPATH=. python bench/blur_bench.py [--batch 32] [--size 224]

Every method blurs the same photos (float32 NHWC in [0, 1]); jitted functions are timed after a
warm-up call, so compilation is excluded. scipy runs one image at a time on a subset (it is the
slow side), with the reflect border; dm-pix is jitted with its own zero padding. Prints a
Markdown table of images per second and our speed-up over each reference.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import dm_pix
import jax
import numpy as np
import scipy.ndimage as ndi
import skimage.data
import skimage.transform

from ctxfuse_jax import degrade

CASES = {
    "gaussian sigma 1": ("gaussian", {"sigma": 1.0}),
    "gaussian sigma 4": ("gaussian", {"sigma": 4.0}),
    "gaussian sigma 12": ("gaussian", {"sigma": 12.0}),
    "disk radius 8": ("disk", {"radius": 8.0}),
    "camera shake": ("shake", {"index": 0}),
}
SCIPY_IMAGES = 4  # scipy is timed on this many images of the batch.


def photos(batch: int, size: int) -> np.ndarray:
    """`batch` crops of skimage's astronaut and chelsea photos, size x size, float32."""
    sources = [skimage.data.astronaut(), skimage.data.chelsea()]
    crops = [
        skimage.transform.resize(sources[i % 2], (size + i % 7, size + i % 5))[:size, :size]
        for i in range(batch)
    ]
    return np.stack(crops).astype(np.float32)


def images_per_second(fn: Callable[[], object], count: int, repeats: int) -> float:
    """Best of `repeats` timed calls of `fn`, which processes `count` images."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return count / min(times)


def scipy_blur(image: np.ndarray, family: str, params: degrade.BlurParams) -> np.ndarray:
    if family == "gaussian":
        sigma = float(params.values[0, 0])
        return ndi.gaussian_filter(image, (sigma, sigma, 0), mode="reflect")
    kernel = np.asarray(degrade.make_kernels(params)[0])
    return ndi.convolve(image, kernel[:, :, None], mode="reflect")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    host = photos(args.batch, args.size)
    images = jax.device_put(host)
    print(f"{args.batch} x {args.size}^2 x 3 images, {jax.devices()[0].platform}, "
          f"jax {jax.__version__}\n")
    print("| blur | ours (img/s) | scipy.ndimage (img/s) | ours / scipy | dm-pix (img/s) "
          "| ours / dm-pix |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (family, values) in CASES.items():
        params = degrade.blur_params(family, args.batch, **values)

        def ours(params: degrade.BlurParams = params) -> jax.Array:
            return degrade.blur(images, params)

        ours()  # Compile.
        ours_rate = images_per_second(ours, args.batch, args.repeats)
        subset = host[:SCIPY_IMAGES]
        scipy_rate = images_per_second(
            lambda: [scipy_blur(image, family, params) for image in subset],
            len(subset),
            args.repeats,
        )
        row = f"| {name} | {ours_rate:.0f} | {scipy_rate:.1f} | {ours_rate / scipy_rate:.1f}x"
        if family == "gaussian":
            sigma = values["sigma"]
            size = 2 * int(4 * sigma + 0.5) + 1
            pix = jax.jit(lambda x, s=sigma, k=size: dm_pix.gaussian_blur(x, s, k))
            pix(images)  # Compile.
            pix_rate = images_per_second(lambda: pix(images), args.batch, args.repeats)
            row += f" | {pix_rate:.1f} | {ours_rate / pix_rate:.1f}x |"
        else:
            row += " | - | - |"
        print(row, flush=True)


if __name__ == "__main__":
    main()
