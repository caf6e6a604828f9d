"""`scripts/postgres.sh status` for a cluster that is not running."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _status(checkout: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    env.pop("VIZOCHOK_PG_PORT", None)
    env["PYTHON"] = sys.executable
    return subprocess.run(
        [str(checkout / "scripts" / "postgres.sh"), "status"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def _fields(output: str) -> dict[str, str]:
    fields = {}
    for line in output.splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.strip()
    return fields


def test_status_of_stopped_cluster(tmp_path):
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    shutil.copy2(ROOT / "scripts" / "postgres.sh", checkout / "scripts" / "postgres.sh")

    never_created = _status(checkout)

    assert never_created.returncode == 3, never_created.stderr
    fields = _fields(never_created.stdout)
    assert fields["state"] == "not running"
    assert "listening on" not in fields
    assert "once started" in fields["address"]
    data_directory = Path(fields["data directory"])
    assert not data_directory.exists()
    if fields["server"] != "PostgreSQL not installed":
        assert fields["pgvector"].endswith("(installed, not yet created)")

    # A cluster that was created and then stopped: the server cannot report the extension.
    data_directory.mkdir(parents=True)
    try:
        (data_directory / "PG_VERSION").write_text("15\n")

        stopped = _status(checkout)

        assert stopped.returncode == 3, stopped.stderr
        fields = _fields(stopped.stdout)
        assert fields["state"] == "not running"
        assert "once started" in fields["address"]
        if fields["server"] != "PostgreSQL not installed":
            assert fields["pgvector"].endswith(
                "installed; database vizochok not checked while stopped"
            )
    finally:
        # As root the cluster's directory is /tmp/vizochok-pg-<id>, outside tmp_path.
        state_directory = data_directory.parent
        if state_directory.name.startswith("vizochok-pg-"):
            shutil.rmtree(state_directory)
