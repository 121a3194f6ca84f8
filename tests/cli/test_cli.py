import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from goodhartlab.cli import main
from goodhartlab.measure.scaling import law_value

KEYS = {"form", "alpha", "beta", "alpha_ci", "beta_ci", "peak_kl", "peak_gold", "onset_kl"}


def write_rl_log(path: Path, seeds: int = 3) -> None:
    rng = np.random.default_rng(0)
    lines = ["step,kl,proxy,gold,seed"]
    for seed in range(seeds):
        for step in range(0, 400, 10):
            kl = 0.05 * step
            gold = law_value(np.sqrt(kl), 1.0, 0.5, "rl") + rng.normal(0, 0.02)
            gold_cell = f"{gold:.5f}" if step % 20 == 0 else ""  # gold every other evaluation
            lines.append(f"{step},{kl:.4f},{0.1 * step + rng.normal(0, 0.1):.4f},{gold_cell},{seed}")
    path.write_text("\n".join(lines) + "\n")


def test_fit_json(tmp_path, capsys):
    log = tmp_path / "run.csv"
    write_rl_log(log)
    assert main(["fit", str(log), "--form", "rl", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result.keys() >= KEYS
    assert result["alpha"] == pytest.approx(1.0, abs=0.05)
    assert result["peak_kl"] == pytest.approx(np.exp(2 * 1.0 / 0.5 - 2), rel=0.15)  # e^(2α/β−2)
    assert result["onset_kl"] is not None and result["onset_kl"] > result["observed_peak_kl"]
    assert Path(result["plot"]).stat().st_size > 10_000


def test_fit_text_and_early_data(tmp_path, capsys):
    log = tmp_path / "run.csv"
    write_rl_log(log)
    assert main(["fit", str(log), "--max-kl", "4"]) == 0
    out = capsys.readouterr().out
    assert "fitted peak" in out and "extrapolation beyond KL 4" in out


def test_fit_names_the_steps_axis_when_mean_kl_does_not_rise(tmp_path, capsys):
    log = tmp_path / "run.csv"
    write_rl_log(log)
    rows = log.read_text().splitlines()
    # every seed logs KL 0 at steps 0 and 20 (both with gold): aligned by step, the mean KL does not rise
    rows = [",".join(["20", "0.0000", *row.split(",")[2:]]) if row.startswith("20,") else row for row in rows]
    log.write_text("\n".join(rows) + "\n")
    assert main(["fit", str(log), "--form", "rl", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert "observed_peak_kl" not in result and "onset_kl" not in result
    assert result["observed_peak_step"] in range(0, 400, 20)
    assert main(["fit", str(log), "--form", "rl"]) == 0
    assert "observed peak: step = " in capsys.readouterr().out


@pytest.mark.parametrize(("text", "message"), [
    ("", "is empty"),
    ("step,kl,gold\n1,0.1,0.1\n", "field 'proxy'"),
    ("step,kl,proxy,gold\n1,0.1,0.1,inf\n", "line 2, field 'gold': value 'inf' is not finite"),
    ("step,kl,proxy,gold\n1,0.1,0.1,0.2\n2,0.2,0.1,0.3\n", "too few points"),
])
def test_fit_bad_logs_exit_nonzero_with_one_message(tmp_path, capsys, text, message):
    log = tmp_path / "bad.csv"
    log.write_text(text)
    assert main(["fit", str(log)]) == 2
    err = capsys.readouterr().err
    assert message in err and str(log) in err and "Traceback" not in err


def test_report_without_store_is_a_clear_error(tmp_path, capsys):
    assert main(["report", "--store", str(tmp_path / "none.sqlite")]) == 2
    assert "no results store" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.assets
def test_demo_writes_a_report_that_renders_in_chromium(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--quiet"]) == 0
    report = Path(capsys.readouterr().out.strip())
    assert report == (out / "report.html").resolve()
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is installed by scripts/setup.sh --dev"
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--dump-dom", report.as_uri()], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert dom.count("<svg") >= 5 and dom.count("<table") >= 6
    assert "Best-of-n: regressional vs extremal Goodhart" in dom
    assert "phase transition" in dom
    assert "Classic RL: tomato watering" in dom and "reward-function and feedback tampering" in dom
    assert "best-of-n on SmolLM2 against lexicon and learned proxies" in dom
    screenshot = tmp_path / "report.png"
    subprocess.run([*flags, "--window-size=1200,2400", f"--screenshot={screenshot}", report.as_uri()],
                   capture_output=True, timeout=120, check=True)
    import matplotlib.image

    pixels = matplotlib.image.imread(screenshot)
    assert pixels.shape[0] >= 2000 and pixels[..., :3].std() > 0.05  # not blank
    # Running the demo again finds every run in the store and redoes none.
    assert main(["demo", "--out", str(out), "--quiet"]) == 0
    assert "0 runs done" in capsys.readouterr().err


# A GRPO run logged by TRL: KL grows as the cube of the step, gold rises to step 9 and then falls by
# three quarters while the reward keeps climbing. The RL-form law fits it with α < 0 and β < 0 (no peak).
FALLING_KL = [0.1833, 1.4403, 4.8107, 11.3194, 21.9821, 37.8081, 59.8012, 88.961, 126.2835, 172.7615, 229.3848,
              297.1407, 377.0143, 469.9886, 577.0446, 699.1614, 837.3166, 992.4863, 1165.6448, 1357.7652, 1569.8195,
              1802.7781, 2057.6104, 2335.2847, 2636.7681, 2963.0267, 3315.0257, 3693.7292, 4100.1006, 4535.1023]
FALLING_GOLD = [0.3092, 0.3171, 0.3144, 0.3621, 0.3576, 0.3799, 0.3924, 0.4024, 0.4351, 0.427, 0.3022, 0.2638,
                0.2214, 0.2074, 0.1935, 0.1599, 0.1644, 0.1409, 0.1179, 0.1045, 0.1105, 0.0897, 0.0976, 0.0581,
                0.0552, 0.0539, 0.0383, 0.0373, 0.0275, 0.0411]


def test_fit_never_says_gold_did_not_turn_when_its_onset_finder_found_that_it_did(tmp_path, capsys):
    history = [{"step": step, "loss": 0.1, "reward": 0.1 * step, "kl": kl / 100 / 12, "completions/mean_length": 12.0,
                "rewards/gold/mean": gold}
               for step, (kl, gold) in enumerate(zip(FALLING_KL, FALLING_GOLD, strict=True), start=1)]
    state = tmp_path / "trainer_state.json"
    state.write_text(json.dumps({"log_history": history}))
    assert main(["fit", str(state)]) == 0
    out = capsys.readouterr().out
    assert "has not turned down" not in out
    assert "the law does not describe these data: α = -0.081 ≤ 0" in out and "onset: KL = 2.294" in out
    assert main(["fit", str(state), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["gold_turned"] and result["law_describes_data"] is False
    assert result["onset_kl"] == pytest.approx(2.2938, abs=1e-4)
    assert result["summary"].startswith("gold peaks at kl 1.263 and falls from kl 2.294 on; the fitted law does not")


def test_fit_writes_its_plot_into_the_working_directory_and_says_where(tmp_path, capsys):
    logs = tmp_path / "somebody-elses-logs"
    logs.mkdir()
    write_rl_log(logs / "run.csv")
    work = tmp_path / "work"
    work.mkdir()
    os.chdir(work)
    assert main(["fit", str(logs / "run.csv")]) == 0
    assert list(logs.iterdir()) == [logs / "run.csv"]  # nothing written beside the log
    assert (work / "run.fit.png").stat().st_size > 10_000
    assert f"plot written to {work / 'run.fit.png'}" in capsys.readouterr().out
    assert main(["fit", str(logs / "run.csv"), "--plot", str(tmp_path / "mine.png"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["plot"] == str(tmp_path / "mine.png")


@pytest.mark.slow
def test_setup_is_quiet_but_for_real_problems():
    root = Path(__file__).parents[2]
    done = subprocess.run([str(root / "scripts" / "setup.sh")], cwd=root, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "is ignored" not in done.stderr and done.stdout == ""
    bad = subprocess.run([str(root / "scripts" / "setup.sh"), "--devv"], cwd=root, capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown flag --devv" in bad.stderr
