"""The demo's plumbing on a tiny budget: files written, table complete, figures consistent."""

from __future__ import annotations

import json

from PIL import Image

from attnmeta.runs.demo import PAPER_MSE, SinusoidDemoConfig, run_sinusoid_demo


def test_tiny_demo_writes_table_json_and_plot(tmp_path):
    config = SinusoidDemoConfig(test_tasks=20, test_query=10,
                                steps={"maml": 3, "pretrained": 3, "maml-attention": 2,
                                       "in-context": 2})
    record = run_sinusoid_demo(config, tmp_path, command="attnmeta demo (test)", progress=False)
    saved = json.loads((tmp_path / "sinusoid.json").read_text())
    assert saved["command"] == "attnmeta demo (test)"
    settings = {(r["learner"], r["k_shot"], r["steps"]) for r in saved["results"]}
    for learner in ("maml", "pretrained", "maml-attention"):
        for k in (5, 10):
            assert {(learner, k, 1), (learner, k, 10)} <= settings
    assert {("in-context", 5, 0), ("in-context", 10, 0)} <= settings
    for row in saved["results"]:
        assert row["n"] == 20 and row["ci95"] > 0
        assert row["paper"] == PAPER_MSE.get((row["learner"], row["k_shot"], row["steps"]))
    assert record["results"] == saved["results"]
    table = (tmp_path / "sinusoid.md").read_text()
    assert table.count("\n| maml |") == 4 and "| 0.67 |" in table
    with Image.open(tmp_path / "sinusoid.png") as image:
        assert image.size[0] > 500 and image.size[1] > 300
