"""Downloads for real, against an HTTP server on 127.0.0.1 that each test module starts.

Nothing here touches any other address: the registry's own URLs are never fetched.
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from reid_merge.cli.models import verify_model_file
from reid_merge.errors import ModelError
from reid_merge.io.atomic import temp_path_for
from reid_merge.models import download, registry
from reid_merge.models.download import download_to, fetch_model, is_online, obtain_auto_reid
from reid_merge.models.registry import ModelEntry, Source

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
STALL_SECONDS = 8.0


class Server:
    """What the handler serves (path -> bytes) and which paths were asked for, in order."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {"/good.bin": PAYLOAD}
        self.requests: list[str] = []
        self.release = threading.Event()  # ends a stalled response early at teardown
        self.url = ""


def make_handler(server: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            server.requests.append(path)
            if path == "/truncated.bin":  # announces the whole file, sends half, hangs up
                self._headers(len(PAYLOAD))
                self.wfile.write(PAYLOAD[: len(PAYLOAD) // 2])
                self.close_connection = True
            elif path == "/stall.bin":  # sends a little, then nothing
                self._headers(len(PAYLOAD))
                self.wfile.write(PAYLOAD[:1000])
                self.wfile.flush()
                server.release.wait(STALL_SECONDS)
                self.close_connection = True
            elif path == "/huge.bin":  # announces 10 GB; a client that believes it fills the disk
                self._headers(10 << 30)
                self.wfile.write(PAYLOAD)
                self.close_connection = True
            elif path == "/unsized.bin":  # no Content-Length: the client learns the size as it reads
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                self.wfile.write(PAYLOAD)
                self.close_connection = True
            elif path == "/trickle.bin":  # a byte at a time, each well within the read timeout
                self._headers(len(PAYLOAD))
                for k in range(len(PAYLOAD)):
                    if server.release.wait(0.2):
                        break
                    self.wfile.write(PAYLOAD[k : k + 1])
                    self.wfile.flush()
                self.close_connection = True
            elif path == "/page.html":
                body = b"<html><body>Sign in to continue</body></html>"
                self._headers(len(body), "text/html; charset=utf-8")
                self.wfile.write(body)
            elif path in server.files:
                body = server.files[path]
                self._headers(len(body))
                self.wfile.write(body)
            else:
                self.send_error(404, "Not Found")

        def _headers(self, length: int, content_type: str = "application/octet-stream") -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(length))
            self.end_headers()

    return Handler


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    state = Server()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    httpd.daemon_threads = True
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    state.release.set()
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def local_only(monkeypatch: pytest.MonkeyPatch, server: Server, tmp_path: Path) -> None:
    """No proxy may carry a request elsewhere; the weight cache is a fresh folder."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("REID_MERGE_CACHE", str(tmp_path / "cache"))
    server.requests.clear()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


# --- download_to ------------------------------------------------------------------------------


def test_success_verified_and_renamed(server: Server, tmp_path: Path) -> None:
    target = tmp_path / "cache" / "model.pth"
    seen: list[tuple[int, int | None]] = []
    path = download_to(
        target,
        [Source(f"{server.url}/good.bin", sha256=PAYLOAD_SHA256, size=len(PAYLOAD))],
        progress=lambda done, total: seen.append((done, total)),
    )
    assert path == target and target.read_bytes() == PAYLOAD
    assert leftovers(target.parent) == ["model.pth"]  # no temporary file left
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))


def test_404_then_working_mirror(server: Server, tmp_path: Path) -> None:
    target = tmp_path / "cache" / "model.pth"
    sources = [Source(f"{server.url}/missing.bin"), Source(f"{server.url}/good.bin", sha256=PAYLOAD_SHA256)]
    download_to(target, sources)
    assert target.read_bytes() == PAYLOAD
    assert server.requests == ["/missing.bin", "/good.bin"]


def test_truncated_file_is_not_cached(server: Server, tmp_path: Path) -> None:
    target = tmp_path / "cache" / "model.pth"
    with pytest.raises(ModelError, match=r"truncated\.bin: truncated: received 524288 of 1048576 bytes"):
        download_to(target, [Source(f"{server.url}/truncated.bin")])
    assert leftovers(target.parent) == []


def test_checksum_mismatch_names_both_digests(server: Server, tmp_path: Path) -> None:
    target = tmp_path / "cache" / "model.pth"
    wrong = "0" * 64
    with pytest.raises(ModelError) as caught:
        download_to(target, [Source(f"{server.url}/good.bin", sha256=wrong)])
    message = str(caught.value)
    assert f"expected sha256 {wrong}, got {PAYLOAD_SHA256}" in message
    assert leftovers(target.parent) == []


def test_size_mismatch(server: Server, tmp_path: Path) -> None:
    target = tmp_path / "cache" / "model.pth"
    with pytest.raises(ModelError, match=f"size {len(PAYLOAD)} bytes, expected {2 * len(PAYLOAD)}"):
        download_to(target, [Source(f"{server.url}/good.bin", size=2 * len(PAYLOAD))])
    assert leftovers(target.parent) == []


def test_stalled_server_times_out(server: Server, tmp_path: Path) -> None:
    target = tmp_path / "cache" / "model.pth"
    start = time.monotonic()
    with pytest.raises(ModelError, match=r"no data for 1 s after 1000 bytes \(server stalled\)"):
        download_to(target, [Source(f"{server.url}/stall.bin")], timeout=1.0)
    assert time.monotonic() - start < STALL_SECONDS / 2
    assert leftovers(target.parent) == []


def test_announced_size_beyond_the_cap_is_refused_before_writing(server: Server, tmp_path: Path) -> None:
    target = tmp_path / "cache" / "model.pth"
    with pytest.raises(ModelError, match=r"huge\.bin: announces 10737418240 bytes, more than the 4096 expected"):
        download_to(target, [Source(f"{server.url}/huge.bin", size=4096)])
    assert leftovers(target.parent) == []


@pytest.mark.parametrize("size", [4096, None], ids=["registry-size", "no-size-known"])
def test_more_bytes_than_the_cap_fail_the_source(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int | None
) -> None:
    """Without a Content-Length the cap holds as data arrives: the registry's size, else the
    sane maximum (made tiny here)."""
    monkeypatch.setattr(download, "MAX_DOWNLOAD_BYTES", 4096)
    target = tmp_path / "cache" / "model.pth"
    with pytest.raises(ModelError, match="sent more than 4096 bytes"):
        download_to(target, [Source(f"{server.url}/unsized.bin", size=size)])
    assert leftovers(target.parent) == []


def test_a_trickling_server_is_stopped_by_the_deadline(server: Server, tmp_path: Path) -> None:
    """One byte every 0.2 s never trips a 2 s read timeout; the 1 s deadline stops it."""
    target = tmp_path / "cache" / "model.pth"
    start = time.monotonic()
    with pytest.raises(ModelError, match=r"trickle\.bin: not complete after 1 s \(\d+ bytes\)"):
        download_to(target, [Source(f"{server.url}/trickle.bin")], timeout=2.0, deadline=1.0)
    assert time.monotonic() - start < 1.0 + 2.0 + 1.0  # the deadline, at most one read, slack
    assert leftovers(target.parent) == []


def test_web_page_is_not_a_weight_file(server: Server, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="sent a web page"):
        download_to(tmp_path / "cache" / "model.pth", [Source(f"{server.url}/page.html")])


def test_refused_connection(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ModelError, match="cannot connect"):
        download_to(tmp_path / "cache" / "m.pth", [Source(f"http://127.0.0.1:{port}/x.pth")], timeout=2)


def test_failure_names_every_url_and_what_to_do(server: Server, tmp_path: Path) -> None:
    target = tmp_path / "cache" / "model.pth"
    sources = [Source(f"{server.url}/missing.bin"), Source(f"{server.url}/truncated.bin")]
    with pytest.raises(ModelError) as caught:
        download_to(target, sources, what_to_do="Copy it there by hand.")
    message = str(caught.value)
    assert "\n" not in message
    assert f"{server.url}/missing.bin: HTTP 404 Not Found" in message
    assert f"{server.url}/truncated.bin: truncated" in message
    assert message.endswith("Copy it there by hand.")
    assert caught.value.exit_code == 4


def test_failed_verification_keeps_the_previous_file(server: Server, tmp_path: Path) -> None:
    target = tmp_path / "cache" / "model.pth"
    target.parent.mkdir()
    target.write_bytes(b"the old file")

    def refuse(path: Path) -> None:
        assert path != target and path.read_bytes() == PAYLOAD  # checked before the rename
        raise ValueError("wrong architecture")

    with pytest.raises(ModelError, match=r"not a usable checkpoint \(ValueError: wrong architecture\)"):
        download_to(target, [Source(f"{server.url}/good.bin")], verify=refuse)
    assert target.read_bytes() == b"the old file"
    assert leftovers(target.parent) == ["model.pth"]


def test_temporaries_of_killed_downloads_are_removed(server: Server, tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    folder.mkdir()
    dead = folder / ".model.pth.999999999-0a1b2c3d.tmp.pth"  # no process has this ID
    dead.write_bytes(b"half")
    mine = temp_path_for(folder / "model.pth")  # this process's: still being written
    download_to(folder / "model.pth", [Source(f"{server.url}/good.bin")])
    assert not dead.exists() and mine.exists()


# --- online check -------------------------------------------------------------------------------


def test_is_online(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    monkeypatch.delenv("REID_MERGE_OFFLINE", raising=False)
    assert is_online("127.0.0.1", port, timeout=2)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    assert not is_online("127.0.0.1", closed, timeout=2)
    monkeypatch.setenv("REID_MERGE_OFFLINE", "1")
    assert not is_online("127.0.0.1", port, timeout=2)


def test_online_check_is_bounded_when_lookup_hangs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REID_MERGE_OFFLINE", raising=False)

    def hang(*args: object, **kwargs: object) -> None:
        time.sleep(3)  # as getaddrinfo on a network that drops DNS queries
        raise OSError("name resolution timed out")

    monkeypatch.setattr(download.socket, "create_connection", hang)
    start = time.monotonic()
    assert not is_online("example.invalid", timeout=0.3)
    assert time.monotonic() - start < 2


# --- registry models ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def osnet_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real osnet_x0_25 checkpoint (random weights, torchreid's training layout)."""
    from reid_merge.models.embedding import _torchreid_models  # imports torchreid without its Cython warning

    model = _torchreid_models().build_model("osnet_x0_25", num_classes=4101, pretrained=False, use_gpu=False)
    path = tmp_path_factory.mktemp("ckpt") / "osnet.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in model.state_dict().items()}}, path)
    return path.read_bytes()


def local_entry(server: Server, *paths: str) -> ModelEntry:
    """The registry's osnet_x0_25_msmt17_combineall with its sources moved to the local server."""
    entry = registry.get("osnet_x0_25_msmt17_combineall")
    return replace(
        entry, name="test_osnet_x0_25_msmt17_combineall", sources=tuple(Source(server.url + p) for p in paths)
    )


def test_fetch_model_verifies_by_loading(server: Server, osnet_bytes: bytes, tmp_path: Path) -> None:
    server.files["/osnet.pth"] = osnet_bytes
    server.files["/garbage.pth"] = b"not a checkpoint" * 100
    entry = local_entry(server, "/garbage.pth", "/osnet.pth")
    path, fetched = fetch_model(entry, tmp_path / "cache", verify=lambda path: verify_model_file(entry, path))
    assert fetched and path == tmp_path / "cache" / "osnet_x0_25_msmt17_combineall.pth"
    assert path.read_bytes() == osnet_bytes
    assert server.requests == ["/garbage.pth", "/osnet.pth"]
    again, fetched_again = fetch_model(
        entry, tmp_path / "cache", verify=lambda path: verify_model_file(entry, path)
    )  # present: no request
    assert again == path and not fetched_again and len(server.requests) == 2


def test_fetch_model_wrong_architecture(server: Server, osnet_bytes: bytes, tmp_path: Path) -> None:
    server.files["/osnet.pth"] = osnet_bytes
    entry = replace(
        local_entry(server, "/osnet.pth"), architecture="osnet_x1_0", filename="osnet_x1_0_msmt17_combineall.pth"
    )
    with pytest.raises(ModelError, match=r"not a usable checkpoint \(ModelError: .*does not fit osnet_x1_0"):
        fetch_model(entry, tmp_path / "cache", verify=lambda path: verify_model_file(entry, path))
    assert leftovers(tmp_path / "cache") == []


def test_auto_downloads_when_online(
    server: Server, osnet_bytes: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--reid-model auto` with an empty cache on an online machine: fetch, load, say which."""
    from reid_merge.models.embedding import load_embedder

    server.files["/osnet.pth"] = osnet_bytes
    entry = replace(local_entry(server, "/osnet.pth"), name="osnet_x0_25_msmt17_combineall")
    others = tuple(e for e in registry.MODELS if e.name != entry.name)
    monkeypatch.setattr(registry, "MODELS", (*others, entry))
    monkeypatch.setattr(registry, "AUTO_REID", entry.name)
    monkeypatch.delenv("REID_MERGE_OFFLINE", raising=False)
    monkeypatch.setattr(download, "is_online", lambda host, *a, **k: host == "127.0.0.1")
    _, info = load_embedder("auto", device="cpu")
    assert info.name == "osnet_x0_25"
    assert Path(info.weights) == (tmp_path / "cache" / "osnet_x0_25_msmt17_combineall.pth").resolve()
    assert "torchreid model zoo osnet_x0_25_msmt17_combineall" in info.source


def test_auto_stays_offline_when_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REID_MERGE_OFFLINE", "1")
    monkeypatch.setattr(download, "is_online", lambda *a, **k: pytest.fail("must not probe the network"))
    assert obtain_auto_reid(verify=lambda path: pytest.fail("must not download")) is None


def test_auto_falls_back_when_every_mirror_fails(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    entry = replace(local_entry(server, "/missing.bin"), name="osnet_x0_25_msmt17_combineall")
    others = tuple(e for e in registry.MODELS if e.name != entry.name)
    monkeypatch.setattr(registry, "MODELS", (*others, entry))
    monkeypatch.setattr(registry, "AUTO_REID", entry.name)
    monkeypatch.delenv("REID_MERGE_OFFLINE", raising=False)
    monkeypatch.setattr(download, "is_online", lambda *a, **k: True)
    assert obtain_auto_reid(verify=lambda path: pytest.fail("no mirror delivers a file to check")) is None
    assert "using the offline model instead" in caplog.text
    assert not (tmp_path / "cache" / "osnet_x0_25_msmt17_combineall.pth").exists()


def test_cli_download_into_cache_dir(
    server: Server, osnet_bytes: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`reid-merge models download NAME --cache-dir DIR`, in-process so the registry can point here."""
    from typer.testing import CliRunner

    from reid_merge.cli.main import app

    server.files["/osnet.pth"] = osnet_bytes
    entry = local_entry(server, "/missing.bin", "/osnet.pth")
    monkeypatch.setattr(registry, "MODELS", (*registry.MODELS, entry))
    folder = tmp_path / "elsewhere"
    result = CliRunner().invoke(app, ["models", "download", entry.name, "--cache-dir", str(folder)])
    assert result.exit_code == 0, result.output
    assert (folder / entry.filename).read_bytes() == osnet_bytes
    assert "downloaded" in result.output and hashlib.sha256(osnet_bytes).hexdigest() in result.output


def test_cli_download_failure_is_one_line(server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from reid_merge.cli.main import app

    entry = local_entry(server, "/missing.bin")
    monkeypatch.setattr(registry, "MODELS", (*registry.MODELS, entry))
    result = CliRunner().invoke(app, ["models", "download", entry.name, "--cache-dir", str(tmp_path / "c")])
    assert result.exit_code == 4
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: could not download")
    assert f"{server.url}/missing.bin: HTTP 404" in lines[0]
