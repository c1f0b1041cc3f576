"""The conversation runtime: microphone blocks in, spoken replies out.

One session thread owns the turn-taking state. Audio blocks (from the headless WAV device or the sound card) and
engine results arrive on its inbox; it runs the pure `step()` and turns the actions into scheduler work units (VAD
and Smart Turn on the CPU lane; ASR, LLM and TTS on the device lane) and playback commands. Spans for what is not a
unit (the user's speech, the agent's playback, barge-ins) are added to the same span log, so metrics, reports and
the UI timeline are built from spans alone. Observers (UI, headless report) get every event and action."""
from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from app.audio.duplex import Block, DuplexDevice
from app.audio.mic_ring import MicRing
from app.audio.playback import PlaybackBuffer
from app.conversation import actions as a
from app.conversation import events as e
from app.conversation.history import History
from app.conversation.reply import Reply
from app.conversation.state import ConversationState, Phase, TurnSettings, step
from app.conversation.vad_segmenter import VadSettings, VadState, vad_step
from app.metrics.marks import record_span
from app.metrics.waveform import speech_end_s
from engines.protocols import Generator, Message, Recognizer, Synthesizer, TurnDetector, Vad
from scheduler import CPU_LANE, CancelToken, Priority, Scheduler, UnitResult, WorkUnit

log = logging.getLogger("cadence.session")
PREROLL_S = 0.3  # audio before the VAD's speech start handed to ASR and Smart Turn
TURN_WINDOW_S = 8.0  # Smart Turn looks at the last 8 s of the turn
ASR_FEED_BLOCKS = 8  # hand buffered speech to the recognizer every 8 blocks (256 ms) while the user speaks


@dataclass
class Engines:
    vad: Vad
    turn: TurnDetector
    asr: Recognizer
    llm: Generator
    tts: Synthesizer
    names: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SessionSettings:
    turn: TurnSettings = TurnSettings()
    vad: VadSettings = VadSettings()
    max_reply_tokens: int = 160
    history_chars: int = 9000  # the history kept in the prompt (oldest turns dropped first; system prompt kept)


Observer = Callable[[Any], None]  # receives every event, action and Block-free notification


class Session:
    def __init__(self, engines: Engines, device: DuplexDevice, scheduler: Scheduler, system_prompt: str,
                 settings: SessionSettings = SessionSettings(), playback: PlaybackBuffer | None = None):
        self.engines, self.device, self.scheduler, self.settings = engines, device, scheduler, settings
        self.playback = playback or PlaybackBuffer(device.rate)
        self.mic = MicRing(device.rate)
        self.state = ConversationState(settings=settings.turn)
        self.vad_state = VadState(settings.vad)
        self.history = History(system_prompt)
        self._inbox: queue.Queue = queue.Queue()
        self._observers: list[Observer] = []
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._asr_turn: int | None = None  # turn whose speech is being fed to the recognizer
        self._asr_pending: list = []
        self._blocks_since_feed = 0
        self._speculation: dict[int, Any] = {}  # turn -> Generation prefilled before the verdict
        self._replies: dict[int, Reply] = {}
        self._playing: dict[int, float] = {}  # turn -> time its first audio played
        self._reply_done: set[int] = set()
        self._barge_onset: float | None = None
        self._blocks_in = -1  # index of the last block received
        self._blocks_judged = -1  # index of the last block the VAD has judged
        self.idle = threading.Event()
        self.idle.set()

    # ---- wiring ------------------------------------------------------------------------------------------
    def subscribe(self, observer: Observer) -> None:
        self._observers.append(observer)

    def reply_playing_s(self) -> float | None:
        """Seconds of the current reply played so far, or None when the agent is not speaking."""
        state = self.state
        return self.playback.played_s(state.turn_id) if state.phase is Phase.SPEAKING else None

    def start(self) -> None:
        self._warm_up()
        self._thread = threading.Thread(target=self._run, name="session", daemon=True)
        self._thread.start()
        self.device.start(self._inbox.put)

    def _warm_up(self) -> None:
        """Evaluate the system prompt once, so the first turn's prompt finds it in the LLM's cache."""
        llm, messages = self.engines.llm, self._messages("Hello")

        def run(tok: CancelToken) -> None:
            generation = llm.start(messages, 1)
            if hasattr(generation, "eou_score"):
                generation.eou_score()  # evaluates everything up to the (empty) user text
            else:
                generation.prefill()

        self.scheduler.submit(WorkUnit(run, "llm", -1, Priority.BACKGROUND, label="warm-up"))

    def stop(self) -> None:
        self.device.stop()
        self._stopping.set()
        self._inbox.put(None)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def post(self, event: e.Event) -> None:
        """Thread-safe: engine results come back through here."""
        self._inbox.put(event)

    def _notify(self, item: Any) -> None:
        for observer in self._observers:
            try:
                observer(item)
            except Exception:  # an observer must never break the conversation
                log.exception("observer failed")

    def _run(self) -> None:
        while not self._stopping.is_set():
            item = self._inbox.get()
            if item is None:
                break
            try:
                if isinstance(item, Block):
                    self._on_block(item)
                elif isinstance(item, tuple) and item[0] == "vad":
                    self._on_vad(*item[1:])
                elif isinstance(item, tuple) and item[0] == "finished":
                    self._on_reply_finished(*item[1:])
                else:
                    self._apply(item)
            except Exception as exc:  # keep the session alive; drop the turn
                log.exception("session error")
                self._apply(e.EngineFailed(self.scheduler.clock(), self.state.turn_id, "session", type(exc).__name__))

    # ---- audio -------------------------------------------------------------------------------------------
    def _on_block(self, block: Block) -> None:
        self.mic.append(block.mic, block.t_end)
        t_start = block.t_end - len(block.mic) / self.device.rate
        frame, index = block.mic, block.index
        self._blocks_in = index
        self.scheduler.submit(WorkUnit(lambda tok: self.engines.vad.probability(frame), "vad", -1, Priority.URGENT,
                                       lane=CPU_LANE),
                              on_done=lambda h: self._inbox.put(("vad", h, t_start, block.t_end, index)))
        for note in block.notes:
            t = block.t_out + note.offset / self.device.rate
            if note.first and note.turn not in self._playing:
                self._playing[note.turn] = t
            self._apply(e.PlaybackProgress(t, note.turn, note.played_s))
            if note.drained and note.turn in self._reply_done:
                self._finish_playback(note.turn, block.t_out + len(block.mic) / self.device.rate)
        if self._barge_onset is not None:  # the first block written after the pause is silent
            record_span(self.scheduler, "speaker", "barge_in", self.state.turn_id, self._barge_onset, block.t_out)
            self._barge_onset = None
        if self._asr_turn is not None:
            self._asr_pending.append(block.mic)
            self._blocks_since_feed += 1
            if self._blocks_since_feed >= ASR_FEED_BLOCKS:
                self._feed_asr(finish=False)
        self._apply(e.Tick(block.t_end))
        self._update_idle()

    def _on_vad(self, handle, t_start: float, t_end: float, index: int) -> None:
        self._blocks_judged = max(self._blocks_judged, index)
        if handle.exception() is not None:
            return
        probability = float(handle.result())
        pause_onset = (self.vad_state.speaking and probability < self.vad_state.settings.off_threshold
                       and self.vad_state.last_speech_end >= t_start)
        self.vad_state, events = vad_step(self.vad_state, probability, t_start, t_end)
        if pause_onset and self._asr_turn is not None:
            self._feed_asr(finish=False, at_pause=True)
        for event in events:
            if isinstance(event, e.SpeechStopped):
                self._end_user_speech(event)
            self._apply(event)

    def _end_user_speech(self, event: e.SpeechStopped) -> None:
        onset = self.vad_state.started_at
        vad_end = onset + (event.speech_s or 0.0)
        # refine the VAD's 32 ms frame edge to 10 ms with the rule the waveform measure uses (within 0.3 s)
        audio = self.mic.since(self.mic.t_end - 30.0)
        audio_start = self.mic.t_end - len(audio) / self.device.rate
        refined = speech_end_s(audio, self.device.rate, before_s=len(audio) / self.device.rate)
        end = vad_end
        if refined is not None and -0.3 <= audio_start + refined - vad_end <= 0.2:
            end = audio_start + refined
        record_span(self.scheduler, "mic", "user_speech", self.state.turn_id, onset, end,
                    vad_end=vad_end, stop_at=event.t)

    def _finish_playback(self, turn: int, t: float) -> None:
        start = self._playing.pop(turn, None)
        self._reply_done.discard(turn)
        if start is not None:
            record_span(self.scheduler, "speaker", "playback", turn, start, t)
        self.playback.forget(turn)
        self._apply(e.PlaybackFinished(t, turn))

    def _update_idle(self) -> None:
        """Idle: listening, nothing left to play, and the VAD has judged all audio received (so a user who has
        just spoken is not taken for silence while their last blocks wait for the VAD)."""
        busy = (self.state.phase is not Phase.LISTENING or self.playback.lead_s() > 0 or self.vad_state.speaking
                or self._blocks_judged < self._blocks_in - 1)
        (self.idle.clear if busy else self.idle.set)()

    # ---- the pure core and its actions -------------------------------------------------------------------
    def _apply(self, event: e.Event) -> None:
        before = self.state.phase
        self.state, actions = step(self.state, event)
        if not isinstance(event, (e.Tick, e.PlaybackProgress)):
            self._notify(event)
        for action in actions:
            self._notify(action)
            getattr(self, "_do_" + type(action).__name__)(action)
        if self.state.phase is not before:
            self._notify(self.state.phase)

    def _do_StartTranscription(self, act: a.StartTranscription) -> None:
        self._begin_asr(act.turn_id, act.from_t)

    def _do_ContinueTranscription(self, act: a.ContinueTranscription) -> None:
        self.scheduler.cancel_turn(act.previous_turn_id, wait=False)  # its results would be stale: drop its work
        self._begin_asr(act.turn_id, act.from_t)  # decode the whole turn again, from its first word

    def _begin_asr(self, turn: int, from_t: float) -> None:
        self._asr_turn, self._blocks_since_feed = turn, 0
        self._asr_pending = [self.mic.since(from_t - PREROLL_S)]
        asr = self.engines.asr

        def start(tok: CancelToken) -> None:
            asr.start()

        self._submit(turn, "asr", Priority.ASR, start, label="asr-start")
        self._feed_asr(finish=False)

    def _feed_asr(self, finish: bool, at_pause: bool = False) -> None:
        """Hand the buffered speech to the recognizer in one device-lane unit. At the onset of a pause it also
        decodes what it has (so `finish()` has little left) and warms the LLM's cache with that text (so the
        speculative prefill after the pause evaluates only a few tokens)."""
        chunks, self._asr_pending, self._blocks_since_feed = self._asr_pending, [], 0
        asr, turn = self.engines.asr, self._asr_turn

        def feed(tok: CancelToken) -> UnitResult | None:
            for chunk in chunks:
                asr.accept(chunk)
            if finish:
                return UnitResult(asr.finish(), {"final": True})
            if at_pause or getattr(asr, "wants_step", lambda: False)():
                if hasattr(asr, "step"):
                    asr.step()
                return UnitResult(asr.partial() if at_pause else None, {"at_pause": at_pause})
            return None

        def done(handle) -> None:
            if handle.state.name != "DONE":
                return
            if finish:
                self.post(e.TranscriptFinal(self.scheduler.clock(), turn, handle.result()))
            elif at_pause and handle.result():
                self._warm_cache(turn, handle.result())

        label = "asr-finish" if finish else "asr-pause" if at_pause else "asr"
        self._submit(turn, "asr", Priority.ASR, feed, on_done=done, label=label)

    def _warm_cache(self, turn: int, text: str) -> None:
        """Evaluate the prompt up to the user's words so far (thread-safe: only submits a unit)."""
        llm, messages = self.engines.llm, self._messages(text)

        def run(tok: CancelToken) -> None:
            generation = llm.start(messages, 1)
            if hasattr(generation, "eou_score"):
                generation.eou_score()

        self._submit(turn, "llm", Priority.LLM, run, label="warm-cache")

    def _do_FinishTranscription(self, act: a.FinishTranscription) -> None:
        self._feed_asr(finish=True)
        self._asr_turn = None

    def _do_StartTurnDetection(self, act: a.StartTurnDetection) -> None:
        audio = self.mic.since(max(act.from_t - PREROLL_S, self.mic.t_end - TURN_WINDOW_S))
        detector, threshold = self.engines.turn, self.settings.turn.turn_threshold

        def run(tok: CancelToken) -> float:
            return detector.probability_complete(audio)

        def done(handle) -> None:
            if handle.state.name == "DONE":
                p = float(handle.result())
                self.post(e.TurnVerdict(self.scheduler.clock(), act.turn_id, p >= threshold, p))

        self._submit(act.turn_id, "turn", Priority.TURN, run, on_done=done, lane=CPU_LANE)

    def _messages(self, user_text: str) -> list[Message]:
        chat = self.history.append("user", user_text).trim(self.settings.history_chars, per_message=12).as_chat()
        return [Message(m["role"], m["content"]) for m in chat]

    def _do_StartSpeculativeReply(self, act: a.StartSpeculativeReply) -> None:
        # The generation is created on the device lane, like every other LLM call (the model is not thread-safe,
        # and a later start() supersedes an earlier one in queue order, not in the order threads call it).
        llm, messages, slot = self.engines.llm, self._messages(act.text), {}
        self._speculation[act.turn_id] = slot
        max_tokens = self.settings.max_reply_tokens

        def run(tok: CancelToken) -> UnitResult:
            generation = slot["generation"] = llm.start(messages, max_tokens)
            generation.prefill()
            score = generation.eou_score() if hasattr(generation, "eou_score") else None
            return UnitResult(score, {"prompt_tokens": generation.prompt_tokens,
                                      "reused_tokens": generation.reused_tokens})

        def done(handle) -> None:
            score = handle.result() if handle.state.name == "DONE" else None
            self.post(e.EndOfUtteranceScore(self.scheduler.clock(), act.turn_id, score))

        self._submit(act.turn_id, "llm", Priority.LLM, run, on_done=done, label="prefill")

    def _do_CommitReply(self, act: a.CommitReply) -> None:
        turn = act.turn_id
        slot = self._speculation.pop(turn)
        clock = self.scheduler.clock
        self._replies[turn] = Reply(
            self.scheduler, turn, lambda: slot["generation"], self.engines.tts, self.playback,
            on_segment=lambda i, text, dur: self.post(e.ReplyAudio(clock(), turn, i, text, dur)),
            on_finished=lambda summary: self._inbox.put(("finished", turn, summary)),
            on_error=lambda exc: self.post(e.EngineFailed(clock(), turn, "reply", type(exc).__name__)),
        ).start()

    def _do_CancelReply(self, act: a.CancelReply) -> None:
        self._speculation.pop(act.turn_id, None)
        reply = self._replies.pop(act.turn_id, None)
        if reply is not None:
            reply.cancel()
        self.scheduler.cancel_turn(act.turn_id, wait=False)

    def _do_FlushPlayback(self, act: a.FlushPlayback) -> None:
        self.playback.flush(act.turn_id)
        self._reply_done.discard(act.turn_id)
        start = self._playing.pop(act.turn_id, None)
        if start is not None:
            record_span(self.scheduler, "speaker", "playback", act.turn_id, start, self.scheduler.clock(),
                        interrupted=True)

    def _do_PausePlayback(self, act: a.PausePlayback) -> None:
        self.playback.pause()
        if act.turn_id in self._playing:
            self._barge_onset = self.state.barge_in_at

    def _do_ResumePlayback(self, act: a.ResumePlayback) -> None:
        self.playback.resume()

    def _do_AppendHistory(self, act: a.AppendHistory) -> None:
        history = self.history.append(act.role, act.text, act.interrupted)
        self.history = history.trim(self.settings.history_chars, per_message=12)  # a long session stays bounded

    def _do_LogEvent(self, act: a.LogEvent) -> None:
        log.info("%s %s", act.kind, act.detail)

    def _on_reply_finished(self, turn: int, summary) -> None:
        """The stream is done; playback finishes once the turn's last queued sample has played."""
        self._replies.pop(turn, None)
        self._apply(_finished_event(self.scheduler.clock(), turn, summary))
        if self.playback.queued_s(turn) > 0:
            self._reply_done.add(turn)
        elif self.state.turn_id == turn:
            self._finish_playback(turn, self.scheduler.clock())

    def _submit(self, turn: int, stage: str, priority: int, fn, on_done=None, lane: str = "device",
                label: str = "") -> None:
        def guarded(handle) -> None:
            if handle.state.name == "FAILED":
                self.post(e.EngineFailed(self.scheduler.clock(), turn, stage, type(handle.exception()).__name__))
            elif on_done is not None:
                on_done(handle)

        self.scheduler.submit(WorkUnit(fn, stage, turn, priority, lane=lane, label=label or stage), on_done=guarded)


def _finished_event(t: float, turn: int, summary) -> e.Event:
    if summary.status == "error":
        return e.EngineFailed(t, turn, "reply", type(summary.error).__name__)  # an error may quote the text
    return e.ReplyFinished(t, turn)
