"""The commands `dml train | eval | embed`, as plain functions of a composed config.

Hydra's entry points in :mod:`dml.cli` wrap them; tests, notebooks and the scikit-learn
estimator call them directly.
"""
