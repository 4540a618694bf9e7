"""`snakemake --report`: one self-contained HTML file holding the report card, its plots and every
stage's result file, by stage. Here on a touched run with a real card and plot written in (the
report's content is checked after a real run in test_end_to_end.py)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

from test_workflow import complete, config, smk

from llmstack.pipeline import STAGES

# Snakemake 9 embeds each result as a data URI inside a JSON object keyed by its path.
RESULT = re.compile(r'"([^"]+)": \{"name": "[^"]*", "filename".*?"data_uri": "data:[^"]*?base64,([\w+/=]*)"', re.S)
CATEGORIES = re.compile(r"var categories = (\{.*?\});?\s*</script>", re.S)


def report_contents(html: Path) -> tuple[dict[str, bytes], dict[str, list[str]]]:
    """({path: embedded bytes}, {category: [paths]}) of a Snakemake HTML report."""
    text = html.read_text()
    files = {path: base64.b64decode(data) for path, data in RESULT.findall(text)}
    match = CATEGORIES.search(text)
    assert match, "no categories in the report"
    cats = {cat: [p for sub in subs.values() for p in sub] for cat, subs in json.loads(match.group(1)).items()}
    return files, cats


def test_report_holds_the_card_plots_and_each_stage_result(tmp_path):
    from matplotlib.figure import Figure

    complete(tmp_path, *config())
    run = tmp_path / "runs" / "tiny"
    (run / "report.md").write_text("# llmstack run tiny\n\n![loss curves](loss_curves.png)\n")
    fig = Figure(figsize=(2, 2))
    fig.text(0.5, 0.5, "loss")
    fig.savefig(run / "loss_curves.png", format="png")
    smk(tmp_path, "--report", str(tmp_path / "report.html"), *config())
    files, cats = report_contents(tmp_path / "report.html")
    assert files["runs/tiny/report.md"] == (run / "report.md").read_bytes()
    assert files["runs/tiny/loss_curves.png"] == (run / "loss_curves.png").read_bytes()
    assert set(cats["report card"]) == {f"runs/tiny/{f}" for f in ("report.md", "loss_curves.png", "reward_curves.png")}
    for name, st in STAGES.items():  # a category per stage, holding its result file
        result = st.declared[st.result]
        assert cats[name] and all(p.startswith(f"artifacts/{name}/") and p.endswith(result) for p in cats[name])
    assert len(cats["eval"]) == 3  # one per evaluated chat model
    caption = 'Results of the <tt class=\\"docutils literal\\">pretrain</tt> stage'  # as the HTML's JSON escapes it
    assert caption in (tmp_path / "report.html").read_text()
