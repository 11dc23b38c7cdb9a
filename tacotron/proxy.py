"""Proxy speech corpora synthesised by espeak-ng, written in the LJSpeech layout.

A corpus is fully determined by its ``ProxySpec`` (voice, rate, size, seed, lengths): the
sentences come from a seeded generator over the word list we ship, and espeak-ng is
deterministic. Corpora are built under a temporary name and renamed when complete, so an
interrupted build never leaves a half corpus that looks finished.
"""
from __future__ import annotations

import json
import logging
import os
import random
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

import librosa
import soundfile as sf
from tqdm import tqdm

from tacotron.audio import load_wav
from tacotron.text import check_voice, espeak, normalize, require_espeak

log = logging.getLogger(__name__)
SAMPLE_RATE = 22050  # espeak-ng's native rate; no resampling needed
PROXY_MARKER = "proxy.json"  # the corpus's ProxySpec: marks an espeak-ng corpus (scored by the proxy recogniser)
_WORDS = [w for w in (Path(__file__).with_name("wordlist.txt").read_text().split("\n"))
          if w and not w.startswith("#")]


def cache_root() -> Path:
    """Where generated corpora and mel caches live: $TACOTUNE_CACHE or ~/.cache/tacotune."""
    return Path(os.environ.get("TACOTUNE_CACHE", Path.home() / ".cache" / "tacotune"))


@dataclass
class ProxyOptions:
    """Size and text lengths of a proxy corpus; the voice and rate come from the instance name."""

    n_utts: int = 160
    seed: int = 0
    min_words: int = 2
    max_words: int = 5


@dataclass
class ProxySpec:
    """One proxy dataset: an espeak-ng voice at a speaking rate (words per minute)."""

    voice: str = "en-us"
    rate: int = 170
    n_utts: int = 160
    seed: int = 0
    min_words: int = 2
    max_words: int = 5
    commas: bool = False  # commas between some words: espeak-ng pauses there, so speech leaves the diagonal

    def __post_init__(self) -> None:
        check_voice(self.voice)
        if not 80 <= self.rate <= 450:
            raise ValueError(f"proxy rate={self.rate} is outside espeak-ng's range [80, 450]")
        if self.n_utts < 3:
            raise ValueError(f"proxy n_utts={self.n_utts} must be >= 3 (train, val and test need one each)")
        if not 1 <= self.min_words <= self.max_words:
            raise ValueError(f"proxy words must satisfy 1 <= min_words={self.min_words} "
                             f"<= max_words={self.max_words}")

    @property
    def name(self) -> str:
        return f"{self.voice}@{self.rate}"

    def dirname(self) -> str:
        return (f"{self.voice.replace('+', '_')}_s{self.rate}_n{self.n_utts}_seed{self.seed}"
                f"_w{self.min_words}-{self.max_words}" + ("_commas" if self.commas else ""))

    def sentences(self) -> list[str]:
        """The corpus's sentences, in utterance order."""
        return make_sentences(self.n_utts, self.seed, self.min_words, self.max_words, self.commas)


def parse_instance(name: str, opts: ProxyOptions | None = None) -> ProxySpec:
    """'en-us+f3@180' -> ProxySpec(voice='en-us+f3', rate=180, **opts).

    An optional ':SEED' suffix ('en-gb-x-rp@175:1') picks the sentence seed, so held-out and test
    instances speak other sentences than the training instances (which use ``opts.seed``); a further
    ':MIN-MAX' ('en-us@170:4:8-12') the words per sentence (longer sentences align later). A last
    ':commas' ('en-us@170:4:8-12:commas') puts commas between some of the same sentences' words.
    """
    voice, sep, rest = name.partition("@")
    rate, *suffix = rest.split(":")
    commas = suffix[-1:] == ["commas"]
    if commas:
        suffix.pop()
    seed, words = (suffix + ["", ""])[:2]
    low, dash, high = words.partition("-")
    if (not sep or not voice or not rate.isdigit() or len(suffix) > 2 or (suffix and not seed.isdigit())
            or (len(suffix) == 2 and not (dash and low.isdigit() and high.isdigit()))):
        raise ValueError(f"instance {name!r} must look like 'VOICE@RATE', 'VOICE@RATE:SEED' or "
                         "'VOICE@RATE:SEED:MIN-MAX' (words per sentence), optionally ending ':commas', "
                         "e.g. 'en-us@170' or 'en-us@170:4:8-12'")
    fields = asdict(opts or ProxyOptions()) | ({"seed": int(seed)} if suffix else {})
    fields |= {"min_words": int(low), "max_words": int(high)} if len(suffix) == 2 else {}
    return ProxySpec(voice=voice, rate=int(rate), commas=commas, **fields)


def make_sentences(n: int, seed: int, min_words: int, max_words: int, commas: bool = False) -> list[str]:
    """``n`` seeded pseudo-sentences of ``min_words..max_words`` words from the shipped list; with
    ``commas``, the same sentences with a comma after about one word in four (never the last)."""
    rng = random.Random(seed)
    comma_rng = random.Random(f"commas-{seed}")  # its own stream: the words stay those of the plain set
    sentences = []
    for _ in range(n):
        words = rng.choices(_WORDS, k=rng.randint(min_words, max_words))
        if commas:
            words = [w + "," if i < len(words) - 1 and comma_rng.random() < 0.25 else w for i, w in enumerate(words)]
        sentences.append(" ".join(words).capitalize() + ".")
    return sentences


def _synthesise(text: str, voice: str, rate: int, path: Path) -> None:
    espeak(["-v", check_voice(voice), "-s", str(rate), "-w", str(path)], text)
    # espeak-ng pads with silence; trimming it keeps proxy steps short.
    wav, _ = librosa.effects.trim(load_wav(path, SAMPLE_RATE), top_db=40)
    sf.write(str(path), wav, SAMPLE_RATE, subtype="PCM_16")


def generate_proxy_corpus(spec: ProxySpec, root: Path | None = None, progress: bool = True) -> Path:
    """Build (or reuse) the corpus for ``spec`` under ``root``; returns its folder."""
    root = Path(root) if root is not None else cache_root() / "proxy"
    out = root / spec.dirname()
    if (out / "metadata.csv").exists():
        return out
    require_espeak()
    tmp = root / f".{spec.dirname()}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "wavs").mkdir(parents=True)
    rows = []
    sentences = spec.sentences()
    for i, text in enumerate(tqdm(sentences, desc=f"espeak-ng {spec.name}", disable=not progress)):
        utt_id = f"{spec.voice.replace('+', '_')}-{i:05d}"
        try:
            _synthesise(text, spec.voice, spec.rate, tmp / "wavs" / f"{utt_id}.wav")
        except subprocess.CalledProcessError as err:
            shutil.rmtree(tmp, ignore_errors=True)
            raise ValueError(f"espeak-ng failed for voice {spec.voice!r}: {err.stderr.decode().strip()}") from err
        rows.append(f"{utt_id}|{text}|{normalize(text)}")
    (tmp / "metadata.csv").write_text("\n".join(rows) + "\n")
    (tmp / PROXY_MARKER).write_text(json.dumps(asdict(spec)))
    try:
        tmp.rename(out)
    except OSError:  # another process finished the same corpus first
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("proxy corpus %s: %d utterances in %s", spec.name, spec.n_utts, out)
    return out
