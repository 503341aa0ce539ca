"""Figure of every degradation family and strength on one photo, with the kernels.

    python -m ctxfuse_jax.degrade.figure --out docs/degradations.png

The photo (skimage's chelsea) is resized to seed 001's canonical 384-pixel short side, where
kernel sizes are defined, and a crop is shown. Each blurred cell carries its kernel as an inset
(square root of kernel / peak), in a window as wide as the row's largest kernel (in the label).
The last row shows noise, JPEG and JPEG 2000.
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Sequence

import jax
import numpy as np
import skimage.data
from matplotlib import colors
from matplotlib.figure import Figure
from PIL import Image

from ctxfuse_jax.degrade import blurring, compress, noise, protocol

CROP = (slice(40, 296), slice(150, 406))  # The cat's face, at the canonical scale.
INSET = 0.42  # Kernel inset side, as a fraction of the cell.
KERNEL_GAMMA = 0.5  # Kernels shown on a square-root scale, so faint tails stay visible.
DPI = 100
COLUMNS = 6
# One row per family: title, family, the cells' labels and their per-image parameters.
BLUR_ROWS = (
    (
        "Gaussian",
        "gaussian",
        ("σ=0", "σ=1", "σ=2", "σ=4", "σ=8", "σ=12"),
        {"sigma": [0, 1, 2, 4, 8, 12]},
    ),
    (
        "Defocus disk",
        "disk",
        ("D2", "D4", "D6", "D8", "r=10", "r=14"),
        {"radius": [2, 4, 6, 8, 10, 14]},
    ),
    (
        "Linear motion",
        "motion",
        ("H4", "H8", "V4", "V8", "L=12, 30°", "L=20, 120°"),
        {"length": [4, 8, 4, 8, 12, 20], "angle": [0, 0, 90, 90, 30, 120]},
    ),
    (
        "ImageNet-C motion",
        "imagenet_c_motion",
        ("sev 1", "sev 2", "sev 3", "sev 4", "sev 5", "sev 5, -40°"),
        {
            "radius": [10, 15, 15, 15, 20, 20],
            "sigma": [3, 5, 8, 12, 15, 15],
            "angle": [20, 20, 20, 20, 20, -40],
        },
    ),
    (
        "Camera shake",
        "shake",
        tuple(f"val #{i}" for i in range(COLUMNS)),
        {"index": list(range(COLUMNS))},
    ),
)
OTHER_LABELS = ("noise .08", "noise .38", "JPEG q25", "JPEG q7", "J2K 100:1", "J2K 400:1")


def canonical_photo() -> np.ndarray:
    """skimage's chelsea at the canonical short side, cropped; float32 HWC in [0, 1]."""
    photo = skimage.data.chelsea()[None].astype(np.float32) / 255.0
    return np.asarray(protocol.resize_short_side(photo, protocol.CANONICAL_SCALE))[0][CROP]


def blurred_rows(photo: np.ndarray) -> list[tuple[str, Sequence[str], np.ndarray, np.ndarray]]:
    """(title, labels, images, kernels) per family: one batch per row, per-image strengths."""
    batch = np.repeat(photo[None], COLUMNS, axis=0)
    rows = []
    for title, family, labels, values in BLUR_ROWS:
        params = blurring.blur_params(family, COLUMNS, **values)
        images = np.asarray(blurring.blur(batch, params))
        kernels = np.asarray(blurring.make_kernels(params))
        rows.append((f"{title}\n({params.support} px)", labels, images, kernels))
    return rows


def other_row(photo: np.ndarray) -> np.ndarray:
    """Noise (ImageNet-C severities 1 and 5), JPEG (idem) and JPEG 2000 at two ratios."""
    batch = np.repeat(photo[None], 2, axis=0)
    noisy = noise.gaussian_noise(batch, np.array([0.08, 0.38]), jax.random.key(0))
    return np.concatenate(
        [
            np.asarray(noisy),
            compress.jpeg(batch, [25, 7]).numpy(),
            compress.jpeg2000(batch, rate=[100.0, 400.0]).numpy(),
        ]
    )


def render(out: str) -> None:
    """Draw the figure and write it as a palette PNG (small enough to commit)."""
    photo = canonical_photo()
    rows = [*blurred_rows(photo), ("Noise / JPEG / J2K", OTHER_LABELS, other_row(photo), None)]
    fig = Figure(figsize=(COLUMNS * 1.55, len(rows) * 1.7))
    axes = fig.subplots(len(rows), COLUMNS, squeeze=False)
    for axes_row, (title, labels, images, kernels) in zip(axes, rows, strict=True):
        for col, ax in enumerate(axes_row):
            ax.imshow(np.clip(images[col], 0, 1), interpolation="lanczos")
            ax.set_title(labels[col], fontsize=8, pad=2)
            ax.set_xticks([])
            ax.set_yticks([])
            if kernels is not None:
                inset = ax.inset_axes([1 - INSET, 0, INSET, INSET])
                inset.imshow(
                    kernels[col] / kernels[col].max(),
                    cmap="magma",
                    norm=colors.PowerNorm(KERNEL_GAMMA, vmin=0, vmax=1),
                    interpolation="antialiased",
                )
                inset.set_xticks([])
                inset.set_yticks([])
                for spine in inset.spines.values():
                    spine.set_color("white")
        axes_row[0].set_ylabel(title, fontsize=9)
    fig.suptitle(
        f"Degradations at the canonical {protocol.CANONICAL_SCALE}-px scale; insets: the "
        "kernels (square-root scale), in a window as wide as the row's largest",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.97), pad=0.4, h_pad=0.6, w_pad=0.3)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    buffer.seek(0)
    rgb = Image.open(buffer).convert("RGB")
    # 256 colours, dithered so the kernels' gradients do not band: half the size of RGB.
    palette = rgb.quantize(256)
    rgb.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG).save(out, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/degradations.png", help="PNG file to write")
    render(parser.parse_args().out)


if __name__ == "__main__":
    main()
