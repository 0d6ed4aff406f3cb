"""The MLflow UI at a glance (issue 27), in headless Chromium on a real small learning-rate sweep: the link `expkit ui`
prints opens the model-training view (not GenAI), the sweep's parent row shows its best objective without scrolling, and
each child's swept value is visible in the name column at 1,600 px.

MLflow 3.17.2 chooses GenAI or model training from the URL's `workflowType` parameter or the browser's last choice (GenAI
in a new browser), not from the experiment's `mlflow.experimentKind` tag (checked here: the same page without the
parameter opens GenAI although the tag is set). In CI (CI=true) a missing Chromium is a failure, as in test_ui.py."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pytest

from tests import mlflow_server as ms
from tests.chromium import CHROMIUM, Page, run_in_browser
from tests.conftest import expkit_env, run_inprocess

SWEEP = (
    "train", "-m", "+experiment=mnist_dense", "optimizer.learning_rate=0.001,0.0001", "dataset.max_train_samples=600",
    "dataset.validation.holdout=200", "dataset.max_test_samples=300", "trainer.epochs=1",
)  # fmt: skip

EXPAND = (
    "(() => { const b = document.querySelector('button[data-component-id*=\"runnamecellrenderer\"]'); if (b) b.click(); return !!b; })()"
)
# Per table row: its name, where the name's first word (the swept value) ends on screen, and where the name cell's
# visible text ends (less room for the ellipsis when the name is cut); and the parent's best/objective cell.
ROWS = """(() => {
  const viewport = document.querySelector('.ag-center-cols-viewport').getBoundingClientRect();
  return Array.from(document.querySelectorAll('[role="row"][aria-rowindex]')).map(row => {
    const link = row.querySelector('[col-id*="Run Name"] a[href*="/runs/"]');
    if (!link) return null;
    const text = link.innerText.trim();
    const node = document.createTreeWalker(link, NodeFilter.SHOW_TEXT).nextNode();
    const first = text.split(' ')[0];
    const range = document.createRange();
    range.setStart(node, node.textContent.indexOf(first));
    range.setEnd(node, node.textContent.indexOf(first) + first.length);
    const cut = link.scrollWidth > link.clientWidth;
    const cell = row.querySelector('[col-id*="Run Name"]').getBoundingClientRect();
    const box = link.getBoundingClientRect();
    const best = Array.from(document.querySelectorAll(`[role="row"][aria-rowindex="${row.getAttribute('aria-rowindex')}"]`))
      .map(r => r.querySelector('[col-id="metrics.\\u0060best/objective\\u0060"]')).find(c => c);
    const bestBox = best ? best.getBoundingClientRect() : null;
    return {
      name: text, first, firstRight: range.getBoundingClientRect().right,
      visibleRight: Math.min(cell.right, box.right) - (cut ? 12 : 0),
      best: best ? best.innerText.trim() : null,
      bestShown: !!bestBox && bestBox.left >= viewport.left && bestBox.right <= viewport.right + 1 && bestBox.width > 0,
    };
  }).filter(r => r);
})()"""
# Nav entries only the GenAI view has, and one only the model-training view has.
GENAI_ONLY = ("Judges", "Prompts")
TRAINING_ONLY = "Model registry"


@dataclass
class Ui:
    root: Path
    url: str
    output: str

    def client(self) -> mlflow.MlflowClient:
        return mlflow.MlflowClient(f"sqlite:///{self.root / 'mlflow.db'}")


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[Ui]:
    if CHROMIUM is None:
        if os.environ.get("CI", "").lower() in ("1", "true"):
            pytest.fail("chromium is not installed in CI: .ci/run installs Debian's chromium package (needs root and apt-get)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    root = tmp_path_factory.mktemp("lr-sweep")
    done = run_inprocess(*SWEEP, cwd=root, EXPKIT_DATA_DIR=str(shared_data))  # what the UI shows: the same under any launcher
    assert done.returncode == 0, done.stderr[-3000:]
    port = ms.free_port()
    command = [sys.executable, "-m", "expkit.cli", "ui", "--port", str(port)]
    server = ms.start_process(command, url=f"http://127.0.0.1:{port}", log=root / "ui.log", cwd=root, env=expkit_env())
    try:
        ms.wait_healthy(server, timeout=180)
        yield Ui(root, server.url, server.output())
    finally:
        ms.stop(server)


def nav(text: str) -> set[str]:
    return {line.strip() for line in text.splitlines()}


@pytest.mark.slow
def test_the_ui_opens_the_training_view_with_the_best_objective_and_the_swept_values_visible(ui: Ui, tmp_path: Path) -> None:
    client = ui.client()
    experiment = client.get_experiment_by_name("mnist_dense")
    assert experiment is not None and experiment.tags.get("mlflow.experimentKind") == "custom_model_development"
    found = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in found if r.data.tags.get("expkit.sweep") == "parent"]
    children = [r for r in found if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 2
    link = next(line.split(": ", 1)[1] for line in ui.output.splitlines() if line.startswith("  mnist_dense ("))
    plain = f"{ui.url}/#/experiments/{experiment.experiment_id}/runs"

    async def script(page: Page) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        await page.open(plain)  # a new browser, no workflowType: MLflow's GenAI view, whatever the experiment's tag says
        seen["plain"] = await page.wait_for(parent.info.run_name, *GENAI_ONLY)
        await page.open(link)  # what `expkit ui` prints
        seen["linked"] = await page.wait_for(parent.info.run_name, "best/objective", TRAINING_ONLY)
        assert await page.evaluate(EXPAND), "the sweep parent has no expand button"
        await page.wait_for(*(c.info.run_name.split()[0] for c in children))
        await page.evaluate("new Promise(r => setTimeout(r, 1000))")
        seen["rows"] = await page.evaluate(ROWS)
        await page.screenshot(tmp_path / "runs.png")
        return seen

    seen = run_in_browser(tmp_path / "profile", script)
    print(f"screenshot: {tmp_path / 'runs.png'}")
    assert set(GENAI_ONLY) <= nav(seen["plain"])  # the check below can tell the two views apart
    linked = nav(seen["linked"])
    assert TRAINING_ONLY in linked and not set(GENAI_ONLY) & linked, seen["linked"][:2000]

    rows = {r["name"]: r for r in seen["rows"]}
    assert set(rows) == {parent.info.run_name, *(c.info.run_name for c in children)}, rows
    top = rows[parent.info.run_name]
    assert top["best"] == repr(parent.data.metrics["best/objective"]) and top["bestShown"], top  # e.g. 0.6084245, in view
    best = min(children, key=lambda c: c.data.metrics["objective"])
    assert parent.data.metrics["best/objective"] == best.data.metrics["objective"]
    shown = set()
    for child in children:
        row = rows[child.info.run_name]
        lr = child.data.params["optimizer.learning_rate"]
        assert row["first"] == f"lr={lr}", row  # the swept value leads the name
        assert row["firstRight"] <= row["visibleRight"], row  # ... and is on screen, not cut
        shown.add(row["first"])
    assert len(shown) == 2  # the children can be told apart
    data = (tmp_path / "runs.png").read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 20_000
