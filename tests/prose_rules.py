"""Rules for sentences that depend on numbers, checked on what a lesson printed.

A lesson's prose must hold for the numbers of the run that printed it (review of
2026-12-04, 2.7; of 2026-12-07, section 5). tests/test_prose.py runs every lesson's
quick mode on a seed that is not the default, and hands its output to `violations`.
Each rule reads one kind of claim the course makes, finds the number it depends on in
the same clause, and says whether the two agree:

- an interval [low, high] and its verdict: "no clear difference" only when the interval
  holds 0, and never a "better", "higher"... when it does;
- a p-value (McNemar's exact test) and its verdict: "no clear difference" when p is
  0.05 or more, never when it is below;
- "from A% to B%" and the direction a word gives it (rises, falls, drops...);
- "A minus B: X points" followed by a sentence about the sign of X (a model "fits the
  images it was trained on better" only when train minus test is above 0).

Each rule is tested on sentences planted to break it (tests/test_prose.py), so that a
rule that reads nothing cannot pass for one that checks.
"""

import re

NUMBER = r"[-+−]?\d+(?:,\d{3})*(?:\.\d+)?(?:e[-+]?\d+)?"
INTERVAL = re.compile(rf"\[\s*({NUMBER})\s*,\s*({NUMBER})\s*\]")
P_VALUE = re.compile(rf"\bp\s*=\s*({NUMBER})")
FROM_TO = re.compile(rf"\bfrom ({NUMBER})%? to ({NUMBER})%")
UNCLEAR = ("no clear difference", "not clearly", "unclear", "could be chance",
           "a fair coin", "no difference the seeds can see")
# words that claim a direction
CLAIMS = ("better", "worse", "higher", "lower", "helps", "hurts", "helped", "hurt",
          "faster", "slower", "clearly", "trained better", "forgot", "adapted")
UP = ("rises", "rose", "climbs", "improves", "gains", "goes up", "up to")
DOWN = ("falls", "fell", "drops", "dropped", "goes down", "loses", "costs it")


def number(text: str) -> float:
    """A printed number as a float: thousands commas and a typographic minus allowed."""
    return float(text.replace(",", "").replace("−", "-"))


def paragraphs(output: str) -> list[str]:
    """The printed prose, each paragraph joined into one line (the course wraps at 88
    columns, so a sentence may span lines). Table rows (two or more spaces between
    cells, or a markdown |) are left out: they carry numbers, not claims."""
    found, current = [], []
    for line in output.splitlines():
        stripped = line.strip()
        is_row = stripped.startswith("|") or re.search(r"\S {2,}\S", stripped)
        if not stripped or is_row or set(stripped) <= set("-=#*"):
            if current:
                found.append(" ".join(current))
            current = []
            continue
        current.append(stripped)
    if current:
        found.append(" ".join(current))
    return found


def clause_after(text: str, end: int) -> str:
    """The words after position `end` up to the end of their clause: the next ';', the
    end of the sentence, or the next interval or p-value (which has its own verdict)."""
    rest = text[end:]
    stops = [m.start() for m in re.finditer(r";|\.\s|\.$|\[|\bp\s*=", rest)]
    return rest[: min(stops)] if stops else rest


def says_unclear(clause: str) -> bool:
    return any(word in clause for word in UNCLEAR)


def claims_direction(clause: str) -> bool:
    words = clause.lower()
    if says_unclear(words):
        return False
    return any(re.search(rf"\b{re.escape(w)}\b", words) for w in CLAIMS)


def interval_violations(text: str) -> list[str]:
    """An interval strictly above or below 0 with "no clear difference" after it, or
    one strictly around 0 with a direction claimed. A bound printed as 0.00 could lie
    on either side: not judged."""
    found = []
    for match in INTERVAL.finditer(text):
        low, high = number(match.group(1)), number(match.group(2))
        if low == 0 or high == 0 or low > high:
            continue
        clause = clause_after(text, match.end())
        holds_zero = low < 0 < high
        if not holds_zero and says_unclear(clause):
            found.append(f"[{low:g}, {high:g}] excludes 0 but says: {clause.strip()!r}")
        if holds_zero and claims_direction(clause):
            found.append(f"[{low:g}, {high:g}] holds 0 but says: {clause.strip()!r}")
    return found


def p_value_violations(text: str) -> list[str]:
    """p below 0.05 with "no clear difference" after it, or p of 0.05 or more with a
    direction claimed."""
    found = []
    for match in P_VALUE.finditer(text):
        p = number(match.group(1))
        clause = clause_after(text, match.end())
        if p < 0.05 and says_unclear(clause):
            found.append(f"p = {p:g} but says: {clause.strip()!r}")
        if p >= 0.05 and claims_direction(clause):
            found.append(f"p = {p:g} but says: {clause.strip()!r}")
    return found


def from_to_violations(text: str) -> list[str]:
    """"from A% to B%" with a word of the other direction in its clause (before it or
    after it, within the sentence)."""
    found = []
    for match in FROM_TO.finditer(text):
        a, b = number(match.group(1)), number(match.group(2))
        start = max(text.rfind(". ", 0, match.start()), 0)
        sentence = text[start:match.start()] + clause_after(text, match.end())
        words = sentence.lower()
        up = any(re.search(rf"\b{re.escape(w)}\b", words) for w in UP)
        down = any(re.search(rf"\b{re.escape(w)}\b", words) for w in DOWN)
        if b > a and down and not up:
            found.append(f"from {a:g} to {b:g} but says it falls: {sentence.strip()!r}")
        if b < a and up and not down:
            found.append(f"from {a:g} to {b:g} but says it rises: {sentence.strip()!r}")
    return found


GAP = re.compile(rf"[Tt]rain(?:ing)? minus (?:test|validation)[^:]*:\s*({NUMBER})")


def gap_violations(text: str) -> list[str]:
    """After "train minus test ...: X", the claim that the model fits its training
    images better holds only for X above 0."""
    found = []
    for match in GAP.finditer(text):
        gap = number(match.group(1))
        after = text[match.end():match.end() + 300].lower()
        if gap <= 0 and "fits the images it was trained on better" in after:
            found.append(f"gap {gap:g} but says the training images fit better")
    return found


RULES = (interval_violations, p_value_violations, from_to_violations, gap_violations)


def violations(output: str) -> list[str]:
    """Every claim in `output` that its own numbers contradict."""
    found = []
    for text in paragraphs(output):
        for rule in RULES:
            found += rule(text)
    return found


def judged(output: str) -> int:
    """How many numbers a rule read (an interval, a p-value, a from-to, a gap): the
    test asks for some, so that a lesson whose prose changed shape is noticed."""
    count = 0
    for text in paragraphs(output):
        count += len(INTERVAL.findall(text)) + len(P_VALUE.findall(text))
        count += len(FROM_TO.findall(text)) + len(GAP.findall(text))
    return count
