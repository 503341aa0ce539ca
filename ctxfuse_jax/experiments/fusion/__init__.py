"""Contextual fusion (seed 000): its networks, stages, analysis and report, in one place.

`experiment.run` is what `configs/fusion.py` runs; the shared parts (models, degradations, the
evaluator of conditions, tables and figures) live outside this package.
"""
