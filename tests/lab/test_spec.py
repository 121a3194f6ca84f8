"""Experiment specs: valid specs expand to runs; every mistake names the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from goodhartlab.cli import main
from goodhartlab.lab.spec import SpecError, load_spec
from goodhartlab.lab.store import ResultsStore

EXAMPLES = Path(__file__).parents[2] / "examples"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_examples_load(path: Path) -> None:
    if "--allow-import" in path.read_text():  # an example that names code says so in its command line
        with pytest.raises(SpecError, match="--allow-import"):
            load_spec(path)
        spec = load_spec(path, allow_import=True)
    else:
        spec = load_spec(path)
    assert spec.runs and all(run.kind == spec.kind.name and ":" not in run.kind for run in spec.runs)
    assert all(hasattr(run.config, "__dataclass_fields__") for run in spec.runs)  # parsed once, here
    if path.name.startswith("rl-"):  # the classic-RL sweeps are cheap enough for three seeds
        assert len({run.seed for run in spec.runs}) >= 3


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


BASE = ("study: s\nkind: tabular_training\nseeds: 2\n"
        "config: {env: goodhartlab/BoatRace-v0, agent: {episodes: 20}, bin_episodes: 10}\n")


def test_variants_override_the_base_config_and_nested_settings_merge(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, BASE + "variants:\n  - {name: a, config: {agent: {learn_from: 'true'}}}\n"
                                            "  - {name: b}\n"))
    assert [(r.variant, r.seed, r.config.agent.learn_from, r.config.agent.episodes) for r in spec.runs] == [
        ("a", 0, "true", 20), ("a", 1, "true", 20), ("b", 0, "proxy", 20), ("b", 1, "proxy", 20)]


def test_a_changed_default_is_a_new_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import fields

    from goodhartlab.rl.agents.tabular import QLearningConfig

    before = {run.run_id for run in load_spec(write(tmp_path, BASE)).runs}
    defaults = list(QLearningConfig.__init__.__defaults__)  # type: ignore[misc]
    defaults[[f.name for f in fields(QLearningConfig)].index("alpha")] = 0.3  # the nested learner's default changes
    monkeypatch.setattr(QLearningConfig.__init__, "__defaults__", tuple(defaults))
    changed = load_spec(write(tmp_path, BASE)).runs
    assert changed[0].config.agent.alpha == 0.3 and before.isdisjoint(run.run_id for run in changed)


def test_the_old_task_key_is_still_read_with_a_warning(tmp_path: Path) -> None:
    with pytest.warns(DeprecationWarning, match="'task' is now called 'kind'"):
        spec = load_spec(write(tmp_path, BASE.replace("kind:", "task:")))
    assert spec.kind.name == "tabular_training"
    with pytest.warns(DeprecationWarning):
        assert load_spec(write(tmp_path, BASE.replace("kind: tabular_training", "task: bestofn_study")
                               .replace("config: {env: goodhartlab/BoatRace-v0, agent: {episodes: 20}, "
                                        "bin_episodes: 10}", "config: {pool: 8}"))).kind.name == "bestofn"


@pytest.mark.parametrize(("text", "message"), [
    ("study: s\nkind: tabular_training\nconfig: {env: x, bin_episodes: 2, colour: red}\n", "field 'config'.*colour"),
    (BASE + "seed: 3\n", "unknown field.*seed"),
    ("study: s\nkind: no_such_kind\n", "field 'kind'.*not a study kind"),
    ("study: s\nkind: tabular_training\nseeds: -1\n", "field 'seeds'"),
    (BASE + "variants:\n  - {name: a, config: {agent: {learn_from: true}}}\n", "quote it in YAML: 'true'"),
    ("study: s\nkind: capability_sweep\nconfig: {axis: height}\n", "axis must be one of 'training_steps'"),
    ("kind: tabular_training\n", "field 'study'"),
    ("[1, 2", "not valid YAML"),
    (BASE.replace("episodes: 20", "episodez: 20") + "variants:\n  - {name: a, config: {agent: {learn_from: 'true'}}}\n",
     r"field 'config':.*agent\.episodez"),  # the typo is in the base config, not in the variant that extends it
    (BASE + "variants:\n  - {name: a, config: {agent: {learn_from: 'true'}, colour: red}}\n",
     r"field 'variants\[0\]\.config':.*colour"),
    (BASE.replace("seeds: 2", "seeds: [0, 1, 0]"), "field 'seeds'.*seed\\(s\\) 0 more than once"),
    (BASE + "variants:\n  - {name: a}\n  - {name: a, config: {agent: {learn_from: 'true'}}}\n",
     r"variants\[1\] has the name"),
    (BASE + "variants:\n  - {name: a}\n  - {name: b, config: {agent: {episodes: 20}}}\n",
     r"variants\[1\].*same config as variants\[0\]"),
    (BASE + "variants:\n  - {name: a}\n  - {name: b, config: {agent: {alpha: 0.2}}}\n",  # 0.2 is the default
     r"variants\[1\].*same config as variants\[0\]"),
])
def test_bad_specs_name_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message) as error:
        load_spec(write(tmp_path, text))
    assert "spec.yaml" in str(error.value)


def test_cli_run_writes_store_and_report_and_rejects_bad_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                              ) -> None:
    out = tmp_path / "out"
    assert main(["run", str(write(tmp_path, BASE)), "--out", str(out), "--quiet", "--workers", "1"]) == 0
    with ResultsStore(out / "results.sqlite") as store:
        runs = store.runs("s")
    assert len(runs) == 2 and (out / "report.html").exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text("study: t\nkind: tabular_training\nconfig: {bin_episodes: 2, colour: red}\n")
    assert main(["run", str(bad), "--out", str(out), "--quiet"]) == 2
    assert "bad.yaml" in capsys.readouterr().err
    with ResultsStore(out / "results.sqlite") as store:
        assert store.runs("t") == []


def test_cli_envs_json(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert main(["envs", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    ids = {entry["id"] for entry in listed}
    assert "goodhartlab/TomatoWatering-v0" in ids
    assert all(entry["misspecification"] and entry["proxy_reward"] and entry["true_reward"] for entry in listed)


@pytest.mark.parametrize(("config", "message"), [
    ("{env: goodhartlab/NoSuchEnv-v0, bin_episodes: 10}", "env 'goodhartlab/NoSuchEnv-v0' is not a registered"),
    ("{env: goodhartlab/BoatRace-v0, bin_episodes: 10, env_kwargs: {colour: 1}}",
     "env_kwargs are not accepted.*colour"),
    ("{env: goodhartlab/BoatRace-v0, agent: {episodes: 20}, bin_episodes: 0}", "bin_episodes"),
    ("{env: goodhartlab/BoatRace-v0, bin_episodes: 10, agent: {learn_from: current_rf}}", "reward parameters"),
])
def test_environment_mistakes_are_caught_before_running(tmp_path: Path, config: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        load_spec(write(tmp_path, f"study: s\nkind: tabular_training\nconfig: {config}\n"))


@pytest.mark.parametrize(("agent", "message"), [
    ("{widht: 8}", "agent.widht"), ("{seed: 4}", "agent.seed is the run's seed"),
    ("{eval_episodes: many}", "agent.eval_episodes must be a whole number, got 'many'"),
    ("{total_steps: 5000}", "agent.total_steps is set by the sweep")])
def test_agent_mistakes_are_caught_and_its_settings_are_never_overwritten(tmp_path: Path, agent: str,
                                                                         message: str) -> None:
    sweep = f"study: s\nkind: capability_sweep\nconfig: {{env: goodhartlab/Epidemic-v0, agent: {agent}}}\n"
    with pytest.raises(SpecError, match=message):
        load_spec(write(tmp_path, sweep))
    kept = load_spec(write(tmp_path, "study: s\nkind: capability_sweep\nconfig: {env: goodhartlab/Epidemic-v0, "
                                     "agent: {eval_episodes: 64}}\n"))
    assert all(run.config.agent.eval_episodes == 64 for run in kept.runs)


def test_variant_mistakes_are_caught(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"variants\[0\]\.config must be a mapping"):
        load_spec(write(tmp_path, BASE + "variants:\n  - {name: a, config: [1]}\n"))
    with pytest.raises(SpecError, match=r"is a folder; pass the spec's \.yaml file"):
        load_spec(tmp_path)
