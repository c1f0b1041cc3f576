"""Random event sequences: the state machine never breaks its invariants."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from app.conversation import actions as a
from app.conversation import events as e
from app.conversation.state import ConversationState, Phase, TurnSettings, step

# Event kinds below, weighted so that replies get played and interrupted often, failures rarely.
WEIGHTS = [3, 3, 4, 3, 1, 4, 3, 1, 4, 4, 2, 2, 1]
KINDS = [kind for kind, weight in enumerate(WEIGHTS) for _ in range(weight)]


def _event(data: st.DataObject, t: float, turn_id: int) -> e.Event:
    tid = data.draw(st.sampled_from([turn_id] * 6 + [turn_id - 1, turn_id + 1]))
    kind = data.draw(st.sampled_from(KINDS))
    return [
        lambda: e.SpeechStarted(t),
        lambda: e.SpeechStopped(t, data.draw(st.none() | st.floats(0.0, 3.0))),
        lambda: e.Tick(t),
        lambda: e.TurnVerdict(t, tid, True, data.draw(st.floats(0.0, 1.0))),
        lambda: e.TranscriptPartial(t, tid, "so"),
        lambda: e.TranscriptFinal(t, tid, data.draw(st.sampled_from(["", "Hi.", "And so my fellow"]))),
        lambda: e.EndOfUtteranceScore(t, tid, data.draw(st.none() | st.floats(-9.0, 0.0))),
        lambda: e.ReplyText(t, tid, "Hello there."),
        lambda: e.ReplyAudio(t, tid, data.draw(st.integers(0, 3)), "Hello there.", 0.8),
        lambda: e.PlaybackProgress(t, tid, data.draw(st.floats(0.0, 4.0))),
        lambda: e.PlaybackFinished(t, tid),
        lambda: e.ReplyFinished(t, tid),
        lambda: e.EngineFailed(t, tid, "llm", "boom"),
    ][kind]()


@settings(max_examples=300, deadline=None)
@given(st.data(), st.floats(0.0, 0.5))
def test_random_sequences_keep_the_invariants(data, min_barge_in_s):
    state = ConversationState(settings=TurnSettings(min_barge_in_s=min_barge_in_s))
    t = 0.0
    roles: list[str] = []
    speculated: set[int] = set()
    committed: set[int] = set()
    cancelled: set[int] = set()
    for _ in range(data.draw(st.integers(1, 60))):
        t += data.draw(st.floats(0.0, 1.0))
        before = state
        state, actions = step(state, _event(data, t, state.turn_id))
        assert state.turn_id >= before.turn_id
        for action in actions:
            turn_id = getattr(action, "turn_id", None)
            assert turn_id is None or turn_id <= state.turn_id
            if isinstance(action, a.StartSpeculativeReply):
                speculated.add(action.turn_id)
            if isinstance(action, a.CommitReply):
                assert action.turn_id in speculated and action.turn_id not in committed | cancelled
                committed.add(action.turn_id)
            if isinstance(action, a.CancelReply):
                cancelled.add(action.turn_id)
            if isinstance(action, a.AppendHistory):
                roles.append(action.role)
            if isinstance(action, a.ForgetQuestion):  # only a reply of which nothing was heard forgets its question
                heard = [x for x in actions if isinstance(x, a.AppendHistory)]
                assert heard and heard[-1].role == "assistant" and not heard[-1].text.strip()
        if state.phase is Phase.LISTENING:
            assert state.transcript is None and state.barge_in_at is None and state.segments == ()
        if state.phase in (Phase.RESPONDING, Phase.SPEAKING):
            assert state.turn_id in committed
    # History alternates user/assistant, starting with the user.
    assert roles == ["user", "assistant"] * (len(roles) // 2) + ["user"] * (len(roles) % 2)
