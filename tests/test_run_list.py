"""The run list's updates: rebuilt when its rows change, else only the changing progress and facts."""

from dash import no_update

from app.callbacks import duplicate_label, next_free_seed, row_updates, run_facts, run_list_update


def meta(run_id: str, step: int, status: str = "running") -> dict:
    return {"id": run_id, "label": "quick-zero-bias", "status": status, "step": step, "steps": 8192, "loss": 0.25,
            "eta_seconds": 30.0, "device": "CPU, 1 thread"}


def test_progress_alone_leaves_the_rows_in_place():
    _, shown = run_list_update([meta("a", 100), meta("b", 8192, "done")], "a", None)
    later = [meta("a", 900), meta("b", 8192, "done")]
    assert run_list_update(later, "a", shown)[0] is no_update  # the rows stay the same elements: no click lost
    progress, facts = row_updates(["b", "a"], {m["id"]: m for m in later}, [100.0, 100 * 100 / 8192],
                                  [run_facts(later[1]), run_facts(meta("a", 100))])
    assert progress == [no_update, 100 * 900 / 8192]  # only what changed is sent
    assert facts[0] is no_update and facts[1].startswith("step 900 / 8,192")


def test_a_new_status_or_selection_rebuilds_the_list():
    _, shown = run_list_update([meta("a", 100)], "a", None)
    for runs, selected in (([meta("a", 100, "paused")], "a"), ([meta("a", 100)], None),
                           ([meta("a", 100), meta("c", 0, "queued")], "a")):
        update, _ = run_list_update(runs, selected, shown)
        assert update is not no_update


def test_a_row_whose_run_is_gone_keeps_what_it_shows_until_the_list_is_rebuilt():
    assert row_updates(["gone"], {}, [40.0], ["step 1"]) == ([no_update], [no_update])


def test_a_run_handed_on_after_its_worker_was_lost_says_so_in_its_row():
    requeued = {**meta("a", 2560, "queued"), "note": "interrupted; resumed from step 2560"}
    assert run_facts(requeued).endswith(" · interrupted; resumed from step 2560")
    assert "·" not in run_facts({**meta("a", 0, "queued"), "loss": None, "device": None, "note": None})


def test_a_duplicate_is_named_for_its_original_with_one_seed():
    assert duplicate_label("quick-zero-bias", 7) == "quick-zero-bias (seed 7)"
    assert duplicate_label("quick-zero-bias (seed 7)", 9) == "quick-zero-bias (seed 9)"
    assert duplicate_label("LR3: lr=0.01, seed 0", 9) == "LR3: lr=0.01 (seed 9)"
    assert duplicate_label(None, 3) == "run (seed 3)"


def test_controls_of_a_job_of_several_runs_say_they_act_on_all_of_them():
    def buttons(update) -> dict[str, list[str]]:
        return {row.key: [b.children for b in row.children[1].children] for row in update.children}

    sweep = [{**meta(run_id, 100), "job": "j1"} for run_id in ("a", "b", "c")]
    alone = {**meta("d", 100), "job": "j2"}
    done = {**meta("e", 8192, "done"), "job": "j1"}  # finished in the job: not counted, and offers no Stop
    shown = buttons(run_list_update(sweep + [alone, done], None, None)[0])
    assert shown["a"] == ["Pause all 3", "Stop all 3", "Duplicate", "Delete"]
    assert shown["d"] == ["Pause", "Stop", "Duplicate", "Delete"]
    assert shown["e"] == ["Continue", "Duplicate", "Delete"]


def test_a_duplicate_takes_the_next_seed_its_settings_have_not_trained():
    from core.config import MAX_SEED, RunConfig

    config = RunConfig(seed=3)
    runs = [config.to_dict(), {**config.to_dict(), "seed": 4}, {**config.to_dict(), "seed": 6, "lr": 0.5}]
    assert next_free_seed(config, runs) == 5  # 4 is taken; another lr's seed 6 is not these settings'
    assert next_free_seed(config.replace(seed=MAX_SEED), [config.replace(seed=MAX_SEED).to_dict()]) == 0
