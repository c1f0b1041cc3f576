"""The errors a user can cause or fix (bad input, missing models, bad config, missing devices). The CLI prints
them as one line and exits with EXIT_USER; anything else is a bug."""
from __future__ import annotations

from app.config import ConfigError
from engines.aec_webrtc import EchoCancellerUnavailable
from engines.audio_io import AudioFormatError
from engines.catalog import UnknownModel
from engines.llm_remote import RemoteLlmError
from engines.store import ModelError

EXIT_USER = 2


class InputError(ValueError):
    """An input file (WAV, script) cannot be used."""


# Everything the CLI reports as one clear line.
UserError = (ConfigError, ModelError, InputError, AudioFormatError, EchoCancellerUnavailable, UnknownModel,
             FileNotFoundError, RemoteLlmError)
