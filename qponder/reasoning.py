"""What a quality reasoning says: which distortion kinds it asserts or denies, how severe it
calls them, and the overall quality band it states.

:func:`analyse_reasoning` reads a ``<think>`` text (or a whole completion) sentence by
sentence with a small documented lexicon, and never guesses: a kind is asserted only on an
explicit cue, a mention it cannot place (a hedge such as "there may be blur", an aspect named
without a verdict such as "let me check the exposure") is ``unclear``, and a sentence with
nothing the lexicon knows is counted in ``unknown_sentences``.

Only readable text is read (:func:`readable_sentence`): a sentence of 2 to 80 words that
repeats no word three times in a row and whose distinct words are at least half its words
(from 4 words on); a sentence repeated word for word counts once, its copies as
unreadable. Other sentences are counted in ``unreadable_sentences`` and assert nothing. A
reasoning whose readable sentences hold less than half of its words is unreadable as a
whole (``readable`` False): babble such as an untrained model's "Noiseards yo washeai
Noiseards yo washeai ..." then asserts, denies and states nothing, however many kind words
it repeats.

The lexicon
-----------
:data:`KINDS` maps each shared distortion kind to four lists of regular expressions (matched
case-insensitively on whole words; the longest match wins where two overlap):

- ``defects``: words that assert the kind ("blurry", "grain", "blocking", "blown highlights");
- ``clean``: words that say the aspect is fine ("crisp", "in focus", "noise-free"). By this
  module's choice, "crisp", "sharp" and "in focus" deny blur;
- ``properties``: the good property the kind takes away ("sharpness", "contrast",
  "saturation"): a verdict decides ("contrast is natural" denies, "poor contrast" asserts),
  and so does its lack ("lacks contrast", "low contrast", "loss of saturation" assert);
- ``aspects``: neutral names of the aspect ("exposure", "white balance"): only a verdict
  decides ("exposure is balanced" denies, "the exposure is off" asserts).

Around the cues: :data:`AMBIGUOUS` cues ("artefacts", "blocks", "washed out", "banding")
belong to the first of their candidate kinds that another cue of the same sentence names,
else to their default (the first); :data:`NOT_DEFECTS` are phrases that contain a cue word but
name no defect ("flat areas", "soft light", "blurred background", "bokeh"); :data:`VERDICTS`
are the good/bad words that decide for properties and aspects (and turn "noise looks fine"
into a denial); :data:`NEGATORS` ("no", "not", "without", "free of", "lacks", "low", "none",
"absent", ...) flip the group of coordinated cues that follows them ("no noise or grain"), or
the one before them when nothing follows ("noise is not visible"), or the verdict right after
them ("not a problem"); negation never crosses a clause boundary (``;``, "but", "while",
"apart from", ", and", ", with", and "and" before a new subject or a severity word), so
"there is no noise, but strong blur" asserts blur. Words of quantity deny rather than grade:
"low noise", "minimal noise", "negligible noise", "little noise" deny noise, while "a little
noise" asserts it at level 1. A negated severity qualifies the severity, not the kind ("the blur
is not severe" asserts blur, with no level). :data:`SEVERITY` maps severity words to levels
1..5 (slight, faint, a little -> 1; mild, noticeable -> 2; moderate, clear -> 3; strong,
heavy, pronounced -> 4; severe, extreme -> 5); a severity word qualifies the cue right after
it ("strong blur") or else the one before it in its clause ("the noise is strong"); a kind
asserted several times keeps its highest level. :data:`HEDGES` ("may", "might", "possibly",
"if any", "hard to tell") make every mention of their clause unclear. An aspect label
("Noise: minimal noise ...") is read as a label, not as a mention, when what follows it has
cues of its own. Words about defects in general (:data:`GENERAL`), negated ("no visible
distortions"), or :data:`CLEAN_CLAIM` words ("pristine") deny every kind not asserted.
:data:`BANDS` maps quality-band words (bad, poor, fair, good, excellent and their synonyms)
to 1..5; a band is read only where it qualifies the quality ("the quality is fair, leaning
towards good", "a poor-quality image", "overall, a good image", "I would rate it as fair").
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from qponder.parsing import parse_completion

ASSERTED = "asserted"
DENIED = "denied"
UNCLEAR = "unclear"  # named, but the reasoning does not say whether it is present
NOT_MENTIONED = "not_mentioned"

_COL = r"colou?rs?"
_ART_WORDS = r"artefacts?|artifacts?"


@dataclass(frozen=True)
class KindCues:
    """The lexicon of one distortion kind (regular expressions, matched on whole words).

    Attributes:
        meaning: What the kind covers.
        defects: Cues that assert the kind.
        clean: Cues that say the aspect is fine (deny the kind).
        properties: The good property the kind removes: decided by a verdict or by its lack.
        aspects: Neutral names of the aspect: decided by a verdict only.
    """

    meaning: str
    defects: tuple[str, ...]
    clean: tuple[str, ...] = ()
    properties: tuple[str, ...] = ()
    aspects: tuple[str, ...] = ()


KINDS: dict[str, KindCues] = {
    "blur": KindCues(
        "loss of sharpness: defocus, motion blur, camera shake, smoothing by denoising",
        (
            r"blur(?:s|red|ry|ring|riness)?",
            r"(?:motion|gaussian|lens|defocus|focus|camera|directional|edge) blur",
            r"out[- ]of[- ]focus",
            r"defocus(?:s?ed)?",
            r"unfocus(?:s?ed)",
            r"mis-?focus(?:s?ed)?",
            r"soft(?:ness|[- ]looking)?",
            r"soften(?:s|ed|ing)?",
            r"smear(?:s|ed|ing|y)?",
            r"smudg(?:e|es|ed|ing|y)",
            r"fuzz(?:y|iness)",
            r"camera shake",
            r"shak(?:y|iness)",
            r"mushy",
            r"(?:plastic|waxy|painterly)(?: look| appearance| texture)?",
            r"over-?smooth(?:ed|ing)",
            r"noise reduction",
            r"denois(?:ing|ed)",
        ),
        clean=(
            r"sharp(?:ly)?(?: focused)?",
            r"tack[- ]sharp",
            r"crisp(?:ly|ness)?",
            r"in (?:sharp |good |perfect |proper |accurate )?focus",
            r"well[- ]focus(?:s?ed)",
            r"(?:well|clearly|sharply)[- ]defined",
        ),
        properties=(r"sharpness", r"focus", r"clarity", r"definition", r"acutance"),
    ),
    "noise": KindCues(
        "random pixel variation: sensor noise, grain, impulse (salt-and-pepper) noise",
        (
            r"nois(?:e|y|iness)",
            r"(?:sensor|luminance|chroma|chrominance|colou?r|gaussian|impulse|shot|"
            r"high[- ]iso|pink|pattern|multiplicative|additive|random) noise",
            r"grain(?:y|iness|s)?",
            r"speckl(?:e|es|ed|ing)",
            r"salt[- ]and[- ]pepper",
            r"(?:scattered|isolated|stray|random) (?:black(?: and white)? |white |bright |dark |"
            r"colou?red )?(?:pixels|dots|specks)",
            r"mottl(?:ed|ing)",
            r"hot pixels",
        ),
        clean=(r"noise[- ]free", r"noiseless", r"grain[- ]free"),
    ),
    "compression": KindCues(
        "codec damage: JPEG/JPEG 2000 blocking, ringing, mosquito noise",
        (
            r"compress(?:ion|ed)",
            r"(?:over|heavily|highly|badly)[- ]?compressed",
            r"jpe?g(?: ?2000)?",
            r"jp2k?",
            r"codec",
            r"bit[- ]?rate",
            r"block(?:ing|iness)",
            r"macro-?block(?:s|ing)?",
            r"ringing",
            r"mosquito(?: noise)?",
            r"dct",
            r"(?:compression|jpe?g|codec) (?:" + _ART_WORDS + r"|damage|noise)",
        ),
        clean=(r"uncompressed", r"lossless"),
    ),
    "exposure": KindCues(
        "brightness: over- or under-exposure, clipped highlights, crushed shadows",
        (
            r"over-?expos(?:ed|ure)",
            r"under-?expos(?:ed|ure)",
            r"(?:blown|clipped|burn(?:ed|t))(?:[- ]out)? (?:highlights?|whites|skies|sky|areas|"
            r"shadows|blacks)",
            r"highlights? (?:are |is |look |appear )?(?:blown|clipped|burn(?:ed|t))(?: out)?",
            r"blown[- ]out",
            r"clipp(?:ed|ing)",
            r"burn(?:ed|t)[- ]out",
            r"wash(?:es|ed|ing)? out (?:the )?(?:bright|highlights?|light|skies|sky)\w*",
            r"washed[- ]out (?:highlights|skies|sky|bright areas)",
            r"(?:too|overly|excessively|far too|very) (?:dark|bright|light|dim)",
            r"(?:image|photo|photograph|picture|scene|shot) (?:is|looks|appears|seems) (?:(?:quite|"
            r"rather|fairly|somewhat|a bit|slightly) )?(?:dark|dim|murky)",
            r"crushed (?:shadows|blacks)",
            r"shadows? (?:are |is )?crushed",
            r"(?:loss|lack) of (?:shadow|highlight) detail",
            r"(?:shadow|highlight) detail (?:is |was )?lost",
            r"under-?lit",
            r"over-?bright",
            r"murky",
            r"dim(?:ly lit)?",
            r"brightness (?:shift|change|distortion)",
            r"mean shift",
            r"brightened",
            r"darkened",
        ),
        clean=(r"(?:well|correctly|properly|nicely)[- ]exposed",),
        properties=(r"brightness",),
        aspects=(r"exposure", r"lighting", r"illumination"),
    ),
    "contrast": KindCues(
        "tonal range: low or excessive contrast, flat or hazy tones",
        (
            r"low[- ]contrast",
            r"contrast (?:loss|reduction|change|distortion|shift)",
            r"flat(?:[- ]looking)?",
            r"hazy",
            r"haziness",
            r"muddy",
            r"lifeless",
            r"milky",
            r"(?:tonal|dynamic) range (?:is |was |looks |appears )?(?:compressed|narrow|limited)",
            r"compressed (?:tonal|dynamic) range",
            r"(?:tonal|dynamic)[- ]range compression",
            r"(?:narrow|limited) (?:tonal|dynamic) range",
        ),
        clean=(r"(?:full|rich|punchy) contrast", r"contrast (?:is|looks) (?:full|rich|punchy)"),
        properties=(r"contrast", r"tonal range", r"dynamic range"),
    ),
    "colour": KindCues(
        "colour: saturation shifts, casts, unnatural hues, colour quantisation, fringing",
        (
            r"(?:over|under|de)-?saturat(?:ed|ion)",
            r"saturation (?:shift|change|loss|boost|distortion|error)s?",
            _COL + r" (?:cast|shift|distortion|error|bleed(?:ing)?|diffusion|fringing|fringes|"
            r"quantis?z?ation|tint)s?",
            r"(?:green|magenta|blue|yellow|orange|red|purple|cyan|warm|cool|cold)(?:ish)? "
            r"(?:cast|tint)s?",
            r"tint(?:ed)?",
            r"(?:chromatic|chroma) aberrations?",
            r"purple fring(?:e|es|ing)",
            r"garish",
            r"lurid",
            r"false " + _COL,
            r"unnatural (?:hues?|" + _COL + r"|skin tones?)",
            r"washed[- ]out " + _COL,
            _COL + r" (?:are |look |appear |seem )?washed[- ]out",
            r"(?:dull|muted|faded|drab) " + _COL,
            r"(?:reduced|limited) (?:colou?r )?palette",
            r"hue shifts?",
        ),
        properties=(_COL, r"saturation", r"colou?rfulness", r"vibrancy"),
        aspects=(
            r"colou?r (?:rendition|reproduction|balance|accuracy|fidelity|rendering|grading)",
            r"white balance",
            r"hues?",
            r"skin tones?",
        ),
    ),
    "resolution": KindCues(
        "spatial resolution: pixelation, upscaling, jagged edges, aliasing",
        (
            r"pixell?at(?:ed|ion|ing|e)",
            r"pixel(?:is|iz)ed",
            r"low[- ]res(?:olution)?",
            r"upscal(?:e|es|ed|ing)",
            r"up-?sampl(?:ed|ing)",
            r"jagg(?:ed|ies|y)(?: edges| lines)?",
            r"stair[- ]?step(?:ping|ped|s)?",
            r"alias(?:ing|ed)",
            r"mosaic(?:ked)?",
            r"(?:visible|large|square|coarse) pixels",
        ),
        clean=(r"high[- ]res(?:olution)?",),
        properties=(r"resolution",),
    ),
    "artefacts": KindCues(
        "other structural artefacts: halos from over-sharpening, banding, jitter, misplaced "
        "patches, colour blocks, transmission errors",
        (
            r"halo(?:s|es|ing)?",
            r"over-?sharpen(?:ed|ing)",
            r"(?:excessive|heavy|aggressive|strong) sharpening",
            r"sharpening (?:" + _ART_WORDS + r"|halos?)",
            r"jitter(?:ed|ing|y)?",
            r"ghost(?:ing|ed|s)?",
            r"false contours?",
            r"glitch(?:es|y|ed)?",
            r"corrupt(?:ed|ion)",
            r"transmission errors?",
            r"(?:misplaced|displaced|shifted|misaligned) (?:patches|blocks|regions|tiles)",
            r"tearing",
            r"moir[eé](?: patterns?)?",
            r"colou?r(?:ed)? blocks?",
            r"(?:block|patch)[- ]wise distortions?",
            r"dither(?:ing|ed)(?: patterns?)?",
        ),
    ),
}
KIND_NAMES: tuple[str, ...] = tuple(KINDS)

# cue -> candidate kinds, the default first: the cue goes to the first candidate that another
# cue of the same sentence names ("JPEG ... visible blocks" -> compression)
AMBIGUOUS: dict[str, tuple[str, ...]] = {
    _ART_WORDS + r"|artefacting|artifacting": ("artefacts", "compression", "resolution"),
    r"block(?:s|y)": ("compression", "resolution", "artefacts"),
    r"washed[- ]out|wash(?:es|ed)? out": ("colour", "exposure", "contrast"),
    r"faded": ("colour", "contrast"),
    r"band(?:ing|ed)|posteri[sz](?:ed|ation|ing)|contouring": (
        "artefacts",
        "colour",
        "compression",
    ),
    r"quantis?z?ation(?: noise| (?:" + _ART_WORDS + "))?": ("artefacts", "colour", "compression"),
}

# phrases with a cue word that name no defect (content, deliberate style): read as neutral
NOT_DEFECTS: tuple[str, ...] = (
    r"flat (?:areas?|regions?|surfaces?|patches|parts|zones|fields?|backgrounds?|walls?|"
    r"colou?r fields?|lighting areas)",
    r"wood grain",
    r"soft (?:light(?:ing)?|shadows?|tones?|colou?rs?|pastels?|gradients?|skin|fur|fabric)",
    r"(?:light|lighting) (?:is |looks )?soft",
    r"(?:background|backdrop)(?: is| appears| looks)? (?:nicely |pleasantly |intentionally |"
    r"deliberately |slightly |softly )?(?:blurred|blurry|out of focus|soft|defocused)",
    r"(?:blurred|blurry|soft|defocused|out-of-focus) (?:background|backdrop)",
    r"bokeh",
    r"shallow depth of field",
    r"sharp contrast",
    r"low[- ]light",
    r"high[- ]frequency",
)

SEVERITY: dict[str, int] = {
    **dict.fromkeys(
        (
            "slight", "slightly", "faint", "faintly", "subtle", "subtly", "minor", "marginal",
            "a little", "a bit of", "a touch of", "a trace of", "a hint of", "traces of",
            "hints of", "very mild", "very slight", "very light", "tiny",
            "barely noticeable", "barely visible", "barely perceptible", "hardly noticeable",
            "hardly visible", "hardly perceptible", "just noticeable", "low-level",
        ),
        1,
    ),
    **dict.fromkeys(
        (
            "mild", "mildly", "noticeable", "noticeably", "modest", "a small amount of",
            "visible on close inspection", "somewhat",
        ),
        2,
    ),
    **dict.fromkeys(
        (
            "moderate", "moderately", "clear", "clearly visible", "clearly noticeable",
            "evident", "medium", "considerable", "considerably", "fairly strong",
            "a fair amount of", "quite noticeable", "distracting",
        ),
        3,
    ),
    **dict.fromkeys(
        (
            "strong", "strongly", "heavy", "heavily", "pronounced", "significant",
            "significantly", "substantial", "substantially", "marked", "markedly", "high",
            "highly", "very noticeable", "very visible", "obvious", "obviously", "prominent",
            "intense", "serious", "seriously", "a lot of", "lots of", "much",
            "very distracting", "extensive",
        ),
        4,
    ),
    **dict.fromkeys(
        (
            "severe", "severely", "extreme", "extremely", "very strong", "very heavy",
            "very severe", "massive", "overwhelming", "very high", "extremely high",
            "catastrophic", "enormous",
        ),
        5,
    ),
}  # fmt: skip

BANDS: dict[str, int] = {
    **dict.fromkeys(
        ("bad", "very bad", "very poor", "extremely poor", "terrible", "awful",
         "unacceptable", "very low", "extremely low", "unusable"),
        1,
    ),
    **dict.fromkeys(("poor", "low", "below average", "below-average", "rather poor"), 2),
    **dict.fromkeys(
        ("fair", "average", "moderate", "acceptable", "decent", "reasonable", "mediocre",
         "ok", "okay", "medium", "middling"),
        3,
    ),
    **dict.fromkeys(("good", "high", "above average", "above-average", "great"), 4),
    **dict.fromkeys(
        ("excellent", "very good", "very high", "outstanding", "superb", "perfect",
         "exceptional", "extremely high"),
        5,
    ),
}  # fmt: skip

# verdicts on an aspect: -1 = it is fine (no defect), +1 = it is defective
VERDICTS: dict[str, int] = {
    **dict.fromkeys(
        (
            r"fine(?![- ](?:grain|detail|texture|line|pattern))", r"good", r"great",
            r"excellent", r"natural(?:ly)?", r"accurate(?:ly)?", r"correct(?:ly)?",
            r"proper(?:ly)?", r"appropriate", r"balanced", r"faithful", r"true to life",
            r"realistic", r"lifelike", r"pleasing", r"pleasant", r"neutral", r"ok", r"okay",
            r"clean", r"under control", r"unproblematic", r"adequate", r"satisfactory",
            r"spot[- ]on", r"nice", r"vivid", r"vibrant", r"rich",
            r"well[- ](?:judged|balanced|controlled|handled|rendered|managed|preserved|done)",
        ),
        -1,
    ),
    **dict.fromkeys(
        (
            r"poor(?:ly)?", r"bad(?:ly)?", r"off", r"wrong", r"incorrect", r"inaccurate",
            r"unnatural", r"unbalanced", r"uneven", r"weak", r"problem(?:s|atic)?",
            r"issues?", r"concerns?", r"flaws?", r"defects?", r"suffers?", r"suffering",
            r"degraded", r"compromised", r"impaired", r"affected", r"distorted", r"dull",
            r"muted", r"drab", r"insufficient", r"inadequate", r"exaggerated", r"harsh",
            r"overdone", r"unpleasant", r"disappointing", r"lacklustre", r"deficient",
            r"excessive(?:ly)?", r"too (?:high|low|strong|weak|intense|saturated|much|little)",
            r"over the top",
        ),
        1,
    ),
}  # fmt: skip

# negators: "pre" flips what follows, "post" what precedes, "both" either (what follows first)
NEGATORS: dict[str, str] = {
    **dict.fromkeys(
        (
            r"no", r"without", r"free of", r"free from", r"lack of", r"absence of", r"zero",
            r"hardly any", r"barely any", r"almost no", r"virtually no", r"nor", r"neither",
            r"(?<!a )little", r"loss of", r"reduction (?:in|of)", r"reduced",
            r"nothing like", r"no signs? of", r"no trace of", r"no hint of", r"lacks?",
            r"cannot",
        ),
        "pre",
    ),
    **dict.fromkeys(
        (
            r"absent", r"none", r"nowhere", r"not present", r"not visible", r"not noticeable",
            r"not detectable", r"not apparent", r"not evident", r"missing", r"lost",
        ),
        "post",
    ),
    **dict.fromkeys(
        (
            r"not", r"n't", r"never", r"lacking(?: in)?", r"low",
            r"minimal", r"negligible", r"diminished",
        ),
        "both",
    ),
}  # fmt: skip

HEDGES = (
    r"may", r"might", r"could", r"possibly", r"perhaps", r"maybe", r"potentially",
    r"if any", r"not sure", r"unclear (?:whether|if)", r"uncertain",
    r"(?:cannot|can't|can not|impossible to|hard to|difficult to|unable to) (?:be )?"
    r"(?:tell|say|judge|judged|assess|assessed|evaluate|evaluated|determine|determined)",
)  # fmt: skip

# words about defects in general: negated ("no visible defects") they deny every kind
GENERAL = (
    r"defects?|distortions?|degradations?|flaws?|impairments?|imperfections?|problems?|issues?|"
    r"damage|degraded|distorted|damaged"
)
CLEAN_CLAIM = r"pristine|flawless|immaculate"
# statements about content and composition: read, but about no distortion
NEUTRAL = (
    r"content", r"subject", r"scene", r"composition", r"composed", r"framing", r"framed",
    r"depict\w*", r"background", r"foreground", r"aesthetic\w*", r"portrait", r"landscape",
    r"(?:image|photo|picture|it) (?:shows|features|contains|captures)",
    r"(?:photo(?:graph)?|picture|image) of",
)  # fmt: skip


# --------------------------------------------------------------------------- result


@dataclass(frozen=True)
class KindReading:
    """What a reasoning says about one kind.

    Attributes:
        kind: A key of :data:`KINDS`.
        status: ``"asserted"``, ``"denied"``, ``"unclear"`` or ``"not_mentioned"``; an
            assertion anywhere wins over a denial elsewhere.
        severity: The highest severity stated for an assertion (1..5), or None when the
            kind is not asserted or no severity word qualifies it.
    """

    kind: str
    status: str
    severity: int | None = None


@dataclass(frozen=True)
class ReasoningAnalysis:
    """What a reasoning says, as read by :func:`analyse_reasoning`.

    Attributes:
        readings: One :class:`KindReading` per kind of :data:`KINDS`, in that order.
        band: The overall quality band stated, 1 (bad) .. 5 (excellent); the last one stated
            wins; None when none is stated.
        band_leaning: The band it leans towards ("fair, leaning towards good" -> 4), or None.
        sentences: Number of sentences read.
        unknown_sentences: Sentences with nothing the lexicon knows.
        unknown: Their text, for auditing the lexicon.
        conflicts: Kinds both asserted and denied (e.g. "no motion blur, but slight defocus
            blur": not necessarily a contradiction).
        clean_claim: The reasoning states the image has no defects at all ("no visible
            distortions", "pristine"); every kind it does not assert is then denied.
        readable: Whether the reasoning is readable text (see the module docstring); an
            unreadable one asserts, denies and states nothing.
        unreadable_sentences: Sentences that were not read because they are not readable
            text (or repeat an earlier sentence); every sentence of an unreadable reasoning.
    """

    readings: tuple[KindReading, ...]
    band: int | None = None
    band_leaning: int | None = None
    sentences: int = 0
    unknown_sentences: int = 0
    unknown: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()
    clean_claim: bool = False
    readable: bool = True
    unreadable_sentences: int = 0

    def reading(self, kind: str) -> KindReading:
        """The reading of ``kind`` (a key of :data:`KINDS`)."""
        for r in self.readings:
            if r.kind == kind:
                return r
        raise KeyError(kind)

    def status(self, kind: str) -> str:
        """``"asserted"``, ``"denied"``, ``"unclear"`` or ``"not_mentioned"``."""
        return self.reading(kind).status

    @property
    def asserted(self) -> dict[str, int | None]:
        """Asserted kinds -> stated severity (None when no severity word)."""
        return {r.kind: r.severity for r in self.readings if r.status == ASSERTED}

    @property
    def denied(self) -> tuple[str, ...]:
        """Kinds the reasoning denies."""
        return tuple(r.kind for r in self.readings if r.status == DENIED)

    @property
    def asserts_any(self) -> bool:
        """True when at least one kind is asserted."""
        return any(r.status == ASSERTED for r in self.readings)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form."""
        return {
            "kinds": {r.kind: {"status": r.status, "severity": r.severity} for r in self.readings},
            "band": self.band,
            "band_leaning": self.band_leaning,
            "sentences": self.sentences,
            "unknown_sentences": self.unknown_sentences,
            "unknown": list(self.unknown),
            "conflicts": list(self.conflicts),
            "clean_claim": self.clean_claim,
            "readable": self.readable,
            "unreadable_sentences": self.unreadable_sentences,
        }


# --------------------------------------------------------------------------- compiled lexicon


def _words(patterns: Iterable[str]) -> re.Pattern[str]:
    # longer patterns first: an alternation takes the first alternative that matches
    ordered = sorted(patterns, key=len, reverse=True)
    return re.compile(r"\b(?:" + "|".join(ordered) + r")\b")


def _by_length(phrases: Iterable[str]) -> str:
    return "|".join(re.escape(p) for p in sorted(phrases, key=len, reverse=True))


_ROLES = ("defects", "clean", "properties", "aspects")
_CUE_RES: list[tuple[re.Pattern[str], tuple[str, ...], str]] = [
    (_words(getattr(cues, role)), (kind,), role)
    for kind, cues in KINDS.items()
    for role in _ROLES
    if getattr(cues, role)
] + [(_words([p]), kinds, "defects") for p, kinds in AMBIGUOUS.items()]
_NOT_DEFECT_RE = _words(NOT_DEFECTS)
_SEV_RE = re.compile(r"\b(?:" + _by_length(SEVERITY) + r")\b")
_BAND_WORDS = _by_length(BANDS)
_VERDICT_RES = [
    (_words([p for p, v in VERDICTS.items() if v == value]), value) for value in (-1, 1)
]
_NEG_RES = [
    (_words([p for p, m in NEGATORS.items() if m == mode and p != "n't"]), mode)
    for mode in ("pre", "post", "both")
] + [(re.compile(r"n't\b"), "both")]
_HEDGE_RE = _words(HEDGES)
_GENERAL_RE = _words([GENERAL])
_CLEAN_CLAIM_RE = _words([CLEAN_CLAIM])
_NEUTRAL_RE = _words(NEUTRAL)

_MOD = (
    r"(?:(?:rather|quite|fairly|pretty|relatively|somewhat|generally|overall|only|just|still|"
    r"definitely|clearly|moderately|reasonably|roughly|about|around|at best|at most|mostly|"
    r"largely|solidly|firmly)\s+)*"
)
_B = rf"(?P<band>{_BAND_WORDS})"
_BAND_RES = (
    # "the (overall) quality is (rather) poor", "quality of the image seems fair"
    re.compile(
        r"\bquality(?:\s+(?:of|in)\s+(?:the|this)\s+(?:image|photo|picture|photograph))?"
        r"(?:\s+(?:is|was|seems|appears|looks|remains|would be|could be described as|can be "
        r"described as|is rated as|rates as|comes out as|is overall|overall is|falls into|"
        r"falls in)|\s*[:-])\s*"
        r"(?:rated\s+)?(?:as\s+)?(?:in\s+the\s+)?(?:a\s+|an\s+|the\s+)?" + _MOD + _B + r"\b"
    ),
    # "a poor-quality image", "fair-to-good quality"
    re.compile(
        r"\b" + _B + r"(?:[- ]to[- ](?P<lean2>" + _BAND_WORDS + r"))?[- ](?:overall\s+)?quality\b"
    ),
    # "I would rate it as fair", "rated as good"
    re.compile(
        r"\b(?:rate|rated|rating|judge|judged|classify|classified|describe|described|consider|"
        r"considered|call|grade|graded|assess|assessed)\s+(?:(?:it|this|this image|the image|"
        r"the photo|the picture|the overall quality|overall quality|its quality)\s+)?(?:as|at)\s+"
        r"(?:a\s+|an\s+|the\s+)?" + _MOD + _B + r"\b"
    ),
    # "it's a decent photo", "a poor image"
    re.compile(r"\b(?:a|an)\s+" + _MOD + _B + r"\s+(?:image|photo|photograph|picture|shot)\b"),
    # "Overall, a good image", "overall, the image looks poor"
    re.compile(
        r"\boverall\b[,:]?\s*(?:(?:the\s+)?(?:image|photo|picture|photograph|it|this)\s+"
        r"(?:is|looks|appears|seems)\s+|(?:this\s+is|it\s+is|it's)\s+)?(?:a\s+|an\s+)?"
        + _MOD
        + _B
        + r"\b(?!\s+(?:exposure|contrast|colou?rs?|sharpness|focus|noise|detail|"
        r"lighting|saturation|resolution))"
    ),
)
_LEAN_RE = re.compile(
    r"\b(?:lean(?:s|ing)?\s+(?:towards?|to)|closer\s+to|bordering\s+on|verging\s+on)\s+"
    r"(?:the\s+)?(?P<lean>" + _BAND_WORDS + r")\b"
)
# the word before "quality" that makes it a kind's quality, not the image's
_NOT_IMAGE_QUALITY = {"jpeg", "jpg", "compression", "colour", "color", "exposure", "focus", "lens"}

_CLAUSE_RE = re.compile(
    r";|\s[-\u2013\u2014]\s|\b(?:but|yet|however|although|though|while|whereas|except|"
    r"apart from|aside from|other than|besides|unlike)\b|,\s*(?:and|with|which|so|plus)\b|"
    r",\s*(?=(?:the|it|this|there|i)\b)|"
    r"\band\s+(?=(?:a|an|the|some|there|it|its|this|that|these|those|i|"
    + _by_length(SEVERITY)
    + r")\b)"
)
_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+|\n+")
_LABEL_RE = re.compile(r"^\s*([^:;.]{1,60}):\s*(.+)$", re.DOTALL)  # "Noise: none visible"
_BULLET_RE = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)]|#+)\s+", re.MULTILINE)

_GROUP_GAP = re.compile(
    r"^(?:[\s,/&+-]|\b(?:and|or|nor|the|any|other|of|either|as well as|plus|its|their|"
    r"visible|obvious)\b)*$"
)
_VERDICT_GAP = re.compile(
    r"^(?:[\s,-]|\b(?:a|an|the|its|their|very|quite|rather|really|pretty|fairly|overall|"
    r"generally|with|in|regarding|concerning|related to|of)\b)*$"
)
_SEV_FILLER = re.compile(
    r"\b(?:a|an|the|some|very|quite|rather|really|of|amount|degree|level|levels|loss|lack|"
    r"reduction|in|visible)\b"
)
_VERBS = {"is", "are", "was", "were", "be", "has", "have", "had", "makes", "causes", "shows"}
_NEG_VERDICT_GAP = re.compile(
    r"^(?:\s|\b(?:a|an|any|being|very|too|really|particularly|the|at|all|real|major|big|"
    r"serious|obvious|visible|looking|look|looks|seem|seems|appear|appears|to|be)\b)*$"
)
_WORD = re.compile(r"[\w']+")
_COPULA = {
    "is", "are", "was", "were", "be", "been", "being", "looks", "look", "appears", "appear",
    "seems", "seem", "remains", "remain", "level", "levels", "amount", "quite", "very",
    "rather", "generally", "mostly", "largely", "entirely", "completely", "almost", "totally",
    "virtually", "practically", "essentially", "also", "here", "still", "definitely",
    "clearly", "certainly", "does", "do", "did", "has", "have", "had", "overall", "it", "its",
}  # fmt: skip


# --------------------------------------------------------------------------- reading


@dataclass
class _Span:
    start: int
    end: int
    kinds: tuple[str, ...] = ()
    role: str = ""
    value: int = 0  # severity level, verdict sign
    mode: str = ""  # negator mode
    negated: bool = False
    used: bool = False


@dataclass
class _Mention:
    kinds: tuple[str, ...]
    polarity: int | None  # +1 asserted, -1 denied, None unclear
    severity: int | None


@dataclass
class _Sentence:
    mentions: list[_Mention] = field(default_factory=list)
    band: int | None = None
    lean: int | None = None
    read: bool = False
    clean_claim: bool = False


def _blank(text: str, spans: Iterable[_Span | tuple[int, int]]) -> str:
    chars = list(text)
    for s in spans:
        start, end = (s.start, s.end) if isinstance(s, _Span) else s
        chars[start:end] = " " * (end - start)
    return "".join(chars)


def _longest_first(spans: list[_Span]) -> list[_Span]:
    kept: list[_Span] = []
    for s in sorted(spans, key=lambda s: (-(s.end - s.start), s.start)):
        if all(s.end <= k.start or s.start >= k.end for k in kept):
            kept.append(s)
    return sorted(kept, key=lambda s: s.start)


def _n_words(text: str) -> int:
    return len(_WORD.findall(text))


def _normalise(text: str) -> str:
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    text = re.sub(r"[*_#]+", " ", text)
    text = _BULLET_RE.sub("", text)
    text = re.sub(
        r"\b(e\.g|i\.e|etc|vs)\.", lambda m: m.group(1).replace(".", ""), text, flags=re.I
    )
    return text


# what makes a sentence readable text (see the module docstring)
MIN_WORDS, MAX_WORDS = 2, 80  # "Noise: none." is a sentence; "Blur." is not
MIN_DISTINCT_SHARE = 0.5  # distinct words / words, from 4 words on
MAX_WORD_RUN = 2  # the same word at most twice in a row ("very very" is English)


def readable_sentence(sentence: str) -> bool:
    """Whether a sentence is readable text: 2 to 80 words, no word three times in a row,
    and (from 4 words on) at least half of its words distinct.

    Example:
        >>> readable_sentence("There is no noise, but strong blur softens the edges.")
        True
        >>> readable_sentence("contrast contrast contrast"), readable_sentence("Blur.")
        (False, False)
    """
    words = [w.lower() for w in _WORD.findall(sentence)]
    if not MIN_WORDS <= len(words) <= MAX_WORDS:
        return False
    if len(words) >= 4 and len(set(words)) < MIN_DISTINCT_SHARE * len(words):
        return False
    run = 1
    for a, b in zip(words, words[1:], strict=False):
        run = run + 1 if a == b else 1
        if run > MAX_WORD_RUN:
            return False
    return True


def _readable_part(sentences: list[str]) -> tuple[list[str], int]:
    """The sentences to read (readable, first occurrences) and how many were left out; none
    when they hold less than half of the reasoning's words."""
    seen: set[str] = set()
    keep = []
    for s in sentences:
        key = " ".join(w.lower() for w in _WORD.findall(s))
        if readable_sentence(s) and key not in seen:
            keep.append(s)
        seen.add(key)
    words = sum(_n_words(s) for s in sentences)
    if sum(_n_words(s) for s in keep) * 2 < words:
        return [], len(sentences)
    return keep, len(sentences) - len(keep)


def split_sentences(text: str) -> list[str]:
    """The sentences of a reasoning (on ``.``/``!``/``?`` and line breaks; list markers and
    Markdown emphasis removed)."""
    return [s.strip() for s in _SENTENCE_RE.split(_normalise(text)) if s and s.strip(" .!?")]


def _read_band(sentence: str) -> tuple[int | None, int | None, list[tuple[int, int]]]:
    for pattern in _BAND_RES:
        for m in pattern.finditer(sentence):
            q = sentence.rfind("quality", 0, m.end())
            before = sentence[: q if q >= 0 else 0].split()
            if "quality" in m.group(0) and before and before[-1] in _NOT_IMAGE_QUALITY:
                continue
            spans = [(m.start(), m.end())]
            lean = m.groupdict().get("lean2")
            lean_level = BANDS[lean] if lean else None
            lm = _LEAN_RE.search(sentence, m.end())
            if lm and lean_level is None:
                lean_level = BANDS[lm.group("lean")]
                spans.append((lm.start(), lm.end()))
            return BANDS[m.group("band")], lean_level, spans
    return None, None, []


def _cues(clause: str) -> list[_Span]:
    found = [
        _Span(m.start(), m.end(), kinds, role)
        for pattern, kinds, role in _CUE_RES
        for m in pattern.finditer(clause)
    ]
    return _longest_first(found)


def _groups(clause: str, cues: list[_Span]) -> list[list[_Span]]:
    groups: list[list[_Span]] = []
    for cue in cues:
        if groups and _GROUP_GAP.match(clause[groups[-1][-1].end : cue.start]):
            groups[-1].append(cue)
        else:
            groups.append([cue])
    return groups


def _find(patterns: list[tuple[re.Pattern[str], Any]], text: str, field_name: str) -> list[_Span]:
    spans = []
    for pattern, value in patterns:
        for m in pattern.finditer(text):
            s = _Span(m.start(), m.end())
            setattr(s, field_name, value)
            spans.append(s)
    return _longest_first(spans)


def _copula_gap(gap: str) -> bool:
    """True when ``gap`` links a subject to what follows it ("noise *is* not visible")."""
    words = _WORD.findall(gap)
    return len(words) <= 3 and all(w in _COPULA for w in words) and ";" not in gap


def _apply_negators(
    clause: str,
    negs: list[_Span],
    groups: list[list[_Span]],
    verdicts: list[_Span],
    sevs: list[_Span],
) -> None:
    for neg in negs:
        nxt_verdict = next((v for v in verdicts if v.start >= neg.end), None)
        nxt_group = next((g for g in groups if g[0].start >= neg.end), None)
        if (
            nxt_verdict
            and (nxt_group is None or nxt_verdict.start < nxt_group[0].start)
            and _NEG_VERDICT_GAP.match(clause[neg.end : nxt_verdict.start])
        ):
            nxt_verdict.negated = True  # "not a problem", "without being harsh"
            continue
        sev = next((s for s in sevs if s.start >= neg.end), None)
        if (
            neg.mode == "both"
            and sev
            and _n_words(clause[neg.end : sev.start]) <= 1
            and (nxt_group is None or not _sev_gap(clause[sev.end : nxt_group[0].start]))
        ):
            sev.used = True  # "blur is not severe": qualifies the severity, not the kind
            continue
        if (
            neg.mode in ("pre", "both")
            and nxt_group
            and _n_words(clause[neg.end : nxt_group[0].start]) <= 4
            and not any(neg.end <= v.start < nxt_group[0].start for v in verdicts)
        ):
            for cue in nxt_group:
                cue.negated = True
            continue
        prev = [g for g in groups if g[-1].end <= neg.start]
        if (
            neg.mode in ("post", "both")
            and prev
            and _copula_gap(clause[prev[-1][-1].end : neg.start])
        ):
            for cue in prev[-1]:
                cue.negated = True


def _verdict_for(
    clause: str, i: int, groups: list[list[_Span]], verdicts: list[_Span]
) -> int | None:
    def directly_before(v: _Span, g: list[_Span]) -> bool:
        return v.end <= g[0].start and bool(_VERDICT_GAP.match(clause[v.end : g[0].start]))

    group = groups[i]
    prev = groups[i - 1] if i else None
    nxt = groups[i + 1] if i + 1 < len(groups) else None
    before = [
        v
        for v in verdicts
        if (prev is None or not _copula_gap(clause[prev[-1].end : v.start]))
        and (prev is None or prev[-1].end <= v.start)
        and directly_before(v, group)
    ]  # "colours are natural with a warm cast": "natural" is said of the colours
    after = [
        v
        for v in verdicts
        if v.start >= group[-1].end
        and (nxt is None or v.end <= nxt[0].start)
        and not re.search(r"[,;]", clause[group[-1].end : v.start])
        and not (
            nxt and directly_before(v, nxt) and not _copula_gap(clause[group[-1].end : v.start])
        )
    ]
    chosen = before[-1] if before else (after[0] if after else None)
    if chosen is None:
        return None
    return -chosen.value if chosen.negated else chosen.value


def _sev_gap(gap: str) -> bool:
    """True when a severity word followed by ``gap`` qualifies the cue after the gap: only
    filler words and at most one other word ("strong directional blur")."""
    if re.search(r"[,;:]", gap):
        return False
    rest = _WORD.findall(_SEV_FILLER.sub(" ", gap))
    return len(rest) == 0 or (len(rest) == 1 and rest[0] not in _VERBS)


def _severity_for(clause: str, i: int, groups: list[list[_Span]], sevs: list[_Span]) -> int | None:
    group = groups[i]
    prev_end = groups[i - 1][-1].end if i else 0
    nxt = groups[i + 1] if i + 1 < len(groups) else None
    free = [s for s in sevs if not s.used]
    before = [
        s for s in free if prev_end <= s.start and s.end <= group[0].start
        and _sev_gap(clause[s.end : group[0].start])
    ]  # fmt: skip
    after = [
        s for s in free if s.start >= group[-1].end and (nxt is None or s.end <= nxt[0].start)
        and not (nxt and _sev_gap(clause[s.end : nxt[0].start]))
    ]  # fmt: skip
    chosen = before[-1] if before else (after[0] if after else None)
    return chosen.value if chosen else None


def _polarity(cue: _Span, verdict: int | None, hedged: bool) -> int | None:
    if hedged:
        return None
    if cue.role in ("defects", "clean"):
        pol: int | None = verdict if verdict is not None else (1 if cue.role == "defects" else -1)
    else:
        pol = verdict
    if cue.negated:
        if pol is not None:
            pol = -pol
        elif cue.role == "properties":
            pol = 1  # "lacks sharpness", "low contrast"
    return pol


def _read_clause(clause: str, out: _Sentence) -> None:
    cues = _cues(clause)
    rest = _blank(clause, cues)
    verdicts = _find(_VERDICT_RES, rest, "value")
    rest = _blank(rest, verdicts)
    sevs = [_Span(m.start(), m.end(), value=SEVERITY[m.group(0)]) for m in _SEV_RE.finditer(rest)]
    rest = _blank(rest, sevs)
    negs = _find(_NEG_RES, rest, "mode")
    if not cues:
        general = _GENERAL_RE.search(clause)
        if _CLEAN_CLAIM_RE.search(clause):
            out.read = out.clean_claim = True
        elif general:
            out.read = True
            g0, g1 = general.span()
            if any(
                (n.end <= g0 and n.mode != "post" and _n_words(clause[n.end : g0]) <= 4)
                or (n.start >= g1 and n.mode != "pre" and _copula_gap(clause[g1 : n.start]))
                for n in negs
            ):
                out.clean_claim = True  # "no visible defects", "distortions are absent"
        if _NEUTRAL_RE.search(clause):
            out.read = True
        return
    out.read = True
    groups = _groups(clause, cues)
    _apply_negators(clause, negs, groups, verdicts, sevs)
    hedged = bool(_HEDGE_RE.search(clause))
    for i, group in enumerate(groups):
        verdict = _verdict_for(clause, i, groups, verdicts)
        severity = _severity_for(clause, i, groups, sevs)
        for cue in group:
            pol = _polarity(cue, verdict, hedged)
            out.mentions.append(_Mention(cue.kinds, pol, severity if pol == 1 else None))


def _read_sentence(sentence: str) -> _Sentence:
    text = sentence.lower()
    out = _Sentence()
    out.band, out.lean, band_spans = _read_band(text)
    text = _blank(text, band_spans)
    masked = [(m.start(), m.end()) for m in _NOT_DEFECT_RE.finditer(text)]
    text = _blank(text, masked)
    out.read = bool(band_spans or masked)
    label = _LABEL_RE.match(text)
    if label and _cues(label.group(2)):  # "Noise: minimal noise ...": the label says nothing
        text = _blank(text, [label.span(1)])
        out.read = True
    start = 0
    for m in [*_CLAUSE_RE.finditer(text), None]:
        end = m.start() if m else len(text)
        _read_clause(text[start:end], out)
        start = m.end() if m else end
    specific = {m.kinds[0] for m in out.mentions if len(m.kinds) == 1}
    for mention in out.mentions:
        if len(mention.kinds) > 1:
            pick = next((k for k in mention.kinds if k in specific), mention.kinds[0])
            mention.kinds = (pick,)
    return out


def analyse_reasoning(text: str | list | dict) -> ReasoningAnalysis:
    """Read what a reasoning says about each distortion kind and the overall quality.

    Args:
        text: A ``<think>`` text, or a whole completion (string or TRL's conversational form),
            whose reasoning is taken with :func:`qponder.parsing.parse_completion`.

    Returns:
        A :class:`ReasoningAnalysis`.

    Example:
        >>> a = analyse_reasoning("<think>There is no noise, but strong blur softens the edges. "
        ...                       "Overall, the quality is poor.</think><answer>2.1</answer>")
        >>> a.status("blur"), a.reading("blur").severity, a.status("noise"), a.band
        ('asserted', 4, 'denied', 2)
    """
    reasoning = parse_completion(text).reasoning
    sentences = split_sentences(reasoning)
    to_read, unreadable = _readable_part(sentences)
    seen: dict[str, set[int | None]] = {k: set() for k in KINDS}
    severity: dict[str, int] = {}
    band = lean = None
    unknown: list[str] = []
    clean_claim = False
    for sentence in to_read:
        read = _read_sentence(sentence)
        if not read.read and read.band is None:
            unknown.append(sentence)
        if read.band is not None:
            band, lean = read.band, read.lean
        clean_claim |= read.clean_claim
        for m in read.mentions:
            kind = m.kinds[0]
            seen[kind].add(m.polarity)
            if m.polarity == 1 and m.severity is not None:
                severity[kind] = max(severity.get(kind, 0), m.severity)
    readings = []
    for kind in KINDS:
        s = seen[kind]
        status = (
            ASSERTED if 1 in s else DENIED if -1 in s or clean_claim
            else UNCLEAR if None in s else NOT_MENTIONED
        )  # fmt: skip
        readings.append(
            KindReading(kind, status, severity.get(kind) if status == ASSERTED else None)
        )
    return ReasoningAnalysis(
        readings=tuple(readings),
        band=band,
        band_leaning=lean,
        sentences=len(sentences),
        unknown_sentences=len(unknown),
        unknown=tuple(unknown),
        conflicts=tuple(k for k in KINDS if {1, -1} <= seen[k]),
        clean_claim=clean_claim,
        readable=bool(to_read) or not sentences,
        unreadable_sentences=unreadable,
    )
