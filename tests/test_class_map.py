"""The ImageNet -> IN-9 class map: file checks and MadryLab's top-1-then-map scoring, worked by hand."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ctxfuse_jax.errors import ConfigError, DataError
from ctxfuse_jax.evaluate import class_map

# 6 source classes onto 2 targets: sources 1 and 3 are target 0, 2 and 5 target 1, 0 and 4 unmapped
SIX_TO_TWO = {"0": -1, "1": 0, "2": 1, "3": 0, "4": -1, "5": 1}


def write(tmp_path, text: str) -> str:
    path = tmp_path / "in_to_in9.json"
    path.write_text(text)
    return str(path)


def test_top1_source_class_is_mapped_and_unmapped_ones_count_wrong(tmp_path):
    mapping = class_map.load_class_map(write(tmp_path, json.dumps(SIX_TO_TWO)), num_source=6, num_target=2)
    np.testing.assert_array_equal(mapping, [-1, 0, 1, 0, -1, 1])
    assert mapping.dtype == np.int32
    logits = jnp.array([
        [0.0, 1.0, 0.0, 3.0, 0.0, 0.0],  # top-1 source 3 -> target 0
        [0.0, 1.0, 2.0, 0.0, 5.0, 0.0],  # top-1 source 4 is unmapped -> -1, though 2 (target 1) is next
        [0.0, 2.0, 0.0, 1.9, 0.0, 2.1],  # top-1 source 5 -> target 1; summed softmax would pick target 0
        [9.0, 0.0, 0.0, 0.0, 0.0, 8.0],  # top-1 source 0 is unmapped -> -1
    ])
    expected = [0, -1, 1, -1]
    np.testing.assert_array_equal(class_map.map_predictions(logits, mapping), expected)
    np.testing.assert_array_equal(jax.jit(class_map.map_predictions)(logits, jnp.asarray(mapping)), expected)
    labels = jnp.array([0, 1, 1, 0])
    assert int((class_map.map_predictions(logits, mapping) == labels).sum()) == 2  # -1 matches no label
    probabilities = jax.nn.softmax(logits[2])
    assert probabilities[1] + probabilities[3] > probabilities[2] + probabilities[5]  # so pooling would differ


def test_logits_of_another_width_are_refused():
    with pytest.raises(ValueError, match="5 classes but the class map has 6"):
        class_map.map_predictions(jnp.zeros((2, 5)), np.zeros(6, np.int32))


def test_a_file_like_madrylabs_loads_with_num_target_inferred_or_given(tmp_path):
    entries = {str(i): (i % 10) - 1 for i in range(1000)}  # -1..8, every key "0".."999"
    path = write(tmp_path, json.dumps(entries))
    expected = np.arange(1000) % 10 - 1
    np.testing.assert_array_equal(class_map.load_class_map(path), expected)
    np.testing.assert_array_equal(class_map.load_class_map(path, num_target=9), expected)


@pytest.mark.parametrize("text, message", [
    ("{\"0\": -1,", "is not valid JSON"),
    ("[-1, 0, 1, 0, -1, 1]", "expected a JSON object"),
    (json.dumps({**SIX_TO_TWO, "6": 0}), "key '6' is not a source class index 0..5"),
    (json.dumps({**SIX_TO_TWO, "-1": 0}), "key '-1' is not"),
    (json.dumps({**{k: v for k, v in SIX_TO_TWO.items() if k != "1"}, "01": 0}), "key '01' is not"),
    (json.dumps({**SIX_TO_TWO, "x": 0}), "key 'x' is not"),
    (json.dumps({**SIX_TO_TWO, "3": 0.0}), r"'3': 0.0 is not a target class index 0..1 or -1"),
    (json.dumps({**SIX_TO_TWO, "3": "0"}), r"'3': '0' is not"),
    (json.dumps({**SIX_TO_TWO, "3": True}), r"'3': True is not"),
    (json.dumps({**SIX_TO_TWO, "3": None}), r"'3': None is not"),
    (json.dumps({**SIX_TO_TWO, "3": -2}), r"'3': -2 is not"),
    (json.dumps({**SIX_TO_TWO, "3": 2}), r"'3': 2 is not a target class index 0..1"),
    (json.dumps({k: v for k, v in SIX_TO_TWO.items() if k not in ("2", "4")}), r"no entry for 2 .* \[2, 4\]"),
    ("{\"0\": -1, \"1\": 0, \"2\": 1, \"3\": 0, \"4\": -1, \"5\": 1, \"3\": 1}", r"keys \['3'\] appear more"),
], ids=["truncated", "list", "key-too-big", "key-negative", "key-padded", "key-word", "value-float",
        "value-string", "value-bool", "value-null", "value-below-minus-one", "value-too-big", "missing-keys",
        "duplicate-key"])
def test_bad_files_are_refused_naming_the_file_and_the_entry(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as refused:
        class_map.load_class_map(path, num_source=6, num_target=2)
    assert path in str(refused.value)


def test_a_missing_file_says_where_to_get_it(tmp_path):
    path = str(tmp_path / "in_to_in9.json")
    with pytest.raises(DataError, match=f"class map {path} cannot be read.*MadryLab/backgrounds_challenge"):
        class_map.load_class_map(path)
