"""The rating page and its JSON API: a Starlette app served by uvicorn.

Starlette rather than FastAPI: the API is three small endpoints whose validation must answer
400 with our own one-line JSON errors (FastAPI's request models answer 422 in their own
shape, and bring pydantic for nothing else here); Starlette is the ASGI toolkit FastAPI is
built on, so nothing is lost.

  GET  /                      the page (static HTML; the token stays in the URL, read by the script)
  GET  /static/annotate.js    its script, /static/annotate.css its style (fixed files, no paths
                              from requests)
  GET  /api/hit?token=T       the annotator's current HIT (resume) or the next free one:
                              {"hit_id", "items": [{"item_id", "text", "typicality"}], "scale",
                              "done", "total"}; {"hit_id": null, ...} when there is none left
  POST /api/ratings           {"token", "hit_id", "ratings": [{"item_id", "typicality"}]}
                              -> {"saved": n}; one transaction; 403 unknown token, 400 otherwise
  POST /api/prolific          {"study", "participant"} -> {"token"}: a Prolific participant's
                              personal token for the one HIT of their study

Security: tokens are compared in constant time (store.authenticate); every response carries a
Content-Security-Policy without inline script, style or anything from elsewhere, plus
no-referrer, nosniff and no framing; API answers are never cached; request bodies are limited
to MAX_BODY bytes and must be JSON; the page renders every text with textContent.
"""

from __future__ import annotations

import logging
import hmac
import html
import json
import socket
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from evalharness.annotation.crowd import PARTICIPANT_ID, completion_code, completion_url, participant_name, study_token
from evalharness.annotation.plan import MAX_HIT_SIZE, Plan
from evalharness.records import TYPICALITY_INSTRUCTIONS, is_rating, scale_json
from evalharness.annotation.store import Annotator, JudgementStore, Rejected
from evalharness.errors import UserError

logger = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
STATIC = Path(__file__).parent / "static"
PAGES = {"/": ("annotate.html", "text/html; charset=utf-8"),
         "/static/annotate.js": ("annotate.js", "text/javascript; charset=utf-8"),
         "/static/annotate.css": ("annotate.css", "text/css; charset=utf-8")}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = [(b"content-security-policy", CSP.encode()), (b"referrer-policy", b"no-referrer"),
                    (b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                    (b"cross-origin-opener-policy", b"same-origin"), (b"cache-control", b"no-store")]
INSTRUCTIONS_MARK = b"<!--instructions-->"
"""Where annotate.html takes the instructions (evalharness.records.TYPICALITY_INSTRUCTIONS)."""
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class SecurityHeaders:
    """ASGI middleware: the security headers on every HTTP response, errors included."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in SECURITY_HEADERS}
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message = {**message, "headers": kept + SECURITY_HEADERS}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def json_body(request: Request) -> dict:
    """The request's JSON object, read up to MAX_BODY bytes; Rejected otherwise."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise Rejected("send the body as Content-Type: application/json", 415)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise Rejected(f"request body over {MAX_BODY} bytes", 413)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise Rejected(f"request body over {MAX_BODY} bytes", 413)
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Rejected("malformed JSON") from None
    if not isinstance(data, dict):
        raise Rejected("the body must be a JSON object")
    return data


def check_keys(obj: dict, keys: set[str], what: str) -> None:
    if set(obj) != keys:
        wrong = sorted(set(obj) ^ keys)[0]
        raise Rejected(f"{what}: expected exactly the keys {', '.join(sorted(keys))} ({wrong!r} is missing or unknown)")


def parse_ratings(body: dict) -> list[tuple[str, int]]:
    """The ratings of a submission, checked for shape only (the HIT is checked by the store)."""
    check_keys(body, {"token", "hit_id", "ratings"}, "body")
    if not isinstance(body["hit_id"], str):
        raise Rejected("hit_id: must be a string")
    ratings = body["ratings"]
    if not isinstance(ratings, list) or not 1 <= len(ratings) <= MAX_HIT_SIZE:
        raise Rejected(f"ratings: must be a list of 1 to {MAX_HIT_SIZE} ratings")
    parsed = []
    for rating in ratings:
        if not isinstance(rating, dict):
            raise Rejected("ratings: each rating must be an object {item_id, typicality}")
        check_keys(rating, {"item_id", "typicality"}, "rating")
        if not isinstance(rating["item_id"], str):
            raise Rejected("item_id: must be a string")
        if not is_rating(rating["typicality"]):
            raise Rejected(f"typicality: must be an integer from 1 to 6, not {json.dumps(rating['typicality'])[:20]}")
        parsed.append((rating["item_id"], rating["typicality"]))
    if len({item_id for item_id, _ in parsed}) != len(parsed):
        raise Rejected("ratings: an item is rated twice in one submission")
    return parsed


def static_file(name: str) -> bytes:
    """A static file; the page gets the rating instructions from their one source (records)."""
    content = (STATIC / name).read_bytes()
    return content.replace(INSTRUCTIONS_MARK, html.escape(TYPICALITY_INSTRUCTIONS).encode())


class Endpoints:
    """The request handlers; each turns a Rejected into its JSON error answer."""

    def __init__(self, plan: Plan, store: JudgementStore) -> None:
        self.plan, self.store = plan, store
        self.pages = {path: (static_file(name), kind) for path, (name, kind) in PAGES.items()}

    def authenticated(self, token) -> Annotator:
        if not isinstance(token, str) or not token:
            raise Rejected("token: missing")
        annotator = self.store.authenticate(token)
        if annotator is None:
            raise Rejected("unknown token", 403)
        return annotator

    async def page(self, request: Request) -> Response:
        content, kind = self.pages[request.url.path]
        return Response(content, media_type=kind)

    async def get_hit(self, request: Request) -> Response:
        try:
            annotator = self.authenticated(request.query_params.get("token"))
        except Rejected as exc:
            return error(str(exc), exc.status)
        return JSONResponse(hit_payload(self.plan, self.store, annotator))

    async def post_ratings(self, request: Request) -> Response:
        try:
            body = await json_body(request)
            ratings = parse_ratings(body)
            saved = self.store.submit(self.authenticated(body["token"]), body["hit_id"], ratings)
        except Rejected as exc:
            return error(str(exc), exc.status)
        return JSONResponse({"saved": saved})

    async def join_prolific(self, request: Request) -> Response:
        try:
            body = await json_body(request)
            check_keys(body, {"study", "participant"}, "body")
            return JSONResponse({"token": prolific_token(self.plan, self.store, body["study"], body["participant"])})
        except Rejected as exc:
            return error(str(exc), exc.status)


async def http_error(request: Request, exc: HTTPException) -> Response:
    """Starlette's own 404 / 405 answers, as JSON errors like ours."""
    return error(exc.detail, exc.status_code)


async def no_icon(request: Request) -> Response:
    return Response(status_code=204)


def create_app(plan: Plan, store: JudgementStore):
    endpoints = Endpoints(plan, store)
    routes = [Route(path, endpoints.page, methods=["GET"]) for path in PAGES]
    routes += [Route("/favicon.ico", no_icon, methods=["GET"]),
               Route("/api/hit", endpoints.get_hit, methods=["GET"]),
               Route("/api/ratings", endpoints.post_ratings, methods=["POST"]),
               Route("/api/prolific", endpoints.join_prolific, methods=["POST"])]
    return SecurityHeaders(Starlette(routes=routes, exception_handlers={HTTPException: http_error}))


def hit_payload(plan: Plan, store: JudgementStore, annotator: Annotator) -> dict:
    hit = store.current_or_next_hit(annotator)
    done, total = store.progress(annotator)
    payload = {"hit_id": None, "items": [], "scale": scale_json(), "done": done, "total": total}
    if hit is None:
        if annotator.group_only and done:
            code = completion_code(plan, annotator.group_only)
            payload.update(completion_code=code, completion_url=completion_url(code))
        return payload
    saved = store.ratings_of(annotator, hit.item_ids)
    items = []
    for item_id in hit.item_ids:
        item = plan.items[item_id]
        shown = {"item_id": item_id, "text": item.text, "typicality": saved.get(item_id)}
        if plan.options.with_context:
            shown["context"] = item.context
        items.append(shown)
    return {**payload, "hit_id": hit.hit_id, "items": items}


def prolific_token(plan: Plan, store: JudgementStore, study, participant) -> str:
    if not isinstance(study, str) or not isinstance(participant, str) or not PARTICIPANT_ID.match(participant):
        raise Rejected("participant: expected Prolific's participant id (letters, digits, _ or -)")
    group_id = None
    for group in plan.groups:  # every study token compared, in constant time each
        if hmac.compare_digest(study_token(plan, group.group_id).encode(), study.encode()):
            group_id = group.group_id
    if group_id is None:
        raise Rejected("unknown study", 403)
    return store.token_for(participant_name(plan, group_id, participant), "prolific", group_id)


def check_port(host: str, port: int) -> None:
    """Fail with one line before uvicorn would, if the address cannot be listened on."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        raise UserError(f"--port {port}: cannot listen on {host}:{port} ({exc.strerror or exc}); "
                        "choose another --port or --host") from None


def serve(plan: Plan, store: JudgementStore, host: str, port: int) -> None:
    import uvicorn

    check_port(host, port)
    if host not in LOOPBACK:
        logger.warning("--host %s: the rating page is reachable from the network; anyone who has a link can "
                       "rate with it. It speaks plain HTTP: put it behind an HTTPS proxy before sharing links "
                       "over the internet.", host)
    # access_log off: request lines carry personal tokens in their query strings
    config = uvicorn.Config(create_app(plan, store), host=host, port=port, access_log=False, log_level="warning",
                            server_header=False, lifespan="off")
    uvicorn.Server(config).run()
