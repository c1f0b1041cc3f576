"""The settings dialog's "Language model server" tab: answer with the local model or with an OpenAI-compatible
server (URL, model name, chat template for the text end-of-turn score), and a "Test connection" button that lists
the server's models. The API key is not a field: it comes from the environment variable the config names, so it is
never written to the config file."""
from __future__ import annotations

import os
import threading

from PyQt6.QtCore import pyqtSignal
from PyQt6.QtWidgets import QComboBox, QFormLayout, QLabel, QLineEdit, QPushButton, QWidget

from app.config import LlmConfig
from app.ui.theme import ERROR, MUTED

LOCAL, REMOTE = "the local model (Models tab)", "an OpenAI-compatible server"
TEMPLATES = {"": "none (the audio decides the end of a turn)", "chatml": "ChatML (Qwen): text score from logprobs"}


class RemoteLlmForm(QWidget):
    tested = pyqtSignal(str, bool)  # (what the test found, whether it worked): delivered on the UI thread

    def __init__(self, llm: LlmConfig):
        super().__init__()
        self.source = QComboBox()
        self.source.addItems([LOCAL, REMOTE])
        self.source.setCurrentText(REMOTE if llm.base_url else LOCAL)
        self.url = QLineEdit(llm.base_url)
        self.url.setPlaceholderText("http://127.0.0.1:8080/v1")
        self.model = QLineEdit(llm.remote_model)
        self.model.setPlaceholderText("empty = the first model the server lists")
        self.template = QComboBox()
        for key, label in TEMPLATES.items():
            self.template.addItem(label, key)
        self.template.setCurrentIndex(list(TEMPLATES).index(llm.remote_chat_template))
        self.key_env = llm.api_key_env
        self.test_button = QPushButton("Test connection")
        self.test_button.clicked.connect(self.test_connection)
        self.result = QLabel(f"API key: from the environment variable {llm.api_key_env} (never saved)")
        self.result.setWordWrap(True)
        self.result.setStyleSheet(f"color: {MUTED};")
        self.tested.connect(self._show)
        form = QFormLayout(self)
        for label, widget in (("Answer with", self.source), ("Server URL", self.url), ("Model name", self.model),
                              ("Chat template", self.template)):
            form.addRow(label, widget)
        form.addRow(self.test_button)
        form.addRow(self.result)
        self.source.currentTextChanged.connect(self._sync)
        self._sync()

    def _sync(self) -> None:
        remote = self.source.currentText() == REMOTE
        for widget in (self.url, self.model, self.template, self.test_button):
            widget.setEnabled(remote)

    def values(self) -> dict:
        """The `llm` keys of this tab (all empty for the local model)."""
        if self.source.currentText() == LOCAL:
            return {"base_url": "", "remote_model": "", "remote_chat_template": ""}
        return {"base_url": self.url.text().strip(), "remote_model": self.model.text().strip(),
                "remote_chat_template": self.template.currentData()}

    def test_connection(self) -> None:
        """Ask the server for its models, off the UI thread; the answer shows under the button."""
        url, model = self.url.text().strip(), self.model.text().strip()
        self.test_button.setEnabled(False)
        self.result.setStyleSheet(f"color: {MUTED};")
        self.result.setText(f"asking {url} …")

        def ask() -> None:
            from engines.llm_remote import RemoteGenerator, RemoteLlmError

            try:
                gen = RemoteGenerator(url, model, api_key=os.environ.get(self.key_env, ""), api_key_env=self.key_env,
                                      first_token_timeout_s=5.0)
                names = gen.check() if model else gen.models()
                self.tested.emit(f"connected: {len(names)} model(s): {', '.join(names[:6]) or 'none listed'}", True)
            except RemoteLlmError as exc:
                self.tested.emit(str(exc), False)
            except Exception as exc:  # a malformed URL and the like: said, never raised into Qt
                self.tested.emit(f"{url}: {type(exc).__name__}: {exc}", False)

        threading.Thread(target=ask, name="test-connection", daemon=True).start()

    def _show(self, text: str, ok: bool) -> None:
        self.test_button.setEnabled(self.source.currentText() == REMOTE)
        self.result.setStyleSheet(f"color: {MUTED if ok else ERROR};")
        self.result.setText(text)
