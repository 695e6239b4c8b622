"""The model zoo: names and URLs, cached download from a local server, and failures that leave nothing behind."""

from __future__ import annotations

import io
import os
import re
import stat
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from md2.core.checkpoint import save_weights_folder
from md2.core.networks import DepthDecoder, ResnetEncoder
from md2.core.zoo import DEFAULT_MODEL, MODELS, fetch_model, model_url
from md2.errors import DownloadError, UsageError
from tests.cli.test_app import run_md2
from tests.httpserver import LocalServer

NAME = "mono+stereo_640x192"
PATH = "/mono%2Bstereo_640x192.zip"


def zip_folder(folder: Path, prefix: str = "") -> bytes:
    """The files of ``folder`` zipped at the archive's root, or under ``prefix``/."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.iterdir()):
            archive.write(path, prefix + path.name)
    return buffer.getvalue()


def tiny_folder(root: Path) -> Path:
    """A weights folder written by md2 with tiny modules: the zoo only moves files, it does not load them."""
    torch.manual_seed(0)
    return save_weights_folder(root / "w", {"encoder": nn.Conv2d(3, 4, 3), "depth": nn.Conv2d(4, 1, 3)},
                               height=192, width=640, use_stereo=True)


@pytest.fixture(scope="module")
def tiny_zip(tmp_path_factory) -> bytes:
    return zip_folder(tiny_folder(tmp_path_factory.mktemp("zoo")))


def cached_files(cache: Path) -> list[str]:
    return sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*"))


def test_table_has_the_readme_models_and_urls():
    assert DEFAULT_MODEL in MODELS and len(MODELS) == 13
    assert MODELS["mono+stereo_1024x320"].url == \
        "https://storage.googleapis.com/niantic-lon-static/research/monodepth2/mono%2Bstereo_1024x320.zip"
    info = MODELS["mono_resnet50_no_pt_640x192"]
    assert (info.num_layers, info.imagenet_pretrained, info.width, info.height) == (50, False, 640, 192)
    assert (MODELS["stereo_1024x320"].width, MODELS["stereo_1024x320"].height) == (1024, 320)
    assert MODELS["mono+stereo_odom_640x192"].modality == "mono+stereo"


def test_table_urls_are_exactly_the_seed_readme_links(shared_dir):
    readme = (shared_dir / "seed" / "monodepth2-README.md").read_text()
    linked = set(re.findall(r"https://storage\.googleapis\.com/niantic-lon-static/research/monodepth2/[^)\s]+\.zip",
                            readme))
    assert linked == {info.url for info in MODELS.values()}


def test_mirror_urls_keep_the_file_name(monkeypatch):
    assert model_url(NAME, "http://mirror/m/") == "http://mirror/m/mono%2Bstereo_640x192.zip"
    monkeypatch.setenv("MD2_ZOO_URL", "http://env-mirror")
    assert model_url(NAME) == "http://env-mirror/mono%2Bstereo_640x192.zip"


@pytest.mark.parametrize("prefix", ["", f"{NAME}/"], ids=["files_at_root", "one_folder"])
def test_first_use_downloads_then_the_cache_serves_offline(tmp_path, prefix):
    source = tiny_folder(tmp_path / "src")
    with LocalServer({PATH: zip_folder(source, prefix)}) as server:
        folder = fetch_model(NAME, cache_dir=tmp_path / "home", base_url=server.url(), progress=False)
    assert folder == tmp_path / "home" / "models" / NAME
    for name in ("encoder.pth", "depth.pth"):
        assert (folder / name).read_bytes() == (source / name).read_bytes()
    assert torch.load(folder / "encoder.pth", weights_only=True)["width"] == 640
    # The server is gone: the cache answers.
    assert fetch_model(NAME, cache_dir=tmp_path / "home", base_url=server.url(), progress=False) == folder
    assert cached_files(tmp_path / "home") == ["models", "models/" + NAME, f"models/{NAME}/depth.pth",
                                               f"models/{NAME}/encoder.pth"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
@pytest.mark.parametrize("prefix", ["", f"{NAME}/"], ids=["files_at_root", "one_folder"])
def test_a_cached_model_has_the_permissions_of_new_files_and_folders(tmp_path, prefix):
    source = tiny_folder(tmp_path / "src")
    previous = os.umask(0o022)
    try:
        with LocalServer({PATH: zip_folder(source, prefix)}) as server:
            folder = fetch_model(NAME, cache_dir=tmp_path / "home", base_url=server.url(), progress=False)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755  # not mkdtemp's 0700: a shared cache stays readable
    assert {stat.S_IMODE((folder / name).stat().st_mode) for name in ("encoder.pth", "depth.pth")} == {0o644}


def test_md2_home_and_md2_zoo_url_choose_the_cache_and_the_server(tmp_path, tiny_zip, monkeypatch):
    monkeypatch.setenv("MD2_HOME", str(tmp_path / "home"))
    with LocalServer({PATH: tiny_zip}) as server:
        monkeypatch.setenv("MD2_ZOO_URL", server.url())
        assert fetch_model(NAME, progress=False) == tmp_path / "home" / "models" / NAME


def test_a_cut_connection_resumes_with_range(tmp_path, tiny_zip):
    with LocalServer({PATH: tiny_zip}) as server:
        server.cut(PATH, after=len(tiny_zip) // 3)
        folder = fetch_model(NAME, cache_dir=tmp_path, base_url=server.url(), progress=False)
        ranges = [request.range for request in server.requests if request.path == PATH]
    assert ranges == [None, f"bytes={len(tiny_zip) // 3}-"]
    assert (folder / "depth.pth").is_file()


def test_an_interrupted_download_leaves_no_model_and_the_rerun_resumes(tmp_path, tiny_zip):
    with LocalServer({PATH: tiny_zip}) as server:
        server.cut(PATH, after=1000)
        server.fail(PATH, status=503, times=20)
        with pytest.raises(DownloadError, match="resumes"):
            fetch_model(NAME, cache_dir=tmp_path, base_url=server.url(), progress=False, retries=1)
        assert not (tmp_path / "models" / NAME).exists()
        server.clear_faults()
        assert fetch_model(NAME, cache_dir=tmp_path, base_url=server.url(), progress=False).is_dir()
        assert server.requests[-1].range == "bytes=1000-"


def test_server_errors_are_retried(tmp_path, tiny_zip):
    with LocalServer({PATH: tiny_zip}) as server:
        server.fail(PATH, status=500, times=2)
        assert fetch_model(NAME, cache_dir=tmp_path, base_url=server.url(), progress=False).is_dir()
        assert len(server.requests) == 3


def bad_zip(problem: str, good: bytes) -> bytes | None:
    if problem == "404":
        return None
    if problem == "corrupt":
        damaged = bytearray(good)
        damaged[len(damaged) // 2: len(damaged) // 2 + 64] = bytes(64)
        return bytes(damaged)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("encoder.pth", b"x")
        archive.writestr("../evil.txt" if problem == "traversal" else "readme.txt", b"x")
    return buffer.getvalue()


@pytest.mark.parametrize("problem,message", [("404", "not found"), ("corrupt", "corrupt|not a valid zip"),
                                             ("traversal", "refusing"), ("not_weights", "holds no weights")])
def test_failures_leave_nothing_in_the_cache(tmp_path, tiny_zip, problem, message):
    data = bad_zip(problem, tiny_zip)
    with LocalServer({PATH: data} if data else {}) as server, pytest.raises(DownloadError, match=message):
        fetch_model(NAME, cache_dir=tmp_path / "home", base_url=server.url(), progress=False)
    assert cached_files(tmp_path / "home") == ["models"]
    assert not list(tmp_path.rglob("evil.txt"))


def test_unknown_model_lists_the_names():
    with pytest.raises(UsageError, match="mono_640x192.*mono_resnet50_no_pt_640x192"):
        fetch_model("no_such_model")


def test_predict_downloads_the_default_model_on_first_use(tmp_path):
    encoder = ResnetEncoder(18)
    folder = save_weights_folder(tmp_path / "w", {"encoder": encoder, "depth": DepthDecoder(encoder.num_ch_enc)},
                                 height=64, width=192, use_stereo=True)
    from PIL import Image

    Image.new("RGB", (120, 40), (90, 120, 150)).save(tmp_path / "photo.jpg")
    with LocalServer({PATH: zip_folder(folder)}) as server:
        result = run_md2("predict", str(tmp_path / "photo.jpg"), "--quiet",
                         env={"MD2_HOME": str(tmp_path / "home"), "MD2_ZOO_URL": server.url()})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "photo_disp.npy").is_file()
    assert (tmp_path / "home" / "models" / NAME / "encoder.pth").is_file()


def test_offline_is_one_clear_line(tmp_path):
    result = run_md2("predict", __file__, "--quiet",
                     env={"MD2_HOME": str(tmp_path), "MD2_ZOO_URL": "http://127.0.0.1:9"})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "could not reach 127.0.0.1:9" in lines[0] and "MD2_ZOO_URL" in lines[0], lines
    assert not (tmp_path / "models" / NAME).exists()
