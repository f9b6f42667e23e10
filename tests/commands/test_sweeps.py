"""Sweeps as users start them: multirun, Optuna, experiment presets, and Hydra's launchers.

The runs are real `dml train -m` subprocesses on digits with trainer=debug; their W&B runs
are read back from the offline files. Launchers that start extra processes are `slow`.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_module
from omegaconf import DictConfig, OmegaConf

from dml.reporting.compare.command import main as compare_main
from dml.reporting.run_files import read_history
from tests.conftest import group_options, subprocess_env
from tests.training.test_train import WANDB

DML = str(Path(sys.executable).parent / "dml")
QUICK = [
    "dataset=digits",
    "backbone=mlp",
    "trainer=debug",
    "data.batch_size=60",
    "data.samples_per_class=6",
]
SEARCHED = {"loss.margin", "optimizer.lr", "backbone.embedding_dim", "miner"}


def dml_train(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: int = 600
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [DML, "train", *args],
        cwd=cwd,
        env=env or subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return result


def compose_with_hydra(*overrides: str) -> DictConfig:
    """The composed config with its `hydra` node, where sweepers and launchers live."""
    with initialize_config_module("dml.conf", version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def job_dirs(sweep: Path) -> list[Path]:
    return sorted(
        (p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)
    )


def wandb_records(run_dir: Path) -> dict[str, list[dict]]:
    """The job's offline W&B file, record by record, grouped by record type (one read)."""
    (run_file,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    listing = subprocess.run(
        [WANDB, "leet", "inspect", "--json", str(run_file)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    records: dict[str, list[dict]] = {}
    for record in map(json.loads, listing.stdout.splitlines()):
        records.setdefault(record["type"], []).append(record[record["type"]])
    return records


def run_record(run_dir: Path) -> dict:
    """The `run` record: display name, group, tags, run id."""
    (run,) = wandb_records(run_dir)["run"]
    return run


def job_overrides(run_dir: Path) -> list[str]:
    return yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text())


@pytest.fixture(scope="module")
def four_job_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cwd = tmp_path_factory.mktemp("sweep4")
    result = dml_train(
        "-m",
        "loss=triplet,contrastive",
        "miner=hard,semihard",
        *QUICK,
        "hydra.sweep.dir=sweep",
        cwd=cwd,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return cwd / "sweep"


def test_four_job_sweep_gives_four_comparable_wandb_runs(four_job_sweep: Path) -> None:
    jobs = job_dirs(four_job_sweep)
    assert [p.name for p in jobs] == ["0", "1", "2", "3"]
    seen_ids, combos = set(), set()
    for job in jobs:
        assert (job / "metrics.json").is_file() and (job / "metrics.csv").is_file()
        choice = dict(
            o.split("=", 1) for o in job_overrides(job) if o.split("=")[0] in ("loss", "miner")
        )
        combos.add((choice["loss"], choice["miner"]))

        records = wandb_records(job)
        (run,) = records["run"]
        assert run["run_group"] == four_job_sweep.name
        assert run["display_name"].startswith(f"{choice['loss']}-{choice['miner']}-")
        assert run["tags"] == [
            f"loss:{choice['loss']}",
            f"miner:{choice['miner']}",
            "backbone:mlp",
            "dataset:digits",
        ]
        seen_ids.add(run["run_id"])
        assert [exit_["exit_code"] for exit_ in records["exit"]] == [0]

        config = {k: v for rec in records["config"] for k, v in rec["update"].items()}
        assert config["loss._target_"].startswith(f"dml.losses.{choice['loss']}")
        # "Group by: variant" in the dashboard: the overrides, sorted (no seed here).
        assert config["variant"] == " ".join(sorted(job_overrides(job)))
        assert config["trainer.max_epochs"] == 1 and config["data.batch_size"] == 60
        assert not any(isinstance(v, dict) for k, v in config.items() if k != "_wandb")

        steps = {m["glob_name"]: m["step_metric"] for m in records["metric"] if "glob_name" in m}
        assert steps["val/*"] == steps["test/*"] == steps["train/*"] == "epoch"
        summary = {k: v for rec in records["summary"] for k, v in rec["update"].items()}
        curve = read_history(job / "metrics.csv")["val/map_at_r"]
        assert summary["val/map_at_r"] == {"max": pytest.approx(max(curve))}
        epochs = [h["item"]["epoch"] for h in records["history"] if "val/map_at_r" in h["item"]]
        assert epochs == [0, 1]
    assert len(seen_ids) == 4
    assert combos == {
        (loss, miner) for loss in ("triplet", "contrastive") for miner in ("hard", "semihard")
    }


def test_compare_reads_the_sweep(four_job_sweep: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    assert compare_main([str(four_job_sweep)]) == 0
    lines = (four_job_sweep / "compare.md").read_text().splitlines()
    rows = [line.split(" | ") for line in lines[2:6]]
    assert [row[2] for row in rows] == ["1"] * 4  # one seed each: four variants of n = 1
    assert sorted(row[1] for row in rows) == sorted(
        f"loss={loss} miner={miner}"
        for loss in ("triplet", "contrastive")
        for miner in ("hard", "semihard")
    )
    values = [float(row[3]) for row in rows]
    assert values == sorted(values, reverse=True)
    assert (four_job_sweep / "compare.png").is_file()
    groups = list(csv.DictReader((four_job_sweep / "compare_groups.csv").open()))
    assert [float(g["val/map_at_r_mean"]) for g in groups] == pytest.approx(values, abs=5e-5)


def test_optuna_search_space_names_real_keys_and_options() -> None:
    cfg = compose_with_hydra("sweep=optuna")
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper")
    assert sweeper.direction == "maximize" and cfg.optimized_metric == "val/map_at_r"
    assert set(sweeper.params) == SEARCHED
    for key in SEARCHED - {"miner"}:
        assert OmegaConf.select(cfg, key) is not None, key
    choices = sweeper.params.miner.removeprefix("choice(").removesuffix(")").split(", ")
    assert set(choices) <= set(group_options("miner"))


@pytest.mark.parametrize(
    ("preset", "group"), [("compare_losses", "loss"), ("compare_miners", "miner")]
)
def test_experiment_presets_sweep_a_whole_group_on_mnist5k(preset: str, group: str) -> None:
    cfg = compose_with_hydra(f"experiment={preset}")
    assert cfg.hydra.mode.name == "MULTIRUN"
    assert dict(cfg.hydra.sweeper.params) == {group: "glob(*)"}
    assert cfg.dataset._target_.endswith("MNIST5k")


def test_slurm_presets_compose_for_a_cluster() -> None:
    plugin = compose_with_hydra("hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu")
    assert plugin.hydra.launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert plugin.hydra.launcher.partition == "gpu"
    preset = compose_with_hydra("hydra/launcher=slurm", "trainer.devices=2")
    launcher = OmegaConf.to_container(preset.hydra.launcher, resolve=True)
    assert launcher["_target_"] == plugin.hydra.launcher._target_
    assert launcher["tasks_per_node"] == 2
    assert launcher["submitit_folder"].startswith(preset.hydra.sweep.dir)


@pytest.mark.slow
def test_slurm_launcher_submits_one_array_job_to_sbatch(tmp_path: Path) -> None:
    """A stand-in sbatch records the script; sacct reports the jobs failed, so dml exits."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scripts = {
        "sbatch": 'cp "$1" "$FAKE_SLURM_SCRIPT"\necho "Submitted batch job 4242"\n',
        "srun": "exit 1\n",
        "sacct": "printf 'JobID|State|NodeList\\n4242_0|FAILED|n1\\n4242_1|FAILED|n1\\n'\n",
        "scancel": "exit 0\n",
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text("#!/bin/sh\n" + body)
        (bin_dir / name).chmod(0o755)
    env = subprocess_env()
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    env["FAKE_SLURM_SCRIPT"] = str(tmp_path / "submitted.sh")
    result = dml_train(
        "-m",
        "hydra/launcher=slurm",
        "hydra.launcher.partition=gpu",
        "trainer.devices=2",
        "loss=triplet,contrastive",
        *QUICK,
        "hydra.sweep.dir=sweep",
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert result.returncode != 0 and "UncompletedJobError" in result.stderr
    script = (tmp_path / "submitted.sh").read_text()
    for directive in (
        "--array=0-1",
        "--partition=gpu",
        "--ntasks-per-node=2",
        "--cpus-per-task=4",
        "--mem=32GB",
        "--time=240",
        "--job-name=dml",
    ):
        assert f"#SBATCH {directive}" in script, directive
    assert f"{tmp_path / 'sweep' / '.submitit'}" in script
    assert "submitit.core._submit" in script


@pytest.mark.slow
def test_optuna_sweep_returns_the_metric_it_optimises(tmp_path: Path) -> None:
    result = dml_train(
        "-m",
        "sweep=optuna",
        "hydra.sweeper.n_trials=2",
        *QUICK,
        "hydra.sweep.dir=sweep",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = tmp_path / "sweep"
    jobs = job_dirs(sweep)
    assert len(jobs) == 2
    found = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    values = [json.loads((job / "metrics.json").read_text())["val/map_at_r"] for job in jobs]
    assert found["best_value"] == pytest.approx(max(values))
    assert set(found["best_params"]) == SEARCHED
    for job in jobs:
        sampled = dict(o.split("=", 1) for o in job_overrides(job))
        assert SEARCHED <= set(sampled)
        assert 0.05 <= float(sampled["loss.margin"]) <= 0.5
        assert 1e-4 <= float(sampled["optimizer.lr"]) <= 1e-2
    assert len({run_record(job)["run_group"] for job in jobs}) == 1


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_parallel_launchers_run_two_jobs_each_with_its_own_run(
    tmp_path: Path, launcher: str
) -> None:
    result = dml_train(
        "-m",
        f"hydra/launcher={launcher}",
        "loss=triplet,contrastive",
        *QUICK,
        "hydra.sweep.dir=sweep",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = tmp_path / "sweep"
    jobs = job_dirs(sweep)
    assert [p.name for p in jobs] == ["0", "1"]
    assert all((job / "metrics.json").is_file() for job in jobs)
    runs = [run_record(job) for job in jobs]
    assert len({run["run_id"] for run in runs}) == 2
    assert {run["run_group"] for run in runs} == {"sweep"}
    if launcher == "joblib":
        assert "Joblib.Parallel(n_jobs=" in result.stdout + result.stderr
    else:
        results = list((sweep / ".submitit").glob("*/*_result.pkl"))
        assert len(results) == 2


@pytest.mark.slow
def test_compare_losses_preset_runs_every_loss(tmp_path: Path) -> None:
    result = dml_train(
        "experiment=compare_losses", "trainer=debug", "hydra.sweep.dir=sweep", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = job_dirs(tmp_path / "sweep")
    losses = sorted(dict(o.split("=", 1) for o in job_overrides(j))["loss"] for j in jobs)
    assert losses == group_options("loss")
    assert all((job / "metrics.json").is_file() for job in jobs)
