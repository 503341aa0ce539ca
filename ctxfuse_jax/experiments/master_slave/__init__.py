"""Seed 003 (Ghosh et al.): a quality-predicting master picks among branches on a shared trunk."""
