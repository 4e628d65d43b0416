"""`broker connect ...`: the agency connectors' commands.

    broker connect council ssda903 --config C --agency A PATH     SSDA903 return (CSV dir or XML)
    broker connect council serve --config C --agency A [--port P] [--tokens FILE] [--drop-dir DIR]
    broker connect police serve  --config C --agency A [--port P] [--tokens FILE] [--drop-dir DIR]
    broker connect nrm referral --config C --agency A PAYLOAD.json
    broker connect nrm decision --config C --agency nrm.sca --referral-id R --first-responder A ...
    broker connect token --tokens FILE CLIENT                     a new client token (shown once)

Every path signs and publishes through `broker.publish.Publisher`, as `broker publish` does.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from broker.errors import BrokerError
from broker.inbound import DEFAULT_LIMITS, KAFKA_MAX_RECORD_BYTES, Limits, Rejection, parse_body

if TYPE_CHECKING:
    from broker.publish import Publisher, PublishReport

DEFAULT_PORT = 8903
NRM_MAX_PAYLOAD_BYTES = 8 * 1024 * 1024
NRM_LIMITS = Limits(max_depth=16)  # the NRM payload nests objects a little deeper than events
SHOW_PROBLEMS = 50


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "connect", help="agency connectors: SSDA903 backfill, live intake, NRM referrals"
    )
    kinds = parser.add_subparsers(dest="connector", metavar="CONNECTOR", required=True)

    council = kinds.add_parser("council", help="council connectors (SSDA903, live events)")
    council_cmds = council.add_subparsers(dest="action", metavar="ACTION", required=True)
    ssda = council_cmds.add_parser(
        "ssda903", help="publish the events of an SSDA903 return (CSV folder or XML file)"
    )
    _common(ssda)
    ssda.add_argument("path", type=Path, help="folder of CSV tables, or one EXPSSDA903 XML file")
    ssda.add_argument("--no-progress", action="store_true", help="no progress bar")
    ssda.add_argument(
        "--show-problems",
        type=int,
        default=SHOW_PROBLEMS,
        metavar="N",
        help=f"list at most N problems in the summary ({SHOW_PROBLEMS})",
    )
    ssda.add_argument(
        "--problems-out", type=Path, metavar="FILE", help="write every problem as JSON lines"
    )
    ssda.set_defaults(func=_run_ssda903)
    _serve_parser(council_cmds, "council")

    police = kinds.add_parser("police", help="police connectors (live missing-person reports)")
    _serve_parser(police.add_subparsers(dest="action", metavar="ACTION", required=True), "police")

    nrm = kinds.add_parser("nrm", help="NRM referrals and decisions")
    nrm_cmds = nrm.add_subparsers(dest="action", metavar="ACTION", required=True)
    referral = nrm_cmds.add_parser(
        "referral", help="publish nrm.referral.submitted from a Home Office referral payload"
    )
    _common(referral)
    referral.add_argument("payload", type=Path, help="referral payload JSON (object or array)")
    referral.add_argument("--child-id", help="the council's CHILD reference (la_child_id)")
    referral.add_argument("--subject", help="subject reference (default: child id, else referral)")
    referral.add_argument(
        "--agency-name",
        action="append",
        default=[],
        metavar="NAME=ID",
        help="map a form's LocalAuthority/PoliceForce name to an agency id (repeatable); "
        "the registry's agency names are known already",
    )
    referral.set_defaults(func=_run_referral)
    decision = nrm_cmds.add_parser("decision", help="publish an nrm.decision.made")
    _common(decision)
    decision.add_argument("--referral-id", required=True)
    decision.add_argument("--first-responder", required=True, help="referring agency id")
    decision.add_argument("--stage", required=True, help="reasonable_grounds|conclusive_grounds")
    decision.add_argument("--outcome", required=True, help="positive|negative")
    decision.add_argument("--date", required=True, help="decision date YYYY-MM-DD")
    decision.add_argument("--subject", required=True, help="the referrer's subject reference")
    decision.set_defaults(func=_run_decision)

    token = kinds.add_parser("token", help="add a client system with a new bearer token")
    token.add_argument("--tokens", type=Path, required=True, help="tokens file (hashes only)")
    token.add_argument("client", help="client system name, e.g. mosaic-prod")
    token.set_defaults(func=_run_token)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--agency", required=True, help="issuing agency id")


def _serve_parser(actions: Any, kind: str) -> None:
    serve = actions.add_parser(
        "serve", help=f"HTTP endpoint (POST /events) and drop folder for live {kind} events"
    )
    _common(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"({DEFAULT_PORT}; 0: any)")
    serve.add_argument(
        "--tokens",
        type=Path,
        help="client tokens file (SHA-256 hashes; default live-tokens.txt beside the config)",
    )
    serve.add_argument("--tls-cert", type=Path, help="serve HTTPS with this PEM certificate")
    serve.add_argument("--tls-key", type=Path, help="the certificate's PEM private key")
    serve.add_argument(
        "--tls-client-ca",
        type=Path,
        help="require client certificates signed by this PEM CA (mutual TLS)",
    )
    serve.add_argument(
        "--allow-plain-http",
        action="store_true",
        help="allow plain HTTP on an address beyond loopback (prints a warning); "
        "otherwise such an address needs --tls-cert and --tls-key",
    )
    serve.add_argument(
        "--max-body-bytes", type=int, default=8 * 1024 * 1024, help="largest request body"
    )
    serve.add_argument(
        "--max-connections", type=int, default=512, help="open connections at once (else 503)"
    )
    serve.add_argument("--drop-dir", type=Path, help="also publish *.jsonl files dropped here")
    serve.add_argument(
        "--max-line-bytes",
        type=int,
        default=DEFAULT_LIMITS.max_line_bytes,
        help=f"drop folder: longest line accepted, in bytes ({DEFAULT_LIMITS.max_line_bytes}; "
        f"below Kafka's {KAFKA_MAX_RECORD_BYTES} per record)",
    )
    serve.add_argument("--poll-s", type=float, default=1.0, help="drop folder poll interval")
    serve.set_defaults(func=_run_serve, kind=kind)


def _agency_of_kind(config: Any, agency_id: str, kind: str) -> None:
    if config.agency(agency_id).kind != kind:
        raise BrokerError(
            f"--agency {agency_id} is not of kind {kind}: give a {kind}.CODE agency id"
        )


# -- SSDA903 --------------------------------------------------------------------------------


def publish_stream(
    publisher: Publisher,
    events: Iterable[Mapping[str, Any]],
    *,
    on_flush: Callable[[], None] | None = None,
) -> PublishReport:
    """Sign and publish a stream of events (each named by its type and id in the report)."""
    return publisher.publish_all(
        ((f"{event.get('event_type')} {event.get('event_id')}", event) for event in events),
        on_flush=on_flush,
    )


def _run_ssda903(args: argparse.Namespace) -> int:
    from broker.config import load_config
    from broker.publish import Publisher
    from connectors.council import read_ssda903
    from connectors.ids import event_ids_for

    config = load_config(args.config)
    _agency_of_kind(config, args.agency, "council")
    id_secret = event_ids_for(config, args.agency).secret  # no secret, no run
    result = read_ssda903(args.path, agency=args.agency, id_secret=id_secret)  # names a bad path
    publisher = Publisher(config, args.agency)
    try:
        with _Tick(result.progress, enabled=not args.no_progress) as tick:
            report = publish_stream(
                publisher, result.events, on_flush=lambda: tick(result.rows_total)
            )
    finally:
        publisher.close()
    _print_ssda903_summary(result, report, args.show_problems, sys.stdout)
    if args.problems_out is not None:
        with args.problems_out.open("w") as out:
            for p in result.problems:
                out.write(json.dumps(_problem_json(p)) + "\n")
    return 1 if report.rejected else 0


class _Tick:
    """Updates a rich progress bar from the reader's byte counter."""

    def __init__(self, counter: Any, enabled: bool) -> None:
        self.counter = counter
        self.enabled = enabled
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> _Tick:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("SSDA903"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                TextColumn("{task.fields[rows]:>10,} rows"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )
            self._progress.__enter__()
            self._task = self._progress.add_task("read", total=self.counter.total or 1, rows=0)
        return self

    def __call__(self, rows: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=self.counter.done, rows=rows)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(None, None, None)


def _problem_json(problem: Any) -> dict[str, Any]:
    return {
        "table": problem.table,
        "row": problem.row,
        "column": problem.column,
        "reason": str(problem.reason),
        "detail": problem.detail,
        "rejected": problem.rejected,
    }


def _counts(counter: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counter.items())) or "none"


def _print_ssda903_summary(result: Any, report: Any, show: int, out: IO[str]) -> None:
    summary = result.summary()
    print(f"source: {summary['source']} ({summary['form']})", file=out)
    if summary["tables_missing"]:
        print(f"tables not found: {', '.join(summary['tables_missing'])}", file=out)
    print(f"rows read: {result.rows_total:,} ({_counts(summary['rows_read'])})", file=out)
    print(
        f"events published: {report.total_published:,} ({_counts(dict(report.published))})",
        file=out,
    )
    if report.rejected:
        print(f"events not published: {len(report.rejected):,}", file=out)
        for where, reason in report.rejected[:show]:
            print(f"  {where}: {reason}", file=out)
    rejected_rows = sum(summary["rows_rejected"].values())
    print(f"rows rejected: {rejected_rows:,} ({_counts(summary['rows_rejected'])})", file=out)
    if summary["events_skipped"]:
        print(f"events skipped: {_counts(summary['events_skipped'])}", file=out)
    if summary["rows_without_event"]:
        print(f"rows without an event: {_counts(summary['rows_without_event'])}", file=out)
    total_problems = sum(summary["problems"].values())
    print(f"problems: {total_problems:,} ({_counts(summary['problems'])})", file=out)
    for problem in result.problems[:show]:
        print(f"  {problem}", file=out)
    more = total_problems - min(show, len(result.problems))
    if more > 0:
        print(f"  ... and {more:,} more (--problems-out FILE lists them all)", file=out)
    print(
        "re-running the same return publishes the same event ids; the router drops repeats",
        file=out,
    )


# -- live intake ----------------------------------------------------------------------------


def _run_serve(args: argparse.Namespace) -> int:
    from broker.config import load_config
    from broker.publish import Publisher
    from connectors.ids import event_ids_for
    from connectors.live.dropfolder import DropFolder
    from connectors.live.exceptions import LiveError
    from connectors.live.intake import EVENT_TYPES_BY_KIND, Intake
    from connectors.live.server import LiveHTTPServer, ServerLimits, TLSOptions, check_bind
    from connectors.live.tokens import TokenStore

    tls = None
    if args.tls_cert is not None or args.tls_key is not None:
        if args.tls_cert is None or args.tls_key is None:
            raise LiveError("--tls-cert and --tls-key go together: give both")
        tls = TLSOptions(args.tls_cert, args.tls_key, args.tls_client_ca)
    elif args.tls_client_ca is not None:
        raise LiveError("--tls-client-ca needs --tls-cert and --tls-key")
    check_bind(args.host, tls, allow_plain_http=args.allow_plain_http)
    try:
        line_limits = Limits(max_line_bytes=args.max_line_bytes)
    except ValueError as exc:
        raise LiveError(f"--max-line-bytes: {exc}") from None
    config = load_config(args.config)
    _agency_of_kind(config, args.agency, args.kind)
    # Only dropped lines without an id get a derived (keyed) one; HTTP events get random ids.
    drop_secret = b""
    if args.drop_dir is not None:
        drop_secret = event_ids_for(config, args.agency).secret
    tokens = TokenStore.load(args.tokens or Path(args.config).parent / "live-tokens.txt")
    publisher = Publisher(config, args.agency)
    intake = Intake(publisher, EVENT_TYPES_BY_KIND[args.kind])
    stop = threading.Event()
    server = LiveHTTPServer(
        args.host,
        args.port,
        agency_id=args.agency,
        intake=intake,
        tokens=tokens,
        tls=tls,
        allow_plain_http=args.allow_plain_http,
        limits=ServerLimits(
            max_body_bytes=args.max_body_bytes, max_connections=args.max_connections
        ),
    )

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    workers: list[threading.Thread] = []
    try:
        server.serve_in_thread()
        print(f"{args.agency}: listening on {server.url}", file=sys.stderr, flush=True)
        if args.drop_dir is not None:
            folder = DropFolder(
                args.drop_dir,
                intake,
                agency_id=args.agency,
                id_secret=drop_secret,
                limits=line_limits,
            )
            worker = threading.Thread(
                target=folder.run, args=(stop,), kwargs={"poll_s": args.poll_s}, daemon=True
            )
            worker.start()
            workers.append(worker)
            print(f"{args.agency}: watching {args.drop_dir} for *.jsonl", file=sys.stderr)
        stop.wait()
    finally:
        stop.set()
        server.stop()
        for worker in workers:
            worker.join(timeout=30)
        publisher.close()
    print(f"{args.agency}: stopped", file=sys.stderr)
    return 0


def _run_token(args: argparse.Namespace) -> int:
    from connectors.live.tokens import new_token

    token = new_token(args.tokens, args.client)
    print(token)
    print(
        f"client {args.client} added to {args.tokens} (hash only); give it this token now: "
        "it is not stored and cannot be shown again",
        file=sys.stderr,
    )
    return 0


# -- NRM ------------------------------------------------------------------------------------


def _publish_one_by_one(config: Any, agency: str, events: list[tuple[str, Any]]) -> int:
    from broker.publish import Publisher, print_report

    publisher = Publisher(config, agency)
    try:
        report = publisher.publish_all(events)
    finally:
        publisher.close()
    for event_id in report.event_ids:
        print(event_id)
    print_report(report)
    return 1 if report.rejected else 0


def _run_referral(args: argparse.Namespace) -> int:
    from broker.config import load_config
    from connectors.ids import event_ids_for
    from connectors.nrm import referral_to_event

    config = load_config(args.config)
    id_secret = event_ids_for(config, args.agency).secret  # also names an unknown agency
    names = {agency.name: agency.id for agency in config.agencies}
    for item in args.agency_name:
        name, sep, agency_id = item.partition("=")
        if not sep or not name.strip() or not agency_id.strip():
            raise BrokerError(f"--agency-name expects NAME=ID, got {item!r}")
        names[name.strip()] = agency_id.strip()
    try:
        raw = args.payload.read_bytes()
    except OSError as exc:
        raise BrokerError(f"cannot read {args.payload} ({exc.strerror})") from None
    # The same bounded parsing and text rules as every other intake (broker/inbound.py).
    parsed = parse_body(raw, NRM_LIMITS, max_bytes=NRM_MAX_PAYLOAD_BYTES)
    if isinstance(parsed, Rejection):
        raise BrokerError(f"{args.payload}: {parsed.message} [{parsed.code}]")
    is_list = raw.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"[")
    events: list[tuple[str, Any]] = []
    for index, payload in enumerate(parsed):
        where = f"{args.payload}" + (f"[{index}]" if is_list else "")
        if isinstance(payload, Rejection):
            events.append((where, BrokerError(f"{payload.message} [{payload.code}]")))
            continue
        try:
            event = referral_to_event(
                payload,
                agency=args.agency,
                id_secret=id_secret,
                subject=args.subject,
                la_child_id=args.child_id,
                agency_ids=names,
            )
        except BrokerError as exc:
            events.append((where, exc))
        else:
            events.append((where, event))
    return _publish_one_by_one(config, args.agency, events)


def _run_decision(args: argparse.Namespace) -> int:
    from broker.config import load_config
    from connectors.ids import event_ids_for
    from connectors.nrm import decision_event

    config = load_config(args.config)
    _agency_of_kind(config, args.agency, "nrm")
    id_secret = event_ids_for(config, args.agency).secret
    event = decision_event(
        args.referral_id,
        args.first_responder,
        args.stage,
        args.outcome,
        args.date,
        args.subject,
        agency=args.agency,
        id_secret=id_secret,
    )
    return _publish_one_by_one(config, args.agency, [("decision", event)])
