from __future__ import annotations

import errno
from pathlib import Path

import pytest

from dml.config.output_dir_check import probe_output_dir


def test_a_full_disk_fails_with_the_path_and_leaves_no_probe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(self: Path, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", disk_full)
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        probe_output_dir(run_dir, "hydra.run.dir")
    message = str(exit_info.value)
    assert message.startswith(f"error: cannot write the output directory {run_dir}")
    assert "No space left on device" in message
    assert "hydra.run.dir=PATH" in message
    assert list(run_dir.iterdir()) == []


def test_a_writable_directory_passes_and_keeps_nothing(tmp_path: Path) -> None:
    probe_output_dir(tmp_path / "a" / "b", "hydra.run.dir")
    assert list((tmp_path / "a" / "b").iterdir()) == []
