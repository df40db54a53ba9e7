"""olvf-serve's settings: flags, the TOML file, the screening rule and the retry policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from olvf.errors import UsageError
from olvf.runtime.node.cli import build_parser, main, merged_settings
from olvf.runtime.node.config import (
    Destination,
    Peer,
    RetryPolicy,
    ScreeningRule,
    auto_batch,
    build_config,
    read_config_file,
)

REQUIRED = ["--bundle", "b", "--spool", "s", "--send-to", "PACS@10.0.0.5:104", "--allow", "XRAY1"]


def config_from(argv: list[str]):
    settings, base = merged_settings(build_parser().parse_args(argv))
    return build_config(settings, base=base)


def test_flags_make_a_node_config():
    config = config_from([*REQUIRED, "--allow", "PACS@10.0.0.5", "--port", "104", "--ae-title", "ER_OLVF"])
    assert config.destination == Destination("PACS", "10.0.0.5", 104)
    assert config.allowed == (Peer("XRAY1"), Peer("PACS", "10.0.0.5"))
    assert config.ae_title == "ER_OLVF" and config.port == 104 and config.bundle == Path("b").resolve()
    assert config.admits("XRAY1", "192.168.1.9") and config.admits("PACS", "10.0.0.5")
    assert not config.admits("PACS", "10.0.0.6") and not config.admits("INTRUDER", "10.0.0.5")


def test_the_config_file_is_read_and_flags_override_it(tmp_path):
    file = tmp_path / "olvf-serve.toml"
    file.write_text(
        'bundle = "engines"\nspool = "/var/spool/olvf"\nsend_to = "PACS@pacs.local:11112"\nallow = ["XRAY1@10.1.1.1"]\n'
        'port = 4242\nbatch = 4\n[screen]\nmodalities = ["dx"]\nrequire_view = true\n'
        "[retry]\nfirst_delay_s = 1\nmax_delay_s = 60\nmax_attempts = 5\n"
    )
    config = config_from(["--config", str(file), "--port", "5555"])
    assert config.bundle == tmp_path / "engines"  # relative to the file, not the working folder
    assert config.spool == Path("/var/spool/olvf") and config.port == 5555 and config.batch == 4
    assert config.destination == Destination("PACS", "pacs.local", 11112)
    assert config.rule.modalities == ("DX",) and config.rule.require_view
    assert config.retry == RetryPolicy(1.0, 60.0, 5)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prot = 1\n", "unknown setting(s) prot"),
        ("[retry]\nmax_attempt = 3\n", "unknown setting(s) retry.max_attempt"),
        ("port = \n", "not valid TOML"),
    ],
)
def test_a_config_file_mistake_is_one_line_naming_it(tmp_path, text, message):
    file = tmp_path / "bad.toml"
    file.write_text(text)
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_config_file(file)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--bundle", "b", "--spool", "s", "--allow", "X"], "--send-to AE@host:port is required"),
        (["--bundle", "b", "--spool", "s", "--send-to", "PACS@h:104"], "no sender is allowed"),
        (["--bundle", "b", "--spool", "s", "--send-to", "PACS:104", "--allow", "X"], "write it as AE@host:port"),
        (["--bundle", "b", "--spool", "s", "--send-to", "PACS@h:99999", "--allow", "X"], "not a port number"),
        ([*REQUIRED, "--ae-title", "A_TITLE_MUCH_TOO_LONG"], "is not an AE title"),
        ([*REQUIRED, "--batch", "0"], "must be greater than 0"),
    ],
)
def test_a_wrong_setting_is_refused_with_the_fix(argv, message):
    with pytest.raises(UsageError, match=message):
        config_from(argv)


def test_the_cli_prints_one_line_and_exits_2_for_a_wrong_setting(capsys):
    assert main(["--bundle", "b", "--spool", "s", "--send-to", "PACS@h:104"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("olvf-serve: error: no sender is allowed") and err.count("\n") == 1


@pytest.mark.parametrize(
    ("modality", "body_part", "view", "reason"),
    [
        ("DX", "LSPINE", "LL", None),
        ("CR", "LSSPINE", "RL", None),
        ("DX", "", "", None),  # many units leave them empty: screened
        ("CT", "LSPINE", "", "modality CT is not screened"),
        ("", "", "", "modality (none) is not screened"),
        ("DX", "CHEST", "LL", "body part CHEST is not screened"),
        ("CR", "LSPINE", "AP", "view position AP is not lateral"),
        ("dx", "lspine", "ll", None),
    ],
)
def test_the_default_rule_screens_lateral_lumbar_radiographs(modality, body_part, view, reason):
    found = ScreeningRule().reason_to_skip(modality, body_part, view)
    assert (found is None) if reason is None else (found is not None and found.startswith(reason))


def test_a_strict_rule_wants_body_part_and_view_stated():
    rule = ScreeningRule(require_body_part=True, require_view=True)
    assert "no body part" in rule.reason_to_skip("DX", "", "LL")
    assert "no view position" in rule.reason_to_skip("DX", "LSPINE", "")


def test_the_batch_is_one_study_on_a_cpu_and_eight_on_a_gpu_unless_given():
    assert config_from(REQUIRED).batch is None
    assert auto_batch("cpu")[0] == 1 and auto_batch("cuda:0")[0] == 8
    assert config_from([*REQUIRED, "--batch", "3"]).batch == 3


def test_retries_back_off_doubling_up_to_the_longest_wait():
    policy = RetryPolicy(first_delay_s=2, max_delay_s=30, max_attempts=9)
    assert [policy.delay(n) for n in range(1, 7)] == [2, 4, 8, 16, 30, 30]


def test_a_node_without_its_bundle_stops_before_it_listens(tmp_path, capsys):
    from peers import free_port

    argv = [
        "--bundle",
        str(tmp_path / "missing"),
        "--spool",
        str(tmp_path / "spool"),
        "--send-to",
        "PACS@127.0.0.1:104",
    ]
    assert main([*argv, "--allow", "XRAY1", "--port", str(free_port())]) == 4
    err = capsys.readouterr().err
    assert err.startswith("olvf-serve: error: ") and str(tmp_path / "missing") in err and "Traceback" not in err
