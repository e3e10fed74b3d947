"""The step catalogue: every phrase of the step library, as Markdown (``features/STEPS.md``).

For each step function: its kind (Given/When/Then), the English phrasing(s) and the
Chinese one beside them, the parameters with their types, the function's first docstring
line, and an example taken from the feature files (the first line that matches).

    python -m features.catalogue            # rewrite features/STEPS.md
    python -m features.catalogue --check    # exit 1 if STEPS.md is not current

A test (``features/test_catalogue.py``) fails when STEPS.md is stale.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_bdd import parsers
from pytest_bdd.parser import FeatureParser
from pytest_bdd.steps import step_function_context_registry

from features.steps import STEP_MODULES
from features.steps.types import TYPES

HERE = Path(__file__).resolve().parent
STEPS_MD = HERE / "STEPS.md"
_CJK = re.compile(r"[\u3400-\u9fff]")
_FIELD = re.compile(r"\{(\w+)(?::(\w+))?\}")


@dataclass
class Entry:
    module: str
    function: str
    kinds: list[str] = field(default_factory=list)
    english: list[str] = field(default_factory=list)
    chinese: list[str] = field(default_factory=list)
    params: dict[str, str] = field(default_factory=dict)
    doc: str = ""
    parsers: list[tuple[str, parsers.StepParser]] = field(default_factory=list)


def _params(parser: parsers.StepParser, converters: dict[str, Callable[[str], Any]]) -> dict[str, str]:
    if isinstance(parser, parsers.re):
        return {name: getattr(converters.get(name), "__name__", "str")
                for name in parser.regex.groupindex}
    return {name: kind or "str" for name, kind in _FIELD.findall(parser.name)}


def _shown(parser: parsers.StepParser) -> str:
    if isinstance(parser, parsers.re):
        return f"(regex) {parser.name}"
    return parser.name


def collect() -> list[Entry]:
    """Every step function of the library, in module and definition order."""
    for module in STEP_MODULES:
        importlib.import_module(module)
    entries: dict[Callable[..., object], Entry] = {}
    contexts = sorted(step_function_context_registry.values(),
                      key=lambda c: (c.step_func.__module__, c.step_func.__code__.co_firstlineno))
    for ctx in contexts:
        func = ctx.step_func
        if func.__module__ not in STEP_MODULES:
            continue
        entry = entries.setdefault(func, Entry(func.__module__, func.__name__))
        kind = (ctx.type or "step").capitalize()
        if kind not in entry.kinds:
            entry.kinds.append(kind)
        text = _shown(ctx.parser)
        lang = "zh" if _CJK.search(_FIELD.sub("", ctx.parser.name)) else "en"
        target = entry.chinese if lang == "zh" else entry.english
        if text not in target:
            target.append(text)
        entry.params.update(_params(ctx.parser, ctx.converters))
        entry.parsers.append((lang, ctx.parser))
        entry.doc = (func.__doc__ or "").strip().splitlines()[0] if func.__doc__ else ""
    return list(entries.values())


def feature_lines() -> list[str]:
    """Step texts of every feature file, each outline rendered with its example rows."""
    lines: list[str] = []
    for path in sorted(HERE.rglob("*.feature")):
        feature = FeatureParser(str(path.parent), path.name).parse()
        for template in feature.scenarios.values():
            contexts = [c for ex in template.examples for c in ex.as_contexts()] or [{}]
            for context in contexts:
                lines += [step.name for step in template.render(context).steps if step.name not in lines]
    return lines


_SECTION = re.compile(r"^## .* \(`(?P<module>[\w.]+)`\)$")
_HEADING = re.compile(r"^### .*: `(?P<function>\w+)`$")
_EXAMPLE = re.compile(r"^- (?:example|示例): `(?P<line>.*)`$")


def previous_examples(text: str) -> dict[tuple[str, str], list[str]]:
    """The examples a catalogue shows, by (module, function)."""
    found: dict[tuple[str, str], list[str]] = {}
    module = function = ""
    for line in text.splitlines():
        if m := _SECTION.match(line):
            module = m["module"]
        elif m := _HEADING.match(line):
            function = m["function"]
        elif (m := _EXAMPLE.match(line)) and module and function:
            found.setdefault((module, function), []).append(m["line"])
    return found


def examples(entry: Entry, lines: list[str], keep: Sequence[str] = ()) -> tuple[str | None, str | None]:
    """An English and a Chinese feature line this step matches.

    An example the catalogue already shows (``keep``) stays while a feature still has the
    line and the step still matches it, so adding scenarios never changes the catalogue;
    otherwise the first matching line in file order is taken.
    """
    found: dict[str, str] = {}
    present = set(lines)
    for line in [k for k in keep if k in present] + lines:
        for lang, parser in entry.parsers:
            if lang not in found and parser.is_matching(line):
                found[lang] = line
    return found.get("en"), found.get("zh")


def render(previous: str | None = None) -> str:
    """The catalogue; ``previous`` (a catalogue's text) pins the examples it already shows."""
    entries = collect()
    lines = feature_lines()
    kept = previous_examples(previous or "")
    out = ["# Step catalogue", "",
           "Generated by `python -m features.catalogue` from `features/steps/`; do not edit by hand.",
           "Each step has an English phrasing and a Chinese one (same code). Parameters in",
           "`{braces}` have the types below; the example is the first feature line using the step.",
           "", "## Parameter types", "", "| type | becomes | example |", "|---|---|---|"]
    out += [f"| {t.name} | {t.produces} | `{t.example}` |" for t in TYPES]
    out += ["| d | int | `3` |", ""]
    module = None
    for entry in entries:
        if entry.module != module:
            module = entry.module
            out += [f"## {module.rsplit('.', 1)[-1].replace('_', ' ')} (`{module}`)", ""]
        en_example, zh_example = examples(entry, lines, kept.get((entry.module, entry.function), []))
        out.append(f"### {' / '.join(entry.kinds)}: `{entry.function}`")
        out.append("")
        if entry.doc:
            out += [entry.doc, ""]
        out += [f"- en: `{p}`" for p in entry.english]
        out += [f"- zh: `{p}`" for p in entry.chinese]
        params = ", ".join(f"`{n}`: {t}" for n, t in entry.params.items()) or "none"
        out.append(f"- parameters: {params}")
        out.append(f"- example: `{en_example or zh_example or '(not used in a feature yet)'}`")
        if en_example and zh_example:
            out.append(f"- 示例: `{zh_example}`")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--check", action="store_true", help="exit 1 if STEPS.md is not current")
    options = args.parse_args(argv)
    current = STEPS_MD.read_text("utf-8") if STEPS_MD.exists() else ""
    text = render(current)
    if options.check:
        if current != text:
            print(f"{STEPS_MD} is stale: run `python -m features.catalogue`", file=sys.stderr)
            return 1
        return 0
    STEPS_MD.write_text(text, "utf-8")
    print(f"wrote {STEPS_MD} ({len(collect())} steps)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
