"""What every compared run records, whichever method drives it (single runs and PBT alike)."""
from __future__ import annotations

from tacotron.metrics import composite_score, is_aligned, steps_to_align


CURVE_FIGURES = ("step", "cer", "mcd_dtw_sl", "gv_ratio", "diagonality", "score")


def test_check(trainer) -> dict:
    """The whole test split decoded free-running and scored: the figures every comparison reports."""
    stats, _ = trainer.free_run(trainer.corpus.test)
    return {"step": trainer.step_count, **stats.as_dict(), "score": composite_score(stats),
            "aligned": is_aligned(stats)}


def run_record(instance: str, seed: int, checks: list[dict], knob_trajectory: list[dict], **figures) -> dict:
    """The saved record of one compared run: its last test check as ``final``, steps to align from
    two consecutive aligned checks (None = censored), the test curve and the knob trajectory, plus
    ``figures`` (diverged, rollbacks, wall_s, run_steps)."""
    return {"instance": instance, "seed": seed, "final": checks[-1],
            "steps_to_align": steps_to_align([(c["step"], c["aligned"]) for c in checks]),
            "curve": [{k: c[k] for k in CURVE_FIGURES} for c in checks],
            "knob_trajectory": knob_trajectory, **figures}
