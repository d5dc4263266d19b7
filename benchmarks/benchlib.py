"""What the benchmarks share: test hosts of their own, a one-host inventory for one with the
default scenario's group_vars (demo stack, local registry, its Vault file), and a fleet
inventory with the fleet scenario's (the same plus the load balancer's TLS from Pebble)."""

import json
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GROUP_VARS = ROOT / "molecule" / "default" / "inventory" / "group_vars"
FLEET_GROUP_VARS = ROOT / "molecule" / "fleet" / "inventory" / "group_vars"


def one_host_inventory(host, prefix):
    """Write an inventory of `host` (docker connection) into a new temporary directory; its path."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    inventory = work / "hosts.yml"
    inventory.write_text(f"all:\n  hosts:\n    {host}:\n      ansible_connection: community.docker.docker\n")
    (work / "group_vars").symlink_to(GROUP_VARS)
    return inventory


def fleet_inventory(groups, prefix):
    """Write an inventory of `groups` ({group: [host, ...]}, docker connection) with the fleet
    scenario's group_vars into a new temporary directory; its path."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    inventory = work / "hosts.yml"
    lines = ["all:", "  children:"]
    for group, hosts in groups.items():
        lines += [f"    {group}:", "      hosts:"]
        lines += [f"        {h}:\n          ansible_connection: community.docker.docker" for h in hosts]
    inventory.write_text("\n".join(lines) + "\n")
    (work / "group_vars").symlink_to(FLEET_GROUP_VARS)
    return inventory


def point_name_at(name, host, network):
    """Make Pebble's DNS (pebble-challtestsrv) answer `name` with `host`'s address on `network`."""
    address = subprocess.run(
        ["docker", "inspect", "--format", '{{(index .NetworkSettings.Networks "%s").IPAddress}}' % network, host],
        check=True, text=True, capture_output=True).stdout.strip()
    for path, body in (("clear-a", {"host": name}), ("add-a", {"host": name, "addresses": [address]})):
        subprocess.run(["docker", "exec", "selfhost-pebble", "curl", "-fsS", "--data", json.dumps(body),
                        "http://127.0.0.1:8055/" + path], check=True, capture_output=True)
    return address


def pebble_root(path):
    """Write Pebble's root (which its certificates chain to) to `path`; the path."""
    root = subprocess.run(["docker", "exec", "selfhost-pebble", "curl", "-fsS", "--cacert", "/etc/pebble/tls/ca.pem",
                           "https://127.0.0.1:15000/roots/0"], check=True, text=True, capture_output=True).stdout
    Path(path).write_text(root)
    return Path(path)


def start_host(host, image, *docker_args):
    """Boot a systemd test host from `image` (an earlier one of that name is removed first)."""
    remove_host(host)
    subprocess.run([str(ROOT / "tests/harness/testhost.sh"), host, image, "--label", "selfhost.test=1", *docker_args],
                   check=True, text=True, capture_output=True)


def remove_host(host):
    subprocess.run(["docker", "rm", "-fv", host], capture_output=True, check=False)


def summary(figures):
    """The headline figures of a load run."""
    keys = ("requests", "failed", "p50_ms", "p99_ms", "max_ms")
    return {k: figures[k] for k in keys if k in figures}


def show(label, figures, extra=""):
    print(f"{label:<40} failed {figures['failed']:>4}/{figures['requests']:<5} p50 {figures['p50_ms']:>7} ms"
          f"  p99 {figures['p99_ms']:>7} ms{extra}")
