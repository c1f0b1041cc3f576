"""The conversation runtime: microphone blocks in, spoken replies out.

One session thread owns the turn-taking state. Everything arrives on its inbox as one typed `SessionInput`
(app/conversation/inbox.py): audio blocks from the headless WAV device or the sound card, the VAD's verdict on each
block, the engines' results, the end of a reply stream. It dispatches them with `match`, runs the pure VAD step
and the pure turn-taking `step()`, and carries out the actions those return (`match` over the `Action` union):
engine work goes to the scheduler through `EngineWork` (app/conversation/engine_work.py), playback commands to the
`PlaybackBuffer`. Spans for what is not a unit (the user's speech, the agent's playback, barge-ins) go to the same
span log, so metrics, reports and the UI timeline are built from spans alone. Observers (UI, headless report) get
every event, action and phase change."""
from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import assert_never

import numpy as np

from app.audio.duplex import Block, DuplexDevice
from app.audio.mic_ring import MicRing
from app.audio.playback import PlaybackBuffer
from app.conversation import actions as a
from app.conversation import events as e
from app.conversation.engine_work import EngineWork, Feed, Speculation
from app.conversation.history import History
from app.conversation.inbox import (
    FromReply,
    PauseText,
    ReplyEnded,
    ReviseReply,
    Scored,
    SessionInput,
    Stop,
    SystemPrompt,
    VadJudged,
)
from app.conversation.reply import Reply
from app.conversation.settings import SessionSettings
from app.conversation.speculation import Speculations
from app.conversation.state import ConversationState, Phase, step
from app.conversation.turn_check import TurnCheck
from app.conversation.vad_segmenter import PauseOnset, VadState, vad_step
from app.metrics.marks import record_span
from app.metrics.waveform import speech_end_s
from app.stages import MIC_LANE, SPEAKER_LANE, Stage
from engines.engine_set import Engines
from engines.protocols import Message
from scheduler import Scheduler, StreamSummary

log = logging.getLogger("cadence.session")
PREROLL_S = 0.3  # audio before the VAD's speech start handed to ASR and Smart Turn
TURN_WINDOW_S = 8.0  # Smart Turn looks at the last 8 s of the turn
ASR_FEED_BLOCKS = 8  # hand buffered speech to the recognizer every 8 blocks (256 ms) while the user speaks
# LogEvents a user running with -v wants to see; the others are DEBUG
INFO_LOGS = frozenset({"turn_end", "barge_in", "engine_failed", "empty_transcript"})

Notification = e.Event | a.Action | Phase
Observer = Callable[[Notification], None]


class Session:
    def __init__(self, engines: Engines, device: DuplexDevice, scheduler: Scheduler, system_prompt: str,
                 settings: SessionSettings = SessionSettings(), playback: PlaybackBuffer | None = None,
                 first_turn: int = 0):
        """`first_turn`: turn ids start after it (conversations sharing one scheduler use disjoint ranges)."""
        self.engines, self.device, self.scheduler, self.settings = engines, device, scheduler, settings
        self.playback = playback or PlaybackBuffer(device.rate)
        self.mic = MicRing(device.rate)
        self.state = ConversationState(settings=settings.turn, turn_id=first_turn)
        self.vad_state = VadState(settings.vad)
        self.history = History(system_prompt)
        self.work = EngineWork(engines, scheduler, self.post, self._messages, settings.max_reply_tokens,
                               settings.turn.turn_threshold)
        self._inbox: queue.Queue[SessionInput] = queue.Queue()
        self._observers: list[Observer] = []
        self._thread: threading.Thread | None = None
        self._asr_turn: int | None = None  # turn whose speech is being fed to the recognizer
        self._asr_pending: list[np.ndarray] = []
        self._blocks_since_feed = 0
        self.speculations = Speculations(self.work, self._new_reply, self.playback, scheduler, self.post)
        self.turn_check = TurnCheck(self.work, settings.turn, defer=self.work.turn_beside_llm and not settings.naive
                                    and engines.scorer is not None)
        self._replies: dict[int, Reply] = {}
        self._playing: dict[int, float] = {}  # turn -> time its first audio played
        self._reply_done: set[int] = set()
        self._barge_onset: float | None = None
        self._blocks_in = -1  # index of the last block received
        self._blocks_judged = -1  # index of the last block the VAD has judged
        self._vad_failures = 0
        self.idle = threading.Event()
        self.idle.set()
        # set once the system prompt is in the LLM's cache (or warming it failed): from then on the first answer is
        # as quick as the later ones; the window says "ready" and a scripted user starts talking only then
        self.ready = threading.Event()

    # ---- wiring ------------------------------------------------------------------------------------------
    def subscribe(self, observer: Observer) -> None:
        self._observers.append(observer)

    def reply_playing_s(self) -> float | None:
        """Seconds of the current reply played so far, or None when the agent is not speaking."""
        state = self.state
        return self.playback.played_s(state.turn_id) if state.phase is Phase.SPEAKING else None

    def outstanding(self) -> dict[str, list[int]]:
        """Turns with a reply stream or a speculation still held (for tests and debugging)."""
        return {"replies": sorted(self._replies), "speculations": self.speculations.turns()}

    def start(self) -> None:
        self.work.warm_up(self.ready)
        self._thread = threading.Thread(target=self._run, name="session", daemon=True)
        self._thread.start()
        self.device.start(self._inbox.put)

    def stop(self) -> None:
        self.device.stop()
        self._inbox.put(Stop())
        if self._thread is not None:
            self._thread.join(timeout=5)

    def post(self, item: SessionInput) -> None:
        """Thread-safe: engine results come back through here."""
        self._inbox.put(item)

    def _notify(self, item: Notification) -> None:
        for observer in self._observers:
            try:
                observer(item)
            except Exception:  # an observer must never break the conversation
                log.exception("observer failed")

    def _run(self) -> None:
        while True:
            item = self._inbox.get()
            try:
                match item:
                    case Stop():
                        return
                    case Block():
                        self._on_block(item)
                    case VadJudged():
                        self._on_vad(item)
                    case PauseText(turn_id=turn, text=text, at_pause=at_pause):
                        state = self.state
                        if turn == state.turn_id and state.transcript is None and not self.settings.naive and \
                                state.phase in (Phase.USER_SPEAKING, Phase.USER_PAUSED):
                            (self.speculations.at_pause if at_pause else self.speculations.warm)(turn, text)
                    case Scored(speculation=speculation):
                        self.turn_check.scored(speculation.turn_id, speculation.score, self.scheduler.clock())
                        if (score := self.speculations.scored(speculation)) is not None:
                            self._apply(score)
                    case FromReply():
                        self._from_reply(item)
                    case ReviseReply(text=text):
                        self.history = self.history.revise_last_reply(text)
                    case SystemPrompt(text=text):
                        self.history = self.history.with_system(text)
                    case _:  # an engine result: one of the core's events
                        self._apply(item)
            except Exception as exc:  # keep the session alive; drop the turn
                log.exception("session error")
                self._apply(e.EngineFailed(self.scheduler.clock(), self.state.turn_id, Stage.SESSION,
                                           type(exc).__name__))

    # ---- audio -------------------------------------------------------------------------------------------
    def _on_block(self, block: Block) -> None:
        self.mic.append(block.mic, block.t_end)
        self._blocks_in = block.index
        self.work.judge(block.mic, block.index, block.t_end - len(block.mic) / self.device.rate, block.t_end)
        self.turn_check.poll(self.scheduler.clock())
        for note in block.notes:
            t = block.t_out + note.offset / self.device.rate
            if note.first and note.turn not in self._playing:
                self._playing[note.turn] = t
            self._apply(e.PlaybackProgress(t, note.turn, note.played_s))
            if note.drained and note.turn in self._reply_done:
                self._finish_playback(note.turn, block.t_out + len(block.mic) / self.device.rate)
        if self._barge_onset is not None:  # the first block written after the pause is silent
            record_span(self.scheduler, SPEAKER_LANE, Stage.BARGE_IN, self.state.turn_id, self._barge_onset,
                        block.t_out)
            self._barge_onset = None
        if self._asr_turn is not None:
            self._asr_pending.append(block.mic)
            self._blocks_since_feed += 1
            if self._blocks_since_feed >= ASR_FEED_BLOCKS:
                self._feed_asr(Feed.MORE)
        self._apply(e.Tick(block.t_end))
        self._update_idle()

    def _on_vad(self, judged: VadJudged) -> None:
        self._blocks_judged = max(self._blocks_judged, judged.index)
        if judged.probability is None:
            self._vad_failures += 1
            if self._vad_failures == 1 or self._vad_failures % 100 == 0:
                log.warning("the VAD failed on block %d (%s); %d block(s) unjudged so far", judged.index,
                            judged.error, self._vad_failures)
            return
        self.vad_state, outputs = vad_step(self.vad_state, judged.probability, judged.t_start, judged.t_end,
                                           judged.level_db)
        for output in outputs:
            match output:
                case PauseOnset():
                    if self._asr_turn is not None and not self.settings.naive:
                        self._feed_asr(Feed.PAUSE)
                case e.SpeechStopped():
                    self._end_user_speech(output)
                    self._apply(output)
                case e.SpeechStarted():
                    self._apply(output)
                case _:
                    assert_never(output)

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
        record_span(self.scheduler, MIC_LANE, Stage.USER_SPEECH, self.state.turn_id, onset, end,
                    vad_end=vad_end, stop_at=event.t)

    def _feed_asr(self, feed: Feed) -> None:
        assert self._asr_turn is not None
        chunks, self._asr_pending, self._blocks_since_feed = self._asr_pending, [], 0
        self.work.feed_asr(self._asr_turn, chunks, feed)

    def _finish_playback(self, turn: int, t: float) -> None:
        start = self._playing.pop(turn, None)
        self._reply_done.discard(turn)
        if start is not None:
            record_span(self.scheduler, SPEAKER_LANE, Stage.PLAYBACK, turn, start, t)
        self.playback.forget(turn)
        self._apply(e.PlaybackFinished(t, turn))

    def _update_idle(self) -> None:
        """Idle: listening, nothing left to play, and the VAD has judged all audio received (so a user who has
        just spoken is not taken for silence while their last blocks wait for the VAD)."""
        busy = (self.state.phase is not Phase.LISTENING or self.playback.lead_s() > 0 or self.vad_state.speaking
                or self._blocks_judged < self._blocks_in - 1)
        (self.idle.clear if busy else self.idle.set)()

    def _messages(self, user_text: str) -> list[Message]:
        chat = self.history.append("user", user_text).trim(self.settings.history_chars, per_message=12).as_chat()
        return [Message(m["role"], m["content"]) for m in chat]

    # ---- the pure core and its actions -------------------------------------------------------------------
    def _apply(self, event: e.Event) -> None:
        before = self.state.phase
        self.state, actions = step(self.state, event)
        if not isinstance(event, e.Tick | e.PlaybackProgress):
            self._notify(event)
        for action in actions:
            self._notify(action)
            self._carry_out(action)
        if self.state.phase is not before:
            if self.state.phase is Phase.LISTENING:  # no turn in progress: nothing prepared for one may stay held
                self.speculations.cancel_all()
            self._notify(self.state.phase)

    def _carry_out(self, action: a.Action) -> None:
        match action:
            case a.StartTranscription(turn_id=turn, from_t=from_t):
                self._begin_asr(turn, from_t)
            case a.ContinueTranscription(turn_id=turn, previous_turn_id=previous, from_t=from_t):
                self.scheduler.cancel_turn(previous, wait=False)  # its results would be stale: drop its work
                self._begin_asr(turn, from_t)  # decode the whole turn again, from its first word
            case a.FinishTranscription():
                self._feed_asr(Feed.FINISH)
                self._asr_turn = None
            case a.StartTurnDetection(turn_id=turn, from_t=from_t):
                audio = self.mic.since(max(from_t - PREROLL_S, self.mic.t_end - TURN_WINDOW_S))
                self.turn_check.request(turn, audio, self.scheduler.clock(), self.speculations.score_of(turn))
            case a.StartSpeculativeReply(turn_id=turn, text=text):
                self.speculations.on_transcript(turn, text, later=self.settings.naive)
            case a.CommitReply(turn_id=turn):
                self._replies[turn] = self.speculations.commit(turn)
            case a.CancelReply(turn_id=turn):
                self.speculations.cancel(turn)
                self.turn_check.cancel(turn)
                reply = self._replies.pop(turn, None)
                if reply is not None:
                    reply.cancel()
                self.scheduler.cancel_turn(turn, wait=False)
            case a.FlushPlayback(turn_id=turn):
                self._flush(turn)
            case a.PausePlayback(turn_id=turn):
                self.playback.pause()
                if turn in self._playing:
                    self._barge_onset = self.state.barge_in_at
            case a.ResumePlayback():
                self.playback.resume()
            case a.AppendHistory(role=role, text=text, interrupted=interrupted, model_text=model_text):
                history = self.history.append(role, model_text or text, interrupted)  # the model's own words
                self.history = history.trim(self.settings.history_chars, per_message=12)  # a long session stays bounded
            case a.ForgetQuestion():
                self.history = self.history.without_unanswered()
            case a.LogEvent(kind=kind, detail=detail):
                log.log(logging.INFO if kind in INFO_LOGS else logging.DEBUG, "%s %s", kind, detail)
            case _:
                assert_never(action)

    def _begin_asr(self, turn: int, from_t: float) -> None:
        self._asr_turn, self._blocks_since_feed = turn, 0
        self._asr_pending = [self.mic.since(from_t - PREROLL_S)]
        self.work.start_asr(turn)
        self._feed_asr(Feed.MORE)

    def _new_reply(self, turn: int, speculation: Speculation) -> Reply:
        """The reply of one speculation, held after its first segment until the commit (not started)."""
        clock, post = self.scheduler.clock, self.post
        reply: Reply

        def written(index: int) -> str:
            return reply.text.written[index] if index < len(reply.text.written) else ""

        reply = Reply(
            self.scheduler, turn, speculation.ready, self.engines.tts, self.playback,
            on_segment=lambda i, text, dur: post(FromReply(reply, e.ReplyAudio(clock(), turn, i, text, dur,
                                                                               written(i)))),
            on_finished=lambda summary: post(FromReply(reply, ReplyEnded(turn, summary))),
            on_error=lambda exc: post(FromReply(reply, e.EngineFailed(clock(), turn, Stage.REPLY,
                                                                      EngineWork.failure_reason(exc)))),
            max_words=self.settings.max_spoken_words, held=True, meta={"speculation": speculation.number},
            whole_sentences=self.settings.naive, llm_lane=self.work.llm_lane)
        return reply

    def _from_reply(self, item: FromReply) -> None:
        """An item of one reply stream: dropped when that reply is no longer the turn's (a discarded
        speculation), held back while the speculation waits for its adoption or commit, else applied."""
        turn = item.source.turn
        if item.source is not self._replies.get(turn) and item.source is not self.speculations.reply_of(turn):
            return
        if isinstance(item.item, e.ReplyAudio):
            self.turn_check.voiced(turn)
        if self.speculations.hold_back(item):
            return
        match item.item:
            case ReplyEnded(turn_id=turn, summary=summary):
                self._on_reply_ended(turn, summary)
            case _:
                self._apply(item.item)

    def _flush(self, turn: int) -> None:
        self.playback.flush(turn)
        self._reply_done.discard(turn)
        start = self._playing.pop(turn, None)
        if start is not None:
            record_span(self.scheduler, SPEAKER_LANE, Stage.PLAYBACK, turn, start, self.scheduler.clock(),
                        interrupted=True)

    def _on_reply_ended(self, turn: int, summary: StreamSummary) -> None:
        """The stream is done; playback finishes once the turn's last queued sample has played."""
        self._replies.pop(turn, None)
        t = self.scheduler.clock()
        if summary.status == "error":  # the type only: an error's message may quote the conversation
            self._apply(e.EngineFailed(t, turn, Stage.REPLY, EngineWork.failure_reason(summary.error)))
        else:
            self._apply(e.ReplyFinished(t, turn))
        if self.playback.queued_s(turn) > 0:
            self._reply_done.add(turn)
        elif self.state.turn_id == turn:
            self._finish_playback(turn, self.scheduler.clock())
