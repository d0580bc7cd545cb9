"""Title normal forms: the text a title is compared by (matching, and series grouping later).

Pure functions, no I/O. Two forms:

- :func:`normalise` — a readable, space-separated form: ``"Rocky II"`` -> ``"rocky 2"``,
  ``"Amélie"`` -> ``"amelie"``, ``"Matrix, The"`` -> ``"matrix"``, ``"Fast & Furious"`` ->
  ``"fast and furious"``.
- :func:`title_key` — the same without spaces (``"spider man"`` and ``"spiderman"`` both
  ``"spiderman"``), the grouping key and the string edit distances are measured on, as beets
  compares strings with every non-alphanumeric character removed
  (``beets/autotag/distance.py``, ``_string_dist_basic``).

The steps of :func:`normalise`, in order:

1. Unicode NFKC (compatibility forms: ``"ﬁ"`` -> ``"fi"``, full-width letters, ``"Ⅱ"``).
2. A trailing article after a comma moves to the front (``"Matrix, The"`` -> ``"The Matrix"``;
   library sort titles, beets' ``SD_END_WORDS``, Kodi's ``_strip_trailing_article``).
3. Transliteration to ASCII with anyascii (https://github.com/anyascii/anyascii, ISC licence;
   chosen over Unidecode, which is GPL): ``"Зеркала"`` -> ``"Zerkala"``, ``"Tükrök"`` ->
   ``"Tukrok"``, ``"ß"`` -> ``"ss"``. Then lower case.
4. Dotted acronyms lose their dots (``"R.I.P.D."`` -> ``"ripd"``, ``"U.N.C.L.E."`` ->
   ``"uncle"``), so they equal the undotted spelling, even inside a dotted release name; after
   step 6, consecutive one-letter words join the same way (``"R I P D"`` -> ``"ripd"``). In a
   dotted name two one-letter words in a row cannot be told from an acronym
   (``"Plan.B.A.Movie"`` -> ``"plan ba movie"``).
5. ``&`` reads ``and`` (beets' ``SD_REPLACE``).
6. Every other character that is not a letter, a digit or an apostrophe separates words
   (release names use ``.``/``_``/``-`` for spaces; ``:`` and ``!`` are decoration).
7. One leading article is dropped (:data:`LEADING_ARTICLES`; ``l'`` elision included), unless
   it is the only word. Optional: the distance in :mod:`.match` compares both with and without.
   An article written into the next word (``"Lhypothese"``, ``"thepacific"``) is not seen.
8. Apostrophes are removed inside words (``"Ocean's"`` -> ``"oceans"``).
9. Roman numerals I-XXXIX that are not the first word become Arabic (``"Rocky II"`` ->
   ``"rocky 2"``, ``"Star Wars Episode IV"`` -> ``"star wars episode 4"``), the mapping
   Radarr applies when comparing titles (``ParsingService._arabicRomanNumeralMappings``). The
   first word is left alone: ``"I, Robot"``, ``"X-Men"``, ``"V for Vendetta"``, ``"XXX"``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache

from anyascii import anyascii

LEADING_ARTICLES: frozenset[str] = frozenset(
    {
        "the", "a", "an",  # English
        "le", "la", "les", "l'",  # French (and Italian la/l')
        "der", "die", "das",  # German
        "el", "los", "las",  # Spanish (la above)
        "il", "gli",  # Italian
    }
)  # fmt: skip
"""Articles dropped from the start of a title: the issue's list (English, French, German,
Spanish, Italian). Ambiguous words that open ordinary English titles are left out (Italian
``i``/``lo``, Portuguese ``o``); ``die``/``la``/``le`` stay, so ``"Die Hard"`` normalises to
``"hard"`` — both sides of a comparison get the same treatment, and :mod:`.match` weighs an
article difference at 0.1 (beets' weight for ``^the``) instead of ignoring it."""

TRAILING_ARTICLES: frozenset[str] = LEADING_ARTICLES
"""Articles recognised after a final comma (``"Matrix, The"``)."""

_TRAILING_ARTICLE = re.compile(
    r"^(?P<rest>.+?),\s*(?P<article>" + "|".join(sorted(map(re.escape, TRAILING_ARTICLES))) + r")\s*$",
    re.IGNORECASE,
)
_ACRONYM = re.compile(r"(?<![a-z0-9'])[a-z](?:\.[a-z])+\.?(?![a-z0-9])")
_SEPARATORS = re.compile(r"[^a-z0-9' ]+")
_SPACES = re.compile(r"\s+")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'", "\u00b4": "'", "\u02bc": "'"})
_ROMAN = re.compile(r"^(?P<tens>x{0,3})(?P<units>ix|iv|v?i{0,3})$")
_ROMAN_UNITS = {"": 0, "i": 1, "ii": 2, "iii": 3, "iv": 4, "v": 5, "vi": 6, "vii": 7, "viii": 8, "ix": 9}
_BRACKETED = re.compile(r"\s*(?:\([^()]*\)|\[[^\[\]]*\])\s*")


def roman_to_int(word: str) -> int | None:
    """The value of ``word`` as a canonical Roman numeral from I to XXXIX (case-insensitive),
    else ``None``. Canonical means subtractive notation (``IV``, not ``IIII``); the range covers
    sequel and episode numbers and keeps words such as ``"mix"`` or ``"dc"`` out."""
    match = _ROMAN.match(word.lower())
    if not match or not word:
        return None
    return 10 * len(match["tens"]) + _ROMAN_UNITS[match["units"]]


def transliterate(text: str) -> str:
    """``text`` (any script) as ASCII: NFKC, then anyascii's transliteration (Cyrillic, Greek,
    CJK, accents, ligatures). Case is kept."""
    return anyascii(unicodedata.normalize("NFKC", text))


def move_trailing_article(title: str) -> str:
    """``"Matrix, The"`` -> ``"The Matrix"``; ``"Avventura, L'"`` -> ``"L'Avventura"``; any
    other title unchanged (surrounding whitespace stripped)."""
    title = unicodedata.normalize("NFKC", title).translate(_APOSTROPHES).strip()
    match = _TRAILING_ARTICLE.match(title)
    if not match:
        return title
    article, rest = match["article"], match["rest"].strip()
    return f"{article}{rest}" if article.endswith("'") else f"{article} {rest}"


def _words(title: str) -> list[str]:
    """Steps 1-6 of the module docstring: lower-case ASCII words, apostrophes still in."""
    text = transliterate(move_trailing_article(title)).lower()
    text = _ACRONYM.sub(lambda m: m.group(0).replace(".", ""), text)
    text = text.replace("&", " and ")
    return _SEPARATORS.sub(" ", text).split()


def _join_initials(words: list[str]) -> list[str]:
    """Consecutive one-letter words are one acronym spelled with spaces (``"r i p d"`` ->
    ``"ripd"``, as parsers give ``R.I.P.D.``)."""
    out: list[str] = []
    run: list[str] = []
    for word in [*words, ""]:
        if len(word) == 1 and word.isalpha():
            run.append(word)
            continue
        out.extend(["".join(run)] if len(run) > 1 else run)
        run = []
        if word:
            out.append(word)
    return out


def _drop_leading_article(words: list[str]) -> list[str]:
    if len(words) < 2:
        if words and "'" in words[0]:  # "l'avventura" as one word
            head, _, tail = words[0].partition("'")
            if f"{head}'" in LEADING_ARTICLES and tail:
                return [tail]
        return words
    first = words[0]
    if first in LEADING_ARTICLES:
        return words[1:]
    head, sep, tail = first.partition("'")
    if sep and f"{head}'" in LEADING_ARTICLES and tail:
        return [tail, *words[1:]]
    return words


def _numerals(words: Iterable[str]) -> list[str]:
    out: list[str] = []
    for index, word in enumerate(words):
        value = roman_to_int(word) if index else None
        out.append(str(value) if value else word)
    return out


@lru_cache(maxsize=8192)
def normalise(title: str, *, drop_article: bool = True) -> str:
    """The normal form of ``title``: lower-case ASCII words separated by single spaces, with
    the nine steps of the module docstring (``drop_article=False`` skips step 7).

    ``normalise("The Matrix")`` -> ``"matrix"``; ``normalise("Rocky II")`` ->
    ``"rocky 2"``; ``normalise("Les Misérables")`` -> ``"miserables"``; ``normalise("")`` ->
    ``""``. Idempotent: ``normalise(normalise(t)) == normalise(t)`` for titles whose second
    word is not itself an article. Pure, so results are kept in a bounded cache (8192
    titles: a candidate list's titles come back for every query variant and search)."""
    words = _join_initials(_words(title))
    if drop_article:
        words = _drop_leading_article(words)
    words = [w.replace("'", "") for w in words]
    return " ".join(w for w in _numerals(words) if w)


def title_key(title: str, *, drop_article: bool = True) -> str:
    """:func:`normalise` without spaces: the key two spellings of one title share
    (``"Spider-Man"``, ``"Spiderman"``, ``"SPIDER.MAN"`` -> ``"spiderman"``)."""
    return normalise(title, drop_article=drop_article).replace(" ", "")


def strip_bracketed(title: str) -> str:
    """``title`` without its parenthesised or bracketed parts: ``"Fight Club (Russian
    version)"`` -> ``"Fight Club"``. Used by the distance to weigh such parts less (beets'
    ``SD_PATTERNS`` weigh ``(...)`` and ``[...]`` at 0.3)."""
    return _SPACES.sub(" ", _BRACKETED.sub(" ", title)).strip()


_EAST_ASIAN = frozenset(
    {"CJK", "HIRAGANA", "KATAKANA", "KATAKANA-HIRAGANA", "HANGUL", "BOPOMOFO", "IDEOGRAPHIC"}
)


def _script(char: str) -> str:
    """The script of a letter, from its Unicode character name's first word (``LATIN``,
    ``CYRILLIC``, ``GREEK`` ...). Han, kana, hangul and bopomofo count as one script, ``CJK``:
    a Japanese title mixes kanji and kana as a matter of course."""
    name = unicodedata.name(char, "")
    script = name.split(" ", 1)[0] if name else "UNKNOWN"
    return "CJK" if script in _EAST_ASIAN else script


_RUN_EDGES = " \t/|:;,-\u2013\u2014"
"""Separators trimmed from the ends of a script run (``"Зеркала / Mirrors"``)."""


def script_runs(title: str) -> list[str]:
    """The parts of a title written in different scripts, when it mixes them:
    ``"Зеркала Mirrors"`` -> ``["Зеркала", "Mirrors"]``, ``"巴哈姆特之怒Manaria Friends"`` ->
    ``["巴哈姆特之怒", "Manaria Friends"]`` (trackers and fansub groups join a local title and
    the original one). Characters that are not letters (digits, spaces, punctuation) stay
    with the run before them; a run of fewer than two letters joins its neighbour, so a stray
    initial does not split a title; separators at a run's ends are trimmed. A title in one
    script gives ``[title]`` (stripped)."""
    original, title = title, unicodedata.normalize("NFKC", title).strip()
    runs: list[list[str]] = []  # [script, text]
    for char in title:
        script = _script(char) if char.isalpha() else None
        if runs and (script is None or script == runs[-1][0] or runs[-1][0] == ""):
            if runs[-1][0] == "" and script is not None:
                runs[-1][0] = script
            runs[-1][1] += char
        else:
            runs.append([script or "", char])
    merged: list[list[str]] = []
    for run in runs:
        if merged and sum(c.isalpha() for c in run[1]) < 2:
            merged[-1][1] += run[1]
        elif merged and sum(c.isalpha() for c in merged[-1][1]) < 2:
            merged[-1] = [run[0], merged[-1][1] + run[1]]
        else:
            merged.append(run)
    parts = [text.strip(_RUN_EDGES) for _, text in merged]
    parts = [p for p in parts if p]
    return parts if len(parts) > 1 else [original.strip()]


_ALSO_KNOWN_AS = re.compile(r"\s+(?:aka|a\.k\.a\.?)\s+|\s+/\s+", re.IGNORECASE)


def title_variants(title: str) -> list[str]:
    """The titles a parsed title may stand for: itself, then each part of an ``"A AKA B"`` or
    ``"A / B"`` title (Radarr's ``AlternativeTitleRegex`` splits on ``AKA`` and ``/``), then
    each script run of a mixed-script title (:func:`script_runs`). No duplicates, order kept;
    an empty title gives ``[]``."""
    return list(_title_variants(title))


@lru_cache(maxsize=4096)
def _title_variants(title: str) -> tuple[str, ...]:
    """Cached body of :func:`title_variants`."""
    title = title.strip()
    found: list[str] = []
    for candidate in [title, *_ALSO_KNOWN_AS.split(title)]:
        for part in [candidate, *script_runs(candidate)]:
            part = part.strip()
            if part and part not in found:
                found.append(part)
    return tuple(found)
