"""The evaluator of conditions: any classifiers x named conditions -> per-example predictions.

One jitted step takes (players, batch, bank, family, level, batch number): the family and level
are traced, so one compiled program scores every condition of every family, and all the models a
`logits_fn` returns share each transformed batch. Predictions stay per example, so any test subset
(All, Dissimilar, one class) and any measure (accuracy, which class a mixed image follows, the
backgrounds challenge) is computed afterwards on the host; `long_table` turns them into rows
(model, condition, level, test set, metric, value) that reports and figures read.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ctxfuse_jax.data.pipeline import ArraySplit, eval_batches, to_unit_float
from ctxfuse_jax.evaluate.class_map import map_predictions
from ctxfuse_jax.evaluate.conditions import Family, build_bank
from ctxfuse_jax.train import losses, sharding
from ctxfuse_jax.train.forward import Forward
from ctxfuse_jax.train.state import Player, PlayerSpec

# (forward, images) -> {model: logits}: several models may share one pass (fusion's streams).
LogitsFn = Callable[[Forward, jax.Array], Mapping[str, jax.Array]]


@dataclasses.dataclass(frozen=True)
class FamilyScores:
    """Per-example predictions of each model under each level of one family."""

    levels: tuple[str, ...]
    examples: np.ndarray  # (n,) indices into the split: the examples this family scored
    predictions: dict[str, np.ndarray]  # model -> int32 (levels, n)
    entropy: dict[str, np.ndarray]  # model -> float32 (levels, n), nats
    # Without a class map: was the label among the 5 most probable classes, and -log p(label) in nats.
    in_top5: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # model -> bool (levels, n)
    cross_entropy: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # model -> float32
    # The predicted class's probability (max softmax; with a class map, of the arg-max source class):
    # what calibration (ECE) compares with accuracy.
    confidence: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # model -> float32 (levels, n)


@dataclasses.dataclass(frozen=True)
class ConditionScores:
    """Every family's scores over one split, and the split's labels."""

    labels: np.ndarray  # (N,)
    families: dict[str, FamilyScores]

    def correct(self, model: str, family: str) -> np.ndarray:
        """Bool (levels, n): was each scored example classified as its label under each level."""
        scores = self.family(family)
        return scores.predictions[model] == self.labels[scores.examples][None]

    def family(self, name: str) -> FamilyScores:
        if name not in self.families:
            raise KeyError(f"no condition {name!r}; scored: {sorted(self.families)}")
        return self.families[name]


def make_condition_step(specs: Mapping[str, PlayerSpec], logits_fn: LogitsFn, families: Sequence[Family],
                        class_map: np.ndarray | None = None):
    """`step(players, batch, bank, family, level, key) -> {model: {prediction, entropy, confidence, ...}}`,
    jitted; `confidence` is the softmax probability of the arg-max class.

    Without a class map each model also gives `in_top5` and `cross_entropy` (seed 001's top-5 and
    cross-entropy). `class_map` (source class -> target class, -1 for none; `evaluate.class_map`)
    scores e.g. 1000-class ImageNet models on 9 classes: the arg-max over source classes is mapped,
    unmapped ones count as wrong.
    """
    transforms = [family.transform for family in families]

    def step(players, batch, bank, family, level, key):
        images = to_unit_float(batch["image"])
        images = jax.lax.switch(family, transforms, images, batch, bank, level, key)
        outputs = {}
        for model, logits in logits_fn(Forward(specs, players), images).items():
            outputs[model] = {"entropy": losses.entropy(logits),
                              "confidence": jnp.max(jax.nn.softmax(logits.astype(jnp.float32), axis=-1), axis=-1)}
            if class_map is None:
                outputs[model].update(prediction=jnp.argmax(logits, axis=-1).astype(jnp.int32),
                                      in_top5=losses.in_top_k(logits, batch["label"], 5),
                                      cross_entropy=losses.softmax_cross_entropy(logits, batch["label"]))
            else:
                outputs[model]["prediction"] = map_predictions(logits, jnp.asarray(class_map, jnp.int32))
        return outputs

    return jax.jit(step)


def evaluate_conditions(step, players: Mapping[str, Player], split: ArraySplit, families: Sequence[Family],
                        global_batch_size: int, mesh: jax.sharding.Mesh, *, num_classes: int,
                        seed: int = 0, bank: Mapping[str, np.ndarray] | None = None,
                        only: Sequence[str] | None = None) -> ConditionScores:
    """Scores every example of `split` (or of a family's `examples`) exactly once under every level.

    `families` are the step's (`make_condition_step`), in its order; `only` names the ones to
    score (default all). `seed` draws the mixed_* donors and keys random degradations (noise,
    motion angles), so the same seed shows every model the same images. All batches share one
    shape, so the whole evaluation runs one compiled program. `bank` replaces the one built from
    `split` (e.g. the released Only-BG-T images).
    """
    unknown = sorted(set(only or ()) - {family.name for family in families})
    if unknown:
        raise KeyError(f"no conditions {unknown}; the step has {[family.name for family in families]}")
    arrays = ArraySplit({**split.arrays, "index": np.arange(len(split), dtype=np.int32)})
    if bank is None:
        bank_keys = set().union(*(family.bank_keys for family in families if only is None or family.name in only))
        bank = build_bank(split.arrays, bank_keys, num_classes, seed)
    bank = sharding.put_replicated(dict(bank), mesh)
    # Inference needs params and batch stats only: a training state's players (with optimizer
    # state) and finished ones then share one compiled program.
    players = sharding.put_replicated({name: Player(p.params, p.batch_stats, None) for name, p in players.items()},
                                      mesh)
    root = jax.random.PRNGKey(seed)
    on_device: dict[tuple[int, ...] | None, tuple[list, np.ndarray]] = {}
    scores = {}
    for family_index, family in enumerate(families):
        if only is not None and family.name not in only:
            continue
        if family.examples not in on_device:  # Families scoring the same examples share their batches.
            chosen = arrays if family.examples is None else arrays.subset(np.asarray(family.examples))
            batches = [sharding.put_batch(b, mesh) for b in eval_batches(chosen, global_batch_size)]
            valid = np.concatenate([sharding.to_host(b["valid"]) for b in batches])
            on_device[family.examples] = batches, valid
        batches, valid = on_device[family.examples]
        collected: dict[str, dict[str, list]] = {}
        for level_index in range(len(family.levels)):
            outs = []
            for batch_index, batch in enumerate(batches):
                key = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(root, family_index), level_index),
                                         batch_index)
                outs.append(step(players, batch, bank, jnp.int32(family_index), jnp.int32(level_index), key))
            for model, named in outs[0].items():
                for name in named:
                    values = np.concatenate([sharding.to_host(o[model][name]) for o in outs])[valid]
                    collected.setdefault(name, {}).setdefault(model, []).append(values)
        examples = np.arange(len(split)) if family.examples is None else np.asarray(family.examples)
        stacked = {name: {m: np.stack(v) for m, v in per_model.items()} for name, per_model in collected.items()}
        scores[family.name] = FamilyScores(
            family.levels, examples, stacked["prediction"],
            {m: v.astype(np.float32) for m, v in stacked["entropy"].items()}, stacked.get("in_top5", {}),
            {m: v.astype(np.float32) for m, v in stacked.get("cross_entropy", {}).items()},
            {m: v.astype(np.float32) for m, v in stacked["confidence"].items()})
    return ConditionScores(np.asarray(split.arrays["label"]), scores)


def long_table(scores: ConditionScores, subsets: Mapping[str, np.ndarray],
               **keys: Any) -> list[dict[str, Any]]:
    """One row per (model, condition, level, test set, metric): accuracy and mean entropy.

    `subsets` are boolean masks over the split (e.g. `test_sets.masks`), restricted to the
    examples a family scored; `keys` (e.g. seed=0) prefix every row.
    """
    rows = []
    for condition, family in scores.families.items():
        for model, predictions in family.predictions.items():
            correct = predictions == scores.labels[family.examples][None]
            for i, level in enumerate(family.levels):
                for test_set, member in subsets.items():
                    chosen = member[family.examples]
                    for metric, values in (("accuracy", correct[i]), ("entropy", family.entropy[model][i])):
                        rows.append({**keys, "model": model, "condition": condition, "level": level,
                                     "test_set": test_set, "metric": metric,
                                     "value": float(values[chosen].mean())})
    return rows


class ConditionScorer:
    """Families over one test split with their bank built and placed once, and one compiled step per
    architecture: what an experiment scoring many models under the same conditions holds."""

    def __init__(self, families: Sequence[Family], split: ArraySplit, num_classes: int, batch_size: int, seed: int,
                 mesh: jax.sharding.Mesh):
        self.families, self.split, self.num_classes = list(families), split, num_classes
        self.batch_size, self.seed, self.mesh = batch_size, seed, mesh
        keys = set().union(*(family.bank_keys for family in self.families))
        self.bank = build_bank(split.arrays, keys, num_classes, seed)
        self._device_bank = sharding.put_replicated(self.bank, mesh)
        self._architectures: dict[str, tuple[dict, LogitsFn]] = {}
        self._steps: dict[str, Callable] = {}

    def add_architecture(self, name: str, specs: Mapping[str, PlayerSpec], logits_fn: LogitsFn) -> None:
        """Players and logits of the models to score under `name` (a zoo classifier, fusion's heads)."""
        self._architectures[name] = (dict(specs), logits_fn)

    def score(self, architecture: str, players: Mapping[str, Any], only: Sequence[str] | None = None,
              families: Sequence[Family] | None = None, split: ArraySplit | None = None) -> ConditionScores:
        """Every family (those named in `only`) over the split; `families` may replace them by the same
        transforms on other examples, `split` the split by one of the same fields and shapes (images
        degraded on the host: JPEG), both in the same program. Says how long it took: scoring can take
        minutes."""
        start = time.monotonic()
        split = self.split if split is None else split
        scores = evaluate_conditions(self.step(architecture), players, split, families or self.families,
                                     self.batch_size, self.mesh, num_classes=self.num_classes, seed=self.seed,
                                     bank=self._device_bank, only=only)
        levels = sum(len(f.levels) for f in scores.families.values())
        print(f"[evaluate {architecture}] {levels} conditions x {len(next(iter(scores.families.values())).examples)} "
              f"images in {time.monotonic() - start:.1f} s", flush=True)
        return scores

    def family(self, name: str) -> Family:
        return next(family for family in self.families if family.name == name)

    def step(self, architecture: str) -> Callable:
        if architecture not in self._steps:
            specs, logits_fn = self._architectures[architecture]
            self._steps[architecture] = make_condition_step(specs, logits_fn, self.families)
        return self._steps[architecture]


def frozen_players(variables: Mapping[str, Mapping[str, Any]]) -> dict[str, Player]:
    """Trained variables as inference-only players (no optimizer state)."""
    return {name: Player(v["params"], v.get("batch_stats", {}), None) for name, v in variables.items()}
