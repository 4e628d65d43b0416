"""`broker connect` argument handling that needs no Kafka: tokens, agency kinds, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.cli import main
from broker.scaffold import write_deployment
from connectors.live import TokenStore


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_deployment(tmp_path / "deployment", bootstrap_servers="127.0.0.1:1")


def test_token_command_prints_the_token_once_and_stores_its_hash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tokens = tmp_path / "tokens.txt"
    assert main(["connect", "token", "--tokens", str(tokens), "mosaic"]) == 0
    token = capsys.readouterr().out.strip()
    assert token and token not in tokens.read_text()
    assert TokenStore.load(tokens).client_for(token) == "mosaic"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["police", "serve", "--agency", "council.E09000033"], "not of kind police"),
        (["council", "serve", "--agency", "police.met"], "not of kind council"),
        (["council", "ssda903", "--agency", "nrm.sca", "x"], "not of kind council"),
        (["council", "serve", "--agency", "council.E09000099"], "not in the `agencies` registry"),
        (["council", "serve", "--agency", "council.E09000033"], "broker connect token"),
        (["council", "serve", "--agency", "council.E09000033", "--host", "0.0.0.0"],
         "--allow-plain-http"),
        (["council", "serve", "--agency", "council.E09000033", "--tls-cert", "c.pem"],
         "go together"),
        (["council", "serve", "--agency", "council.E09000033", "--tls-client-ca", "ca.pem"],
         "needs --tls-cert"),
        (["council", "serve", "--agency", "council.E09000033", "--tls-cert", "/no/c.pem",
          "--tls-key", "/no/k.pem"], "not found"),
        (["council", "serve", "--agency", "council.E09000033", "--max-line-bytes", "2000000"],
         "--max-line-bytes"),
        (["nrm", "decision", "--agency", "council.E09000033", "--referral-id", "R",
          "--first-responder", "council.E09000033", "--stage", "rg", "--outcome", "positive",
          "--date", "2026-11-24", "--subject", "S"], "not of kind nrm"),
    ],
)  # fmt: skip
def test_user_errors_are_one_line(
    config: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    action = argv[:2]
    status = main(["connect", *action, "--config", str(config), *argv[2:]])
    err = capsys.readouterr().err
    assert status == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_missing_ssda903_path_is_named(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["connect", "council", "ssda903", "--config", str(config)]
    assert main([*argv, "--agency", "council.E09000033", "/nonexistent/return"]) == 2
    assert "does not exist" in capsys.readouterr().err
