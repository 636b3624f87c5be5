"""Stack configuration: Pulumi.yaml declares what the program reads; bad values stop the program, naming the key."""

from __future__ import annotations

import pytest
import yaml

from deploy.config import KEYS, PROJECT, ConfigError, parse
from deploy.mocks import REPO_ROOT, RecordingMocks, run_program


def _project_config() -> dict:
    return yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text("utf-8"))["config"]


def test_pulumi_yaml_declares_every_plain_key_with_the_programs_type_and_default():
    declared = _project_config()
    assert set(declared) == {k.name for k in KEYS if not k.secret}
    for key in KEYS:
        if key.secret:
            continue
        entry = declared[key.name]
        assert entry["type"] == key.type, key.name
        assert entry["description"] == key.description, key.name
        assert entry.get("default") == key.default, key.name


def test_secret_keys_are_documented_in_pulumi_yaml():
    text = (REPO_ROOT / "Pulumi.yaml").read_text("utf-8")
    for key in KEYS:
        if key.secret:
            assert f"pulumi config set --secret {key.name}" in text


def test_prod_stack_sets_only_known_keys_and_no_clear_text_secret():
    values = yaml.safe_load((REPO_ROOT / "Pulumi.prod.yaml").read_text("utf-8"))["config"]
    known = {f"{PROJECT}:{k.name}" for k in KEYS} | {"aws:region"}
    assert set(values) <= known, set(values) - known
    for key in KEYS:
        value = values.get(f"{PROJECT}:{key.name}")
        if key.secret and value is not None:
            assert isinstance(value, dict) and "secure" in value, f"{key.name} must be a Pulumi secure value"


def test_prod_values_validate(prod_config):
    raw = {k.split(":", 1)[1]: v for k, v in prod_config.items() if k.startswith(f"{PROJECT}:")}
    config = parse(raw, "prod", REPO_ROOT, prod_config["aws:region"])
    assert config["streamMode"] == "PROVISIONED"
    assert config["retentionHours"] == 72
    assert len(config.registry) == 3


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("streamMode", "FAST", "must be one of ON_DEMAND, PROVISIONED"),
        ("retentionHours", "12", "between 24 and 8760"),
        ("decoderTimeoutSeconds", "ten", "expected integer"),
        ("boxOfficeUrl", "http://insecure.example", "https://"),
        ("alarmEmail", "", "required"),
        ("lambdaRuntime", "python3.11", "python3.12"),
        ("cameras", "missing-registry.json", "monuv-qr cameras add"),
        ("kinesisConnectorJar", "no/such.jar", "not found"),
        ("glueWatchdogSchedule", "every ten minutes", "cron("),
    ],
)
def test_invalid_value_stops_the_program_before_any_resource_naming_the_key(prod_config, key, value, message):
    config = {**prod_config, f"{PROJECT}:{key}": value}
    mocks = RecordingMocks("sa-east-1")
    with pytest.raises(ConfigError) as err:
        run_program(config, mocks=mocks)
    assert err.value.keys == [key]
    assert f"{PROJECT}:{key}" in str(err.value) and message in str(err.value)
    assert not [r for r in mocks.resources if r.custom], "no resource may be declared with an invalid config"


def test_box_office_url_without_token_is_refused(prod_config):
    config = {k: v for k, v in prod_config.items() if k != f"{PROJECT}:boxOfficeToken"}
    with pytest.raises(ConfigError) as err:
        run_program(config)
    assert err.value.keys == ["boxOfficeToken"]
    assert "--secret boxOfficeToken" in str(err.value)


def test_missing_region_is_named(prod_config):
    config = {k: v for k, v in prod_config.items() if k != "aws:region"}
    with pytest.raises(ConfigError) as err:
        run_program(config)
    assert err.value.keys == ["aws:region"]
    assert "aws:region: required" in str(err.value)


def test_every_problem_is_reported_at_once(prod_config):
    config = {**prod_config, f"{PROJECT}:streamMode": "X", f"{PROJECT}:glueWorkers": "1"}
    with pytest.raises(ConfigError) as err:
        run_program(config)
    assert sorted(err.value.keys) == ["glueWorkers", "streamMode"]


def test_loading_the_program_without_running_it_declares_nothing(prod_config):
    import runpy

    import pulumi

    mocks = RecordingMocks("sa-east-1")
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack="prod", preview=False)
    namespace = runpy.run_path(str(REPO_ROOT / "__main__.py"), run_name="program_module")
    assert callable(namespace["main"])
    assert mocks.resources == []
