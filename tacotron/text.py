"""Text frontend: normalisation and symbol ids for characters or espeak-ng IPA phonemes.

Characters outside the symbol set never vanish silently: ``TextFrontend.encode`` counts them
in ``unknown_counts`` and, with ``strict=True``, raises instead (the system we replace dropped
every Cyrillic letter without a word).
"""
from __future__ import annotations

import collections
import functools
import re
import shutil
import subprocess
from dataclasses import dataclass, field

PAD = "_"
EOS = "~"
_PUNCTUATION = "!'(),.:;? -\""
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
# IPA symbols that espeak-ng emits for English voices, plus stress and length marks.
_IPA = "ɑɐɒæɓʙβɔɕçɗɖðʤəɘɚɛɜɝɞɟʄɡɠɢʛɦɧħɥʜɨɪʝɭɬɫɮʟɱɯɰŋɳɲɴøɵɸθœɶʘɹɺɾɻʀʁɽʂʃʈʧʉʊʋⱱʌɣɤʍχʎʏʑʐʒʔʡʕʢǀǁǂǃˈˌːˑʼʴʰʱʲʷˠˤ˞↓↑→↗↘ᵻ"

CHAR_SYMBOLS = [PAD, EOS] + list(_PUNCTUATION) + list(_LETTERS)
PHONEME_SYMBOLS = CHAR_SYMBOLS + list(_IPA)


_CURRENCIES = {"$": "dollars", "£": "pounds", "€": "euros"}
_SYMBOL_WORDS = {"%": " percent ", "&": " and ", "+": " plus ", "@": " at ", "#": " number ", "=": " equals "}
_NUMBER = re.compile(r"(?P<currency>[$£€])?(?P<number>\d+(?:,\d{3})*(?:\.\d+)?)(?P<ordinal>st|nd|rd|th)?")


@functools.cache
def _inflect():
    # Imported on first use: inflect takes about 2.4 s to import (typeguard instruments it), which every
    # spawned worker and Ray actor would pay, while only texts with digits need it.
    import inflect
    return inflect.engine()


def _spell_number(match: re.Match) -> str:
    number = match["number"].replace(",", "")
    words = _inflect().number_to_words(number + (match["ordinal"] or ""))
    currency = match["currency"]
    return f" {words} {_CURRENCIES[currency]} " if currency else f" {words} "


def expand_numbers(text: str) -> str:
    """Digits, currency and common symbols spelled out in words ('£3' -> 'three pounds', '21st' ->
    'twenty-first', '50%' -> 'fifty percent'), as NVIDIA's english_cleaners do (with ``inflect``)."""
    text = _NUMBER.sub(_spell_number, text)
    for symbol, words in _SYMBOL_WORDS.items():
        text = text.replace(symbol, words)
    return text


def normalize(text: str) -> str:
    """Numbers and symbols spelled out, lower-cased, whitespace collapsed: the text every model reads."""
    spaced = re.sub(r"\s+", " ", expand_numbers(text).strip().lower())
    return re.sub(r" ([,.;:!?])", r"\1", spaced)


def transcript(text: str) -> str:
    """What a listener can hear of ``text``: its normalised letters, apostrophes and word breaks, the
    reference a recogniser's output is scored against (punctuation and hyphens are not spoken)."""
    return re.sub(r"\s+", " ", re.sub(r"[^a-z' ]", " ", normalize(text))).strip()


VOICE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_+\-]*")  # espeak-ng voice names, e.g. en-us+f3


def require_espeak() -> None:
    if shutil.which("espeak-ng") is None:
        raise FileNotFoundError("espeak-ng is not installed; proxy speech and phonemes need it "
                                "(apt-get install espeak-ng)")


def espeak(options: list[str], text: str) -> subprocess.CompletedProcess:
    """Run espeak-ng with ``options`` on ``text``. The text goes through stdin (``--stdin``), never the
    command line, so a transcript that starts with ``-`` or holds shell metacharacters is spoken
    literally: it can be neither an option nor a command (and no shell is involved)."""
    require_espeak()
    return subprocess.run(["espeak-ng", *options, "--stdin"], input=text.encode(), check=True, capture_output=True)


def check_voice(voice: str) -> str:
    if not VOICE_PATTERN.fullmatch(voice):
        raise ValueError(f"espeak-ng voice {voice!r} is not a voice name (letters, digits, '-', '_', '+')")
    return voice


def phonemize(text: str, voice: str = "en-us") -> str:
    """IPA transcription by espeak-ng (deterministic)."""
    return normalize(espeak(["-q", "--ipa", "-v", check_voice(voice)], text).stdout.decode())


@dataclass
class TextFrontend:
    """Maps text to symbol ids. ``mode`` is 'chars' or 'phonemes'."""

    mode: str = "chars"
    voice: str = "en-us"
    strict: bool = False
    unknown_counts: collections.Counter = field(default_factory=collections.Counter)

    def __post_init__(self) -> None:
        if self.mode not in ("chars", "phonemes"):
            raise ValueError(f"text.mode={self.mode!r} is not allowed; choose 'chars' or 'phonemes'")
        symbols = CHAR_SYMBOLS if self.mode == "chars" else PHONEME_SYMBOLS
        self.symbols = symbols
        self._ids = {s: i for i, s in enumerate(symbols)}

    @property
    def n_symbols(self) -> int:
        return len(self.symbols)

    def encode(self, text: str) -> list[int]:
        """Normalised text (or its phonemes) to ids, ending with EOS."""
        clean = phonemize(text, self.voice) if self.mode == "phonemes" else normalize(text)
        unknown = [c for c in clean if c not in self._ids]
        if unknown:
            if self.strict:
                raise ValueError(f"text {text!r} has symbols outside the {self.mode} set: {sorted(set(unknown))}")
            self.unknown_counts.update(unknown)
        return [self._ids[c] for c in clean if c in self._ids] + [self._ids[EOS]]
