"""Turn-taking state machine: barge-in while the agent replies (noise or a real interruption), pure."""

from __future__ import annotations

from app.conversation import actions as a
from app.conversation.events import (
    EngineFailed,
    PlaybackFinished,
    PlaybackProgress,
    ReplyAudio,
    ReplyFinished,
    SpeechStarted,
    SpeechStopped,
    Tick,
)
from app.conversation.state import ConversationState, Phase, TurnSettings
from tests.conversation_steps import committed, of, run, speaking


def test_barge_in_while_speaking_cuts_history_at_played_text():
    s, out = run([SpeechStarted(3.0), Tick(3.3), Tick(3.49)], speaking(played_s=3.0))
    assert s.phase is Phase.SPEAKING  # not yet known to have lasted 0.3 s...
    assert out == [a.PausePlayback(1)]  # ...but the agent holds its voice at once
    s, out = run([Tick(3.5)], s)
    heard = "Mount Kilimanjaro is the tallest. It rises almost"  # 3.0 s of 2 + 2 s: mid second segment
    assert out[:3] == [a.CancelReply(1, "barge_in"), a.FlushPlayback(1),
                       a.AppendHistory("assistant", heard, interrupted=True)]
    assert s.phase is Phase.USER_SPEAKING and s.turn_id == 2
    assert out[-1] == a.StartTranscription(2, 3.0)  # the new turn's audio starts where the speech did


def test_barge_in_confirmed_by_speech_stopped_with_duration():
    s, out = run([SpeechStarted(3.0), SpeechStopped(3.6, speech_s=0.4)], speaking())
    assert of(out, a.CancelReply) == [a.CancelReply(1, "barge_in")]
    assert s.phase is Phase.USER_PAUSED and s.turn_id == 2
    assert out[-3:-1] == [a.StartTurnDetection(2, 3.0), a.FinishTranscription(2)]


def test_barge_in_while_responding_before_any_audio():
    s, out = run([SpeechStarted(1.6), Tick(2.1)], committed())
    assert out[:4] == [a.PausePlayback(1), a.CancelReply(1, "barge_in"), a.FlushPlayback(1),
                       a.AppendHistory("assistant", "", interrupted=True)]
    assert s.phase is Phase.USER_SPEAKING


def test_short_noise_during_reply_does_not_interrupt():
    s0 = speaking()
    s, out = run([SpeechStarted(3.0), SpeechStopped(3.35), Tick(3.6), Tick(5.0)], s0)  # 0.15 s of speech
    assert not of(out, a.CancelReply) and not of(out, a.FlushPlayback)
    assert s.phase is Phase.SPEAKING and s.turn_id == 1 and s.barge_in_at is None
    assert [x.kind for x in of(out, a.LogEvent)] == ["noise_ignored"]
    assert of(out, a.PausePlayback) == [a.PausePlayback(1)] and of(out, a.ResumePlayback) == [a.ResumePlayback(1)]
    assert out.index(a.PausePlayback(1)) < out.index(a.ResumePlayback(1))


def test_noise_with_vad_duration_below_min_does_not_interrupt():
    s, out = run([SpeechStarted(3.0), SpeechStopped(3.5, speech_s=0.25)], speaking())
    assert not of(out, a.CancelReply) and s.phase is Phase.SPEAKING


def test_min_barge_in_zero_interrupts_immediately():
    state = ConversationState(settings=TurnSettings(min_barge_in_s=0.0))
    s, out = run([SpeechStarted(3.0)], speaking(state=state))
    assert of(out, a.FlushPlayback) == [a.FlushPlayback(1)] and s.phase is Phase.USER_SPEAKING


def test_reply_ending_during_candidate_speech_hands_over_to_the_user():
    s = speaking(played_s=4.0)
    s, out = run([ReplyFinished(4.0, 1), SpeechStarted(6.0), PlaybackFinished(6.1, 1)], s)
    assert s.phase is Phase.USER_SPEAKING and s.turn_id == 2
    assert out[-1] == a.StartTranscription(2, 6.0) and not of(out, a.CancelReply)


def test_late_events_of_the_interrupted_reply_are_ignored():
    s, _ = run([SpeechStarted(3.0), Tick(3.5)], speaking())
    s2, out = run([ReplyAudio(3.6, 1, 2, "More words.", 1.0), PlaybackProgress(3.6, 1, 3.0),
                   ReplyFinished(3.7, 1), PlaybackFinished(3.8, 1), EngineFailed(3.9, 1, "tts", "x")], s)
    assert s2 == s and out == []
