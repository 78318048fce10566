"""The README's python examples run as written, each in a fresh namespace."""

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


def test_every_example_runs():
    for i, block in enumerate(python_blocks(README.read_text())[1:], start=2):
        exec(compile(block, f"{README}:block{i}", "exec"), {"__name__": f"readme_example_{i}"})  # noqa: S102
