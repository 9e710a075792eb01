"""Languages as other catalogues name them: a BCP-47 tag's language in the EU language authority table.

The table of two-letter (ISO 639-1) to three-letter (ISO 639-3) codes is data shipped with the package
(``core/data/languages.json``, with its source); this module only reads it.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

EU_LANGUAGE = "http://publications.europa.eu/resource/authority/language/"


@cache
def _iso639_3() -> dict[str, str]:
    raw = json.loads(resources.files("sovstack.core").joinpath("data/languages.json").read_text("utf-8"))
    return dict(raw["iso639_1_to_3"])


def eu_language(tag: str) -> str | None:
    """The EU language authority IRI of a BCP-47 tag's language (``hi-IN`` → …/language/HIN); None if unknown."""
    primary = tag.split("-", 1)[0].lower()
    code = _iso639_3().get(primary) if len(primary) == 2 else primary.upper() if len(primary) == 3 else None
    return EU_LANGUAGE + code if code else None
