"""The code a notebook shows is the code that runs."""

import inspect

from iokit.lab.source import show_source, source_text
from iokit.loader import Loader


def test_source_text_is_the_running_code_and_says_where_it_lives():
    text = source_text(Loader._work)
    assert text.splitlines()[0] == "# iokit.loader.Loader._work, from iokit/loader.py"
    assert text.splitlines()[1].startswith("def _work(self")  # dedented
    assert inspect.getsource(Loader._work).strip().splitlines()[-1].strip() in text


def test_show_source_renders_a_python_code_block():
    md = show_source(Loader._work).data
    assert md.startswith("```python\n# iokit.loader.Loader._work") and md.endswith("```")
