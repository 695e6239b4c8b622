"""The model zoo: names and URLs, cached download from a local server, and failures that leave nothing behind."""

from __future__ import annotations

import io
import zipfile

import pytest
import torch

from md2.core.checkpoint import save_weights_folder
from md2.core.networks import DepthDecoder, ResnetEncoder
from md2.core.zoo import DEFAULT_MODEL, MODELS, fetch_model
from md2.errors import DownloadError, UsageError
from tests.cli.test_app import run_md2
from tests.httpserver import LocalServer

NAME = "mono+stereo_640x192"
PATH = "/mono%2Bstereo_640x192.zip"


@pytest.fixture(scope="module")
def model_zip(tmp_path_factory) -> bytes:
    """A zip of a weights folder written by md2 (files at the zip's root, as the official zips)."""
    folder = tmp_path_factory.mktemp("zoo") / "w"
    encoder = ResnetEncoder(18)
    save_weights_folder(folder, {"encoder": encoder, "depth": DepthDecoder(encoder.num_ch_enc)},
                        height=64, width=192, use_stereo=True)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.iterdir()):
            archive.write(path, path.name)
    return buffer.getvalue()


def test_table_has_the_readme_models_and_urls():
    assert DEFAULT_MODEL == "mono+stereo_640x192"
    assert len(MODELS) == 13
    assert MODELS["mono+stereo_1024x320"].url().endswith("/research/monodepth2/mono%2Bstereo_1024x320.zip")
    assert MODELS["mono_resnet50_no_pt_640x192"].num_layers == 50


def test_first_use_downloads_then_the_cache_serves_offline(tmp_path, model_zip):
    with LocalServer({PATH: model_zip}) as server:
        folder = fetch_model(NAME, cache=tmp_path, base_url=server.url(""), progress=False)
    assert (folder / "encoder.pth").is_file() and (folder / "depth.pth").is_file()
    again = fetch_model(NAME, cache=tmp_path, base_url="http://127.0.0.1:9/unreachable", progress=False)
    assert again == folder
    assert not list(tmp_path.glob("*.zip")) and not list(tmp_path.glob(".*"))


def test_a_cut_connection_resumes_with_range(tmp_path, model_zip):
    with LocalServer({PATH: model_zip}) as server:
        server.cut(PATH, after=len(model_zip) // 3)
        folder = fetch_model(NAME, cache=tmp_path, base_url=server.url(""), progress=False)
        ranges = [header for path, header in server.requests if path == PATH]
    assert ranges[0] is None and ranges[1] == f"bytes={len(model_zip) // 3}-"
    assert (folder / "depth.pth").is_file()


def test_server_errors_are_retried(tmp_path, model_zip):
    with LocalServer({PATH: model_zip}) as server:
        server.fail(PATH, status=500, times=2)
        assert fetch_model(NAME, cache=tmp_path, base_url=server.url(""), progress=False).is_dir()


@pytest.mark.parametrize("problem", ["404", "corrupt", "traversal", "not_weights"])
def test_failures_leave_no_half_model(tmp_path, model_zip, problem):
    files = {}
    if problem == "corrupt":
        damaged = bytearray(model_zip)
        damaged[len(damaged) // 2: len(damaged) // 2 + 64] = b"\0" * 64
        files[PATH] = bytes(damaged)
    elif problem in ("traversal", "not_weights"):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("../evil.txt" if problem == "traversal" else "readme.txt", b"x")
        files[PATH] = buffer.getvalue()
    with LocalServer(files) as server, pytest.raises(DownloadError):
        fetch_model(NAME, cache=tmp_path / "cache", base_url=server.url(""), progress=False)
    assert not (tmp_path / "cache" / NAME).exists()
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "cache" / "evil.txt").exists()


def test_unknown_model_lists_the_names():
    with pytest.raises(UsageError, match="mono_640x192"):
        fetch_model("no_such_model")


def test_predict_downloads_the_default_model_on_first_use(tmp_path, model_zip):
    from PIL import Image

    Image.new("RGB", (120, 40), (90, 120, 150)).save(tmp_path / "photo.jpg")
    with LocalServer({PATH: model_zip}) as server:
        result = run_md2("predict", str(tmp_path / "photo.jpg"), "--quiet",
                         env={"MD2_HOME": str(tmp_path / "home"), "MD2_ZOO_URL": server.url("")})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "photo_disp.npy").is_file()
    assert (tmp_path / "home" / "models" / NAME / "encoder.pth").is_file()


def test_offline_is_one_clear_line(tmp_path):
    result = run_md2("predict", __file__, "--quiet",
                     env={"MD2_HOME": str(tmp_path), "MD2_ZOO_URL": "http://127.0.0.1:9"})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "could not download" in lines[0]
