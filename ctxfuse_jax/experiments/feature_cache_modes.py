"""The `heads.feature_cache` modes (see `feature_cache`), importable without TensorFlow for config checks.

'auto': cache the frozen streams' features when they fit in `feature_cache_max_gib`; 'on': always
(an error under crop augmentation); 'off': recompute them every step.
"""

MODES = ("auto", "on", "off")
