"""`cadence say "TEXT" --out FILE.wav [--engine ID] [--voice ID]`: speak text into a WAV file with one of the
catalog's voice engines (default: config `models.tts`; Kokoro voice: `--voice`, else config `models.voice`)."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from app.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("say", help="speak text into a WAV file")
    p.add_argument("text", help="what to say")
    p.add_argument("--out", required=True, metavar="FILE.wav", help="the WAV file to write")
    p.add_argument("--engine", metavar="ID", help="catalog id of the voice engine (default: config models.tts)")
    p.add_argument("--voice", metavar="ID", help="Kokoro voice, e.g. af_heart (default: config models.voice)")
    p.set_defaults(func=cmd_say)


def _check_out(path: Path) -> None:
    """Fail before synthesizing if the WAV cannot be written there."""
    if path.suffix.lower() != ".wav":
        raise InputError(f"{path}: the output must be a .wav file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK) or (
            path.exists() and not os.access(path, os.W_OK)):
        raise InputError(f"{path}: cannot write there (permission denied or not a folder)")


def cmd_say(args) -> int:
    from app.config import load_config
    from engines.audio_io import write_audio

    config = load_config(args)
    out = Path(args.out)
    if not args.text.strip():
        raise InputError("nothing to say: the text is empty")
    _check_out(out)
    from app.engine_factory import build_tts

    tts = build_tts(config, args.engine, args.voice, explicit_voice=bool(args.voice))
    chunks = [c.samples for c in tts.synthesize(args.text)]
    if not chunks:
        raise InputError(f"nothing to say: {args.text!r} has no words to pronounce")
    audio = np.concatenate(chunks)
    try:
        write_audio(out, audio, tts.sample_rate)
    except (OSError, RuntimeError) as exc:  # soundfile's LibsndfileError is a RuntimeError
        raise InputError(f"{out}: cannot write the WAV file ({exc})") from None
    print(f"{out}: {len(audio) / tts.sample_rate:.2f} s at {tts.sample_rate} Hz ({tts.name})")
    return 0
