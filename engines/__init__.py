"""Cadence's engines: one model behind one small protocol each (engines/protocols.py).

Engine libraries log what they are given (Piper the text of each sentence, kokoro-onnx its phonemes) at DEBUG: their
loggers stop at WARNING, so Cadence's logs carry timings and events, never the words of a conversation, whatever
level the root logger is at."""
import logging

QUIET_LOGGERS = ("piper", "kokoro_onnx", "kokoro", "misaki", "phonemizer", "faster_whisper", "llama-cpp-python",
                 "nemo_logger")
for _name in QUIET_LOGGERS:
    logging.getLogger(_name).setLevel(logging.WARNING)
# espeak's phonemizer warns "words count mismatch" whenever a sentence has punctuation it reads as a pause: noise on
# every spoken question, nothing a user can act on
logging.getLogger("phonemizer").setLevel(logging.ERROR)
