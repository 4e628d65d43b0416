"""Delivery targets: a JSON-lines file, or a webhook.

A target delivers one verified event (the `broker feed` JSON form) or raises `DeliveryError`,
which says whether trying again may help. Messages name the target and the HTTP status, never
the event's content or the target's reply (which could echo it).
"""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import IO, Any, Protocol

from broker.errors import BrokerError
from broker.personal import open_private
from connectors.subscriber.signing import MIN_SECRET_BYTES, SIGNATURE_HEADER, sign

# HTTP statuses after which the same request may succeed later.
RETRYABLE_STATUSES = frozenset({408, 409, 425, 429})


class DeliveryError(BrokerError):
    """An event could not be delivered; `retryable` when trying again may succeed."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class Target(Protocol):
    """Where a subscriber's events go."""

    name: str

    def deliver(self, event: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class FileTarget:
    """Appends one JSON line per event and syncs it to disk before the offset is committed.

    The file holds personal data, so it is created (or narrowed to) mode 0600, and a symlink in
    its place is refused rather than followed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = str(path)
        self._handle: IO[str] | None = None

    def _open(self) -> IO[str]:
        if self._handle is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._handle = open_private(self.path)  # names and dates of birth: 0600
            except OSError as exc:
                raise DeliveryError(
                    f"cannot open {self.path} for appending ({exc.strerror})", retryable=True
                ) from None
        return self._handle

    def deliver(self, event: dict[str, Any]) -> None:
        handle = self._open()
        try:
            handle.write(json.dumps(event, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        except OSError as exc:
            self.close()  # reopen next time: a partial line is followed by a full one
            raise DeliveryError(
                f"cannot append to {self.path} ({exc.strerror})", retryable=True
            ) from None

    def close(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.close()
            self._handle = None


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is answered, never followed: the 3xx surfaces as an `HTTPError`."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class WebhookTarget:
    """POSTs each event as one JSON object to exactly the configured URL; only a 2xx answer
    from it is a delivery.

    Headers: `Content-Type: application/json`, `Idempotency-Key: <event_id>` (for the target to
    drop repeats), `X-Broker-Signature` (HMAC over a timestamp and the body, see
    `connectors.subscriber.signing`), and `Authorization: Bearer <token>` when a token is given.
    Redirects are not followed (a 3xx is a failed delivery, retried): following one would send
    the token and the event wherever the target, or whoever controls its answers, points.
    `ca_file` trusts a private CA for an https URL; `client_cert`/`client_key` present a client
    certificate (mutual TLS).
    """

    def __init__(
        self,
        url: str,
        *,
        secret: bytes,
        token: str | None = None,
        timeout_s: float = 10.0,
        ca_file: Path | None = None,
        client_cert: Path | None = None,
        client_key: Path | None = None,
    ) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise BrokerError(f"--to-webhook needs an http(s) URL, got scheme {parsed.scheme!r}")
        if len(secret) < MIN_SECRET_BYTES:
            raise BrokerError(
                f"the webhook signing secret is shorter than {MIN_SECRET_BYTES} bytes: "
                "use a random one (e.g. `openssl rand -hex 32`)"
            )
        if (ca_file or client_cert) and parsed.scheme != "https":
            raise BrokerError("--webhook-ca and --webhook-client-cert need an https URL")
        self.url = url
        # The name shown in messages leaves out any path or query (they may hold a secret).
        self.name = f"{parsed.scheme}://{parsed.hostname}" + (
            f":{parsed.port}" if parsed.port else ""
        )
        self.secret = secret
        self.token = token
        self.timeout_s = timeout_s
        handlers: list[urllib.request.BaseHandler] = [_NoRedirects()]
        if parsed.scheme == "https":
            try:
                context = ssl.create_default_context(
                    cafile=str(ca_file) if ca_file is not None else None
                )
                if client_cert is not None:
                    context.load_cert_chain(
                        str(client_cert), str(client_key) if client_key is not None else None
                    )
            except (OSError, ssl.SSLError) as exc:
                raise BrokerError(
                    f"cannot load the webhook's TLS files ({type(exc).__name__}: "
                    f"{getattr(exc, 'strerror', None) or getattr(exc, 'reason', None)}): "
                    "give PEM files (CA; client certificate and its key)"
                ) from None
            handlers.append(urllib.request.HTTPSHandler(context=context))
        self._opener = urllib.request.build_opener(*handlers)

    def deliver(self, event: dict[str, Any]) -> None:
        body = json.dumps(event, sort_keys=True).encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self.secret, body),
        }
        if event.get("event_id"):
            headers["Idempotency-Key"] = str(event["event_id"])
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                response.read(65536)
                status = response.status
        except urllib.error.HTTPError as exc:
            exc.close()
            status = exc.code
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DeliveryError(
                f"webhook {self.name} unreachable ({type(reason).__name__})", retryable=True
            ) from None
        if 200 <= status < 300:
            return
        if 300 <= status < 400:
            raise DeliveryError(
                f"webhook {self.name} answered HTTP {status}, a redirect: not followed, not "
                "delivered; configure the URL it finally answers at",
                retryable=True,
            )
        retryable = status >= 500 or status in RETRYABLE_STATUSES
        raise DeliveryError(f"webhook {self.name} answered HTTP {status}", retryable=retryable)

    def close(self) -> None:
        pass
