"""History keeps only what was heard, merges same-role messages and trims oldest turns first."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from app.conversation.history import History, Message, heard_text

SEGMENTS = [("Mount Kilimanjaro is the tallest.", 2.0), ("It rises almost six kilometres.", 2.0)]


def test_nothing_played_nothing_heard():
    assert heard_text(SEGMENTS, 0.0) == ""


def test_whole_segments_played_are_heard_in_full():
    assert heard_text(SEGMENTS, 2.0) == "Mount Kilimanjaro is the tallest."
    assert heard_text(SEGMENTS, 99.0) == "Mount Kilimanjaro is the tallest. It rises almost six kilometres."


def test_cut_includes_the_word_that_was_playing():
    # 1.0 s of a 2 s, 33-character segment reaches character 16.5: inside "Kilimanjaro".
    assert heard_text(SEGMENTS, 1.0) == "Mount Kilimanjaro"
    assert heard_text(SEGMENTS, 0.01) == "Mount"


def test_cut_in_a_later_segment():
    assert heard_text(SEGMENTS, 2.5) == "Mount Kilimanjaro is the tallest. It rises"


@given(st.lists(st.tuples(st.text(min_size=1, max_size=30), st.floats(0.05, 5.0)), max_size=5),
       st.floats(0.0, 30.0), st.floats(0.0, 30.0))
def test_hearing_more_never_hears_less(segments, played_a, played_b):
    low, high = sorted([played_a, played_b])
    full = " ".join(" ".join(text.split()) for text, _ in segments)
    heard_low, heard_high = heard_text(segments, low).split(), heard_text(segments, high).split()
    assert heard_high[: len(heard_low)] == heard_low
    assert full.split()[: len(heard_high)] == heard_high


def test_append_drops_empty_and_merges_same_role():
    history = History("You are brief.").append("user", "What is the tallest").append("assistant", "", True)
    history = history.append("user", "mountain in Africa?")
    assert history.messages == (Message("user", "What is the tallest mountain in Africa?"),)


def test_a_question_whose_reply_failed_is_forgotten_and_nothing_else():
    h = History("sys").append("user", "Hi").append("assistant", "Hello!").append("user", "What is the capital?")
    assert [m.text for m in h.without_unanswered().messages] == ["Hi", "Hello!"]
    assert h.without_unanswered().without_unanswered() == h.without_unanswered()  # the answered turn stays


def test_append_keeps_interrupted_flag():
    history = History().append("user", "Hi").append("assistant", "Hello, how", interrupted=True)
    assert history.messages[-1] == Message("assistant", "Hello, how", True)


def _conversation(turns: int) -> History:
    history = History("system prompt")
    for i in range(turns):
        history = history.append("user", f"question {i}").append("assistant", f"answer {i}")
    return history


def test_trim_keeps_system_prompt_and_newest_turns():
    history = _conversation(5)
    trimmed = history.trim(budget=len("system prompt") + 2 * len("question 4") + 1)
    assert trimmed.system == "system prompt"
    assert [m.text for m in trimmed.messages] == ["question 4", "answer 4"]


def test_trim_never_starts_with_the_assistant_and_keeps_the_newest_message():
    history = _conversation(3).append("user", "a very long final question " * 10)
    trimmed = history.trim(budget=10)
    assert [m.role for m in trimmed.messages] == ["user"]
    assert trimmed.messages[0].text.startswith("a very long")


def test_trim_with_token_counter_and_per_message_overhead():
    history = _conversation(3)
    words = lambda text: len(text.split())  # noqa: E731 - a stand-in tokenizer
    assert history.cost(words, per_message=4) == 2 + 6 * 2 + 7 * 4
    assert len(history.trim(budget=2 + 4 * 2 + 5 * 4, cost=words, per_message=4).messages) == 4


def test_trim_within_budget_changes_nothing():
    history = _conversation(2)
    assert history.trim(10_000) == history


def test_as_chat():
    chat = History("Be brief.").append("user", "Hi").append("assistant", "Hello!").as_chat()
    assert chat == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello!"}]


def test_session_settings_keep_the_prompt_inside_the_context_window():
    """The session trims its history to what fits the LLM's context with room for the reply."""
    from app.config import from_dict, runtime_settings

    settings = runtime_settings(from_dict({"llm": {"n_ctx": 2048, "max_reply_tokens": 200}}))
    budget = settings.session.history_chars
    assert budget + len(settings.system_prompt) <= (2048 - 200) * 3
    history = History("sys")
    for i in range(500):
        history = history.append("user", f"question {i} " * 10).append("assistant", f"answer {i} " * 20)
    trimmed = history.trim(budget, per_message=12)
    assert trimmed.cost(len, 12) <= budget and trimmed.messages[-1].text.startswith("answer 499")
    assert trimmed.messages[0].role == "user" and len(trimmed.messages) < len(history.messages)
