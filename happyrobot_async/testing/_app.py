"""The aiohttp application: routes, auth, fault injection and counting."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
from aiohttp import hdrs, web

from . import _responses as responses
from ._clock import WallClock
from ._faults import AFTER_KINDS, ROUTES, Fault, FaultPlan, TokenBucket
from ._models import OPTIONAL_FIELDS_MODES, ModelRecord, OptionalFields
from ._stats import RequestLogEntry, StatsRecorder
from ._store import Store
from ._validate import ID_LENGTH, ListQuery, RequestError, parse_create, parse_list_query

API_PREFIX = "/api/v1"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _check_mode(_: object, __: attrs.Attribute[str], value: str) -> None:
    if value not in OPTIONAL_FIELDS_MODES:
        raise ValueError(f"optional_fields must be one of {OPTIONAL_FIELDS_MODES}")


@attrs.define
class SimState:
    """Everything the handlers read; the `Simulator` changes it at runtime."""

    store: Store
    stats: StatsRecorder
    plan: FaultPlan
    wall: WallClock = attrs.Factory(WallClock)
    hangs: responses.Hangs = attrs.Factory(responses.Hangs)
    bucket: TokenBucket | None = None
    extra_fields: bool = False
    optional_fields: OptionalFields = attrs.field(default="present", validator=_check_mode)


@attrs.define
class _Outcome:
    """What happened to one request, filled in as it goes."""

    status: str = "?"
    faults: list[str] = attrs.Factory(list)


_STATE = web.AppKey("state", SimState)
_ORGANIZATION = web.RequestKey("organization_id", str)


def make_app(state: SimState) -> web.Application:
    """Build the simulator's aiohttp application around `state`."""
    app = web.Application(middlewares=[_api_middleware])
    app[_STATE] = state
    app.router.add_post(f"{API_PREFIX}/models", _create, name="create")
    app.router.add_get(f"{API_PREFIX}/models", _list, name="list")
    app.router.add_get(f"{API_PREFIX}/models/{{id}}", _get, name="get")
    app.router.add_get("/_simulator/stats", _stats)
    app.router.add_post("/_simulator/reset", _reset)
    return app


@web.middleware
async def _api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count, rate-limit, authenticate and inject faults into every /api/v1 request."""
    if not request.path.startswith(API_PREFIX):
        return await handler(request)
    state = request.app[_STATE]
    route = request.match_info.route.name or "other"
    arrived = time.monotonic()
    outcome = _Outcome()
    state.stats.enter()
    try:
        response = await _serve(request, handler, state, route, outcome)
        if outcome.status == "?":
            outcome.status = str(response.status)
        if state.wall.offset and not response.prepared:
            response.headers[hdrs.DATE] = state.wall.http_date()
        return response
    finally:
        fault = next((kind for kind in outcome.faults if kind != "latency"), None)
        if fault is None and outcome.faults:
            fault = "latency"
        entry = RequestLogEntry(
            method=request.method,
            route=route,
            path=request.path_qs,
            status=outcome.status,
            time=arrived,
            fault=fault,
            has_auth="authorization" in request.headers,
        )
        state.stats.leave(entry, outcome.faults)


async def _serve(
    request: web.Request, handler: Handler, state: SimState, route: str, outcome: _Outcome
) -> web.StreamResponse:
    if state.bucket is not None:
        wait = state.bucket.take()
        if wait > 0:
            outcome.faults.append("server_rate_limit")
            return responses.rate_limited(wait)
    fault: Fault | None = None
    if route in ROUTES:
        model_id = request.match_info.get("id") if state.plan.per_model else None
        decision = state.plan.decide(route, model_id)
        if decision.delay > 0:
            outcome.faults.append("latency")
            await asyncio.sleep(decision.delay)
        fault = decision.fault
    if fault is not None and fault.kind not in AFTER_KINDS:
        outcome.faults.append(fault.kind)
        if fault.kind == "hang":
            outcome.status = responses.HUNG
            return await state.hangs.hold(request)
        return _before(request, fault, outcome)
    try:
        if route in ROUTES:
            _authenticate(request, state)
        response = await handler(request)
    except RequestError as error:
        return responses.error_response(error.status, error.message)
    except web.HTTPException as error:
        return responses.error_response(error.status, error.reason)
    if fault is None or response.status != 200 or not isinstance(response, web.Response):
        return response
    outcome.faults.append(fault.kind)
    return await _after(request, response, fault, route, state, outcome)


def _before(request: web.Request, fault: Fault, outcome: _Outcome) -> web.Response:
    """Answer with a fault instead of handling the request (nothing is stored)."""
    if fault.kind == "rate_limit":
        return responses.rate_limited(fault.rate_limit_retry_after)
    if fault.kind == "server_error":
        return responses.proxy_error(fault.status, html=fault.html, retry_after=fault.retry_after)
    if fault.kind == "client_error":
        return responses.client_error(fault.status, fault.retry_after)
    if fault.kind == "redirect":
        return responses.redirect(request, fault)
    outcome.status = responses.DROPPED
    return responses.drop(request)


async def _after(
    request: web.Request,
    response: web.Response,
    fault: Fault,
    route: str,
    state: SimState,
    outcome: _Outcome,
) -> web.StreamResponse:
    """Spoil a successful response (a create has already been stored)."""
    if fault.kind == "truncate":
        date = state.wall.http_date() if state.wall.offset else None
        return await responses.truncated(request, response, date)
    if fault.kind == "oversize":
        return responses.oversize(response, fault.size)
    if fault.kind == "stall":
        outcome.status = responses.STALLED
        date = state.wall.http_date() if state.wall.offset else None
        return await state.hangs.stall(request, response, date)
    if fault.kind == "malformed_json":
        return responses.malformed_json()
    if fault.kind == "wrong_shape":
        return responses.wrong_shape(route, fault)
    if fault.then == "drop":
        outcome.status = responses.DROPPED
        return responses.drop(request)
    return responses.proxy_error(int(fault.then), html=fault.html)


def _authenticate(request: web.Request, state: SimState) -> None:
    """Resolve the bearer key to its organization (401), check x-organization-id (403)."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    organization_id = state.store.organization_of(key.strip())
    if scheme.lower() != "bearer" or organization_id is None:
        raise RequestError(401, "Unauthorized: missing or invalid API key")
    forbidden = state.store.forbidden_keys
    if forbidden and key.strip() in forbidden:  # an empty set costs the hot path nothing
        raise RequestError(403, "Forbidden: this organization may not use the models API")
    claimed = request.headers.get("x-organization-id")
    if claimed is not None and claimed != organization_id:
        raise RequestError(403, "Forbidden: the API key does not belong to this organization")
    request[_ORGANIZATION] = organization_id


async def _create(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    raw = await request.read()
    try:
        body = json.loads(raw)
    except ValueError:
        raise RequestError(400, "request body: not valid JSON") from None
    record = state.store.create(request[_ORGANIZATION], parse_create(body))
    state.stats.model_created(record.organization_id, record.use_case_id, record.name)
    return _model_response(state, record)


async def _get(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    model_id = request.match_info["id"]
    record = None
    if len(model_id) == ID_LENGTH:
        record = state.store.get(request[_ORGANIZATION], model_id)
        raw = state.store.raw_item(request[_ORGANIZATION], model_id) if record is None else None
        if raw is not None:  # a raw item with a 24-character id, sent as-is
            return responses.json_response(200, raw)
    if record is None:
        raise RequestError(404, f"Model not found: {model_id}")
    return _model_response(state, record)


async def _list(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    organization_id = request[_ORGANIZATION]
    query = parse_list_query(dict(request.query))
    if state.store.has_raw_items(organization_id):
        return _list_with_raw(state, organization_id, query)
    records = state.store.find(organization_id, query)
    now = state.store.now()
    items = [_render(state, record, now, summary=True) for record in records]
    return responses.json_response(200, items)


def _list_with_raw(state: SimState, organization_id: str, query: ListQuery) -> web.Response:
    """The list, with the organization's raw items sent as-is among the models."""
    now = state.store.now()
    return responses.json_response(
        200,
        [
            _render(state, item, now, summary=True) if isinstance(item, ModelRecord) else item
            for item in state.store.find_with_raw(organization_id, query)
        ],
    )


def _model_response(state: SimState, record: ModelRecord) -> web.Response:
    return responses.json_response(200, _render(state, record, state.store.now()))


def _render(
    state: SimState, record: ModelRecord, now: float, *, summary: bool = False
) -> dict[str, Any]:
    """The model as the API spells it (`summary`: a list item), in the current field modes."""
    return record.to_json(
        now, summary=summary, extra_fields=state.extra_fields, optional_fields=state.optional_fields
    )


async def _stats(request: web.Request) -> web.Response:
    return responses.json_response(200, request.app[_STATE].stats.snapshot().to_json())


async def _reset(request: web.Request) -> web.Response:
    request.app[_STATE].stats.reset()
    return web.Response(status=204)
