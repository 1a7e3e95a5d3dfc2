"""The Chinese edition of the notebooks: the English notebooks' code with Chinese prose.

    python -m iokit.app.translate build          # write notebooks/zh/NN_*.ipynb
    python -m iokit.app.translate stale          # English cells without a current translation
    python -m iokit.app.translate update 01      # start or refresh 01's translations file

There is one source of code. A Chinese notebook is its English notebook with each markdown cell
replaced by its translation. Code cells, their outputs, cell ids and the metadata are copied
unchanged, so the Chinese notebooks share the English notebooks' checked outputs and nbval does
not run them a second time. Translations live in ``notebooks/zh/translations/NN.json``, one
entry per English markdown cell, keyed by a hash of that cell's source::

    {"notebook": "03_compression.ipynb",
     "cells": [{"key": "<hash of en>", "en": "<English source>", "zh": "<Chinese source>"}, ...],
     "stale": [...]}

An English cell that changes gets a new hash, so its old translation no longer applies:
``stale`` lists it, ``update`` moves the old entry to ``"stale"`` (to reuse while redoing it) and
adds the new English with an empty ``"zh"`` to fill in. A notebook without a translations file
has no Chinese edition yet. Translators write links as the English cell has them
(``01_naive_loop.ipynb``, ``../README.md``); ``build`` points them from ``notebooks/zh/``: to
the Chinese notebook when there is one, else to the English one. A rebuild of unchanged inputs
gives byte-identical files.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import re
import sys
from pathlib import Path

from iokit.atomic import write_bytes_atomic
from iokit.errors import FormatError, IokitError, ParameterError

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
ZH = NOTEBOOKS / "zh"
TRANSLATIONS = ZH / "translations"
LINK = re.compile(r"(\]\(|href=\"|src=\")([^)\"\s]+)")


def cell_key(source: str) -> str:
    """The key of an English markdown cell: the first 16 hex digits of its source's SHA-256."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]


def english_notebooks(folder=NOTEBOOKS) -> dict[str, Path]:
    """{"00": path, ...}: the English notebooks, by number."""
    return {p.name[:2]: p for p in sorted(Path(folder).glob("[0-9][0-9]_*.ipynb"))}


def _source(cell) -> str:
    src = cell["source"]
    return src if isinstance(src, str) else "".join(src)


def _read_json(path: Path, what: str):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FormatError(f"{path}: no such {what}.") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise FormatError(f"{path}: not a valid {what} ({exc}); fix the JSON, or restore it "
                          "with git.") from None


def _dump(data) -> bytes:
    """JSON as Jupyter writes notebooks (indent 1, sorted keys, UTF-8, final newline)."""
    return (json.dumps(data, indent=1, ensure_ascii=False, sort_keys=True) + "\n").encode()


def translations_path(number: str, folder=TRANSLATIONS) -> Path:
    return Path(folder) / f"{number}.json"


def load_translations(number: str, folder=TRANSLATIONS) -> dict:
    """The translations file of notebook ``number``, checked: every entry's key is the hash of
    its English text."""
    path = translations_path(number, folder)
    data = _read_json(path, "translations file")
    for i, entry in enumerate(data.get("cells", [])):
        if set(entry) != {"key", "en", "zh"} or entry["key"] != cell_key(entry["en"]):
            raise FormatError(f"{path}: cells[{i}] needs the fields key, en and zh, with key the "
                              "hash of en; run python -m iokit.app.translate update "
                              f"{number} to rewrite the file.")
    return data


def current(data: dict) -> dict[str, str]:
    """{key: Chinese text} of the entries that have a translation."""
    return {e["key"]: e["zh"] for e in data.get("cells", []) if e["zh"].strip()}


def missing_cells(english: dict, done: dict[str, str]) -> list[tuple[int, str]]:
    """(cell index, first line) of each English markdown cell without a current translation."""
    out = []
    for i, cell in enumerate(english["cells"]):
        if cell["cell_type"] == "markdown" and cell_key(_source(cell)) not in done:
            out.append((i, _source(cell).strip().splitlines()[0] if _source(cell).strip() else ""))
    return out


def _relink(text: str, translated: set[str]) -> str:
    """Links written as from notebooks/, pointed from notebooks/zh/."""
    def fix(m):
        target = m.group(2)
        if re.match(r"[a-z][a-z0-9+.-]*:|#|/", target):
            return m.group(0)  # absolute, another scheme, or an anchor in this notebook
        name = target.split("#")[0]
        if re.fullmatch(r"\d\d_[^/]+\.ipynb", name) and name[:2] in translated:
            return m.group(0)  # the Chinese notebook beside this one
        return m.group(1) + "../" + target
    return LINK.sub(fix, text)


def build_notebook(english_path: Path, data: dict, translated: set[str]) -> tuple[dict, list]:
    """The Chinese notebook of ``english_path`` and the English cells left untranslated (kept in
    English)."""
    english = _read_json(english_path, "notebook")
    done = current(data)
    out = copy.deepcopy(english)
    for cell in out["cells"]:
        if cell["cell_type"] == "markdown":
            key = cell_key(_source(cell))
            if key in done:
                cell["source"] = _relink(done[key], translated).splitlines(keepends=True)
            else:
                cell["source"] = _relink(_source(cell), translated).splitlines(keepends=True)
    out["metadata"]["iokit"] = {"edition": "zh", "english": english_path.name,
                                "built_by": "python -m iokit.app.translate build"}
    return out, missing_cells(english, done)


def build(notebooks=NOTEBOOKS, translations=TRANSLATIONS, out_dir=None) -> dict[str, list]:
    """Write every Chinese notebook that has a translations file; returns {path: missing}."""
    notebooks = Path(notebooks)
    out_dir = Path(out_dir) if out_dir else notebooks / "zh"
    english = english_notebooks(notebooks)
    translated = {n for n in english if translations_path(n, translations).exists()}
    result = {}
    for number in sorted(translated):
        nb, missing = build_notebook(english[number], load_translations(number, translations),
                                     translated)
        path = out_dir / english[number].name
        out_dir.mkdir(parents=True, exist_ok=True)
        data = _dump(nb)
        if not path.exists() or path.read_bytes() != data:
            write_bytes_atomic(path, data)
        result[str(path)] = missing
    return result


def stale(notebooks=NOTEBOOKS, translations=TRANSLATIONS) -> dict[str, list | None]:
    """{number: missing cells} for every English notebook; None where there is no translations
    file (no Chinese edition yet)."""
    out = {}
    for number, path in english_notebooks(notebooks).items():
        if not translations_path(number, translations).exists():
            out[number] = None
            continue
        english = _read_json(path, "notebook")
        out[number] = missing_cells(english, current(load_translations(number, translations)))
    return out


def update(number: str, notebooks=NOTEBOOKS, translations=TRANSLATIONS) -> Path:
    """Rewrite ``number``'s translations file in the English notebook's order: kept
    translations, new English cells with an empty ``zh``, and old translations whose English
    changed under ``"stale"``."""
    english = english_notebooks(notebooks)
    if number not in english:
        raise ParameterError(f"no English notebook {number}; choose one of: "
                             f"{', '.join(english)}.")
    path = translations_path(number, translations)
    old = load_translations(number, translations) if path.exists() else {}
    known = {e["key"]: e for e in old.get("cells", []) + old.get("stale", []) if e["zh"].strip()}
    cells, seen = [], set()
    for cell in _read_json(english[number], "notebook")["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        src = _source(cell)
        key = cell_key(src)
        if key not in seen:
            seen.add(key)
            cells.append({"key": key, "en": src, "zh": known.get(key, {}).get("zh", "")})
    gone = [e for k, e in known.items() if k not in seen]
    data = {"notebook": english[number].name, "cells": cells, "stale": gone}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, _dump(data))
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m iokit.app.translate",
        description="The Chinese edition of the notebooks: English code, Chinese prose.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="write notebooks/zh/NN_*.ipynb from the English notebooks and "
                   "the translations")
    sub.add_parser("stale", help="list the English prose cells without a current translation "
                   "(exit code 1 when a translated notebook has any)")
    up = sub.add_parser("update", help="start or refresh a notebook's translations file (new "
                        "English cells get an empty zh to fill in)")
    up.add_argument("numbers", nargs="+", help="notebook numbers, e.g. 01 04")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            for path, missing in build().items():
                note = f"; {len(missing)} cell(s) left in English" if missing else ""
                print(f"{Path(path).relative_to(REPO)}{note}")
            return 0
        if args.command == "update":
            for number in args.numbers:
                path = update(f"{int(number):02d}" if number.isdigit() else number)
                empty = sum(not e["zh"].strip() for e in load_translations(path.stem)["cells"])
                print(f"{path.relative_to(REPO)}: {empty} cell(s) to translate")
            return 0
        bad = 0
        for number, missing in stale().items():
            if missing is None:
                print(f"{number}: no Chinese edition yet (python -m iokit.app.translate "
                      f"update {number} starts one)")
            elif missing:
                bad += 1
                print(f"{number}: {len(missing)} cell(s) without a current translation:")
                for i, first in missing:
                    print(f"    cell {i}: {first[:70]}")
            else:
                print(f"{number}: every prose cell translated")
        return 1 if bad else 0
    except IokitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
