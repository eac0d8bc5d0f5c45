"""The README is a front door: short, with "Start here" on its first screen; the
measured tables live in docs/results.md between their markers; every relative link in
the README and in docs/ leads somewhere that exists. Each checker is also shown a
broken page, so that these tests can fail."""

import re
from pathlib import Path

import pytest
from conftest import ROOT, lesson

README = ROOT / "README.md"
DOCS = ROOT / "docs"
RESULTS = DOCS / "results.md"
GLOSSARY = DOCS / "glossary.md"
MAX_LINES = 400
FIRST_SCREEN = 15  # lines a learner sees before scrolling

# Lessons being written while the README already points at them: a link to one of these
# is skipped only while its file is missing, so a typo in any other name still fails.
# Drop a name from this set once its lesson exists.
NOT_YET_WRITTEN: set[str] = set()  # lesson files a link may name before they exist

# The blocks that scripts rewrite in docs/results.md, in the page's order (per lesson):
# tables:NAME by benchmarks/tables.py, writers by writer_shift.py, benchmark by
# benchmark.py. The README keeps one block, path-times (benchmark.py).
RESULTS_BLOCKS = ["tables:lesson3", "tables:claims", "tables:lesson5", "tables:lesson6",
                  "tables:fair", "tables:writers", "tables:recipe", "writers",
                  "tables:lesson7", "tables:architectures", "tables:vit_sizes",
                  "tables:ensemble", "tables:ensemble_size", "benchmark"]
README_BLOCKS = ["path-times"]

# Words the README links to, each defined once in the glossary.
GLOSSARY_WORDS = [
    "95% interval", "Adam", "Attention", "Augmentation", "Baseline", "Batch",
    "Batch norm", "Bonferroni correction", "Checkpoint", "Convolution", "Cross-entropy",
    "Dropout", "Ensemble", "Epoch", "Feature map", "Gradient clipping", "Jacobian",
    "Learning rate", "Logits", "Loss", "McNemar's exact test", "One-cycle schedule",
    "Overfitting", "Paired difference", "Pooling", "Softmax", "Standard error",
    "state_dict", "Test set", "Validation set", "Vanishing gradient",
    "ViT (Vision Transformer)", "Weight decay", "Wilson interval"]

LINK = re.compile(r"\]\(([^)\s]+)\)")  # [text](target) and ![alt](target)
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def markdown_files():
    return [README, *sorted(DOCS.glob("*.md"))]


def without_code(text):
    return FENCE.sub("", text)


def slug(heading):
    """The anchor GitHub gives a heading: lower case, no punctuation, spaces to -."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text):
    found = set()
    for match in re.finditer(r"^#{1,6} (.+)$", without_code(text), re.M):
        name = slug(match.group(1))
        number = 0
        unique = name
        while unique in found:  # GitHub numbers repeated headings: name, name-1, ...
            number += 1
            unique = f"{name}-{number}"
        found.add(unique)
    return found


def broken_links(page):
    """Each relative link of `page` whose file (or heading, for .md) does not exist."""
    text = page.read_text()
    broken = []
    for target in LINK.findall(without_code(text)):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            if Path(path).name in NOT_YET_WRITTEN:
                continue
            broken.append(target)
        elif anchor and file.suffix == ".md":
            if anchor not in anchors(file.read_text()):
                broken.append(target)
    return broken


def marker_problems(text, names):
    """What is wrong with the start/end marker pairs of `names` in `text`, in order."""
    problems = []
    last_end = -1
    for name in names:
        start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
        if text.count(start) != 1 or text.count(end) != 1:
            counts = f"{text.count(start)} starts, {text.count(end)} ends"
            problems.append(f"{name}: {counts}")
            continue
        if not last_end < text.index(start) < text.index(end):
            problems.append(f"{name}: out of order")
        last_end = text.index(end)
    return problems


def outside_blocks(text):
    """The page without its generated blocks (their contents are the scripts')."""
    return re.sub(r"<!-- (\S+):start -->.*?<!-- \1:end -->", "", text, flags=re.S)


def test_the_readme_is_a_front_door():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_LINES, f"README.md has {len(lines)} lines"
    first_screen = "\n".join(lines[:FIRST_SCREEN])
    assert "python 01_tensors_and_autograd.py" in first_screen
    assert "in order" in first_screen and "change" in first_screen


def test_the_readme_carries_no_dates_and_no_test_set_goals():
    prose = outside_blocks(README.read_text())
    assert not re.findall(r"\b20\d\d-\d\d\b", prose), "dates go to docs/decisions.md"
    for page in (README, RESULTS):
        assert not re.search(r"goal is \d+%", outside_blocks(page.read_text())), page


def test_every_relative_link_leads_to_a_file_and_heading():
    for page in markdown_files():
        assert broken_links(page) == [], page.name


def test_a_broken_link_is_caught(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n[fine](#title) [gone](missing.py) [no heading](#nope)\n"
                    "```\n[in code](not_checked.py)\n```\n")
    assert broken_links(page) == ["missing.py", "#nope"]


def test_the_measured_blocks_live_in_results_in_order():
    results = RESULTS.read_text()
    assert marker_problems(results, RESULTS_BLOCKS) == []
    readme = README.read_text()
    assert marker_problems(readme, README_BLOCKS) == []
    assert re.findall(r"<!-- (\S+):start -->", readme) == README_BLOCKS
    # every section that make tables writes has its block here, once
    for name in lesson("benchmarks.tables").SECTIONS:
        assert marker_problems(results, [f"tables:{name}"]) == [], name


def test_a_missing_or_misplaced_marker_is_caught():
    good = "<!-- a:start -->1<!-- a:end --> <!-- b:start -->2<!-- b:end -->"
    assert marker_problems(good, ["a", "b"]) == []
    assert marker_problems(good, ["b", "a"]) == ["a: out of order"]
    twice = good + " <!-- b:start -->"
    assert marker_problems(twice, ["a", "b"]) == ["b: 2 starts, 1 ends"]
    assert marker_problems(good.replace("<!-- a:end -->", ""), ["a"]) == \
        ["a: 1 starts, 0 ends"]


def test_the_glossary_is_alphabetical_and_defines_the_linked_words():
    text = GLOSSARY.read_text()
    words = re.findall(r"^### (.+)$", text, re.M)
    assert words == sorted(words, key=str.casefold)
    assert len(words) == len(set(words))
    for word in GLOSSARY_WORDS:
        assert word in words, word
    entries = re.split(r"^### .+$", text, flags=re.M)[1:]
    for word, entry in zip(words, entries):
        assert re.search(r"\blesson\s+\w+", entry), f"{word}: which lesson?"


GITHUB_ANCHORS = [("95% interval", "95-interval"),
                  ("McNemar's exact test", "mcnemars-exact-test"),
                  ("Training/serving skew", "trainingserving-skew"),
                  ("state_dict", "state_dict")]


@pytest.mark.parametrize("word, anchor", GITHUB_ANCHORS)
def test_anchors_are_made_the_way_github_makes_them(word, anchor):
    assert slug(word) == anchor
