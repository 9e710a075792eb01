"""Which language a prompt is in (lingua, offline: its models ship inside the package)."""

from __future__ import annotations

import threading
from typing import Any

MIN_CHARS = 12  # shorter texts are guessed too unreliably to route on


class Detector:
    """Built on first use (it costs memory and a moment), then shared by the app's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._detector: Any = None

    def _get(self) -> Any:
        with self._lock:
            if self._detector is None:
                from lingua import LanguageDetectorBuilder

                self._detector = LanguageDetectorBuilder.from_all_languages().with_low_accuracy_mode().build()
            return self._detector

    def detect(self, text: str) -> str | None:
        """ISO 639-1 code of the text's language, or None when unsure."""
        if len(text.strip()) < MIN_CHARS:
            return None
        found = self._get().detect_language_of(text)
        if found is None:
            return None
        return str(found.iso_code_639_1.name).lower()
