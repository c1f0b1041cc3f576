"""The tests' word error rate is the product's (app/metrics/wer.py): one normalisation everywhere."""
from app.metrics.wer import corpus_wer, edit_distance, normalise, wer  # noqa: F401
