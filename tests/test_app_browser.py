"""The dashboard in a real headless browser (dash_duo + Debian chromium), with real workers."""

import os
import time
from pathlib import Path

import numpy as np
import pytest
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from app import create_app
from core.metrics import heatmap_order
from core.pool import WorkerPool
from tests.helpers import diverging_config, wait_until

SCREENSHOTS = Path(os.environ.get("LAB_SCREENSHOT_DIR", "/tmp/lab-screenshots"))


@pytest.fixture
def lab(tmp_path):
    pool = WorkerPool(tmp_path / "data", workers=1, threads=1).start()
    yield pool.lab
    pool.stop()


def trace_lengths(dash_duo, graph_id: str) -> list[int]:
    script = (f"const el = document.querySelector('#{graph_id} .js-plotly-plot');"
              "if (!el || !el._fullData) return [];"
              "return el._fullData.map(t => (t.z ? t.z.length : (t.x ? t.x.length : 0)));")
    return dash_duo.driver.execute_script(script)


def trace_names(dash_duo, graph_id: str) -> list[str]:
    script = (f"const el = document.querySelector('#{graph_id} .js-plotly-plot');"
              "return (el && el._fullData) ? el._fullData.map(t => t.name) : [];")
    return dash_duo.driver.execute_script(script)


def grouped_names(dash_duo, graph_id: str) -> list[str]:
    """Trace names, each after its legend group's ("demo: final loss") where it has one."""
    script = (f"const el = document.querySelector('#{graph_id} .js-plotly-plot');"
              "return (el && el._fullData) ? el._fullData.map(t => t.legendgroup ? `${t.legendgroup}: ${t.name}` "
              ": t.name) : [];")
    return dash_duo.driver.execute_script(script)


def top_row(dash_duo, graph_id: str):  # noqa: ANN201 (a category label or a number)
    """What the graph draws in its top row, as a person sees it."""
    script = (f"const el = document.querySelector('#{graph_id} .js-plotly-plot');"
              "if (!el || !el._fullLayout || !el._fullLayout.yaxis.p2l) return null;"
              "const ax = el._fullLayout.yaxis; const at = Math.round(ax.p2l(1));"  # 1 px below the top edge
              "return ax.type === 'category' ? ax._categories[at] : at;")
    return dash_duo.driver.execute_script(script)


def double_click(dash_duo, element_id: str) -> None:
    """Two clicks 150 ms apart, as a person's double click (selenium's comes too fast for a second request)."""
    dash_duo.driver.execute_script(f"const b = document.getElementById('{element_id}');"
                                   "b.click(); setTimeout(() => b.click(), 150);")


def set_input(dash_duo, element_id: str, value: str) -> None:
    box = dash_duo.find_element(f"#{element_id}")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(value, Keys.TAB)


def pick_by_clicking_the_heatmap(dash_duo, neuron: str, feature: str) -> None:
    """Inspect `neuron` and `feature` first, then click the heatmap's middle: the inspector must move to the
    cell the click picked and show that neuron's profile."""
    set_input(dash_duo, "inspect-neuron-input", neuron)
    set_input(dash_duo, "inspect-feature-input", feature)
    wait_until(lambda: f"Neuron {neuron}:" in dash_duo.find_element("#neuron-profile").text, timeout=20,
               message=f"n{neuron}")
    heatmap = dash_duo.find_element("#sfa-heatmap .nsewdrag")
    dash_duo.driver.execute_script("arguments[0].scrollIntoView({block: 'center', behavior: 'instant'});", heatmap)
    heatmap.click()
    picked = ("inspect-neuron-input", "inspect-feature-input")
    wait_until(lambda: [dash_duo.find_element(f"#{i}").get_attribute("value") for i in picked] != [neuron, feature],
               timeout=10, message="the click to pick a cell")
    chosen = dash_duo.find_element("#inspect-neuron-input").get_attribute("value")
    wait_until(lambda: f"Neuron {chosen}:" in dash_duo.find_element("#neuron-profile").text, timeout=10,
               message="the picked neuron's profile")


def click(dash_duo, selector: str) -> None:
    element = dash_duo.find_element(selector)
    dash_duo.driver.execute_script("arguments[0].scrollIntoView({block: 'center', behavior: 'instant'});", element)
    element.click()


def test_start_a_run_and_watch_it_learn(dash_duo, lab):
    app = create_app(lab)
    dash_duo.start_server(app)
    # A link holds the config: this one is the tiny demo preset with fewer steps.
    dash_duo.driver.get(dash_duo.server_url + "/?preset=demo-tiny&steps=3000&n_neurons=48")
    wait_until(lambda: dash_duo.find_element("#n-neurons-input").get_attribute("value") == "48",
               timeout=10, message="the form filled from the URL")
    assert dash_duo.find_element("#steps-input").get_attribute("value") == "3000"

    click(dash_duo, "#advanced-accordion .accordion-button")  # scrolled clear of the Start bar at the panel's foot
    wait_until(lambda: dash_duo.find_element("#eps-input").is_displayed(), timeout=5, message="advanced fields")
    # A bad value is flagged next to its field with the allowed range, and blocks the start button.
    set_input(dash_duo, "eps-input", "2")
    dash_duo.wait_for_contains_text("#eps-feedback", "(0, 1]", timeout=5)
    assert not dash_duo.find_element("#start-button").is_enabled()
    set_input(dash_duo, "eps-input", "0.0625")
    wait_until(lambda: dash_duo.find_element("#start-button").is_enabled(), timeout=5, message="start enabled")

    # a double click (a habit, or an impatient second click) queues one run, not two
    double_click(dash_duo, "start-button")
    dash_duo.wait_for_contains_text("#run-list", "demo-tiny", timeout=10)
    wait_until(lambda: lab.list() and lab.list()[0]["step"] > 0, timeout=30, message="training to start")
    time.sleep(1.0)
    assert len(lab.list()) == 1
    run = lab.list()[0]
    assert run["config"]["n_neurons"] == 48 and run["config"]["steps"] == 3000

    # The loss curve grows while the run trains, and the heatmap shows neurons x features.
    first = wait_until(lambda: trace_lengths(dash_duo, "loss-graph"), timeout=20, message="a loss curve")
    wait_until(lambda: trace_lengths(dash_duo, "loss-graph")[0] > first[0], timeout=20, message="the loss to update")
    # the smoothing slider's box cleared: it goes back to the weight drawn, and the view is drawn on (it froze)
    box = dash_duo.find_element("#smoothing-slider input")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.BACKSPACE, Keys.TAB)
    wait_until(lambda: box.get_attribute("value") == "0.6", timeout=5, message="the smoothing box refilled")
    set_input(dash_duo, "smoothing-slider input", "5")  # past its range, which its label states: held to it
    wait_until(lambda: box.get_attribute("value") == "0.99", timeout=5, message="the smoothing box at its maximum")
    assert "0 to 0.99" in dash_duo.find_element("label[for='smoothing-slider']").text
    set_input(dash_duo, "smoothing-slider input", "0.9")
    wait_until(lambda: "smoothed (0.9)" in dash_duo.find_element("#loss-graph").text, timeout=10,
               message="the loss smoothed at 0.9")
    heatmap_rows = wait_until(lambda: trace_lengths(dash_duo, "sfa-heatmap"), timeout=20, message="the heatmap")
    assert heatmap_rows == [48, 48]  # the neurons, and the strip of their r beside them
    # a zoom holds while this run trains, and is not carried onto the next run shown
    for graph_id in ("loss-graph", "sfa-heatmap"):
        assert dash_duo.driver.execute_script(
            f"return document.querySelector('#{graph_id} .js-plotly-plot').layout.uirevision") == run["id"]
    dash_duo.wait_for_contains_text("#stat-step", "/ 3,000", timeout=5)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    dash_duo.driver.set_window_size(1500, 1400)
    time.sleep(0.5)  # plotly redraws responsive graphs a moment after a resize
    dash_duo.driver.save_screenshot(str(SCREENSHOTS / "live-training.png"))

    wait_until(lambda: lab.get(run["id"])["status"] == "done", timeout=60, message="the run to finish")
    dash_duo.wait_for_contains_text("#download-area", "Download run file", timeout=10)
    dash_duo.wait_for_contains_text("#run-list", "done", timeout=5)
    dash_duo.wait_for_contains_text("#run-list .run-facts", "CPU, ", timeout=5)  # where it trained
    # The paper's order: the most selective neuron in the top row (the graph first showed an empty figure).
    first_neuron = heatmap_order(np.asarray(lab.latest_snapshot(run["id"])["sfa"], dtype=np.float32))[0][0]
    wait_until(lambda: top_row(dash_duo, "sfa-heatmap") == f"n{first_neuron}", timeout=10,
               message=f"n{first_neuron} on top (top row: {top_row(dash_duo, 'sfa-heatmap')})")
    dash_duo.driver.save_screenshot(str(SCREENSHOTS / "finished.png"))

    # Inside the model: the inspector opens on the finished run.
    wait_until(lambda: len(trace_lengths(dash_duo, "feature-curves")) == 4, timeout=20, message="feature curves")
    assert trace_lengths(dash_duo, "poly-map") == [32]  # N x N linear map of the polysemantic part
    assert top_row(dash_duo, "poly-map") == 0  # written as a matrix: feature 0 on top
    assert len(trace_lengths(dash_duo, "mono-histogram")) == 1
    assert trace_lengths(dash_duo, "mono-by-feature") == [32]  # every feature's mono neurons
    dash_duo.wait_for_contains_text("#mono-by-feature", "features have a monosemantic neuron", timeout=10)
    # Clicking a heatmap cell picks its feature and neuron.
    pick_by_clicking_the_heatmap(dash_duo, "47", "31")
    dash_duo.driver.execute_script(
        "document.getElementById('feature-curves').scrollIntoView({block: 'start', behavior: 'instant'});")
    dash_duo.driver.save_screenshot(str(SCREENSHOTS / "inspector.png"))
    dash_duo.driver.execute_script(
        "document.getElementById('poly-map').scrollIntoView({block: 'start', behavior: 'instant'});")
    dash_duo.driver.save_screenshot(str(SCREENSHOTS / "inspector-maps.png"))
    # A feature index out of range blanks only the views that need it, naming the range there.
    neuron_title = dash_duo.find_element("#neuron-profile .gtitle").text
    set_input(dash_duo, "inspect-feature-input", "500")
    dash_duo.wait_for_contains_text("#inspect-message", "Feature must be an integer from 0 to 31", timeout=10)
    dash_duo.wait_for_contains_text("#feature-curves", "Feature must be an integer from 0 to 31", timeout=10)
    dash_duo.wait_for_contains_text("#pair-grid", "Feature must be an integer from 0 to 31", timeout=10)
    assert dash_duo.find_element("#neuron-profile .gtitle").text == neuron_title
    feature_box = dash_duo.find_element("#inspect-feature-input")
    assert "is-invalid" in feature_box.get_attribute("class") and feature_box.get_attribute("max") == "31"
    assert trace_lengths(dash_duo, "poly-map") == [32]
    set_input(dash_duo, "inspect-feature-input", "3")
    wait_until(lambda: len(trace_lengths(dash_duo, "feature-curves")) == 4, timeout=20, message="feature 3")
    assert "is-invalid" not in dash_duo.find_element("#inspect-feature-input").get_attribute("class")

    # Duplicate: the same config with a new seed, named so that the two can be told apart.
    duplicate = dash_duo.driver.find_element_by_xpath("//div[@id='run-list']//button[text()='Duplicate']")
    dash_duo.driver.execute_script("arguments[0].scrollIntoView({block: 'center', behavior: 'instant'});", duplicate)
    duplicate.click()
    wait_until(lambda: len(lab.list()) == 2, timeout=10, message="the duplicate")
    copy = lab.list()[1]
    assert copy["config"] == {**run["config"], "seed": 1}  # the next seed: short, and the same on every lab
    dash_duo.wait_for_contains_text("#run-list", "demo-tiny (edited) (seed 1)", timeout=10)

    # Delete asks first (nothing can undo it): cancelling keeps the run, confirming removes it.
    def ask_to_delete():  # noqa: ANN202
        def click_delete():  # noqa: ANN202 (the question, or None)
            # The copy changes status as it starts and finishes, and its row is then rebuilt with new buttons:
            # a click landing on the old row is lost, so click again.
            try:
                button = dash_duo.driver.find_element_by_xpath(
                    f"//div[@id='run-list']//*[contains(@class, 'run-row')][.//span[text()='{copy['id']}']]"
                    "//button[text()='Delete']")
                dash_duo.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", button)
                button.click()
                return wait_until(lambda: _alert(dash_duo), timeout=3, message="the delete question")
            except (StaleElementReferenceException, AssertionError):
                return None

        return wait_until(click_delete, timeout=20, message="the delete question")

    question = ask_to_delete()
    assert copy["id"] in question.text and "cannot be undone" in question.text
    question.dismiss()
    time.sleep(1.5)
    assert len(lab.list()) == 2
    ask_to_delete().accept()
    wait_until(lambda: [m["id"] for m in lab.list()] == [run["id"]], timeout=10, message="the copy deleted")
    assert dash_duo.get_logs() == []


def _alert(dash_duo):  # noqa: ANN202 (selenium's Alert, or None)
    try:
        return dash_duo.driver.switch_to.alert
    except NoAlertPresentException:
        return None


def test_compare_two_runs_side_by_side(dash_duo, lab):
    dash_duo.start_server(create_app(lab))
    dash_duo.driver.set_window_size(1500, 1400)
    dash_duo.driver.get(dash_duo.server_url + "/?preset=demo-tiny&steps=1200")
    wait_until(lambda: dash_duo.find_element("#steps-input").get_attribute("value") == "1200", timeout=10,
               message="the form filled from the URL")
    # One click: the form's config at init bias 0 and -1, queued together as one batched job.
    set_input(dash_duo, "compare-values-input", "0, -1")
    click(dash_duo, "#compare-button")
    wait_until(lambda: "/compare?runs=" in dash_duo.driver.current_url, timeout=10, message="the compare page")
    runs = lab.list()
    assert len(runs) == 2 and runs[0]["job"] == runs[1]["job"]  # batched on the runs axis
    assert sorted(r["config"]["init_bias"] for r in runs) == [-1.0, 0.0]

    for i in range(2):
        wait_until(lambda i=i: trace_lengths(dash_duo, f"compare-heatmap-{i}") == [64, 64], timeout=30,
                   message=f"heatmap {i}")
    assert not dash_duo.find_element("#compare-slot-2").is_displayed()
    wait_until(lambda: "/compare?runs=" in dash_duo.find_element("#nav-compare").get_attribute("href"), timeout=5,
               message="the Compare nav link to carry the runs")
    wait_until(lambda: len(trace_lengths(dash_duo, "compare-loss")) == 2, timeout=20, message="two loss curves")
    legend = dash_duo.find_element("#compare-loss").text
    assert "init_bias=0" in legend and "init_bias=-1" in legend
    dash_duo.wait_for_contains_text("#compare-table", "loss (last 5%", timeout=10)  # "so far" while training

    wait_until(lambda: all(lab.get(r["id"])["status"] == "done" for r in runs), timeout=60, message="both done")
    dash_duo.wait_for_contains_text("#compare-table", "final loss (last 5%)", timeout=10)
    # A and B: the runs compared, in their order, until the user picks others
    pair = [dash_duo.find_element(f"#interp-{end}").get_attribute("value") for end in "ab"]
    assert pair == [r["id"] for r in runs]
    click(dash_duo, "#interp-button")
    wait_until(lambda: trace_lengths(dash_duo, "interp-graph")[:1] == [21], timeout=30, message="interpolation")
    dash_duo.wait_for_contains_text("#interp-message", "Barrier", timeout=5)
    dash_duo.driver.save_screenshot(str(SCREENSHOTS / "compare-bottom.png"))
    dash_duo.driver.execute_script("window.scrollTo({top: 0, behavior: 'instant'});")
    dash_duo.driver.save_screenshot(str(SCREENSHOTS / "compare-top.png"))

    # The page's link, opened afresh (as whoever it was shared with would), shows the same two runs.
    link = dash_duo.driver.current_url
    for _ in range(3):
        dash_duo.driver.get(dash_duo.server_url + "/sweeps")
        dash_duo.driver.get(link)
        for i in range(2):
            wait_until(lambda i=i: trace_lengths(dash_duo, f"compare-heatmap-{i}") == [64, 64], timeout=20,
                       message=f"heatmap {i} from the link")
        time.sleep(1.5)  # a tick of the page's timer: the selection must hold
        assert dash_duo.driver.current_url == link
    # A link naming a run this lab does not have says so; the others are still compared.
    dash_duo.driver.get(link + "%2Cr-gone")
    dash_duo.wait_for_contains_text("#compare-link-message", "Not in this lab (deleted, or from another lab): r-gone",
                                    timeout=10)
    for i in range(2):
        wait_until(lambda i=i: trace_lengths(dash_duo, f"compare-heatmap-{i}") == [64, 64], timeout=20,
                   message=f"heatmap {i} beside the missing run")
    # One of the two deleted (here through the lab, as another tab would): its curves do not stay drawn.
    lab.delete(runs[1]["id"])
    dash_duo.wait_for_contains_text("#compare-message", "Choose at least two runs", timeout=10)
    dash_duo.wait_for_contains_text("#compare-loss", "Choose two or more runs", timeout=10)
    assert dash_duo.get_logs() == []


def test_the_pages_keep_drawing_when_a_draw_takes_longer_than_the_page_timer(dash_duo, lab, monkeypatch):
    """On a loaded machine one Compare draw of four long runs took 0.6-2 s, longer than the page's 1 s timer: each
    tick asked for a new draw, the browser dropped the reply on its way for it, and the page stayed blank."""
    from app import callbacks, figures
    from core.presets import PRESETS

    base = PRESETS["demo-tiny"].config.replace(snapshot_every=50)
    done = lab.submit(base.replace(steps=100))
    wait_until(lambda: lab.get(done)["status"] == "done", timeout=60, message="the finished run")
    training = lab.submit(base.replace(steps=200_000, seed=1))
    wait_until(lambda: lab.get(training)["step"] > 0, timeout=60, message="the run training")

    def slowed(draw, seconds: float):  # noqa: ANN001, ANN202
        def slow(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            time.sleep(seconds)
            return draw(*args, **kwargs)
        return slow

    monkeypatch.setattr(callbacks, "live_view", slowed(callbacks.live_view, 1.5))
    monkeypatch.setattr(figures, "overlay_figure", slowed(figures.overlay_figure, 0.6))  # three a draw: 1.8 s
    dash_duo.start_server(create_app(lab))
    # the Train page, following the run as it trains
    dash_duo.driver.get(dash_duo.server_url + f"/#run={training}")
    dash_duo.wait_for_contains_text("#stat-step", "/ 200,000", timeout=20)
    first = dash_duo.find_element("#stat-step").text
    wait_until(lambda: dash_duo.find_element("#stat-step").text != first, timeout=20, message="a later draw")
    # Compare, beside a finished run: drawn, and redrawn as the run goes on
    dash_duo.driver.get(dash_duo.server_url + f"/compare?runs={done},{training}")
    wait_until(lambda: len(trace_lengths(dash_duo, "compare-loss")) == 2, timeout=20, message="two loss curves")
    first = trace_lengths(dash_duo, "compare-loss")[1]
    wait_until(lambda: trace_lengths(dash_duo, "compare-loss")[1] > first, timeout=20, message="a later draw")
    lab.stop(training)
    assert dash_duo.get_logs() == []


def test_compare_shows_runs_of_different_sizes_and_at_most_four(dash_duo, lab):
    from core.presets import PRESETS

    base = PRESETS["demo-tiny"].config.replace(steps=200, snapshot_every=50)
    wide, narrow = base, base.replace(n_features=24)
    ids = [lab.submit(wide.replace(seed=s), label=f"N=32 seed {s}") for s in range(4)] + [lab.submit(narrow)]
    wait_until(lambda: all(lab.get(i)["status"] == "done" for i in ids), timeout=60, message="the runs")
    dash_duo.start_server(create_app(lab))
    dash_duo.driver.set_window_size(1500, 1100)
    dash_duo.driver.get(dash_duo.server_url + f"/compare?runs={ids[0]},{ids[4]}")
    # runs that learn different numbers of features compare: their curves, tables and each its own heatmap
    dash_duo.wait_for_contains_text("#compare-message", "different numbers of features N (24, 32)", timeout=20)
    wait_until(lambda: len(trace_lengths(dash_duo, "compare-loss")) == 2, timeout=20, message="two loss curves")
    for i in range(2):
        wait_until(lambda i=i: len(trace_lengths(dash_duo, f"compare-heatmap-{i}")) == 2, timeout=20,
                   message=f"heatmap {i}")
    # "Select all" picks five: the first four are compared, and the page says why not the fifth
    dash_duo.find_element("#compare-runs").click()
    dash_duo.driver.find_element(By.XPATH, "//*[normalize-space(text())='Select All']").click()
    dash_duo.wait_for_contains_text("#compare-link-message", "Compare shows up to 4 runs side by side", timeout=10)
    wait_until(lambda: dash_duo.driver.current_url.count("%2C") == 3, timeout=10, message="four runs in the link")
    wait_until(lambda: len(trace_lengths(dash_duo, "compare-loss")) == 4, timeout=20, message="four loss curves")
    wait_until(lambda: len(trace_lengths(dash_duo, "compare-heatmap-3")) == 2, timeout=20, message="heatmap 4")
    time.sleep(1.5)  # a tick of the page's timer: the comparison keeps updating without an error
    assert len(trace_lengths(dash_duo, "compare-loss")) == 4
    assert dash_duo.get_logs() == []


def test_sweeps_page_shows_the_paper_figures(dash_duo, lab):
    from core.presets import PRESETS
    from core.sweep import Sweep

    base = PRESETS["demo-tiny"].config.replace(steps=600, snapshot_every=60)
    run_ids = lab.submit_sweep(Sweep(base, "init_bias", (0.0, -0.5, -1.0), name="demo"))
    no_decay = lab.submit_sweep(Sweep(base.replace(bias_decay=0.0), "init_bias", (0.0, -1.0), name="no-decay"))
    lab.submit_sweep(Sweep(base, "lr", (0.01, 0.02), name="lrs"))  # another field: not offered as an overlay
    dash_duo.start_server(create_app(lab))
    dash_duo.driver.set_window_size(1500, 1400)
    dash_duo.driver.get(dash_duo.server_url + "/sweeps")
    # LR3's quick twin, as the page describes it: the paper's decay x 4 (README, "Presets"), lr the swept field
    dash_duo.wait_for_contains_text("#sweep-values-help", "steps, initial bias -1, bias decay 0.12.", timeout=10)
    # A bad value is flagged while typing, with the field and its range named, and Start is off.
    set_input(dash_duo, "sweep-values-input", "0.01 5")
    dash_duo.wait_for_contains_text("#sweep-form-problems", "At lr=5: lr must be a number in (0, 1]", timeout=10)
    assert "is-invalid" in dash_duo.find_element("#sweep-values-input").get_attribute("class")
    assert not dash_duo.find_element("#sweep-start-button").is_enabled()
    set_input(dash_duo, "sweep-values-input", "0.01 0.02")
    set_input(dash_duo, "sweep-seeds-input", "abc")  # named as typed, not "is required"
    dash_duo.wait_for_text_to_equal("#sweep-form-problems", "Seeds must be an integer from 1 to 16, got 'abc'",
                                    timeout=10)
    set_input(dash_duo, "sweep-seeds-input", "0")
    dash_duo.wait_for_text_to_equal("#sweep-form-problems", "Seeds must be an integer from 1 to 16, got 0", timeout=10)
    assert "is-invalid" not in dash_duo.find_element("#sweep-values-input").get_attribute("class")
    assert not dash_duo.find_element("#sweep-start-button").is_enabled()
    # more runs than the queue can ever take: said before Start, not "the queue is full, wait" after
    set_input(dash_duo, "sweep-values-input", "0.001 0.002 0.003 0.004 0.005")
    set_input(dash_duo, "sweep-seeds-input", "16")
    dash_duo.wait_for_contains_text("#sweep-form-problems", "80 runs asked for at once, and this lab's queue takes "
                                    "at most 64", timeout=10)
    assert not dash_duo.find_element("#sweep-start-button").is_enabled()
    set_input(dash_duo, "sweep-values-input", "0.01 0.02")
    set_input(dash_duo, "sweep-seeds-input", "2")
    wait_until(lambda: dash_duo.find_element("#sweep-start-button").is_enabled(), timeout=10, message="Start on")
    assert dash_duo.find_element("#sweep-form-problems").text == ""
    # Any preset over any field: a single-run preset needs the field named, then takes values for it.
    from selenium.webdriver.support.ui import Select

    Select(dash_duo.find_element("#sweep-preset-select")).select_by_value("quick-zero-bias")
    dash_duo.wait_for_contains_text("#sweep-form-problems", "is a single run: name the field to sweep", timeout=10)
    assert "is-invalid" in dash_duo.find_element("#sweep-field-select").get_attribute("class")
    Select(dash_duo.find_element("#sweep-field-select")).select_by_value("init_bias")
    set_input(dash_duo, "sweep-values-input", "0 -1")
    wait_until(lambda: dash_duo.find_element("#sweep-start-button").is_enabled(), timeout=10, message="Start on")
    assert dash_duo.find_element("#sweep-cost").text == "4 runs in 1 job."
    # Settings every run shares are checked as typed, shown in the description, and name the sweep.
    set_input(dash_duo, "sweep-settings-input", "bias_decay=x")
    dash_duo.wait_for_text_to_equal("#sweep-form-problems",
                                    "Also set: bias_decay must be a number in [0, 1000], got 'x'", timeout=10)
    assert "is-invalid" in dash_duo.find_element("#sweep-settings-input").get_attribute("class")
    assert not dash_duo.find_element("#sweep-start-button").is_enabled()
    set_input(dash_duo, "sweep-settings-input", "bias_decay=0.05 steps=64 snapshot_every=16")
    dash_duo.wait_for_contains_text("#sweep-values-help", "64 steps, lr 0.01, bias decay 0.05.", timeout=10)
    wait_until(lambda: dash_duo.find_element("#sweep-start-button").is_enabled(), timeout=10, message="Start on")
    assert len(lab.list()) == 7
    double_click(dash_duo, "sweep-start-button")  # queues the sweep once
    dash_duo.wait_for_contains_text("#sweep-message", "Queued 4 runs in 1 job(s).", timeout=10)
    time.sleep(1.0)
    assert len(lab.list()) == 11
    assert {(c.init_bias, c.bias_decay, c.steps) for c in (lab.config(m["id"]) for m in lab.list()[7:])} == {
        (0.0, 0.05, 64), (-1.0, 0.05, 64)}
    dash_duo.wait_for_contains_text("#sweep-select", "quick-zero-bias with bias_decay=0.05, steps=64, "
                                    "snapshot_every=16 · init_bias · 4 runs", timeout=10)

    wait_until(lambda: all(m["status"] == "done" for m in lab.list()),
               timeout=90, message="the sweeps")
    dash_duo.select_dcc_dropdown("#sweep-select", index=3)  # newest first: "demo"
    wait_until(lambda: len(trace_lengths(dash_duo, "sweep-panels")) == 9, timeout=20, message="training panels")
    wait_until(lambda: trace_lengths(dash_duo, "sweep-heatmap-2") == [64, 64], timeout=20, message="three heatmaps")
    assert "init_bias=-1" in dash_duo.find_element("#sweep-heatmap-0").text
    assert len(trace_lengths(dash_duo, "sweep-biases")) == 3
    # Another sweep of the same field drawn over the results, in its own colour: the paper's LR1-beside-LR3 figure.
    wait_until(lambda: trace_names(dash_duo, "sweep-mono-vs-value")[:2] == ["final loss",
                                                                            "mono neurons / N (per feature)"],
               timeout=20, message="results against the value")
    dash_duo.find_element("#sweep-overlay").click()
    offered = dash_duo.find_elements(".dash-dropdown-options .dash-dropdown-option")
    assert [e.text.split(" · ")[:2] for e in offered] == [
        ["quick-zero-bias with bias_decay=0.05, steps=64, snapshot_every=16", "init_bias"], ["no-decay", "init_bias"]]
    offered = offered[1:]
    offered[0].click()
    # each sweep's entries under its name in the legend
    wait_until(lambda: "no-decay: mono neurons / N (per feature)" in grouped_names(dash_duo, "sweep-mono-vs-value"),
               timeout=20, message="the overlaid sweep")
    names = grouped_names(dash_duo, "sweep-mono-vs-value")
    assert "demo: mono neurons / N (per feature)" in names
    assert trace_lengths(dash_duo, "sweep-mono-vs-value")[names.index("no-decay: final loss")] == len(no_decay)
    dash_duo.driver.save_screenshot(str(SCREENSHOTS / "sweeps.png"))
    for run_id in run_ids:  # deleted elsewhere: the figures of a sweep that is gone do not stay up
        lab.delete(run_id)
    dash_duo.wait_for_contains_text("#sweep-panels", "Start a sweep, or choose one above", timeout=10)
    assert trace_lengths(dash_duo, "sweep-heatmap-0") == []
    assert dash_duo.get_logs() == []


def test_first_visit_explains_every_empty_graph(dash_duo, lab):
    dash_duo.start_server(create_app(lab))
    dash_duo.driver.set_window_size(1500, 1100)
    dash_duo.wait_for_contains_text("#run-list", "No runs yet", timeout=10)
    for graph_id in ("loss-graph", "mono-graph", "sfa-heatmap"):
        dash_duo.wait_for_contains_text(f"#{graph_id}", "Start a run" if graph_id != "sfa-heatmap" else "Neurons",
                                        timeout=10)
    dash_duo.driver.save_screenshot(str(SCREENSHOTS / "first-visit.png"))
    assert dash_duo.get_logs() == []


def test_a_run_whose_job_failed_says_why_and_retries_from_its_checkpoint(dash_duo, lab):
    from core.presets import PRESETS

    run_id = lab.submit(PRESETS["demo-tiny"].config.replace(steps=6000, snapshot_every=200), label="flaky")
    job_id = lab.get(run_id)["job"]
    wait_until(lambda: lab.get(run_id)["step"] >= 400, timeout=30, message="training")
    lab.pause(run_id)
    wait_until(lambda: lab.get(run_id)["status"] == "paused", timeout=10, message="paused")
    paused_at, good = lab.get(run_id)["step"], lab.store.get(f"ckpt/{job_id}")
    lab.store.set(f"ckpt/{job_id}", b"not a checkpoint")  # the job fails in its worker when resumed
    lab.resume(run_id)
    wait_until(lambda: lab.get(run_id)["status"] == "failed", timeout=30, message="the job to fail")
    dash_duo.start_server(create_app(lab))
    dash_duo.driver.set_window_size(1500, 1100)
    dash_duo.wait_for_contains_text("#run-list", "flaky", timeout=10)
    dash_duo.find_element("#run-list .run-select").click()
    dash_duo.wait_for_contains_text("#live-subtitle", "failed: UnpicklingError", timeout=10)
    assert "(Retry, in the run list, trains it on from its last checkpoint, or from its start if none was " \
           "written)" in dash_duo.find_element("#live-subtitle").text
    buttons = "return [...document.querySelectorAll('#run-list .run-row button')].map(b => b.textContent);"
    assert dash_duo.driver.execute_script(buttons) == ["Retry", "Duplicate", "Delete"]
    lab.store.set(f"ckpt/{job_id}", good)  # what failed is fixed
    next(b for b in dash_duo.find_elements("#run-list .run-row button") if b.text == "Retry").click()
    wait_until(lambda: lab.get(run_id)["status"] == "done", timeout=60, message="the retried run")
    dash_duo.wait_for_contains_text("#run-list .run-facts", f"resumed from step {paused_at}", timeout=10)
    assert lab.get(run_id)["error"] is None
    assert dash_duo.get_logs() == []


def test_a_diverged_run_shows_why_and_offers_the_weights_saved_before(dash_duo, lab):
    run_id = lab.submit(diverging_config(), label="too fast")
    meta = wait_until(lambda: (m := lab.get(run_id))["status"] == "failed" and m.get("has_file") and m, timeout=60,
                      message="the run to diverge")
    kept = meta["weights_step"]
    dash_duo.start_server(create_app(lab))
    dash_duo.driver.set_window_size(1500, 1100)
    dash_duo.wait_for_contains_text("#run-list", "too fast", timeout=10)
    dash_duo.find_element("#run-list .run-select").click()
    dash_duo.wait_for_contains_text("#live-subtitle", "failed: loss became inf at step", timeout=10)
    assert f"weights up to step {kept} kept: Continue goes on from step 1" in \
        dash_duo.find_element("#live-subtitle").text
    buttons = "return [...document.querySelectorAll('#run-list .run-row button')].map(b => b.textContent);"
    assert dash_duo.driver.execute_script(buttons) == ["Continue", "Duplicate", "Delete"]  # no Retry: it would
    dash_duo.wait_for_contains_text("#inspect-message", f"Inspecting weights at step {kept} (the last saved before "
                                    f"it diverged) of run {run_id}", timeout=20)
    dash_duo.wait_for_contains_text("#download-area", "Download run file", timeout=10)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    dash_duo.driver.save_screenshot(str(SCREENSHOTS / "diverged.png"))
    # from its first saved weights, before its loss ran away, and told the learning rate it diverged at
    next(b for b in dash_duo.find_elements("#run-list .run-row button") if b.text == "Continue").click()
    dash_duo.wait_for_contains_text("#continue-banner", f"Continues too fast ({run_id}) from step 1,", timeout=10)
    assert "It diverged at learning rate 1: lower it (Advanced)." in dash_duo.find_element("#continue-banner").text
    assert dash_duo.get_logs() == []


def test_links_open_what_they_name_and_say_what_they_could_not_use(dash_duo, lab, monkeypatch):
    from core.presets import PRESETS

    config = PRESETS["demo-tiny"].config.replace(steps=300, snapshot_every=100)
    first, second = lab.submit(config, label="first"), lab.submit(config.replace(seed=1), label="second")
    wait_until(lambda: all(lab.get(r)["status"] == "done" for r in (first, second)), timeout=60, message="two runs")
    dash_duo.start_server(create_app(lab))
    dash_duo.driver.set_window_size(1500, 1100)
    base = dash_duo.server_url

    def open_afresh(path: str) -> None:
        """As a new tab would: nothing of this tab's session carried over."""
        dash_duo.driver.execute_script("window.sessionStorage.clear();")
        dash_duo.driver.get("about:blank")
        dash_duo.driver.get(base + path)

    # The selected run is in the page's link: a new tab given it shows that run.
    dash_duo.driver.get(base + f"/?preset=demo-tiny#run={second}")
    dash_duo.wait_for_contains_text("#live-title", "second", timeout=10)
    click(dash_duo, "#run-list .run-row:nth-child(2) .run-select")  # newest first: the second row is the first run
    dash_duo.wait_for_contains_text("#live-title", "first", timeout=10)
    wait_until(lambda: dash_duo.driver.current_url.endswith(f"#run={first}"), timeout=5, message="the link to follow")
    link = dash_duo.driver.current_url
    # To other pages and back by the navigation bar: the run on show (and the form) come along, and Back
    # retraces the pages (nothing writes the URL on arrival, which would trap Back on a page).
    for nav in ("#nav-compare", "#nav-sweeps", "#nav-train"):
        click(dash_duo, nav)
    wait_until(lambda: dash_duo.driver.current_url == link, timeout=10, message=f"{link} again")
    for page in ("/sweeps", "/compare"):
        dash_duo.driver.back()
        wait_until(lambda page=page: dash_duo.driver.current_url == base + page, timeout=5, message=f"back to {page}")
        time.sleep(1.2)  # a tick of the page's timer
        assert dash_duo.driver.current_url == base + page
    dash_duo.driver.forward()
    dash_duo.driver.forward()
    wait_until(lambda: dash_duo.driver.current_url == link, timeout=5, message="forward to the run")
    dash_duo.wait_for_contains_text("#live-title", "first", timeout=10)
    open_afresh(link.removeprefix(base))
    dash_duo.wait_for_contains_text("#live-title", "first", timeout=10)
    wait_until(lambda: trace_lengths(dash_duo, "sfa-heatmap") == [64, 64], timeout=10, message="its heatmap")

    # A path the lab has no page at says so and links to the pages, not a Train page under a wrong name.
    open_afresh("/comapre?runs=" + first)
    dash_duo.wait_for_contains_text("#missing-page", "The lab has no page at /comapre.", timeout=10)
    assert not dash_duo.find_element("#lab-page").is_displayed()
    click(dash_duo, "#missing-page a[href='/compare']")
    wait_until(lambda: dash_duo.find_element("#compare-page").is_displayed(), timeout=10, message="the compare page")
    assert not dash_duo.find_element("#missing-page").is_displayed()

    # A link naming a run this lab does not have says so, and shows nothing stale.
    open_afresh("/#run=r-nosuchrun")
    dash_duo.wait_for_contains_text("#link-run-message", "r-nosuchrun is not in this lab", timeout=10)
    assert dash_duo.find_element("#live-title").text == "No run selected"
    dash_duo.wait_for_text_to_equal("#live-subtitle", "Start a run on the left, or pick one from the list.", timeout=5)
    # While a linked run is drawn (slowly here: a busy server), the page says it is opening it, not "Start a run".
    from app import callbacks

    draw = callbacks.live_view
    monkeypatch.setattr(callbacks, "live_view", lambda *args, **kwargs: (time.sleep(3), draw(*args, **kwargs))[1])
    open_afresh(f"/#run={first}")
    dash_duo.wait_for_text_to_equal("#live-subtitle", f"Opening run {first}\u2026", timeout=5)
    dash_duo.wait_for_contains_text("#live-title", "first", timeout=15)
    monkeypatch.setattr(callbacks, "live_view", draw)

    # Values a link holds that the form cannot take are named; the rest of the link is used.
    open_afresh("/?preset=demo-tiny&n_neurons=48&lr=abc&colour=red")
    dash_duo.wait_for_contains_text("#link-message", "Learning rate must be a number in (0, 1], got 'abc'", timeout=10)
    assert "'colour' is not a field" in dash_duo.find_element("#link-message").text
    assert dash_duo.find_element("#n-neurons-input").get_attribute("value") == "48"
    set_input(dash_duo, "n-neurons-input", "40")  # edited: the list is about a form no longer shown
    wait_until(lambda: dash_duo.find_element("#link-message").text == "", timeout=10, message="the list cleared")
    open_afresh("/?n_neurons=48")  # no preset: the defaults, with the preset box saying so
    wait_until(lambda: dash_duo.find_element("#preset-select").get_attribute("value") == "custom", timeout=10,
               message="the preset box to say custom")
    assert dash_duo.find_element("#init-bias-input").get_attribute("value") == "0"
    assert dash_duo.find_element("#link-message").text == ""

    # Start is off for a reason the page states, even one no field shows: here the memory budget.
    monkeypatch.setenv("LAB_MEMORY_BUDGET_GIB", "0.0001")
    set_input(dash_duo, "n-neurons-input", "64")
    dash_duo.wait_for_contains_text("#form-message", "This run needs about", timeout=10)
    assert not dash_duo.find_element("#start-button").is_enabled()
    monkeypatch.delenv("LAB_MEMORY_BUDGET_GIB")
    set_input(dash_duo, "init-bias-input", "20")
    dash_duo.wait_for_contains_text("#form-message", "To start, fix: Initial bias.", timeout=10)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    dash_duo.driver.save_screenshot(str(SCREENSHOTS / "link-problems.png"))
    assert "Initial bias must be a number in [-10, 10], got 20" in dash_duo.find_element("#init-bias-feedback").text

    # Deleting another run leaves the run on show as it was.
    dash_duo.driver.get(base + f"/#run={second}")
    dash_duo.wait_for_contains_text("#live-title", "second", timeout=10)
    click(dash_duo, "#run-list .run-row:nth-child(2) .btn-outline-danger")  # the first run's row
    wait_until(lambda: _alert(dash_duo), timeout=10, message="the delete question").accept()
    wait_until(lambda: not lab.exists(first), timeout=10, message="the first run deleted")
    time.sleep(1.5)  # a tick of the page's timer
    assert "second" in dash_duo.find_element("#live-title").text
    assert dash_duo.driver.current_url.endswith(f"#run={second}")
    # The run on show deleted elsewhere (another tab, the API): the live view empties rather than leaving
    # its figures up, and a reload of its link says it is gone.
    lab.delete(second)
    dash_duo.wait_for_contains_text("#live-subtitle", f"Run {second} was deleted", timeout=10)
    dash_duo.wait_for_contains_text("#sfa-heatmap", "Neurons x features appear here", timeout=10)
    assert dash_duo.find_element("#live-title").text == "No run selected"
    dash_duo.driver.refresh()
    dash_duo.wait_for_contains_text("#link-run-message", f"{second} is not in this lab", timeout=10)
    assert dash_duo.get_logs() == []

    # The sweeps page keeps the sweep shown in its link too.
    from core.sweep import Sweep

    lab.submit_sweep(Sweep(config, "init_bias", (0.0, -1.0), name="demo"))
    sweep_id = next(iter(lab.sweeps()))
    open_afresh(f"/sweeps#sweep={sweep_id}")
    wait_until(lambda: len(trace_lengths(dash_duo, "sweep-heatmap-1")) == 2, timeout=30, message="the linked sweep")
    assert sweep_id in dash_duo.find_element("#sweep-select").text
    open_afresh("/sweeps#sweep=s-gone")
    dash_duo.wait_for_contains_text("#sweep-message", "s-gone is not in this lab", timeout=10)
    assert dash_duo.get_logs() == []


def test_run_rows_stay_put_while_a_run_trains(dash_duo, lab):
    from core.presets import PRESETS

    run_id = lab.submit(PRESETS["demo-tiny"].config.replace(steps=400_000), label="long")
    dash_duo.start_server(create_app(lab))
    wait_until(lambda: lab.get(run_id)["step"] > 0, timeout=30, message="training to start")
    dash_duo.wait_for_contains_text("#run-list .run-facts", "step ", timeout=10)
    # Its progress and facts change each second, and the row stays the same element: a click on a row being
    # replaced is lost (reviewers lost most clicks on the list while a run trained).
    row = dash_duo.find_element("#run-list .run-select")
    facts = dash_duo.find_element("#run-list .run-facts").text
    wait_until(lambda: dash_duo.find_element("#run-list .run-facts").text != facts, timeout=10, message="new facts")
    time.sleep(1.5)
    assert row.is_displayed()  # a replaced row raises StaleElementReferenceException here
    row.click()
    dash_duo.wait_for_contains_text("#live-title", "long", timeout=10)
    click(dash_duo, "#run-list .run-row button")  # Pause, at the first click
    wait_until(lambda: lab.get(run_id)["status"] == "paused", timeout=10, message="paused by one click")
    lab.stop(run_id)
    assert dash_duo.get_logs() == []


def test_continue_a_finished_run_from_its_weights_with_l1(dash_duo, lab):
    from selenium.webdriver.support.ui import Select

    from core.presets import PRESETS

    parent = lab.submit(PRESETS["demo-tiny"].config.replace(steps=256, snapshot_every=64, init_bias=0.0),
                        label="zero bias")
    wait_until(lambda: lab.get(parent)["status"] == "done", timeout=60, message="the parent")
    dash_duo.start_server(create_app(lab))
    dash_duo.driver.set_window_size(1500, 1100)
    dash_duo.wait_for_contains_text("#run-list", "zero bias", timeout=10)
    continue_button = next(b for b in dash_duo.find_elements("#run-list button") if b.text == "Continue")
    continue_button.click()
    dash_duo.wait_for_contains_text("#continue-banner", f"Continues zero bias ({parent}) from step 256,", timeout=10)
    details = dash_duo.find_element("#continue-banner details")
    assert details.get_attribute("open") is None  # folded: the banner sits over the form on a projector
    details.find_element(By.TAG_NAME, "summary").click()
    assert details.get_attribute("open") is not None
    assert "A change to Initial bias pushes its trained biases by the difference (its init bias is 0)" in details.text
    dash_duo.wait_for_text_to_equal("#start-button", "Continue run", timeout=10)
    assert dash_duo.find_element("#steps-input").get_attribute("value") == "256"  # the form holds the run's config
    # a reload keeps continuing (Start started a fresh run with the run's config after one)
    dash_duo.driver.refresh()
    dash_duo.wait_for_contains_text("#continue-banner", f"Continues zero bias ({parent}) from step 256,", timeout=10)
    dash_duo.wait_for_text_to_equal("#start-button", "Continue run", timeout=10)
    # the Preset box says whose config it holds, not "the defaults, as edited"
    wait_until(lambda: Select(dash_duo.find_element("#preset-select")).first_selected_option.text
               == f"custom — the config of zero bias ({parent}), continued", timeout=10, message="the preset's name")
    dash_duo.driver.save_screenshot(str(SCREENSHOTS / "continue-form.png"))
    # What the weights need is kept: a change is flagged at the field, and Continue is off.
    set_input(dash_duo, "n-neurons-input", "40")
    dash_duo.wait_for_contains_text("#n-neurons-feedback", f"must stay 64 when continuing run {parent}", timeout=10)
    assert not dash_duo.find_element("#start-button").is_enabled()
    set_input(dash_duo, "n-neurons-input", "64")
    set_input(dash_duo, "init-bias-input", "-12")  # a push of -12: the range bounds the total
    dash_duo.wait_for_contains_text("#init-bias-feedback", f"(continuing, it is the total: run {parent}'s 0 plus the "
                                    "push)", timeout=10)
    assert "Initial bias must be a number in [-10, 10]" in dash_duo.find_element("#init-bias-feedback").text
    set_input(dash_duo, "init-bias-input", "0")
    for button in dash_duo.find_elements(".accordion-button"):
        if button.text == "Advanced":
            button.click()
    wait_until(lambda: dash_duo.find_element("#l1-reg-input").is_displayed(), timeout=10, message="Advanced open")
    set_input(dash_duo, "l1-reg-input", "0.01")
    wait_until(lambda: dash_duo.find_element("#start-button").is_enabled(), timeout=10, message="Continue on")
    dash_duo.find_element("#start-button").click()

    wait_until(lambda: len(lab.list()) == 2, timeout=10, message="the continued run queued")
    child = lab.list()[1]
    assert child["start"] == {"run": parent, "label": "zero bias", "step": 256, "bias_push": 0.0,
                              "offset": 256}
    assert child["label"] == "zero bias → l1_reg=0.01" and child["config"]["l1_reg"] == 0.01
    dash_duo.wait_for_contains_text("#live-subtitle", f"continued from zero bias ({parent}) at step 256", timeout=10)
    # read in one call: the subtitle is redrawn at every tick while the run trains
    link = ("const a = document.querySelector('#live-subtitle a');"
            "return a ? [a.textContent, a.getAttribute('href')] : null;")
    wait_until(lambda: dash_duo.driver.execute_script(link) == ["compare with the run it continues",
                                                               f"/compare?runs={parent},{child['id']}"],
               timeout=10, message="the link to the comparison")
    # still continuing: the next Start continues the same run with other settings
    assert dash_duo.find_element("#start-button").text == "Continue run"
    wait_until(lambda: lab.get(child["id"])["status"] == "done", timeout=60, message="the continued run")
    # it starts in its parent's basin: its first losses are near the parent's last
    assert np.mean(lab.history(child["id"])["losses"][:16]) < 1.5 * lab.get(parent)["loss"]
    dash_duo.driver.save_screenshot(str(SCREENSHOTS / "continued.png"))
    # no Duplicate for a continued run: a new seed would be another world than its start's
    def first_row_buttons() -> list[str] | None:  # the list is rebuilt as statuses change: a button may go stale
        try:
            return [b.text for b in dash_duo.find_elements("#run-list .run-row:first-child button")]
        except StaleElementReferenceException:
            return None

    wait_until(lambda: first_row_buttons() == ["Continue", "Delete"], timeout=10,
               message="the continued run's buttons")
    # From a checkpoint: the parent replayed at its first step, where the inspector offers to continue from those
    # weights (before the run chose its basin).
    dash_duo.find_element("#run-list .run-row:nth-child(2) .run-select").click()
    dash_duo.wait_for_contains_text("#inspect-message", f"Inspecting final weights of run {parent}", timeout=20)
    thumb = dash_duo.find_element("#checkpoint-slider [role=slider]")
    thumb.send_keys(Keys.HOME)
    dash_duo.wait_for_contains_text("#inspect-message", "Inspecting checkpoint after 1 step of run", timeout=20)
    dash_duo.driver.execute_script("document.getElementById('inspect-message').scrollIntoView({block: 'center'});")
    dash_duo.driver.save_screenshot(str(SCREENSHOTS / "continue-checkpoint.png"))
    # clicked by script: the figures around it are still redrawing, and a pointer click can land on one
    dash_duo.driver.execute_script("arguments[0].click();", dash_duo.find_element("#inspect-message button"))
    assert dash_duo.find_element("#inspect-message button").text == "Continue from step 1"
    dash_duo.wait_for_contains_text("#continue-banner", f"Continues zero bias ({parent}) from step 1,", timeout=10)
    dash_duo.find_element("#start-button").click()
    wait_until(lambda: len(lab.list()) == 3, timeout=10, message="continued from step 1")
    assert lab.list()[2]["start"]["step"] == 1 and lab.list()[2]["label"] == "zero bias at step 1 → continued"
    # Continue, then Start fresh instead: Start is a fresh run again.
    wait_until(lambda: lab.list()[2]["status"] == "done", timeout=60, message="the run from step 1")

    def click_continue() -> bool:  # the list is rebuilt as the new run's status changes: a button may go stale
        try:
            row = next(r for r in dash_duo.find_elements("#run-list .run-row") if parent in r.text)
            next(b for b in row.find_elements("css selector", "button") if b.text == "Continue").click()
            return dash_duo.find_element("#start-button").text == "Continue run"
        except StaleElementReferenceException:
            return False

    wait_until(click_continue, timeout=10, message="Continue clicked")
    dash_duo.find_element("#continue-cancel").click()
    dash_duo.wait_for_text_to_equal("#start-button", "Start run", timeout=10)
    # Continue, then a preset of other sizes picked: the user has moved on to a fresh run.
    wait_until(click_continue, timeout=10, message="Continue clicked again")
    dash_duo.driver.execute_script("window.scrollTo(0, 0); document.querySelector('.controls').scrollTo(0, 0);")
    Select(dash_duo.find_element("#preset-select")).select_by_value("quick-zero-bias")
    dash_duo.wait_for_text_to_equal("#start-button", "Start run", timeout=10)
    assert dash_duo.find_element("#continue-banner").text == ""
    # Continue, then a bare "/" opened, whose preset has other sizes too: a fresh form, not fields flagged "must stay"
    wait_until(click_continue, timeout=10, message="Continue clicked again")
    dash_duo.driver.get(dash_duo.server_url + "/")
    wait_until(lambda: dash_duo.find_element("#n-neurons-input").get_attribute("value") == "256", timeout=10,
               message="the default preset's form")
    time.sleep(1.0)  # the session's continue-from is read as the page loads
    dash_duo.wait_for_text_to_equal("#start-button", "Start run", timeout=10)
    assert dash_duo.find_element("#continue-banner").text == "" and dash_duo.find_element("#start-button").is_enabled()
    # While continuing, "Start a comparison" continues the run at each value, and compares them with it.
    wait_until(click_continue, timeout=10, message="Continue clicked a third time")
    # over the initial bias: each value pushes the trained biases by its difference from the run's (0)
    Select(dash_duo.find_element("#compare-field-select")).select_by_value("init_bias")
    set_input(dash_duo, "compare-values-input", "0 20")  # flagged as typed, as the form's fields are
    dash_duo.wait_for_contains_text("#compare-values-feedback", "Initial bias must be a number in [-10, 10], got 20",
                                    timeout=10)
    assert not dash_duo.find_element("#compare-button").is_enabled()
    set_input(dash_duo, "compare-values-input", "0, -1")
    dash_duo.driver.execute_script("arguments[0].click();", dash_duo.find_element("#compare-button"))
    wait_until(lambda: "/compare?runs=" in dash_duo.driver.current_url, timeout=10, message="the comparison")
    from urllib.parse import parse_qs, urlsplit

    compared = parse_qs(urlsplit(dash_duo.driver.current_url).query)["runs"][0].split(",")
    assert compared[0] == parent and len(compared) == 3
    assert [(lab.get(r)["start"]["run"], lab.get(r)["start"]["bias_push"], lab.config(r).init_bias)
            for r in compared[1:]] == [(parent, 0.0, 0.0), (parent, -1.0, -1.0)]
    # drawn where the parent left off: the continued runs' losses begin at step 257, after its 256
    wait_until(lambda: all(lab.get(r)["status"] == "done" for r in compared), timeout=60, message="continued")
    first_steps = ("const el = document.querySelector('#compare-loss .js-plotly-plot');"
                   "return (el && el._fullData) ? el._fullData.map(t => t.x[0]) : [];")
    wait_until(lambda: dash_duo.driver.execute_script(first_steps) == [1, 257, 257], timeout=20,
               message="continued curves after their start")
    # a continued run's heatmap names its own step, and where the curves count it
    dash_duo.wait_for_contains_text("#compare-heatmap-1", "step 256 (512 counted on)", timeout=10)
    assert "counted on" not in dash_duo.find_element("#compare-heatmap-0").text
    # the parent and its unpushed child share every config value: the legend tells them apart by their start
    names = "return document.querySelector('#compare-loss .js-plotly-plot')._fullData.map(t => t.name);"
    assert dash_duo.driver.execute_script(names) == ["init_bias=0", "init_bias=0, continued",
                                                     "init_bias=-1, continued"]
    dash_duo.wait_for_contains_text("#compare-table", f"zero bias ({parent}), step 256, biases pushed by -1",
                                    timeout=10)
    dash_duo.driver.save_screenshot(str(SCREENSHOTS / "continue-compare.png"))
    assert dash_duo.get_logs() == []


def test_projector_screen_keeps_start_in_view_and_runs_choosable_by_keyboard(dash_duo, lab):
    from core.presets import PRESETS

    short = PRESETS["demo-tiny"].config.replace(steps=64, snapshot_every=64)
    first = lab.submit(short, label="first")
    second = lab.submit(short.replace(seed=5), label="second")
    # done before the page opens: a status change rebuilds a row, and the keys below would go to the old one
    wait_until(lambda: {lab.get(r)["status"] for r in (first, second)} == {"done"}, timeout=60, message="done")
    dash_duo.start_server(create_app(lab))
    dash_duo.driver.set_window_size(1280, 720)
    dash_duo.wait_for_contains_text("#run-list", "second", timeout=10)
    # The form is taller than the panel at 720 px: Start stays at the panel's bottom edge, in view.
    in_view = ("const r = document.getElementById('start-button').getBoundingClientRect();"
               "return r.top >= 0 && r.bottom <= window.innerHeight;")
    assert dash_duo.driver.execute_script(in_view)
    dash_duo.driver.save_screenshot(str(SCREENSHOTS / "projector-1280x720.png"))
    # Scrolled down to the heatmap and what is below it, the form and Start stay beside them.
    dash_duo.driver.execute_script("document.getElementById('sfa-heatmap').scrollIntoView();")
    wait_until(lambda: dash_duo.driver.execute_script("return window.scrollY;") > 600, timeout=5, message="scrolled")
    panel_top = "return document.querySelector('.controls').getBoundingClientRect().top;"
    assert 0 <= dash_duo.driver.execute_script(panel_top) < 20
    assert dash_duo.driver.execute_script(in_view)
    dash_duo.driver.execute_script("window.scrollTo(0, 0);")
    # A row's upper part takes focus and selects with Enter or Space, like a button.
    for key, run_id, label in ((Keys.ENTER, first, "first"), (Keys.SPACE, second, "second")):
        row = dash_duo.find_element(f"#run-list .run-row:nth-child({1 if run_id == second else 2}) .run-select")
        dash_duo.driver.execute_script("arguments[0].focus();", row)
        row.send_keys(key)
        dash_duo.wait_for_contains_text("#live-title", label, timeout=10)
        wait_until(lambda run_id=run_id: f"run={run_id}" in dash_duo.driver.current_url, timeout=5,
                   message="the run in the URL")
    # "Hide the form": the figures take the whole width, their plots redrawn to it; and back
    plot_width = "return document.querySelector('#loss-graph .main-svg').getBoundingClientRect().width;"
    narrow = dash_duo.driver.execute_script(plot_width)
    dash_duo.find_element("#form-toggle").click()
    wait_until(lambda: not dash_duo.find_element(".controls").is_displayed(), timeout=5, message="the form hidden")
    wait_until(lambda: dash_duo.driver.execute_script(plot_width) > 1.2 * narrow, timeout=10, message="wider plots")
    assert dash_duo.find_element("#form-toggle").text == "Show the form"
    dash_duo.driver.save_screenshot(str(SCREENSHOTS / "projector-full-width.png"))
    dash_duo.driver.refresh()  # a reload keeps it hidden (it showed the form again)
    dash_duo.wait_for_contains_text("#live-title", "second", timeout=10)
    wait_until(lambda: dash_duo.find_element("#form-toggle").text == "Show the form", timeout=10,
               message="still hidden after a reload")
    assert not dash_duo.find_element(".controls").is_displayed()
    # the run list hidden with the form, another run is picked beside "Show the form"
    picker = dash_duo.find_element("#run-picker")
    assert picker.is_displayed() and "second" in picker.text
    picker.click()
    option = wait_until(lambda: next((o for o in dash_duo.find_elements(".dash-dropdown-option, [role=option]")
                                      if "first" in o.text), None), timeout=5, message="the picker's options")
    option.click()
    dash_duo.wait_for_contains_text("#live-title", "first", timeout=10)
    wait_until(lambda: f"run={first}" in dash_duo.driver.current_url, timeout=5, message="the picked run in the URL")
    dash_duo.driver.save_screenshot(str(SCREENSHOTS / "projector-picker.png"))
    dash_duo.find_element("#form-toggle").click()
    wait_until(lambda: dash_duo.find_element(".controls").is_displayed(), timeout=5, message="the form back")
    assert not dash_duo.find_element("#run-picker").is_displayed()
    assert dash_duo.find_element("#form-toggle").text == "Hide the form"
    assert dash_duo.get_logs() == []


def test_a_click_on_a_pooled_heatmap_block_picks_a_cell(dash_duo, lab):
    from core.config import RunConfig

    # N x k = 256 x 256 is over the heatmap's full-resolution limit: it is drawn max-pooled in blocks.
    config = RunConfig(n_features=256, embed_dim=16, n_neurons=256, batch_size=64, steps=200, snapshot_every=100,
                       init_bias=-0.5, device="cpu")
    run_id = lab.submit(config, label="pooled")
    wait_until(lambda: lab.get(run_id)["status"] == "done", timeout=60, message="the run")
    dash_duo.start_server(create_app(lab))
    dash_duo.driver.set_window_size(1500, 1400)
    dash_duo.driver.get(dash_duo.server_url + f"/#run={run_id}")
    dash_duo.wait_for_contains_text("#sfa-heatmap", "max over", timeout=20)
    pick_by_clicking_the_heatmap(dash_duo, "255", "255")
    assert dash_duo.get_logs() == []
