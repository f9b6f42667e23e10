"""OmegaConf resolvers that dml's YAML files use; registered when ``dml`` is imported, so
every entry point (the CLI, Hydra's compose API in tests and notebooks) has them.

``${dml.feature_shape:PATH,LABELS_PATH,COLUMNS}`` and ``${dml.feature_classes:...}`` read
a feature file's row shape and class count (``conf/dataset/features.yaml``), so the
backbone and the per-class losses fit the user's file without the user counting columns.
``${dml.text_classes:PATH}`` is the class count of a text table (``conf/dataset/text.yaml``).

``${dml.model_input:KEY}`` is what the run's backbone expects of its input (crop_size,
resize_size, interpolation, mean, std; ``conf/dataset/transform/imagenet.yaml``), so the
transform follows the model unless the user sets the key (:mod:`dml.config.preprocessing`).

``${dml.help_body:COMMAND}`` is the body of ``dml COMMAND --help`` (:mod:`dml.config.help`).
"""

from __future__ import annotations

from typing import Any

from omegaconf import ListConfig, OmegaConf


def _columns(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, ListConfig | list | tuple):
        return [str(v) for v in value]
    return [str(value)]


def _feature_shape(path: Any, labels_path: Any = None, columns: Any = None) -> list[int] | None:
    from dml.datasets.user_files.feature_file import file_input_shape

    return file_input_shape(path, labels_path, _columns(columns))


def _feature_classes(path: Any, labels_path: Any = None, columns: Any = None) -> int | None:
    from dml.datasets.user_files.feature_file import file_num_classes

    return file_num_classes(path, labels_path, _columns(columns))


def _text_classes(path: Any) -> int | None:
    from dml.datasets.user_files.text_file import file_num_classes

    return file_num_classes(path)


def _model_input(key: str, *, _parent_: Any, _root_: Any) -> Any:
    from dml.config.preprocessing import model_input_value

    return model_input_value(key, _parent_, _root_)


def _help_body(command: str, _root_: Any) -> str:
    from dml.config.help import help_body

    return help_body(command, _root_)


RESOLVERS = {
    "dml.feature_shape": _feature_shape,
    "dml.feature_classes": _feature_classes,
    "dml.text_classes": _text_classes,
    "dml.model_input": _model_input,
    "dml.help_body": _help_body,
}


def register_resolvers() -> None:
    """Register each resolver once (importing dml twice must not fail)."""
    for name, function in RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, function)
