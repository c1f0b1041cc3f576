"""The turn-taking core: ``step(state, event) -> (state, actions)``, pure.

No threads, audio, I/O or clocks: time comes from the events. See docs/turn-taking.md for the
phases, the end-of-turn fusion rule, the barge-in rule and the history rule.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from enum import Enum
from typing import assert_never

from app.conversation import actions as a
from app.conversation import events as e
from app.conversation.history import heard_both, heard_text
from app.conversation.turn_rule import TurnSettings, decide, sure_wait, text_decides

Actions = tuple[a.Action, ...]


class Phase(Enum):
    LISTENING = "listening"  # nobody speaks
    USER_SPEAKING = "user_speaking"
    USER_PAUSED = "user_paused"  # waiting for verdict + transcript (+ text score); speculation may run
    RESPONDING = "responding"  # reply committed, not yet audible
    SPEAKING = "speaking"  # reply audible


@dataclass(frozen=True, slots=True)
class ConversationState:
    settings: TurnSettings = TurnSettings()
    phase: Phase = Phase.LISTENING
    turn_id: int = 0  # a new id for each user turn and for each resumption after a pause
    # The user's turn
    user_started_at: float = 0.0  # start of the turn's first speech (kept across resumptions)
    stopped_at: float = 0.0  # the latest SpeechStopped
    transcript: str | None = None  # final transcript; set means the speculative reply started
    transcript_at: float = 0.0
    audio_probability: float | None = None
    text_score: float | None = None
    text_score_known: bool = False  # a score (or "none available") arrived
    # The reply
    segments: tuple[tuple[int, str, float, str], ...] = ()  # rendered: (index, spoken, duration_s, written)
    played_s: float = 0.0
    reply_finished: bool = False
    playback_finished: bool = False
    barge_in_at: float | None = None  # start of speech heard during the reply, not yet confirmed

    def heard(self) -> str:
        """The reply text the user has heard so far."""
        return heard_text([(text, d) for _, text, d, _ in self.segments], self.played_s)

    def heard_both(self) -> tuple[str, str]:
        """What the user heard so far, as spoken and as the language model wrote it."""
        return heard_both([(text, written, d) for _, text, d, written in self.segments], self.played_s)


Result = tuple[ConversationState, Actions]

_TURN_DEFAULTS = {
    f.name: f.default for f in fields(ConversationState) if f.name not in ("settings", "phase", "turn_id")
}


def _fresh(state: ConversationState, phase: Phase, **changes: object) -> ConversationState:
    """``state`` with every per-turn field reset, then ``changes`` applied."""
    return replace(state, **{**_TURN_DEFAULTS, "phase": phase, **changes})


def _assistant(heard: str, written: str, interrupted: bool = False) -> a.AppendHistory:
    """The reply as heard, and (when it differs) as the language model wrote it, for its own history."""
    return a.AppendHistory("assistant", heard, interrupted, model_text=written if written != heard else "")


def _log(kind: str, **values: float | str) -> a.LogEvent:
    detail = " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
    return a.LogEvent(kind, detail)


# ---- the end-of-turn fusion rule ---------------------------------------------------------------


def end_of_turn(state: ConversationState, t: float) -> str | None:
    """Why the paused user's turn ends at ``t`` ("complete", "uncertain_wait", "text_sure", "disagree_wait",
    "max_wait"), or None.

    Needs a non-empty final transcript. Then: reply at ``max_wait_s`` after SpeechStopped whatever
    the signals say. Before that, with the audio verdict in (and the text score in, or given up on
    ``text_score_wait_s`` after the transcript): reply once `turn_rule.decide` says so. Without the verdict, a
    surely complete text (`turn_rule.text_decides`) is answered at `sure_wait_s`, as `decide` would answer it.
    """
    cfg = state.settings
    if not state.transcript:
        return None
    waited = t - state.stopped_at
    if waited >= cfg.max_wait_s:
        return "max_wait"
    if state.audio_probability is None:  # a surely complete text need not wait for the voice's verdict
        sure = state.text_score_known and text_decides(cfg, state.text_score)
        return "text_sure" if sure and waited >= sure_wait(cfg) else None
    if (
        cfg.text_score_wait_s is not None
        and not state.text_score_known
        and t - state.transcript_at < cfg.text_score_wait_s
    ):
        return None
    wait, reason = decide(cfg, state.audio_probability, state.text_score)
    return reason if waited >= wait and reason != "max_wait" else None


# ---- transitions -------------------------------------------------------------------------------


def _start_user_turn(state: ConversationState, started_at: float, actions: Actions) -> Result:
    turn_id = state.turn_id + 1
    new = _fresh(state, Phase.USER_SPEAKING, turn_id=turn_id, user_started_at=started_at)
    return new, actions + (a.StartTranscription(turn_id, started_at),)


def _end_reply(state: ConversationState, actions: Actions) -> Result:
    """Back to listening, or straight into the user's turn if they were already speaking."""
    if state.barge_in_at is not None:
        return _start_user_turn(state, state.barge_in_at, actions)
    return _fresh(state, Phase.LISTENING), actions


def _interrupt(state: ConversationState, t: float) -> Result:
    """Barge-in confirmed: stop the reply, keep what was heard, start the user's new turn."""
    heard, written = state.heard_both()
    actions: Actions = (
        a.CancelReply(state.turn_id, "barge_in"),
        a.FlushPlayback(state.turn_id),
        _assistant(heard, written, interrupted=True),
        _log("barge_in", played_s=state.played_s, heard_chars=len(heard), at=t),
    )
    started = state.barge_in_at if state.barge_in_at is not None else t
    return _start_user_turn(replace(state, barge_in_at=None), started, actions)


def _maybe_commit(state: ConversationState, t: float, actions: Actions = ()) -> Result:
    reason = end_of_turn(state, t)
    if reason is None:
        return state, actions
    assert state.transcript is not None
    audio_p = "none" if state.audio_probability is None else state.audio_probability
    text = "none" if state.text_score is None else state.text_score
    return replace(state, phase=Phase.RESPONDING), actions + (
        a.CommitReply(state.turn_id, reason, state.audio_probability, state.text_score, t - state.stopped_at, t),
        a.AppendHistory("user", state.transcript),
        _log("turn_end", reason=reason, waited_s=t - state.stopped_at, audio_p=audio_p, text_log10=text),
    )


def _maybe_finish(state: ConversationState) -> Result:
    nothing_left_to_play = state.playback_finished or not state.segments
    if not (state.reply_finished and nothing_left_to_play):
        return state, ()
    text = " ".join(text for _, text, _, _ in state.segments)
    written = " ".join(written or text for _, text, _, written in state.segments)
    actions: Actions = (_assistant(text, written),
                        _log("reply_done", segments=len(state.segments)))
    return _end_reply(state, actions)


def _on_speech_started(s: ConversationState, ev: e.SpeechStarted) -> Result:
    if s.phase is Phase.LISTENING:
        return _start_user_turn(s, ev.t, ())
    if s.phase is Phase.USER_PAUSED:  # resumed before the reply was committed: same user turn
        turn_id = s.turn_id + 1  # the paused attempt's reply (a speculation may run before the transcript) goes
        actions: Actions = (a.CancelReply(s.turn_id, "user_resumed"),)
        actions += (
            a.ContinueTranscription(turn_id, s.turn_id, s.user_started_at),
            _log("user_resumed", paused_s=ev.t - s.stopped_at),
        )
        return _fresh(s, Phase.USER_SPEAKING, turn_id=turn_id, user_started_at=s.user_started_at), actions
    if s.phase in (Phase.RESPONDING, Phase.SPEAKING) and s.barge_in_at is None:
        s = replace(s, barge_in_at=ev.t)
        if s.settings.min_barge_in_s <= 0:
            return _interrupt(s, ev.t)
        return s, (a.PausePlayback(s.turn_id),)  # silent at once; resumed if it was only a noise
    return s, ()


def _on_speech_stopped(s: ConversationState, ev: e.SpeechStopped) -> Result:
    if s.phase is Phase.USER_SPEAKING:
        actions = (
            a.StartTurnDetection(s.turn_id, s.user_started_at),
            a.FinishTranscription(s.turn_id),
            _log("user_paused", since_start_s=ev.t - s.user_started_at),
        )
        return replace(s, phase=Phase.USER_PAUSED, stopped_at=ev.t), actions
    if s.phase in (Phase.RESPONDING, Phase.SPEAKING) and s.barge_in_at is not None:
        lasted = ev.speech_s if ev.speech_s is not None else ev.t - s.settings.pause_s - s.barge_in_at
        if lasted < s.settings.min_barge_in_s:
            return replace(s, barge_in_at=None), (
                a.ResumePlayback(s.turn_id), _log("noise_ignored", speech_s=lasted))
        s, actions = _interrupt(s, ev.t)
        s, more = _on_speech_stopped(s, ev)
        return s, actions + more
    return s, ()


def _on_tick(s: ConversationState, ev: e.Tick) -> Result:
    if s.phase is Phase.USER_PAUSED:
        return _maybe_commit(s, ev.t)
    if s.barge_in_at is not None:
        # The VAD reports a stop pause_s after speech ends: only past min + pause without a stop
        # is the speech known to have lasted min_barge_in_s.
        if ev.t - s.barge_in_at >= s.settings.min_barge_in_s + s.settings.pause_s:
            return _interrupt(s, ev.t)
    return s, ()


def _on_verdict(s: ConversationState, ev: e.TurnVerdict) -> Result:
    if s.phase in (Phase.RESPONDING, Phase.SPEAKING) and s.audio_probability is None:  # the words ended the turn
        return s, (_log("turn_verdict", p=ev.probability, after_s=ev.t - s.stopped_at, after_commit="yes"),)
    if s.phase is not Phase.USER_PAUSED or s.audio_probability is not None:
        return s, ()
    s = replace(s, audio_probability=ev.probability)
    return _maybe_commit(s, ev.t, (_log("turn_verdict", p=ev.probability, after_s=ev.t - s.stopped_at),))


def _on_transcript_final(s: ConversationState, ev: e.TranscriptFinal) -> Result:
    if s.phase is not Phase.USER_PAUSED or s.transcript is not None:
        return s, ()
    text = ev.text.strip()
    if not text:  # noise, or nothing recognisable: no reply (nor the one prepared in the pause)
        return _fresh(s, Phase.LISTENING), (a.CancelReply(s.turn_id, "empty_transcript"),
                                            _log("empty_transcript", after_s=ev.t - s.stopped_at))
    s = replace(s, transcript=text, transcript_at=ev.t)
    speculate = a.StartSpeculativeReply(s.turn_id, text)
    return _maybe_commit(s, ev.t, (speculate, _log("transcript_final", after_s=ev.t - s.stopped_at)))


def _on_text_score(s: ConversationState, ev: e.EndOfUtteranceScore) -> Result:
    if s.phase is not Phase.USER_PAUSED or s.text_score_known:
        return s, ()
    s = replace(s, text_score=ev.score, text_score_known=True)
    score = "none" if ev.score is None else ev.score
    return _maybe_commit(s, ev.t, (_log("text_score", log10=score, after_s=ev.t - s.stopped_at),))


def _on_reply_audio(s: ConversationState, ev: e.ReplyAudio) -> Result:
    replying = s.phase in (Phase.USER_PAUSED, Phase.RESPONDING, Phase.SPEAKING)
    if not replying or any(i == ev.segment_index for i, _, _, _ in s.segments):
        return s, ()
    segments = tuple(sorted(s.segments + ((ev.segment_index, ev.text, ev.duration_s, ev.written or ev.text),)))
    return replace(s, segments=segments, playback_finished=False), ()


def _on_playback_progress(s: ConversationState, ev: e.PlaybackProgress) -> Result:
    if s.phase not in (Phase.RESPONDING, Phase.SPEAKING):
        return s, ()
    s = replace(s, played_s=max(s.played_s, ev.played_s))
    if s.phase is Phase.RESPONDING and s.played_s > 0:
        return replace(s, phase=Phase.SPEAKING), (_log("first_audio", after_stop_s=ev.t - s.stopped_at),)
    return s, ()


def _on_playback_finished(s: ConversationState, ev: e.PlaybackFinished) -> Result:
    if s.phase not in (Phase.RESPONDING, Phase.SPEAKING):
        return s, ()
    return _maybe_finish(replace(s, playback_finished=True))


def _on_reply_finished(s: ConversationState, ev: e.ReplyFinished) -> Result:
    if s.phase not in (Phase.RESPONDING, Phase.SPEAKING):
        return s, ()
    return _maybe_finish(replace(s, reply_finished=True))


def _on_engine_failed(s: ConversationState, ev: e.EngineFailed) -> Result:
    if s.phase is Phase.LISTENING:
        return s, ()
    actions: Actions = (a.CancelReply(s.turn_id, f"{ev.stage}_failed"), a.FlushPlayback(s.turn_id))
    if s.phase in (Phase.RESPONDING, Phase.SPEAKING):
        heard, written = s.heard_both()
        actions += (_assistant(heard, written, interrupted=True),)
        if not heard:  # nothing of the reply was heard: the question was not answered either
            actions += (a.ForgetQuestion(s.turn_id),)
    actions += (a.LogEvent("engine_failed", f"stage={ev.stage} phase={s.phase.value} reason={ev.reason}"),)
    return _end_reply(s, actions)


def _on_reply_cancelled(s: ConversationState, ev: e.ReplyCancelled) -> Result:
    if s.phase not in (Phase.RESPONDING, Phase.SPEAKING):
        return s, ()
    heard, written = s.heard_both()
    return _end_reply(s, (a.CancelReply(s.turn_id, "cancelled"), a.FlushPlayback(s.turn_id),
                          _assistant(heard, written, interrupted=True), _log("reply_cancelled", played_s=s.played_s)))


def step(state: ConversationState, event: e.Event) -> Result:
    """Apply one event. Events of another turn than ``state.turn_id`` are stale: no change."""
    match event:
        case e.SpeechStarted():
            return _on_speech_started(state, event)
        case e.SpeechStopped():
            return _on_speech_stopped(state, event)
        case e.Tick():
            return _on_tick(state, event)
        case _ if event.turn_id != state.turn_id:  # every other event belongs to a turn
            return state, ()
        case e.TurnVerdict():
            return _on_verdict(state, event)
        case e.TranscriptFinal():
            return _on_transcript_final(state, event)
        case e.EndOfUtteranceScore():
            return _on_text_score(state, event)
        case e.ReplyAudio():
            return _on_reply_audio(state, event)
        case e.PlaybackProgress():
            return _on_playback_progress(state, event)
        case e.PlaybackFinished():
            return _on_playback_finished(state, event)
        case e.ReplyFinished():
            return _on_reply_finished(state, event)
        case e.EngineFailed():
            return _on_engine_failed(state, event)
        case e.ReplyCancelled():
            return _on_reply_cancelled(state, event)
        case e.TranscriptPartial() | e.ReplyText():  # text not yet final or not yet heard: for the UI only
            return state, ()
        case _:
            assert_never(event)
