"""`cadence transcribe FILE.wav [--engine ID]`: print the transcript of a recording (WAV of any rate, depth or
channel count, or FLAC, Ogg, MP3; any length up to 3 hours, transcribed whole) with one of the catalog's speech
recognizers (default: config `models.asr`, or the user's `.nemo` file in `models.asr_path`). No speech: an empty
transcript, said once on stderr, exit code 0; a file that is not usable audio: one line, exit code 2."""
from __future__ import annotations

import argparse
import sys

import numpy as np

from engines.protocols import SAMPLE_RATE, OfflineRecognizer, Recognizer, SteppedRecognizer

CHUNK = SAMPLE_RATE // 2  # audio handed to a streaming engine per accept() (0.5 s)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("transcribe", help="print the transcript of a WAV file")
    p.add_argument("file", metavar="FILE.wav",
                   help="the recording (WAV, FLAC, Ogg or MP3; any sample rate, mono or stereo)")
    p.add_argument("--engine", metavar="ID", help="catalog id of the recognizer (default: config models.asr)")
    p.set_defaults(func=cmd_transcribe)


def transcribe(recognizer: Recognizer, audio: np.ndarray) -> str:
    """The whole clip through the recognizer: its offline path when it has one, else streamed in chunks."""
    if isinstance(recognizer, OfflineRecognizer):
        return recognizer.transcribe(audio)
    recognizer.start()
    for i in range(0, len(audio), CHUNK):
        recognizer.accept(audio[i:i + CHUNK])
        while isinstance(recognizer, SteppedRecognizer) and recognizer.wants_step():
            recognizer.step()
    return recognizer.finish()


def cmd_transcribe(args) -> int:
    from app.config import load_config
    from engines.audio_io import read_audio

    config = load_config(args)
    audio = read_audio(args.file)  # bad input fails before a model is loaded
    from app.engine_factory import build_asr

    recognizer = build_asr(config, args.engine)
    text = transcribe(recognizer, audio)
    if not text:
        print(f"{args.file}: no speech recognised", file=sys.stderr)
    print(text)
    return 0
