"""The worker's seams into Faust and aiokafka internals (app.worker.faust_seams) were read
against exact versions; an upgrade must re-read them, not discover them in production."""

from __future__ import annotations

from pathlib import Path

from app.settings import Settings
from app.worker import faust_seams
from app.worker.app import create_worker_app, instance_id


def test_installed_faust_and_aiokafka_are_the_versions_the_seams_were_written_for() -> None:
    mismatches = faust_seams.version_mismatches()
    assert not mismatches, (
        "app/worker/faust_seams.py touches private parts of faust-streaming and aiokafka and "
        "was written for " + ", ".join(f"{p} {v}" for p, v in faust_seams.WRITTEN_FOR.items())
        + "; installed: " + ", ".join(f"{p} {got} (written for {want})"
                                      for p, (want, got) in mismatches.items())
        + ". Re-read every seam listed in that module's docstring against the new source "
        "(the agent-error override, the rebalance transport, the fetch wait, the current "
        "event, the batch acks, the changelog offsets, the static member's leave, the record "
        "batches, the table store), then update WRITTEN_FOR.")


def test_each_worker_has_its_own_stable_static_member_id(tmp_path: Path) -> None:
    one = Settings(worker_data_dir=tmp_path / "w1")
    assert instance_id(one) == instance_id(Settings(worker_data_dir=tmp_path / "w1"))
    assert instance_id(one) != instance_id(Settings(worker_data_dir=tmp_path / "w2"))
    assert instance_id(one.with_overrides(worker_instance_id="pod-3")) == "pod-3"
    app = create_worker_app(one.with_overrides(worker_store="memory://"))
    assert app.conf.consumer_group_instance_id == instance_id(one)
    env = Settings.from_env({"VOIX_WORKER_INSTANCE_ID": "w-7", "VOIX_WORKER_MAX_DEADLETTERS": "5"})
    assert (env.worker_instance_id, env.worker_max_deadletters) == ("w-7", 5)
