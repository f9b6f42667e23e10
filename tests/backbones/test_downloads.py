"""Pretrained weights: the cache first, a download where the host answers, one line where
it does not. No test reaches the network: hosts are local ports, downloads are stand-ins.
"""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torchvision import models

from dml.backbones import downloads
from dml.backbones.downloads import HubFile, download_from_hub, offline_reason
from dml.backbones.resnet import ResNet
from dml.backbones.timm_backbone import TimmBackbone
from dml.backbones.timm_trunks import hub_filenames
from dml.errors import DmlError


def closed_port() -> int:
    """A local port nothing listens on: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def answering_host() -> Iterator[str]:
    """A local HTTP server that answers every request with 404."""
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/some/file.pth"
    server.shutdown()
    server.server_close()


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache of this test's own."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_hf_hub_offline_means_offline_without_asking() -> None:
    assert offline_reason("https://huggingface.co") == "HF_HUB_OFFLINE is set"


@pytest.mark.usefixtures("online")
def test_a_host_that_refuses_is_unreachable() -> None:
    reason = offline_reason(f"http://127.0.0.1:{closed_port()}/file")
    assert reason is not None and reason.startswith("127.0.0.1:") and "unreachable" in reason


@pytest.mark.usefixtures("online")
def test_a_host_that_answers_even_with_an_error_status_is_reachable(answering_host: str) -> None:
    assert offline_reason(answering_host) is None


@pytest.mark.usefixtures("online")
def test_a_host_that_never_answers_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(downloads, "PROBE_TIMEOUT_S", 0.2)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(0)  # accepts the connection, never answers the request
    try:
        reason = offline_reason(f"http://127.0.0.1:{silent.getsockname()[1]}/")
    finally:
        silent.close()
    # The join and the socket share the timeout, so either may end the wait first.
    assert reason is not None
    assert "did not answer within 0.2 s" in reason or "unreachable: timed out" in reason


def test_timm_tries_safetensors_first() -> None:
    assert hub_filenames(None) == ("model.safetensors", "pytorch_model.bin")
    assert hub_filenames("open_clip_pytorch_model.bin") == (
        "open_clip_model.safetensors",
        "open_clip_pytorch_model.bin",
    )
    assert hub_filenames("weights.npz") == ("weights.npz",)


def test_offline_and_not_cached_is_one_line_naming_file_cache_and_fixes(hub_cache: Path) -> None:
    with pytest.raises(DmlError) as info:
        TimmBackbone("vit_tiny_patch16_224", [3, 32, 32])
    message = str(info.value)
    assert message.startswith(
        "pretrained weights of timm's vit_tiny_patch16_224 not found offline (HF_HUB_OFFLINE"
    )
    repo = "timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k"
    assert f"model.safetensors of the Hugging Face repository {repo}" in message
    assert str(hub_cache / "models--timm--vit_tiny_patch16_224.augreg_in21k_ft_in1k") in message
    assert "backbone.weights=/path/to/file (.pth or .safetensors)" in message
    assert "backbone.pretrained=false" in message and "\n" not in message


def test_a_cached_hub_file_loads_offline(hub_cache: Path) -> None:
    """The hub's cache layout: refs/main names the snapshot that holds the file."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(3)
    state = timm.create_model("vit_tiny_patch16_224", pretrained=False).state_dict()
    repo = hub_cache / "models--timm--vit_tiny_patch16_224.augreg_in21k_ft_in1k"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    save_file(state, str(snapshot / "model.safetensors"))
    model = TimmBackbone("vit_tiny_patch16_224", [3, 224, 224], embedding_dim=8)
    assert torch.equal(model.trunk.blocks[2].mlp.fc1.weight, state["blocks.2.mlp.fc1.weight"])


@pytest.mark.usefixtures("online")
def test_online_the_hub_client_downloads_falling_back_to_the_next_file(
    hub_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub
    from huggingface_hub.errors import EntryNotFoundError

    asked: list[str] = []

    def hf_hub_download(repo_id: str, filename: str, revision: str | None = None) -> str:
        asked.append(filename)
        if filename == "model.safetensors":
            raise EntryNotFoundError("no such file")
        path = hub_cache / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"weights")
        return str(path)

    monkeypatch.setattr(downloads, "offline_reason", lambda url: None)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    file = HubFile("org/model", ("model.safetensors", "pytorch_model.bin"))
    assert download_from_hub(file, "weights", "x=false") == hub_cache / "pytorch_model.bin"
    assert asked == ["model.safetensors", "pytorch_model.bin"]


@pytest.mark.usefixtures("online")
def test_a_failed_download_is_one_line(hub_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    def broken(*args: object, **kwargs: object) -> str:
        raise OSError("Connection reset by peer\nretries exhausted")

    monkeypatch.setattr(downloads, "offline_reason", lambda url: None)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", broken)
    with pytest.raises(DmlError) as info:
        download_from_hub(HubFile("org/model", ("model.safetensors",)), "weights", "x=false")
    assert str(info.value).startswith(
        "downloading model.safetensors of org/model for weights failed: OSError: Connection reset"
    )
    assert "\n" not in str(info.value)


# torchvision's ResNets: the same rule through torchvision's weights API.


def test_resnet_offline_names_file_folder_url_and_the_local_file_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(DmlError) as info:
        ResNet("resnet18", [3, 32, 32], weights="imagenet")
    message = str(info.value)
    folder = tmp_path / "hub" / "checkpoints"
    assert message.startswith(f"pretrained resnet18 weights not found at {folder}")
    assert "(HF_HUB_OFFLINE is set)" in message
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message
    assert "backbone.weights=/path/to/file (.pth or .safetensors)" in message


@pytest.mark.usefixtures("online")
def test_resnet_online_downloads_through_torchvisions_weights_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(4)
    state = models.resnet18(weights=None).state_dict()
    fetched: list[str] = []

    def get_state_dict(self: models.WeightsEnum, progress: bool = True) -> dict:
        fetched.append(self.url)
        return state

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr("dml.backbones.resnet.offline_reason", lambda url: None)
    monkeypatch.setattr(models.WeightsEnum, "get_state_dict", get_state_dict)
    model = ResNet("resnet18", [3, 32, 32], weights="IMAGENET1K_V1")
    assert fetched == ["https://download.pytorch.org/models/resnet18-f37072fd.pth"]
    assert torch.equal(model.trunk[0].weight, state["conv1.weight"])


def test_resnet_loads_a_local_safetensors_file(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    torch.manual_seed(5)
    state = models.resnet18(weights=None).state_dict()
    path = tmp_path / "resnet18.safetensors"
    save_file(state, str(path))
    model = ResNet("resnet18", [3, 32, 32], weights=str(path))
    assert torch.equal(model.trunk[4][0].conv1.weight, state["layer1.0.conv1.weight"])
