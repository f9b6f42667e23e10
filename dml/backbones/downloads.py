"""Pretrained weights through the libraries' own download paths, or one line saying why not.

torchvision and timm fetch weights on first use into their caches: torchvision's into the
torch hub cache, timm's through the Hugging Face hub client into the Hugging Face cache.
Where no network is, the hub client retries every file for most of a minute before it
gives up. So dml looks in the cache first, then asks the host once, with a short timeout,
whether it answers at all; if not, the run stops at start with one line that names the
missing file, where the cache expects it, and the local-file option.

``HF_HUB_OFFLINE=1``, the hub client's own switch, skips the question: nothing is
downloaded, from the hub or (so that one variable makes a machine offline) from
torchvision's server.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.error import HTTPError
from urllib.parse import urlsplit
from urllib.request import Request, urlopen

import torch

from dml.errors import DmlError

# Seconds the host may take to answer: enough for a slow link, far below the hub
# client's minute of retries.
PROBE_TIMEOUT_S = 5.0
TRUE_VALUES = ("1", "ON", "YES", "TRUE")
LOCAL_FILE = "or set backbone.weights=/path/to/file (.pth or .safetensors) to load a local file"


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` is set, read now (the hub client reads it at import)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in TRUE_VALUES


def offline_reason(url: str) -> str | None:
    """Why nothing can be downloaded from ``url``'s host now, or None if the host answers.

    Any HTTP answer, an error status included, counts: the host is reachable. The question
    runs in a thread joined with a timeout, since name resolution ignores socket timeouts.
    """
    if hub_offline():
        return "HF_HUB_OFFLINE is set"
    parts = urlsplit(url)
    root = f"{parts.scheme}://{parts.netloc}/"
    answers: list[str | None] = []
    asking = threading.Thread(target=_ask, args=(root, answers), daemon=True)
    asking.start()
    asking.join(PROBE_TIMEOUT_S)
    if not answers:
        return f"{parts.netloc} did not answer within {PROBE_TIMEOUT_S:g} s"
    return answers[0]


def _ask(root: str, answers: list[str | None]) -> None:
    host = urlsplit(root).netloc
    try:
        urlopen(Request(root, method="HEAD"), timeout=PROBE_TIMEOUT_S).close()
    except HTTPError:
        answers.append(None)
    except (OSError, ValueError) as exc:  # URLError, timeouts and refused connections
        reason = getattr(exc, "reason", exc)
        answers.append(f"{host} is unreachable: {reason}")
    else:
        answers.append(None)


def torch_hub_file(url: str) -> Path:
    """Where torch hub (torchvision, and timm for weights only at a URL) caches ``url``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlsplit(url).path).name


def missing_torch_hub_file(what: str, url: str, reason: str, scratch: str) -> DmlError:
    """``scratch`` is the setting that trains without the weights."""
    path = torch_hub_file(url)
    return DmlError(
        f"{what} not found at {path} and not downloadable ({reason}): the file {path.name} "
        f"must be in the folder {path.parent} (the torch hub cache, where {url} is "
        "downloaded on first use; copy it there from a machine with network, or point "
        f"TORCH_HOME at the folder above hub/), {LOCAL_FILE}, or {scratch} to train "
        "from scratch"
    )


def download_to_torch_hub(url: str, what: str, scratch: str) -> Path:
    """The cached file of ``url``, downloaded first if the cache lacks it."""
    path = torch_hub_file(url)
    if path.is_file():
        return path
    reason = offline_reason(url)
    if reason is not None:
        raise missing_torch_hub_file(what, url, reason, scratch)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(path), progress=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise DmlError(f"downloading {url} for {what} failed: {exc}") from None
    return path


@dataclass(frozen=True)
class HubFile:
    """A weights file in a Hugging Face hub repository; ``filenames`` in order of
    preference (safetensors first, as timm loads them)."""

    repo_id: str
    filenames: tuple[str, ...]
    revision: str | None = None


def cached_hub_file(file: HubFile) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    for name in file.filenames:
        cached = try_to_load_from_cache(file.repo_id, name, revision=file.revision)
        if isinstance(cached, str):
            return Path(cached)
    return None


def hub_cache_folder(repo_id: str) -> Path:
    """Where the hub client caches a model repository's files (``HF_HUB_CACHE``)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}"


def download_from_hub(file: HubFile, what: str, scratch: str) -> Path:
    """The cached file, or downloaded into the Hugging Face cache by the hub client."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    cached = cached_hub_file(file)
    if cached is not None:
        return cached
    reason = offline_reason(constants.ENDPOINT)
    if reason is not None:
        cache = hub_cache_folder(file.repo_id)
        raise DmlError(
            f"{what} not found offline ({reason}): {file.filenames[0]} of the Hugging Face "
            f"repository {file.repo_id} is not in the cache {cache}; run once where there "
            f"is a network (or `hf download {file.repo_id} {file.filenames[0]}`) and copy "
            f"the cache folder here, {LOCAL_FILE}, or {scratch} to train from scratch"
        )
    for name in file.filenames:
        try:
            return Path(hf_hub_download(file.repo_id, name, revision=file.revision))
        except EntryNotFoundError:
            continue
        except Exception as exc:  # the hub client fails with HTTP, OS and its own errors
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise DmlError(
                f"downloading {name} of {file.repo_id} for {what} failed: "
                f"{type(exc).__name__}: {first}; {LOCAL_FILE}"
            ) from None
    raise DmlError(
        f"the Hugging Face repository {file.repo_id} holds none of {', '.join(file.filenames)} "
        f"for {what}; {LOCAL_FILE}"
    )
