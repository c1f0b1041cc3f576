"""The names the session, the metrics, the reports and the window share, in one place.

`Stage`: what a span records (work units on the lanes, and the spans the session adds for speech, playback and
barge-ins). `Label`: which step of a stage a unit is. `Latency`: the per-turn figures computed from the spans. They
are `StrEnum`s: the scheduler, which knows nothing about speech, sees plain strings, and JSON writes them as such.
A rename here renames everywhere, so no figure can go blank because two files spelled a stage differently."""
from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    VAD = "vad"
    TURN = "turn"
    ASR = "asr"
    LLM = "llm"
    TTS = "tts"
    USER_SPEECH = "user_speech"  # the session's span: the user's speech (mic lane)
    PLAYBACK = "playback"  # the session's span: the agent's audio (speaker lane)
    BARGE_IN = "barge_in"  # the session's span: speech onset -> agent silent
    SPECULATION = "speculation"  # the session's span: a reply prepared during a pause (meta used=True/False)
    REPLY = "reply"  # a failure of the reply stream as a whole (EngineFailed.stage)
    SESSION = "session"  # a failure inside the session thread (EngineFailed.stage)


class Label(StrEnum):
    ASR_START = "asr-start"
    ASR_FEED = "asr"
    ASR_PAUSE = "asr-pause"  # decode what there is at the onset of a pause
    ASR_FINISH = "asr-finish"  # the final transcript
    WARM_UP = "warm-up"  # the system prompt into the LLM's cache, at start
    WARM_CACHE = "warm-cache"  # while the user speaks: the prompt up to their words so far
    PREFILL = "prefill"  # the speculative reply's prompt, and the text end-of-utterance score
    LLM_CHUNK_PREFIX = "llm#"  # the reply's own chunks: llm#0, llm#1, ... (the interleaved stream names them)


class Latency(StrEnum):
    ASR = "asr"
    TURN = "turn"
    LLM_FIRST_TOKEN = "llm_first_token"
    TTS_FIRST_AUDIO = "tts_first_audio"
    V2V = "v2v"


MIC_LANE = "mic"  # the session's own lanes for the spans it adds, beside the scheduler's "cpu" and "device"
SPEAKER_LANE = "speaker"
SPECULATION_LANE = "speculation"  # one span per speculation: from its start to its use or discard
