"""Scoring 1000-class ImageNet models on the 9 IN-9 classes through MadryLab's `in_to_in9.json`.

The file maps each ImageNet class index (a string key, "0".."999") to its IN-9 class, or to -1 for the
classes outside IN-9. MadryLab/backgrounds_challenge score a 1000-class model this way
(`tools/model_utils.py`, `eval_model` and `adv_bgs_eval_model`): take its top-1 ImageNet class and map it;
a top-1 class outside IN-9 becomes -1, which equals no label and so counts as wrong. Probabilities are
not pooled per IN-9 class. Their lookup `map_to_in9[str(x)]` needs every source class, and their file
lists all 1000, so a file that lacks one is refused here rather than read as -1.
"""

import collections
import json

import jax
import jax.numpy as jnp
import numpy as np

from ctxfuse_jax.errors import ConfigError, DataError

UNMAPPED = -1
_INT32_MAX = int(np.iinfo(np.int32).max)


def load_class_map(path: str, num_source: int = 1000, num_target: int | None = None) -> np.ndarray:
    """The map as int32 (num_source,): source class -> target class, or UNMAPPED; a bad file is refused."""
    duplicates = []

    def to_dict(pairs: list[tuple[str, object]]) -> dict:
        duplicates.extend(k for k, n in collections.Counter(k for k, _ in pairs).items() if n > 1)
        return dict(pairs)

    try:
        with open(path, encoding="utf-8") as f:
            entries = json.load(f, object_pairs_hook=to_dict)
    except OSError as error:
        raise DataError(f"class map {path} cannot be read ({error.strerror or error}): put MadryLab's "
                        "in_to_in9.json (github.com/MadryLab/backgrounds_challenge) there") from None
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError
        raise ConfigError(f"class map {path} is not valid JSON: {error}") from None
    if not isinstance(entries, dict):
        raise ConfigError(f"class map {path}: expected a JSON object {{\"<source class>\": <target class or -1>}}"
                          f", got a {type(entries).__name__}")
    if duplicates:
        raise ConfigError(f"class map {path}: keys {sorted(duplicates)} appear more than once")
    upper = _INT32_MAX if num_target is None else num_target - 1
    allowed = "an int32 class index" if num_target is None else f"a target class index 0..{upper}"
    targets = {}
    for key, value in entries.items():
        if not (key.isascii() and key.isdigit() and str(int(key)) == key and int(key) < num_source):
            raise ConfigError(f"class map {path}: key {key!r} is not a source class index 0..{num_source - 1}")
        if isinstance(value, bool) or not isinstance(value, int) or not UNMAPPED <= value <= upper:
            raise ConfigError(f"class map {path}: {key!r}: {value!r} is not {allowed} or {UNMAPPED} for unmapped")
        targets[int(key)] = value
    missing = sorted(set(range(num_source)) - set(targets))
    if missing:
        raise ConfigError(f"class map {path}: no entry for {len(missing)} of the {num_source} source classes "
                          f"(first {missing[:5]}); every source class needs one, {UNMAPPED} if unmapped")
    return np.array([targets[i] for i in range(num_source)], np.int32)


def map_predictions(logits: jax.Array, class_map: jax.Array) -> jax.Array:
    """The target class of each top-1 source class of (..., num_source) logits; UNMAPPED outside the targets.

    A map of another size is refused: a jnp gather would clamp an out-of-range index instead of failing.
    """
    if logits.shape[-1] != class_map.shape[0]:
        raise ValueError(f"logits have {logits.shape[-1]} classes but the class map has {class_map.shape[0]}")
    return jnp.asarray(class_map)[jnp.argmax(logits, axis=-1)]
