"""Pure tests of the interleaving policy: what runs next and how many tokens, with no threads."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from scheduler import Mode, SchedulerSettings, Step, StepKind, StreamState, decide, next_chunk_tokens

INTERLEAVED = SchedulerSettings()
SEQUENTIAL = SchedulerSettings(mode=Mode.SEQUENTIAL)
CONCURRENT = SchedulerSettings(mode=Mode.CONCURRENT)


def kinds(steps: tuple[Step, ...]) -> list[StepKind]:
    return [s.kind for s in steps]


# -- interleaved -------------------------------------------------------------------------------
def test_first_step_is_a_small_produce():
    assert decide(StreamState(), INTERLEAVED) == (Step(StepKind.PRODUCE, 24),)


def test_first_chunk_is_capped_until_a_segment_exists_whatever_the_lead():
    for lead in (0.0, 2.0, 10.0):
        state = StreamState(segments_emitted=0, last_chunk_tokens=24, lead_s=lead)
        assert decide(state, INTERLEAVED) == (Step(StepKind.PRODUCE, 24),)


def test_ready_segment_is_rendered_before_producing_more():
    for lead in (0.0, 1.0, 5.0):
        state = StreamState(ready_segments=1, segments_emitted=1, lead_s=lead, last_chunk_tokens=24)
        assert kinds(decide(state, INTERLEAVED)) == [StepKind.RENDER]


def test_low_lead_asks_for_normal_chunks_even_after_growth():
    state = StreamState(segments_emitted=3, lead_s=0.4, last_chunk_tokens=96)
    assert decide(state, INTERLEAVED) == (Step(StepKind.PRODUCE, 32),)


def test_comfortable_lead_grows_chunks_up_to_the_max():
    sizes, last = [], 24
    for _ in range(4):
        last = next_chunk_tokens(StreamState(segments_emitted=2, lead_s=3.5, last_chunk_tokens=last),
                                 INTERLEAVED)
        sizes.append(last)
    assert sizes == [64, 96, 96, 96]


def test_lead_between_target_and_comfortable_holds_the_last_size():
    state = StreamState(segments_emitted=2, lead_s=2.0, last_chunk_tokens=64)
    assert next_chunk_tokens(state, INTERLEAVED) == 64
    state = StreamState(segments_emitted=2, lead_s=2.0, last_chunk_tokens=24)
    assert next_chunk_tokens(state, INTERLEAVED) == 32  # never below chunk_tokens after the first


def test_settings_drive_the_sizes():
    s = SchedulerSettings(first_chunk_max_tokens=8, chunk_tokens=16, max_chunk_tokens=40,
                          lead_target_s=0.5, lead_comfortable_s=1.0)
    assert next_chunk_tokens(StreamState(), s) == 8
    assert next_chunk_tokens(StreamState(segments_emitted=1, lead_s=0.2), s) == 16
    assert next_chunk_tokens(StreamState(segments_emitted=1, lead_s=1.0, last_chunk_tokens=32), s) == 40


def test_waits_while_a_unit_is_outstanding_and_finishes_when_all_is_rendered():
    assert decide(StreamState(producing=True, ready_segments=2), INTERLEAVED) == ()
    assert decide(StreamState(rendering=True), INTERLEAVED) == ()
    assert decide(StreamState(producer_finished=True, ready_segments=1), INTERLEAVED) == (Step(StepKind.RENDER),)
    assert kinds(decide(StreamState(producer_finished=True, segments_emitted=4), INTERLEAVED)) == [StepKind.DONE]


# -- sequential and concurrent -----------------------------------------------------------------------
def test_sequential_produces_everything_before_rendering():
    state = StreamState(ready_segments=3, segments_emitted=3, lead_s=0.0)
    assert decide(state, SEQUENTIAL) == (Step(StepKind.PRODUCE, 96),)
    assert kinds(decide(StreamState(producer_finished=True, ready_segments=3), SEQUENTIAL)) == [StepKind.RENDER]
    assert kinds(decide(StreamState(producer_finished=True), SEQUENTIAL)) == [StepKind.DONE]
    assert decide(StreamState(producing=True), SEQUENTIAL) == ()


def test_concurrent_runs_producer_and_renderer_side_by_side():
    both = decide(StreamState(ready_segments=1, segments_emitted=1), CONCURRENT)
    assert kinds(both) == [StepKind.PRODUCE, StepKind.RENDER] and both[0].max_tokens == 32
    assert decide(StreamState(), CONCURRENT) == (Step(StepKind.PRODUCE, 24),)
    assert kinds(decide(StreamState(producing=True, ready_segments=2), CONCURRENT)) == [StepKind.RENDER]
    assert decide(StreamState(producing=True, rendering=True, ready_segments=2), CONCURRENT) == ()
    assert decide(StreamState(producer_finished=True, rendering=True), CONCURRENT) == ()
    assert kinds(decide(StreamState(producer_finished=True), CONCURRENT)) == [StepKind.DONE]


# -- properties ----------------------------------------------------------------------------------------
settings_st = st.builds(
    lambda first, chunk, extra, target, extra_lead: SchedulerSettings(
        first_chunk_max_tokens=first, chunk_tokens=chunk, max_chunk_tokens=max(first, chunk) + extra,
        lead_target_s=target, lead_comfortable_s=target + extra_lead),
    st.integers(1, 64), st.integers(1, 64), st.integers(0, 128),
    st.floats(0, 5), st.floats(0, 5))
state_st = st.builds(StreamState, producer_finished=st.booleans(), ready_segments=st.integers(0, 4),
                     segments_emitted=st.integers(0, 10), lead_s=st.floats(0, 20),
                     last_chunk_tokens=st.integers(0, 300), producing=st.booleans(),
                     rendering=st.booleans())


@given(state_st, settings_st)
def test_chunk_size_stays_within_bounds(state, settings):
    n = next_chunk_tokens(state, settings)
    if state.segments_emitted == 0:
        assert n == settings.first_chunk_max_tokens
    else:
        assert settings.chunk_tokens <= n <= settings.max_chunk_tokens


@given(state_st, settings_st, st.floats(0, 20), st.floats(0, 20))
def test_more_lead_never_means_smaller_chunks(state, settings, lead_a, lead_b):
    low, high = sorted((lead_a, lead_b))
    n_low = next_chunk_tokens(StreamState(**{**state.__dict__, "lead_s": low}), settings)
    n_high = next_chunk_tokens(StreamState(**{**state.__dict__, "lead_s": high}), settings)
    assert n_low <= n_high


@given(state_st, settings_st)
def test_decisions_are_consistent_with_the_state(state, settings):
    for mode in Mode:
        s = SchedulerSettings(**{**settings.to_mapping(), "mode": mode})
        steps = decide(state, s)
        found = kinds(steps)
        assert len(found) == len(set(found))
        if StepKind.RENDER in found:
            assert state.ready_segments > 0 and not state.rendering
        if StepKind.PRODUCE in found:
            assert not state.producer_finished and not state.producing
            assert all(step.max_tokens >= 1 for step in steps if step.kind is StepKind.PRODUCE)
        if StepKind.DONE in found:
            assert found == [StepKind.DONE]
            assert state.producer_finished and not state.ready_segments
            assert not state.producing and not state.rendering
        if mode is not Mode.CONCURRENT:
            assert len(found) <= 1
            if state.producing or state.rendering:
                assert found == []
            elif mode is Mode.SEQUENTIAL and not state.producer_finished:
                assert found == [StepKind.PRODUCE]
            else:
                assert found  # never stalls when nothing is outstanding
        elif not (state.producing or state.rendering):
            assert found  # concurrent never stalls either
