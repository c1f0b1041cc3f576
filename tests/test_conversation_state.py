"""Turn-taking state machine: every transition of a turn, the end-of-turn rule, failures, pure (no mocks, no clocks).
Barge-in: tests/test_conversation_barge_in.py."""

from __future__ import annotations

import pytest

from app.conversation import actions as a
from app.conversation.events import (
    EndOfUtteranceScore,
    EngineFailed,
    PlaybackFinished,
    PlaybackProgress,
    ReplyAudio,
    ReplyFinished,
    ReplyText,
    SpeechStarted,
    SpeechStopped,
    Tick,
    TranscriptFinal,
    TranscriptPartial,
    TurnVerdict,
)
from app.conversation.state import ConversationState, Phase, TurnSettings, end_of_turn, step
from tests.conversation_steps import QUESTION, committed, of, run, speaking, user_turn

# ---- end of turn ---------------------------------------------------------------------------------


def test_speech_started_starts_a_turn_and_transcription():
    s, out = run([SpeechStarted(0.5)])
    assert (s.phase, s.turn_id, out) == (Phase.USER_SPEAKING, 1, [a.StartTranscription(1, 0.5)])


def test_speech_stopped_starts_turn_detection_over_whole_turn_and_finishes_asr():
    s, out = run([SpeechStarted(0.5), SpeechStopped(1.7)])
    assert s.phase is Phase.USER_PAUSED
    assert out[1:3] == [a.StartTurnDetection(1, 0.5), a.FinishTranscription(1)]


def test_transcript_final_starts_speculative_reply_before_the_verdict():
    s, out = run([SpeechStarted(0.0), SpeechStopped(1.2), TranscriptFinal(1.3, 1, QUESTION)])
    assert of(out, a.StartSpeculativeReply) == [a.StartSpeculativeReply(1, QUESTION)]
    assert s.phase is Phase.USER_PAUSED and not of(out, a.CommitReply)


def test_normal_turn_commits_and_records_user_message():
    s, out = run(user_turn(1, 0.0))
    assert s.phase is Phase.RESPONDING
    assert of(out, a.CommitReply) == [a.CommitReply(1)]
    assert of(out, a.AppendHistory) == [a.AppendHistory("user", QUESTION)]
    assert "reason=complete" in of(out, a.LogEvent)[-1].detail


def test_verdict_after_transcript_also_commits():
    events = [SpeechStarted(0.0), SpeechStopped(1.2), TranscriptFinal(1.3, 1, QUESTION),
              EndOfUtteranceScore(1.4, 1, -0.01), TurnVerdict(1.5, 1, True, 0.8)]
    assert of(run(events)[1], a.CommitReply) == [a.CommitReply(1)]


def test_incomplete_verdict_waits_then_max_wait_commits():
    s, out = run(user_turn(1, 0.0, p=0.1, score=None) + [Tick(2.5), Tick(3.19)])
    assert s.phase is Phase.USER_PAUSED and not of(out, a.CommitReply)
    s, out = run([Tick(3.2)], s)  # SpeechStopped at 1.2 + max_wait 2.0
    assert s.phase is Phase.RESPONDING and of(out, a.CommitReply) == [a.CommitReply(1)]
    assert "reason=max_wait" in out[-1].detail


def test_max_wait_commits_without_any_verdict_once_transcript_is_final():
    events = [SpeechStarted(0.0), SpeechStopped(1.2), Tick(3.5), TranscriptFinal(3.6, 1, "Hello there")]
    s, out = run(events)
    assert s.phase is Phase.RESPONDING and of(out, a.CommitReply) == [a.CommitReply(1)]


def test_incomplete_then_user_resumes_cancels_speculation_and_continues_the_turn():
    s, out = run(user_turn(1, 0.0, text="Could you tell me", p=0.2, score=-7.5) + [SpeechStarted(2.0)])
    assert s.phase is Phase.USER_SPEAKING and s.turn_id == 2
    assert out[-3:-1] == [a.CancelReply(1, "user_resumed"), a.ContinueTranscription(2, 1, 0.0)]
    s, out = run([SpeechStopped(3.5)], s)
    assert out[0] == a.StartTurnDetection(2, 0.0)  # Smart Turn over the whole turn, not the last segment


def test_resume_before_transcript_cancels_the_reply_prepared_in_the_pause():
    """The session may have started a reply at the pause's onset, before any transcript: it goes too."""
    s, out = run([SpeechStarted(0.0), SpeechStopped(1.2), SpeechStarted(1.5)])
    assert of(out, a.CancelReply) == [a.CancelReply(1, "user_resumed")]
    assert of(out, a.ContinueTranscription) == [a.ContinueTranscription(2, 1, 0.0)]


def test_an_empty_transcript_cancels_the_reply_prepared_in_the_pause():
    s, out = run([SpeechStarted(0.0), SpeechStopped(1.2), TranscriptFinal(1.4, 1, "  ")])
    assert s.phase is Phase.LISTENING
    assert of(out, a.CancelReply) == [a.CancelReply(1, "empty_transcript")]


def test_results_of_the_paused_attempt_are_stale_after_resuming():
    s, _ = run([SpeechStarted(0.0), SpeechStopped(1.2), SpeechStarted(1.5), SpeechStopped(2.5)])
    s2, out = run([TurnVerdict(2.6, 1, True, 0.99), TranscriptFinal(2.7, 1, "Could you")], s)
    assert s2 == s and out == []


def test_jfk_fragment_with_confident_audio_waits_then_full_sentence_replies():
    pause1 = [SpeechStarted(0.0), SpeechStopped(2.3), TurnVerdict(2.36, 1, True, 0.92),
              TranscriptFinal(2.5, 1, "And so my fellow Americans,"), EndOfUtteranceScore(2.65, 1, -5.6),
              Tick(2.9), Tick(3.2)]  # he resumes ~1.1 s into the pause, 0.9 s after SpeechStopped
    s, out = run(pause1)
    assert s.phase is Phase.USER_PAUSED and not of(out, a.CommitReply)
    full = ("And so my fellow Americans, ask not what your country can do for you, "
            "ask what you can do for your country.")
    s, out = run([SpeechStarted(3.2), SpeechStopped(6.0), TurnVerdict(6.06, 2, True, 0.93),
                  TranscriptFinal(6.3, 2, full), EndOfUtteranceScore(6.45, 2, -0.29)], s)
    assert of(out, a.CommitReply) == [a.CommitReply(2)]
    assert of(out, a.AppendHistory) == [a.AppendHistory("user", full)]


def test_disagreement_replies_at_disagree_wait():
    s, out = run(user_turn(1, 0.0, p=0.92, score=-5.6) + [Tick(2.69)])  # stop at 1.2
    assert not of(out, a.CommitReply)
    s, out = run([Tick(2.7)], s)
    assert of(out, a.CommitReply) and "reason=disagree_wait" in out[-1].detail


def test_text_complete_but_audio_incomplete_is_a_disagreement_too():
    s, out = run(user_turn(1, 0.0, p=0.2, score=-0.5) + [Tick(2.0)])
    assert not of(out, a.CommitReply)
    assert "reason=disagree_wait" in run([Tick(2.8)], s)[1][-1].detail


def test_words_surely_complete_are_answered_soon_whatever_the_voice_says():
    """A flat voice: Smart Turn says 'not yet' (p 0.04) to a question the text calls complete with near certainty
    (log10 -0.005): the reply starts sure_wait_s (0.3 s) after the pause, not disagree_wait_s (1.5 s) later."""
    events = user_turn(1, 0.0, p=0.04, score=-0.005)  # stopped at 1.2; the score arrives at 1.55
    s, out = run(events[:-1] + [Tick(1.49)])
    assert not of(out, a.CommitReply)
    s, out = run(events[-1:], s)
    assert of(out, a.CommitReply) == [a.CommitReply(1)]
    assert "reason=text_sure waited_s=0.350" in out[-1].detail


def test_words_surely_complete_need_no_verdict():
    """On a CPU-only machine Smart Turn may run after the reply's first audio when the text is sure: the turn ends
    sure_wait_s after the pause without it, as it would with any verdict below 0.9."""
    stop = 1.2
    events = [SpeechStarted(0.0), SpeechStopped(stop), TranscriptFinal(stop + 0.1, 1, QUESTION),
              EndOfUtteranceScore(stop + 0.2, 1, -0.01)]
    s, out = run(events + [Tick(stop + 0.29)])
    assert not of(out, a.CommitReply)
    s, out = run([Tick(stop + 0.3)], s)
    assert of(out, a.CommitReply) == [a.CommitReply(1)]
    assert of(out, a.CommitReply)[0].audio_p is None
    assert "reason=text_sure waited_s=0.300 audio_p=none" in out[-1].detail
    late = run([TurnVerdict(stop + 0.4, 1, True, 0.97)], s)  # the late verdict changes nothing; it is logged
    assert late[0] == s and late[1] == [a.LogEvent("turn_verdict", "p=0.970 after_s=0.400 after_commit=yes")]


@pytest.mark.parametrize("score", [-0.5, -5.0, None], ids=["likely", "fragment", "none"])
def test_without_a_verdict_a_text_less_than_sure_waits_for_it(score):
    s, out = run([SpeechStarted(0.0), SpeechStopped(1.2), TranscriptFinal(1.3, 1, QUESTION),
                  EndOfUtteranceScore(1.4, 1, score), Tick(2.5)])
    assert not of(out, a.CommitReply) and s.phase is Phase.USER_PAUSED


def test_unsure_text_score_waits_a_little_longer_when_audio_says_complete():
    """JFK's "And so my fellow Americans." pause: audio complete, text unsure -> wait uncertain_wait_s (1.2 s)."""
    s, out = run(user_turn(1, 0.0, p=0.92, score=-1.8) + [Tick(2.39)])  # stopped at 1.2
    assert not of(out, a.CommitReply)
    s, out = run([Tick(2.4)], s)
    assert of(out, a.CommitReply) == [a.CommitReply(1)]
    assert [x.detail.split()[0] for x in of(out, a.LogEvent)] == ["reason=uncertain_wait"]


def test_unsure_text_and_resumed_speech_is_one_turn():
    s, out = run(user_turn(1, 0.0, p=0.92, score=-1.8) + [Tick(2.0), SpeechStarted(2.1)])
    assert not of(out, a.CommitReply) and s.phase is Phase.USER_SPEAKING


def test_waits_for_text_score_then_audio_alone_decides_after_timeout():
    events = [SpeechStarted(0.0), SpeechStopped(1.2), TurnVerdict(1.25, 1, True, 0.9),
              TranscriptFinal(1.3, 1, QUESTION), Tick(2.29)]
    s, out = run(events)
    assert not of(out, a.CommitReply)  # the text score may still come (text_score_wait_s=1.0)
    assert of(run([Tick(2.31)], s)[1], a.CommitReply) == [a.CommitReply(1)]


def test_without_text_signal_audio_verdict_decides_at_once():
    state = ConversationState(settings=TurnSettings(text_score_wait_s=None))
    events = [SpeechStarted(0.0), SpeechStopped(1.2), TranscriptFinal(1.3, 1, QUESTION),
              TurnVerdict(1.35, 1, True, 0.7)]
    assert of(run(events, state)[1], a.CommitReply) == [a.CommitReply(1)]
    no_score = [SpeechStarted(0.0), SpeechStopped(1.2), TurnVerdict(1.25, 1, True, 0.7),
                TranscriptFinal(1.3, 1, QUESTION), EndOfUtteranceScore(1.31, 1, None)]
    assert of(run(no_score)[1], a.CommitReply) == [a.CommitReply(1)]


def test_end_of_turn_needs_a_transcript_even_at_max_wait():
    s, _ = run([SpeechStarted(0.0), SpeechStopped(1.2), TurnVerdict(1.3, 1, True, 0.99)])
    assert end_of_turn(s, 10.0) is None


def test_empty_transcript_is_noise_no_reply():
    s, out = run([SpeechStarted(0.0), SpeechStopped(0.5), TurnVerdict(0.55, 1, True, 0.9),
                  TranscriptFinal(0.6, 1, "  ")])
    assert s.phase is Phase.LISTENING
    assert not (of(out, a.StartSpeculativeReply) or of(out, a.CommitReply) or of(out, a.AppendHistory))
    s, out = run([Tick(5.0)], s)
    assert out == []


def test_short_utterance_is_answered():
    s, out = run(user_turn(1, 0.0, text="Yes.", p=0.9, score=-0.5))
    assert of(out, a.CommitReply) == [a.CommitReply(1)]


def test_settings_are_validated_with_names():
    with pytest.raises(ValueError, match="max_wait_s"):
        TurnSettings(max_wait_s=-1.0)
    with pytest.raises(ValueError, match="disagree_wait_s"):
        TurnSettings(max_wait_s=1.0, disagree_wait_s=1.5)


# ---- reply ---------------------------------------------------------------------------------------


def test_first_audible_audio_moves_responding_to_speaking():
    s = committed()
    s, out = run([ReplyText(1.6, 1, "Mount Kilimanjaro"), ReplyAudio(1.8, 1, 0, "Mount Kilimanjaro.", 1.0),
                  PlaybackProgress(1.85, 1, 0.0)], s)
    assert s.phase is Phase.RESPONDING and out == []
    s, out = run([PlaybackProgress(1.9, 1, 0.03)], s)
    assert s.phase is Phase.SPEAKING and out[0].kind == "first_audio"


def test_reply_ends_after_both_reply_and_playback_finished():
    s = speaking(played_s=1.0)
    s, out = run([PlaybackFinished(3.0, 1)], s)  # underrun between segments: not the end
    s, out = run([ReplyAudio(3.1, 1, 2, "Enjoy the climb!", 1.0), ReplyFinished(3.1, 1)], s)
    assert s.phase is Phase.SPEAKING and out == []
    s, out = run([PlaybackFinished(6.0, 1)], s)
    assert s.phase is Phase.LISTENING
    text = "Mount Kilimanjaro is the tallest. It rises almost six kilometres. Enjoy the climb!"
    assert of(out, a.AppendHistory) == [a.AppendHistory("assistant", text)]


def test_empty_reply_finishes_without_playback():
    s, out = run([ReplyFinished(2.0, 1)], committed())
    assert s.phase is Phase.LISTENING and of(out, a.AppendHistory) == [a.AppendHistory("assistant", "")]


def test_duplicate_and_out_of_order_segments_keep_play_order():
    s = committed()
    s, _ = run([ReplyAudio(2.0, 1, 1, "second.", 1.0), ReplyAudio(2.0, 1, 0, "first", 1.0),
                ReplyAudio(2.1, 1, 0, "dup", 1.0)], s)
    assert [text for _, text, _, _ in s.segments] == ["first", "second."]


# ---- stale events, failures, several turns ------------------------------------------------------


STALE_OR_UI_ONLY = [
    TurnVerdict(9, 7, True, 1.0), TranscriptFinal(9, 0, "hi"), ReplyFinished(9, 2), PlaybackProgress(9, 3, 1.0),
    EngineFailed(9, 5, "llm", "oom"), EndOfUtteranceScore(9, 9, -0.1), TranscriptPartial(9, 1, "what"),
]


@pytest.mark.parametrize("event", STALE_OR_UI_ONLY)
def test_stale_or_ui_only_events_change_nothing(event):
    s = run([SpeechStarted(0.0), SpeechStopped(1.2)])[0]
    assert step(s, event) == (s, ())


def test_events_in_the_wrong_phase_are_ignored():
    s = ConversationState()
    for event in [SpeechStopped(1.0), Tick(2.0), PlaybackFinished(2.0, 0), ReplyFinished(2.0, 0)]:
        assert step(s, event) == (s, ())


def test_engine_failure_mid_reply_then_next_turn_works():
    s, out = run([EngineFailed(2.5, 1, "llm", "decode error")], speaking(played_s=1.0))
    assert out[:3] == [a.CancelReply(1, "llm_failed"), a.FlushPlayback(1),
                       a.AppendHistory("assistant", "Mount Kilimanjaro", interrupted=True)]
    assert out[-1].kind == "engine_failed" and "decode error" in out[-1].detail and not of(out, a.ForgetQuestion)
    assert s.phase is Phase.LISTENING
    _, out = run([EngineFailed(1.7, 1, "llm", "server gone")], committed(1, 0.0))  # nothing heard yet
    assert out[2:4] == [a.AppendHistory("assistant", "", interrupted=True), a.ForgetQuestion(1)]
    s, out = run(user_turn(2, 10.0), s)
    assert s.phase is Phase.RESPONDING and of(out, a.CommitReply) == [a.CommitReply(2)]


def test_engine_failure_while_user_paused_goes_back_to_listening():
    s, out = run([SpeechStarted(0.0), SpeechStopped(1.2), EngineFailed(1.4, 1, "asr", "model missing")])
    assert s.phase is Phase.LISTENING and not of(out, a.AppendHistory)
    assert of(out, a.CancelReply) == [a.CancelReply(1, "asr_failed")]


def test_multiple_turns_keep_history_in_order():
    s, out1 = run(user_turn(1, 0.0))
    s, out2 = run([ReplyAudio(1.8, 1, 0, "Kilimanjaro.", 1.0), PlaybackProgress(2.0, 1, 1.0),
                   ReplyFinished(2.0, 1), PlaybackFinished(2.9, 1)], s)
    s, out3 = run(user_turn(2, 5.0, text="How high is it?"), s)
    s, out4 = run([ReplyAudio(6.8, 2, 0, "Almost six kilometres high.", 2.0), PlaybackProgress(7.8, 2, 1.0),
                   SpeechStarted(7.8), Tick(8.4)], s)
    history = of(out1 + out2 + out3 + out4, a.AppendHistory)
    assert history == [
        a.AppendHistory("user", QUESTION),
        a.AppendHistory("assistant", "Kilimanjaro."),
        a.AppendHistory("user", "How high is it?"),
        a.AppendHistory("assistant", "Almost six kilometres", interrupted=True),
    ]
    assert s.turn_id == 3 and s.phase is Phase.USER_SPEAKING
