"""The reply's first segment is short: at a clause mark when one comes, else cut at a space after 48 characters,
so a long first sentence does not hold back the first audio. Later segments are whole sentences."""
from app.conversation.reply_text import FIRST_SEGMENT_MAX_CHARS, split_reply


def test_first_segment_stops_at_a_clause_mark():
    assert split_reply("Mount Kilimanjaro, which", True, False) == (["Mount Kilimanjaro,"], "which")


def test_first_segment_stops_before_a_phrase_after_three_words():
    """The voice starts on the subject ("Romeo and Juliet") instead of waiting for the whole sentence."""
    assert split_reply("Romeo and Juliet was", True, False) == (["Romeo and Juliet"], "was")
    assert split_reply("The tallest mountain in Africa", True, False) == (["The tallest mountain"], "in Africa")
    for waits in ("Romeo and was", "The answer is that", "A spider has eight legs"):  # too soon, dangling, none
        assert split_reply(waits, True, False) == ([], waits)
    assert split_reply("Romeo and Juliet was", False, False) == ([], "Romeo and Juliet was")  # the first only


def test_long_first_sentence_is_cut_at_a_space():
    segments, rest = split_reply("The moon is approximately 149.6 million kilometers away from", True, False)
    assert segments and len(segments[0]) <= FIRST_SEGMENT_MAX_CHARS and not segments[0].endswith(" ")
    assert (segments[0] + " " + rest).split() == "The moon is approximately 149.6 million kilometers away from".split()


def test_later_segments_wait_for_the_sentence_end():
    long = "It takes about three days to get there by rocket and a little more to come back"
    assert split_reply(long, False, False) == ([], long)
