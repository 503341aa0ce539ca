"""Background reliance (seed 004, Xiao et al. 2021): ImageNet-9 variants, BG-gap, the backgrounds challenge.

`experiment.run` is what `configs/in9.py` runs; `data` builds the variants' training sets and reads
the released folders, `measures` computes the paper's numbers from per-example predictions,
`report` writes them beside the paper's with computed verdicts, `outputs` the files and figures.
"""
