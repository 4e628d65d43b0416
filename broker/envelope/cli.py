"""`broker keys generate AGENCY_ID --out DIR`: a new Ed25519 signing key and its public key file."""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from broker.envelope.errors import KeyFileError
from broker.envelope.keys import ROLE_ISSUER, ROLES, generate_key, load_public_key


def register(subparsers: Any) -> None:
    """Add `broker keys` and its sub-commands."""
    parser = subparsers.add_parser("keys", help="agency signing keys")
    commands = parser.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)
    generate = commands.add_parser(
        "generate",
        help="write <agency>.<key_id>.key.pem and <agency>.<key_id>.pub.json",
        description="Generate an Ed25519 signing key. Keep the .key.pem private to the agency; "
        "publish the .pub.json to the key registry.",
    )
    generate.add_argument("agency_id", metavar="AGENCY_ID", help="e.g. council.E09000033")
    generate.add_argument("--out", required=True, type=Path, help="directory to write into")
    generate.add_argument("--key-id", help="key id (default: hash of the public key)")
    generate.add_argument(
        "--passphrase-env",
        metavar="VAR",
        help="encrypt the private key with the passphrase in environment variable VAR",
    )
    generate.add_argument(
        "--role",
        action="append",
        choices=ROLES,
        dest="roles",
        help="what the key may sign; repeat for several (default: issuer). The router's key: "
        "--role router --role checkpoint",
    )
    generate.add_argument("--valid-from", help="ISO 8601 UTC time (default: now)")
    generate.add_argument("--valid-until", help="ISO 8601 UTC time (default: no expiry)")
    generate.set_defaults(func=_generate)

    from broker.registry.cli import register as register_registry

    register_registry(commands)


def _time(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise KeyFileError(
            f"{option} must be an ISO 8601 time, e.g. 2026-01-01T00:00:00Z"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _generate(args: argparse.Namespace) -> int:
    passphrase = None
    if args.passphrase_env:
        passphrase = os.environ.get(args.passphrase_env)
        if not passphrase:
            raise KeyFileError(
                f"environment variable {args.passphrase_env} is empty or unset; export the "
                "passphrase there or drop --passphrase-env"
            )
    private_path, public_path = generate_key(
        args.agency_id,
        args.out,
        key_id=args.key_id,
        passphrase=passphrase,
        valid_from=_time(args.valid_from, "--valid-from"),
        valid_until=_time(args.valid_until, "--valid-until"),
        roles=args.roles or (ROLE_ISSUER,),
    )
    info = load_public_key(public_path)
    print(f"key id:      {info.key_id}")
    print(f"roles:       {', '.join(info.roles)}")
    protection = ", passphrase-protected" if passphrase else ""
    print(f"private key: {private_path} (keep secret{protection})")
    print(f"public key:  {public_path} (publish to the key registry)")
    return 0
