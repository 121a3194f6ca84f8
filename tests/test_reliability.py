"""Bad input, tried as a hostile but fair user would: every case ends in one clear line and exit status 2, with
no traceback, nothing silently accepted, and the store as it was."""

from __future__ import annotations

import hashlib
import itertools
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from goodhartlab.cli import main
from goodhartlab.lab.store import ResultsStore

ROOT = Path(__file__).resolve().parents[1]
SPEC = ("study: s\nkind: tabular_training\nseeds: 1\n"
        "config: {env: goodhartlab/BoatRace-v0, agent: {episodes: 20}, bin_episodes: 10}\n")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def refused(capsys: pytest.CaptureFixture[str], *args: str, names: str = "") -> str:
    """The command exits 2 with one line on standard error that names `names`, and no traceback."""
    code, _, err = run(capsys, *args)
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith(f"goodhartlab {args[0]}: error: "), err
    assert "Traceback" not in err and names in err, err
    return err


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A store holding one finished run."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    assert run(capsys, "run", str(spec), "--out", str(tmp_path / "out"), "--quiet", "--workers", "1")[0] == 0
    return tmp_path / "out" / "results.sqlite"


# -- 1. data loss -------------------------------------------------------------------------------------------------


def test_report_never_overwrites_a_store_a_folder_or_a_file_not_its_own(store: Path, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    before = digest(store)
    refused(capsys, "report", "--store", str(store), "--out", str(store), names=str(store))
    refused(capsys, "report", "--store", str(store), "--out", str(tmp_path), names="is a folder")
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    refused(capsys, "report", "--store", str(store), "--out", str(notes), names="not a goodhartlab report")
    assert digest(store) == before and notes.read_text() == "my notes"
    code, out, _ = run(capsys, "report", "--store", str(store), "--out", str(tmp_path / "report.html"))
    assert code == 0 and run(capsys, "report", "--store", str(store), "--out", out.strip())[0] == 0  # its own: fine


def test_a_foreign_database_is_never_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    foreign = out / "results.sqlite"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE invoices (id INTEGER)")
    before = digest(foreign)
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    refused(capsys, "run", str(spec), "--out", str(out), "--quiet", names="not a goodhartlab results store")
    refused(capsys, "report", "--store", str(foreign), "--out", str(tmp_path / "r.html"), names="not a goodhartlab")
    assert digest(foreign) == before
    assert sqlite3.connect(foreign).execute("PRAGMA journal_mode").fetchone()[0] != "wal"


# -- 2. silent wrong numbers ------------------------------------------------------------------------------------


def test_an_edited_spec_run_again_into_the_same_store_is_refused(store: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    edited = tmp_path / "edited.yaml"
    edited.write_text(SPEC.replace("episodes: 20", "episodes: 30"))
    err = refused(capsys, "run", str(edited), "--out", str(store.parent), "--quiet", "--workers", "1",
                  names="variant 's' is already in")
    assert "agent.episodes: 20 → 30" in err
    with ResultsStore(store, mode="read") as db:
        assert len(db.runs()) == 1


def test_a_non_finite_result_is_stored_as_such_and_shown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "nan.yaml"
    spec.write_text("study: n\nkind: tests.test_reliability:nan_gold_task\nseeds: 1\n")
    assert run(capsys, "run", str(spec), "--out", str(tmp_path / "out"), "--quiet", "--allow-import")[0] == 0
    with ResultsStore(tmp_path / "out" / "results.sqlite", mode="read") as db:
        (stored,) = db.runs()
        assert db.nonfinite(stored.run_id) == [("c", 2.0, "gold=nan"), ("c", 3.0, "proxy=inf")]
    page = (tmp_path / "out" / "report.html").read_text()
    assert "Non-finite values" in page and "gold=nan" in page


def nan_gold_task(config: dict, seed: int) -> object:
    from goodhartlab.results import CurvePoints, RunResult

    return RunResult({"c": CurvePoints([1.0, 2.0, 3.0, 4.0], [0.1, 0.2, float("inf"), 0.4],
                                       [0.5, float("nan"), 0.7, 0.8], "steps")})


@pytest.mark.parametrize(("name", "text", "names"), [
    ("two-golds.csv", "step,kl,proxy,gold,gold\n1,0.1,0.2,0.3,0.4\n", "field 'gold': the header names gold more"),
    ("huge.csv", "step,kl,proxy,gold\n" + "".join(f"{i},{i},0.1,{1e308 if i == 3 else 0.1 * i}\n" for i in range(6)),
     "too large to fit"),
])
def test_fit_refuses_what_it_would_otherwise_fit_wrongly(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         name: str, text: str, names: str) -> None:
    log = tmp_path / name
    log.write_text(text)
    refused(capsys, "fit", str(log), names=names)


def test_fit_reads_gold_from_the_mean_of_the_gold_reward_and_says_so(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    history = [{"step": s, "loss": 0.1, "reward": 0.1 * s, "kl": 0.01 * s, "completions/mean_length": 10.0,
                "golden_ratio_lr": 1.618, "rewards/gold/std": 9.0, "rewards/gold/mean": 0.1 * s - 0.004 * s * s}
               for s in range(1, 21)]
    state = tmp_path / "trainer_state.json"
    state.write_text(json.dumps({"log_history": history}))
    code, out, _ = run(capsys, "fit", str(state), "--json")
    assert code == 0 and json.loads(out)["gold_key"] == "rewards/gold/mean"
    refused(capsys, "fit", str(state), "--gold-key", "no_such_key", names="no log entry has the key 'no_such_key'")


def test_a_step_logged_twice_keeps_its_last_row_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = ["step,kl,proxy,gold"] + [f"{s},{0.5 * s},{s},{0.1 * s}" for s in range(8)]
    rows += [f"{s},{0.5 * s},{s},{0.1 * s + 1}" for s in (5, 6, 7)]  # resumed from step 4: 5..7 logged again
    log = tmp_path / "resumed.csv"
    log.write_text("\n".join(rows) + "\n")
    code, out, _ = run(capsys, "fit", str(log), "--json")
    result = json.loads(out)
    assert code == 0 and result["points"] == 8
    assert "3 row(s) log a step of their seed again" in result["notes"][0]


# -- 3. unbounded memory and time --------------------------------------------------------------------------------


def test_endless_or_binary_input_and_absurd_specs_are_refused_at_once(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    levels = "abcdefghijkl"  # 11 levels of 10 aliases each: 10^11 strings once expanded
    bomb.write_text("study: s\nkind: tabular_training\nconfig:\n  a: &a [x, x, x, x, x, x, x, x, x, x]\n"
                    + "".join(f"  {c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in itertools.pairwise(levels)))
    many = tmp_path / "many.yaml"
    many.write_text("study: s\nkind: tabular_training\nseeds: 1000000000\n")
    for args, names in ((["fit", "/dev/zero"], "unknown log format"), (["run", str(bomb)], "aliases"),
                        (["run", str(many)], "between 1 and 10,000")):
        done = subprocess.run([sys.executable, "-m", "goodhartlab.cli", *args], capture_output=True, text=True,
                              timeout=60, cwd=tmp_path)
        assert done.returncode == 2 and names in done.stderr and done.stderr.count("\n") == 1, done.stderr
    zeros = tmp_path / "zeros.csv"
    zeros.symlink_to("/dev/zero")
    done = subprocess.run([sys.executable, "-m", "goodhartlab.cli", "fit", str(zeros)], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert done.returncode == 2 and "holds NUL bytes" in done.stderr


def test_a_long_list_of_seeds_is_checked_in_linear_time(tmp_path: Path) -> None:
    from goodhartlab.lab.spec import load_spec

    spec = tmp_path / "seeds.yaml"
    spec.write_text(SPEC.replace("seeds: 1", f"seeds: {list(range(9_999))}"))
    assert len(load_spec(spec).runs) == 9_999


# -- 5. a spec runs no code of its own unless allowed ---------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "study: s\nkind: 'subprocess:run'\nconfig: {args: [touch, pwned]}\n",
    "study: s\nkind: bestofn\nconfig: {task: 'os:system', pool: 4}\n",
    "study: s\nkind: tabular_training\nconfig: {env: 'os:Anything-v0', bin_episodes: 10}\n",
])
def test_a_spec_naming_code_is_refused_without_allow_import(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            text: str) -> None:
    spec = tmp_path / "hostile.yaml"
    spec.write_text(text)
    refused(capsys, "run", str(spec), "--out", str(tmp_path / "out"), "--quiet", names="--allow-import")
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "out" / "results.sqlite").exists()


# -- 6. half-written studies ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("change", "names"), [
    (("episodes: 20", "episodes: 20.5"), "agent.episodes must be a whole number, got 20.5"),
    (("seeds: 1", "seeds: [-1]"), "every seed must be a whole number from 0"),
    (("seeds: 1", f"seeds: [{2**64}]"), "every seed must be a whole number from 0"),
    (("kind: tabular_training", "kind: 'os:getcwd'"), "--allow-import"),
])
def test_a_spec_that_would_fail_at_run_time_fails_before_anything_is_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], change: tuple[str, str], names: str) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.replace(*change))
    refused(capsys, "run", str(spec), "--out", str(tmp_path / "out"), "--quiet", names=names)
    assert not (tmp_path / "out" / "results.sqlite").exists()


def test_a_kind_that_returns_no_result_fails_alone_and_leaves_no_empty_study(tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("study: s\nkind: 'os:getcwd'\nseeds: 1\n")
    err = refused(capsys, "run", str(spec), "--out", str(tmp_path / "out"), "--quiet", "--allow-import",
                  names="1 of 1 runs failed")
    assert "TypeError" in err
    with ResultsStore(tmp_path / "out" / "results.sqlite", mode="read") as db:
        assert db.runs() == [] and db.studies() == [] and len(db.failures()) == 1


# -- 7. what used to end in a traceback -------------------------------------------------------------------------


def test_files_that_are_not_what_they_claim(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    loop = tmp_path / "loop.csv"
    loop.symlink_to(loop)
    refused(capsys, "fit", str(loop), names=str(loop))
    spec_loop = tmp_path / "loop.yaml"
    spec_loop.symlink_to(spec_loop)
    refused(capsys, "run", str(spec_loop), names=str(spec_loop))
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    refused(capsys, "fit", str(deep), names=str(deep))
    deep_yaml = tmp_path / "deep.yaml"
    deep_yaml.write_text("study: s\nkind: tabular_training\nconfig: " + "[" * 100_000 + "]" * 100_000 + "\n")
    refused(capsys, "run", str(deep_yaml), names="nested more than")
    digits = tmp_path / "digits.jsonl"
    digits.write_text(json.dumps({"step": 1, "kl": int("9" * 400), "proxy": 1, "gold": 1}) + "\n")
    refused(capsys, "fit", str(digits), names="field 'kl': a number of 400 digits is too large")
    seed = tmp_path / "seed.jsonl"
    seed.write_text(json.dumps({"step": 1, "kl": 1, "proxy": 1, "gold": 1, "seed": 2**70}) + "\n")
    refused(capsys, "fit", str(seed), names="field 'seed': must be a whole number below 2^53")


@pytest.mark.parametrize("damage", ["truncated", "html", "empty-db", "garbage"])
def test_a_damaged_or_foreign_store_is_one_clear_error(store: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str], damage: str) -> None:
    data = store.read_bytes()
    target = tmp_path / f"{damage}.sqlite"
    if damage == "truncated":
        target.write_bytes(data[:len(data) // 3])
    elif damage == "html":
        target.write_text("<!doctype html><html></html>")
    elif damage == "empty-db":
        sqlite3.connect(target).close()
        target.write_bytes(b"")
    else:
        target.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 40)
    code, _, err = run(capsys, "report", "--store", str(target), "--out", str(tmp_path / "r.html"))
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err and str(target) in err


def test_out_paths_that_cannot_be_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    refused(capsys, "run", str(spec), "--out", str(a_file), "--quiet", names="is a file, not a folder")
    refused(capsys, "run", str(spec), "--out", str(a_file / "under"), "--quiet", names="is a file, not a folder")
    refused(capsys, "report", "--store", str(tmp_path), "--out", str(tmp_path / "r.html"), names="is a folder")


@pytest.mark.parametrize(("task", "names"), [
    ("returns_a_number", "returned int, not a RunResult"),
    ("nan_pressure", "a curve's pressures must be finite numbers"),
    ("unstorable_summary", "summary that cannot be stored"),
])
def test_a_kind_returning_something_unusable_fails_alone_with_its_reason(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], task: str, names: str) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"study: s\nkind: tests.test_reliability:{task}\nseeds: 1\n")
    refused(capsys, "run", str(spec), "--out", str(tmp_path / "out"), "--quiet", "--allow-import", names=names)
    with ResultsStore(tmp_path / "out" / "results.sqlite", mode="read") as db:
        assert db.runs() == [] and len(db.failures()) == 1


def returns_a_number(config: dict, seed: int) -> object:
    return 42


def nan_pressure(config: dict, seed: int) -> object:
    from goodhartlab.results import CurvePoints, RunResult

    return RunResult({"c": CurvePoints([1.0, float("nan")], [0.1, 0.2], [0.1, 0.2])})


def unstorable_summary(config: dict, seed: int) -> object:
    from goodhartlab.results import RunResult

    return RunResult({}, {"handle": object()})


def test_a_stored_fit_without_coefficients_and_null_meta_still_report(store: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    with sqlite3.connect(store) as db:
        db.execute("UPDATE runs SET summary = ?", (json.dumps({"fit": {"alpha": None, "beta": None}}),))
        db.execute("UPDATE studies SET meta = 'null'")
    assert run(capsys, "report", "--store", str(store), "--out", str(tmp_path / "r.html"))[0] == 0


# -- 8. messages that say where and what ------------------------------------------------------------------------


def test_messages_name_the_row_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    negative = tmp_path / "negative.csv"
    negative.write_text("step,kl,proxy,gold,length\n1,0.1,0.1,0.1,3\n2,-0.5,0.2,0.2,3\n")
    refused(capsys, "fit", str(negative), names="line 3, field 'kl': is negative (-0.5)")
    negative.write_text("step,kl,proxy,gold,length\n1,0.1,0.1,0.1,3\n2,0.5,0.2,0.2,-3\n")
    refused(capsys, "fit", str(negative), names="line 3, field 'length': is negative")
    quote = tmp_path / "quote.csv"
    quote.write_text('step,kl,proxy,gold\n1,0.1,0.1,0.1\n2,0.2,"0.2,0.2\n3,0.3,0.3,0.3\n4,0.4,0.4,0.4\n')
    refused(capsys, "fit", str(quote), names="line 3: a quote (\") opened here is never closed")
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbfstep,kl,proxy,gold\n" + b"".join(f"{s},{s},{s},{s % 3}\n".encode() for s in range(6)))
    assert run(capsys, "fit", str(bom), "--json")[0] == 0  # Excel's byte-order mark is accepted
    with pytest.raises(SystemExit) as exit_status:
        main(["fit", str(bom), "--seed", "-1"])
    assert exit_status.value.code == 2 and "must be >= 0, got -1" in capsys.readouterr().err


@pytest.mark.parametrize(("text", "names"), [
    (SPEC.replace("episodes: 20", "episodes: many"), "agent.episodes must be a whole number, got 'many'"),
    (SPEC + "seeds: 2\n", "key 'seeds' appears twice"),
    (SPEC + "variants: []\n", "field 'variants' must be a non-empty list"),
    (SPEC.replace("bin_episodes: 10", "bin_episodes: 10, env_kwargs: {level: no}"), "env_kwargs"),
])
def test_spec_mistakes_and_yaml_quirks_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str,
                                                 names: str) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    err = refused(capsys, "run", str(spec), "--quiet", names=names)
    assert str(spec) in err


def test_a_spec_that_is_not_utf8_names_its_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "latin1.yaml"
    spec.write_bytes("study: café\nkind: tabular_training\n".encode("latin-1"))
    refused(capsys, "run", str(spec), names=f"{spec}: not UTF-8 text")
    yes = tmp_path / "yes.yaml"
    yes.write_text(SPEC.replace("study: s", "study: 'no'"))  # quoted: the string "no", never a boolean
    assert run(capsys, "run", str(yes), "--quiet", "--workers", "1", "--out", str(tmp_path / "o"))[0] == 0
    with ResultsStore(tmp_path / "o" / "results.sqlite", mode="read") as db:
        assert db.studies()[0].study == "no"
