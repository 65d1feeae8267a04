"""Tests of download_data.py: downloads from a local mirror, and imports of local copies.

The mirror is a real HTTP server on 127.0.0.1 (ephemeral port) that imitates the parts of the
Zenodo records API and of the Dataverse native API that download_data.py uses, serving zips
and files built here from synthetic audio. No other host is ever contacted (a guard fails any
request to another host).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import stat
import tempfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
import requests
import soundfile as sf

import download_data
import ser.download
from download_data import main
from ser.download import TESS_DOI, ZENODO_RECORD, classify
from unprivileged import run_unprivileged

SPEECH_ZIP = "Audio_Speech_Actors_01-24.zip"
SONG_ZIP = "Audio_Song_Actors_01-24.zip"
SPEECH = ["Actor_01/03-01-01-01-01-01-01.wav", "Actor_01/03-01-05-02-01-02-01.wav",
          "Actor_01/03-01-08-01-02-01-01.wav", "Actor_02/03-01-01-01-01-01-02.wav",
          "Actor_02/03-01-03-02-02-02-02.wav", "Actor_02/03-01-04-01-01-01-02.wav"]
SONG = ["Actor_01/03-02-01-01-01-01-01.wav", "Actor_01/03-02-06-02-02-02-01.wav",
        "Actor_02/03-02-02-01-01-01-02.wav", "Actor_02/03-02-03-02-01-01-02.wav"]
# (directoryLabel or None, file name, destination under the TESS folder)
TESS = [("OAF_angry", "OAF_back_angry.wav", "OAF_angry/OAF_back_angry.wav"),
        ("OAF_neutral", "OA_bite_neutral.wav", "OAF_neutral/OA_bite_neutral.wav"),
        ("YAF_pleasant_surprised", "YAF_dog_ps.wav", "YAF_pleasant_surprised/YAF_dog_ps.wav"),
        (None, "YAF_bean_sad.wav", "YAF_sad/YAF_bean_sad.wav")]
# The expected counts of this tiny mirror (the real ones are 1440 / 1012 / 2800).
SMALL = {"ravdess_speech": {"total": 6, "per_actor": 3},
         "ravdess_song": {"total": 4, "per_actor": 2},
         "tess": {"total": 4}}
CUT_AT = 5000          # the mirror breaks the connection after this many bytes
CHUNK = 1024           # download chunk size in the tests (a resume starts at a multiple)


# --------------------------------------------------------------------------------------------
# Test data
# --------------------------------------------------------------------------------------------
def wav_bytes(seed: int, seconds: float = 0.1, sr: int = 8000) -> bytes:
    t = np.arange(int(seconds * sr)) / sr
    y = 0.3 * np.sin(2 * np.pi * (200 + 37 * seed) * t)
    buf = io.BytesIO()
    sf.write(buf, y, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def make_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(2018, 4, 5, 12, 0, 0)), data)
    return buf.getvalue()


def md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


# --------------------------------------------------------------------------------------------
# The mirror
# --------------------------------------------------------------------------------------------
class Mirror:
    """State of the fake server: what it serves, faults to inject, requests seen."""

    def __init__(self) -> None:
        self.url = ""
        self.speech = {n: wav_bytes(i) for i, n in enumerate(SPEECH)}
        self.song = {n: wav_bytes(10 + i) for i, n in enumerate(SONG)}
        self.tess = {dest: wav_bytes(20 + i) for i, (_, _, dest) in enumerate(TESS)}
        self.blobs: dict[str, bytes] = {}
        self.cut: dict[str, int] = {}         # path -> send only this many bytes, once
        self.log: list[tuple[str, str | None]] = []
        self.listing_edit = None              # callable(files) -> files: a hostile listing
        self.lock = threading.Lock()
        self.zip_bytes = {SPEECH_ZIP: make_zip(self.speech), SONG_ZIP: make_zip(self.song)}
        self.zip_md5 = {k: md5(v) for k, v in self.zip_bytes.items()}
        self.tess_md5 = {dest: md5(b) for dest, b in self.tess.items()}

    def zip_path(self, name: str) -> str:
        return f"/api/records/{ZENODO_RECORD}/files/{name}/content"

    def file_id(self, i: int) -> int:
        return 5000 + i

    def build(self) -> None:
        for name, data in self.zip_bytes.items():
            self.blobs[self.zip_path(name)] = data
        for i, (_, _, dest) in enumerate(TESS):
            self.blobs[f"/api/access/datafile/{self.file_id(i)}"] = self.tess[dest]
        self.blobs[f"/api/access/datafile/{self.file_id(99)}"] = b"Toronto emotional speech"

    def zenodo_json(self) -> dict:
        files = []
        for name, data in self.zip_bytes.items():
            # speech: the legacy link to the content; song: the InvenioRDM metadata link
            link = (f"{self.url}{self.zip_path(name)}" if name == SPEECH_ZIP
                    else f"{self.url}/api/records/{ZENODO_RECORD}/files/{name}")
            files.append({"key": name, "size": len(data), "checksum": f"md5:{self.zip_md5[name]}",
                          "links": {"self": link}})
        return {"id": ZENODO_RECORD, "files": files}

    def dataverse_json(self) -> dict:
        files = []
        for i, (folder, name, dest) in enumerate(TESS):
            data = self.tess[dest]
            df = {"id": self.file_id(i), "filename": name, "contentType": "audio/x-wav",
                  "filesize": len(data)}
            if i % 2:
                df["md5"] = self.tess_md5[dest]             # older Dataverse answers
            else:
                df["checksum"] = {"type": "MD5", "value": self.tess_md5[dest]}
            entry = {"label": name, "restricted": False, "dataFile": df}
            if folder:
                entry["directoryLabel"] = folder
            files.append(entry)
        files.append({"label": "README.txt", "dataFile": {
            "id": self.file_id(99), "filename": "README.txt", "filesize": 24,
            "checksum": {"type": "MD5", "value": md5(b"Toronto emotional speech")}}})
        if self.listing_edit is not None:
            files = self.listing_edit(files)
        return {"status": "OK", "data": {"id": 1, "latestVersion": {"files": files}}}

    def downloads(self) -> list[tuple[str, str | None]]:
        """Requests for file content (not the API listings)."""
        return [(p, r) for p, r in self.log if "/content" in p or "/access/" in p]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:   # keep pytest output clean
        pass

    def do_GET(self) -> None:   # noqa: N802
        m: Mirror = self.server.mirror   # type: ignore[attr-defined]
        parts = urlsplit(self.path)
        path = parts.path
        with m.lock:
            m.log.append((path, self.headers.get("Range")))
        if path == f"/api/records/{ZENODO_RECORD}":
            return self.send_json(m.zenodo_json())
        if path == "/api/datasets/:persistentId/":
            if parse_qs(parts.query).get("persistentId") != [TESS_DOI]:
                return self.send_json({"status": "ERROR", "message": "not found"}, 404)
            return self.send_json(m.dataverse_json())
        if path not in m.blobs:
            return self.send_json({"status": 404}, 404)
        data = m.blobs[path]
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[6:-1])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        with m.lock:
            cut = m.cut.pop(path, None)
        if cut is not None:          # the connection breaks after `cut` bytes of the file
            self.wfile.write(body[:max(0, cut - start)])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)

    def send_json(self, obj, code: int = 200) -> None:
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(autouse=True)
def local_only(monkeypatch):
    """Fail any request to a host other than 127.0.0.1; no server URLs from the environment."""
    real = requests.Session.request

    def guarded(self, method, url, *a, **kw):
        host = urlsplit(url).hostname
        assert host == "127.0.0.1", f"test tried to contact {url}"
        return real(self, method, url, *a, **kw)

    monkeypatch.setattr(requests.Session, "request", guarded)
    for var in (ser.download.ENV_BASE_URL, ser.download.ENV_ZENODO_URL, ser.download.ENV_DATAVERSE_URL):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(ser.download.ENV_BASE_URL, "http://127.0.0.1:9")   # a forgotten URL fails here


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(ser.download.ResumableDownloader, "chunk_size", CHUNK)


def resumed_at(mirror, path) -> list[int]:
    return [int(r[6:-1]) for p, r in mirror.log if p == path and r]


@pytest.fixture
def mirror():
    m = Mirror()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.mirror = m   # type: ignore[attr-defined]
    m.url = f"http://127.0.0.1:{server.server_address[1]}"
    m.build()
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True)
    t.start()
    yield m
    server.shutdown()
    server.server_close()


@pytest.fixture
def dirs(tmp_path):
    d = {"features": tmp_path / "features", "tess": tmp_path / "data" / "tess",
         "cache": tmp_path / "data" / "downloads"}
    return d


def cli(dirs, *extra) -> list[str]:
    return ["--features-dir", str(dirs["features"]), "--tess-dir", str(dirs["tess"]),
            "--cache-dir", str(dirs["cache"]), "--no-progress", *map(str, extra)]


def download(mirror, dirs, **kw):
    kw.setdefault("expected", SMALL)
    kw.setdefault("retry_wait", 0)
    return ser.download.download(features_dir=dirs["features"], tess_dir=dirs["tess"],
                       cache_dir=dirs["cache"], base_url=mirror.url, progress=False, **kw)


def snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for root in roots:
        if root.exists():
            for p in sorted(root.rglob("*")):
                if p.is_file():
                    s = p.stat()
                    out[str(p)] = (s.st_size, s.st_mtime_ns)
    return out


def audio_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def no_staging_left(tmp_path: Path) -> bool:
    return not [p for p in tmp_path.rglob("*download_data-*")]


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("download_data.py: error:")]
    assert len(lines) == 1, err
    return lines[0]


def assert_downloaded(mirror, dirs) -> None:
    for name, data in {**mirror.speech, **mirror.song}.items():
        assert (dirs["features"] / name).read_bytes() == data, name
    for dest, data in mirror.tess.items():
        assert (dirs["tess"] / dest).read_bytes() == data, dest
    assert len(audio_files(dirs["features"])) == len(SPEECH) + len(SONG)
    assert len(audio_files(dirs["tess"])) == len(TESS)


# --------------------------------------------------------------------------------------------
# Downloads
# --------------------------------------------------------------------------------------------
def test_download_places_everything(mirror, dirs, tmp_path):
    summary = download(mirror, dirs)
    assert_downloaded(mirror, dirs)
    assert summary["ravdess_speech"].placed == 6
    assert summary["ravdess_song"].placed == 4
    assert summary["tess"].placed == 4
    assert not (dirs["tess"] / "README.txt").exists()
    assert (dirs["cache"] / SPEECH_ZIP).read_bytes() == mirror.zip_bytes[SPEECH_ZIP]
    assert not list(dirs["cache"].glob("*.part"))
    assert no_staging_left(tmp_path)
    # the InvenioRDM-style metadata link of the song zip was turned into its /content link
    assert (mirror.zip_path(SONG_ZIP), None) in mirror.log


def test_cli_rerun_is_a_noop(mirror, dirs, capsys):
    assert main(cli(dirs, "--base-url", mirror.url, "--allow-incomplete")) == 0
    out = capsys.readouterr().out
    assert "Summary: ravdess_speech: 6 placed" in out and "tess: 4 placed" in out
    before = snapshot(dirs["features"], dirs["tess"])
    mirror.log.clear()

    assert main(cli(dirs, "--base-url", mirror.url, "--allow-incomplete")) == 0
    out = capsys.readouterr().out
    assert mirror.log == []                          # not even the API was asked
    assert out.count("skipped") >= 3
    assert "ravdess_speech: 0 placed, 6 already present" in out
    assert snapshot(dirs["features"], dirs["tess"]) == before

    # Without the completion records: the APIs are asked, nothing is downloaded or copied.
    for marker in dirs["cache"].glob("*.complete.json"):
        marker.unlink()
    assert main(cli(dirs, "--base-url", mirror.url, "--allow-incomplete")) == 0
    out = capsys.readouterr().out
    assert mirror.downloads() == []
    assert "reusing" in out and "tess: 0 placed, 4 already present" in out
    assert snapshot(dirs["features"], dirs["tess"]) == before

    # What was accepted with --allow-incomplete is not "complete" for a strict run.
    assert main(cli(dirs, "--base-url", mirror.url)) == 1
    assert "expected 1440" in one_error_line(capsys.readouterr().err)
    assert snapshot(dirs["features"], dirs["tess"]) == before


def test_verified_download_is_skipped_even_by_a_strict_run(mirror, dirs, capsys):
    download(mirror, dirs)                            # counts as expected (SMALL)
    before = snapshot(dirs["features"], dirs["tess"])
    mirror.log.clear()
    assert main(cli(dirs, "--base-url", mirror.url)) == 0
    assert mirror.log == []
    assert "complete in" in capsys.readouterr().out
    assert snapshot(dirs["features"], dirs["tess"]) == before


def test_separate_server_options_and_corpus_choice(mirror, dirs, capsys):
    rc = main(cli(dirs, "--zenodo-url", mirror.url, "--dataverse-url", mirror.url,
                  "--corpus", "ravdess_song", "tess", "--allow-incomplete"))
    assert rc == 0
    assert not (dirs["features"] / SPEECH[0]).exists()
    assert (dirs["features"] / SONG[0]).exists() and len(audio_files(dirs["tess"])) == 4
    assert (mirror.zip_path(SPEECH_ZIP), None) not in mirror.log


def test_env_var_sets_the_server(mirror, dirs, monkeypatch):
    monkeypatch.setenv(ser.download.ENV_BASE_URL, mirror.url)
    summary = ser.download.download(features_dir=dirs["features"], tess_dir=dirs["tess"],
                          cache_dir=dirs["cache"], expected=SMALL, progress=False,
                          corpora=["ravdess_speech"])
    assert summary["ravdess_speech"].placed == 6


def test_real_counts_are_checked_by_default(mirror, dirs, capsys, tmp_path):
    rc = main(cli(dirs, "--base-url", mirror.url))
    assert rc == 1
    line = one_error_line(capsys.readouterr().err)
    assert "ravdess_speech has 6 audio files, expected 1440" in line
    assert "ravdess_speech was not placed" in line
    assert audio_files(dirs["features"]) == [] and audio_files(dirs["tess"]) == []
    assert no_staging_left(tmp_path)


def test_cut_connection_resumes_in_the_same_run(mirror, dirs):
    path = mirror.zip_path(SPEECH_ZIP)
    mirror.cut[path] = CUT_AT
    download(mirror, dirs, retries=2)
    assert_downloaded(mirror, dirs)
    assert resumed_at(mirror, path) == [CUT_AT // CHUNK * CHUNK]


def test_cut_connection_resumes_on_rerun(mirror, dirs, capsys, tmp_path):
    path = mirror.zip_path(SPEECH_ZIP)
    mirror.cut[path] = CUT_AT
    assert main(cli(dirs, "--base-url", mirror.url, "--retries", 0, "--allow-incomplete")) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "interrupted" in line and "run again to resume" in line
    part = dirs["cache"] / f"{SPEECH_ZIP}.part"
    kept = part.stat().st_size
    assert kept == CUT_AT // CHUNK * CHUNK
    assert not (dirs["cache"] / SPEECH_ZIP).exists()
    assert audio_files(dirs["features"]) == []
    assert no_staging_left(tmp_path)

    mirror.log.clear()
    assert main(cli(dirs, "--base-url", mirror.url, "--retries", 0, "--allow-incomplete")) == 0
    assert resumed_at(mirror, path) == [kept]
    assert (path, None) not in mirror.log             # continued, not restarted
    assert not part.exists()
    assert_downloaded(mirror, dirs)


def test_stale_part_that_does_not_match_is_downloaded_again(mirror, dirs):
    dirs["cache"].mkdir(parents=True)
    (dirs["cache"] / f"{SPEECH_ZIP}.part").write_bytes(b"x" * CUT_AT)   # another file's start
    download(mirror, dirs, corpora=["ravdess_speech"])
    path = mirror.zip_path(SPEECH_ZIP)
    assert [r for p, r in mirror.log if p == path] == [f"bytes={CUT_AT}-", None]
    assert (dirs["features"] / SPEECH[0]).read_bytes() == mirror.speech[SPEECH[0]]


def test_wrong_checksum_is_an_error_and_nothing_is_written(mirror, dirs, capsys, tmp_path):
    mirror.zip_md5[SPEECH_ZIP] = "0" * 32
    assert main(cli(dirs, "--base-url", mirror.url, "--allow-incomplete")) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "checksum mismatch" in line and SPEECH_ZIP in line
    assert not (dirs["cache"] / SPEECH_ZIP).exists()
    assert not list(dirs["cache"].glob("*.part"))
    assert audio_files(dirs["features"]) == []
    assert no_staging_left(tmp_path)


def test_archive_that_is_not_a_zip(mirror, dirs, capsys, tmp_path):
    bad = b"<html>Service unavailable</html>" * 100
    mirror.blobs[mirror.zip_path(SPEECH_ZIP)] = bad
    mirror.zip_bytes[SPEECH_ZIP] = bad
    mirror.zip_md5[SPEECH_ZIP] = md5(bad)
    assert main(cli(dirs, "--base-url", mirror.url, "--allow-incomplete")) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "not a valid zip archive" in line
    assert audio_files(dirs["features"]) == []
    assert no_staging_left(tmp_path)


def test_corrupt_member_leaves_nothing_half_extracted(mirror, dirs, capsys, tmp_path):
    data = bytearray(mirror.zip_bytes[SPEECH_ZIP])
    last = mirror.speech[SPEECH[-1]]
    pos = bytes(data).rindex(last[100:140]) + 5       # inside the last member's data
    data[pos] ^= 0xFF
    bad = bytes(data)
    mirror.blobs[mirror.zip_path(SPEECH_ZIP)] = bad
    mirror.zip_bytes[SPEECH_ZIP] = bad
    mirror.zip_md5[SPEECH_ZIP] = md5(bad)             # the server's checksum is of the bad zip
    assert main(cli(dirs, "--base-url", mirror.url, "--allow-incomplete")) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "corrupt archive" in line and "nothing was placed" in line
    assert audio_files(dirs["features"]) == []       # not even the five good members
    assert no_staging_left(tmp_path)


def test_tess_bad_file_places_nothing_and_rerun_fetches_only_that_file(mirror, dirs, capsys):
    bad_dest = TESS[2][2]
    good = mirror.tess_md5[bad_dest]
    mirror.tess_md5[bad_dest] = "f" * 32
    assert main(cli(dirs, "--base-url", mirror.url, "--corpus", "tess",
                    "--allow-incomplete")) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "checksum mismatch" in line and "YAF_dog_ps.wav" in line
    assert audio_files(dirs["tess"]) == []            # the three good files wait in staging

    mirror.tess_md5[bad_dest] = good
    mirror.log.clear()
    assert main(cli(dirs, "--base-url", mirror.url, "--corpus", "tess",
                    "--allow-incomplete")) == 0
    assert mirror.downloads() == [(f"/api/access/datafile/{mirror.file_id(2)}", None)]
    for dest, data in mirror.tess.items():
        assert (dirs["tess"] / dest).read_bytes() == data
    assert not (dirs["tess"].parent / ".tess.download.tmp").exists()


def test_server_missing_is_a_clear_error(dirs, capsys):
    rc = main(cli(dirs, "--base-url", "http://127.0.0.1:9", "--timeout", 5))
    assert rc == 1
    line = one_error_line(capsys.readouterr().err)
    assert "cannot get the file list of Zenodo record 1188976" in line


# --------------------------------------------------------------------------------------------
# Pure functions
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("parts, kind, dest", [
    (("Actor_01", "03-01-01-01-01-01-01.wav"), "ravdess_speech",
     ("Actor_01", "03-01-01-01-01-01-01.wav")),
    (("x", "03-02-06-02-02-01-03.flac"), "ravdess_song",
     ("Actor_03", "03-02-06-02-02-01-03.flac")),
    (("tess", "OAF_neutral", "OA_bite_neutral.wav"), "tess",
     ("OAF_neutral", "OA_bite_neutral.wav")),
    (("OAF_Pleasant_surprise", "OAF_back_ps.flac"), "tess",
     ("OAF_Pleasant_surprise", "OAF_back_ps.flac")),
    (("YAF_bean_sad.wav",), "tess", ("YAF_sad", "YAF_bean_sad.wav")),
    (("OA_bite_neutral.wav",), "tess", ("OAF_neutral", "OA_bite_neutral.wav")),
    (("__MACOSX", "Actor_01", "._03-01-01-01-01-01-01.wav"), "junk", None),
    (("Actor_01", ".03-01-01-01-01-01-01.wav"), "junk", None),
    (("Actor_01", "notes.txt"), "nonaudio", None),
    (("Actor_01", "recording.wav"), "bad", None),
    (("Actor_25", "03-01-01-01-01-01-25.wav"), "bad", None),
    (("OAF_angry", "readme.wav"), "bad", None),
])
def test_classify(parts, kind, dest):
    c = classify(parts)
    assert c.kind == kind, c.reason
    assert c.rel_dest == dest
    if kind == "bad":
        assert c.reason


def test_rebase_and_urls():
    z = "https://zenodo.org"
    m = "http://127.0.0.1:8000"
    assert ser.download.rebase(f"{z}/api/records/1/files/a.zip/content", m, z) == \
        f"{m}/api/records/1/files/a.zip/content"
    assert ser.download.rebase("/records/1/files/a.zip?download=1", m, z) == \
        f"{m}/records/1/files/a.zip?download=1"
    assert ser.download.rebase("https://other.org/x", m, z) == "https://other.org/x"
    assert ser.download.rebase(f"{z}/x", z, z) == f"{z}/x"
    assert ser.download.parse_content_range("bytes 100-199/1000") == (100, 199, 1000)
    assert ser.download.parse_content_range("bytes */1000") is None
    env = {ser.download.ENV_BASE_URL: "http://b", ser.download.ENV_DATAVERSE_URL: "http://d/"}
    assert ser.download.resolve_urls(env=env) == ("http://b", "http://d")
    assert ser.download.resolve_urls("http://z", base_url="http://m", env={}) == ("http://z", "http://m")
    assert ser.download.resolve_urls(base_url="http://m", env=env) == ("http://m", "http://m")
    assert ser.download.resolve_urls(env={}) == (ser.download.ZENODO_URL, ser.download.DATAVERSE_URL)


def test_every_option_has_help(capsys):
    parser = download_data.build_parser()
    for action in parser._actions:
        assert action.help, action.option_strings
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for opt in ("--from", "--corpus", "--features-dir", "--tess-dir", "--base-url",
                "--zenodo-url", "--dataverse-url", "--allow-incomplete", "--force"):
        assert opt in out
    assert ".previous" in out                          # where --force keeps replaced files


# --------------------------------------------------------------------------------------------
# --from: local copies
# --------------------------------------------------------------------------------------------
def test_from_missing_folder(dirs, tmp_path, capsys):
    assert main(cli(dirs, "--from", tmp_path / "nope")) == 1
    assert "no such file or folder" in one_error_line(capsys.readouterr().err)


def test_from_folder_without_audio(dirs, tmp_path, capsys):
    src = tmp_path / "src"
    (src / "Actor_01").mkdir(parents=True)
    (src / "Actor_01" / "take one.wav").write_bytes(wav_bytes(1))
    assert main(cli(dirs, "--from", src)) == 1
    err = capsys.readouterr().err
    assert "take one.wav" in err                        # the bad file is named
    assert "no RAVDESS or TESS audio files found" in one_error_line(err)


def test_from_other_format_already_present(dirs, tmp_path):
    name = "03-01-01-01-01-01-01"
    (dirs["features"] / "Actor_01").mkdir(parents=True)
    (dirs["features"] / "Actor_01" / f"{name}.flac").write_bytes(b"flac")
    src = tmp_path / "src" / "Actor_01"
    src.mkdir(parents=True)
    (src / f"{name}.wav").write_bytes(wav_bytes(1))
    s = ser.download.import_local(src.parent, features_dir=dirs["features"], tess_dir=dirs["tess"],
                        strict=False, progress=False)
    assert s["ravdess_speech"].skipped == {"already present in another format": 1}
    assert not (dirs["features"] / "Actor_01" / f"{name}.wav").exists()


def copy_tree_subset(files: list[Path], base: Path, dest: Path) -> None:
    for f in files:
        out = dest / f.relative_to(base)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, out)


def test_from_shared_layout(shared_data, dirs, tmp_path, capsys):
    src = tmp_path / "src"
    speech = sorted((shared_data / "ravdess_speech" / "Actor_01").iterdir())
    song = sorted((shared_data / "ravdess_song" / "Actor_02").iterdir())
    tess = sorted((shared_data / "tess" / "OAF_neutral").iterdir())[:4] + \
        [shared_data / "tess" / "OAF_neutral" / "OA_bite_neutral.flac"]
    original = shared_data / "originals" / "ravdess_speech" / "Actor_01" / \
        "03-01-02-01-01-02-01.wav"
    copy_tree_subset([*speech, *song, *tess, original], shared_data, src)
    (src / "README.md").write_text("corpora\n")
    (src / "ravdess_speech" / "Actor_01" / "take2.wav").write_bytes(wav_bytes(3))
    (src / "tess" / "OAF_neutral" / ".DS_Store").write_bytes(b"\0")

    s = ser.download.import_local(src, features_dir=dirs["features"], tess_dir=dirs["tess"],
                        expected={"tess": {"total": 5}}, progress=False)
    err = capsys.readouterr().err
    assert "take2.wav" in err and "not a RAVDESS-style name" in err
    assert (s["ravdess_speech"].placed, s["ravdess_song"].placed, s["tess"].placed) == (60, 44, 5)
    assert s["other"].skipped["bad name"] == 1
    assert sum(n for why, n in s["other"].skipped.items() if "originals/" in why) == 1
    assert "other files: 4 skipped" in s.line()     # + .DS_Store
    placed = audio_files(dirs["features"])
    assert len(placed) == 104 and {p.parent.name for p in placed} == {"Actor_01", "Actor_02"}
    assert all(p.suffix == ".flac" for p in placed)    # the WAV in originals/ was not taken
    for f in [*speech, *song]:
        d = dirs["features"] / f.parent.name / f.name
        assert d.read_bytes() == f.read_bytes() and d.stat().st_mtime_ns == f.stat().st_mtime_ns
    for f in tess:
        assert (dirs["tess"] / "OAF_neutral" / f.name).read_bytes() == f.read_bytes()
    assert no_staging_left(tmp_path)

    # A second run changes nothing; a damaged destination file is replaced only with force,
    # and then kept under .previous/.
    before = snapshot(dirs["features"], dirs["tess"])
    s = ser.download.import_local(src, features_dir=dirs["features"], tess_dir=dirs["tess"],
                        expected={"tess": {"total": 5}}, progress=False)
    assert (s["ravdess_speech"].present, s["ravdess_song"].present, s["tess"].present) == \
        (60, 44, 5)
    assert s["ravdess_speech"].placed == 0
    assert snapshot(dirs["features"], dirs["tess"]) == before
    victim = dirs["features"] / "Actor_01" / speech[0].name
    victim.write_bytes(b"truncated")
    s = ser.download.import_local(src, features_dir=dirs["features"], tess_dir=dirs["tess"],
                        expected={"tess": {"total": 5}}, progress=False)
    assert s["ravdess_speech"].replaced == 0 and s["ravdess_speech"].present == 59
    assert victim.read_bytes() == b"truncated"
    s = ser.download.import_local(src, features_dir=dirs["features"], tess_dir=dirs["tess"],
                        expected={"tess": {"total": 5}}, progress=False, force=True)
    assert s["ravdess_speech"].replaced == 1
    assert victim.read_bytes() == speech[0].read_bytes()
    (kept,) = (dirs["features"] / ".previous").rglob(victim.name)
    assert kept.read_bytes() == b"truncated"


def test_from_official_zip_names(shared_data, dirs, tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    speech = sorted((shared_data / "ravdess_speech" / "Actor_02").iterdir())
    song = sorted((shared_data / "ravdess_song" / "Actor_03").iterdir())
    tess = sorted((shared_data / "originals" / "tess").rglob("*.wav"))
    with zipfile.ZipFile(src / SPEECH_ZIP, "w") as zf:
        for f in speech:
            zf.write(f, f"Actor_02/{f.name}")
    with zipfile.ZipFile(src / SONG_ZIP, "w") as zf:
        for f in song:
            zf.write(f, f"Actor_03/{f.name}")
    top = "TESS Toronto emotional speech set data"
    with zipfile.ZipFile(src / f"{top}.zip", "w") as zf:
        for f in tess:
            zf.write(f, f"{top}/{f.parent.name}/{f.name}")
        zf.writestr(f"__MACOSX/{top}/._x.wav", b"junk")

    s = ser.download.import_local(src, features_dir=dirs["features"], tess_dir=dirs["tess"],
                        expected={"tess": {"total": len(tess)}}, progress=False)
    assert (s["ravdess_speech"].placed, s["ravdess_song"].placed, s["tess"].placed) == \
        (60, 44, 6)
    for f in speech:
        assert (dirs["features"] / "Actor_02" / f.name).read_bytes() == f.read_bytes()
    for f in song:
        assert (dirs["features"] / "Actor_03" / f.name).read_bytes() == f.read_bytes()
    for f in tess:   # names unchanged: the AIFF data named .wav, OA_bite_neutral.wav
        assert (dirs["tess"] / f.parent.name / f.name).read_bytes() == f.read_bytes()
    assert (dirs["tess"] / "OAF_neutral" / "OA_bite_neutral.wav").exists()
    assert no_staging_left(tmp_path)

    before = snapshot(dirs["features"], dirs["tess"])
    rc = main(cli(dirs, "--from", src, "--allow-incomplete"))
    assert rc == 0
    out = capsys.readouterr().out
    assert "ravdess_speech: 0 placed, 60 already present" in out
    assert "tess: 0 placed, 6 already present" in out
    assert snapshot(dirs["features"], dirs["tess"]) == before


def test_from_wrong_count_places_nothing(shared_data, dirs, tmp_path, capsys):
    src = tmp_path / "src"
    speech = sorted((shared_data / "ravdess_speech" / "Actor_04").iterdir())[1:]
    copy_tree_subset(speech, shared_data, src)
    assert main(cli(dirs, "--from", src)) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "ravdess_speech Actor_04 has 59 files, expected 60" in line
    assert audio_files(dirs["features"]) == []


@pytest.fixture
def big_tmp(tmp_path):
    """A folder for the 4836-file import: on tmpfs when there is one.

    Deleting thousands of files on a disk mounted with ``discard`` takes seconds per thousand,
    and pytest deletes old tmp_path trees in later runs; tmpfs avoids that cost.
    """
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 2 ** 30:
        d = Path(tempfile.mkdtemp(prefix="test_download-", dir=shm))
        yield d
        shutil.rmtree(d, ignore_errors=True)
    else:
        yield tmp_path


def test_from_all_shared_data(shared_data, big_tmp, capsys):
    dirs = {"features": big_tmp / "features", "tess": big_tmp / "data" / "tess",
            "cache": big_tmp / "data" / "downloads"}
    t0 = time.perf_counter()
    assert main(cli(dirs, "--from", shared_data)) == 0
    elapsed = time.perf_counter() - t0
    out = capsys.readouterr().out
    assert "ravdess_speech: 1200 placed" in out and "ravdess_song: 836 placed" in out
    actors = sorted(p.name for p in dirs["features"].iterdir())
    assert actors == [f"Actor_{i:02d}" for i in range(1, 21)]
    ravdess = [p for p in dirs["features"].rglob("*") if p.is_file()]
    assert len(ravdess) == 2036
    assert len(list((dirs["features"] / "Actor_18").iterdir())) == 60     # no song
    tess = [p for p in dirs["tess"].rglob("*") if p.is_file()]
    assert len(tess) == 2800
    assert len({p.parent.name for p in tess}) == 14
    assert elapsed < 60, f"importing the shared data took {elapsed:.1f} s"

    before = snapshot(dirs["features"], dirs["tess"])
    assert main(cli(dirs, "--from", shared_data)) == 0
    out = capsys.readouterr().out
    assert "ravdess_speech: 0 placed, 1200 already present" in out
    assert "tess: 0 placed, 2800 already present" in out
    assert snapshot(dirs["features"], dirs["tess"]) == before


# --------------------------------------------------------------------------------------------
# Hostile and broken inputs (issue 15)
# --------------------------------------------------------------------------------------------
ROOT = Path(__file__).resolve().parents[1]
SCRIPT = b"#!/bin/sh\necho pwned > /tmp/pwned\n"


def speech_names(actor: int) -> list[str]:
    """The 60 speech file names of one RAVDESS actor."""
    return [f"03-01-{e:02d}-{i:02d}-{s:02d}-{r:02d}-{actor:02d}.wav"
            for e in range(1, 9) for i in ((1,) if e == 1 else (1, 2))
            for s in (1, 2) for r in (1, 2)]


def paths_outside(tmp_path: Path, dirs) -> list[str]:
    """Everything under tmp_path that is not inside one of the destination folders."""
    allowed = [dirs["features"], dirs["tess"], dirs["cache"]]
    return sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")
                  if not any(p == a or a in p.parents for a in allowed))


def _deep(outside: Path, name: str) -> str:
    """A relative path climbing to / and down into ``outside``."""
    return "../" * 40 + str(outside).lstrip("/") + "/" + name


# Listing entries (label, directoryLabel) that try to leave --tess-dir.
HOSTILE_ENTRIES = {
    "dotdot-label": lambda o: {"label": "z/" + _deep(o, "OAF_pwn_angry.flac"),
                               "directoryLabel": "OAF_angry"},
    "dotdot-after-prefix": lambda o: {"label": "OAF_/../../../victim/OAF_x_angry.wav"},
    "absolute-label": lambda o: {"label": str(o / "OAF_abs_angry.wav"),
                                 "directoryLabel": "OAF_angry"},
    "dotdot-folder": lambda o: {"label": "OAF_dir_angry.wav",
                                "directoryLabel": _deep(o, "OAF_angry")},
    "drive-letter": lambda o: {"label": "C:OAF_drv_angry.wav", "directoryLabel": "OAF_angry"},
    "nul": lambda o: {"label": "OAF_nul\x00_angry.wav", "directoryLabel": "OAF_angry"},
    "backslashes": lambda o: {"label": "..\\..\\..\\victim\\OAF_x_angry.wav",
                              "directoryLabel": "OAF_angry"},
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_ENTRIES))
def test_listing_entry_leaving_the_tess_folder_is_refused(kind, mirror, dirs, tmp_path,
                                                          capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = dirs["tess"].parent / "victim" / "OAF_x_angry.wav"
    victim.parent.mkdir(parents=True)
    victim.write_bytes(b"precious")
    hostile = HOSTILE_ENTRIES[kind](outside)

    def edit(files):        # the first TESS entry (its data file is served) turns hostile
        files[0] = {**{k: v for k, v in files[0].items() if k != "directoryLabel"},
                    **hostile}
        return files

    mirror.listing_edit = edit
    before = paths_outside(tmp_path, dirs)
    # Strict (the counts match: 4 entries): refused, one line naming the entry, nothing placed.
    with pytest.raises(ser.download.DownloadError) as e:
        download(mirror, dirs, corpora=["tess"])
    msg = str(e.value)
    assert "\n" not in msg and "unsafe" in msg and "refused" in msg, msg
    assert "datafile/5000" in msg                       # the entry is named
    assert audio_files(dirs["tess"]) == []
    assert paths_outside(tmp_path, dirs) == before
    assert victim.read_bytes() == b"precious"

    # Not strict: the entry is skipped and counted, the others are placed; twice.
    for _ in range(2):
        assert main(cli(dirs, "--base-url", mirror.url, "--corpus", "tess",
                        "--allow-incomplete")) == 0
        out, err = capsys.readouterr()
        assert "unsafe" in err and "datafile/5000" in err
        assert "1 unsafe name" in out, out
        assert len(audio_files(dirs["tess"])) == 3
        assert paths_outside(tmp_path, dirs) == before
        assert victim.read_bytes() == b"precious"


def test_zip_members_with_unsafe_paths_are_refused(dirs, tmp_path, capsys):
    names = speech_names(1)
    good = {f"Actor_01/{n}": wav_bytes(i) for i, n in enumerate(names[3:])}
    hostile = {f"../../Actor_01/{names[0]}": wav_bytes(50),
               f"/abs/Actor_01/{names[1]}": wav_bytes(51),
               f"C:/x/Actor_01/{names[2]}": wav_bytes(52)}
    (tmp_path / "src").mkdir()
    z = tmp_path / "src" / SPEECH_ZIP
    z.write_bytes(make_zip({**hostile, **good}))
    before = paths_outside(tmp_path, dirs)

    assert main(cli(dirs, "--from", z)) == 1              # strict: fatal, nothing placed
    line = one_error_line(capsys.readouterr().err)
    assert "unsafe" in line and "../../Actor_01/" in line
    assert audio_files(dirs["features"]) == []

    assert main(cli(dirs, "--from", z, "--allow-incomplete")) == 0
    out, err = capsys.readouterr()
    for name in hostile:
        assert name in err
    assert "3 unsafe name" in out
    placed = audio_files(dirs["features"])
    assert sorted(p.name for p in placed) == sorted(names[3:])
    assert paths_outside(tmp_path, dirs) == before


def test_symlinks_leaving_the_source_are_not_followed(dirs, tmp_path, capsys):
    names = speech_names(1)
    secret = tmp_path / "secret.wav"                   # readable audio, but not the user's
    secret.write_bytes(wav_bytes(7))
    os.chmod(secret, 0o600)
    elsewhere = tmp_path / "elsewhere" / "Actor_03"
    elsewhere.mkdir(parents=True)
    (elsewhere / "03-01-01-01-01-01-03.wav").write_bytes(wav_bytes(8))
    src = tmp_path / "src"
    (src / "Actor_01").mkdir(parents=True)
    (src / "pool").mkdir()
    (src / "Actor_01" / names[0]).symlink_to(secret)
    (src / "Actor_03").symlink_to(elsewhere, target_is_directory=True)
    private = src / "Actor_01" / names[1]
    private.write_bytes(wav_bytes(9))
    os.chmod(private, 0o600)
    (src / "pool" / "take.wav").write_bytes(wav_bytes(10))
    (src / "Actor_01" / names[2]).symlink_to(src / "pool" / "take.wav")   # inside the tree

    assert main(cli(dirs, "--from", src, "--allow-incomplete")) == 0
    out, err = capsys.readouterr()
    assert not (dirs["features"] / "Actor_01" / names[0]).exists()
    assert not (dirs["features"] / "Actor_03").exists()
    assert str(src / "Actor_01" / names[0]) in err and str(src / "Actor_03") in err
    assert "2 symbolic link leaving the source folder" in out, out
    placed = dirs["features"] / "Actor_01" / names[1]
    assert placed.read_bytes() == wav_bytes(9)
    assert stat.S_IMODE(placed.stat().st_mode) == 0o600          # not wider than its source
    inside = dirs["features"] / "Actor_01" / names[2]
    assert inside.read_bytes() == wav_bytes(10)
    assert len(audio_files(dirs["features"])) == 2


def test_zip_member_is_not_placed_with_wider_permissions(dirs, tmp_path):
    name = "Actor_01/03-01-01-01-01-01-01.wav"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo(name, date_time=(2018, 4, 5, 12, 0, 0))
        info.create_system = 3
        info.external_attr = (stat.S_IFREG | 0o600) << 16
        zf.writestr(info, wav_bytes(1))
    z = tmp_path / "one.zip"
    z.write_bytes(buf.getvalue())
    ser.download.import_local(z, features_dir=dirs["features"], tess_dir=dirs["tess"], strict=False,
                    progress=False)
    assert stat.S_IMODE((dirs["features"] / name).stat().st_mode) == 0o600


def test_a_file_that_is_not_audio_never_becomes_corpus_audio(dirs, tmp_path, capsys):
    real = dirs["features"] / "Actor_01" / "03-01-01-01-01-01-01.wav"
    real.parent.mkdir(parents=True)
    real.write_bytes(wav_bytes(1))
    z = tmp_path / "delivery.zip"
    z.write_bytes(make_zip({"Actor_01/03-01-01-01-01-01-01.wav": SCRIPT,      # replaces?
                            "Actor_01/03-01-02-01-01-01-01.wav": SCRIPT,      # new
                            "Actor_01/03-01-03-01-01-01-01.wav": b"",         # empty
                            "Actor_01/03-01-04-01-01-01-01.wav": wav_bytes(4)}))
    assert main(cli(dirs, "--from", z, "--allow-incomplete")) == 0
    out, err = capsys.readouterr()
    assert real.read_bytes() == wav_bytes(1)
    assert not (real.parent / "03-01-02-01-01-01-01.wav").exists()
    assert not (real.parent / "03-01-03-01-01-01-01.wav").exists()
    assert (real.parent / "03-01-04-01-01-01-01.wav").read_bytes() == wav_bytes(4)
    assert "delivery.zip:Actor_01/03-01-02-01-01-01-01.wav: not readable audio" in err
    assert "delivery.zip:Actor_01/03-01-03-01-01-01-01.wav: empty file" in err
    assert "3 not readable audio" in out and "replaced" not in out, out


def test_a_differing_file_is_replaced_only_with_force_and_kept(dirs, tmp_path, capsys):
    rel = "Actor_01/03-01-01-01-01-01-01.wav"
    dest = dirs["features"] / rel
    dest.parent.mkdir(parents=True)
    dest.write_bytes(wav_bytes(1))
    z = tmp_path / "delivery.zip"
    z.write_bytes(make_zip({rel: wav_bytes(2)}))

    assert main(cli(dirs, "--from", z, "--allow-incomplete")) == 0
    out, err = capsys.readouterr()
    assert dest.read_bytes() == wav_bytes(1)
    assert str(dest) in err and "--force" in err
    assert "1 differs from the file in place" in out, out
    assert not (dirs["features"] / ".previous").exists()

    assert main(cli(dirs, "--from", z, "--allow-incomplete", "--force")) == 0
    out, err = capsys.readouterr()
    assert dest.read_bytes() == wav_bytes(2)
    (kept,) = [p for p in (dirs["features"] / ".previous").rglob("*") if p.is_file()]
    assert kept.read_bytes() == wav_bytes(1)
    assert kept.relative_to(dirs["features"] / ".previous").parts[1:] == ("Actor_01",
                                                                          dest.name)
    assert "1 replaced" in out and str(kept.parents[1]) in out, out

    assert main(cli(dirs, "--from", z, "--allow-incomplete", "--force")) == 0
    assert "0 placed, 1 already present" in capsys.readouterr().out
    assert len([p for p in (dirs["features"] / ".previous").rglob("*") if p.is_file()]) == 1


def test_duplicates_in_one_source_prefer_readable_audio(dirs, tmp_path, capsys):
    name = "03-01-01-01-01-01-01.wav"
    z = tmp_path / "delivery.zip"
    z.write_bytes(make_zip({f"first/Actor_01/{name}": SCRIPT,
                            f"second/Actor_01/{name}": wav_bytes(3)}))
    assert main(cli(dirs, "--from", z, "--allow-incomplete")) == 0
    out, err = capsys.readouterr()
    assert (dirs["features"] / "Actor_01" / name).read_bytes() == wav_bytes(3)
    assert f"first/Actor_01/{name}: not readable audio" in err
    assert "ravdess_speech: 1 placed" in out


def test_from_empty_folder_says_so(dirs, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(cli(dirs, "--from", empty)) == 1
    assert "is empty" in one_error_line(capsys.readouterr().err)
    assert not dirs["features"].exists() and not dirs["tess"].exists()


def test_from_folder_where_nothing_can_be_done(dirs, tmp_path, capsys):
    src = tmp_path / "src" / "Actor_01"
    src.mkdir(parents=True)
    (src / "03-01-01-01-01-01-01.wav").write_bytes(wav_bytes(1))
    assert main(cli(dirs, "--from", src.parent, "--corpus", "tess")) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "nothing to import" in line and "not selected" in line
    assert not dirs["features"].exists() and not dirs["tess"].exists()


# ---- unreadable folders and files: as an unprivileged user ---------------------------------
UNSET = (ser.download.ENV_BASE_URL,)   # the child must not use a mirror


def test_unreadable_folders_and_files_are_named_counted_and_fatal_when_strict(open_tmp):
    src = open_tmp / "src"
    for actor in (1, 2):
        (src / f"Actor_{actor:02d}").mkdir(parents=True)
        for i, n in enumerate(speech_names(actor)):
            (src / f"Actor_{actor:02d}" / n).write_bytes(wav_bytes(i))
    for p in [src, *src.rglob("*")]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    os.chmod(src / "Actor_02", 0o000)
    out = open_tmp / "out"
    out.mkdir(mode=0o777)
    os.chmod(out, 0o777)
    args = ["download_data.py", "--from", str(src), "--features-dir", str(out / "features"),
            "--tess-dir", str(out / "tess"), "--no-progress"]

    r = run_unprivileged(*args, unset=UNSET)                                 # strict: fatal
    assert r.returncode == 1, r.stdout + r.stderr
    line = one_error_line(r.stderr)
    assert str(src / "Actor_02") in line and "permission denied" in line.lower()
    assert audio_files(out / "features") == []

    r = run_unprivileged(*args, "--allow-incomplete", unset=UNSET)          # skipped, named, counted
    assert r.returncode == 0, r.stderr
    assert str(src / "Actor_02") in r.stderr and "permission denied" in r.stderr.lower()
    assert "ravdess_speech: 60 placed" in r.stdout and "1 unreadable folder" in r.stdout

    shutil.rmtree(out / "features")
    locked = src / "Actor_01" / speech_names(1)[0]
    os.chmod(locked, 0o000)
    r = run_unprivileged(*args, "--allow-incomplete", unset=UNSET)
    assert r.returncode == 0, r.stderr
    assert f"{locked}: permission denied" in r.stderr
    assert "System error" not in r.stderr
    assert "ravdess_speech: 59 placed" in r.stdout and "1 unreadable file" in r.stdout
    os.chmod(src / "Actor_02", 0o755)                           # only the file is left
    r = run_unprivileged(*args, unset=UNSET)
    assert r.returncode == 1
    line = one_error_line(r.stderr)
    assert f"{locked}: permission denied" in line


def test_downloaded_file_that_is_not_audio_is_not_placed(mirror, dirs, capsys):
    bad_dest = TESS[1][2]
    mirror.tess[bad_dest] = SCRIPT                     # the server's checksum is of the script
    mirror.tess_md5[bad_dest] = md5(SCRIPT)
    mirror.build()
    with pytest.raises(ser.download.DownloadError) as e:         # strict: nothing placed
        download(mirror, dirs, corpora=["tess"])
    assert "OA_bite_neutral.wav" in str(e.value) and "not readable audio" in str(e.value)
    assert audio_files(dirs["tess"]) == []

    assert main(cli(dirs, "--base-url", mirror.url, "--corpus", "tess",
                    "--allow-incomplete")) == 0
    out, err = capsys.readouterr()
    assert "OA_bite_neutral.wav" in err and "not readable audio" in err
    assert "tess: 3 placed" in out and "1 not readable audio" in out
    assert not (dirs["tess"] / bad_dest).exists()
    assert not list(dirs["cache"].glob("*.complete.json"))   # not recorded as complete


def test_download_keeps_a_differing_file_unless_forced(mirror, dirs, capsys):
    mine = dirs["tess"] / TESS[0][2]
    mine.parent.mkdir(parents=True)
    mine.write_bytes(wav_bytes(77))                    # e.g. a re-recorded take
    assert main(cli(dirs, "--base-url", mirror.url, "--corpus", "tess",
                    "--allow-incomplete")) == 0
    out, err = capsys.readouterr()
    assert mine.read_bytes() == wav_bytes(77) and str(mine) in err and "--force" in err
    assert "tess: 3 placed" in out and "1 differs from the file in place" in out
    assert (f"/api/access/datafile/{mirror.file_id(0)}", None) not in mirror.downloads()
    assert not list(dirs["cache"].glob("*.complete.json"))

    assert main(cli(dirs, "--base-url", mirror.url, "--corpus", "tess", "--allow-incomplete",
                    "--force")) == 0
    assert "1 replaced" in capsys.readouterr().out
    assert mine.read_bytes() == mirror.tess[TESS[0][2]]
    (kept,) = (dirs["tess"] / ".previous").rglob(mine.name)
    assert kept.read_bytes() == wav_bytes(77)


def test_destination_folder_that_leads_elsewhere_is_refused(dirs, tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    dirs["features"].mkdir()
    (dirs["features"] / "Actor_01").symlink_to(elsewhere, target_is_directory=True)
    src = tmp_path / "src" / "Actor_01"
    src.mkdir(parents=True)
    (src / "03-01-01-01-01-01-01.wav").write_bytes(wav_bytes(1))
    (src.parent / "Actor_02").mkdir()
    (src.parent / "Actor_02" / "03-01-01-01-01-01-02.wav").write_bytes(wav_bytes(2))

    assert main(cli(dirs, "--from", src.parent, "--allow-incomplete")) == 0
    out, err = capsys.readouterr()
    assert "outside" in err and str(elsewhere) in err
    assert "1 unsafe name" in out
    assert list(elsewhere.iterdir()) == []
    assert (dirs["features"] / "Actor_02" / "03-01-01-01-01-01-02.wav").exists()
