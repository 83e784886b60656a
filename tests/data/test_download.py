import gzip
import hashlib
import io
import socket
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from spikescale.cli import main
from spikescale.data.download import DownloadError, RemoteFile, download, find_split_file


def _serve(files: dict[str, bytes], log: list):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_HEAD(self):
            self.send_response(200)
            self.end_headers()

        def do_GET(self):
            body = files.get(self.path.lstrip("/"))
            if body is None:
                self.send_error(404)
                return
            start = 0
            if "Range" in self.headers:
                start = int(self.headers["Range"].split("=")[1].rstrip("-"))
            log.append((self.path, start))
            self.send_response(206 if start else 200)
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            self.wfile.write(body[start:])

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _zip_of(name: str, payload: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr(name, payload)
    return buffer.getvalue()


def test_resumes_verifies_and_extracts(tmp_path):
    payload = b"hdf5 stand-in " * 5000
    archive = _zip_of("x_train.h5", payload)
    remote = RemoteFile("x_train.h5.zip", hashlib.md5(archive).hexdigest())
    log = []
    server = _serve({remote.name: archive}, log)
    try:
        (tmp_path / (remote.name + ".part")).write_bytes(archive[:1000])  # an interrupted earlier run
        url = f"http://127.0.0.1:{server.server_port}/"
        paths = download("x", tmp_path, base_url=url, files=[remote], progress=False)
        assert paths == [tmp_path / "x_train.h5"] and paths[0].read_bytes() == payload
        assert log == [("/x_train.h5.zip", 1000)]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["x_train.h5"]
        download("x", tmp_path, base_url=url, files=[remote], progress=False)  # already there: nothing fetched
        assert len(log) == 1
    finally:
        server.shutdown()


def test_checksum_mismatch_deletes_the_download(tmp_path):
    archive = _zip_of("y.h5", b"data")
    server = _serve({"y.h5.zip": archive}, [])
    try:
        with pytest.raises(ValueError, match="does not match"):
            download("y", tmp_path, base_url=f"http://127.0.0.1:{server.server_port}", files=[RemoteFile("y.h5.zip", "0" * 32)], progress=False)
        assert list(tmp_path.iterdir()) == []
    finally:
        server.shutdown()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_offline_fails_at_once_and_says_where_to_put_files(tmp_path):
    root = tmp_path / "shd"
    start = time.perf_counter()
    with pytest.raises(DownloadError) as info:
        download("shd", root, base_url=f"http://127.0.0.1:{_closed_port()}/", progress=False)
    assert time.perf_counter() - start < 5
    message = str(info.value)
    assert "shd_train.h5" in message and "shd_test.h5" in message and str(root) in message
    assert not root.exists()


def test_cli_download_offline(tmp_path, capsys):
    code = main(["data", "download", "ssc", "--root", str(tmp_path), "--url", f"http://127.0.0.1:{_closed_port()}/"])
    assert code == 2 and "ssc_valid.h5" in capsys.readouterr().err


def test_unknown_dataset(tmp_path):
    with pytest.raises(ValueError, match="unknown data set"):
        download("gsc", tmp_path)


def test_archives_put_by_hand_are_extracted(tmp_path):
    with gzip.open(tmp_path / "shd_test.h5.gz", "wb") as f:
        f.write(b"payload")
    assert find_split_file(tmp_path, "shd_test.h5", "shd").read_bytes() == b"payload"
    with pytest.raises(FileNotFoundError, match="spikescale data download shd"):
        find_split_file(tmp_path, "shd_train.h5", "shd")
    (tmp_path / "shd_train.h5.zip").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a valid zip"):
        find_split_file(tmp_path, "shd_train.h5", "shd")
