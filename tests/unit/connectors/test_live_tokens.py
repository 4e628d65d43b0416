"""Client tokens of the live endpoint: only hashes stored, constant-time lookup, clear errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from connectors.live import TokenFileError, TokenStore, new_token


def test_new_token_stores_only_its_hash(tmp_path: Path) -> None:
    path = tmp_path / "tokens.txt"
    first = new_token(path, "mosaic-prod")
    second = new_token(path, "liquidlogic")
    text = path.read_text()
    assert first not in text and second not in text
    assert hashlib.sha256(first.encode()).hexdigest() in text
    assert path.stat().st_mode & 0o077 == 0  # readable by its owner only
    store = TokenStore.load(path)
    assert store.client_for(first) == "mosaic-prod"
    assert store.client_for(second) == "liquidlogic"
    assert store.client_for(first + "x") is None
    assert store.client_for("") is None
    assert store.client_for(None) is None


def test_a_client_gets_one_token(tmp_path: Path) -> None:
    path = tmp_path / "tokens.txt"
    new_token(path, "mosaic")
    with pytest.raises(TokenFileError, match="already has a token"):
        new_token(path, "mosaic")
    with pytest.raises(TokenFileError, match="client names"):
        new_token(path, "bad name with spaces")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "holds no client tokens"),
        ("# only a comment\n", "holds no client tokens"),
        ("mosaic\n", ":1: expected"),
        ("mosaic s3cr3t-token-value\n", "not 64 hex digits"),
        (f"a {'0' * 64}\na {'1' * 64}\n", "listed twice"),
    ],
)
def test_bad_tokens_files_are_named_without_their_content(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "tokens.txt"
    path.write_text(content)
    with pytest.raises(TokenFileError, match=message) as error:
        TokenStore.load(path)
    assert "s3cr3t" not in str(error.value)


def test_missing_tokens_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(TokenFileError, match="broker connect token"):
        TokenStore.load(tmp_path / "absent.txt")
