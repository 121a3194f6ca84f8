"""A fuzz harness for the inputs users hand goodhartlab: run logs, specs and results stores.

Each case starts from a valid input and applies seeded mutations. Some mutations make the input invalid for
certain (text in a number's place, NaN, a dropped column, an unknown setting); others may or may not (a byte
overwritten inside a store). Each case is run through the same entry points as the command line, and its
outcome counted:

- clean error: exit status 2 and one line naming the file;
- traceback: an exception escaping, exit status 1 (an unforeseen error), or a message of several lines;
- silent acceptance: exit status 0 on an input that was made invalid for certain.

    python -m tests.fuzz --cases 2000 --seed 0
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import sqlite3
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from goodhartlab.cli import main

Mutation = tuple[str, bool, Callable[[random.Random, str], str]]  # (name, makes it invalid for certain, mutate)


@dataclass
class Counts:
    tried: int = 0
    clean: int = 0
    accepted: int = 0  # valid inputs (or harmless mutations) read without complaint
    tracebacks: list[str] = field(default_factory=list)
    silent: list[str] = field(default_factory=list)
    by_kind: Counter[str] = field(default_factory=Counter)

    def __str__(self) -> str:
        return (f"{self.tried} cases ({dict(self.by_kind)}): {self.clean} clean errors, {self.accepted} accepted "
                f"valid, {len(self.tracebacks)} tracebacks, {len(self.silent)} silent acceptances")


# -- run logs ---------------------------------------------------------------------------------------------------


def valid_csv(rng: random.Random) -> str:
    rows = ["step,kl,proxy,gold,seed"]
    for step in range(rng.randint(6, 30)):
        gold = "" if rng.random() < 0.3 and step else f"{0.4 * (step ** 0.5) - 0.02 * step:.4f}"
        rows.append(f"{step},{0.3 * step:.4f},{0.1 * step:.4f},{gold},{rng.randint(0, 2)}")
    return "\n".join(rows) + "\n"


def _cell(rng: random.Random, text: str, replacement: Callable[[random.Random], str], columns: tuple[int, ...]) -> str:
    lines = text.splitlines()
    row = rng.randint(1, len(lines) - 1)
    cells = lines[row].split(",")
    cells[rng.choice(columns)] = replacement(rng)
    lines[row] = ",".join(cells)
    return "\n".join(lines) + "\n"


CSV_MUTATIONS: list[Mutation] = [
    ("text for a number", True, lambda r, t: _cell(r, t, lambda r: r.choice(["abc", "1,5", "0x1g", "--1"]), (0, 1))),
    ("non-finite value", True, lambda r, t: _cell(r, t, lambda r: r.choice(["nan", "inf", "-inf", "NaN", "1e400"]),
                                                   (1, 2))),
    ("negative KL", True, lambda r, t: _cell(r, t, lambda r: f"-{r.uniform(0.1, 5):.3f}", (1,))),
    ("fractional step", True, lambda r, t: _cell(r, t, lambda r: f"{r.randint(0, 9)}.5", (0,))),
    ("huge seed", True, lambda r, t: _cell(r, t, lambda r: str(2**70), (4,))),
    ("dropped required column", True, lambda r, t: t.replace(r.choice(["step", "kl", "proxy", "gold"]), "x", 1)),
    ("extra cell", True, lambda r, t: _row_edit(r, t, lambda line: line + ",9")),
    ("missing cell", True, lambda r, t: _row_edit(r, t, lambda line: line.rsplit(",", 1)[0])),
    ("NUL byte", True, lambda r, t: _insert(r, t, "\0")),
    ("unclosed quote", True, lambda r, t: _row_edit(r, t, lambda line: line.replace(",", ',"', 1))),
    ("repeated column", True, lambda r, t: t.replace("seed", "gold", 1)),
    ("no gold at all", True, lambda r, t: "\n".join(
        [t.splitlines()[0]] + [",".join([*line.split(",")[:3], "", line.split(",")[4]]) for line in
                               t.splitlines()[1:]]) + "\n"),
    ("emptied", True, lambda r, t: r.choice(["", "\n", "   \n"])),
    ("extra unknown column", False, lambda r, t: "\n".join(f"{line},7" for line in t.splitlines()) + "\n"),
    ("spaces around cells", False, lambda r, t: t.replace(",", " , ")),
    ("byte-order mark", False, lambda r, t: "\ufeff" + t),
    ("cut short", False, lambda r, t: t[:r.randint(0, len(t))]),
    ("random byte", False, lambda r, t: _insert(r, t, chr(r.randint(1, 255)))),
]


def _row_edit(rng: random.Random, text: str, edit: Callable[[str], str]) -> str:
    lines = text.splitlines()
    row = rng.randint(1, len(lines) - 1)
    lines[row] = edit(lines[row])
    return "\n".join(lines) + "\n"


def _insert(rng: random.Random, text: str, what: str) -> str:
    at = rng.randint(0, len(text))
    return text[:at] + what + text[at:]


def valid_trl(rng: random.Random) -> str:
    history = [{"step": step, "loss": 0.1, "reward": 0.1 * step, "kl": 0.01 * step, "completions/mean_length": 12.0,
                "rewards/gold/mean": 0.05 * step - 0.002 * step * step} for step in range(1, rng.randint(8, 25))]
    return json.dumps({"log_history": history})


def _trl_edit(rng: random.Random, text: str, key: str, value: object) -> str:
    try:
        state = json.loads(text)
        entry = rng.choice(state["log_history"])
    except (ValueError, RecursionError, TypeError, KeyError, IndexError):  # an earlier mutation broke it already
        return text
    if not isinstance(entry, dict):
        return text
    entry[key] = value
    return json.dumps(state)


TRL_MUTATIONS: list[Mutation] = [
    ("non-finite KL", True, lambda r, t: _trl_edit(r, t, "kl", r.choice([float("nan"), float("inf")]))),
    ("text gold", True, lambda r, t: _trl_edit(r, t, "rewards/gold/mean", "high")),
    ("negative length", True, lambda r, t: _trl_edit(r, t, "completions/mean_length", -3.0)),
    ("missing length", True, lambda r, t: _trl_edit(r, t, "completions/mean_length", None)),
    ("400 digits", True, lambda r, t: t.replace('"kl": 0.01,', '"kl": ' + "9" * 400 + ",", 1)),
    ("no history", True, lambda r, t: json.dumps({"log_history": r.choice([None, 3, "x", {}])})),
    ("entry not an object", True, lambda r, t: t.replace("[{", "[7, {", 1)),
    ("nested deep", True, lambda r, t: "[" * 50_000 + "]" * 50_000),
    ("cut short", True, lambda r, t: t[:r.randint(1, len(t) - 2)]),
    ("unrelated gold-ish key", False, lambda r, t: t.replace('"loss"', '"golden_ratio_lr": 1.6, "loss"')),
]


# -- specs ------------------------------------------------------------------------------------------------------

BAD_SEEDS = ["-1", "0", "[0, 0]", "[-2]", "x", str([2**64]), "1000000000", "[]", "2.5"]
VALID_SPEC = """study: s
kind: tabular_training
seeds: 2
config: {env: goodhartlab/BoatRace-v0, agent: {episodes: 20}, bin_episodes: 10}
variants:
  - {name: a, config: {agent: {learn_from: proxy}}}
  - {name: b, config: {agent: {learn_from: 'true'}}}
"""

SPEC_MUTATIONS: list[Mutation] = [
    ("unknown top-level field", True, lambda r, t: t + r.choice(["seed: 3\n", "colour: red\n", "kinds: x\n"])),
    ("unknown setting", True, lambda r, t: t.replace("bin_episodes: 10", "bin_episodes: 10, colour: red")),
    ("nested unknown setting", True, lambda r, t: t.replace("episodes: 20", "episodes: 20, alpah: 0.1")),
    ("text for a number", True, lambda r, t: t.replace("episodes: 20", f"episodes: {r.choice(['many', '[1]', '{}'])}")),
    ("fraction for a count", True, lambda r, t: t.replace("episodes: 20", "episodes: 20.5")),
    ("bool for a number", True, lambda r, t: t.replace("bin_episodes: 10", "bin_episodes: true")),
    ("out of range", True, lambda r, t: t.replace("bin_episodes: 10", f"bin_episodes: {r.choice([0, -1, 21])}")),
    ("bad seeds", True, lambda r, t: t.replace("seeds: 2", "seeds: " + r.choice(BAD_SEEDS))),
    ("unknown kind", True, lambda r, t: t.replace("tabular_training", r.choice(["tabular", "os:system", ".x:y"]))),
    ("unquoted true", True, lambda r, t: t.replace("'true'", "true")),
    ("repeated key", True, lambda r, t: t + "seeds: 3\n"),
    ("no variants", True, lambda r, t: t.split("variants:")[0] + "variants: []\n"),
    ("variant without a name", True, lambda r, t: t.replace("{name: a, ", "{")),
    ("same variant twice", True, lambda r, t: t.replace("{name: b, config: {agent: {learn_from: 'true'}}}",
                                                        "{name: a, config: {agent: {learn_from: 'true'}}}")),
    ("unknown environment", True, lambda r, t: t.replace("BoatRace", "BoatRaise")),
    ("alias bomb", True, lambda r, t: t + "x: &a [1]\n" + "".join(f"y{i}: [*a, *a, *a, *a, *a]\n" for i in range(30))),
    ("deep nesting", True, lambda r, t: t.replace("{env:", "{deep: " + "[" * 5000 + "]" * 5000 + ", env:")),
    ("not UTF-8", True, lambda r, t: t.replace("study: s", "study: caf\udce9")),
    ("cut short", False, lambda r, t: t[:r.randint(0, len(t))]),
    ("random byte", False, lambda r, t: _insert(r, t, chr(r.randint(1, 255)))),
]


# -- stores -----------------------------------------------------------------------------------------------------

STORE_MUTATIONS: list[tuple[str, bool, Callable[[random.Random, Path], None]]] = [
    ("truncated inside the header", True, lambda r, p: p.write_bytes(p.read_bytes()[:r.randint(1, 99)])),
    ("truncated", False, lambda r, p: p.write_bytes(p.read_bytes()[:r.randint(100, p.stat().st_size)])),
    ("bytes overwritten", False, lambda r, p: _overwrite(r, p)),
    ("not SQLite", True, lambda r, p: p.write_text(r.choice(["<!doctype html>", "step,kl\n1,2\n", "{}"]))),
    ("a foreign database", True, lambda r, p: _foreign(p)),
    ("a table dropped", False, lambda r, p: _execute(p, f"DROP TABLE {r.choice(['runs', 'points', 'studies'])}")),
    ("damaged JSON cells", False, lambda r, p: _execute(p, "UPDATE runs SET summary = '{not json', config = 'null'")),
    ("meta null", False, lambda r, p: _execute(p, "UPDATE studies SET meta = 'null'")),
]


def _overwrite(rng: random.Random, path: Path) -> None:
    data = bytearray(path.read_bytes())
    start = rng.randint(0, len(data) - 1)
    for i in range(start, min(len(data), start + rng.randint(1, 2048))):
        data[i] = rng.randint(0, 255)
    path.write_bytes(bytes(data))


def _foreign(path: Path) -> None:
    path.unlink()
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE invoices (id INTEGER)")


def _execute(path: Path, statement: str) -> None:
    with contextlib.suppress(sqlite3.Error), sqlite3.connect(path) as db:
        db.execute(statement)


INTERACTING = ({"extra cell", "missing cell"}, {"dropped required column", "repeated column"})
"""Mutations that can cancel each other out when applied to the same input."""


# -- the harness ------------------------------------------------------------------------------------------------


def _outcome(counts: Counts, label: str, invalid: bool, args: list[str], names: str) -> None:
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            code = main(args)
    except SystemExit as exit_status:  # argparse
        code = exit_status.code if isinstance(exit_status.code, int) else 2
    except BaseException as error:
        counts.tracebacks.append(f"{label}: {type(error).__name__}: {error}"[:300])
        return
    message = stderr.getvalue()
    if code == 0:
        if invalid:
            counts.silent.append(label)
        else:
            counts.accepted += 1
    elif code == 2 and message.count("\n") == 1 and names in message and "Traceback" not in message:
        counts.clean += 1
    else:
        counts.tracebacks.append(f"{label}: exit {code}: {message.strip()[:300]}")


def _spec_outcome(counts: Counts, label: str, invalid: bool, path: Path) -> None:
    """Specs go through `load_spec`, the boundary `run` uses, without running what they describe."""
    from goodhartlab.lab.spec import SpecError, load_spec

    try:
        load_spec(path)
    except SpecError as error:
        if str(error).startswith(str(path)) and "\n" not in str(error):
            counts.clean += 1
        else:
            counts.tracebacks.append(f"{label}: message: {error}"[:300])
    except BaseException as error:
        counts.tracebacks.append(f"{label}: {type(error).__name__}: {error}"[:300])
    else:
        if invalid:
            counts.silent.append(label)
        else:
            counts.accepted += 1


def run_fuzz(cases: int, seed: int, folder: Path) -> Counts:
    rng = random.Random(seed)
    counts = Counts()
    store = _a_store(folder)
    for case in range(cases):
        kind = rng.choice(["csv", "trl", "spec", "store"])
        counts.tried += 1
        counts.by_kind[kind] += 1
        if kind == "store":
            name, invalid, mutate = rng.choice(STORE_MUTATIONS)
            path = folder / f"case{case}.sqlite"
            path.write_bytes(store.read_bytes())
            mutate(rng, path)
            _outcome(counts, f"store/{name}", invalid, ["report", "--store", str(path), "--out",
                                                        str(folder / f"case{case}.html")], str(path))
            continue
        start, mutations, suffix = {"csv": (valid_csv, CSV_MUTATIONS, ".csv"),
                                    "trl": (valid_trl, TRL_MUTATIONS, ".json"),
                                    "spec": (lambda r: VALID_SPEC, SPEC_MUTATIONS, ".yaml")}[kind]
        text = start(rng)
        applied = []
        for mutation in rng.sample(mutations, k=rng.choice([1, 1, 2])):
            try:
                text = mutation[2](rng, text)
            except (ValueError, IndexError):  # an earlier mutation left nothing this one can work on
                continue
            applied.append(mutation)
        names = {name for name, _, _ in applied}
        # certain only when every mutation is, and none can undo another (a cell removed and one added)
        invalid = bool(applied) and all(certain for _, certain, _ in applied) and not any(
            len(names & group) > 1 for group in INTERACTING)
        path = folder / f"case{case}{suffix}"
        path.write_bytes(text.encode("utf-8", "surrogateescape"))
        label = f"{kind}/{'+'.join(name for name, _, _ in applied)}"
        if kind == "spec":
            _spec_outcome(counts, label, invalid, path)
        else:
            _outcome(counts, label, invalid, ["fit", str(path), "--plot", str(folder / "plot.png")], str(path))
    return counts


def _a_store(folder: Path) -> Path:
    from goodhartlab.lab.store import ResultsStore, StudyInfo
    from goodhartlab.results import CurvePoints, RunResult

    path = folder / "valid.sqlite"
    with ResultsStore(path) as store:
        for seed in range(3):
            points = CurvePoints([0.0, 1.0, 2.0, 3.0], [0.1, 0.5, 0.9, 1.2], [0.1, 0.3, 0.25, 0.1], "kl")
            store.save_run(f"run{seed}", StudyInfo("s", "S", "", {"log_x": False}), "v", "k", {"a": 1}, seed,
                           RunResult({"c": points}, {"fit": {"form": "rl", "alpha": 1.0, "beta": 0.5}}), 1.0)
    return path


if __name__ == "__main__":
    import tempfile

    parser = argparse.ArgumentParser(description="fuzz goodhartlab's readers of logs, specs and stores")
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        result = run_fuzz(args.cases, args.seed, Path(scratch))
    print(result)
    for line in result.tracebacks[:20] + result.silent[:20]:
        print("  ", line)
