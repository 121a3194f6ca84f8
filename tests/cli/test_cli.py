import json
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
