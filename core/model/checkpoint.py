"""Find a model's files (a local folder or a Hugging Face hub id) and read only the tensors a caller needs.

A server for blocks 40-52 of a 70B model must never read, or download, the shards that hold the other blocks:
`Checkpoint.load_tensors(names)` opens only the safetensors files that the index maps those names to, and for a
hub model downloads only those files.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from potluck.core.errors import PotluckError
from potluck.core.model.builtin import BUILTIN, builtin_model_path
from potluck.core.model.progress import download_bar

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"


class CheckpointError(PotluckError, RuntimeError):
    """The model cannot be found or read; the message says what is missing and where."""


Fetcher = Callable[[str], Path]  # file name inside the model -> local path (downloads it if needed)


@dataclass
class Checkpoint:
    """A model checkpoint: its config, its weight map, and a way to get each file locally."""

    model: str  # what the user asked for: a folder or a hub id
    revision: str  # commit hash (hub) or content hash of config.json (local folder)
    config_dict: dict
    weight_map: dict[str, str]  # tensor name -> file name
    fetch: Fetcher = field(repr=False)
    files_opened: list[str] = field(default_factory=list, repr=False)  # for diagnostics and tests

    @property
    def uid(self) -> str:
        """The model's identity in the swarm: a readable name plus its revision."""
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", self.model.rstrip("/").split("/")[-1] if os.path.isdir(self.model) else self.model)
        return f"{name.strip('-')[:48]}@{self.revision[:12]}"

    def files_for(self, names: Iterable[str]) -> list[str]:
        missing = [n for n in names if n not in self.weight_map]
        if missing:
            raise CheckpointError(f"{self.model}: the checkpoint has no tensor {missing[0]!r}")
        return sorted({self.weight_map[n] for n in names})

    def names_with_prefix(self, prefix: str) -> list[str]:
        return [n for n in self.weight_map if n.startswith(prefix)]

    def load_tensors(self, names: Iterable[str]) -> dict:
        """Read exactly these tensors, opening (and fetching) only the files that hold them."""
        from safetensors import SafetensorError, safe_open

        names = list(names)
        self.files_for(names)  # raises on a missing name
        by_file: dict[str, list[str]] = {}
        for name in names:
            by_file.setdefault(self.weight_map[name], []).append(name)
        tensors = {}
        for file_name, file_names in sorted(by_file.items()):
            path = self.fetch(file_name)
            self.files_opened.append(file_name)
            try:
                with safe_open(str(path), framework="pt") as f:
                    for name in file_names:
                        tensors[name] = f.get_tensor(name)
            except (OSError, ValueError, SafetensorError) as e:  # truncated or corrupt files
                raise CheckpointError(f"{self.model}: cannot read {file_name}: {e}") from e
        return tensors


def open_checkpoint(model: str, revision: str | None = None, *, cache_dir: str | None = None) -> Checkpoint:
    """A local folder if `model` is one, else a Hugging Face hub id (downloading lazily, file by file).

    A `.gguf` file, or a folder with no config.json that holds exactly one `.gguf`, opens as a GGUF checkpoint.
    "builtin" is the model that ships with Potluck (core/model/builtin.py): the same file, and uid, on every PC.
    """
    if model == BUILTIN:
        model = str(builtin_model_path())
    gguf_file = _gguf_file(model)
    if gguf_file is not None:
        from potluck.core.model.gguf_checkpoint import open_gguf

        return open_gguf(gguf_file, model=model)
    if os.path.isdir(model):
        return _open_local(Path(model))
    if os.path.exists(model):
        raise CheckpointError(f"{model} is a file; give the folder that holds config.json and the weights, or a .gguf file")
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?", model):
        raise CheckpointError(f"{model!r} is neither a folder nor a Hugging Face model id like 'org/name'")
    return _open_hub(model, revision, cache_dir)


def _gguf_file(model: str) -> Path | None:
    """The GGUF file `model` names (the file itself, or the only .gguf of a folder without config.json), or None."""
    path = Path(model)
    if os.path.isfile(model):
        return path if path.name.lower().endswith(".gguf") else None
    if not os.path.isdir(model):
        if model.lower().endswith(".gguf"):
            raise CheckpointError(f"{model}: no such GGUF file")
        return None
    if (path / "config.json").is_file():
        return None
    found = sorted(p.name for p in path.iterdir() if p.name.lower().endswith(".gguf") and p.is_file())
    if len(found) > 1:
        raise CheckpointError(f"{path} holds {len(found)} .gguf files ({', '.join(found[:4])}); "
                              f"pass the one to use, e.g. {path / found[0]}")
    return path / found[0] if found else None


def _open_local(folder: Path) -> Checkpoint:
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{folder} has no config.json: is it a transformers model folder (or one holding a .gguf file)?")
    config_bytes = config_path.read_bytes()

    def fetch(file_name: str) -> Path:
        path = folder / file_name
        if not path.is_file():
            raise CheckpointError(f"{folder} lacks {file_name}, which the weight index names")
        return path

    weight_map = _weight_map(folder / INDEX_FILE if (folder / INDEX_FILE).is_file() else None, fetch)
    return Checkpoint(
        model=str(folder),
        revision=hashlib.sha256(config_bytes).hexdigest(),
        config_dict=_parse_json(config_bytes, config_path),
        weight_map=weight_map,
        fetch=fetch,
    )


def _open_hub(repo_id: str, revision: str | None, cache_dir: str | None) -> Checkpoint:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    def fetch(file_name: str) -> Path:
        try:
            # read the hub's address and cache folder now, not when huggingface_hub was imported
            return Path(hf_hub_download(repo_id, file_name, revision=revision, endpoint=os.environ.get("HF_ENDPOINT"),
                                        cache_dir=cache_dir or os.environ.get("HF_HUB_CACHE"),
                                        tqdm_class=download_bar()))  # reports bytes (core/model/progress.py)
        except LocalEntryNotFoundError as e:  # offline, or the hub unreachable (a subclass of EntryNotFoundError)
            raise CheckpointError(f"cannot download {file_name} of {repo_id}: {e}") from e
        except EntryNotFoundError:
            raise CheckpointError(f"{repo_id} has no file {file_name}") from None
        except (HfHubHTTPError, OSError) as e:
            raise CheckpointError(f"cannot download {file_name} of {repo_id}: {e}") from e

    config_path = fetch("config.json")
    try:
        index_path = fetch(INDEX_FILE)
    except CheckpointError:
        index_path = None
    # The snapshot folder is named after the commit the files came from: the revision everyone must share.
    commit = config_path.parent.name if re.fullmatch(r"[0-9a-f]{40}", config_path.parent.name) else (revision or "main")
    return Checkpoint(
        model=repo_id,
        revision=commit,
        config_dict=_parse_json(config_path.read_bytes(), config_path),
        weight_map=_weight_map(index_path, fetch),
        fetch=fetch,
    )


def _weight_map(index_path: Path | None, fetch: Fetcher) -> dict[str, str]:
    if index_path is not None:
        index = _parse_json(index_path.read_bytes(), index_path)
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise CheckpointError(f"{index_path} has no valid weight_map")
        return dict(weight_map)
    # A single-file checkpoint: its header lists the tensor names without reading any tensor data.
    from safetensors import SafetensorError, safe_open

    path = fetch(SINGLE_FILE)
    try:
        with safe_open(str(path), framework="pt") as f:
            return {name: SINGLE_FILE for name in f.keys()}
    except (OSError, ValueError, SafetensorError) as e:
        raise CheckpointError(f"cannot read {path}: {e}") from e


def _parse_json(data: bytes, path: Path) -> dict:
    try:
        return json.loads(data)
    except ValueError as e:
        raise CheckpointError(f"{path} is not valid JSON: {e}") from None


def open_config(model: str, revision: str | None = None) -> dict:
    """A model's config as a dict, reading as little as possible: a folder's config.json, a GGUF file's header, or,
    for a hub id, config.json alone (no weights, no index)."""
    if os.path.isfile(os.path.join(model, "config.json")):
        path = Path(model) / "config.json"
        return _parse_json(path.read_bytes(), path)
    if os.path.exists(model) or model == BUILTIN:
        return dict(open_checkpoint(model).config_dict)
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?", model):
        raise CheckpointError(f"{model!r} is neither a folder, a .gguf file nor a Hugging Face model id like 'org/name'")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        path = Path(hf_hub_download(model, "config.json", revision=revision, endpoint=os.environ.get("HF_ENDPOINT"),
                                    cache_dir=os.environ.get("HF_HUB_CACHE")))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as e:
        raise CheckpointError(f"cannot read the config of {model}: {e}") from e
    return _parse_json(path.read_bytes(), path)
