"""Colours and the dark theme shared by every widget (Qt Fusion palette + pyqtgraph defaults)."""
from __future__ import annotations

from PyQt6.QtGui import QColor, QPalette
from PyQt6.QtWidgets import QApplication

BACKGROUND = "#1b1d23"
PANEL = "#23262e"
TEXT = "#e3e6ee"
MUTED = "#8a90a0"
ACCENT = "#5aa9ff"
ERROR = "#ff6b6b"

# one colour per latency stage (graphs) and per span stage (timeline)
STAGE_COLORS = {
    "asr": "#5aa9ff", "turn": "#ffb454", "llm_first_token": "#c792ea", "tts_first_audio": "#4ecdc4",
    "v2v": "#ff7a90", "vad": "#9aa3b5", "llm": "#c792ea", "tts": "#4ecdc4", "user_speech": "#f2d35b",
    "playback": "#7bd88f", "barge_in": "#ff6b6b",
}
STATE_COLORS = {
    "listening": "#3a4152", "hearing": "#2f9e5b", "thinking": "#c98a1b", "speaking": "#3b7dd8",
    "loading": "#555b6a", "no-audio": "#b33a3a", "muted": "#6b4f8a",
}


def apply_dark_theme(app: QApplication) -> None:
    import pyqtgraph as pg

    app.setStyle("Fusion")
    palette = QPalette()
    roles = {
        QPalette.ColorRole.Window: BACKGROUND, QPalette.ColorRole.WindowText: TEXT,
        QPalette.ColorRole.Base: PANEL, QPalette.ColorRole.AlternateBase: BACKGROUND,
        QPalette.ColorRole.Text: TEXT, QPalette.ColorRole.Button: PANEL, QPalette.ColorRole.ButtonText: TEXT,
        QPalette.ColorRole.Highlight: ACCENT, QPalette.ColorRole.HighlightedText: "#000000",
        QPalette.ColorRole.ToolTipBase: PANEL, QPalette.ColorRole.ToolTipText: TEXT,
        QPalette.ColorRole.PlaceholderText: MUTED,
    }
    for role, colour in roles.items():
        palette.setColor(role, QColor(colour))
    app.setPalette(palette)
    pg.setConfigOptions(background=PANEL, foreground=TEXT, antialias=True)
