"""Config checks: every preset passes, every wrong value is refused by its dotted key, fast and light.

In-process calls of `check_config` (a fraction of a second each); one subprocess proves that the
checks import no TensorFlow and touch no device.
"""

import glob
import importlib.util
import math
import os
import subprocess
import sys

import ml_collections
import pytest

from ctxfuse_jax import config_checks, config_defaults, provenance
from ctxfuse_jax.config_checks import check_config, check_devices
from ctxfuse_jax.errors import ConfigError
from ctxfuse_jax.experiments.registry import EXPERIMENTS, get_experiment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_FILES = sorted(glob.glob(os.path.join(ROOT, "configs", "*.py")))


def _config_module(path: str):
    spec = importlib.util.spec_from_file_location(f"configs_{os.path.basename(path)[:-3]}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _config(name: str, preset: str | None = None, **overrides) -> ml_collections.ConfigDict:
    """configs/<name>.py at `preset`, with dotted-key overrides (`**{"loop.log_every": 0}`)."""
    config = _config_module(os.path.join(ROOT, "configs", f"{name}.py")).get_config(preset)
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        section = config
        for parent in parents:
            section = section[parent]
        if value is DELETE:
            del section[leaf]
        else:
            section[leaf] = value
    return config


DELETE = object()
PRESETS = [(path, preset) for path in CONFIG_FILES for preset in _config_module(path).PRESETS]


@pytest.mark.parametrize("path,preset", PRESETS, ids=[f"{os.path.basename(p)}:{s}" for p, s in PRESETS])
def test_every_preset_of_every_config_file_passes(path, preset, tmp_path, monkeypatch):
    config = _config_module(path).get_config(preset)
    monkeypatch.chdir(tmp_path)  # Presets may name weights files relative to the working directory.
    for path in provenance.input_files(config).values():  # weights files, class maps
        (tmp_path / path).write_bytes(b"converted weights")
    if "data" in config and config.data.get("root"):  # a folder of released images
        (tmp_path / config.data.root).mkdir()
    if "workdirs" in config:  # the finished runs a robustness report scores
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "config.json").write_text('{"experiment": "supervised"}')
        (tmp_path / "run" / "results.json").write_text("{}")
        config.workdirs = ("run",)
    check_config(config)


def test_the_coco_preset_names_the_weights_it_lacks(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"config.streams.fg.weights='resnet18_imagenet.npz': no such file; "
                                          r"convert .*python -m ctxfuse_jax.weights.convert --arch resnet18"):
        check_config(_config("fusion", "coco"))


# (config file, preset, overrides, text the message must contain; None: "config.<key>=<value!r>" of the
# only override). The cases come first.
BAD = [
    ("fusion", None, {"eval.conditions.blur_all.sigmas": (-6, 0, 6)}, None),
    ("fusion", None, {"eval.conditions.blur_all.reference_size": 0}, None),
    ("supervised", None, {"train.label_smoothing": 5.0}, None),
    ("supervised", None, {"model.width": 0.0}, None),
    ("supervised", None, {"model.width": 0.01}, "config.model.width=0.01: width 0.01 gives ResNet's 64-channel "
                                                "layers 0.64 channels; the smallest width is 1/64 = 0.015625"),
    ("supervised", None, {"loop.log_every": 0}, "config.loop.log_every=0: must be an integer >= 1"),
    ("supervised", None, {"loop.checkpoint_every": 0}, None),
    ("supervised", None, {"train.optimizer.learning_rate": math.nan}, None),
    ("fusion", None, {"seeds": ()}, "config.seeds=(): must be a non-empty tuple of distinct integers"),
    ("supervised", None, {"data.image_size": 7}, "config.data.image_size=7: must be an integer >= 16"),
    # top level
    ("supervised", None, {"experiment": "nope"}, "config.experiment='nope': unknown experiment 'nope'; choose "
                                                 "one of ['bg_invariant', 'blur_study', 'fusion', 'in9', 'master_slave', 'robustness', 'supervised']"),
    ("supervised", None, {"experiment": DELETE}, "config.experiment is missing"),
    ("supervised", None, {"seed": -1}, None),
    ("supervised", None, {"seed": 2 ** 32}, "must be an integer in [0, 4294967295]"),
    ("supervised", None, {"compute_dtype": "float16"}, "unknown compute_dtype 'float16'; choose one of"),
    ("fusion", None, {"seeds": (0, 0)}, "config.seeds=(0, 0): must be a non-empty tuple of distinct integers in "
                                        "[0, 4294967295]; 0 is given twice"),
    ("fusion", None, {"seeds": (1, -1)}, "-1 is not one"),
    # data
    ("supervised", None, {"data.name": "imagenet9000"}, "unknown dataset 'imagenet9000'; choose one of "
                                                        "['coco', 'digits', 'embedded', 'fashion_mnist', 'imagenet2012', 'mnist', 'oxford_iiit_pet']"),
    ("supervised", None, {"data.variant": "faces"}, "unknown variant 'faces'; choose one of"),
    ("supervised", None, {"data.image_size": 0}, None),
    ("supervised", None, {"data.num_examples": 2}, "must be 0 (the variant's default size) or an integer >= 3"),
    ("supervised", None, {"data.num_examples": -5}, None),
    ("supervised", None, {"data.context": 1.5}, "must be a finite number in [0, 1] (a probability)"),
    ("supervised", None, {"data.context": math.nan}, None),
    ("supervised", None, {"data.seed": -3}, None),
    ("supervised", None, {"data": config_defaults.coco_data(image_size=0)}, "config.data.image_size=0"),
    ("supervised", None, {"data.image_size": 16, "model.name": "vgg16"},
     "config.data.image_size=16: VGG cannot take 16x16 images"),
    # model
    ("supervised", None, {"model.name": "resnet7"},
     "unknown model 'resnet7'; available: alexnet, "),
    ("supervised", None, {"model.conv": "fast"}, "unknown convolution 'fast'; choose one of ['auto', 'cpu', 'xla']"),
    ("supervised", None, {"model.width": -1.0}, "must be a finite number > 0"),
    ("supervised", None, {"model.width": math.inf}, None),
    # train
    ("supervised", None, {"train.num_epochs": -1}, "config.train.num_epochs=-1: must be a finite number > 0"),
    ("supervised", None, {"train.num_epochs": 0}, None),
    ("supervised", None, {"train.batch_size": 0}, None),
    ("supervised", None, {"train.batch_size": 5000}, "must be at most the 3000 training examples"),
    ("supervised", None, {"train.label_smoothing": -0.1}, None),
    ("supervised", None, {"train.label_smoothing": 1.0}, "must be a finite number in [0, 1)"),
    ("supervised", None, {"train.augment.crop_padding": -1}, None),
    ("supervised", None, {"train.optimizer.name": "lbfgs"}, "unknown optimizer 'lbfgs'; choose one of "
                                                            "['adam', 'adamw', 'sgd']"),
    ("supervised", None, {"train.optimizer.learning_rate": 0.0}, None),
    ("supervised", None, {"train.optimizer.learning_rate": math.inf}, None),
    ("supervised", None, {"train.optimizer.momentum": 1.0}, None),
    ("supervised", None, {"train.optimizer.weight_decay": -1e-4}, None),
    ("supervised", None, {"train.optimizer.schedule": "zigzag"}, "unknown schedule 'zigzag'; choose one of "
                                                                 "('constant', 'cosine', 'step')"),
    ("supervised", None, {"train.optimizer.warmup_epochs": -1.0}, None),
    ("supervised", None, {"train.optimizer.warmup_epochs": 8.0}, "the warm-up must end before training does"),
    # loop
    ("supervised", None, {"loop.eval_every": -1}, "must be an integer >= 0 (0 evaluates only at the end)"),
    ("supervised", None, {"loop": DELETE}, "config.loop is missing"),
    # fusion: the evaluator's conditions
    ("fusion", None, {"eval.conditions.blur_all.sigmas": (0.0,)}, "needs sigma 0 and a sigma > 0"),
    ("fusion", None, {"eval.conditions.blur_all.sigmas": (1.0, 4.0)}, "needs sigma 0 and a sigma > 0"),
    ("fusion", None, {"eval.conditions.blur_all.sigmas": (0.0, math.nan)}, "nan is not one"),
    ("fusion", None, {"eval.conditions.blur_all.sigmas": (2.0, 2.0)}, "2.0 is given twice"),
    ("fusion", None, {"eval.conditions.blur_all.sigmas": (0.0, 2.0)},
     "config.eval.conditions.blur_foreground.sigmas=(0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0, 12.0): must equal the "
     "other conditions' sigmas (0.0, 2.0)"),
    ("fusion", None, {"eval.conditions.blur_all.region": "sky"},
     "unknown region 'sky'; choose one of ('all', 'foreground', 'background')"),
    ("fusion", None, {"eval.conditions.blur_all.kind": "variant"}, "fusion compares blur curves"),
    ("fusion", None, {"eval.conditions.blur_all.kind": "fog"}, "config.eval.conditions.blur_all.kind='fog': fusion"),
    ("fusion", None, {"eval.conditions.blur_all.radius": 3}, "is not a field of a 'gaussian_blur' condition"),
    ("fusion", None, {"eval.batch_size": 0}, None),
    ("fusion", None, {"eval.seed": -1}, None),
    # fusion: heads
    ("fusion", None, {"heads.feature_cache": "maybe"}, "unknown heads.feature_cache 'maybe'; choose one of "
                                                       "('auto', 'on', 'off')"),
    ("fusion", None, {"heads.feature_cache": "on", "heads.train.augment.crop_padding": 4},
     "config.heads.feature_cache='on': needs heads trained without crop augmentation"),
    ("fusion", None, {"heads.fusion_features": 0}, None),
    ("fusion", None, {"heads.feature_cache_max_gib": -1.0}, None),
    ("fusion", None, {"heads.train.batch_size": 0}, None),
    ("fusion", "smoke", {"heads.train.batch_size": 256}, "must be at most the 192 training examples"),
    ("fusion", None, {"heads.train.optimizer.learning_rate": -0.1}, None),
    # fusion: streams
    ("fusion", None, {"streams.arch": "resnet7"}, "unknown model 'resnet7'"),
    ("fusion", None, {"streams.cut": "layer9"}, "ResNet cannot stop at 'layer9'; its stages are ['maxpool', "),
    ("fusion", None, {"streams.cut": "avgpool"}, "the heads need a feature map"),
    ("fusion", None, {"streams.width": 0.001}, "the smallest width is 1/64"),
    ("fusion", None, {"streams.conv": "fast"}, "unknown convolution 'fast'"),
    ("fusion", None, {"streams.fg.weights": "/nonexistent/fg.npz"},
     "config.streams.fg.weights='/nonexistent/fg.npz': no such file; convert PyTorch weights once with "
     "`python -m ctxfuse_jax.weights.convert"),
    ("fusion", None, {"streams.bg.weights": "/"}, "is a directory, not a weights file"),
    ("fusion", None, {"streams.bg.data.image_size": 7}, None),
    ("fusion", None, {"streams.fg.data.variant": "faces"}, "config.streams.fg.data.variant='faces'"),
    ("fusion", None, {"streams.fg.train.label_smoothing": 2.0}, None),
    ("fusion", None, {"streams.bg.train.optimizer.schedule": "linear"}, None),
    ("fusion", None, {"streams.arch": "vgg16", "streams.cut": "features_30", "data.image_size": 16},
     "config.data.image_size=16: VGG cannot take 16x16 images"),
    # fusion: analysis
    ("fusion", None, {"analysis.joint_cam_layer": "fuse_relu9"}, "FusionHead has no feature 'fuse_relu9'; its "
                                                                 "features are: fuse_bn1, fuse_bn2, fuse_relu1"),
    ("fusion", None, {"analysis.pca_feature": "layer4_1/bn2"}, "ResNet has no feature 'layer4_1/bn2'"),
    ("fusion", None, {"analysis.gradcam_images": 0}, None),
    ("fusion", None, {"analysis.pca_classes": 0}, None),
    ("fusion", None, {"analysis.pca_images_per_class": 1}, "a class's spread needs two examples"),
    ("fusion", None, {"analysis.pca_sigma": -1.0}, None),
    # in9 (seed 004)
    ("in9", None, {"train_variants": ("original", "mixed_weird")}, "'mixed_weird' is not one"),
    ("in9", None, {"train_variants": ()}, "name the training sets"),
    ("in9", None, {"eval.conditions.in9.variants": ("original", "only_fg")}, "lacks ['mixed_same', 'mixed_rand']"),
    ("in9", None, {"eval.conditions.in9.kind": "composite"}, "is not a field of a 'composite' condition"),
    ("in9", None, {"eval.conditions.challenge.num_backgrounds": -1}, None),
    ("in9", None, {"eval.conditions.challenge.num_foregrounds": -2}, None),
    ("in9", None, {"eval.conditions.challenge.kind": "preset"}, "config.eval.conditions.challenge"),
    ("in9", None, {"analysis.cam_layer": "layer9"}, "layer9"),
    ("in9", None, {"analysis.progress_every_epochs": -1}, None),
    ("in9", None, {"data.variant": "scenes"}, "must be 'objects': the variants need each image's object mask"),
    ("in9", None, {"fusion_workdir": "/nonexistent/run"}, "holds no config.json"),
    ("in9", "release", {"data.root": "/nonexistent/release"}, "no such directory; download backgrounds_challenge_data"),
    # master_slave (seed 003)
    ("master_slave", None, {"bins.bins": [dict(kind="clean", low=0.0, high=0.0)]}, "needs two or more quality bins"),
    ("master_slave", None, {"bins.bins": [dict(kind="jpeg", low=5.0, high=20.0), dict(kind="clean", low=0.0, high=0.0)]},
     "config.bins.bins[0]={'kind': 'jpeg', 'low': 5.0, 'high': 20.0}: must be the clean bin"),
    ("master_slave", None, {"bins.bins": [dict(kind="clean", low=0.0, high=0.0), dict(kind="jpeg", low=20.0, high=5.0)]},
     "low 20.0 is above high 5.0"),
    ("master_slave", None, {"bins.bins": [dict(kind="clean", low=0.0, high=0.0), dict(kind="webp", low=1.0, high=2.0)]},
     "config.bins.bins[1].kind='webp': unknown degradation kind 'webp'"),
    ("master_slave", None, {"bins.probabilities": (1.0, -1.0, 1.0)}, "must be 3 non-negative numbers"),
    ("master_slave", None, {"slave.split": "features_99"}, "config.slave.split='features_99': unknown stage of "
                                                           "vgg16_bn to cut the trunk after"),
    ("master_slave", None, {"slave.base": "resnet"}, "config.slave.base='resnet': unknown model of `models`"),
    ("master_slave", None, {"baselines.augmentation.splits.fc8": "fc8"}, "config.baselines.augmentation.splits.fc8"),
    ("master_slave", None, {"baselines.masking.fraction": 1.0}, None),
    ("master_slave", None, {"baselines.stability.noise_std": 0.0}, None),
    ("master_slave", None, {"eval.sweeps.jpeg.qualities": (90.0, 0.0)}, "JPEG qualities are whole numbers from 1 to 100"),
    ("master_slave", None, {"eval.sweeps.jpeg.kind": "clean"}, "unknown degradation kind 'clean'"),
    ("master_slave", None, {"eval.table.quality": 0.5}, "JPEG qualities are whole numbers"),
    ("master_slave", None, {"models.alexnet.label": "VGG-16"}, "each model needs its own label"),
    ("master_slave", None, {"master.train.batch_size": 0}, None),
    ("master_slave", None, {"models.alexnet.train.num_epochs": 0.0}, "config.models.alexnet.train.num_epochs"),
]


def _case_id(case) -> str:
    name, preset, overrides, _ = case
    shown = ",".join(f"{k}={'del' if v is DELETE else v!r}"[:40] for k, v in overrides.items())
    return f"{name}{':' + preset if preset else ''}[{shown}]"


@pytest.mark.parametrize("name,preset,overrides,expected", BAD, ids=[_case_id(c) for c in BAD])
def test_a_wrong_value_is_refused_by_its_key_value_and_rule(name, preset, overrides, expected):
    if expected is None:
        (key, value), = overrides.items()
        expected = f"config.{key}={value!r}: "
    with pytest.raises(ConfigError) as raised:
        check_config(_config(name, preset, **overrides))
    message = str(raised.value)
    assert expected in message
    assert message.startswith("config.") and "\n" not in message  # main.py prints it as one line


def test_every_data_source_and_experiment_has_its_checks():
    from ctxfuse_jax.data.sources import SOURCES

    assert set(config_checks.DATA_CHECKS) == set(SOURCES)
    assert set(config_checks.EXPERIMENT_CHECKS) == set(EXPERIMENTS)


def test_get_experiment_refuses_an_unknown_name_as_a_config_error():
    with pytest.raises(ConfigError, match=r"unknown experiment 'nope'; choose one of \['bg_invariant', 'blur_study', 'fusion', 'in9', 'master_slave', 'robustness', 'supervised'\]"):
        get_experiment("nope")


def test_check_devices_wants_every_batch_size_split_evenly():
    config = _config("fusion", "smoke")
    check_devices(config, 1)
    check_devices(config, 32)  # every batch size of the smoke preset is a multiple of 32
    config.eval.batch_size = 48
    with pytest.raises(ConfigError, match=r"config.eval.batch_size=48: must be a multiple of the number of "
                                          r"devices \(32\); choose e.g. 32"):
        check_devices(config, 32)


def test_checks_import_no_tensorflow_and_touch_no_device():
    """A mistake must come back in ~2 s: no TensorFlow import (~6 s), no backend set up before runtime.setup."""
    script = (
        "import sys\n"
        "from ctxfuse_jax import config_checks\n"
        "sys.path.insert(0, 'configs')\n"
        "import fusion, supervised\n"
        "config_checks.check_config(fusion.get_config('smoke'))\n"
        "config_checks.check_config(supervised.get_config())\n"
        "from jax._src import xla_bridge\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tensorflow_datasets'))\n"
        "print(heavy, dict(xla_bridge._backends))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "[] {}"
