"""`dml <command> [hydra overrides]`: one console script, one Hydra app per command.

The config path is the package's own ``dml/conf``, so `dml` works from any directory.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

USAGE = """usage: dml <command> [overrides...]

commands:
  train    train a model; `dml train --help` lists the config groups and options,
           `dml train --cfg job` prints the composed config, `-m` runs a sweep
  eval     evaluate a checkpoint: dml eval ckpt_path=PATH [dataset=...]
  embed    write embeddings: dml embed ckpt_path=PATH out=emb.npz [split=test]
  search   nearest gallery items of images or features: dml search ckpt_path=PATH
           query=IMAGE_OR_DIR [gallery=test|FILE.npz] [k=10]; writes search.png
  export   a standalone model: dml export ckpt_path=PATH format=onnx|torchscript out=FILE
  compare  a table, CSV, Markdown and plots of runs: dml compare MULTIRUN_DIR | RUN_DIR...

examples:
  dml train loss=triplet miner=hard
  dml train -m loss=triplet,contrastive miner=hard,semihard
  dml compare outputs/multirun/<timestamp>
"""


def report_errors(task: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """Turn a DmlError into one line on stderr and a non-zero exit, instead of a traceback.

    In a multirun a failed job leaves a ``FAILED`` marker in its directory, logs one line
    (a traceback only for an error that is not the user's input) and the sweep goes on;
    :class:`dml.config.sweep_summary.SweepSummary` names the failed jobs at the end and
    exits non-zero.
    """

    def wrapped(cfg: DictConfig) -> Any:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        from dml.errors import DmlError, RunInterrupted, one_line
        from dml.reporting.run_files import holds_results, write_failure_marker
        from dml.training.distributed import is_rank_zero

        hydra_cfg = HydraConfig.get()
        run_dir = Path(hydra_cfg.runtime.output_dir)
        multirun = hydra_cfg.mode == RunMode.MULTIRUN
        try:
            require_given(cfg, hydra_cfg.job.config_name)
            return task(cfg)
        except Exception as exc:
            if multirun or holds_results(run_dir):
                write_failure_marker(run_dir, exc)
            elif is_rank_zero():
                # A single run that failed before measuring anything leaves nothing behind,
                # so `dml compare outputs/runs/*` lists no empty "unfinished" runs.
                shutil.rmtree(run_dir, ignore_errors=True)
            # Ctrl-C or SIGTERM stops a sweep too: its next jobs would be stopped alike.
            if not multirun or isinstance(exc, RunInterrupted):
                if isinstance(exc, DmlError):
                    raise SystemExit(f"error: {one_line(exc)}") from None
                raise
            log = logging.getLogger("dml")
            if isinstance(exc, DmlError):
                log.error("job %s failed: %s", hydra_cfg.job.num, one_line(exc))
            else:
                log.exception("job %s failed", hydra_cfg.job.num)
            return None

    wrapped.__name__ = task.__name__
    wrapped.__doc__ = task.__doc__
    return wrapped


def require_given(cfg: DictConfig, command: str) -> None:
    """A key the command needs (``???`` in its YAML, e.g. ``query``) is named at start."""
    from omegaconf import OmegaConf

    from dml.errors import DmlError

    # Top-level keys only, read without resolving: a broken interpolation elsewhere is
    # check_config's to name.
    missing = [key for key in cfg if OmegaConf.is_missing(cfg, key)]
    if missing:
        given = " ".join(f"{key}=..." for key in missing)
        raise DmlError(
            f"{', '.join(missing)} must be given: dml {command} {given} "
            f"(dml {command} --help describes each)"
        )


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
@report_errors
def train_command(cfg: DictConfig) -> float | None:
    from dml.commands.cross_validate import cross_validate, cv_folds
    from dml.commands.train import train
    from dml.training.selection import SELECTION_SCORE

    metrics = cross_validate(cfg) if cv_folds(cfg) else train(cfg)
    # The optimized_metric of the checkpoint the run tested (eval.test_checkpoint); under
    # cv.folds, its mean over the folds.
    value = metrics.get(SELECTION_SCORE)
    return None if value is None else float(value)


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
@report_errors
def eval_command(cfg: DictConfig) -> None:
    from dml.commands.evaluate import evaluate

    evaluate(cfg)


@hydra.main(version_base="1.3", config_path="conf", config_name="embed")
@report_errors
def embed_command(cfg: DictConfig) -> None:
    from dml.commands.embed import embed

    embed(cfg)


@hydra.main(version_base="1.3", config_path="conf", config_name="search")
@report_errors
def search_command(cfg: DictConfig) -> None:
    from dml.commands.search import search

    search(cfg)


@hydra.main(version_base="1.3", config_path="conf", config_name="export")
@report_errors
def export_command(cfg: DictConfig) -> None:
    from dml.commands.export import export

    export(cfg)


def compare_command() -> None:
    from dml.reporting.compare.command import main as compare_main

    raise SystemExit(compare_main(sys.argv[1:]))


COMMANDS: dict[str, Callable[[], Any]] = {
    "train": train_command,
    "eval": eval_command,
    "embed": embed_command,
    "search": search_command,
    "export": export_command,
    "compare": compare_command,
}


def quiet_library_chatter() -> None:
    """Keep the console for dml's own output: Lightning's info lines and advice that does not
    apply to in-memory datasets are hidden; warnings about the user's run still show."""
    import logging
    import warnings

    logging.getLogger("pytorch_lightning.utilities.rank_zero").setLevel(logging.WARNING)
    logging.getLogger("pytorch_lightning.accelerators.cuda").setLevel(logging.WARNING)
    # "Received SIGTERM: 15": dml says what it saved and how to resume instead.
    logging.getLogger("pytorch_lightning.trainer.connectors.signal_connector").setLevel(
        logging.WARNING
    )
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated.*")
    # Under DDP every process logs the same epoch values (dml gathers the batches and the
    # evaluation embeddings itself), so Lightning's advice to sync them does not apply.
    warnings.filterwarnings("ignore", message=".*when logging on epoch level in distributed.*")
    # dml logs training values once per epoch (the step loss goes to the progress bar
    # only), so an epoch shorter than log_every_n_steps loses nothing: the advice to lower
    # it would fire on every small-data run and ask nothing of the user.
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")


def run_reporting_composition_errors(command: Callable[[], Any], overrides: list[str]) -> None:
    """Run a Hydra command; a command line that cannot be composed exits with one line.

    Hydra prints its own multi-line report (with the config search path) unless
    ``HYDRA_FULL_ERROR=1``, which lets the error reach here, where
    :mod:`dml.config.override_errors` names the closest option or key. A user who set
    ``HYDRA_FULL_ERROR=1`` gets Hydra's full report, as Hydra documents.
    """
    from hydra.errors import HydraException

    asked_for_full_errors = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        command()
    except HydraException as exc:
        if asked_for_full_errors:
            raise
        from dml.config.override_errors import explain

        raise SystemExit(f"error: {explain(exc, overrides)}") from None


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
        run_reporting_composition_errors(COMMANDS[command], rest)
    except BrokenPipeError:
        # Output piped into e.g. `head`, which closed early: not an error.
        sys.stderr.close()
