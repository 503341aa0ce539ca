"""Every config value checked at start-up, before data is read or anything is compiled.

A wrong value used to surface late or not at all: a negative blur sigma ran and reported nonsense,
`loop.log_every=0` divided by zero after 40 s of compiling, `data.image_size=7` failed while drawing
the dataset and left an empty TFDS directory behind. Here each config section has one checker, and
`check_config` runs those an experiment's config is made of. Every message names the dotted key, the
value and what is allowed (`config.loop.log_every=0: must be an integer >= 1`) and is a `ConfigError`.

Names are checked against the registries that resolve them at run time (models, convolutions,
optimizers, compute dtypes, the models' own feature names), so a new entry needs no change here.
Feature names and shapes come from tracing the configured models (`jax.eval_shape`: no compilation,
no device, well under a second). Only light modules are imported: no TensorFlow, so a mistake comes
back in about two seconds.
"""

import json
import math
import numbers
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple, NoReturn

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from ctxfuse_jax.data import blur_sources
from ctxfuse_jax.data import digits as digits_data
from ctxfuse_jax.data import quality_bins
from ctxfuse_jax.data.embedded import choices as embedded_choices
from ctxfuse_jax.errors import ConfigError
from ctxfuse_jax.degrade import backgrounds as degrade_backgrounds
from ctxfuse_jax.degrade import patterns as degrade_patterns
from ctxfuse_jax.degrade import presets as degrade_presets
from ctxfuse_jax.degrade import regions as degrade_regions
from ctxfuse_jax.evaluate import conditions as conditions_lib
from ctxfuse_jax.evaluate.taps import select_feature
from ctxfuse_jax.experiments import registry as experiments
from ctxfuse_jax.experiments.bg_invariant import choices as bg_choices
from ctxfuse_jax.experiments.bg_invariant import masks as bg_masks
from ctxfuse_jax.experiments.feature_cache_modes import MODES as FEATURE_CACHE_MODES
from ctxfuse_jax.models import INTERMEDIATES, WidthError, build_model, features
from ctxfuse_jax.models.fusion import FusionHead
from ctxfuse_jax.models.precision import compute_dtype as lookup_compute_dtype
from ctxfuse_jax.ops.conv import conv_module
from ctxfuse_jax.train.optim import OPTIMIZERS, SCHEDULES

Section = ml_collections.ConfigDict
SEED_LIMIT = 2 ** 32  # jax.random.PRNGKey(2**32) is PRNGKey(0): larger seeds repeat smaller ones


class Traced(NamedTuple):
    """A module's output shape and its tapped features' shapes, found by tracing (nothing computed)."""

    module: nn.Module
    output: tuple[int, ...]
    features: dict[str, tuple[int, ...]]


# --- shared helpers: one wording per kind of rule ---------------------------------------------


def _dotted(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def fail(key: str, value: Any, rule: str) -> NoReturn:
    """Raises the one-line error every check gives: `config.<key>=<value>: <rule>`."""
    raise ConfigError(f"config.{key}={value!r}: {rule}")


def section(config: Section, key: str, name: str) -> Section:
    """The subsection `name` of `config` (at `key`); a missing or non-section one is a ConfigError."""
    value = field(config, key, name)
    if not isinstance(value, ml_collections.ConfigDict):
        fail(_dotted(key, name), value, "must be a config section")
    return value


def field(config: Section, key: str, name: str) -> Any:
    """The value `name` of section `config` (at `key`); a missing one is a ConfigError, not an AttributeError."""
    if name not in config:
        raise ConfigError(f"config.{_dotted(key, name)} is missing; the config file must set it")
    return config[name]


def _is_integer(value: Any) -> bool:
    return embedded_choices.is_integer(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _shown(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


def _bounds(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{_shown(low)}, {_shown(high)}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {_shown(low)}"
    if high is not None:
        return f"{'<' if high_open else '<='} {_shown(high)}"
    return ""


def _within(value: float, low: float | None, high: float | None, low_open: bool, high_open: bool) -> bool:
    return ((low is None or (value > low if low_open else value >= low))
            and (high is None or (value < high if high_open else value <= high)))


def integer(config: Section, key: str, name: str, minimum: int | None = 1, maximum: int | None = None,
            why: str = "") -> int:
    """An integer (not a bool) in [minimum, maximum]: sizes, counts, steps, seeds."""
    value = field(config, key, name)
    if not _is_integer(value) or not _within(value, minimum, maximum, False, False):
        fail(_dotted(key, name), value,
             f"must be an integer {_bounds(minimum, maximum, False, False)}".rstrip() + (f" ({why})" if why else ""))
    return int(value)


def number(config: Section, key: str, name: str, low: float | None = None, high: float | None = None, *,
           low_open: bool = False, high_open: bool = False, why: str = "") -> float:
    """A finite real number (not a bool, not NaN) between `low` and `high`, ends open or closed."""
    value = field(config, key, name)
    if not _is_number(value) or not math.isfinite(value) or not _within(value, low, high, low_open, high_open):
        bounds = _bounds(low, high, low_open, high_open)
        fail(_dotted(key, name), value, f"must be a finite number {bounds}".rstrip() + (f" ({why})" if why else ""))
    return float(value)


def boolean(config: Section, key: str, name: str) -> bool:
    value = field(config, key, name)
    if not isinstance(value, bool):
        fail(_dotted(key, name), value, "must be True or False")
    return value


def string(config: Section, key: str, name: str) -> str:
    value = field(config, key, name)
    if not isinstance(value, str):
        fail(_dotted(key, name), value, "must be a string")
    return value


def one_of(config: Section, key: str, name: str, choices: Sequence[str], what: str) -> str:
    """A name from `choices`, refused in the registry's own words: `unknown <what> 'x'; choose one of ...`."""
    value = field(config, key, name)
    if not isinstance(value, str) or value not in choices:
        fail(_dotted(key, name), value, f"unknown {what} {value!r}; choose one of {choices}")
    return value


def registered(config: Section, key: str, name: str, lookup: Callable[[str], Any]) -> Any:
    """`lookup(value)` of a name-resolving registry; its ValueError, in its own words, becomes a ConfigError."""
    value = field(config, key, name)
    if not isinstance(value, str):
        fail(_dotted(key, name), value, "must be a name (a string)")
    try:
        return lookup(value)
    except ValueError as error:
        fail(_dotted(key, name), value, str(error))


def distinct_tuple(config: Section, key: str, name: str, what: str, is_valid: Callable[[Any], bool]) -> tuple:
    """A non-empty tuple of distinct elements, each `is_valid` (described by `what`, plural)."""
    value = field(config, key, name)
    rule = f"must be a non-empty tuple of distinct {what}"
    if not isinstance(value, (tuple, list)) or not value:
        fail(_dotted(key, name), value, rule)
    for element in value:
        if not is_valid(element):
            fail(_dotted(key, name), value, f"{rule}; {element!r} is not one")
    seen = set()
    for element in value:
        if element in seen:
            fail(_dotted(key, name), value, f"{rule}; {element!r} is given twice")
        seen.add(element)
    return tuple(value)


def _is_seed(value: Any) -> bool:
    return _is_integer(value) and 0 <= value < SEED_LIMIT


# --- sections config_defaults builds ---------------------------------------------------------


def check_optimizer(config: Section, key: str = "train.optimizer", num_epochs: float | None = None) -> None:
    """An optimizer section (`config_defaults.optimizer`); warm-up must end before `num_epochs` when given."""
    one_of(config, key, "name", sorted(OPTIMIZERS), "optimizer")
    number(config, key, "learning_rate", 0.0, low_open=True)
    number(config, key, "momentum", 0.0, 1.0, high_open=True)
    boolean(config, key, "nesterov")
    number(config, key, "weight_decay", 0.0)
    one_of(config, key, "schedule", SCHEDULES, "schedule")
    warmup = number(config, key, "warmup_epochs", 0.0)
    if num_epochs is not None and warmup >= num_epochs:
        fail(_dotted(key, "warmup_epochs"), field(config, key, "warmup_epochs"),
             f"the warm-up must end before training does, at num_epochs={num_epochs:g}")


def check_train(config: Section, key: str = "train", num_train: int | None = None) -> None:
    """A training section (`config_defaults.train`) with its augment and optimizer subsections.

    `num_train`, when known from the data config, is the training split's size: one batch must fit.
    """
    num_epochs = number(config, key, "num_epochs", 0.0, low_open=True)
    batch_size = integer(config, key, "batch_size", 1)
    if num_train is not None and batch_size > num_train:
        fail(_dotted(key, "batch_size"), batch_size,
             f"must be at most the {num_train} training examples the data config gives (one full batch per epoch)")
    number(config, key, "label_smoothing", 0.0, 1.0, high_open=True,
           why="the weight moved from the true class to a uniform target")
    augment = section(config, key, "augment")
    boolean(augment, _dotted(key, "augment"), "flip")
    integer(augment, _dotted(key, "augment"), "crop_padding", 0)
    check_optimizer(section(config, key, "optimizer"), _dotted(key, "optimizer"), num_epochs)


def check_loop(config: Section, key: str = "loop") -> None:
    """The training loop's periods (`config_defaults.loop`); `eval_every=0` evaluates only at the end;
    `train=False` refuses to train (`python -m ctxfuse_jax.report`). Configs written before `train`
    existed lack it: they train."""
    integer(config, key, "log_every", 1)
    integer(config, key, "checkpoint_every", 1)
    integer(config, key, "eval_every", 0, why="0 evaluates only at the end")
    if "train" in config:
        boolean(config, key, "train")


def _min_embedded_examples() -> int:
    return next(n for n in range(1, 100) if min(embedded_choices.split_sizes(n)) >= 1)


def _check_embedded(config: Section, key: str) -> None:
    one_of(config, key, "variant", embedded_choices.VARIANTS, "variant")
    integer(config, key, "image_size", embedded_choices.MIN_IMAGE_SIZE,
            why="smaller embedded images leave some objects without a pixel")
    num_examples = field(config, key, "num_examples")
    smallest = _min_embedded_examples()
    if not _is_integer(num_examples) or (num_examples != 0 and num_examples < smallest):
        fail(_dotted(key, "num_examples"), num_examples,
             f"must be 0 (the variant's default size) or an integer >= {smallest} "
             "(at least one train and one test example)")
    number(config, key, "context", 0.0, 1.0, why="a probability")
    integer(config, key, "seed", 0, SEED_LIMIT - 1)
    string(config, key, "data_dir")


def _check_coco(config: Section, key: str) -> None:
    integer(config, key, "image_size", 1)
    integer(config, key, "seed", 0, SEED_LIMIT - 1)
    string(config, key, "data_dir")
    string(config, key, "cache_dir")


def _check_digits(config: Section, key: str) -> None:
    """`config_defaults.digits_data`: the embedded digits or TFDS mnist / fashion_mnist."""
    integer(config, key, "image_size", digits_data.MIN_IMAGE_SIZE, why="smaller digits lose their strokes")
    integer(config, key, "seed", 0, SEED_LIMIT - 1)
    num_examples = field(config, key, "num_examples")
    smallest = digits_data.MIN_DIGITS_EXAMPLES
    if not _is_integer(num_examples) or (num_examples != 0 and num_examples < smallest):
        fail(_dotted(key, "num_examples"), num_examples, f"must be 0 (all) or an integer >= {smallest} "
                                                         "(every class in both splits)")
    number(config, key, "test_fraction", 0.0, 1.0, low_open=True, high_open=True, why="the share held out per class")
    string(config, key, "data_dir")


def _check_tfds_data(config: Section, key: str) -> None:
    """`config_defaults.tfds_data`: the blur study's TFDS imagenet2012 / oxford_iiit_pet."""
    integer(config, key, "image_size", 1)
    integer(config, key, "num_examples", 0, why="0 reads every record; else a cap on each split")
    integer(config, key, "seed", 0, SEED_LIMIT - 1)
    string(config, key, "data_dir")


# One checker per dataset of `data.sources.SOURCES` (a test keeps the two in step).
DATA_CHECKS: dict[str, Callable[[Section, str], None]] = {
    "embedded": _check_embedded, "coco": _check_coco, **{name: _check_digits for name in digits_data.NAMES},
    **{name: _check_tfds_data for name in blur_sources.NAMES}}


def check_data(config: Section, key: str = "data") -> None:
    """A dataset section (`config_defaults.embedded_data` or `coco_data`), by its `name`."""
    name = one_of(config, key, "name", sorted(DATA_CHECKS), "dataset")
    DATA_CHECKS[name](config, key)


def train_examples(config: Section) -> int | None:
    """The training split's size a (checked) data section gives, where it is known before loading."""
    if config.name != "embedded":
        return None
    total = config.num_examples or embedded_choices.DEFAULT_NUM_EXAMPLES[config.variant]
    return embedded_choices.split_sizes(total)[0]


def _image_shape(size: int, channels: int = 3) -> tuple[int, int, int, int]:
    return (1, size, size, channels)


def trace(module: nn.Module, *input_shapes: tuple[int, ...]) -> Traced:
    """`module.init` traced on float32 inputs of these shapes: its output and features, nothing computed.

    Touches no device (an abstract key, `jax.eval_shape`), so the backend is still free to be set up.
    """
    def init(key, *inputs):
        return module.init_with_output(key, *inputs, mutable=True)

    key = jax.ShapeDtypeStruct((2,), jnp.uint32)
    output, variables = jax.eval_shape(init, key, *(jax.ShapeDtypeStruct(s, jnp.float32) for s in input_shapes))
    tapped = features(variables[INTERMEDIATES]) if INTERMEDIATES in variables else {}
    return Traced(module, tuple(output.shape), {name: tuple(value.shape) for name, value in tapped.items()})


def _trace_backbone(model: nn.Module, width_key: str, width: float, size_key: str, size: int,
                    channels: int = 3) -> Traced:
    """The traced model; a width without channels or images it cannot take are told by their keys."""
    try:
        return trace(model, _image_shape(size, channels))
    except WidthError as error:
        fail(width_key, width, str(error))
    except (ValueError, TypeError) as error:
        fail(size_key, size, f"{type(model).__name__} cannot take {size}x{size} images "
                             f"({type(error).__name__}: {error}); use larger images")


def _backbone_options(config: Section, key: str, name_field: str, compute_dtype: str) -> tuple[str, dict]:
    """(model name, build_model kwargs) of a model section, each value checked."""
    registered(config, key, name_field, lambda name: build_model(name, num_classes=2))
    registered(config, key, "conv", conv_module)
    number(config, key, "width", 0.0, low_open=True, why="scales every layer's channels")
    return config[name_field], dict(width=config.width, conv=config.conv, dtype=lookup_compute_dtype(compute_dtype))


def check_model(config: Section, key: str = "model", *, image_size: int, image_key: str = "data.image_size",
                compute_dtype: str = "float32", channels: int = 3) -> Traced:
    """A zoo model section (`name`, `width`, `conv`, and any other keyword the model takes), traced on
    `image_size` images (`image_key` says where that size is set)."""
    name, options = _backbone_options(config, key, "name", compute_dtype)
    extra = {k: v for k, v in config.items() if k not in ("name", "width", "conv")}
    try:
        model = build_model(name, num_classes=2, **options, **extra)
    except TypeError as error:
        fail(key, config.to_dict(), f"{name} does not take these options ({error})")
    return _trace_backbone(model, _dotted(key, "width"), config.width, image_key, image_size, channels)


# --- top-level values -----------------------------------------------------------------------


def check_experiment(config: Section) -> str:
    """`config.experiment`: a name in `experiments.registry.EXPERIMENTS` (its module is not imported)."""
    registered(config, "", "experiment", experiments.experiment_module)
    return config.experiment


def check_compute_dtype(config: Section) -> None:
    """`config.compute_dtype`: a name in `models.precision.COMPUTE_DTYPES`."""
    registered(config, "", "compute_dtype", lookup_compute_dtype)


def check_seed(config: Section) -> None:
    """`config.seed` of a one-seed experiment."""
    integer(config, "", "seed", 0, SEED_LIMIT - 1)


def check_seeds(config: Section) -> None:
    """`config.seeds` of an experiment repeated per seed: each seed once, at least one."""
    distinct_tuple(config, "", "seeds", f"integers in [0, {SEED_LIMIT - 1}]", _is_seed)


# --- fusion (seed 000) sections ---------------------------------------------------------------


def _check_weights(config: Section, key: str, arch: str) -> str:
    path = string(config, key, "weights")
    if path and not os.path.isfile(path):
        problem = "is a directory, not a weights file" if os.path.isdir(path) else "no such file"
        fail(_dotted(key, "weights"), path,
             f"{problem}; convert PyTorch weights once with `python -m ctxfuse_jax.weights.convert --arch {arch} "
             f"--src FILE --dst {path}`, or set it to '' to pretrain the stream here")
    return path


def check_streams(config: Section, key: str = "streams", *, image_size: int, image_key: str = "data.image_size",
                  compute_dtype: str = "float32") -> Traced:
    """The two frozen streams: backbone, cut, convolution, and per role (fg, bg) weights or pretraining.

    Traces each backbone to be pretrained on its data's images and the stream (cut at `cut`) on the
    heads' `image_size` images; returns the stream's trace, whose features other sections name.
    """
    arch, options = _backbone_options(config, key, "arch", compute_dtype)
    cut = string(config, key, "cut")
    stream = build_model(arch, num_classes=None, stop_at=cut, **options)
    stages = [name for name, _ in stream.stages(train=False)]
    if cut not in stages:  # The wording of `Backbone`, which refuses it at run time.
        fail(_dotted(key, "cut"), cut, f"{type(stream).__name__} cannot stop at {cut!r}; its stages are {stages}")
    for role in ("fg", "bg"):
        role_key = _dotted(key, role)
        role_config = section(config, key, role)
        weights = _check_weights(role_config, role_key, arch)
        data = section(role_config, role_key, "data")
        check_data(data, _dotted(role_key, "data"))
        check_train(section(role_config, role_key, "train"), _dotted(role_key, "train"),
                    None if weights else train_examples(data))
        if not weights:
            _trace_backbone(build_model(arch, num_classes=2, **options), _dotted(key, "width"), config.width,
                            _dotted(role_key, "data.image_size"), data.image_size)
    traced = _trace_backbone(stream, _dotted(key, "width"), config.width, image_key, image_size)
    if len(traced.output) != 4:
        fail(_dotted(key, "cut"), cut, f"the heads need a feature map (batch, height, width, channels); the "
                                       f"stream cut there gives shape {traced.output}; cut at one of {stages[:-1]}")
    return traced


def check_heads(config: Section, key: str = "heads", *, stream_output: tuple[int, ...], conv: str = "auto",
                compute_dtype: str = "float32", num_train: int | None = None) -> Traced:
    """The heads on the frozen streams: fusion width, feature cache, training; returns the fusion head's trace.

    `stream_output` is the shape of a stream's features (both streams share it), `num_train` the
    heads' training split size when known.
    """
    fusion_features = integer(config, key, "fusion_features", 1)
    mode = one_of(config, key, "feature_cache", FEATURE_CACHE_MODES, f"{key}.feature_cache")
    number(config, key, "feature_cache_max_gib", 0.0)
    train_key = _dotted(key, "train")
    train = section(config, key, "train")
    check_train(train, train_key, num_train)
    crop_padding = train.augment.crop_padding
    if mode == "on" and crop_padding:  # `feature_cache.use_cache` relies on this check.
        fail(_dotted(key, "feature_cache"), mode,
             f"needs heads trained without crop augmentation, but {train_key}.augment.crop_padding={crop_padding}: "
             "every random crop is a new input for the streams, so there is nothing to reuse. Set crop_padding=0, "
             "or feature_cache='auto' (caches only when possible) or 'off'")
    head = FusionHead(2, features=fusion_features, conv=conv_module(conv), dtype=lookup_compute_dtype(compute_dtype))
    return trace(head, stream_output, stream_output)


CONDITION_FIELDS = {  # kind -> (required, optional) fields of one `eval.conditions` entry
    "gaussian_blur": (("sigmas", "reference_size", "region"), ()),
    "preset": (("preset", "region"), ("levels", "scale", "kernel_scale")),
    "variant": (("variants",), ()),
    "composite": (("num_foregrounds", "num_backgrounds"), ()),
    "pattern": (("patterns", "dilation"), ("rates", "textures")),
}


def _check_condition(config: Section, key: str) -> None:
    """One named condition family of the evaluator (`evaluate.conditions`), by its kind."""
    kind = one_of(config, key, "kind", tuple(CONDITION_FIELDS), "condition kind")
    required, optional = CONDITION_FIELDS[kind]
    extra = sorted(set(config) - {"kind", *required, *optional})
    if extra:
        fail(_dotted(key, extra[0]), config[extra[0]], f"is not a field of a {kind!r} condition; its fields are "
                                                       f"{('kind', *required, *optional)}")
    if "region" in required:
        one_of(config, key, "region", degrade_regions.REGIONS, "region")
    if kind == "gaussian_blur":
        distinct_tuple(config, key, "sigmas", "finite numbers >= 0 (blur strengths)",
                       lambda s: _is_number(s) and math.isfinite(s) and s >= 0)
        integer(config, key, "reference_size", 1, why="the image size the sigmas are given at")
    elif kind == "preset":
        preset = registered(config, key, "preset", _preset)
        if config.get("levels"):
            distinct_tuple(config, key, "levels", f"levels of {preset.name} {preset.labels}",
                           lambda level: level in preset.labels)
        host = [label for label in (config.get("levels") or preset.labels)
                if not conditions_lib.runs_on_device(preset[label])]
        if host:
            fail(_dotted(key, "preset"), preset.name, f"levels {host} run on the host (JPEG); the evaluator "
                                                      "transforms batches on device: choose a blur or noise preset")
        if config.get("scale"):
            integer(config, key, "scale", 1, why="the canonical short side the blurs run at (0: the preset's)")
        if "kernel_scale" in config:
            number(config, key, "kernel_scale", 1e-3, 10.0)
    elif kind == "variant":
        distinct_tuple(config, key, "variants", f"background variants {degrade_backgrounds.VARIANTS}",
                       lambda v: v in degrade_backgrounds.VARIANTS)
    elif kind == "pattern":
        names = (conditions_lib.ORIGINAL, *degrade_patterns.PATTERNS)
        chosen = distinct_tuple(config, key, "patterns", f"test backgrounds {names}", lambda v: v in names)
        if "salt_pepper" in chosen:
            distinct_tuple(config, key, "rates", "salt-and-pepper rates in (0, 1]",
                           lambda r: _is_number(r) and 0 < r <= 1)
        if "texture" in chosen:
            distinct_tuple(config, key, "textures", f"photographs {degrade_patterns.TEXTURES}",
                           lambda t: t in degrade_patterns.TEXTURES)
        integer(config, key, "dilation", 0, why="px the true mask grows by before the background replaces the rest")
    else:
        integer(config, key, "num_foregrounds", 0, why="test images whose foregrounds are pasted; 0: all")
        integer(config, key, "num_backgrounds", 0, why="backgrounds of the bank each foreground is pasted on; 0: all")


def _preset(name: str) -> Any:
    try:
        return degrade_presets.get_preset(name)
    except KeyError as error:
        raise ValueError(error.args[0]) from None


def check_eval(config: Section, key: str = "eval") -> Section:
    """The evaluator: batch size, the seed of its random draws, and the named conditions."""
    integer(config, key, "batch_size", 1)
    integer(config, key, "seed", 0, SEED_LIMIT - 1)
    conditions = section(config, key, "conditions")
    if not conditions:
        fail(_dotted(key, "conditions"), conditions.to_dict(), "needs at least one named condition")
    for name in conditions:
        _check_condition(section(conditions, _dotted(key, "conditions"), name), _dotted(key, f"conditions.{name}"))
    return conditions


def check_fusion_conditions(config: Section, key: str = "eval") -> None:
    """Fusion's report compares blur curves: Gaussian blur only, one sigma list, sharp and blurred."""
    for name, condition in section(config, key, "conditions").items():
        if isinstance(condition, ml_collections.ConfigDict) and condition.get("kind") != "gaussian_blur":
            fail(_dotted(key, f"conditions.{name}.kind"), condition.get("kind"),
                 "fusion compares blur curves: use 'gaussian_blur'")
    sigmas = None
    for name, condition in check_eval(config, key).items():
        where = _dotted(key, f"conditions.{name}")
        if 0 not in condition.sigmas or not any(s > 0 for s in condition.sigmas):
            fail(_dotted(where, "sigmas"), condition.sigmas, "needs sigma 0 and a sigma > 0: the report compares "
                                                             "blurred with sharp accuracy")
        if sigmas is not None and tuple(condition.sigmas) != sigmas:
            fail(_dotted(where, "sigmas"), condition.sigmas, f"must equal the other conditions' sigmas {sigmas} "
                                                             "(one figure shows them side by side)")
        sigmas = tuple(condition.sigmas)


def _feature_map(config: Section, key: str, name: str, traced: Traced) -> None:
    """`name` must be a spatial feature (batch, height, width, channels) of the traced module."""
    value = string(config, key, name)
    try:  # The wording of `evaluate.taps`, which looks the feature up at run time.
        shape = select_feature(traced.features, value, traced.module)
    except ValueError as error:
        fail(_dotted(key, name), value, str(error))
    if len(shape) != 4:
        spatial = sorted(n for n, s in traced.features.items() if len(s) == 4)
        fail(_dotted(key, name), value, f"must be a feature map (batch, height, width, channels), but has shape "
                                        f"{shape}; {type(traced.module).__name__}'s feature maps are: "
                                        f"{', '.join(spatial)}")


def check_analysis(config: Section, key: str = "analysis", *, stream: Traced, head: Traced) -> None:
    """The fusion paper's Grad-CAM and PCA figures: layers named on the traced `stream` and fusion `head`."""
    integer(config, key, "gradcam_images", 1)
    _feature_map(config, key, "joint_cam_layer", head)
    _feature_map(config, key, "pca_feature", stream)
    integer(config, key, "pca_classes", 1)
    integer(config, key, "pca_images_per_class", 2, why="a class's spread needs two examples")
    number(config, key, "pca_sigma", 0.0)


# --- experiments: the sections each one's config is made of -----------------------------------


def check_supervised(config: Section) -> None:
    """configs/supervised.py: one zoo model trained on one dataset."""
    check_seed(config)
    check_compute_dtype(config)
    data = section(config, "", "data")
    check_data(data, "data")
    check_train(section(config, "", "train"), "train", train_examples(data))
    check_loop(section(config, "", "loop"))
    check_model(section(config, "", "model"), "model", image_size=data.image_size,
                compute_dtype=config.compute_dtype)


def check_fusion(config: Section) -> None:
    """configs/fusion.py: two frozen streams, four heads, blur conditions and the paper's figures."""
    check_seeds(config)
    check_compute_dtype(config)
    data = section(config, "", "data")
    check_data(data, "data")
    check_fusion_conditions(section(config, "", "eval"))
    check_loop(section(config, "", "loop"))
    streams = section(config, "", "streams")
    stream = check_streams(streams, image_size=data.image_size, compute_dtype=config.compute_dtype)
    head = check_heads(section(config, "", "heads"), stream_output=stream.output, conv=streams.conv,
                       compute_dtype=config.compute_dtype, num_train=train_examples(data))
    check_analysis(section(config, "", "analysis"), stream=stream, head=head)


# --- in9 (seed 004) sections ------------------------------------------------------------------

IN9_RELEASE = "in9_folders"  # `experiments.in9.data.RELEASE`: the backgrounds-challenge folders
IN9_NEEDED = ("original", "mixed_same", "mixed_rand")  # the variants BG-gap and the challenge read


def _check_in9_conditions(config: Section) -> None:
    """The variant family `in9` (with the variants the measures read) and, optionally, `challenge`."""
    conditions = check_eval(section(config, "", "eval"), "eval")
    variants = conditions.get("in9")
    if variants is None or variants.kind != "variant":
        fail("eval.conditions.in9", variants and variants.to_dict(), "must be a 'variant' condition: the report "
                                                                     "reads every test variant from it")
    missing = [v for v in IN9_NEEDED if v not in variants.variants]
    if missing:
        fail("eval.conditions.in9.variants", variants.variants, f"lacks {missing}: BG-gap and the challenge read them")
    extra = sorted(set(conditions) - {"in9", "challenge"})
    if extra:
        fail(f"eval.conditions.{extra[0]}", conditions[extra[0]].to_dict(), "in9 reads the conditions 'in9' and "
                                                                              "'challenge' only")
    if "challenge" in conditions and conditions.challenge.kind != "composite":
        fail("eval.conditions.challenge.kind", conditions.challenge.kind, "must be 'composite'")


def _check_release(config: Section) -> None:
    """The released folders and the pretrained models scored on them (nothing is trained)."""
    data = config.data
    root = string(data, "data", "root")
    if not os.path.isdir(root):
        fail("data.root", root, "no such directory; download backgrounds_challenge_data from the releases of "
                                "github.com/MadryLab/backgrounds_challenge and pass its folder")
    integer(data, "data", "image_size", 16)
    if config.train_variants:
        fail("train_variants", config.train_variants, "must be () for the release: it holds test sets only")
    pretrained = section(config, "", "pretrained")
    if not pretrained:
        fail("pretrained", pretrained.to_dict(), "name at least one model to score (arch, width, num_classes, "
                                                 "weights, class_map)")
    for name, model in pretrained.items():
        key = f"pretrained.{name}"
        model = section(pretrained, "pretrained", name)
        registered(model, key, "arch", lambda arch: build_model(arch, num_classes=2))
        number(model, key, "width", 0.0, low_open=True)
        integer(model, key, "num_classes", 2)
        _check_weights(model, key, model.arch)
        if not model.weights:
            fail(_dotted(key, "weights"), model.weights, "must name a converted weights file")
        class_map = string(model, key, "class_map")
        if class_map and not os.path.isfile(class_map):
            fail(_dotted(key, "class_map"), class_map, "no such file; in_to_in9.json comes with "
                                                       "MadryLab/backgrounds_challenge ('' for a model with the "
                                                       "release's classes)")


def _check_fusion_workdir(config: Section) -> None:
    path = string(config, "", "fusion_workdir")
    if not path:
        return
    stored = os.path.join(path, "config.json")
    if not os.path.isfile(stored):
        fail("fusion_workdir", path, "holds no config.json: run configs/fusion.py there to the end first")
    with open(stored) as f:
        fusion = json.load(f)
    if fusion.get("experiment") != "fusion":
        fail("fusion_workdir", path, f"holds a {fusion.get('experiment')!r} run, not a fusion one")
    if fusion.get("data") != config.data.to_dict():
        fail("fusion_workdir", path, f"its models were trained on data {fusion.get('data')}, this run tests on "
                                     f"{config.data.to_dict()}: set config.data to the fusion run's")


def check_in9(config: Section) -> None:
    """configs/in9.py: models trained on background variants, scored on every variant and the challenge."""
    check_seeds(config)
    check_compute_dtype(config)
    check_loop(section(config, "", "loop"))
    _check_in9_conditions(config)
    if field(config, "", "train_variants"):  # () is allowed where nothing is trained (the release)
        distinct_tuple(config, "", "train_variants", f"background variants {degrade_backgrounds.VARIANTS}",
                       lambda v: v in degrade_backgrounds.VARIANTS)
    data = section(config, "", "data")
    if data.get("name") == IN9_RELEASE:
        _check_release(config)
        return
    check_data(data, "data")
    if data.name == "embedded" and data.variant != embedded_choices.OBJECTS:
        fail("data.variant", data.variant, f"must be {embedded_choices.OBJECTS!r}: the variants need each "
                                           "image's object mask and box")
    if not config.train_variants:
        fail("train_variants", config.train_variants, f"name the training sets, e.g. {IN9_NEEDED[:1]}")
    check_train(section(config, "", "train"), "train", train_examples(data))
    model = check_model(section(config, "", "model"), "model", image_size=data.image_size,
                        compute_dtype=config.compute_dtype)
    analysis = section(config, "", "analysis")
    _feature_map(analysis, "analysis", "cam_layer", model)
    for name in ("gradcam_images", "figure_images", "figure_classes", "figure_backgrounds"):
        integer(analysis, "analysis", name, 1)
    integer(analysis, "analysis", "progress_images", 0, why="test images scored while training; 0: all")
    integer(analysis, "analysis", "progress_every_epochs", 0, why="0: score the variants only at the end")
    _check_fusion_workdir(config)


def _check_bg_part(config: Section, key: str, compute_dtype: str) -> None:
    """One dataset of configs/bg_invariant.py: its data, players, phases, methods and test conditions."""
    data = section(config, key, "data")
    check_data(data, _dotted(key, "data"))
    plain = boolean(config, key, "plain_background")
    if data.name == "embedded" and data.variant != embedded_choices.OBJECTS:
        fail(_dotted(key, "data.variant"), data.variant, f"must be {embedded_choices.OBJECTS!r}: compositing needs "
                                                         "each image's object mask")
    if data.name != "embedded" and plain:
        fail(_dotted(key, "plain_background"), plain, "digits are on black already; True is for the embedded "
                                                      "objects, whose scenes then become a test set")
    seeds = field(config, key, "seeds")
    if not isinstance(seeds, (tuple, list)) or (seeds and not all(_is_seed(s) for s in seeds)) \
            or len(set(seeds)) != len(seeds):
        fail(_dotted(key, "seeds"), seeds, f"must be () (the config's seeds) or distinct integers in [0, {SEED_LIMIT})")
    size, channels = data.image_size, 1 if data.name in digits_data.NAMES else 3
    num_train = train_examples(data)
    check_train(section(config, key, "train"), _dotted(key, "train"), num_train)
    classifier = check_model(section(config, key, "classifier"), _dotted(key, "classifier"), image_size=size,
                             image_key=_dotted(key, "data.image_size"), compute_dtype=compute_dtype, channels=channels)
    conv = config.classifier.conv

    mask_key = _dotted(key, "mask")
    mask = section(config, key, "mask")
    width = number(mask, mask_key, "width", 0.0, low_open=True, why="scales the U-Net's channels")
    mask_conv = registered(mask, mask_key, "conv", conv_module)
    _trace_backbone(build_model("unet", width=width, conv=mask_conv), _dotted(mask_key, "width"), width,
                    _dotted(key, "data.image_size"), size, channels)
    number(mask, mask_key, "area", 0.0, 1.0, low_open=True, high_open=True, why="the mask's target share of the image")
    one_of(mask, mask_key, "area_loss", bg_masks.AREA_LOSSES, "area loss")
    number(mask, mask_key, "area_weight", 0.0)
    number(mask, mask_key, "tv_weight", 0.0)
    check_train(section(mask, mask_key, "train"), _dotted(mask_key, "train"), num_train)

    background_key = _dotted(key, "background")
    background = section(config, key, "background")
    one_of(background, background_key, "binarize", bg_masks.BINARIZE, "mask binarisation")
    number(background, background_key, "area", 0.0, 1.0, low_open=True, high_open=True,
           why="the share of each image the quantile rule keeps")
    one_of(background, background_key, "schedule", bg_choices.SCHEDULES, "schedule")
    number(background, background_key, "brightness_weight", 0.0)
    number(background, background_key, "clean_weight", 0.0, why="the weight of the loss on clean images; 0: composites only")
    integer(background, background_key, "dilation", 0, why="px the learned masks grow by before compositing")
    distinct_tuple(background, background_key, "textures", f"photographs {degrade_patterns.TEXTURES}",
                   lambda t: t in degrade_patterns.TEXTURES)
    integer(background, background_key, "texture_crops", 1, why="random texture crops the texture baseline draws from")
    check_train(section(background, background_key, "train"), _dotted(background_key, "train"), num_train)
    generator_key = _dotted(background_key, "generator")
    generator = section(background, background_key, "generator")
    tiles = integer(generator, generator_key, "tiles", 1, why="a tiles x tiles grid of generated patches")
    width = number(generator, generator_key, "width", 0.0, low_open=True, why="scales the generator's channels")
    try:
        module = build_model("background_generator", size=size, channels=channels, tiles=tiles, width=width,
                             conv=conv_module(conv))
        trace(module, module.noise_shape(1))
    except ValueError as error:
        fail(_dotted(generator_key, "tiles"), tiles, str(error))
    check_optimizer(section(generator, generator_key, "optimizer"), _dotted(generator_key, "optimizer"))

    attention_key = _dotted(key, "attention")
    attention = section(config, key, "attention")
    _feature_map(attention, attention_key, "layer", classifier)
    number(attention, attention_key, "tau", 0.0, 1.0, low_open=True, high_open=True,
           why="the share of the heat map's range a cell needs to be hot")
    integer(attention, attention_key, "crop_size", 4, why="px of the resized crop the local CNN reads")
    number(attention, attention_key, "width", 0.0, low_open=True)
    check_train(section(attention, attention_key, "train"), _dotted(attention_key, "train"), num_train)

    methods = distinct_tuple(config, key, "methods", f"methods {bg_choices.METHODS}",
                             lambda m: m in bg_choices.METHODS)
    if bg_choices.VANILLA not in methods:
        fail(_dotted(key, "methods"), methods, "must include 'vanilla': every claim compares with it")
    if channels == 3 and "adversarial_unpenalised" in methods:
        fail(_dotted(key, "methods"), methods, "'adversarial_unpenalised' is the single-channel ablation; colour "
                                               "images have no brightness penalty to drop")
    table = section(config, key, "table")
    _check_condition(table, _dotted(key, "table"))
    if table.kind != "pattern":
        fail(_dotted(key, "table.kind"), table.kind, "must be 'pattern': Table 1's test backgrounds")
    if conditions_lib.ORIGINAL not in table.patterns:
        fail(_dotted(key, "table.patterns"), table.patterns, "must include 'original' (the claims compare new "
                                                             "backgrounds with the training one)")
    reliance = section(config, key, "reliance")
    if reliance and not plain:
        fail(_dotted(key, "reliance"), reliance.to_dict(), "needs the objects' scenes: plain_background=True on "
                                                           "the embedded objects, else {}")
    for name in reliance:
        where = _dotted(key, f"reliance.{name}")
        condition = section(reliance, _dotted(key, "reliance"), name)
        _check_condition(condition, where)
        expected = dict(zip(bg_choices.RELIANCE, ("variant", "composite")))
        if expected.get(name) != condition.kind:
            fail(where, condition.to_dict(), f"seed 004's measures read {expected}")
    if "in9" in reliance and not set(IN9_NEEDED) <= set(reliance.in9.variants):
        fail(_dotted(key, "reliance.in9.variants"), reliance.in9.variants, f"must include {IN9_NEEDED}")


def check_bg_invariant(config: Section) -> None:
    """configs/bg_invariant.py: per dataset, the three phases, the baselines and the test conditions."""
    check_seeds(config)
    check_compute_dtype(config)
    check_loop(section(config, "", "loop"))
    integer(section(config, "", "eval"), "eval", "batch_size", 1)
    integer(config.eval, "eval", "seed", 0, SEED_LIMIT - 1)
    integer(section(config, "", "analysis"), "analysis", "figure_images", 1)
    datasets = section(config, "", "datasets")
    if not datasets:
        fail("datasets", datasets.to_dict(), "needs at least one dataset, e.g. digits")
    for name in datasets:
        _check_bg_part(section(datasets, "datasets", name), f"datasets.{name}", config.compute_dtype)


def check_blur_study(config: Section) -> None:
    """configs/blur_study.py: scales, the original model, the mixtures, conditions, deblurring, segmentation."""
    from ctxfuse_jax.experiments.blur_study import choices as blur_choices

    check_seeds(config)
    check_compute_dtype(config)
    check_loop(section(config, "", "loop"))
    data = section(config, "", "data")
    check_data(data, "data")
    canonical = integer(data, "data", "image_size", 1, why="the canonical scale: the stored images' side")
    protocol = section(config, "", "protocol")
    scales = distinct_tuple(protocol, "protocol", "scales", "network scales in px (>= 1)",
                            lambda s: isinstance(s, int) and s >= 1)
    base = integer(protocol, "protocol", "base_scale", 1)
    if base not in scales:
        fail("protocol.base_scale", base, f"must be one of protocol.scales {scales}")
    for i, combination in enumerate(field(protocol, "protocol", "combinations")):
        if len(combination) < 2 or not set(combination) <= set(scales):
            fail(f"protocol.combinations[{i}]", combination, f"needs two or more of protocol.scales {scales}")
    crop = integer(protocol, "protocol", "train_crop", 1)
    rescales = distinct_tuple(protocol, "protocol", "rescales", "short sides in px (>= 1) the training images are "
                              "rescaled to before blurring", lambda s: isinstance(s, int) and s >= 1)
    model = section(config, "", "model")
    one_of(model, "model", "name", blur_choices.VGG_MODELS, "model (the study's fully convolutional evaluation "
                                                            "needs a VGG)")
    check_model(model, "model", image_size=crop, image_key="protocol.train_crop",
                compute_dtype=config.compute_dtype)
    pretrained = section(config, "", "pretrained")
    string(pretrained, "pretrained", "weights")
    original = section(config, "", "original")
    check_train(section(original, "original", "train"), "original.train", train_examples(data))
    level_names = {label for name in blur_choices.LEVEL_PRESETS for label in degrade_presets.get_preset(name).labels}
    options = (blur_choices.SHARP, *sorted(level_names))

    def target_scales(section_config, key: str) -> tuple:
        chosen = distinct_tuple(section_config, key, "target_scales", f"network scales of protocol.scales {scales}",
                                lambda s: isinstance(s, int) and s >= 1)
        smallest = min(chosen)
        if crop * canonical > min(rescales) * smallest:
            fail(_dotted(key, "target_scales"), chosen,
                 f"a {crop} px crop at scale {smallest} of an image rescaled to {min(rescales)} px needs more than the "
                 f"{canonical} px stored (train_crop * image_size <= min(rescales) * min(target_scales))")
        return chosen

    target_scales(original, "original")
    fine_tune = section(config, "", "fine_tune")
    check_train(section(fine_tune, "fine_tune", "train"), "fine_tune.train", train_examples(data))
    mixtures = section(fine_tune, "fine_tune", "mixtures")
    for name in mixtures:
        key = f"fine_tune.mixtures.{name}"
        mixture = section(mixtures, "fine_tune.mixtures", name)
        weights = section(mixture, key, "weights")
        for option in weights:
            if option not in options:
                fail(f"{key}.weights.{option}", weights[option], f"is not a blur option; choose from {options}")
            number(weights, f"{key}.weights", option, 0.0)
        if not sum(weights.values()) > 0:
            fail(f"{key}.weights", weights.to_dict(), "needs a positive weight")
        chosen = target_scales(mixture, key)
        if "shake" in weights and len(chosen) > 1:
            fail(f"{key}.target_scales", chosen, "camera-shake kernels come from a fixed bank: fine-tune them at "
                                                 "one target scale")
        if not set(chosen) <= set(scales):
            fail(f"{key}.target_scales", chosen, f"must be among protocol.scales {scales} (they are evaluated there)")
    for name, members in section(fine_tune, "fine_tune", "ensembles").items():
        unknown = [m for m in members if m not in mixtures]
        if unknown or len(members) < 2:
            fail(f"fine_tune.ensembles.{name}", members, f"needs two or more of fine_tune.mixtures {list(mixtures)}")
    conditions = check_eval(section(config, "", "eval"), "eval")
    levels = {blur_choices.SHARP: (blur_choices.SHARP,)}
    for name, condition in conditions.items():
        if condition.kind != "preset" or condition.get("scale") or "kernel_scale" in condition:
            fail(f"eval.conditions.{name}", condition.to_dict(), "the study's conditions are blur presets; the "
                                                                 "experiment sets their scale (leave scale unset)")
        levels[name] = tuple(condition.get("levels") or degrade_presets.get_preset(condition.preset).labels)
    deblur = section(config, "", "deblur")
    if deblur.level not in level_names:
        fail("deblur.level", deblur.level, f"must be one of {sorted(level_names)}")
    from ctxfuse_jax.degrade.deconvolution import METHODS  # light: jax only

    one_of(deblur, "deblur", "method", tuple(METHODS), "deconvolution method")
    for key in ("model_conditions", "scale_conditions"):
        distinct_tuple(config.eval, "eval", key, f"test conditions {sorted(levels)}", lambda s: s in levels)
    levels[blur_choices.DEBLURRED] = (deblur.level,)
    models = (blur_choices.ORIGINAL, *mixtures)
    segmentation = section(config, "", "segmentation")
    if boolean(segmentation, "segmentation", "enabled"):
        if segmentation.fine_tuned_trunk not in mixtures:
            fail("segmentation.fine_tuned_trunk", segmentation.fine_tuned_trunk,
                 f"must be one of fine_tune.mixtures {list(mixtures)}")
        stages = [n for n, _ in build_model(model.name, num_classes=2, width=model.width).stages(False)]
        distinct_tuple(segmentation, "segmentation", "layers", f"stages of {model.name} {stages}",
                       lambda s: s in stages)
        integer(segmentation, "segmentation", "hidden", 1)
        if segmentation.data:
            check_data(section(segmentation, "segmentation", "data"), "segmentation.data")
        elif data.name != "embedded":
            fail("segmentation.data", segmentation.data.to_dict(), f"{data.name} has no masks: name a dataset that has "
                                                                  "(e.g. oxford_iiit_pet), or set enabled=False")
        integer(segmentation, "segmentation", "band_width", 0, why="px around class boundaries")
        distinct_tuple(segmentation, "segmentation", "conditions", f"test conditions {sorted(levels)}",
                       lambda s: s in levels and s != blur_choices.DEBLURRED)
        check_train(section(segmentation, "segmentation", "train"), "segmentation.train", train_examples(data))
    analysis = section(config, "", "analysis")
    integer(analysis, "analysis", "figure_images", 1)
    integer(analysis, "analysis", "invariance_images", 1)
    probe = section(analysis, "analysis", "invariance_condition")
    if probe.family not in levels or probe.level not in levels[probe.family]:
        fail("analysis.invariance_condition", probe.to_dict(), f"must name a condition and one of its levels: {levels}")
    for name in ("invariance_models", "example_models"):
        distinct_tuple(analysis, "analysis", name, f"models {models}", lambda m: m in models)


def _check_quality_bin(config: Section, key: str) -> quality_bins.Bin:
    """One bin (`data.quality_bins.Bin`'s fields), built so its own rules are checked."""
    fields = {name: field(config, key, name) for name in ("kind", "low", "high")}
    fields.update({name: config[name] for name in ("blur_sigma", "noise_std") if name in config})
    unknown = sorted(set(config) - {"kind", "low", "high", "blur_sigma", "noise_std"})
    if unknown:
        fail(_dotted(key, unknown[0]), config[unknown[0]], "is not a field of a quality bin (kind, low, high, "
                                                          "blur_sigma, noise_std)")
    one_of(config, key, "kind", quality_bins.KINDS, "degradation kind")
    try:
        return quality_bins.Bin(**fields)
    except (TypeError, ValueError) as error:
        fail(key, config.to_dict(), str(error))


def _stages_of(model: nn.Module) -> list[str]:
    return [name for name, _ in model.stages(train=False)]


def check_master_slave(config: Section) -> None:
    """configs/master_slave.py: the base models, the bins, the master, the slave, the baselines and the sweeps."""
    check_seeds(config)
    check_compute_dtype(config)
    check_loop(section(config, "", "loop"))
    data = section(config, "", "data")
    check_data(data, "data")
    size = integer(data, "data", "image_size", 1)
    examples = train_examples(data)
    models = section(config, "", "models")
    modules = {}
    for name in models:
        key = f"models.{name}"
        entry = section(models, "models", name)
        string(entry, key, "label")
        string(entry, key, "weights")
        model = section(entry, key, "model")
        check_model(model, f"{key}.model", image_size=size, compute_dtype=config.compute_dtype)
        check_train(section(entry, key, "train"), f"{key}.train", examples)
        modules[name] = build_model(model.name, num_classes=2, **{k: v for k, v in model.items() if k != "name"})
    labels = [models[name].label for name in models]
    if len(set(labels)) != len(labels):
        fail("models", labels, "each model needs its own label (they name the curves)")
    bins_section = section(config, "", "bins")
    bins = field(bins_section, "bins", "bins")
    if not isinstance(bins, (list, tuple)) or len(bins) < 2:
        fail("bins.bins", bins, "needs two or more quality bins, the first the clean one (the base model's branch)")
    built = [_check_quality_bin(ml_collections.ConfigDict(dict(b)), f"bins.bins[{i}]") for i, b in enumerate(bins)]
    if built[0] != quality_bins.Bin(quality_bins.CLEAN):
        fail("bins.bins[0]", dict(bins[0]), "must be the clean bin: the slave's first branch is the base model")
    if len(set(built)) != len(built):
        fail("bins.bins", [dict(b) for b in bins], "has the same bin twice")
    probabilities = field(bins_section, "bins", "probabilities")
    if probabilities:
        try:
            quality_bins.QualityBins(tuple(built), tuple(probabilities))
        except ValueError as error:
            fail("bins.probabilities", probabilities, str(error))
    master = section(config, "", "master")
    check_model(section(master, "master", "model"), "master.model", image_size=size,
                compute_dtype=config.compute_dtype)
    check_train(section(master, "master", "train"), "master.train", examples)
    slave = section(config, "", "slave")
    base = one_of(slave, "slave", "base", tuple(models), "model of `models`")
    stages = _stages_of(modules[base])
    one_of(slave, "slave", "split", tuple(stages), f"stage of {models[base].model.name} to cut the trunk after")
    check_train(section(slave, "slave", "train"), "slave.train", examples)
    baselines = section(config, "", "baselines")
    augmentation = section(baselines, "baselines", "augmentation")
    splits = section(augmentation, "baselines.augmentation", "splits")
    for name in splits:
        one_of(splits, "baselines.augmentation.splits", name, tuple(stages),
               f"stage of {models[base].model.name} after which the layers are fine-tuned")
    check_train(section(augmentation, "baselines.augmentation", "train"), "baselines.augmentation.train", examples)
    stability = section(baselines, "baselines", "stability")
    number(stability, "baselines.stability", "alpha", 0.0, why="the weight of the stability term")
    number(stability, "baselines.stability", "noise_std", 0.0, low_open=True, why="images in [0, 1]")
    check_train(section(stability, "baselines.stability", "train"), "baselines.stability.train", examples)
    masking = section(baselines, "baselines", "masking")
    one_of(masking, "baselines.masking", "stage", tuple(stages), f"stage of {models[base].model.name} to mask")
    number(masking, "baselines.masking", "fraction", 0.0, 1.0, low_open=True, high_open=True)
    integer(masking, "baselines.masking", "images", 1)
    boolean(masking, "baselines.masking", "per_class")
    evaluation = section(config, "", "eval")
    integer(evaluation, "eval", "batch_size", 1)
    integer(evaluation, "eval", "seed", 0, SEED_LIMIT - 1)
    sweeps = section(evaluation, "eval", "sweeps")
    if not sweeps:
        fail("eval.sweeps", sweeps.to_dict(), "needs at least one sweep")
    for name in sweeps:
        key = f"eval.sweeps.{name}"
        sweep = section(sweeps, "eval.sweeps", name)
        kind = one_of(sweep, key, "kind", quality_bins.KINDS[1:], "degradation kind")
        qualities = distinct_tuple(sweep, key, "qualities", "qualities", _is_number)
        for quality in qualities:
            extra = {k: sweep[k] for k in ("blur_sigma", "noise_std")}
            _check_quality_bin(ml_collections.ConfigDict(dict(kind=kind, low=quality, high=quality, **extra)),
                               f"{key} (quality {quality!r})")
    table = section(evaluation, "eval", "table")
    table_kind = one_of(table, "eval.table", "kind", quality_bins.KINDS[1:], "degradation kind")
    _check_quality_bin(ml_collections.ConfigDict(dict(kind=table_kind, low=table.quality, high=table.quality)),
                       "eval.table")


# --- robustness: any finished workdir's classifiers under every corruption ---------------------


def _check_finished_workdir(key: str, spec: Any) -> None:
    """`PATH` or `PATH:DATASET`: a workdir whose run ended (results.json written, every stage with
    checkpoints finished), of an experiment that trains classifiers, and one of its datasets where
    it holds several (bg_invariant); read, never written."""
    from ctxfuse_jax.workdir import CONFIG_FILE, STAGE_RESULT_FILE, workdir_and_choices  # light: json and os

    if not isinstance(spec, str) or not spec:
        fail(key, spec, "must be the path of a finished workdir")
    path, choices = workdir_and_choices(spec)
    train = "train there first with `python -m ctxfuse_jax.main --config=configs/<experiment>.py --workdir=...`"
    if not os.path.isdir(path):
        fail(key, spec, f"no such directory {path}; {train}")
    stored = os.path.join(path, CONFIG_FILE)
    try:
        with open(stored) as f:
            recorded = json.load(f)
        experiment = recorded.get("experiment")
    except (OSError, ValueError, AttributeError):
        fail(key, spec, f"holds no readable {CONFIG_FILE}, so no ctxfuse_jax run; {train}")
    if experiment not in experiments.EXPERIMENTS or experiment == "robustness":
        fail(key, spec, f"holds a {experiment!r} run, which has no classifiers to score")
    datasets = list(recorded.get("datasets", {})) if experiment == "bg_invariant" else []
    if "dataset" in choices and choices["dataset"] not in datasets:
        fail(key, spec, f"names the dataset {choices['dataset']!r}, but that {experiment} run holds "
                        + (f"the datasets {datasets}" if datasets else "no datasets to choose from"))
    if "dataset" not in choices and len(datasets) > 1:
        fail(key, spec, f"holds the datasets {datasets}: name one as PATH:DATASET, e.g. '{path}:{datasets[0]}'")
    unfinished = sorted(os.path.relpath(root, path) for root, dirs, files in os.walk(path)
                        if "checkpoints" in dirs and STAGE_RESULT_FILE not in files)
    if unfinished or not os.path.isfile(os.path.join(path, "results.json")):
        what = f"stage {unfinished[0]} has no {STAGE_RESULT_FILE}" if unfinished else "it has no results.json"
        fail(key, spec, f"is not finished ({what}): run its config there to the end first")


def check_robustness(config: Section) -> None:
    """configs/robustness.py: finished workdirs, the corruptions (preset levels), regions, variants, eval."""
    from ctxfuse_jax.experiments.robustness import conditions as robustness_conditions  # light: no TensorFlow

    workdirs = distinct_tuple(config, "", "workdirs", "paths of finished workdirs (PATH:DATASET for one dataset "
                              "of a bg_invariant run), e.g. --config.workdirs='(\"/tmp/sup\",)'",
                              lambda p: isinstance(p, str) and bool(p))
    for index, path in enumerate(workdirs):
        _check_finished_workdir(f"workdirs[{index}]", path)
    string(config, "", "baseline")
    corruptions = section(config, "", "corruptions")
    if not corruptions:
        fail("corruptions", corruptions.to_dict(), "needs at least one corruption, e.g. "
                                                   "dict(preset='imagenet_c/gaussian_blur', levels=())")
    for name in corruptions:
        key = f"corruptions.{name}"
        entry = section(corruptions, "corruptions", name)
        extra = sorted(set(entry) - {"preset", "levels"})
        if extra:
            fail(_dotted(key, extra[0]), entry[extra[0]], "is not a field of a corruption; its fields are "
                                                          "('preset', 'levels')")
        preset = registered(entry, key, "preset", _preset)
        if field(entry, key, "levels"):
            distinct_tuple(entry, key, "levels", f"levels of {preset.name} {preset.labels}",
                           lambda level: level in preset.labels)
        try:
            robustness_conditions.corruptions({name: entry.to_dict()})
        except ValueError as error:
            fail(key, entry.to_dict(), str(error))
    regions = distinct_tuple(config, "", "regions", f"regions {degrade_regions.REGIONS}",
                             lambda r: r in degrade_regions.REGIONS)
    if robustness_conditions.ALL not in regions:
        fail("regions", regions, "must hold 'all': the summary and mCE are of the whole image corrupted")
    if field(config, "", "variants"):
        distinct_tuple(config, "", "variants", f"background variants {degrade_backgrounds.VARIANTS}",
                       lambda v: v in degrade_backgrounds.VARIANTS)
    evaluation = section(config, "", "eval")
    integer(evaluation, "eval", "batch_size", 1)
    integer(evaluation, "eval", "seed", 0, SEED_LIMIT - 1)
    integer(evaluation, "eval", "num_images", 0, why="test images scored per workdir; 0: all")


# One per experiment of `experiments.registry.EXPERIMENTS` (a test keeps the two in step).
EXPERIMENT_CHECKS: dict[str, Callable[[Section], None]] = {
    "bg_invariant": check_bg_invariant, "blur_study": check_blur_study, "fusion": check_fusion,
    "in9": check_in9, "master_slave": check_master_slave, "robustness": check_robustness,
    "supervised": check_supervised}


def check_config(config: Section) -> None:
    """Checks the whole config of `config.experiment`; raises a `ConfigError` naming the first wrong value.

    Call it first: it reads no data, touches no device and imports nothing heavy.
    """
    name = check_experiment(config)
    if name not in EXPERIMENT_CHECKS:
        raise NotImplementedError(f"experiment {name!r} has no config checks; add them to "
                                  "config_checks.EXPERIMENT_CHECKS")
    EXPERIMENT_CHECKS[name](config)


def _batch_sizes(config: Mapping, key: str = "") -> Iterator[tuple[str, Any]]:
    for name, value in config.items():
        if isinstance(value, Mapping):
            yield from _batch_sizes(value, _dotted(key, name))
        elif name == "batch_size":
            yield _dotted(key, name), value


def check_devices(config: Section, num_devices: int) -> None:
    """Every global batch size must split evenly over the `num_devices` devices (of all hosts)."""
    for key, batch_size in _batch_sizes(config.to_dict()):
        if batch_size % num_devices:
            fail(key, batch_size, f"must be a multiple of the number of devices ({num_devices}); choose e.g. "
                                  f"{max(num_devices, batch_size // num_devices * num_devices)}")

