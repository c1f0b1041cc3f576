"""The settings dialog: models (catalog entries or a file of your own), an LLM server instead of the local model
(app/ui/remote_llm_form.py), threads and GPU layers, the scheduler mode,
turn-taking thresholds and timings, the system prompt and the audio devices. Values are validated by
`app.config.from_dict` (the same rules as the TOML file) and an invalid one is refused with its ConfigError message;
a valid config is emitted by `applied` (the controller saves it and swaps the engines)."""
from __future__ import annotations

from PyQt6.QtCore import pyqtSignal
from PyQt6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.config import Config, ConfigError, ModelsConfig, SchedulerConfig, from_dict
from app.ui.remote_llm_form import RemoteLlmForm
from app.ui.theme import ERROR, MUTED
from engines.catalog import by_kind, get

DEFAULT_DEVICE = "System default"


def kokoro_voices() -> list[str]:
    """The 28 English Kokoro voices, from the catalog's file names (no model load)."""
    return sorted(f.name.removesuffix(".bin") for f in get("kokoro-voices-en").files)


def audio_choices() -> tuple[list[str], list[str], str]:
    """(microphones, speakers, a note when devices cannot be listed)."""
    from app.audio.sounddevice_device import DeviceError, list_devices

    try:
        inputs, outputs = list_devices()
    except DeviceError as exc:
        return [], [], str(exc)
    note = "" if inputs and outputs else "no microphone or speaker found: connect one, then reopen Settings"
    return inputs, outputs, note


def _spin(value: int, step: int = 1) -> QSpinBox:
    box = QSpinBox()
    box.setRange(-1_000_000, 1_000_000)  # the config's rules decide what is valid, with their message
    box.setSingleStep(step)
    box.setValue(value)
    return box


def _dspin(value: float) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(-100.0, 100.0)
    box.setDecimals(2)
    box.setSingleStep(0.05)
    box.setValue(value)
    return box


class ModelChooser(QWidget):
    """A catalog id, or (last entry) a file of your own."""

    def __init__(self, ids: list[str], current: str, path: str, file_label: str, file_filter: str):
        super().__init__()
        self.file_label, self.file_filter = file_label, file_filter
        self.combo = QComboBox()
        self.combo.addItems(ids + [file_label])
        self.path = QLineEdit(path)
        self.path.setPlaceholderText("path to the file")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.path, 1)
        row.addWidget(browse)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.combo)
        layout.addLayout(row)
        self.combo.setCurrentText(file_label if path else current)
        self.combo.currentTextChanged.connect(self._sync)
        self._sync()

    def _sync(self) -> None:
        self.path.setEnabled(self.combo.currentText() == self.file_label)

    def _browse(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, self.file_label, "", self.file_filter)
        if name:
            self.path.setText(name)
            self.combo.setCurrentText(self.file_label)

    def value(self, current_id: str) -> tuple[str, str]:
        """(catalog id, user file path); the path is empty when a catalog entry is chosen."""
        if self.combo.currentText() == self.file_label:
            return current_id, self.path.text().strip()
        return self.combo.currentText(), ""


class SettingsDialog(QDialog):
    applied = pyqtSignal(object)  # a validated Config

    def __init__(self, cfg: Config, parent: QWidget | None = None,
                 devices: tuple[list[str], list[str], str] | None = None):
        super().__init__(parent)
        self.setWindowTitle("Cadence settings")
        self.base = cfg
        self.result_config: Config | None = None
        m, llm, t = cfg.models, cfg.llm, cfg.turn
        self.asr = ModelChooser([e.id for e in by_kind("asr")], m.asr, m.asr_path, ".nemo file…",
                                "NeMo models (*.nemo)")
        self.llm = ModelChooser([e.id for e in by_kind("llm")], m.llm, m.llm_path, "GGUF file…",
                                "GGUF models (*.gguf)")
        self.tts = QComboBox()
        self.tts.addItems([e.id for e in by_kind("tts")])
        self.tts.setCurrentText(m.tts)
        self.voice = QComboBox()
        self.voice.addItems(kokoro_voices())
        self.voice.setCurrentText(m.voice)
        self.tts.currentTextChanged.connect(lambda tts: self.voice.setEnabled(tts.startswith("kokoro")))
        self.voice.setEnabled(m.tts.startswith("kokoro"))
        self.compute = QComboBox()
        self.compute.addItems(ModelsConfig.__dataclass_fields__["compute"].metadata["choices"])
        self.compute.setCurrentText(m.compute)
        self.n_threads, self.gpu_layers = _spin(llm.n_threads), _spin(llm.n_gpu_layers)
        self.device_threads, self.max_tokens = _spin(cfg.scheduler.device_threads), _spin(llm.max_reply_tokens, 8)
        models = QFormLayout()
        for label, widget in (("Speech recognizer", self.asr), ("Language model", self.llm), ("Voice engine", self.tts),
                              ("Kokoro voice", self.voice), ("Compute (auto / cpu / cuda)", self.compute),
                              ("LLM threads", self.n_threads),
                              ("GPU layers (-1 = all)", self.gpu_layers), ("Model threads", self.device_threads),
                              ("Longest reply (tokens)", self.max_tokens)):
            models.addRow(label, widget)

        self.mode = QComboBox()
        self.mode.addItems(SchedulerConfig.__dataclass_fields__["mode"].metadata["choices"])
        self.mode.setCurrentText(cfg.scheduler.mode)
        self.vad_threshold, self.turn_threshold = _dspin(t.vad_threshold), _dspin(t.turn_threshold)
        self.pause_ms, self.max_wait_ms = _spin(t.pause_ms, 50), _spin(t.max_wait_ms, 100)
        self.min_barge_in_ms = _spin(t.min_barge_in_ms, 50)
        self.system_prompt = QPlainTextEdit(llm.system_prompt)
        self.system_prompt.setPlaceholderText("empty = the built-in prompt (assets/system_prompt.txt)")
        turn = QFormLayout()
        for label, widget in (("Scheduler mode", self.mode), ("VAD threshold", self.vad_threshold),
                              ("Smart Turn threshold", self.turn_threshold), ("Pause length (ms)", self.pause_ms),
                              ("Max wait (ms)", self.max_wait_ms), ("Barge-in after (ms)", self.min_barge_in_ms),
                              ("System prompt", self.system_prompt)):
            turn.addRow(label, widget)

        inputs, outputs, note = devices if devices is not None else audio_choices()
        self.input_device = self._device_combo(inputs, cfg.audio.input_device)
        self.output_device = self._device_combo(outputs, cfg.audio.output_device)
        audio = QFormLayout()
        audio.addRow("Microphone", self.input_device)
        audio.addRow("Speaker", self.output_device)
        self.echo_cancellation = QCheckBox("Cancel the assistant's own voice (echo cancellation)")
        self.echo_cancellation.setChecked(cfg.audio.echo_cancellation)
        self.noise_suppression = QCheckBox("Suppress background noise")
        self.noise_suppression.setChecked(cfg.audio.noise_suppression)
        self.headphones = QCheckBox("I use headphones (no echo to cancel)")
        self.headphones.setChecked(cfg.audio.headphones)
        for box in (self.echo_cancellation, self.noise_suppression, self.headphones):
            audio.addRow(box)
        self.audio_note = QLabel(note)
        self.audio_note.setWordWrap(True)
        self.audio_note.setStyleSheet(f"color: {MUTED};")
        audio.addRow(self.audio_note)

        self.remote = RemoteLlmForm(llm)
        tabs = QTabWidget()
        for title, form in (("Models", models), ("Conversation", turn), ("Audio", audio)):
            page = QWidget()
            page.setLayout(form)
            tabs.addTab(page, title)
        tabs.insertTab(1, self.remote, "LLM server")
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet(f"color: {ERROR};")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Apply
                                   | QDialogButtonBox.StandardButton.Cancel)
        apply_button = buttons.button(QDialogButtonBox.StandardButton.Apply)
        assert apply_button is not None  # the box was made with an Apply button
        apply_button.clicked.connect(self.apply)
        self.apply_button = apply_button
        buttons.accepted.connect(self._ok)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(tabs)
        layout.addWidget(self.error)
        layout.addWidget(buttons)
        self.resize(560, 520)

    @staticmethod
    def _device_combo(names: list[str], current: str) -> QComboBox:
        combo = QComboBox()
        combo.setEditable(True)  # a device that is unplugged now can still be named
        combo.addItems([DEFAULT_DEVICE] + names)
        combo.setCurrentText(current or DEFAULT_DEVICE)
        return combo

    def values(self) -> dict:
        """The form as a config dict (the shape of the TOML file)."""
        m = self.base.models
        asr, asr_path = self.asr.value(m.asr)
        llm, llm_path = self.llm.value(m.llm)
        device = lambda combo: "" if combo.currentText() == DEFAULT_DEVICE else combo.currentText().strip()  # noqa
        return {
            "models": {"asr": asr, "asr_path": asr_path, "llm": llm, "llm_path": llm_path,
                       "tts": self.tts.currentText(), "voice": self.voice.currentText(),
                       "compute": self.compute.currentText()},
            "llm": {"n_threads": self.n_threads.value(), "n_gpu_layers": self.gpu_layers.value(),
                    "max_reply_tokens": self.max_tokens.value(),
                    "system_prompt": self.system_prompt.toPlainText().strip(), **self.remote.values()},
            "scheduler": {"mode": self.mode.currentText(), "device_threads": self.device_threads.value()},
            "turn": {"vad_threshold": round(self.vad_threshold.value(), 4),
                     "turn_threshold": round(self.turn_threshold.value(), 4), "pause_ms": self.pause_ms.value(),
                     "max_wait_ms": self.max_wait_ms.value(), "min_barge_in_ms": self.min_barge_in_ms.value()},
            "audio": {"input_device": device(self.input_device), "output_device": device(self.output_device),
                      "echo_cancellation": self.echo_cancellation.isChecked(),
                      "noise_suppression": self.noise_suppression.isChecked(),
                      "headphones": self.headphones.isChecked()},
        }

    def validated(self) -> Config | None:
        """The form as a Config, or None with the ConfigError message shown."""
        try:
            cfg = from_dict(self.values(), self.base)
        except ConfigError as exc:
            self.error.setText(str(exc))
            return None
        self.error.setText("")
        return cfg

    def apply(self) -> bool:
        cfg = self.validated()
        if cfg is None:
            return False
        self.result_config = cfg
        if cfg != self.base:
            self.base = cfg
            self.applied.emit(cfg)
        return True

    def _ok(self) -> None:
        if self.apply():
            self.accept()
