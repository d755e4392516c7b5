"""One progress mechanism: first's bar (rich), lm-eval's request loop served by it, third-party bars quiet unless
`first --verbose`."""

from __future__ import annotations

import os
import subprocess
import sys

from first_eval.lm_eval_bridge.offline import FirstBar
from first_eval.progress import QUIET_ENV, VERBOSE_ENV, progress_bar, quiet_third_party
from tiny_models import tiny_llama_dir  # noqa: F401  (session fixture)


def test_a_bar_off_a_terminal_draws_nothing_and_still_counts(capsys):
    with progress_bar(10, "extracting", unit="positions") as bar:
        bar.advance(3)
        bar.advance(4, note="loss 1.0")
        bar.describe("extracting shard 2")
    assert bar.done == 7
    assert capsys.readouterr().err == ""


def test_lm_eval_bars_pass_iterables_through_and_count_requests():
    assert list(FirstBar(iterable=[1, 2, 3], desc="Building contexts")) == [1, 2, 3]
    with FirstBar(total=5, desc="Running loglikelihood requests") as bar:
        bar.update(2)
        bar.set_postfix(batch=1)
        bar.update(3)
    assert bar._bar is None  # closed


def test_quiet_sets_library_switches_but_not_over_the_users(monkeypatch):
    for name in QUIET_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TQDM_DISABLE", "0")  # the user's own choice stays
    monkeypatch.delenv(VERBOSE_ENV, raising=False)
    quiet_third_party()
    assert os.environ["TQDM_DISABLE"] == "0"
    assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1" and os.environ["TRANSFORMERS_VERBOSITY"] == "error"


def test_verbose_leaves_everything_as_it_is(monkeypatch):
    for name in QUIET_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(VERBOSE_ENV, "1")
    quiet_third_party()
    assert not any(name in os.environ for name in QUIET_ENV)


def _live_report(model_dir, data_dir, out, *flags):
    env = {key: value for key, value in os.environ.items() if key not in QUIET_ENV and key != VERBOSE_ENV}
    return subprocess.run(
        [sys.executable, "-m", "first_eval.cli", *flags, "report", "--model", "hf", "--model-args",
         f"pretrained={model_dir}", "--tasks", "arc_easy", "--data-dir", str(data_dir), "--limit", "8",
         "--batch-size", "8", "--device", "cpu", "--bootstrap", "20", "--folds", "2", "--output", str(out)],
        capture_output=True, text=True, env=env)


def test_a_live_audit_prints_no_third_party_bars_unless_verbose(shared_datasets, tiny_llama_dir, tmp_path):  # noqa: F811
    quiet = _live_report(tiny_llama_dir, shared_datasets, tmp_path / "quiet")
    assert quiet.returncode == 0, quiet.stderr
    assert "it/s]" not in quiet.stderr and "Running loglikelihood" not in quiet.stderr, quiet.stderr
    assert "wrote" in quiet.stderr and "Overwriting default num_fewshot" not in quiet.stderr
    loud = _live_report(tiny_llama_dir, shared_datasets, tmp_path / "loud", "--verbose")
    assert loud.returncode == 0, loud.stderr
    assert "Running loglikelihood requests" in loud.stderr  # lm-eval's own bar, as asked
