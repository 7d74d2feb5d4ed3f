"""``frieren-rt serve``: the live Foley server (page, POST /offer, WHIP/WHEP) on 127.0.0.1 by default."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_engine_args(p: argparse.ArgumentParser) -> None:
    """Model options shared by serve and demo."""
    p.add_argument("--model", default=None, metavar="small|official|DIR",
                   help="which model: small (the shipped model, default), official (the published Frieren files "
                   "in --weights DIR), or a small-model weights folder / frieren-rt train run folder")
    p.add_argument("--weights", type=Path, default=None, metavar="DIR",
                   help="weights folder: the small model's (default: the shipped frieren_rt/weights) or, with "
                   "--model official, the published files (frieren.ckpt, vocoder/best_netG.pt + args.yml, "
                   "cavp_epoch66.ckpt)")
    p.add_argument("--official-sizes", choices=["official", "reduced"], default="official",
                   help="widths of the --model official files: official (published) or reduced (the parity "
                   "fixtures' widths, for tests)")
    p.add_argument("--random-model", action="store_true",
                   help="debug: a tiny randomly initialised model (its audio is NOISE, for testing the transport)")
    p.add_argument("--window", type=float, default=1.6, metavar="S",
                   help="generation window, seconds (default 1.6: the window the shipped model was trained on)")
    # 0.1 s -> 4 latents (92.9 ms) at 22050/512 latents/s: the hop is the largest part of the playout latency
    # (issue 4); a shorter hop leaves more known latents in the trained 1.6 s window.
    p.add_argument("--hop", type=float, default=0.1, metavar="S",
                   help="generation hop, seconds, rounded to whole latents (default 0.1 -> 92.9 ms)")
    p.add_argument("--lookahead", type=int, default=1, metavar="N",
                   help="latents generated past each hop before its audio is played, 23.2 ms of latency each "
                   "(default 1). With --revise-lookahead (the default) the next hop generates them again with the "
                   "video that arrived since, so the model sees video after every sound it commits: better onsets "
                   "and class (MODEL_CARD.md; 2 gains more for 23 ms more); the VAE decoder and vocoder also read "
                   "them as right context. 0: the lowest latency (--seam-in-lookahead with 1 keeps most of the sync "
                   "for 20 ms less)")
    p.add_argument("--revise-lookahead", action=argparse.BooleanOptionalAction, default=True,
                   help="generate the --lookahead latents again at the next hop instead of keeping them as first "
                   "generated (default: on; --no-revise-lookahead keeps them, the decoder alone reading them)")
    p.add_argument("--seam-in-lookahead", action="store_true",
                   help="crossfade each seam inside the look-ahead's audio instead of holding 20 ms of the hop "
                   "back: 20 ms less latency for a little class accuracy and sync (needs --lookahead >= 1; with 1 "
                   "revised latent it keeps most of the look-ahead's sync, which --lookahead 0 loses; MODEL_CARD.md)")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: 1 on machines with 2 or fewer cores, where a second thread "
                   "made live hops slower, BENCHMARKS.md; else torch's default)")
    p.add_argument("--budget-sessions", type=int, default=1, metavar="N",
                   help="sessions every session's latency budget covers from its start (default 1: the lowest "
                   "latency for a lone stream; a server expecting N streams at once gives each the compute "
                   "budget of an N-session batch, so the first does not underrun when others join)")
    add_backend_args(p)
    add_gate_arg(p)


def add_gate_arg(p: argparse.ArgumentParser) -> None:
    """--no-event-gate, shared with generate (frieren_rt/windowing/gate.py)."""
    p.add_argument("--no-event-gate", dest="event_gate", action="store_false",
                   help="let every generated sound through (default: audio passes only from 30 ms before each "
                   "frame the visual event detector marks as an event until the typical length of its class's "
                   "sound, which removes many of the sounds the model makes where nothing happens; "
                   "MODEL_CARD.md)")


def add_backend_args(p: argparse.ArgumentParser, default: str = "auto") -> None:
    """--backend / --precision, shared with generate (frieren_rt.backends, issue 5)."""
    from frieren_rt.backends import BACKENDS  # noqa: PLC0415

    p.add_argument("--backend", choices=list(BACKENDS), default=default,
                   help=f"how the model runs (default {default}): auto (script on CPU, eager on GPU); eager; script "
                   "(frozen TorchScript graphs for every network of the hop: on CPU they run without the Python "
                   "GIL, so the event loop no longer stalls them; fp32); compile (torch.compile, CPU or GPU, slow "
                   "first call); cudagraph (CUDA graphs, GPU only); tensorrt (GPU, needs pip install "
                   "'frieren-rt[tensorrt]')")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32",
                   help="autocast precision of the model: fp32 (default), bf16 (CPU with AMX, or GPU), "
                   "fp16 (GPU)")


def engine_factory(args: argparse.Namespace):  # noqa: ANN201
    """A zero-argument engine factory from the parsed options; checks the model files before returning."""
    import torch  # noqa: PLC0415

    from frieren_rt.backends import check_backend  # noqa: PLC0415
    from frieren_rt.pipeline import GenerationOptions, resolve_weights  # noqa: PLC0415
    from frieren_rt.streaming.builders import EngineOptions, build_engine, random_engine  # noqa: PLC0415

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    threads = getattr(args, "threads", None) or (1 if (os.cpu_count() or 1) <= 2 else None)
    if threads is not None:
        if threads < 1:
            raise ValueError("--threads must be >= 1")
        torch.set_num_threads(threads)
    check_backend(args.backend, args.precision, device)  # fail now (no extra, no CUDA), not per connection
    if args.lookahead < 0:
        raise ValueError("--lookahead must be >= 0 latents")
    if getattr(args, "seam_in_lookahead", False) and args.lookahead < 1:
        raise ValueError("--seam-in-lookahead needs --lookahead 1 or more (the seam lies in the look-ahead's audio)")
    if getattr(args, "budget_sessions", 1) < 1:
        raise ValueError("--budget-sessions must be >= 1")
    options = EngineOptions(window_s=args.window, hop_s=args.hop, device=device, backend=args.backend,
                            precision=args.precision, budget_sessions=getattr(args, "budget_sessions", 1),
                            event_gate=getattr(args, "event_gate", True), lookahead=args.lookahead,
                            revise_lookahead=getattr(args, "revise_lookahead", True),
                            lookahead_seam=getattr(args, "seam_in_lookahead", False))
    if args.random_model:
        print("WARNING: --random-model: an untrained random model; the generated audio is noise")
        return lambda: random_engine(options)
    if args.model == "official":  # issue 7: the published Frieren files
        from frieren_rt.official.weights import SIZES, check_weights_dir  # noqa: PLC0415
        from frieren_rt.streaming.builders import build_official_engine  # noqa: PLC0415

        if args.weights is None:
            raise ValueError("--model official needs --weights DIR (the published Frieren files)")
        check_weights_dir(args.weights, SIZES[args.official_sizes])  # every bad file listed, now
        return lambda: build_official_engine(args.weights, options, sizes=args.official_sizes)
    folder = small_model_folder(args.model, args.weights)
    resolve_weights(folder, GenerationOptions())  # fail now, with the reason, not at the first connection
    return lambda: build_engine(folder, options)


def small_model_folder(model: str | None, weights: Path | None) -> Path | None:
    """The small model's folder: --weights, else --model DIR (the older spelling), else None (shipped)."""
    if model in (None, "small"):
        return weights
    if weights is not None:
        raise ValueError(f"--model {model} is a folder; give the weights folder once (--model small --weights DIR)")
    return Path(model)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve live video-to-audio over WebRTC: a browser page, POST /offer, WHIP ingest, WHEP playback",
        description="Serve the live engine. Open http://HOST:PORT/ for the page (camera, screen or a world clip "
        "in, generated audio out); OBS and other WHIP clients publish to /whip (Bearer --token), players pull "
        "the audio from /whep/SESSION. Binds 127.0.0.1 unless --host says otherwise.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--max-sessions", type=int, default=4, help="publishing sessions at once (503 beyond)")
    p.add_argument("--token", default=None,
                   help="token required by /offer, /whip, /whep and /ws (Authorization: Bearer TOKEN; "
                   "the page: open it as /?token=TOKEN)")
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="browser origin allowed besides this server's own page, e.g. https://app.example "
                   "(repeatable; '*' allows any)")
    p.add_argument("--handshake-timeout", type=float, default=10.0, metavar="S",
                   help="close a connection whose ICE/DTLS handshake has not completed after S seconds")
    p.add_argument("--idle-timeout", type=float, default=30.0, metavar="S",
                   help="close a publishing session that has sent no video for S seconds")
    p.add_argument("--ice-server", action="append", default=[], metavar="URL",
                   help="STUN/TURN server URL (repeatable; none by default)")
    add_engine_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.max_sessions < 1:
        raise ValueError("--max-sessions must be >= 1")
    if args.handshake_timeout <= 0 or args.idle_timeout <= 0:
        raise ValueError("--handshake-timeout and --idle-timeout must be > 0 seconds")
    from frieren_rt.streaming.server import ServerConfig, serve  # noqa: PLC0415

    factory = engine_factory(args)
    config = ServerConfig(host=args.host, port=args.port, max_sessions=args.max_sessions, token=args.token,
                          ice_servers=tuple(args.ice_server), allowed_origins=tuple(args.allow_origin),
                          handshake_timeout_s=args.handshake_timeout, idle_timeout_s=args.idle_timeout)
    serve(config, engine=factory)
    return 0
