"""Issue 15, part 3: webhooks that cannot be redirected or spoofed.

A redirect is never followed (the token and the event stay with the configured URL) and never
counted as delivered; every delivery carries an HMAC signature the receiver checks with
`connectors.subscriber.signing.verify` (the documented check); an https target can be trusted
through a private CA and can demand a client certificate.
"""

from __future__ import annotations

import io
import json
import ssl
import time
from pathlib import Path

import pytest
from test_subscriber_delivery import StubFeed, item
from webhook_receiver import WebhookReceiver, serving

from broker.errors import BrokerError
from broker.kafka.tls import make_local_ca
from connectors.subscriber import Backoff, DeliveryError, WebhookTarget, deliver_feed
from connectors.subscriber.signing import SIGNATURE_HEADER, sign, verify

SECRET = b"webhook-secret-for-tests-0123456789"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_not_followed_nor_delivered(status: int) -> None:
    with (
        serving(WebhookReceiver()) as elsewhere,
        serving(WebhookReceiver(status, elsewhere.url)) as hook,
    ):
        target = WebhookTarget(hook.url, secret=SECRET, token="bearer-secret")
        with pytest.raises(DeliveryError) as error:
            target.deliver({"event_id": "e1"})
        assert error.value.retryable
        assert f"HTTP {status}" in str(error.value) and "not followed" in str(error.value)
        assert len(hook.requests) == 1
        assert elsewhere.requests == []  # neither the token nor the event went there

        # Through the delivery loop: retried, reported, and not counted as delivered.
        feed = StubFeed([item(0, 0), item(0, 1)])
        log = io.StringIO()
        backoff = Backoff(initial_s=0.01, max_s=0.02, give_up_after_s=0.2)
        with pytest.raises(DeliveryError, match="gave up"):
            deliver_feed(feed, target, follow=False, backoff=backoff, log_out=log)
        assert "redirect" in log.getvalue()
        assert feed.commits == [{}]  # nothing committed: the next run starts at e-0-0
        assert elsewhere.requests == []


def test_only_2xx_from_the_configured_url_counts() -> None:
    with serving(WebhookReceiver(204)) as hook:
        feed = StubFeed([item(0, 0), item(1, 0)])
        target = WebhookTarget(hook.url, secret=SECRET)
        stats = deliver_feed(feed, target, follow=False, log_out=io.StringIO())
        assert stats.delivered == 2 and len(hook.requests) == 2
        hook.status = 304  # a 3xx without a Location is not a delivery either
        with pytest.raises(DeliveryError, match="HTTP 304"):
            target.deliver({"event_id": "x"})


def test_every_delivery_is_signed_and_the_receiver_check_holds() -> None:
    with serving(WebhookReceiver(200)) as hook:
        target = WebhookTarget(hook.url, secret=SECRET)
        target.deliver({"event_id": "e1", "subject": "s"})
        target.deliver({"event_id": "e2", "subject": "s"})
    for _, _, headers, body in hook.requests:
        header = headers[SIGNATURE_HEADER]
        assert verify(SECRET, header, body)  # the documented receiver check
        assert not verify(b"another-secret-of-enough-length", header, body)
        assert not verify(SECRET, header, body.replace(b'"s"', b'"t"'))  # tampered body
        assert not verify(SECRET, header, body, now=time.time() + 301)  # replayed later
    # Two bodies, two signatures; a signature from one body does not fit the other.
    (_, _, h1, b1), (_, _, _, b2) = hook.requests
    assert not verify(SECRET, h1[SIGNATURE_HEADER], b2)
    # The check written out, as docs and the README give it for any language.
    import hashlib
    import hmac

    stamp, mac = (part.split("=", 1)[1] for part in h1[SIGNATURE_HEADER].split(","))
    expected = hmac.new(SECRET, stamp.encode() + b"." + b1, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, mac)
    for malformed in (None, "", "v1=abc", "t=x,v1=abc", "t=1,t=2,v1=abc", "garbage"):
        assert not verify(SECRET, malformed, b1)
    assert sign(SECRET, b"{}", 1700000000) == sign(SECRET, b"{}", 1700000000)
    with pytest.raises(BrokerError, match="shorter"):
        WebhookTarget("http://127.0.0.1:1/x", secret=b"short")


def test_private_ca_and_client_certificate(tmp_path: Path) -> None:
    files = make_local_ca(tmp_path / "ca")
    pem = files.broker_keystore  # a key and a certificate for 127.0.0.1 (server and client)
    server = WebhookReceiver(200)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(files.ca_cert))
    context.load_cert_chain(str(pem))
    context.verify_mode = ssl.CERT_REQUIRED  # the receiver demands a client certificate
    server.socket = context.wrap_socket(server.socket, server_side=True)
    url = f"https://127.0.0.1:{server.server_address[1]}/hook"
    with serving(server):
        # Not trusting the private CA: unreachable (certificate verification), retried.
        with pytest.raises(DeliveryError, match="unreachable") as error:
            WebhookTarget(url, secret=SECRET, timeout_s=5).deliver({"event_id": "e0"})
        assert error.value.retryable
        # Trusting it but without a client certificate: refused at the handshake.
        with pytest.raises(DeliveryError, match="unreachable"):
            WebhookTarget(url, secret=SECRET, ca_file=files.ca_cert, timeout_s=5).deliver(
                {"event_id": "e0"}
            )
        target = WebhookTarget(
            url, secret=SECRET, ca_file=files.ca_cert, client_cert=pem, timeout_s=5
        )
        target.deliver({"event_id": "e1"})
    assert [json.loads(r[3])["event_id"] for r in server.requests] == ["e1"]
    with pytest.raises(BrokerError, match="https"):
        WebhookTarget("http://127.0.0.1:1/x", secret=SECRET, ca_file=files.ca_cert)
    with pytest.raises(BrokerError, match="PEM"):
        WebhookTarget("https://127.0.0.1:1/x", secret=SECRET, ca_file=tmp_path / "none.pem")
