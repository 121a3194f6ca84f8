import json
import string

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from goodhartlab.measure.runlog import RunLog, RunLogError, read_run_log


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_with_sparse_gold(tmp_path):
    path = write(tmp_path, "run.csv", "step,kl,proxy,gold,seed\n0,0,0.1,0.0,1\n10,1.5,0.5,,1\n"
                 "20,3.0,0.9,0.4,1\n")
    log = read_run_log(path)
    assert len(log) == 3 and log.has_gold.tolist() == [True, False, True]
    assert log.seed.tolist() == [1, 1, 1]


def test_jsonl_with_ensemble_scores(tmp_path):
    rows = [{"step": s, "kl": s / 10, "proxy": s, "gold": 1.0, "ensemble_scores": [s, s + 1]}
            for s in range(3)]
    log = read_run_log(write(tmp_path, "run.jsonl", "\n".join(json.dumps(r) for r in rows)))
    assert log.ensemble_scores[2] == [2.0, 3.0]


def test_trl_grpo_state_converts_per_token_kl(tmp_path):
    state = {"log_history": [
        {"step": 5, "kl": 0.1, "completions/mean_length": 20, "reward": 1.0,
         "rewards/gold_reward/mean": 0.5},
        {"step": 10, "kl": 0.2, "completions/mean_length": 10, "reward": 2.0,
         "rewards/gold_reward/mean": 0.7},
        {"train_runtime": 12.0, "step": 10},
    ]}
    log = read_run_log(write(tmp_path, "trainer_state.json", json.dumps(state)))
    np.testing.assert_allclose(log.kl, [2.0, 2.0])
    assert log.gold.tolist() == [0.5, 0.7] and log.proxy.tolist() == [1.0, 2.0]
    assert log.notes  # the conversion is reported


def test_trl_ppo_state_keeps_sequence_kl(tmp_path):
    state = {"log_history": [{"step": 1, "objective/kl": 3.0, "objective/scores": 1.0, "gold": 0.2}]}
    log = read_run_log(write(tmp_path, "trainer_state.json", json.dumps(state)))
    assert log.kl.tolist() == [3.0] and log.notes == []


@pytest.mark.parametrize(("name", "text", "expected"), [
    ("empty.csv", "", r"empty.csv: is empty"),
    ("header.csv", "step,kl,proxy\n1,0.1,0.2\n", r"header.csv: line 1, field 'gold': .*lacks"),
    ("nan.csv", "step,kl,proxy,gold\n1,0.1,0.2,0.3\n2,0.2,0.3,nan\n",
     r"nan.csv: line 3, field 'gold': value 'nan' is not finite"),
    ("inf.csv", "step,kl,proxy,gold\n1,inf,0.2,0.3\n", r"inf.csv: line 2, field 'kl'"),
    ("text.csv", "step,kl,proxy,gold\n1,abc,0.2,0.3\n", r"line 2, field 'kl': expected a number"),
    ("ragged.csv", "step,kl,proxy,gold\n1,0.1,0.2,0.3,9\n", r"line 2: has 5 cells"),
    ("short.csv", "step,kl,proxy,gold\n1,0.1,0.2,0.3\n2,0.2,0.3\n", r"line 3: has 3 cells but the header names 4"),
    ("list.json",
     '[\n {"step": 1, "kl": 0.1, "proxy": 1, "gold": 1},\n {"step": 2, "kl": 0.2,\n  "proxy": 1, "gold": "x"}\n]',
     r"list.json: row 2 of the list, field 'gold': expected a number"),
    ("bad.jsonl", '{"step": 1, "kl": 0.1, "proxy": 1, "gold": 1}\n{"step": 2,', r"line 2: is not valid JSON"),
    ("nogold.jsonl", '{"step": 1, "kl": 0.1, "proxy": 1}\n', r"field 'gold': no row has a gold"),
    ("grpo.json", '{"log_history": [{"step": 1, "kl": 0.1, "reward": 1, "rewards/gold/mean": 0.5}]}',
     r"log_history\[0\], field 'completions/mean_length'"),
    ("log.txt", "step,kl,proxy,gold\n", r"unknown log format '.txt'"),
])
def test_bad_logs_get_one_clear_message(tmp_path, name, text, expected):
    with pytest.raises(RunLogError, match=expected):
        read_run_log(write(tmp_path, name, text))


def test_missing_file(tmp_path):
    with pytest.raises(RunLogError, match="no such file"):
        read_run_log(tmp_path / "absent.csv")


CELLS = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.text(
    alphabet=string.printable, max_size=6), st.just(""), st.integers().map(str))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=st.lists(st.sampled_from(["step", "kl", "proxy", "gold", "seed", "length", "x", ""]),
                       max_size=7),
       rows=st.lists(st.lists(CELLS, max_size=8), max_size=6))
def test_random_csv_is_read_or_rejected_clearly(tmp_path, header, rows):
    text = "\n".join([",".join(header), *(",".join(row) for row in rows)])
    path = write(tmp_path, "random.csv", text)
    try:
        log = read_run_log(path)
    except RunLogError as error:
        assert str(error).startswith(str(path))
    else:
        assert isinstance(log, RunLog)
        assert np.isfinite(log.kl).all() and not np.isinf(log.gold).any()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(st.one_of(
    st.fixed_dictionaries({"step": JSON_VALUES, "kl": JSON_VALUES, "proxy": JSON_VALUES},
                          optional={"gold": JSON_VALUES, "seed": JSON_VALUES,
                                    "ensemble_scores": JSON_VALUES, "pressure_kind": JSON_VALUES}),
    JSON_VALUES), max_size=5), suffix=st.sampled_from([".jsonl", ".json"]))
def test_random_json_is_read_or_rejected_clearly(tmp_path, records, suffix):
    if suffix == ".jsonl":
        text = "\n".join(json.dumps(r) for r in records)
    else:
        text = json.dumps({"log_history": records} if records and isinstance(records[0], dict) else records)
    path = write(tmp_path, "random" + suffix, text)
    try:
        read_run_log(path)
    except RunLogError as error:
        assert str(error).startswith(str(path))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blob=st.binary(max_size=200), suffix=st.sampled_from([".csv", ".jsonl", ".json"]))
def test_random_bytes_are_rejected_clearly(tmp_path, blob, suffix):
    path = tmp_path / ("blob" + suffix)
    path.write_bytes(blob)
    try:
        read_run_log(path)
    except RunLogError as error:
        assert str(error).startswith(str(path))
