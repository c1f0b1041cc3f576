"""Turn-taking: a pure state machine over events and actions, history, and the reply segmenter."""
