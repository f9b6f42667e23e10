"""A Hydra callback that checks the output directory before Hydra creates it.

Hydra makes the run (or sweep) directory itself, before any dml code runs, so a read-only
or full disk would otherwise end in a traceback from inside Hydra.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

PROBE_BYTES = 4096


def probe_output_dir(path: Path, setting: str) -> None:
    """Create ``path`` and write a small file there; exit with one line naming it if not."""
    probe = path / ".write_probe"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"\0" * PROBE_BYTES)
        probe.unlink()
    except OSError as exc:
        # SystemExit passes through Hydra's error reporting, which would print a traceback.
        raise SystemExit(
            f"error: cannot write the output directory {path} ({exc.strerror or exc}); "
            f"free space there or choose a writable one with {setting}=PATH"
        ) from None


class OutputDirCheck(Callback):
    """Fails at start, with the path, when the run or sweep directory is not writable."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        probe_output_dir(Path(str(config.hydra.run.dir)), "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        probe_output_dir(Path(str(config.hydra.sweep.dir)), "hydra.sweep.dir")
