"""Chat prompt rendering for the llama.cpp engine, split at the end of the last user message.

`ChatTemplate.split(messages)` returns (head, tail): `head` is the prompt up to and including the last user
message's text, `tail` closes that message and opens the assistant's reply ("<|im_end|>\\n<|im_start|>assistant\\n"
for ChatML). The first token of `tail` is the end-of-message token whose probability after `head` is the text
end-of-utterance score. Two formats: the built-in "chatml" (no default system prompt) and "jinja" (the GGUF's
own `tokenizer.chat_template`, rendered with a sentinel in place of the last user text)."""
from __future__ import annotations

from collections.abc import Sequence

from engines.protocols import Message

_SENTINEL = "\x00CADENCE-USER-TEXT\x00"
FORMATS = ("chatml", "jinja")


class ChatTemplate:
    def __init__(self, fmt: str = "chatml", jinja_source: str = "", bos_token: str = "", eos_token: str = "",
                 enable_thinking: bool = False):
        if fmt not in FORMATS:
            raise ValueError(f"unknown chat format {fmt!r}; expected one of {FORMATS}")
        if fmt == "jinja" and not jinja_source:
            raise ValueError("chat format 'jinja' needs the model's tokenizer.chat_template")
        self.format = fmt
        self.enable_thinking = enable_thinking
        self._template = None
        self._globals = {"bos_token": bos_token, "eos_token": eos_token}
        if fmt == "jinja":
            from jinja2.sandbox import ImmutableSandboxedEnvironment

            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
            env.globals["raise_exception"] = _raise
            env.globals["strftime_now"] = _strftime_now
            self._template = env.from_string(jinja_source)

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], fmt: str | None, bos_token: str = "",
                      eos_token: str = "") -> ChatTemplate:
        """`fmt` None picks "jinja" when the GGUF carries a chat template (and jinja2 is importable), else ChatML."""
        source = metadata.get("tokenizer.chat_template", "")
        if fmt is None:
            fmt = "jinja" if source and _jinja_available() else "chatml"
        return cls(fmt, source, bos_token, eos_token)

    def render(self, messages: Sequence[Message]) -> str:
        """The whole prompt, ending with the assistant's generation header."""
        head, tail = self.split(messages)
        return head + tail

    def split(self, messages: Sequence[Message]) -> tuple[str, str]:
        if not messages or messages[-1].role != "user":
            raise ValueError("the last message must be the user's")
        if self.format == "chatml":
            head = "".join(f"<|im_start|>{m.role}\n{m.content}<|im_end|>\n" for m in messages[:-1])
            return head + f"<|im_start|>user\n{messages[-1].content}", "<|im_end|>\n<|im_start|>assistant\n"
        dicts = [{"role": m.role, "content": m.content} for m in messages[:-1]]
        dicts.append({"role": "user", "content": _SENTINEL})
        text = self._template.render(messages=dicts, add_generation_prompt=True,  # type: ignore[union-attr]
                                     enable_thinking=self.enable_thinking, **self._globals)
        if text.count(_SENTINEL) != 1:
            raise ValueError("the model's chat template does not render the user's text verbatim")
        head, tail = text.split(_SENTINEL)
        if not self.enable_thinking and tail.endswith("<think>\n"):
            tail += "</think>"  # reasoning models (Nemotron 3): an empty thought means "answer directly"
        return head + messages[-1].content, tail


def _jinja_available() -> bool:
    try:
        import jinja2  # noqa: F401
    except ImportError:
        return False
    return True


def _raise(message: str) -> None:
    raise ValueError(f"chat template: {message}")


def _strftime_now(fmt: str) -> str:
    import datetime

    return datetime.datetime.now().strftime(fmt)
