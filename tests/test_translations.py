"""The Chinese edition: every prose cell of a translated notebook has a current translation, the
built Chinese notebooks are up to date, and their code cells and outputs are the English ones.

A notebook without a translations file (``notebooks/zh/translations/NN.json``) has no Chinese
edition yet and is not checked. When one of these tests fails, ``python -m iokit.app.translate
stale`` lists what to translate again, and ``... build`` rewrites the Chinese notebooks.
"""

import json
import re
from pathlib import Path

import pytest

from iokit.app import translate
from iokit.errors import FormatError

NOTEBOOKS = translate.NOTEBOOKS
TRANSLATED = sorted(p.stem for p in translate.TRANSLATIONS.glob("[0-9][0-9].json"))
ENGLISH = translate.english_notebooks()


def test_some_notebooks_are_translated():
    assert {"00", "03"} <= set(TRANSLATED)


@pytest.mark.parametrize("number", TRANSLATED)
def test_every_prose_cell_has_a_current_translation(number):
    missing = translate.stale()[number]
    assert not missing, (
        f"notebook {number}: English cells without a current translation {missing}; run "
        f"python -m iokit.app.translate update {number}, translate the empty zh fields, then "
        "python -m iokit.app.translate build")


def test_the_built_notebooks_are_up_to_date(tmp_path):
    built = translate.build(out_dir=tmp_path)
    assert sorted(Path(p).name[:2] for p in built) == TRANSLATED
    committed = sorted(p.name for p in (NOTEBOOKS / "zh").glob("*.ipynb"))
    assert committed == sorted(Path(p).name for p in built), "a Chinese notebook without " \
        "translations, or one not built: run python -m iokit.app.translate build"
    for path in built:
        assert Path(path).read_bytes() == (NOTEBOOKS / "zh" / Path(path).name).read_bytes(), \
            f"notebooks/zh/{Path(path).name} is out of date: python -m iokit.app.translate build"
    again = translate.build(out_dir=tmp_path / "again")
    for path in again:  # a rebuild gives the same bytes
        assert Path(path).read_bytes() == (tmp_path / Path(path).name).read_bytes()


@pytest.mark.parametrize("number", TRANSLATED)
def test_code_and_outputs_are_the_english_ones(number):
    english = json.loads(ENGLISH[number].read_text(encoding="utf-8"))
    chinese = json.loads((NOTEBOOKS / "zh" / ENGLISH[number].name).read_text(encoding="utf-8"))
    assert [c["cell_type"] for c in chinese["cells"]] == [c["cell_type"] for c in english["cells"]]
    for en, zh in zip(english["cells"], chinese["cells"]):
        assert en.get("id") == zh.get("id")
        if en["cell_type"] == "code":
            assert zh == en
        else:
            assert re.search(r"[\u4e00-\u9fff]", "".join(zh["source"])), \
                f"cell {en.get('id')} of notebook {number} has no Chinese text"


@pytest.mark.parametrize("number", TRANSLATED)
def test_links_point_from_the_chinese_folder(number):
    chinese = json.loads((NOTEBOOKS / "zh" / ENGLISH[number].name).read_text(encoding="utf-8"))
    for cell in chinese["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        for _, target in translate.LINK.findall("".join(cell["source"])):
            if re.match(r"[a-z][a-z0-9+.-]*:|#", target):
                continue
            assert (NOTEBOOKS / "zh" / target.split("#")[0]).resolve().exists(), target


def small_notebook(folder: Path, prose: list[str]) -> Path:
    cells = [{"cell_type": "markdown", "id": f"m{i}", "metadata": {}, "source": s}
             for i, s in enumerate(prose)]
    cells.append({"cell_type": "code", "id": "c", "metadata": {}, "execution_count": 1,
                  "source": "print(1)", "outputs": [{"name": "stdout", "output_type": "stream",
                                                     "text": "1\n"}]})
    path = folder / "07_demo.ipynb"
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4,
                                "nbformat_minor": 5}), encoding="utf-8")
    return path


def test_a_changed_english_cell_goes_stale_and_keeps_its_old_translation(tmp_path):
    nbs, tr = tmp_path / "notebooks", tmp_path / "notebooks" / "zh" / "translations"
    nbs.mkdir()
    small_notebook(nbs, ["# Title\n\nnext: [08](08_next.ipynb)", "Some prose."])
    assert translate.stale(nbs, tr) == {"07": None}  # no translations file: no edition yet
    translate.update("07", nbs, tr)
    assert [i for i, _ in translate.stale(nbs, tr)["07"]] == [0, 1]
    data = json.loads((tr / "07.json").read_text(encoding="utf-8"))
    data["cells"][0]["zh"] = "# 标题\n\n下一本：[08](08_next.ipynb)"
    data["cells"][1]["zh"] = "一些文字。"
    (tr / "07.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    assert translate.stale(nbs, tr)["07"] == []
    built = translate.build(nbs, tr)
    zh = json.loads(Path(next(iter(built))).read_text(encoding="utf-8"))
    assert "".join(zh["cells"][0]["source"]).endswith("[08](../08_next.ipynb)")  # not translated
    assert zh["cells"][2]["outputs"][0]["text"] == "1\n"

    small_notebook(nbs, ["# Title\n\nnext: [08](08_next.ipynb)", "Some changed prose."])
    assert translate.stale(nbs, tr)["07"] == [(1, "Some changed prose.")]
    translate.update("07", nbs, tr)
    data = json.loads((tr / "07.json").read_text(encoding="utf-8"))
    assert data["cells"][1] == {"key": translate.cell_key("Some changed prose."),
                                "en": "Some changed prose.", "zh": ""}
    assert data["stale"][0]["zh"] == "一些文字。"  # kept, to reuse


def test_a_broken_translations_file_is_named(tmp_path):
    (tmp_path / "07.json").write_text('{"cells": [{"key": "x", "en": "a", "zh": "b"}]}')
    with pytest.raises(FormatError, match=r"07\.json: cells\[0\] needs .* update 07"):
        translate.load_translations("07", tmp_path)
    (tmp_path / "07.json").write_text("{not json")
    with pytest.raises(FormatError, match=r"07\.json: not a valid translations file"):
        translate.load_translations("07", tmp_path)
