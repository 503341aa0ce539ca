"""What a blur sweep can blur, importable without the sweep's TensorFlow-backed data pipeline.

Config checks read it, so a wrong `sweep.regions` is refused before anything heavy is imported.
"""

REGIONS = ("foreground", "all")  # the object's mask only, or the whole image
