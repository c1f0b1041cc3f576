"""`cadence` with no command: the desktop window. `cadence --screenshot FILE.png` opens the window, loads the models,
lets one demo question (assets/demo/q1_tallest_mountain.wav) run through a real session on the headless device so the
graphs, the timeline and the transcript show measured figures, saves the window to FILE.png and exits (works with
QT_QPA_PLATFORM=offscreen)."""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

SCREENSHOT_TIMEOUT_S = 240.0
SETTLE_MS = 700  # after the turn's figures arrive: let the late-span redraw and the last playback land


def demo_device(cfg, playback, controller):
    """The scripted demo user on the headless device (same block clock as a microphone)."""
    from app.audio.headless import HeadlessDuplex
    from app.headless.script import ScriptedInput, UserTurn
    from app.paths import asset
    from engines.audio_io import read_audio

    source = ScriptedInput.following([UserTurn(read_audio(asset("demo/q1_tallest_mountain.wav")), 0.5)], 16000,
                                     lambda: controller.session)
    return HeadlessDuplex(source, playback, 16000)


def _has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                or os.environ.get("QT_QPA_PLATFORM"))


def cmd_gui(args) -> int:
    from app.config import load_config

    screenshot = getattr(args, "screenshot", None)
    cfg = load_config(args)  # a bad config is one line, before any window opens
    if screenshot:
        if not Path(screenshot).resolve().parent.is_dir():
            print(f"cadence: error: {screenshot}: the folder does not exist", file=sys.stderr)
            return 2
        if not _has_display():
            os.environ["QT_QPA_PLATFORM"] = "offscreen"
    elif not _has_display():
        print("cadence: error: no display found: run Cadence on a desktop, or try `cadence headless` or "
              "`cadence demo`", file=sys.stderr)
        return 2
    return run_window(cfg, Path(args.config) if args.config else None, screenshot)


def run_window(cfg, config_file: Path | None, screenshot: str | None = None) -> int:
    from PyQt6.QtCore import QTimer
    from PyQt6.QtWidgets import QApplication

    from app.ui.app_controller import AppController, sound_card
    from app.ui.bridge import UiBridge
    from app.ui.main_window import MainWindow
    from app.ui.theme import apply_dark_theme

    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(sys.argv[:1])
    app.setApplicationName("Cadence")
    apply_dark_theme(app)
    bridge = UiBridge()
    controller = AppController(cfg, bridge, config_file, device_factory=demo_device if screenshot else sound_card)
    window = MainWindow(bridge, controller)
    window.show()
    outcome = {"code": 0, "saved": False}
    if screenshot:
        def save(code: int) -> None:
            if outcome["saved"]:
                return
            outcome["saved"] = True
            window.grab().save(str(screenshot), "PNG")
            outcome["code"] = code if Path(screenshot).is_file() else 1
            window.close()
            app.quit()

        bridge.timeline_changed.connect(lambda _t: QTimer.singleShot(SETTLE_MS, lambda: save(0)))
        def fail(code: int, message: str) -> None:
            print(f"cadence: error: {message}", file=sys.stderr)
            save(code)

        bridge.error.connect(lambda message: fail(2, message))  # a missing model: one line, as for every command
        QTimer.singleShot(int(SCREENSHOT_TIMEOUT_S * 1000),
                          lambda: fail(1, f"the demo turn did not finish within {SCREENSHOT_TIMEOUT_S:.0f} s"))
    # SIGTERM / Ctrl-C close the window like the user would; the timer lets Python run its signal handlers
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: app.quit())
    wakeup = QTimer()
    wakeup.timeout.connect(lambda: None)
    wakeup.start(200)
    QTimer.singleShot(0, controller.start)
    code = app.exec()
    controller.shutdown()
    return outcome["code"] if screenshot else code
