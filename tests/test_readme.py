"""The README's usage example runs as written."""

from __future__ import annotations

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def test_usage_example_runs():
    blocks = python_blocks(README.read_text())
    assert blocks, "README has no python example"
    namespace: dict = {"__name__": "readme_example"}
    exec(compile(blocks[0], str(README), "exec"), namespace)  # noqa: S102
    grads, grads_ref = namespace["grads"], namespace["grads_ref"]
    assert set(grads) == {"w", "b", "v"}
    assert grads["w"].shape == (5, 5, 1, 6) and grads_ref["v"].shape == (864, 10)
