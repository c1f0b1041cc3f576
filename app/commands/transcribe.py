"""`cadence transcribe FILE.wav [--engine ID]`: print the transcript of a WAV file (any rate, depth or channel
count) with one of the catalog's speech recognizers (default: config `models.asr`, or the user's `.nemo` file
in `models.asr_path`)."""
from __future__ import annotations

import argparse
import sys

import numpy as np

from app.errors import InputError
from engines.protocols import SAMPLE_RATE, Recognizer

CHUNK = SAMPLE_RATE // 2  # audio handed to a streaming engine per accept() (0.5 s)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("transcribe", help="print the transcript of a WAV file")
    p.add_argument("file", metavar="FILE.wav", help="the recording (WAV, any sample rate, mono or stereo)")
    p.add_argument("--engine", metavar="ID", help="catalog id of the recognizer (default: config models.asr)")
    p.set_defaults(func=cmd_transcribe)


def recognizer_for(asr_id: str | None, threads: int = 2, asr_path: str = "") -> Recognizer:
    """The recognizer `asr_id` (None: the NeMo engine on `asr_path`); InputError for an id that is not a
    recognizer, ModelError when its model is missing or unusable."""
    from engines.catalog import get

    if asr_id is None and asr_path:
        from engines.asr_nemo import NemoStreamingRecognizer

        return NemoStreamingRecognizer.from_user_file(asr_path)
    asr_id = asr_id or "whisper-tiny.en"
    try:
        entry = get(asr_id)
    except KeyError as exc:
        raise InputError(exc.args[0]) from None
    if entry.kind != "asr":
        raise InputError(f"{asr_id!r} is not a speech recognizer (it is a {entry.kind} model)")
    try:
        if entry.engine == "whisper":
            from engines.asr_whisper import WhisperRecognizer

            return WhisperRecognizer.from_catalog(asr_id, threads=threads)
        if entry.engine == "moonshine":
            from engines.asr_moonshine import MoonshineRecognizer

            return MoonshineRecognizer.from_catalog(asr_id, threads=threads)
        if entry.engine == "nemo":
            from engines.asr_nemo import NemoStreamingRecognizer

            return NemoStreamingRecognizer.from_catalog(asr_id)
    except ImportError as exc:  # an optional engine's package is not installed
        raise InputError(f"{asr_id}: {exc}") from None
    raise InputError(f"{asr_id}: no engine for {entry.engine!r}")


def transcribe(recognizer: Recognizer, audio: np.ndarray) -> str:
    """The whole clip through the recognizer: its offline path when it has one, else streamed in chunks."""
    offline = getattr(recognizer, "transcribe", None)
    if callable(offline):
        return offline(audio)
    recognizer.start()
    wants_step = getattr(recognizer, "wants_step", None)
    for i in range(0, len(audio), CHUNK):
        recognizer.accept(audio[i:i + CHUNK])
        while wants_step is not None and wants_step():
            recognizer.step()
    return recognizer.finish()


def cmd_transcribe(args) -> int:
    from app.cli import load_config
    from engines.audio_io import read_audio

    config = load_config(args)
    audio = read_audio(args.file)  # bad input fails before a model is loaded
    asr_id = args.engine or (None if config.models.asr_path else config.models.asr)
    recognizer = recognizer_for(asr_id, threads=config.scheduler.device_threads, asr_path=config.models.asr_path)
    text = transcribe(recognizer, audio)
    if not text:
        print(f"{args.file}: no speech recognised", file=sys.stderr)
    print(text)
    return 0
