"""Show the package's own code in a notebook: the lines at the heart of a technique.

A notebook that explains the loader's worker loop shows ``show_source(Loader._work)``: the text
comes from the module that runs, so what the learner reads can never drift from what executes.
"""

from __future__ import annotations

import inspect
import textwrap
from pathlib import Path

import iokit

ROOT = Path(iokit.__file__).resolve().parent.parent  # the folder that holds the package

def source_text(obj) -> str:
    """The source of a function, method or class, dedented, with where it lives."""
    module = inspect.getmodule(obj)
    name = f"{module.__name__}.{obj.__qualname__}"
    path = Path(inspect.getsourcefile(obj)).resolve()
    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
    return f"# {name}, from {where}\n" + textwrap.dedent(inspect.getsource(obj))


def show_source(*objs):
    """Display the source of each of ``objs`` as highlighted code (a Markdown code block)."""
    from IPython.display import Markdown

    return Markdown("\n\n".join(f"```python\n{source_text(o).rstrip()}\n```" for o in objs))
