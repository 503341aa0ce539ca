"""Fingerprints of what produced a result: the config, and the input files by content.

A path says where a file was, not what it held: replacing `fgw.npz` with other weights must make
every result computed from it stale. Inputs are found by convention, so a new experiment gets them
fingerprinted without registering anything: every non-empty string under a config key named
`weights`, `class_map` or ending in `_weights` / `_class_map` is an input file; one under a key
ending in `_workdir` is another run's workdir, fingerprinted by its config and its checkpoints
(what its models are), not by reports it rewrites on every invocation.
"""

import hashlib
import json
import os
from typing import Any, Mapping

import ml_collections

from ctxfuse_jax.errors import ConfigError

_CHUNK = 1 << 20


def canonical_json(value: Any) -> str:
    """One spelling per value (sorted keys, tuples as lists), so equal settings hash equally."""
    return json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))


def sha256_of(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


FILE_KEYS = ("weights", "class_map")
WORKDIR_SUFFIX = "_workdir"


def is_file_key(key: str) -> bool:
    return any(key == name or key.endswith(f"_{name}") for name in FILE_KEYS)


def input_files(config: ml_collections.ConfigDict | Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """{dotted key: path} of every input file or workdir named in `config` (see the module docstring)."""
    found = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, (ml_collections.ConfigDict, Mapping)):
            found.update(input_files(value, f"{dotted}."))
        elif (is_file_key(key) or key.endswith(WORKDIR_SUFFIX)) and isinstance(value, str) and value:
            found[dotted] = value
    return found


def workdir_sha256(path: str) -> str:
    """Another run's workdir by what its models are: its config.json and every checkpoint file."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            relative = os.path.relpath(os.path.join(root, name), path)
            if relative == "config.json" or "checkpoints" in relative.split(os.sep)[:-1]:
                digest.update(f"{relative}\0{file_sha256(os.path.join(root, name))}\n".encode())
    return digest.hexdigest()


def input_digests(config: ml_collections.ConfigDict) -> dict[str, dict[str, str]]:
    """{dotted key: {path, sha256}} of the config's inputs; a missing one is a ConfigError."""
    digests = {}
    for key, path in sorted(input_files(config).items()):
        if key.endswith(WORKDIR_SUFFIX):
            if not os.path.isfile(os.path.join(path, "config.json")):
                raise ConfigError(f"config.{key}={path!r}: not a finished run's workdir (no config.json there)")
            digests[key] = {"path": path, "sha256": workdir_sha256(path)}
            continue
        if not os.path.isfile(path):
            raise ConfigError(f"config.{key}={path!r}: no such file. Convert PyTorch weights with "
                              "`python -m ctxfuse_jax.weights.convert` (see README, Pretrained weights)")
        digests[key] = {"path": path, "sha256": file_sha256(path)}
    return digests


def run_fingerprint(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """What a run's stored results carry: experiment, config hash, input files by content."""
    return {"experiment": config.experiment, "config_sha256": sha256_of(config.to_dict()),
            "inputs": input_digests(config)}

