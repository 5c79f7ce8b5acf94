"""Forwarding an admitted call: failover before the first byte, passthrough, settlement. Format-free:
the call's format (app/proxy/formats) says what its body, usage and stream events look like."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import quote

from app import json_codec
from app.db import now_utc
from app.metering import key_budget
from app.metering.alerts import Whose, after_settlement
from app.metering.key_budget import KeyHold
from app.metering.pricing import usd_str
from app.metering.quota import Hold, keep
from app.metering.settlement import Charge, Settled, release, settle
from app.proxy import telemetry
from app.proxy.admission import Admitted, key_rate_key
from app.proxy.answer import Answer
from app.proxy.errors import ProxyError
from app.proxy.formats import route
from app.proxy.formats.bridge import Bridge
from app.proxy.formats.format import Format, StreamReader, Usage
from app.proxy.health import NO_FLIGHT, Flight
from app.proxy.providers import PROVIDERS, send
from app.proxy.providers.deployment import DeploymentInfo
from app.proxy.routing import order
from app.upstream.client import Reply, UpstreamFailure

if TYPE_CHECKING:
    from app.proxy.gateway import Gateway

log = logging.getLogger(__name__)


def header_safe(value: str) -> str:
    """A customer id as a header value: verbatim when it is printable ASCII without '%', else
    percent-encoded UTF-8, so `urllib.parse.unquote` gives the id back either way."""
    if value.isascii() and "%" not in value:
        return value
    return quote(value, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~")


@dataclass
class Call:
    request_id: str
    fmt: Format
    stream: bool
    admitted: Admitted
    started: float = field(default_factory=time.perf_counter)
    client_wants_usage: bool = False
    served: DeploymentInfo | None = None
    reached: bool = False
    flight: Flight = NO_FLIGHT  # the call counted in flight at the deployment serving it
    probed: bool = False  # it tried the deployment whose probe admission took
    # The format the serving deployment speaks, and the bridge to it when that is not the call's.
    upstream: Format | None = None
    bridge: Bridge | None = None
    bodies: dict[str, dict] = field(default_factory=dict)  # what goes out, per upstream format

    def outgoing(self, body: dict, deployment: DeploymentInfo) -> tuple[dict, Format, Bridge | None]:
        """The body for this deployment in the format it speaks, with hard_cap's completion limit
        and the usage asked for; translated once per format."""
        way = route(self.fmt, PROVIDERS[deployment.provider])
        if way is None:  # admission keeps only deployments that can serve the call
            raise ProxyError("invalid_request", f"Deployment {deployment.id} cannot serve this call.")
        upstream, bridge = way
        if upstream.name not in self.bodies:
            out, self.client_wants_usage = self.fmt.outgoing(
                body, self.admitted.completion_cap(), self.stream
            )
            if bridge is not None:
                out, _ = upstream.outgoing(bridge.request(out, self._completion()), None, self.stream)
            self.bodies[upstream.name] = out
        return self.bodies[upstream.name], upstream, bridge

    def _completion(self) -> int:
        """The completion limit a translation sends when the call gives none: what its hold covers."""
        if self.admitted.completion is not None:
            return max(1, self.admitted.completion)
        caller = self.admitted.caller
        return caller.terms_of(caller.project.defaults.tier_id).default_reserve_tokens

    def settle(self, gw: Gateway, charge: Charge, record: dict) -> Settled | None:
        """Settle this call, then raise the balance events it caused."""
        admitted = self.admitted
        settled = settle(gw.engine, admitted.hold, charge, record, admitted.share, admitted.key_hold)
        hold = self.admitted.hold
        if settled is not None and hold is not None and self.admitted.who.customer_id is not None:
            project = self.admitted.caller.project
            whose = Whose(project.id, hold.customer_pk, self.admitted.who.customer_id)
            after_settlement(gw.engine, whose, settled, project.low_balance_tokens, record["created_at"])
        return settled

    def ended(self, gw: Gateway, tokens: int) -> None:
        """The call is over: free its parallel slot and in-flight places, count its tokens in the
        tpm window."""
        self.flight.release()
        self.admitted.flight.release()
        self.admitted.ticket.release()
        self.admitted.key_ticket.release()
        if self.admitted.tpm is not None and tokens > 0:
            gw.limiter.record_tokens(self.admitted.rate_key(), self.admitted.tpm, tokens)
        key = self.admitted.caller.key
        if key is not None and key.tpm is not None and tokens > 0:
            gw.limiter.record_tokens(key_rate_key(key.id), key.tpm, tokens)

    def headers(self, available: int | None, cost_nusd: int | None = None) -> dict[str, str]:
        h = {"x-request-id": self.request_id, "x-tollgate-model": self.admitted.model.name}
        if cost_nusd is not None:  # LiteLLM's header; a stream's headers leave before its cost is known
            h["x-litellm-response-cost"] = usd_str(cost_nusd)
        h.update(self.admitted.key_ticket.headers())
        h.update(self.admitted.ticket.headers())  # the customer's limits, when both have them
        if self.admitted.who.customer_id is not None:
            h["x-tollgate-customer"] = header_safe(self.admitted.who.customer_id)
        if available is not None:
            h["x-tollgate-tokens-remaining"] = str(available)
        if self.served is not None:
            h["x-tollgate-region"] = self.served.region
            if self.admitted.hold is not None and self.admitted.hold.allowed_regions:
                h["x-litellm-model-region"] = self.served.region
        if self.admitted.restricted_from is not None:
            h["x-tollgate-restricted"] = f"{self.admitted.restricted_from}->{self.admitted.model.model_tier}"
        if self.admitted.share is not None and self.admitted.share.overage:
            h["x-tollgate-overage"] = "true"
        return h

    def record(self, status: int, disconnected: bool = False) -> dict:
        model = self.admitted.model
        return dict(
            request_id=self.request_id,
            project_id=self.admitted.caller.project.id,
            api_key_id=self.admitted.caller.key_id,
            litellm_pending=self.admitted.caller.project.litellm_webhook
            and self.admitted.who.customer_id is not None,
            endpoint=self.fmt.endpoint,
            model_requested=self.admitted.requested,
            model_served=model.name,
            model_tier=model.model_tier,
            deployment_id=self.served.id if self.served else None,
            region=self.served.region if self.served else None,
            status=status,
            stream=self.stream,
            client_disconnected=disconnected,
            overage=self.admitted.share is not None and self.admitted.share.overage,
            restricted_from=self.admitted.restricted_from,
            latency_ms=int((time.perf_counter() - self.started) * 1000),
            created_at=now_utc(),
        )


def forward(gw: Gateway, call: Call, body: dict) -> Reply:
    """Try each eligible deployment until one answers; fail over on errors before the first byte."""
    probe = call.admitted.probe
    try:
        return _forward(gw, call, body)
    finally:
        if probe is not None and call.served is not probe and not call.probed:
            gw.health.release_probe(probe.id)  # taken at admission, not used: another call may probe


def _forward(gw: Gateway, call: Call, body: dict) -> Reply:
    last: UpstreamFailure | None = None
    health = gw.health
    candidates = order(call.admitted.deployments, health, gw.rng)
    if call.admitted.probe in candidates:  # the deployment whose probe admission took goes first
        candidates.remove(call.admitted.probe)
        candidates.insert(0, call.admitted.probe)
    for deployment in candidates:
        # Translated before any probe is taken: a body the deployment's format refuses (a
        # restricted call's model may need another translation) is given back at once.
        outgoing, upstream, bridge = _translated(gw, call, body, deployment)
        probing = deployment is call.admitted.probe  # admission took its probe for this call
        call.probed = call.probed or probing
        took_probe = not (probing or health.healthy(deployment.id))
        if took_probe and not health.take_probe(deployment.id, deployment.timeout_s):
            continue  # rested: another call is probing it right now
        attempt = dict(outgoing, model=deployment.upstream_model)
        _, flight = health.fly(f"flight:d:{deployment.id}")
        try:
            reply = send(gw.client, deployment, upstream.name, attempt, call.stream)
            call.reached = True
            _check(reply, deployment)
        except UpstreamFailure as failure:
            flight.release()
            log.warning("%s: %s", call.request_id, failure)  # why a deployment is failing over or resting
            call.reached = call.reached or failure.reached
            health.failed(deployment.id)
            telemetry.upstream_failure(deployment.id)
            last = failure
            continue
        except BaseException:  # a fault of ours (a 500): what the call holds and counts is given back
            flight.release()
            if took_probe:
                health.release_probe(deployment.id)
            _give_back(gw, call, 500)
            raise
        health.succeeded(deployment.id)
        call.served, call.flight, call.upstream, call.bridge = deployment, flight, upstream, bridge
        return reply
    _give_back(gw, call, 504 if last and last.timeout else 502)
    if last is not None and last.timeout:
        raise ProxyError("upstream_timeout", "The upstream did not answer within its timeout.")
    raise ProxyError("upstream_error", "Every eligible deployment failed or is unhealthy.")


def _check(reply: Reply, deployment: DeploymentInfo) -> None:
    """A 5xx, or a 200 that is an HTML page (a proxy's or a load balancer's in front of the
    upstream), is no answer: the next deployment is tried."""
    if reply.status >= 500:
        raise UpstreamFailure(f"deployment {deployment.id} answered {reply.status}")
    if reply.status == 200 and reply.content_type.startswith("text/html"):
        reply.close(finished=False)
        raise UpstreamFailure(f"deployment {deployment.id} answered 200 with an HTML page")


def _translated(
    gw: Gateway, call: Call, body: dict, deployment: DeploymentInfo
) -> tuple[dict, Format, Bridge | None]:
    try:
        return call.outgoing(body, deployment)
    except ProxyError:
        _give_back(gw, call, 400)
        raise
    except Exception as exc:  # a translation that fails on a body no check foresaw: a 400, no hold kept
        _give_back(gw, call, 400)
        log.exception("%s: translating the call for deployment %s failed", call.request_id, deployment.id)
        raise ProxyError("invalid_request", "The request could not be translated for this model.") from exc


def _give_back(gw: Gateway, call: Call, status: int) -> None:
    """Nothing was served: release the hold; a call that reached an upstream still gets its record."""
    admitted = call.admitted
    try:
        if call.reached:
            call.settle(gw, Charge(0, 0, 0), call.record(status))
        elif admitted.hold is not None or admitted.key_hold is not None:
            release(gw.engine, admitted.hold, admitted.share, admitted.key_hold)
    finally:
        call.ended(gw, 0)


def _charge(call: Call, usage: Usage | None, output_tokens: int = 0) -> Charge:
    if usage is None:
        # No usage from the upstream (a hang-up, or a server that omits it): charge the estimate.
        usage = Usage(call.admitted.prompt.likely, output_tokens)
    price = call.admitted.model.price
    cost = 0
    if price is not None:
        cost = price.cost_nusd(
            usage.prompt, usage.completion, usage.cache_read, usage.cache_write, usage.cache_write_1h
        )
    return Charge(usage.prompt, usage.completion, cost, usage.cache_read, usage.cache_write)


def finish_json(gw: Gateway, call: Call, reply: Reply) -> Answer:
    body, content_type = reply.body or b"", reply.content_type
    if reply.status != 200:
        _give_back(gw, call, reply.status)
        if call.bridge is not None:  # the upstream's error, in the shape the client's SDK reads
            body, content_type = call.bridge.error(reply.status, body), "application/json"
        return Answer(reply.status, content_type, call.headers(None), body)
    try:
        data = json_codec.loads(body)
    except (ValueError, RecursionError):  # an upstream's reply is not trusted either
        data = None
    if data is None and "json" not in content_type:  # a 200 that is no answer (a proxy's HTML page)
        _give_back(gw, call, 502)
        raise ProxyError("upstream_error", "The upstream's reply could not be read.")
    assert call.upstream is not None
    usage = call.upstream.usage(data)
    if call.bridge is not None:
        body, content_type = _translated_reply(gw, call, data), "application/json"
    charge = _charge(call, usage)
    try:
        settled = call.settle(gw, charge, call.record(200))
    finally:
        call.ended(gw, charge.total_tokens)
    telemetry.served(call.admitted.caller.project.id, charge)
    return Answer(
        200, content_type, call.headers(settled.available if settled else None, charge.cost_nusd), body
    )


def _translated_reply(gw: Gateway, call: Call, data: object) -> bytes:
    """The upstream's reply in the client's format; one that cannot be read, or translated, is
    a failed call: the client gets upstream_error and pays nothing."""
    try:
        if isinstance(data, dict):
            assert call.bridge is not None
            return json_codec.dumps(call.bridge.reply(data))
    except Exception:
        served = call.served.id if call.served is not None else None
        log.exception("%s: translating deployment %s's reply failed", call.request_id, served)
    _give_back(gw, call, 502)
    raise ProxyError("upstream_error", "The upstream's reply could not be read.")


def finish_stream(gw: Gateway, call: Call, reply: Reply) -> Answer:
    if reply.status != 200:
        return finish_json(gw, call, reply)
    hold = call.admitted.hold
    headers = call.headers(hold.available if hold else None)
    headers.update(STREAM_HEADERS)
    return Answer(200, "text/event-stream", headers, _relay(gw, call, reply))


STREAM_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def _relay(gw: Gateway, call: Call, reply: Reply) -> Iterator[bytes]:
    assert call.upstream is not None
    # A bridged stream is read whole (usage included) in the upstream's format, then translated.
    bridged = call.bridge is not None
    reader = call.upstream.reader(call.client_wants_usage or bridged)
    translator = call.bridge.events(call.client_wants_usage) if call.bridge is not None else None
    pending = b""
    ended = settled = False
    admitted = call.admitted
    keeper = None
    if admitted.hold is not None or admitted.key_hold is not None:
        keeper = _HoldKeeper(gw, admitted.hold, admitted.key_hold)
    try:
        for data in reply.chunks():
            if keeper is not None:
                keeper.tick()
            if b"\r" in data:
                data = data.replace(b"\r\n", b"\n")
            pending += data
            if b"\n\n" not in pending:
                continue
            *complete, pending = pending.split(b"\n\n")
            events = [e for e in complete if e]
            out = reader.feed(events)
            if translator is not None:
                out = translator.feed(events)
            if reader.done and not settled:
                # Charge before the client sees the stream's end: when it ends, the balance is final.
                settled = True
                _settle_stream(gw, call, reader, disconnected=False)
            if out:
                yield out
        ended = True
    except OSError:
        pass  # the upstream broke mid-stream: the client keeps what it got, and pays for that much
    finally:
        reply.close(finished=ended)
        if not settled:
            _settle_stream(gw, call, reader, disconnected=not ended)


class _HoldKeeper:
    """A stream may outlast its hold's expiry (a long answer read slowly): halfway through the hold's
    window, push its expiry a whole window on, so the scheduler never frees tokens still in use."""

    def __init__(self, gw: Gateway, hold: Hold | None, key_hold: KeyHold | None) -> None:
        self.gw, self.hold, self.key_hold = gw, hold, key_hold
        expires_at = hold.expires_at if hold is not None else None
        expires_at = expires_at or (key_hold.expires_at if key_hold is not None else None)
        assert expires_at is not None
        now = gw.clock()
        self.window = expires_at - now
        self.due = now + self.window / 2

    def tick(self) -> None:
        now = self.gw.clock()
        if now >= self.due:
            if self.hold is not None:
                keep(self.gw.engine, self.hold, now + self.window)
            if self.key_hold is not None:
                key_budget.keep(self.gw.engine, self.key_hold, now + self.window)
            self.due = now + self.window / 2


def _settle_stream(gw: Gateway, call: Call, reader: StreamReader, disconnected: bool) -> None:
    charge = _charge(call, reader.charged(), reader.output)
    record = call.record(200, disconnected=disconnected)
    try:
        call.settle(gw, charge, record)
    finally:
        call.ended(gw, charge.total_tokens)
    telemetry.served(call.admitted.caller.project.id, charge)
