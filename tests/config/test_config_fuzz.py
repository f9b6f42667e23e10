"""Random configs either train one debug step or fail before training with one line."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hydra import compose, initialize_config_module
from hydra.errors import ConfigCompositionException, HydraException
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dml.commands.train import train
from dml.errors import DmlError
from tests.conftest import group_options

BASE = [
    "dataset=digits",
    "trainer=debug",
    "logger=none",
    "data.batch_size=60",
    "data.samples_per_class=6",
]

numeric_override = st.one_of(
    st.builds(lambda v: f"loss.margin={v}", st.sampled_from([-0.5, 0.0, 0.1, 0.3, 2.0])),
    st.builds(lambda v: f"data.batch_size={v}", st.sampled_from([0, 1, 7, 30, 60, 64])),
    st.builds(lambda v: f"data.samples_per_class={v}", st.sampled_from([0, 1, 2, 5, 6])),
    st.builds(lambda v: f"backbone.embedding_dim={v}", st.sampled_from([0, -3, 2, 16, "abc"])),
    st.builds(lambda v: f"optimizer.lr={v}", st.sampled_from([-0.1, 0.0, 1e-3, "fast", 1e6])),
    st.builds(lambda v: f"trainer.max_epochs={v}", st.sampled_from([0, 1, 2.5])),
    st.sampled_from(["loss.margn=0.3", "data.batchsize=10", "+bogus=1"]),
)

config = st.tuples(
    st.sampled_from(["triplet", "contrastive"]),
    st.sampled_from(group_options("miner")),
    st.sampled_from(["mlp", "convnet"]),
    st.sampled_from(group_options("optimizer")),
    st.lists(numeric_override, max_size=3),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config)
def test_random_configs_run_or_fail_cleanly(choice: tuple) -> None:
    loss, miner, backbone, optimizer, overrides = choice
    args = [
        *BASE,
        f"loss={loss}",
        f"miner={miner}",
        f"backbone={backbone}",
        f"optimizer={optimizer}",
        *overrides,
    ]
    try:
        with initialize_config_module("dml.conf", version_base="1.3"):
            cfg = compose("train", overrides=args)
    except (ConfigCompositionException, HydraException) as exc:
        assert "Could not" in str(exc) or "not in struct" in str(exc) or "Key" in str(exc)
        return
    with tempfile.TemporaryDirectory() as run_dir:
        try:
            metrics = train(cfg, Path(run_dir))
        except DmlError as exc:
            assert "\n" not in str(exc), str(exc)
            assert not (Path(run_dir) / "checkpoints").exists(), "failed after training began"
            return
    assert "test/map_at_r" in metrics
