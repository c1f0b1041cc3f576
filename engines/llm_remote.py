"""A language model behind an OpenAI-compatible server: llama.cpp's server, llama-cpp-python's, vLLM, Ollama, LM Studio.

`RemoteGenerator.start()` returns a generation whose `prefill()` sends the streaming chat request (the server
evaluates the prompt while the caller goes on) and whose `step(n)` reads up to n streamed pieces (about one token
each). `cancel()` closes the stream, from any thread: the server sees the connection end and stops generating.
With a known chat template (`chat_template="chatml"`), `RemoteScoringGenerator` also reads the text
end-of-utterance score, from the completions endpoint's top log-probabilities of the token after the user's last
word (llama.cpp's and llama-cpp-python's servers and vLLM give them); without one the audio decides the end of the
turn. Every failure is a `RemoteLlmError` whose message is one line naming the URL; the API key is never in it."""
from __future__ import annotations

import ipaddress
import logging
import math
import threading
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit

from engines.chat_template import ChatTemplate
from engines.protocols import EngineUnavailable, GenerationStep, Message

if TYPE_CHECKING:  # the client library loads with the first remote engine, not with `cadence --help`
    import openai

log = logging.getLogger("cadence.engines")
TOP_LOGPROBS = 10  # candidates the text score reads (the end of the message is among them when it is likely)
_SENTENCE_ENDS = (".", "?", "!")
_END_OF_MESSAGE = {"chatml": "<|im_end|>"}


class RemoteLlmError(EngineUnavailable):
    """The server cannot be used (unreachable, refused, wrong model, too slow, broken stream): one line."""


def is_loopback(url: str) -> bool:
    return is_loopback_host(urlsplit(url).hostname or "")


def is_loopback_host(host: str) -> bool:
    """Whether `host` (a name or an address) is this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def plain_http_warning(url: str) -> str | None:
    """A warning when the conversation would cross a network in clear text."""
    if urlsplit(url).scheme == "http" and not is_loopback(url):
        return (f"warning: {url} is plain http to another machine: the conversation and the API key cross the "
                "network unencrypted (use https, or a tunnel)")
    return None


def _describe(exc: BaseException, url: str, model: str, key_env: str, timeout_s: float) -> str:
    """One line for a failed request; never the key. Errors of the SDK's HTTP layer (a stream read) are told apart
    by their names, so the name of that library (httpx, httpx2) does not matter."""
    import openai

    kind = type(exc).__name__
    transport = type(exc).__module__.split(".")[0].startswith(("httpx", "httpcore"))
    if isinstance(exc, openai.APITimeoutError) or (transport and "Timeout" in kind):
        return f"the LLM server at {url} sent nothing for {timeout_s:g} s (llm.first_token_timeout_s)"
    match exc:
        case openai.APIConnectionError() | ConnectionError():
            return f"cannot reach the LLM server at {url} (is it running? llm.base_url)"
        case openai.AuthenticationError() | openai.PermissionDeniedError():
            return (f"the LLM server at {url} refused the request ({exc.status_code}): set the API key in the "
                    f"environment variable {key_env}")
        case openai.NotFoundError():
            return (f"the LLM server at {url} answered 404: it has no model {model!r} (llm.remote_model), or the "
                    "URL lacks its API path (often /v1)")
        case openai.APIStatusError():
            return f"the LLM server at {url} answered {exc.status_code}: {_short(exc.message)}"
        case _ if transport:
            return f"the stream from the LLM server at {url} broke off ({type(exc).__name__})"
        case _:
            return f"the LLM server at {url} sent data Cadence cannot read ({type(exc).__name__}: {_short(str(exc))})"


def _short(text: str, limit: int = 160) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[:limit - 1] + "…"


class RemoteGeneration:
    """One streamed reply. Stages: not sent → sent (`prefill`) → read in steps → finished."""

    def __init__(self, gen: RemoteGenerator, messages: Sequence[Message], max_tokens: int):
        self._gen, self._messages, self.max_tokens = gen, list(messages), max_tokens
        self.prompt_tokens = 0  # the server does not say before the reply ends
        self.reused_tokens = 0
        self.generated = 0
        self.finished = False
        self.finish_reason = ""  # "eog" | "length" | "cancelled"
        self.first_token_s: float | None = None  # from the request to the first piece of text
        self._lock = threading.Lock()
        self._response: openai.Stream | None = None
        self._chunks: Iterator | None = None
        self._sent_at = 0.0

    def prefill(self) -> None:
        """Send the request; the server evaluates the prompt and starts streaming."""
        with self._lock:
            if self._response is not None or self.finished:
                return
        g = self._gen
        self._sent_at = time.perf_counter()
        try:
            messages: Any = [{"role": m.role, "content": m.content} for m in self._messages]
            response = g.client.chat.completions.create(
                model=g.model, messages=messages,
                max_tokens=max(1, self.max_tokens), temperature=g.temperature, stream=True)
        except Exception as exc:
            raise RemoteLlmError(g.describe(exc)) from None
        with self._lock:
            if self.finished:  # cancelled while the request was on its way
                response.close()
                return
            self._response, self._chunks = response, iter(response)

    def step(self, max_tokens: int) -> GenerationStep:
        """Up to `max_tokens` more streamed pieces (blocks until they arrive or the stream ends)."""
        self.prefill()
        parts: list[str] = []
        n = 0
        while n < max_tokens and not self.finished:
            chunks = self._chunks
            if chunks is None:
                break
            try:
                chunk = next(chunks)
            except StopIteration:
                if self.finished:
                    break
                self._close()
                raise RemoteLlmError(f"the stream from the LLM server at {self._gen.base_url} ended before the "
                                     "reply did") from None
            except Exception as exc:
                if self.finished:  # cancel() closed the stream under the read
                    break
                self._close()
                raise RemoteLlmError(self._gen.describe(exc)) from None
            if not chunk.choices:
                continue
            choice = chunk.choices[0]
            text = choice.delta.content if choice.delta is not None else None
            if text:
                if self.first_token_s is None:
                    self.first_token_s = time.perf_counter() - self._sent_at
                parts.append(text)
                n += 1
                self.generated += 1
            if choice.finish_reason:
                self.finish_reason = "length" if choice.finish_reason == "length" else "eog"
                self.finished = True
                self._close()
        return GenerationStep("".join(parts), n, self.finished, cut=self.finish_reason == "length")

    def cancel(self) -> None:
        """Stop the reply: the connection closes, so the server stops generating (safe from any thread)."""
        with self._lock:
            if not self.finished:
                self.finished, self.finish_reason = True, "cancelled"
        self._close()

    def _close(self) -> None:
        with self._lock:
            response, self._response, self._chunks = self._response, None, None
        if response is not None:
            try:
                response.close()
            except Exception:  # closing a broken connection may fail; it is closed either way
                pass


class ScoredRemoteGeneration(RemoteGeneration):
    """A streamed reply that also knows the text end-of-utterance score (one completions request, 1 token). The
    score is asked first: a server with one slot would answer it only after the whole reply otherwise."""

    _eou: float | None = None
    _scored = False

    def prefill(self) -> None:
        if self._response is None and not self.finished:
            self.eou_score()
        super().prefill()

    def eou_score(self) -> float | None:
        if not self._scored:
            gen = self._gen
            assert isinstance(gen, RemoteScoringGenerator)
            self._eou, self._scored = gen.end_of_utterance_score(self._messages), True
        return self._eou


class RemoteGenerator:
    """A chat model on an OpenAI-compatible server. `check()` says at once whether it can be used."""

    def __init__(self, base_url: str, model: str, *, api_key: str = "", api_key_env: str = "CADENCE_LLM_API_KEY",
                 first_token_timeout_s: float = 10.0, connect_timeout_s: float = 3.0, temperature: float = 0.0):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = f"{model} at {self.base_url}"
        self.temperature = temperature
        self.api_key_env = api_key_env
        self.first_token_timeout_s = first_token_timeout_s
        import openai

        timeout = openai.Timeout(first_token_timeout_s, connect=connect_timeout_s)
        # A local server takes no key; the SDK wants one, and a placeholder says nothing about the user's.
        self.client = openai.OpenAI(base_url=self.base_url, api_key=api_key or "no-key", timeout=timeout,
                                    max_retries=0)

    def describe(self, exc: BaseException) -> str:
        return _describe(exc, self.base_url, self.model, self.api_key_env, self.first_token_timeout_s)

    def models(self) -> list[str]:
        """The server's model names (GET /models)."""
        try:
            return sorted(m.id for m in self.client.models.list())
        except Exception as exc:
            raise RemoteLlmError(self.describe(exc)) from None

    def check(self) -> list[str]:
        """The server's models, after making sure it answers and has ours: else one clear line."""
        names = self.models()
        if names and self.model not in names:
            raise RemoteLlmError(f"the LLM server at {self.base_url} has no model {self.model!r} "
                                 f"(llm.remote_model); it has: {', '.join(names[:8])}")
        return names

    def start(self, messages: Sequence[Message], max_tokens: int = 256) -> RemoteGeneration:
        return RemoteGeneration(self, messages, max_tokens)

    def fork(self) -> Self:
        """Another conversation on the same server: each generation is its own request, so the client is shared."""
        return self

    def close(self) -> None:
        self.client.close()


class RemoteScoringGenerator(RemoteGenerator):
    """A remote model whose chat template is known, so the text end-of-utterance score can be read from the
    completions endpoint: the prompt rendered up to the user's last word, one token, its top log-probabilities."""

    def __init__(self, base_url: str, model: str, *, chat_template: str = "chatml", **kw):
        super().__init__(base_url, model, **kw)
        self.template = ChatTemplate(chat_template)
        self._end = _END_OF_MESSAGE[chat_template]
        self.scoring = True  # False once the server showed it gives no log-probabilities: None from then on

    def start(self, messages: Sequence[Message], max_tokens: int = 256) -> ScoredRemoteGeneration:
        return ScoredRemoteGeneration(self, messages, max_tokens)

    def end_of_utterance_score(self, messages_until_user_text: Sequence[Message]) -> float | None:
        """log10 P(the next token ends the user's sentence): the end of the message, or . ? ! (read before a final
        one the recognizer added). A candidate outside the top ones counts at most as likely as the least of them.
        None, with one warning, for a server without log-probabilities or a completions endpoint: the audio
        decides the end of a turn there. A server that cannot be reached is an error (its reply would be too)."""
        if not self.scoring:
            return None
        *before, last = messages_until_user_text
        text = last.content.rstrip()
        while text and text[-1] in _SENTENCE_ENDS:
            text = text[:-1]
        head, _ = self.template.split([*before, Message(last.role, text)])
        import openai

        try:
            out = self.client.completions.create(model=self.model, prompt=head, max_tokens=1, temperature=0.0,
                                                 logprobs=TOP_LOGPROBS)
            top = (out.choices[0].logprobs.top_logprobs or [{}])[0] if out.choices[0].logprobs else {}
        except (openai.BadRequestError, openai.NotFoundError, openai.UnprocessableEntityError) as exc:
            return self._no_score(f"its completions endpoint refused the request ({exc.status_code})")
        except Exception as exc:
            raise RemoteLlmError(self.describe(exc)) from None
        if not top:
            return self._no_score("it gives no log-probabilities")
        ends = [lp for tok, lp in dict(top).items() if tok.strip() in (self._end, *_SENTENCE_ENDS)]
        p = sum(math.exp(lp) for lp in ends) if ends else math.exp(min(top.values()))
        return math.log10(max(p, 1e-12))

    def _no_score(self, why: str) -> None:
        self.scoring = False
        log.warning("the LLM server at %s gives no text end-of-turn score (%s): the audio decides when a turn "
                    "ends; set llm.remote_chat_template = \"\" to stop asking", self.base_url, why)
        return None
