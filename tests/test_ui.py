"""The real MLflow UI, rendered by headless Chromium, on the small MNIST sweep: the runs table shows the sweep parent
with its children (swept value first in their names), and a run page shows its metrics, its run card and its plots.

In CI (CI=true) a missing Chromium is a failure, not a skip: `.ci/run` installs Debian's `chromium` where it can, and
a UI check that silently never runs is what this test replaces."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import mlflow_server as ms
from tests.chromium import CHROMIUM, Page, run_in_browser
from tests.conftest import expkit_env
from tests.mnist_sweep import Sweep, mnist_sweep

# Click the expander of the first row with children (the sweep parent) in the runs table.
EXPAND = (
    "(() => { const b = document.querySelector('button[data-component-id*=\"runnamecellrenderer\"]'); if (b) b.click(); return !!b; })()"
)
# The run names of the table's rows, top to bottom (AG Grid's DOM order is not the visual order).
ROW_NAMES = """Array.from(document.querySelectorAll('[role="row"][aria-rowindex]'))
  .map(row => [Number(row.getAttribute('aria-rowindex')), row.querySelector('[col-id*="Run Name"] a[href*="/runs/"]')])
  .filter(([, link]) => link)
  .sort((a, b) => a[0] - b[0])
  .map(([, link]) => link.innerText.trim())"""


@pytest.fixture(scope="module")
def chromium() -> str:
    if CHROMIUM is None:
        if os.environ.get("CI", "").lower() in ("1", "true"):
            pytest.fail("chromium is not installed in CI: .ci/run installs Debian's chromium package (needs root and apt-get)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    return CHROMIUM


@pytest.fixture(scope="module")
def ui(chromium: str, shared_data: Path) -> Iterator[tuple[Sweep, str, str]]:
    sweep = mnist_sweep(shared_data)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    port = ms.free_port()
    command = [sys.executable, "-m", "expkit.cli", "ui", "--port", str(port)]
    server = ms.start_process(command, url=f"http://127.0.0.1:{port}", log=sweep.root / "ui.log", cwd=sweep.root, env=expkit_env())
    try:
        ms.wait_healthy(server, timeout=180)
        yield sweep, server.url, server.output()
    finally:
        ms.stop(server)


@pytest.mark.slow
def test_runs_table_shows_the_sweep_tree_and_a_run_page_its_metrics_and_plots(ui: tuple[Sweep, str, str], tmp_path: Path) -> None:
    sweep, url, server_output = ui
    parent, children = sweep.parent(), sweep.children()
    parent_experiment = sweep.client().get_experiment(parent.info.experiment_id).name
    child = children[0]

    async def script(page: Page) -> dict[str, str]:
        seen: dict[str, str] = {}
        await page.open(f"{url}/#/experiments/{parent.info.experiment_id}/runs")
        await page.wait_for(parent.info.run_name)
        assert await page.evaluate(EXPAND), "the sweep parent has no expand button"
        seen["runs"] = await page.wait_for(*(c.info.run_name[:12] for c in children))
        seen["rows"] = "\n".join(await page.evaluate(ROW_NAMES))
        await page.screenshot(tmp_path / "runs.png")
        await page.open(f"{url}/#/experiments/{child.info.experiment_id}/runs/{child.info.run_id}")
        seen["run"] = await page.wait_for("test_accuracy", "Key metrics", "expkit resume")
        loaded = "Array.from(document.images).filter(i => i.src.includes('get-artifact') && i.complete && i.naturalWidth > 0).length"
        for _ in range(60):
            seen["images"] = str(await page.evaluate(loaded))
            if int(seen["images"]) >= 3:
                break
            await page.evaluate("new Promise(r => setTimeout(r, 500))")
        await page.screenshot(tmp_path / "run.png")
        await page.open(f"{url}/#/experiments/{child.info.experiment_id}/runs/{child.info.run_id}/artifacts")
        seen["artifacts"] = await page.wait_for("plots", "run_card.md", "config.yaml")
        # The link `expkit ui` prints opens expkit's view of the table: metric and swept-param columns shown.
        link = next(line.split(": ", 1)[1] for line in server_output.splitlines() if line.startswith(f"  {parent_experiment} ("))
        assert "?workflowType=machine_learning&" in link and link.endswith("&viewStateShareKey=expkit"), link  # the training view
        await page.open(link)
        seen["table_view"] = await page.wait_for(parent.info.run_name, "objective", "test_accuracy")
        return seen

    seen = run_in_browser(tmp_path / "profile", script)
    # The parent first, its two children below it (newest first); swept values lead the child names.
    rows = seen["rows"].splitlines()
    assert rows[0] == parent.info.run_name, rows
    assert sorted(rows[1:3]) == sorted(c.info.run_name for c in children), rows
    assert [c.info.run_name[:6] for c in children] == ["seed=1", "seed=2"]
    assert "mnist (" in seen["runs"]  # the Dataset column
    run_page = seen["run"]
    assert f"{child.data.metrics['test_accuracy']:.4f}" in run_page  # in the run card
    assert "test_loss" in run_page and "val_loss" in run_page
    assert int(seen["images"]) >= 3, "the run card's plots did not load"  # loss, accuracy, confusion matrix
    for shot in ("runs.png", "run.png"):
        data = (tmp_path / shot).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 20_000
    print(f"screenshots: {tmp_path / 'runs.png'}, {tmp_path / 'run.png'}")
