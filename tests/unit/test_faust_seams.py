"""The worker's seams into Faust and aiokafka internals (app.worker.faust_seams) were read
against exact versions; an upgrade must re-read them, not discover them in production."""

from __future__ import annotations

from app.worker import faust_seams


def test_installed_faust_and_aiokafka_are_the_versions_the_seams_were_written_for() -> None:
    mismatches = faust_seams.version_mismatches()
    assert not mismatches, (
        "app/worker/faust_seams.py touches private parts of faust-streaming and aiokafka and "
        "was written for " + ", ".join(f"{p} {v}" for p, v in faust_seams.WRITTEN_FOR.items())
        + "; installed: " + ", ".join(f"{p} {got} (written for {want})"
                                      for p, (want, got) in mismatches.items())
        + ". Re-read every seam listed in that module's docstring against the new source "
        "(the agent-error override, the rebalance transport, the fetch wait, the current "
        "event, the batch acks, the changelog offsets), then update WRITTEN_FOR.")
