"""The desktop window (PyQt6 + pyqtgraph): it observes the same session, spans and turn records headless mode runs."""
