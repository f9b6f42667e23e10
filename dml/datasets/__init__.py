"""Where the data comes from, and how it is split.

- :mod:`.base`: what every source returns (:class:`~.base.DataSplits` of labelled
  datasets) and the shared base of in-memory sources;
- :mod:`.splitting`: every split and fold rule, the one place they live;
- :mod:`.builtin`: the sources dml ships options for: scikit-learn's small sets, MNIST,
  Gaussian clusters and the image benchmarks (CUB-200, Cars196, SOP, In-Shop);
- :mod:`.user_files`: readers of a user's own files: image folders, OML tables,
  feature files, text tables, and the queries of ``dml search``;
- :mod:`.tokens`: text items, and their tokenizing into batches (the loaders' collate);
- :mod:`.images`: image files, their checks and the base every image source shares;
- :mod:`.pairs`: a training split served as Siamese pairs;
- :mod:`.fakes`: generated stand-ins for the benchmarks, used by scripts and tests only,
  never imported by a run.
"""
