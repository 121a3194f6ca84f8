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
    spec = load_spec(path)
    assert spec.runs and all(run.task.count(":") == 1 for run in spec.runs)
    if path.name.startswith("rl-"):  # the classic-RL sweeps are cheap enough for three seeds
        assert len({run.seed for run in spec.runs}) >= 3


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


BASE = ("study: s\ntask: tabular_training\nseeds: 2\n"
        "config: {env: goodhartlab/BoatRace-v0, episodes: 20, bin_episodes: 10}\n")


def test_variants_override_the_base_config(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, BASE + "variants:\n  - {name: a, config: {learn_from: 'true'}}\n  - {name: b}\n"))
    assert [(r.variant, r.seed, r.config.get("learn_from")) for r in spec.runs] == [
        ("a", 0, "true"), ("a", 1, "true"), ("b", 0, None), ("b", 1, None)]


@pytest.mark.parametrize(("text", "message"), [
    ("study: s\ntask: tabular_training\nconfig: {env: x, episodes: 2, colour: red}\n", "field 'config'.*colour"),
    (BASE + "seed: 3\n", "unknown field.*seed"),
    ("study: s\ntask: no_such_task\n", "field 'task'"),
    ("study: s\ntask: tabular_training\nseeds: -1\n", "field 'seeds'"),
    (BASE + "variants:\n  - {name: a, config: {learn_from: true}}\n", "quote them in YAML"),
    ("study: s\ntask: capability_sweep\nconfig: {axis: height}\n", "axis 'height'"),
    ("task: tabular_training\n", "field 'study'"),
    ("[1, 2", "not valid YAML"),
    (BASE.replace("episodes: 20", "episodez: 20") + "variants:\n  - {name: a, config: {learn_from: 'true'}}\n",
     r"field 'config':.*episodez"),  # the typo is in the base config, not in the variant that extends it
    (BASE + "variants:\n  - {name: a, config: {learn_from: 'true', colour: red}}\n",
     r"field 'variants\[0\]\.config':.*colour"),
    (BASE.replace("seeds: 2", "seeds: [0, 1, 0]"), "field 'seeds'.*seed\\(s\\) 0 more than once"),
    (BASE + "variants:\n  - {name: a}\n  - {name: a, config: {learn_from: 'true'}}\n", r"variants\[1\] has the name"),
    (BASE + "variants:\n  - {name: a}\n  - {name: b, config: {episodes: 20}}\n",
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
    bad.write_text("study: t\ntask: tabular_training\nconfig: {episodes: 2, colour: red}\n")
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
    ("{env: goodhartlab/NoSuchEnv-v0, episodes: 20, bin_episodes: 10}", "unknown environment"),
    ("{env: goodhartlab/BoatRace-v0, episodes: 20, bin_episodes: 10, env_config: {colour: 1}}", "colour"),
    ("{env: goodhartlab/BoatRace-v0, episodes: 20, bin_episodes: 0}", "bin_episodes"),
    ("{env: goodhartlab/BoatRace-v0, episodes: 20, bin_episodes: 10, learn_from: current_rf}", "reward parameters"),
])
def test_environment_mistakes_are_caught_before_running(tmp_path: Path, config: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        load_spec(write(tmp_path, f"study: s\ntask: tabular_training\nconfig: {config}\n"))


def test_agent_and_variant_mistakes_are_caught(tmp_path: Path) -> None:
    sweep = "study: s\ntask: capability_sweep\nconfig: {env: goodhartlab/Epidemic-v0, agent: {widht: 8}}\n"
    with pytest.raises(SpecError, match="widht"):
        load_spec(write(tmp_path, sweep))
    with pytest.raises(SpecError, match=r"variants\[0\]\.config must be a mapping"):
        load_spec(write(tmp_path, BASE + "variants:\n  - {name: a, config: [1]}\n"))
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path)
