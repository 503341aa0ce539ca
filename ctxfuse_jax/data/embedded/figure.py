"""Draws a grid of embedded examples: every class on its scene with its box, the crops, the scenes.

    python -m ctxfuse_jax.data.embedded.figure --out docs/embedded_examples.png

Examples come straight from the generator (the same pure function the TFDS builder writes), so
this needs no prepared dataset. Scene captions are green when the scene is in the context of the
object's supercategory and red when it was drawn at random from another group.
"""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
from absl import app, flags  # noqa: E402

from ctxfuse_jax.data.embedded.examples import OBJECT_CROPS, OBJECTS, SCENES, Recipe, make_example  # noqa: E402
from ctxfuse_jax.data.embedded.taxonomy import CLASSES_BY_SUPERCATEGORY, EmbeddedInfo, embedded_info  # noqa: E402

_OUT = flags.DEFINE_string("out", "docs/embedded_examples.png", "Where to write the PNG.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 64, "Image side in pixels.")
_SEED = flags.DEFINE_integer("seed", 0, "Dataset seed.")

_COLUMNS = len(next(iter(CLASSES_BY_SUPERCATEGORY.values())))  # one supercategory per row of objects
_CELL, _HEADING = 1.6, 0.3  # inches per grid row; height of a heading row in rows
_IN_CONTEXT, _OUT_OF_CONTEXT, _NEUTRAL, _BOX = "#1a7f37", "#c62828", "#444444", "#ffd400"


def draw(image_size: int = 64, seed: int = 0) -> plt.Figure:
    """The figure: objects (one per class), object crops and scenes, each panel under its heading."""
    info = embedded_info()
    classes = len(info.class_names)
    panels = (
        (OBJECTS, "objects: every class on a scene of its supercategory's context (green) or of another (red)",
         range(classes)),  # example i shows class i
        (OBJECT_CROPS, "object_crops: objects filling the frame, on any scene (foreground pretraining)",
         range(0, classes, classes // _COLUMNS)),
        (SCENES, "scenes: no object, labelled by scene type (background pretraining)", range(len(info.scene_names))),
    )
    heights = [h for _, _, indices in panels for h in [_HEADING] + [1.0] * (len(indices) // _COLUMNS)]
    figure, grid = plt.subplots(len(heights), _COLUMNS, figsize=(_CELL * _COLUMNS, _CELL * sum(heights)), dpi=80,
                                gridspec_kw=dict(height_ratios=heights, hspace=0.5, wspace=0.08))
    figure.subplots_adjust(left=0.02, right=0.98, top=0.99, bottom=0.01)
    row = 0
    for variant, title, indices in panels:
        for axis in grid[row]:
            axis.axis("off")
        grid[row, 0].text(0.0, 0.0, title, fontsize=10, transform=grid[row, 0].transAxes)
        recipe = Recipe(variant, image_size, seed)
        for index, axis in zip(indices, grid[row + 1:].flat):
            _show(axis, make_example(recipe, index), info, image_size, mark_context=variant == OBJECTS)
        row += 1 + len(indices) // _COLUMNS
    return figure


def _show(axis: plt.Axes, example: dict, info: EmbeddedInfo, size: int, mark_context: bool) -> None:
    axis.imshow(example["image"], interpolation="nearest")
    axis.set_xticks([])
    axis.set_yticks([])
    scene = info.scene_names[example["scene"]]
    if "label" not in example:
        axis.set_title(scene, fontsize=8)
        return
    ymin, xmin, ymax, xmax = example["bbox"] * size - 0.5
    axis.add_patch(plt.Rectangle((xmin, ymin), xmax - xmin, ymax - ymin, fill=False, lw=1.2, color=_BOX))
    supercategory = example["supercategory"]
    colour = _NEUTRAL
    if mark_context:
        colour = _IN_CONTEXT if info.scene_supercategory[example["scene"]] == supercategory else _OUT_OF_CONTEXT
    axis.set_title(f"{info.class_names[example['label']]} ({info.supercategory_names[supercategory]})",
                   fontsize=8, pad=12)
    axis.text(0.5, 1.02, f"on {scene}", transform=axis.transAxes, ha="center", va="bottom", fontsize=7,
              color=colour)


def main(argv: list[str]) -> None:
    del argv
    figure = draw(_IMAGE_SIZE.value, _SEED.value)
    figure.savefig(_OUT.value)
    print(f"wrote {_OUT.value}")


if __name__ == "__main__":
    app.run(main)
