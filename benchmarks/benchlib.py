"""What the benchmarks share: a test host of their own and a one-host inventory for it, with
the default scenario's group_vars (demo stack, local registry, its Vault file)."""

import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GROUP_VARS = ROOT / "molecule" / "default" / "inventory" / "group_vars"


def one_host_inventory(host, prefix):
    """Write an inventory of `host` (docker connection) into a new temporary directory; its path."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    inventory = work / "hosts.yml"
    inventory.write_text(f"all:\n  hosts:\n    {host}:\n      ansible_connection: community.docker.docker\n")
    (work / "group_vars").symlink_to(GROUP_VARS)
    return inventory


def start_host(host, image, *docker_args):
    """Boot a systemd test host from `image` (an earlier one of that name is removed first)."""
    remove_host(host)
    subprocess.run([str(ROOT / "tests/harness/testhost.sh"), host, image, "--label", "selfhost.test=1", *docker_args],
                   check=True, text=True, capture_output=True)


def remove_host(host):
    subprocess.run(["docker", "rm", "-fv", host], capture_output=True, check=False)
