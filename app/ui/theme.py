"""Colours and the dark theme shared by every widget (Qt Fusion palette + pyqtgraph defaults)."""
from __future__ import annotations

from PyQt6.QtGui import QColor, QPalette
from PyQt6.QtWidgets import QApplication

from app.stages import Latency, Stage

BACKGROUND = "#1b1d23"
PANEL = "#23262e"
TEXT = "#e3e6ee"
MUTED = "#8a90a0"
ACCENT = "#5aa9ff"
ERROR = "#ff6b6b"

# one colour per latency stage (graphs) and per span stage (timeline)
STAGE_COLORS: dict[str, str] = {
    Latency.ASR: "#5aa9ff", Latency.TURN: "#ffb454", Latency.LLM_FIRST_TOKEN: "#c792ea",
    Latency.TTS_FIRST_AUDIO: "#4ecdc4", Latency.V2V: "#ff7a90",
    Stage.VAD: "#9aa3b5", Stage.LLM: "#c792ea", Stage.TTS: "#4ecdc4", Stage.USER_SPEECH: "#f2d35b",
    Stage.PLAYBACK: "#7bd88f", Stage.BARGE_IN: "#ff6b6b", Stage.SPECULATION: "#f4a261",
}  # Stage.ASR and Stage.TURN share their colour (and their value) with the latency figure
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
