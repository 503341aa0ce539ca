"""Installs ctxfuse_jax. Extras: cuda, tpu, tests, bench. Converting PyTorch weights needs no extra: .pth files are read without torch."""

from setuptools import find_packages, setup

setup(
    name="ctxfuse_jax",
    version="0.1.0",
    description="Train and stress-test image classifiers against blur, degradations and background shifts (JAX/Flax).",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["ctxfuse_jax", "ctxfuse_jax.*"]),
    install_requires=[
        "jax>=0.4.35",
        "flax>=0.10",
        "optax>=0.2.4",
        "orbax-checkpoint>=0.11",
        "tensorflow-cpu>=2.16",
        "tensorflow-datasets>=4.9.6",
        "tensorboard>=2.16",
        "ml-collections>=0.1.1",
        "dm-pix>=0.4.3",
        "absl-py",
        "numpy>=1.26",
        "scipy>=1.11",
        "pillow>=10",
        "matplotlib>=3.8",
        "scikit-image>=0.22",
        "scikit-learn>=1.3",
        "filelock>=3",  # JAX's compilation cache locks with it (runtime.use_compilation_cache)
    ],
    extras_require={
        "cuda": ["jax[cuda12]"],
        "tpu": ["jax[tpu]"],
        "tests": ["pytest>=8", "pytest-xdist>=3", "torch==2.13.0", "nbclient>=0.10", "ipykernel>=6"],
        # bench/robustness_throughput.py's reference: ImageNet-C's corruptions on the host, a PyTorch forward.
        "bench": ["torch==2.13.0", "imagecorruptions==1.1.2"],
    },
)
