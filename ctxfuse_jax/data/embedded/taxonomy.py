"""Names of the embedded dataset's classes, supercategories and scenes, and how they relate.

Every supercategory owns six object classes and three scene types (its "context"), the way COCO
animals live on grass and vehicles on roads. Indices follow the order of the tuples below.
"""

import dataclasses

CLASSES_BY_SUPERCATEGORY: dict[str, tuple[str, ...]] = {
    "animal": ("fish", "bird", "butterfly", "snail", "turtle", "spider"),
    "vehicle": ("car", "bus", "truck", "bicycle", "airplane", "sailboat"),
    "kitchen": ("cup", "bottle", "wine_glass", "fork", "knife", "spoon"),
    "sports": ("ball", "tennis_racket", "kite", "skateboard", "surfboard", "frisbee"),
}
SCENES_BY_SUPERCATEGORY: dict[str, tuple[str, ...]] = {
    "animal": ("grass", "forest", "meadow"),
    "vehicle": ("road", "street", "sky"),
    "kitchen": ("tiles", "wood", "checkered_floor"),
    "sports": ("court", "snow", "beach"),
}


@dataclasses.dataclass(frozen=True)
class EmbeddedInfo:
    """Label names and the class -> supercategory and scene -> supercategory maps (by index)."""

    class_names: tuple[str, ...]
    supercategory_names: tuple[str, ...]
    scene_names: tuple[str, ...]
    class_supercategory: tuple[int, ...]
    scene_supercategory: tuple[int, ...]

    def scenes_of(self, supercategory: int) -> tuple[int, ...]:
        """Scene indices that form the context of `supercategory`."""
        return tuple(s for s, c in enumerate(self.scene_supercategory) if c == supercategory)


def _flatten(groups: dict[str, tuple[str, ...]]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    names = tuple(name for members in groups.values() for name in members)
    owners = tuple(i for i, members in enumerate(groups.values()) for _ in members)
    return names, owners


def embedded_info() -> EmbeddedInfo:
    """The dataset's label spaces; identical for every variant, image size and seed."""
    class_names, class_supercategory = _flatten(CLASSES_BY_SUPERCATEGORY)
    scene_names, scene_supercategory = _flatten(SCENES_BY_SUPERCATEGORY)
    return EmbeddedInfo(
        class_names=class_names,
        supercategory_names=tuple(CLASSES_BY_SUPERCATEGORY),
        scene_names=scene_names,
        class_supercategory=class_supercategory,
        scene_supercategory=scene_supercategory,
    )
