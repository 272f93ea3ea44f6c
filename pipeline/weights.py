"""Pretrained weight files: what each encoder declares, where hcm finds them, and their content ids.

An encoder declares its weights as :class:`WeightSpec` entries (``weight_specs`` in
``hcm.pipeline.encoders.base``). :func:`find_weight` looks for one spec in this order: the
encoder's own option (``--clip-weights FILE``), the spec's file names in ``--weights-dir``, the
library's own cache (torch hub, ``~/.cache/clip``, the Hugging Face hub cache), then a download
by hcm when the spec allows one, the network is reachable and no offline variable
(``HCM_OFFLINE``/``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE``) is set.

Every weight found is identified by its content: :func:`weight_digest` is the sha256 of the
file (for a Hugging Face folder: of its config, weight and tokenizer files, names included).
Digests are computed once and kept in a small JSON index (``$XDG_CACHE_HOME/hcm`` or
``~/.cache/hcm``, ``weight-digests.json``) keyed by absolute path, size and modification time.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence
from urllib.parse import urlparse

from hcm.cache.manifest import sha256_file
from hcm.core.errors import UsageError
from hcm.core.files import read_json_object, write_json

log = logging.getLogger(__name__)

OFFLINE_VARIABLES = ("HCM_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
DIGEST_INDEX = "weight-digests.json"
# The files of a Hugging Face model folder that decide its outputs: config, weights, tokenizer.
HF_CONFIG = "config.json"
HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
HF_TOKENIZER = ("tokenizer.json", "vocab.json", "merges.txt", "vocab.txt", "tokenizer_config.json",
                "special_tokens_map.json")  # vocab.txt: BERT-type tokenizers (Chinese RoBERTa-wwm)


class MissingWeightsError(UsageError):
    """Some pretrained weights of a profile are not available; the message lists each and the fix."""


def _nothing() -> list[Path]:
    return []


@dataclass(frozen=True)
class WeightSpec:
    """One weight file (or Hugging Face model folder) an encoder loads.

    Args:
        name: the key of this weight in ``WeightOptions.paths`` and the recipe (``clip``).
        title: what it is, for messages (``CLIP RN50``).
        files: names looked for in ``--weights-dir``, first found wins (a folder name for ``hub``).
        option: the command-line option that names it directly.
        url: where to download it, quoted when it is missing.
        cached: where the library that publishes it keeps its own copy.
        download_to: where hcm downloads ``url`` when it may (``None``: hcm never downloads it).
        hub: a Hugging Face repo id: the weight is a model folder (config, weights, tokenizer),
            taken from the hub cache or downloaded there.
    """

    name: str
    title: str
    files: tuple[str, ...]
    option: str = "--weights-dir"
    url: str = ""
    cached: Callable[[], Sequence[Path]] = _nothing
    download_to: Callable[[], Path] | None = None
    hub: str | None = None


@dataclass(frozen=True)
class WeightOptions:
    """Where the user says weights are: one folder, and/or one path (or hub id) per weight name."""

    weights_dir: Path | None = None
    paths: Mapping[str, str | Path] = field(default_factory=dict)  # WeightSpec.name -> file, folder or hub id
    # WeightSpec.name -> the command's option, where it is not spec.option
    options: Mapping[str, str] = field(default_factory=dict)

    def option(self, spec: WeightSpec) -> str:
        """The option that names ``spec``'s file in this command (``--text-model`` in ``hcm import mmsa``)."""
        return self.options.get(spec.name, spec.option)

    def in_dir(self, *names: str) -> list[Path]:
        """Where files ``names`` would be in ``weights_dir`` (none without a folder)."""
        folder = Path(self.weights_dir).expanduser() if self.weights_dir else None
        return [folder / name for name in names] if folder else []

    def given_name(self, name: str) -> str | Path | None:
        """The file, folder or hub id given for weight ``name`` (None when none was)."""
        value = self.paths.get(name)
        return value if value not in (None, "") else None


@dataclass(frozen=True)
class ResolvedWeights:
    """The weights an extraction uses: file or folder and content id per weight name (empty for
    a profile of random encoders)."""

    paths: Mapping[str, Path] = field(default_factory=dict)
    digests: Mapping[str, str] = field(default_factory=dict)  # name -> "sha256:<hex>"

    def path(self, name: str) -> Path | None:
        return self.paths.get(name)

    def ids(self, specs: Iterable[WeightSpec]) -> dict[str, str]:
        """``{weight name: content id}`` of ``specs`` (the recipe's entry of one encoder)."""
        return {spec.name: self.digests[spec.name] for spec in specs}

    def id_of(self, specs: Iterable[WeightSpec]) -> str:
        """One string naming the content of ``specs`` (``FeatureSpec.weights``)."""
        return ";".join(f"{name}={digest}" for name, digest in self.ids(specs).items())


def offline() -> bool:
    """Whether an offline mode variable is set to a true value."""
    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on") for name in OFFLINE_VARIABLES)


def reachable(host: str, timeout: float = 3.0) -> bool:
    """Whether ``host:443`` accepts a connection within ``timeout`` seconds (DNS included)."""
    outcome: list[bool] = []

    def attempt() -> None:
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            outcome.append(True)
        except OSError:
            outcome.append(False)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout)
    return bool(outcome and outcome[0])


def can_download(url: str) -> bool:
    return not offline() and reachable(urlparse(url).hostname or url)


def hf_cache_dir() -> str:
    """The Hugging Face hub cache, read from the environment now (not at import time)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    from huggingface_hub.constants import HF_HUB_CACHE

    return HF_HUB_CACHE


def hf_folder_files(folder: Path) -> list[Path]:
    """The config, weight and tokenizer files of a model folder; empty unless it has all three kinds."""
    present = [folder / name for name in (HF_CONFIG, *HF_WEIGHTS, *HF_TOKENIZER) if (folder / name).is_file()]
    names = {path.name for path in present}
    complete = HF_CONFIG in names and names & set(HF_WEIGHTS) and names & set(HF_TOKENIZER)
    return present if complete else []


def _hf_snapshot(repo: str, download: bool) -> Path | None:
    """The hub cache's folder of ``repo`` (downloading it first when ``download``), if complete."""
    from huggingface_hub import snapshot_download

    patterns = [HF_CONFIG, *HF_WEIGHTS, *HF_TOKENIZER]
    try:
        folder = Path(snapshot_download(repo, cache_dir=hf_cache_dir(), allow_patterns=patterns,
                                        local_files_only=not download))
    except Exception as error:  # not cached, unknown repo, network trouble: reported as missing
        log.debug("Hugging Face %s not available: %s", repo, error)
        return None
    return folder if hf_folder_files(folder) else None


def _usable(path: Path, spec: WeightSpec) -> bool:
    return bool(hf_folder_files(path)) if spec.hub else path.is_file()


def find_weight(spec: WeightSpec, options: WeightOptions) -> tuple[Path | None, str]:
    """The file or folder of ``spec`` (see the module docstring), or ``None`` and what to do."""
    given, hub = options.given_name(spec.name), spec.hub
    candidates: list[Path] = []
    if given is not None:
        path = Path(given).expanduser()
        if hub and not path.exists():
            hub = str(given)  # a Hugging Face id given with the option
        elif not _usable(path, spec):  # never another file than the one the user named
            return None, _missing(spec, given, hub, [path], options.option(spec))
        else:
            return path.resolve(), ""
    candidates += options.in_dir(*spec.files, *((Path(hub).name,) if hub else ()))
    candidates += spec.cached()
    for path in candidates:
        if _usable(path, spec):
            return path.resolve(), ""
    if hub:
        found = _hf_snapshot(hub, download=False) or (
            _hf_snapshot(hub, download=True) if can_download("https://huggingface.co") else None)
        if found is not None:
            return found, ""
    elif spec.download_to is not None and spec.url and can_download(spec.url):
        return _download(spec.url, spec.download_to()), ""
    return None, _missing(spec, given, hub, candidates, options.option(spec))


def _download(url: str, target: Path) -> Path:
    from torch.hub import download_url_to_file

    target.parent.mkdir(parents=True, exist_ok=True)
    download_url_to_file(url, str(target))
    return target.resolve()


def _missing(spec: WeightSpec, given: str | Path | None, hub: str | None, tried: list[Path], option: str) -> str:
    looked = (f"looked in {', '.join(str(path) for path in tried)}" if tried
              else "no --weights-dir was given and no copy is cached")
    if given is not None and not hub:
        return f"{spec.title}: {option} {given} is not a file. Fix: give the path of the weight file."
    if given is not None:
        return (f"{spec.title}: {option} {given} is not a complete model folder (config.json, model weights, "
                f"tokenizer files). Fix: give such a folder or a Hugging Face model id.")
    if hub:
        return (f"{spec.title} {hub!r}: not in the Hugging Face cache ({hf_cache_dir()}) and no download possible "
                f"(offline); {looked}. Fix: download it once where there is network (`hf download "
                f"{hub}`, then copy the cache), or save it into <weights-dir>/{Path(hub).name}/ (config.json, "
                f"model.safetensors, tokenizer files), or pass {option} FOLDER.")
    fix = f"download {spec.url} into <weights-dir>/" if spec.url else "put it into <weights-dir>/"
    alternative = f", or pass {option} FILE" if option != "--weights-dir" else ""
    return (f"{spec.title}: {' or '.join(spec.files)} not found in --weights-dir or the library's cache ({looked}). "
            f"Fix: {fix}{alternative}.")


def resolve_specs(specs: Iterable[WeightSpec], options: WeightOptions) -> tuple[ResolvedWeights, list[str]]:
    """Every weight of ``specs`` found and identified by content, and the problems of the missing ones."""
    paths: dict[str, Path] = {}
    problems: list[str] = []
    unique: dict[str, WeightSpec] = {}
    for spec in specs:
        unique.setdefault(spec.name, spec)
    for spec in unique.values():
        found, problem = find_weight(spec, options)
        if found is None:
            problems.append(problem)
        else:
            paths[spec.name] = found
    index = DigestIndex.default()
    digests = {name: index.digest(path) for name, path in paths.items()}
    index.save()
    return ResolvedWeights(paths, digests), problems


# --------------------------------------------------------------------------- content ids


def weight_files(path: Path) -> list[Path]:
    """The files whose bytes make a weight: the file itself, or a model folder's decisive files."""
    if path.is_dir():
        files = hf_folder_files(path)
        if not files:
            raise UsageError(f"{path} is not a complete model folder: it needs {HF_CONFIG}, one of {HF_WEIGHTS} "
                             f"and tokenizer files ({', '.join(HF_TOKENIZER)})")
        return files
    return [path]


class DigestIndex:
    """sha256 of files, remembered by absolute path, size and modification time."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, dict] = {}
        self.changed = False
        if path is not None and path.is_file():
            try:
                self.entries = read_json_object(path, "weight digest index")
            except (ValueError, OSError) as error:
                log.warning("ignoring the weight digest index %s (%s); digests are recomputed", path, error)

    @classmethod
    def default(cls) -> "DigestIndex":
        base = os.environ.get("XDG_CACHE_HOME") or str(Path("~/.cache").expanduser())
        return cls(Path(base) / "hcm" / DIGEST_INDEX)

    def file_digest(self, path: Path) -> str:
        path = path.resolve()
        stat = path.stat()
        key = str(path)
        entry = self.entries.get(key)
        if isinstance(entry, dict) and entry.get("size") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns:
            return str(entry["sha256"])
        digest = sha256_file(path)
        self.entries[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
        self.changed = True
        return digest

    def digest(self, path: Path) -> str:
        """``sha256:<hex>`` of a weight file, or of a folder's files (name and digest of each, in name order)."""
        files = weight_files(path)
        if len(files) == 1 and files[0] == path:
            return "sha256:" + self.file_digest(path)
        listing = "".join(f"{f.name}\0{self.file_digest(f)}\n" for f in sorted(files, key=lambda f: f.name))
        return "sha256:" + hashlib.sha256(listing.encode()).hexdigest()

    def save(self) -> None:
        """Write the index when it learnt something; a cache folder that cannot be written is only logged."""
        if not self.changed or self.path is None:
            return
        try:
            write_json(self.path, self.entries)
        except OSError as error:
            log.info("cannot keep weight digests in %s (%s); they are recomputed next time", self.path, error)
        self.changed = False


def weight_digest(path: str | os.PathLike) -> str:
    """The content id of one weight file or model folder (``sha256:<hex>``), through the index."""
    index = DigestIndex.default()
    digest = index.digest(Path(path))
    index.save()
    return digest
