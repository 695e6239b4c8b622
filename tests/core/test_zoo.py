"""The model zoo: names and URLs, cached download from a local server, and failures that leave nothing behind."""

from __future__ import annotations

import hashlib
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
from tests.zoo_table import publish_for_paths

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


def serve(monkeypatch, files: dict[str, bytes]) -> LocalServer:
    """A local server of ``files``, whose zips' md5 sums the zoo's table holds for the test."""
    publish_for_paths(monkeypatch, files)
    return LocalServer(files)


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
def test_first_use_downloads_then_the_cache_serves_offline(tmp_path, prefix, monkeypatch):
    source = tiny_folder(tmp_path / "src")
    with serve(monkeypatch, {PATH: zip_folder(source, prefix)}) as server:
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
def test_a_cached_model_has_the_permissions_of_new_files_and_folders(tmp_path, prefix, monkeypatch):
    source = tiny_folder(tmp_path / "src")
    previous = os.umask(0o022)
    try:
        with serve(monkeypatch, {PATH: zip_folder(source, prefix)}) as server:
            folder = fetch_model(NAME, cache_dir=tmp_path / "home", base_url=server.url(), progress=False)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755  # not mkdtemp's 0700: a shared cache stays readable
    assert {stat.S_IMODE((folder / name).stat().st_mode) for name in ("encoder.pth", "depth.pth")} == {0o644}


def test_md2_home_and_md2_zoo_url_choose_the_cache_and_the_server(tmp_path, tiny_zip, monkeypatch):
    monkeypatch.setenv("MD2_HOME", str(tmp_path / "home"))
    with serve(monkeypatch, {PATH: tiny_zip}) as server:
        monkeypatch.setenv("MD2_ZOO_URL", server.url())
        assert fetch_model(NAME, progress=False) == tmp_path / "home" / "models" / NAME


def test_a_cut_connection_resumes_with_range(tmp_path, tiny_zip, monkeypatch):
    with serve(monkeypatch, {PATH: tiny_zip}) as server:
        server.cut(PATH, after=len(tiny_zip) // 3)
        folder = fetch_model(NAME, cache_dir=tmp_path, base_url=server.url(), progress=False)
        ranges = [request.range for request in server.requests if request.path == PATH]
    assert ranges == [None, f"bytes={len(tiny_zip) // 3}-"]
    assert (folder / "depth.pth").is_file()


def test_an_interrupted_download_leaves_no_model_and_the_rerun_resumes(tmp_path, tiny_zip, monkeypatch):
    with serve(monkeypatch, {PATH: tiny_zip}) as server:
        server.cut(PATH, after=1000)
        server.fail(PATH, status=503, times=20)
        with pytest.raises(DownloadError, match="resumes"):
            fetch_model(NAME, cache_dir=tmp_path, base_url=server.url(), progress=False, retries=1)
        assert not (tmp_path / "models" / NAME).exists()
        server.clear_faults()
        assert fetch_model(NAME, cache_dir=tmp_path, base_url=server.url(), progress=False).is_dir()
        assert server.requests[-1].range == "bytes=1000-"


def test_server_errors_are_retried(tmp_path, tiny_zip, monkeypatch):
    with serve(monkeypatch, {PATH: tiny_zip}) as server:
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
def test_failures_leave_nothing_in_the_cache(tmp_path, tiny_zip, problem, message, monkeypatch):
    data = bad_zip(problem, tiny_zip)
    with serve(monkeypatch, {PATH: data} if data else {}) as server, pytest.raises(DownloadError, match=message):
        fetch_model(NAME, cache_dir=tmp_path / "home", base_url=server.url(), progress=False)
    assert cached_files(tmp_path / "home") == ["models"]
    assert not list(tmp_path.rglob("evil.txt"))


def test_unknown_model_lists_the_names():
    with pytest.raises(UsageError, match="mono_640x192.*mono_resnet50_no_pt_640x192"):
        fetch_model("no_such_model")


def test_predict_downloads_the_default_model_on_first_use(tmp_path, monkeypatch, capsys):
    encoder = ResnetEncoder(18)
    folder = save_weights_folder(tmp_path / "w", {"encoder": encoder, "depth": DepthDecoder(encoder.num_ch_enc)},
                                 height=64, width=192, use_stereo=True)
    from PIL import Image

    Image.new("RGB", (120, 40), (90, 120, 150)).save(tmp_path / "photo.jpg")
    monkeypatch.setenv("MD2_HOME", str(tmp_path / "home"))
    # In this process: the table's md5 is overridden here, which a process of its own would not see.
    with serve(monkeypatch, {PATH: zip_folder(folder)}) as server:
        monkeypatch.setenv("MD2_ZOO_URL", server.url())
        code, err = md2_here(capsys, "predict", str(tmp_path / "photo.jpg"), "--quiet")
    assert code == 0, err
    assert (tmp_path / "photo_disp.npy").is_file()
    assert (tmp_path / "home" / "models" / NAME / "encoder.pth").is_file()


def md2_here(capsys, *args: str) -> tuple[int, str]:
    """``md2 ARGS`` run in this process: (exit code, stderr)."""
    from md2.cli.app import main

    try:
        main(list(args))
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    return code, capsys.readouterr().err


def test_offline_is_one_clear_line(tmp_path):
    result = run_md2("predict", __file__, "--quiet",
                     env={"MD2_HOME": str(tmp_path), "MD2_ZOO_URL": "http://127.0.0.1:9"})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "could not reach 127.0.0.1:9" in lines[0] and "MD2_ZOO_URL" in lines[0], lines
    assert not (tmp_path / "models" / NAME).exists()


PUBLISHED_MD5 = {
    "mono_640x192": "a964b8356e08a02d009609d9e3928f7c", "stereo_640x192": "3dfb76bcff0786e4ec07ac00f658dd07",
    "mono+stereo_640x192": "c024d69012485ed05d7eaa9617a96b81", "mono_1024x320": "0ab0766efdfeea89a0d9ea8ba90e1e63",
    "stereo_1024x320": "afc2f2126d70cf3fdf26b550898b501a", "mono+stereo_1024x320": "cdc5fc9b23513c07d5b19235d9ef08f7",
    "mono_no_pt_640x192": "9c2f071e35027c895a4728358ffc913a",
    "stereo_no_pt_640x192": "41ec2de112905f85541ac33a854742d1",
    "mono+stereo_no_pt_640x192": "46c3b824f541d143a45c37df65fbab0a",
}
CRC_ONLY = "mono_odom_640x192"
CRC_ONLY_PATH = "/mono_odom_640x192.zip"


def test_table_holds_the_published_md5_of_nine_models_and_none_for_four():
    assert {name: info.md5 for name, info in MODELS.items() if info.md5} == PUBLISHED_MD5
    assert sorted(name for name, info in MODELS.items() if info.md5 is None) == [
        "mono+stereo_odom_640x192", "mono_odom_640x192", "mono_resnet50_640x192", "mono_resnet50_no_pt_640x192"]


def test_a_zip_whose_md5_is_not_the_published_one_is_refused_and_not_kept(tmp_path, tiny_zip):
    received = hashlib.md5(tiny_zip).hexdigest()
    with LocalServer({PATH: tiny_zip}) as server, pytest.raises(DownloadError) as error:
        fetch_model(NAME, cache_dir=tmp_path / "home", base_url=server.url(), progress=False)
    message = str(error.value)
    assert f"model {NAME} from {server.url().rstrip('/')}/mono%2Bstereo_640x192.zip: md5 {received}, expected " \
           f"{PUBLISHED_MD5[NAME]}" in message and "nothing was kept in the cache" in message
    assert cached_files(tmp_path / "home") == ["models"]


def test_a_truncated_download_of_a_published_zip_is_refused_by_its_md5(tmp_path, tiny_zip, monkeypatch):
    publish_for_paths(monkeypatch, {PATH: tiny_zip})
    with LocalServer({PATH: tiny_zip[: len(tiny_zip) // 2]}) as server, pytest.raises(DownloadError,
                                                                                     match="md5 .*, expected"):
        fetch_model(NAME, cache_dir=tmp_path / "home", base_url=server.url(), progress=False)
    assert cached_files(tmp_path / "home") == ["models"]


def test_the_md5_mismatch_is_one_line_exit_1_from_the_command(tmp_path, tiny_zip):
    with LocalServer({PATH: tiny_zip}) as server:
        result = run_md2("predict", __file__, "--quiet",
                         env={"MD2_HOME": str(tmp_path / "home"), "MD2_ZOO_URL": server.url()})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and NAME in lines[0] and PUBLISHED_MD5[NAME] in lines[0], lines
    assert hashlib.md5(tiny_zip).hexdigest() in lines[0] and "nothing was kept" in lines[0]
    assert cached_files(tmp_path / "home") == ["models"]


def test_a_model_without_a_published_md5_is_checked_by_crc(tmp_path, tiny_zip):
    with LocalServer({CRC_ONLY_PATH: tiny_zip}) as server:
        assert fetch_model(CRC_ONLY, cache_dir=tmp_path / "ok", base_url=server.url(), progress=False).is_dir()
        server.files[CRC_ONLY_PATH] = bad_zip("corrupt", tiny_zip)
        with pytest.raises(DownloadError, match=f"model {CRC_ONLY} .* not a valid zip.*nothing was kept"):
            fetch_model(CRC_ONLY, cache_dir=tmp_path / "bad", base_url=server.url(), progress=False)
    assert cached_files(tmp_path / "bad") == ["models"]


class RunsCode:
    """Pickled as a call to print: a file md2 must refuse to load (weights_only) rather than run."""

    def __reduce__(self):
        return print, ("this ran",)


def test_a_model_whose_weights_would_run_code_is_refused_and_not_kept(tmp_path, tiny_zip, capfd):
    source = tiny_folder(tmp_path / "src")
    torch.save({"height": 192, "width": 640, "evil": RunsCode()}, source / "encoder.pth")
    with LocalServer({CRC_ONLY_PATH: zip_folder(source)}) as server, pytest.raises(DownloadError) as error:
        fetch_model(CRC_ONLY, cache_dir=tmp_path / "home", base_url=server.url(), progress=False)
    message = str(error.value)
    assert message.startswith(f"model {CRC_ONLY} from ") and "refused" in message and "encoder.pth" in message
    assert "nothing was kept in the cache" in message
    assert cached_files(tmp_path / "home") == ["models"]
    assert "this ran" not in capfd.readouterr().out


def test_offline_message_says_to_pass_the_folder_with_weights(tmp_path):
    with pytest.raises(DownloadError) as error:
        fetch_model(NAME, cache_dir=tmp_path, base_url="http://127.0.0.1:9", progress=False, retries=0)
    assert "--weights FOLDER" in str(error.value) and "instead of the model name" in str(error.value)
