"""The attention baseline (seed 002) against independent references: skimage for the heat-map box,
loops and torch for the crop, a PyTorch module for the head; and the frozen-G training step."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
import torch.nn.functional as F
from skimage.measure import label, regionprops

from ctxfuse_jax.degrade.regions import pixel_bounds
from ctxfuse_jax.models.attention import AttentionHead, crop_resize, heatmap_box
from ctxfuse_jax.models.layers import WidthError
from ctxfuse_jax.models.vgg import VGG

WHOLE = (0.0, 0.0, 1.0, 1.0)


def reference_cells(features: np.ndarray, tau: float, connectivity: int | None) -> tuple[int, int, int, int] | None:
    """The authors' crop_heatmap up to the box, in map cells (r1, c1, r2, c2); None where they skip the image."""
    heat = np.max(np.abs(features), 2)
    low, high = np.min(heat), np.max(heat)
    if low == high:
        return None
    mask = (heat - low) / (high - low) >= tau
    labels = label(mask, connectivity=connectivity)
    if labels.max() == 0:
        return None
    largest = labels == np.argmax(np.bincount(labels.flat)[1:]) + 1
    return regionprops(largest.astype(int))[0].bbox


def reference_box(features: np.ndarray, tau: float, connectivity: int | None = None) -> tuple[float, ...]:
    cells = reference_cells(features, tau, connectivity)
    if cells is None:
        return WHOLE
    (h, w), (r1, c1, r2, c2) = features.shape[:2], cells
    return r1 / h, c1 / w, r2 / h, c2 / w


def reference_pixels(features: np.ndarray, tau: float, height: int, width: int) -> tuple[int, ...]:
    """[y0, x0, y1, x1] of the authors' crop `x[:, H*r1//h:H*r2//h+1, W*c1//w:W*c2//w+1]`, read off the slice."""
    cells = reference_cells(features, tau, None)
    if cells is None:
        return 0, 0, height, width
    (h, w), (r1, c1, r2, c2) = features.shape[:2], cells
    rows = np.arange(height)[height * r1 // h:height * r2 // h + 1]
    cols = np.arange(width)[width * c1 // w:width * c2 // w + 1]
    return rows[0], cols[0], rows[-1] + 1, cols[-1] + 1


def random_features(shape: tuple[int, ...], seed: int, ties: bool) -> np.ndarray:
    """Signed features (abs matters); integer-valued ones tie often, in heat and in component sizes."""
    rng = np.random.default_rng(seed)
    if ties:
        return rng.integers(-3, 4, shape).astype(np.float32)
    return rng.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("hw", [(1, 6), (4, 4), (5, 7), (16, 16)])
def test_heatmap_box_matches_skimage(hw, ties):
    features = random_features((40, *hw, 3), seed=hw[0] * 100 + hw[1], ties=ties)
    for tau in (0.0, 0.3, 0.5, 0.7, 0.9, 1.0):
        for connectivity in (1, 2):
            got = np.asarray(heatmap_box(jnp.asarray(features), tau, connectivity=connectivity))
            want = np.asarray([reference_box(f, tau, connectivity) for f in features], np.float32)
            np.testing.assert_array_equal(got, want, err_msg=f"tau {tau}, connectivity {connectivity}")


def test_heatmap_box_defaults_to_skimages_default_connectivity():
    """The authors call `label(m)`: skimage's default joins diagonal cells (8 neighbours), and tau is 0.7."""
    features = random_features((40, 6, 6, 2), seed=3, ties=True)
    want = np.asarray([reference_box(f, 0.7, None) for f in features], np.float32)
    np.testing.assert_array_equal(np.asarray(heatmap_box(jnp.asarray(features))), want)


def test_heatmap_box_hand_made_components():
    def one_map(cells: list[tuple[int, int]], h: int = 6, w: int = 6) -> np.ndarray:
        heat = np.zeros((h, w, 1), np.float32)
        for r, c in cells:
            heat[r, c] = 1.0
        return heat

    diagonal, block = [(0, 0), (1, 1), (2, 2)], [(4, 4), (4, 5)]  # 3 cells if diagonals join, else 1+1+1.
    two_sizes = [(0, 4), (5, 0), (5, 1), (4, 0)]  # 1 cell at the top, 3 at the bottom: the bigger wins.
    tie = [(1, 4), (1, 5), (4, 0), (4, 1)]  # 2 and 2: the first in raster order (top) wins.
    maps = np.stack([one_map(diagonal + block), one_map(two_sizes), one_map(tie)])
    eight = np.asarray(heatmap_box(jnp.asarray(maps), 0.7, connectivity=2)) * 6
    four = np.asarray(heatmap_box(jnp.asarray(maps), 0.7, connectivity=1)) * 6
    np.testing.assert_allclose(eight, [[0, 0, 3, 3], [4, 0, 6, 2], [1, 4, 2, 6]], atol=1e-6)
    np.testing.assert_allclose(four, [[4, 4, 5, 6], [4, 0, 6, 2], [1, 4, 2, 6]], atol=1e-6)
    for f, got in zip(maps, eight):
        np.testing.assert_allclose(got, np.asarray(reference_box(f, 0.7)) * 6, atol=1e-6)


def test_heatmap_box_follows_a_winding_component_to_its_end():
    """A serpentine component whose smallest label must travel its whole length, 31 cells, to join up."""
    snake = np.zeros((2, 7, 8, 1), np.float32)
    snake[:, 0:7:2, :7] = 1.0  # rows 0, 2, 4, 6
    snake[:, [1, 3, 5], [6, 0, 6]] = 1.0  # joined at alternate ends
    snake[1, 6, 3], snake[1, 0:3, 7] = 0.0, 1.0  # cut near its end; a 3-cell piece in the last column
    for connectivity in (1, 2):
        got = np.asarray(heatmap_box(jnp.asarray(snake), 0.7, connectivity=connectivity))
        want = np.asarray([reference_box(f, 0.7, connectivity) for f in snake], np.float32)
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(want[0] * [7, 8, 7, 8], [0, 0, 7, 7])


def test_heatmap_box_flat_and_empty_maps_give_the_whole_image():
    """Where the authors skip the image (flat heat, or nothing over tau), the local CNN sees all of it."""
    flat = np.stack([np.zeros((4, 4, 3)), np.full((4, 4, 3), -2.5)]).astype(np.float32)
    assert all(reference_cells(f, 0.7, None) is None for f in flat)
    np.testing.assert_array_equal(heatmap_box(jnp.asarray(flat), 0.7), [WHOLE, WHOLE])
    varied = random_features((2, 4, 4, 3), seed=0, ties=False)
    np.testing.assert_array_equal(heatmap_box(jnp.asarray(varied), 1.5), [WHOLE, WHOLE])
    mixed = np.concatenate([flat[:1], varied[:1]])
    got = np.asarray(heatmap_box(jnp.asarray(mixed), 0.7))
    np.testing.assert_array_equal(got[0], WHOLE)
    np.testing.assert_array_equal(got[1], np.asarray(reference_box(varied[0], 0.7), np.float32))


@pytest.mark.parametrize("image_hw", [(64, 64), (32, 48), (30, 23)])
def test_heatmap_box_authors_pixel_box(image_hw):
    """With the image size, pixel_bounds of the box is exactly the authors' crop slice (its extra row and column)."""
    features = random_features((40, 4, 5, 3), seed=7, ties=True)
    got = pixel_bounds(heatmap_box(jnp.asarray(features), 0.7, image_hw=image_hw), *image_hw)
    want = [reference_pixels(f, 0.7, *image_hw) for f in features]
    np.testing.assert_array_equal(np.asarray(got), want)


def test_heatmap_box_connectivity_must_be_skimages():
    with pytest.raises(ValueError, match="connectivity 4"):
        heatmap_box(jnp.ones((1, 4, 4, 1)), 0.7, connectivity=4)


def test_crop_resize_is_exact_on_an_aligned_box_of_its_own_size():
    images = np.random.default_rng(0).random((2, 16, 12, 3)).astype(np.float32)
    pixels = np.asarray([[3, 2, 11, 10], [8, 4, 16, 12]])  # [y0, x0, y1, x1], both 8x8
    boxes = pixels / np.asarray([16, 12, 16, 12], np.float32)
    crops = np.asarray(crop_resize(jnp.asarray(images), jnp.asarray(boxes), 8))
    for image, crop, (y0, x0, y1, x1) in zip(images, crops, pixels):
        np.testing.assert_array_equal(crop, image[y0:y1, x0:x1])


def reference_crop_resize(image: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """Crop the pixels whose centres are in the box, then bilinear with half-pixel centres, output pixel by pixel."""
    height, width, _ = image.shape
    rows = [i for i in range(height) if box[0] * height <= i + 0.5 < box[2] * height]
    cols = [j for j in range(width) if box[1] * width <= j + 0.5 < box[3] * width]
    crop = image[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].astype(np.float64)

    def source(i: int, extent: int) -> tuple[int, int, float]:
        position = min(max((i + 0.5) * extent / size - 0.5, 0.0), extent - 1)
        low = math.floor(position)
        return low, min(low + 1, extent - 1), position - low

    out = np.zeros((size, size, image.shape[2]))
    for i in range(size):
        y0, y1, dy = source(i, crop.shape[0])
        for j in range(size):
            x0, x1, dx = source(j, crop.shape[1])
            out[i, j] = ((1 - dy) * ((1 - dx) * crop[y0, x0] + dx * crop[y0, x1])
                         + dy * ((1 - dx) * crop[y1, x0] + dx * crop[y1, x1]))
    return out


@pytest.mark.parametrize("size", [5, 12, 31])
def test_crop_resize_matches_bilinear_references(size):
    """Down- and upsampling general boxes, against a loop and torch's interpolate(align_corners=False) on the crop."""
    rng = np.random.default_rng(size)
    images = rng.random((6, 20, 17, 3)).astype(np.float32)
    corners = np.sort(rng.random((6, 2, 2)), axis=1)  # [[ymin, xmin], [ymax, xmax]] per image
    boxes = np.concatenate([corners[:, 0], corners[:, 1]], axis=1).astype(np.float32)
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 0.2)  # at least 3 pixels each way
    boxes[0] = WHOLE
    got = np.asarray(crop_resize(jnp.asarray(images), jnp.asarray(boxes), size))
    assert got.shape == (6, size, size, 3)
    for image, box, crop in zip(images, boxes, got):
        np.testing.assert_allclose(crop, reference_crop_resize(image, box, size), atol=1e-5)
        y0, x0, y1, x1 = np.asarray(pixel_bounds(box[None], 20, 17))[0]
        patch = torch.from_numpy(image[y0:y1, x0:x1]).permute(2, 0, 1)[None]
        resized = F.interpolate(patch, (size, size), mode="bilinear", align_corners=False)
        np.testing.assert_allclose(crop, resized[0].permute(1, 2, 0).numpy(), atol=1e-5)


class TorchAttentionHead(torch.nn.Module):
    """The authors' Keras fusion model written in PyTorch: 'same' stride-2 convs padded as TensorFlow pads."""

    def __init__(self, in_channels: int, global_channels: int, widths: tuple[int, ...], num_classes: int):
        super().__init__()
        convs, dense = widths[:3], widths[3:]
        self.convs = torch.nn.ModuleList(torch.nn.Conv2d(c_in, c_out, 3, stride=2)
                                         for c_in, c_out in zip((in_channels, *convs), convs))
        sizes = (convs[-1] + global_channels, *dense, num_classes)
        self.dense = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))

    def forward(self, crops: torch.Tensor, global_features: torch.Tensor) -> torch.Tensor:
        x = crops
        for conv in self.convs:
            pads = []
            for size in (x.shape[3], x.shape[2]):  # F.pad takes the last axis first
                total = max((-(-size // 2) - 1) * 2 + 3 - size, 0)
                pads += [total // 2, total - total // 2]
            x = torch.relu(conv(F.pad(x, pads)))
        x = torch.cat([x.mean((2, 3)), global_features.mean((2, 3))], 1)
        for layer in self.dense:
            x = layer(x)
        return x


def load_torch_head(params, module: TorchAttentionHead) -> None:
    with torch.no_grad():
        for i, conv in enumerate(module.convs):
            conv.weight.copy_(torch.from_numpy(np.array(params[f"local_conv{i + 1}"]["kernel"]).transpose(3, 2, 0, 1)))
            conv.bias.copy_(torch.from_numpy(np.array(params[f"local_conv{i + 1}"]["bias"])))
        for layer, name in zip(module.dense, ("dense1", "dense2", "logits")):
            layer.weight.copy_(torch.from_numpy(np.array(params[name]["kernel"]).T))
            layer.bias.copy_(torch.from_numpy(np.array(params[name]["bias"])))


@pytest.mark.parametrize("crop_size, conv", [(16, "xla"), (15, "cpu")])
def test_attention_head_matches_pytorch(crop_size, conv):
    """Even and odd crops exercise both of TensorFlow's 'same' paddings (extra row at the end when odd)."""
    from ctxfuse_jax.ops.conv import conv_module
    rng = np.random.default_rng(crop_size)
    crops = rng.random((3, crop_size, crop_size, 3)).astype(np.float32)
    global_features = rng.standard_normal((3, 4, 4, 24)).astype(np.float32)
    head = AttentionHead(num_classes=5, width=1 / 16, conv=conv_module(conv))
    variables = jax.jit(head.init)(jax.random.PRNGKey(0), crops, global_features)
    # Keras's initialisation has zero biases; give them values so the parity test sees them.
    params = jax.jit(lambda tree: jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.PRNGKey(1), p.shape),
                                               tree))(variables["params"])
    shapes = {name: layer["kernel"].shape for name, layer in params.items()}
    assert shapes == {"local_conv1": (3, 3, 3, 8), "local_conv2": (3, 3, 8, 16), "local_conv3": (3, 3, 16, 32),
                      "dense1": (32 + 24, 128), "dense2": (128, 16), "logits": (16, 5)}
    assert all(not np.any(layer["bias"]) for layer in variables["params"].values())
    got = np.asarray(head.apply({"params": params}, jnp.asarray(crops), jnp.asarray(global_features)))
    module = TorchAttentionHead(3, 24, (8, 16, 32, 128, 16), 5)
    load_torch_head(params, module)
    with torch.no_grad():
        want = module(torch.from_numpy(crops).permute(0, 3, 1, 2),
                      torch.from_numpy(global_features).permute(0, 3, 1, 2)).numpy()
    assert got.shape == (3, 5)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_attention_head_width_too_small():
    head = AttentionHead(num_classes=2, width=1 / 512)
    with pytest.raises(WidthError, match="AttentionHead.s 128-channel layers"):
        head.init(jax.random.PRNGKey(0), jnp.ones((1, 8, 8, 3)), jnp.ones((1, 2, 2, 4)))


@pytest.mark.parametrize("freeze", [True, False])
def test_jitted_step_trains_the_head_and_not_a_frozen_global_cnn(freeze):
    """The whole pipeline in one jitted gradient, no host callbacks: G -> box -> crop -> head."""
    images = jnp.asarray(np.random.default_rng(0).random((4, 32, 32, 3)), jnp.float32)
    labels = jnp.asarray([0, 1, 2, 1])
    global_cnn = VGG(layers=(8, "M", 16, "M", 16, "M"), num_classes=None, stop_at="features_8")
    global_vars = jax.jit(global_cnn.init)(jax.random.PRNGKey(0), images)
    head = AttentionHead(num_classes=3, width=1 / 16)
    head_vars = jax.jit(head.init)(jax.random.PRNGKey(1), jnp.ones((1, 16, 16, 3)), jnp.ones((1, 4, 4, 16)))

    def loss(global_params, head_params):
        features = global_cnn.apply({"params": global_params}, images)
        if freeze:
            features = jax.lax.stop_gradient(features)
        crops = crop_resize(images, heatmap_box(features, 0.7, image_hw=(32, 32)), 16)
        logits = head.apply({"params": head_params}, crops, features, train=True)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
    jaxpr = str(jax.make_jaxpr(grad)(global_vars["params"], head_vars["params"]))
    assert "callback" not in jaxpr
    global_grads, head_grads = grad(global_vars["params"], head_vars["params"])
    assert all(np.any(np.asarray(g)) for g in jax.tree.leaves(head_grads))
    global_reached = [bool(np.any(np.asarray(g))) for g in jax.tree.leaves(global_grads)]
    assert global_reached == [not freeze] * len(global_reached)
