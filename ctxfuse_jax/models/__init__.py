"""The model zoo: classifiers built by name, with named features and truncation; seed 002's mask and
background generators; seed 003's quality predictor and trunk/branch split."""

from ctxfuse_jax.models import alexnet, generators, hypercolumn, quality_net, resnet, small_cnn, unet, vgg  # noqa: F401  (registers the models)
from ctxfuse_jax.models.alexnet import AlexNet
from ctxfuse_jax.models.branches import Split, cut_at, split_at
from ctxfuse_jax.models.generators import BackgroundGenerator
from ctxfuse_jax.models.layers import INTERMEDIATES, PERTURBATIONS, Backbone, WidthError, features, tap
from ctxfuse_jax.models.precision import compute_dtype
from ctxfuse_jax.models.quality_net import QualityNet
from ctxfuse_jax.models.receptive_field import ReceptiveField, receptive_field
from ctxfuse_jax.models.registry import available_models, build_model, register_model
from ctxfuse_jax.models.resnet import ResNet, ResNet18, ResNet34, ResNet50
from ctxfuse_jax.models.small_cnn import SmallCNN
from ctxfuse_jax.models.unet import UNet
from ctxfuse_jax.models.variables import restrict_variables, variable_shapes
from ctxfuse_jax.models.vgg import VGG, VGG16, VGG16BN
