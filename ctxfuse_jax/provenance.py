"""Fingerprints of what produced a result: the config, and the input files by content.

A path says where a file was, not what it held: replacing `fgw.npz` with other weights must make
every result computed from it stale. Input files are found by convention, so a new experiment gets
them fingerprinted without registering anything: every non-empty string under a config key named
`weights` or ending in `_weights` is an input file.
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


def input_files(config: ml_collections.ConfigDict | Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """{dotted key: path} of every input file named in `config` (keys `weights` / `*_weights`)."""
    found = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, (ml_collections.ConfigDict, Mapping)):
            found.update(input_files(value, f"{dotted}."))
        elif (key == "weights" or key.endswith("_weights")) and isinstance(value, str) and value:
            found[dotted] = value
    return found


def input_digests(config: ml_collections.ConfigDict) -> dict[str, dict[str, str]]:
    """{dotted key: {path, sha256}} of the config's input files; a missing one is a ConfigError."""
    digests = {}
    for key, path in sorted(input_files(config).items()):
        if not os.path.isfile(path):
            raise ConfigError(f"config.{key}={path!r}: no such file. Convert PyTorch weights with "
                              "`python -m ctxfuse_jax.weights.convert` (see README, Pretrained weights)")
        digests[key] = {"path": path, "sha256": file_sha256(path)}
    return digests


def run_fingerprint(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """What a run's stored results carry: experiment, config hash, input files by content."""
    return {"experiment": config.experiment, "config_sha256": sha256_of(config.to_dict()),
            "inputs": input_digests(config)}

