"""`broker feed --to-file PATH | --to-webhook URL`: the delivery options of `broker feed`."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from broker.errors import BrokerError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The delivery options, added to the `broker feed` parser."""
    group = parser.add_argument_group(
        "delivery (offset committed only after each event is delivered)"
    )
    target = group.add_mutually_exclusive_group()
    target.add_argument("--to-file", type=Path, metavar="PATH", help="append JSON lines to PATH")
    target.add_argument("--to-webhook", metavar="URL", help="POST each event to URL")
    group.add_argument(
        "--webhook-token-env",
        metavar="NAME",
        help="environment variable holding a bearer token for the webhook",
    )
    group.add_argument(
        "--webhook-secret-env",
        metavar="NAME",
        help="environment variable holding the secret each delivery is signed with "
        "(X-Broker-Signature, HMAC-SHA256; needed with --to-webhook)",
    )
    group.add_argument(
        "--webhook-ca", type=Path, metavar="PEM", help="trust this CA for an https webhook"
    )
    group.add_argument(
        "--webhook-client-cert",
        type=Path,
        metavar="PEM",
        help="present this client certificate to the webhook (mutual TLS)",
    )
    group.add_argument(
        "--webhook-client-key",
        type=Path,
        metavar="PEM",
        help="the client certificate's key (if not in the certificate file)",
    )
    group.add_argument(
        "--retry-max-s", type=float, default=30.0, help="longest wait between retries (30)"
    )
    group.add_argument(
        "--give-up-after",
        type=float,
        metavar="SECONDS",
        help="stop (non-zero, offset kept) when one event cannot be delivered for this long; "
        "default: keep retrying",
    )


def wants_delivery(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "to_file", None) or getattr(args, "to_webhook", None))


def run(args: argparse.Namespace) -> int:
    """Deliver the feed to the chosen target until its end (or, with --follow, until stopped)."""
    from broker.config import load_config
    from broker.feed import FeedReader
    from connectors.subscriber.deliver import Backoff, deliver_feed
    from connectors.subscriber.targets import FileTarget, Target, WebhookTarget

    config = load_config(args.config)
    target: Target
    if args.to_file is not None:
        target = FileTarget(args.to_file)
    else:
        token = None
        if args.webhook_token_env:
            token = os.environ.get(args.webhook_token_env)
            if not token:
                raise BrokerError(
                    f"${args.webhook_token_env} is not set: export the webhook's token in it"
                )
        if not args.webhook_secret_env:
            raise BrokerError(
                "--to-webhook needs --webhook-secret-env NAME: every delivery is signed "
                "(X-Broker-Signature) so the receiver can check it came from the broker"
            )
        secret = os.environ.get(args.webhook_secret_env, "")
        if not secret:
            raise BrokerError(
                f"${args.webhook_secret_env} is not set: export the webhook signing secret in it"
            )
        target = WebhookTarget(
            args.to_webhook,
            secret=secret.encode(),
            token=token,
            ca_file=args.webhook_ca,
            client_cert=args.webhook_client_cert,
            client_key=args.webhook_client_key,
        )
    backoff = Backoff(max_s=args.retry_max_s, give_up_after_s=args.give_up_after)
    stop = threading.Event()
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():

        def on_signal(signum: int, _frame: Any) -> None:
            stop.set()

        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, on_signal)
    reader = FeedReader(config, args.agency, from_beginning=args.from_beginning)
    try:
        stats = deliver_feed(reader, target, follow=args.follow, backoff=backoff, stop=stop)
    finally:
        reader.close()
        target.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    print(
        f"{stats.delivered} event(s) delivered to {target.name}; "
        f"{stats.failed_verification} failed verification; {stats.retries} retries"
        + ("; stopped" if stats.stopped else ""),
        file=sys.stderr,
    )
    return 1 if stats.failed_verification else 0
