"""A comparison the size of the demo's (12 models x 4 tasks) stays one self-contained file under 1 MB (issue 12;
the demo report was 2.4 MB): compact SVG, per-model diagrams folded, one overlaid diagram per task."""

from __future__ import annotations

import re

from comparison_fixtures import DEMO_MODELS, DEMO_TASKS, demo_sized_page


def test_a_demo_sized_comparison_is_under_1_mb_and_self_contained():
    html = demo_sized_page().read_text()
    print(f"demo-sized distill page: {len(html.encode()):,} bytes")
    assert len(html.encode()) < 1_000_000
    # one headline figure, an overlaid diagram per task, every per-model diagram (folded), all inline
    assert html.count("<svg") == 1 + len(DEMO_TASKS) + len(DEMO_MODELS) * len(DEMO_TASKS)
    assert html.count("<details>") == len(DEMO_TASKS)
    assert not re.search(r'(?:src|href)="(?:https?:|//|file:)', html)  # nothing fetched from elsewhere
