"""A route for a hot endpoint that takes a JSON body and the request only: FastAPI's schema and
errors, without its per-request machinery on the common path.

FastAPI's handler, on every request, parses the content type through ``email.message``, reads
the body, solves the endpoint's parameters (the body among them) through its dependency
machinery and records telemetry, then runs the endpoint. The app called in process answered
a fixed ten-hit SciFact recall in 198-240 us, the same work written plainly in 71-120 us; with
this route 262 us against 312 (alternated, load 4; the rest is routing and the middleware
stack; benchmarks/RESULTS.md, issue 25 session 14).

``LeanJsonRoute`` serves a body sent as ``application/json`` that the route's own body field
(the same pydantic validation FastAPI runs) accepts by calling the endpoint at once. Anything
else (another content type, no body, bad JSON, a refused body) goes through FastAPI's handler,
which answers as it always has: the same errors, the same status codes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

JSON = "application/json"


class LeanJsonRoute(APIRoute):
    """An ``APIRoute`` whose endpoint's parameters are one body and the ``Request``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        standard = super().get_route_handler()
        dependant = self.dependant
        others = [
            *dependant.path_params,
            *dependant.query_params,
            *dependant.header_params,
            *dependant.cookie_params,
            *dependant.dependencies,
        ]
        if len(dependant.body_params) != 1 or dependant.request_param_name is None or others:
            raise TypeError(f"{self.path}: a lean route's endpoint takes one body and the request")
        body_name = dependant.body_params[0].name
        request_name = dependant.request_param_name
        body_field = self.body_field
        endpoint = self.endpoint
        assert body_field is not None  # one body parameter (checked above)

        async def handler(request: Request) -> Response:
            if request.headers.get("content-type") == JSON:
                raw = await request.body()  # kept by the request for FastAPI's handler
                try:
                    payload = json.loads(raw)
                except (ValueError, RecursionError):  # nested deeper than json recurses
                    payload = None
                if payload is not None:
                    value, errors = body_field.validate(payload, {}, loc=("body",))
                    if not errors:
                        answer: Response = await endpoint(
                            **{body_name: value, request_name: request}
                        )
                        return answer
            return await standard(request)

        return handler
