"""Mixed precision (`config.compute_dtype='bfloat16'`): bf16 compute, float32 state, same training.

The dtype checks read traced programs (`jax.make_jaxpr`, `jax.eval_shape`: nothing compiles);
the analyses and the parity test run tiny models for real.
"""

import functools

import jax
from jax.extend import core
import jax.numpy as jnp
import numpy as np
import pytest

from configs import fusion as fusion_config
from configs import supervised as supervised_config
from ctxfuse_jax.data.pipeline import ArraySplit
from ctxfuse_jax.data.sources import Labelled
from ctxfuse_jax.experiments import fusion, supervised
from ctxfuse_jax.experiments.classification import classification_update, optimizer_for
from ctxfuse_jax.models import compute_dtype
from ctxfuse_jax.ops import conv as conv_ops
from ctxfuse_jax.train import sharding
from ctxfuse_jax.train.state import PlayerSpec, init_variables, new_train_state
from ctxfuse_jax.train.steps import make_train_step

F32, BF16 = jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16)
SIZE = 32
# Counter-based keys: the same draws every run, and model.init compiles in seconds instead of the
# half minute threefry takes for a ResNet18 on XLA:CPU.
KEY = jax.random.key(0, impl="rbg")


def configured(config_module, precision: str):
    config = config_module.get_config("smoke")
    config.compute_dtype = precision
    return config


def _eqns(jaxpr: core.Jaxpr):
    for eqn in jaxpr.eqns:
        yield eqn
        for sub in core.jaxprs_in_params(eqn.params):
            yield from _eqns(sub)


def matmul_operand_dtypes(fn, *args) -> list[tuple[jnp.dtype, ...]]:
    """Operand dtypes of every convolution and matrix product in the program `fn(*args)` traces."""
    return [tuple(v.aval.dtype for v in eqn.invars) for eqn in _eqns(jax.make_jaxpr(fn)(*args).jaxpr)
            if eqn.primitive.name in ("conv_general_dilated", "dot_general")]


def classifier_step(model, train_config, batch_size: int = 4):
    """The experiments' train step for one classifier player, with its state and batch as shapes."""
    specs = {"classifier": PlayerSpec(model, optimizer_for(train_config, 64))}
    predict = lambda fw, images, train: fw("classifier", images, train=train)
    step = make_train_step(specs, [classification_update(predict, ("classifier",), train_config)])
    state = jax.eval_shape(lambda: new_train_state(
        specs, {"classifier": init_variables(model, KEY, jnp.zeros((1, SIZE, SIZE, 3)))}, KEY))
    batch = {"image": jax.ShapeDtypeStruct((batch_size, SIZE, SIZE, 3), jnp.uint8),
             "label": jax.ShapeDtypeStruct((batch_size,), jnp.int32)}
    return step, state, batch


def test_compute_dtype_names_and_errors():
    assert compute_dtype("float32") == F32 and compute_dtype("bfloat16") == BF16
    with pytest.raises(ValueError, match=r"unknown compute_dtype 'float16'; choose one of \['bfloat16', 'float32'\]"):
        compute_dtype("float16")


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_training_computes_in_the_configured_precision_on_float32_state(precision):
    config = configured(supervised_config, precision)
    step, state, batch = classifier_step(supervised.classifier_module(config, num_classes=4), config.train)
    dtypes = matmul_operand_dtypes(step, state, batch)
    assert len(dtypes) > 60  # forward, input and filter gradients of 20 convolutions and the head
    if precision == "float32":
        assert set(dtypes) == {(F32, F32)}
    else:  # Every one has bf16 operands (a few gradients of the CPU convolution pair them with f32).
        assert all(BF16 in operands for operands in dtypes)
    new_state, metrics = jax.eval_shape(step, state, batch)
    floats = {leaf.dtype for leaf in jax.tree.leaves(new_state.players) if jnp.issubdtype(leaf.dtype, jnp.floating)}
    assert floats == {F32}  # parameters, batch-norm statistics, optimizer state
    assert metrics["loss"].dtype == F32


def test_fusion_streams_pretraining_and_heads_compute_in_bf16_through_the_cpu_convolution(monkeypatch):
    convolutions = []  # (input dtype, kernel dtype, handled by the CPU formulation)

    def recording_geometry(lhs, rhs, *args, **kwargs):
        geometry = unpatched(lhs, rhs, *args, **kwargs)
        convolutions.append((lhs.dtype, rhs.dtype, geometry is not None))
        return geometry

    unpatched = conv_ops.geometry
    monkeypatch.setattr(conv_ops, "geometry", recording_geometry)
    config = configured(fusion_config, "bfloat16")
    assert config.streams.conv == "auto"

    step, state, batch = classifier_step(fusion.backbone_module(config, num_classes=4), config.streams.fg.train)
    pretraining = matmul_operand_dtypes(step, state, batch)

    stream = fusion.stream_module(config)
    images = jax.ShapeDtypeStruct((2, SIZE, SIZE, 3), jnp.float32)
    stream_variables = jax.eval_shape(functools.partial(init_variables, stream), KEY, images)
    features = jax.eval_shape(stream.apply, stream_variables, images)
    assert features.dtype == BF16
    heads = {m: fusion.head_module(m, config, num_classes=4) for m in ("FG", "Joint")}
    head_variables = {"FG": jax.eval_shape(functools.partial(init_variables, heads["FG"]), KEY, features),
                      "Joint": jax.eval_shape(functools.partial(init_variables, heads["Joint"]), KEY, features,
                                              features)}

    def logits(variables, images):
        fg = stream.apply(variables["stream"], images)
        return {"FG": heads["FG"].apply(variables["FG"], fg), "Joint": heads["Joint"].apply(variables["Joint"], fg, fg)}

    variables = {"stream": stream_variables, **head_variables}
    assert {v.dtype for v in jax.eval_shape(logits, variables, images).values()} == {F32}
    inference = matmul_operand_dtypes(logits, variables, images)
    assert pretraining and inference and all(BF16 in operands for operands in pretraining + inference)
    assert len(convolutions) >= 20 + 15 + 2  # backbone, stream cut at layer3, fusion head
    assert set(convolutions) == {(BF16, BF16, True)}
