"""Seed 002's named choices, light to import: config checks read them before anything heavy loads."""

VANILLA, ATTENTION = "vanilla", "attention"
# Phase 3's methods by name: the background behind the masks, and the adversary's brightness penalty
# (None: the dataset's `background.brightness_weight`; the ablation drops it).
BACKGROUND_METHODS: dict[str, dict] = {
    "black": {"background": "black"},
    "noise": {"background": "noise"},
    "texture": {"background": "texture"},
    "adversarial": {"background": "adversarial"},
    "adversarial_unpenalised": {"background": "adversarial", "brightness_weight": 0.0},
}
METHODS = (VANILLA, ATTENTION, *BACKGROUND_METHODS)
BACKGROUNDS = ("black", "noise", "texture", "adversarial")
SCHEDULES = ("alternating", "simultaneous")
TABLE = "table1"  # the test-background family of Table 1
RELIANCE = ("in9", "challenge")  # seed 004's families, named as its measures read them
