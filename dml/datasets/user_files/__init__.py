"""Readers of a user's own files: a folder of images per class, an image table in
open-metric-learning's CSV format, a feature file (.npz, .npy, .csv, .parquet), a text
table (.csv, .parquet), and the queries of ``dml search``. Every error names the file, and
for a table its column and row."""
