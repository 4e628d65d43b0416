"""Routing for the connector tests: a router in this process until its ingress is drained."""

from __future__ import annotations

from router_helpers import Deployment

from broker.router.service import RouterService


def route(dep: Deployment, expected_records: int, *, idle_s: float = 2.0) -> None:
    """Route everything published so far; the router stops once idle after its assignment.

    The same instance id every time: with static group membership a new incarnation takes the
    partitions back at once.
    """
    routed = 0
    for _ in range(3):  # a run ends early only if input stalls for `idle_s`
        routed += (
            RouterService(dep.config, instance_id="connect-t0").run(idle_exit_s=idle_s).records
        )
        if routed >= expected_records:
            break
    assert routed == expected_records, f"routed {routed} of {expected_records} records"
