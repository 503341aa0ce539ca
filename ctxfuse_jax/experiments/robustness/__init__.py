"""The robustness report: any finished classifier scored under every degradation, severity and region.

`conditions` turns the config's corruptions into the evaluator's families (blur and noise, on device)
and host test sets (JPEG, JPEG 2000); `experiment` reads the workdirs' classifiers
(`experiments.finished`) and scores them; `measures` holds ECE and the corruption errors; `report`
writes results.json, the long table, the figures and report.md.
"""
