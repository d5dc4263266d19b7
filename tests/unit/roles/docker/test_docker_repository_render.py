"""What the docker source would configure, rendered by the role's own tasks, vars and templates.

Docker's repository is out of reach from CI, so no test host ever installs from it; this runs the
role's repository tasks in check mode for every supported platform and reads back the diff of the
APT source it would write, the key it would fetch and the packages it would install.
"""

import re

import pytest

from docker_playbook import FAKE_FACTS_TASK, fake_facts, run_playbook

PLATFORMS = {
    # name: (distribution, version, codename)
    "debian12": ("Debian", "12", "bookworm"),
    "debian13": ("Debian", "13", "trixie"),
    "ubuntu2204": ("Ubuntu", "22.04", "jammy"),
    "ubuntu2404": ("Ubuntu", "24.04", "noble"),
}
ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64"}
DOCKER_PACKAGES = ["docker-ce", "docker-ce-cli", "containerd.io", "docker-buildx-plugin", "docker-compose-plugin"]
DISTRO_PACKAGES = {
    "debian13": ["docker.io", "docker-cli", "docker-buildx", "docker-compose"],
    "ubuntu2204": ["docker.io", "docker-compose-v2"],
    "ubuntu2404": ["docker.io", "docker-compose-v2"],
}

PLAYBOOK = (
    """
- name: Render what the docker role would configure
  hosts: all
  gather_facts: false
  tasks:
"""
    + FAKE_FACTS_TASK
    + """
    - name: Run the role's platform checks
      ansible.builtin.include_role:
        name: selfhost.stack.docker
        tasks_from: assert.yml
        public: true

    - name: Run the role's repository tasks
      ansible.builtin.include_role:
        name: selfhost.stack.docker
        tasks_from: repository_docker.yml
      when: docker_install_source == 'docker'

    - name: Show the package list
      ansible.builtin.debug:
        var: __docker_packages
"""
)

CASES = {
    f"{source}-{platform}-{arch}-{'pinned' if version else 'latest'}": (source, platform, arch, version)
    for platform in PLATFORMS
    for arch in ARCHITECTURES
    for source, version in (("docker", ""), ("docker", "27.3.1"), ("distro", ""), ("distro", "26.1.5"))
    if source == "docker" or platform in DISTRO_PACKAGES
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    hosts = {
        name: {
            "selfhost_fake_facts": fake_facts(PLATFORMS[platform][0], PLATFORMS[platform][1], arch, PLATFORMS[platform][2]),
            "docker_install_source": source,
            "docker_version": version,
        }
        for name, (source, platform, arch, version) in CASES.items()
    }
    run = run_playbook(tmp_path_factory.mktemp("play"), PLAYBOOK, hosts)
    assert run.rc == 0, run.output[-4000:]
    return run


def docker_cases():
    return [name for name, (source, _, _, version) in CASES.items() if source == "docker" and not version]


@pytest.mark.parametrize("name", docker_cases())
def test_apt_source_line(rendered, name):
    _, platform, arch, _ = CASES[name]
    distribution, _, codename = PLATFORMS[platform]
    result = rendered.task(name, "Add Docker's APT repository")
    assert result["changed"]
    lines = [line for line in result["diff"][0]["after"].splitlines() if line and not line.startswith("#")]
    assert lines == [
        f"deb [arch={ARCHITECTURES[arch]} signed-by=/etc/apt/keyrings/docker.asc] "
        f"https://download.docker.com/linux/{distribution.lower()} {codename} stable"
    ]
    assert result["invocation"]["module_args"]["dest"] == "/etc/apt/sources.list.d/docker.list"


@pytest.mark.parametrize("name", docker_cases())
def test_keyring(rendered, name):
    distribution = PLATFORMS[CASES[name][1]][0]
    keyring_dir = rendered.task(name, "Create the APT keyring directory")
    assert keyring_dir["path"] == "/etc/apt/keyrings"
    report = rendered.task(name, "Report the APT signing key check mode would download")
    assert report["msg"] == (
        f"Would download https://download.docker.com/linux/{distribution.lower()}/gpg to /etc/apt/keyrings/docker.asc"
    )
    assert rendered.task(name, "Download Docker's APT signing key").get("skipped")


@pytest.mark.parametrize("name", list(CASES))
def test_package_list(rendered, name):
    source, platform, _, version = CASES[name]
    packages = rendered.task(name, "Show the package list")["__docker_packages"]
    expected = DOCKER_PACKAGES if source == "docker" else DISTRO_PACKAGES[platform]
    unpinned = [re.sub(r"=.*", "", p) for p in packages]
    assert sorted(unpinned) == sorted(expected)
    pinned = {p.split("=", 1)[0]: p.split("=", 1)[1] for p in packages if "=" in p}
    if not version:
        assert pinned == {}
    elif source == "docker":
        assert pinned == {"docker-ce": "5:27.3.1*", "docker-ce-cli": "5:27.3.1*"}
    elif PLATFORMS[platform][0] == "Debian":
        assert pinned == {"docker.io": "26.1.5*", "docker-cli": "26.1.5*"}
    else:
        assert pinned == {"docker.io": "26.1.5*"}


def test_every_platform_covered(rendered):
    assert len(docker_cases()) == len(PLATFORMS) * len(ARCHITECTURES)
    assert all(rendered.stats(name)["failures"] == 0 for name in CASES)
