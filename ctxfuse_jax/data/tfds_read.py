"""Reading a prepared TFDS split without ever downloading, and the one message for data that is missing.

Every TFDS loader of the project (`digits`, `blur_sources`) opens its splits here, so a dataset that
is not prepared under the `data_dir` is told the same way everywhere: a `DataError` naming the
dataset, where TFDS looked, and how to prepare it on another machine. TensorFlow and TFDS are
imported inside the functions: config checks import the loaders' constants and must stay quick.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ctxfuse_jax.errors import DataError

if TYPE_CHECKING:
    import tensorflow as tf


def build_instructions(name: str, directory: str) -> str:
    """How to prepare a dataset TFDS can download itself: on a machine with internet, then copied."""
    return (f"On a machine with internet run `tfds build {name} --data_dir={directory}` (or python -c \"import "
            f"tensorflow_datasets as tfds; tfds.builder('{name}', data_dir='{directory}').download_and_prepare()\"), "
            f"copy {directory}/{name} into this machine's data_dir, and pass data_dir (or set TFDS_DATA_DIR).")


def not_prepared(name: str, data_dir: str | None, where: str, *, prepare: str | None = None,
                 note: str = "") -> DataError:
    """The error for TFDS dataset `name` missing at `where`; `prepare` says how to make it (default:
    `build_instructions`), `note` is appended (e.g. an offline alternative)."""
    directory = data_dir or "DIR"
    prepare = prepare or build_instructions(name, directory)
    return DataError(f"TFDS dataset '{name}' is not prepared: nothing at {where}. Nothing is downloaded at run "
                     f"time. {prepare}" + (f" {note}" if note else ""))


def load(name: str, split: str, data_dir: str | None, *, count: int | None = None, prepare: str | None = None,
         note: str = "") -> tf.data.Dataset:
    """Split `split` of the prepared TFDS dataset `name` in file order, decoded; never downloads.

    `count` keeps only the first records: read as the slice `split[:count]` (only the shards needed;
    a count beyond the split's size takes the whole split) and cut again by `take`, because TFDS mock
    data ignores slices. A dataset that is not prepared raises `not_prepared(...)` (with `prepare`
    and `note`); a prepared one that lacks `split` names the splits it has.
    """
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=data_dir)
    prepared = dict(builder.info.splits)  # empty when not prepared, and under mock data
    if prepared and split not in prepared:
        raise DataError(f"TFDS dataset '{name}' under {builder.data_dir} has no split '{split}' (it has "
                        f"{sorted(prepared)}). " + (prepare or build_instructions(name, data_dir or "DIR")))
    source = split
    if count is not None:
        if split in prepared:
            count = min(count, prepared[split].num_examples)
        source = f"{split}[:{count}]"
    try:
        dataset = tfds.load(name, split=source, data_dir=data_dir, download=False, shuffle_files=False)
    except AssertionError as error:  # how TFDS says that the data is not prepared
        raise not_prepared(name, data_dir, builder.data_dir, prepare=prepare, note=note) from error
    return dataset if count is None else dataset.take(count)
