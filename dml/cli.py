"""`dml <command> [hydra overrides]`: one console script, one Hydra app per command.

The config path is the package's own ``dml/conf``, so `dml` works from any directory.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import hydra
from omegaconf import DictConfig

USAGE = """usage: dml <command> [overrides...]

commands:
  train    train a model; `dml train --help` lists the config groups and options,
           `dml train --cfg job` prints the composed config, `-m` runs a sweep
  eval     evaluate a checkpoint: dml eval ckpt_path=PATH [dataset=...]

examples:
  dml train loss=triplet miner=hard
  dml train -m loss=triplet,contrastive miner=hard,semihard
"""


def report_errors(task: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """Turn a DmlError into one line on stderr and exit status 2, instead of a traceback."""

    def wrapped(cfg: DictConfig) -> Any:
        from dml.errors import DmlError

        try:
            return task(cfg)
        except DmlError as exc:
            raise SystemExit(f"error: {exc}") from None

    wrapped.__name__ = task.__name__
    wrapped.__doc__ = task.__doc__
    return wrapped


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
@report_errors
def train_command(cfg: DictConfig) -> float | None:
    from dml.run import train

    metrics = train(cfg)
    value = metrics.get(cfg.optimized_metric)
    return None if value is None else float(value)


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
@report_errors
def eval_command(cfg: DictConfig) -> None:
    from dml.run import evaluate

    evaluate(cfg)


COMMANDS: dict[str, Callable[[], Any]] = {"train": train_command, "eval": eval_command}


def quiet_library_chatter() -> None:
    """Keep the console for dml's own output: Lightning's info lines and advice that does not
    apply to in-memory datasets are hidden; warnings about the user's run still show."""
    import logging
    import warnings

    logging.getLogger("pytorch_lightning.utilities.rank_zero").setLevel(logging.WARNING)
    logging.getLogger("pytorch_lightning.accelerators.cuda").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated.*")


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        raise SystemExit(f"error: unknown command {command!r}; choose one of {', '.join(COMMANDS)}")
    sys.argv = [f"dml-{command}", *rest]
    quiet_library_chatter()
    try:
        COMMANDS[command]()
    except BrokenPipeError:
        # Output piped into e.g. `head`, which closed early: not an error.
        sys.stderr.close()
