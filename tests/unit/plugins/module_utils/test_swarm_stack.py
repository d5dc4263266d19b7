"""What selfhost.stack.swarm_stack reads from a rendered project (module_utils.swarm_stack):
the .env images, content hashes (keyed for secrets), config keys, and which secret and config
versions a service still needs."""

import hashlib

from ansible_collections.selfhost.stack.plugins.module_utils import swarm_stack as ss


def test_the_env_file_gives_the_image_references(tmp_path):
    env = tmp_path / ".env"
    env.write_text("# Managed\nCOMPOSE_PROJECT_NAME=shop\nAPI_IMAGE=reg:5000/shop/api:v2\n\nX=a=b\n")
    assert ss.read_env(str(env)) == {"COMPOSE_PROJECT_NAME": "shop", "API_IMAGE": "reg:5000/shop/api:v2", "X": "a=b"}


def test_a_secret_is_named_after_a_keyed_hash_never_a_plain_one(tmp_path):
    secret = tmp_path / "db_password"
    secret.write_bytes(b"hunter2")
    plain = hashlib.sha256(b"hunter2").hexdigest()
    assert ss.file_digest(str(secret)) == plain
    keyed = ss.file_digest(str(secret), b"key-one")
    assert keyed != plain and keyed != ss.file_digest(str(secret), b"key-two")
    assert keyed == ss.file_digest(str(secret), b"key-one")


def test_config_keys_are_valid_compose_keys():
    assert ss.config_key("./selfhost", "nginx-start") == "selfhost_nginx_start"
    assert ss.config_key("./nginx", "proxy_headers.inc") == "nginx_proxy_headers_inc"


def test_the_versions_a_rollback_needs_count_as_used():
    def spec(secrets, configs):
        return {"TaskTemplate": {"ContainerSpec": {"Secrets": [{"SecretName": s} for s in secrets],
                                                   "Configs": [{"ConfigName": c} for c in configs]}}}
    inspected = {"Spec": spec(["shop_api__token_bbb"], ["shop_selfhost_probe_111"]),
                 "PreviousSpec": spec(["shop_api__token_aaa"], ["shop_selfhost_probe_111"])}
    assert ss.referenced(inspected) == {"shop_api__token_bbb", "shop_api__token_aaa", "shop_selfhost_probe_111"}
    assert ss.referenced({"Spec": {"TaskTemplate": {"ContainerSpec": {}}}}) == set()
