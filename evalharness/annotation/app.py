"""The rating page and its JSON API: a Starlette app served by uvicorn.

Starlette rather than FastAPI: the API is three small endpoints whose validation must answer
400 with our own one-line JSON errors (FastAPI's request models answer 422 in their own
shape, and bring pydantic for nothing else here); Starlette is the ASGI toolkit FastAPI is
built on, so nothing is lost.

  GET  /                      the page (static HTML). Personal links carry the token in the
                              fragment (/#token=T), which browsers never send: the script moves
                              it into memory (sessionStorage, for reloads) and removes it from the
                              address bar. An old link /?token=T is redirected once to /#token=T.
  GET  /static/annotate.js    its script, /static/annotate.css its style (fixed files, no paths
                              from requests)
  GET  /api/hit               the annotator's current HIT (resume) or the next free one:
                              {"hit_id", "items": [{"item_id", "text", "typicality"}], "scale",
                              "done", "total"}; {"hit_id": null, ...} when there is none left
  POST /api/ratings           {"hit_id", "ratings": [{"item_id", "typicality"}]} -> {"saved": n}:
                              one or more ratings (the page saves each as it is made), one
                              transaction; 409 when the HIT passed to someone else meanwhile
  POST /api/prolific          {"study", "participant"} -> {"token"}: a Prolific participant's
                              personal token for the one HIT of their study; 409 when its places
                              are all taken

The API takes the token in an `Authorization: Bearer T` header, never in a URL: request lines
end up in browser history and proxy logs. No token reaches a log line (no access log; errors
are logged without the request's values).

Every malformed request is answered with a JSON 4xx, {"error": "..."}, and stores nothing;
an unexpected failure with a JSON 500, and a store busy beyond its short wait (another process
writing) with a JSON 503. Database work runs in worker threads, off the event loop.

Security: every response carries a Content-Security-Policy without inline script, style or
anything from elsewhere, plus no-referrer, nosniff and no framing; API answers are never
cached; request bodies are limited to MAX_BODY bytes and must be JSON; the page renders every
text with textContent.
"""

from __future__ import annotations

import functools
import hmac
import html
import json
import logging
import re
import socket
import sqlite3
import traceback
from pathlib import Path
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, RedirectResponse, Response
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
TOKEN = re.compile(r"[A-Za-z0-9_-]{1,128}")


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
    except (ValueError, UnicodeError):
        raise Rejected("malformed JSON") from None
    except RecursionError:
        raise Rejected("JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise Rejected("the body must be a JSON object")
    return data


def check_keys(obj: dict, keys: set[str], what: str) -> None:
    if set(obj) != keys:
        wrong = sorted(set(obj) ^ keys)[0]
        raise Rejected(f"{what}: expected exactly the keys {', '.join(sorted(keys))} ({wrong!r} is missing or unknown)")


def text_field(value, name: str) -> str:
    """A string that is valid Unicode (JSON can carry a lone surrogate, "\\ud800", which no
    UTF-8 encoder, SQLite's included, accepts)."""
    if not isinstance(value, str):
        raise Rejected(f"{name}: must be a string")
    try:
        value.encode("utf-8")
    except UnicodeError:
        raise Rejected(f"{name}: not valid Unicode (a lone surrogate?)") from None
    return value


def bearer_token(request: Request) -> str:
    """The token of an `Authorization: Bearer T` header (400 without one, 403 for a malformed one)."""
    if "token" in request.query_params:
        raise Rejected("send the token in an Authorization: Bearer header, not in the URL")
    header = request.headers.get("authorization")
    if not header:
        raise Rejected("token: missing; send it in an Authorization: Bearer header", 401)
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not TOKEN.fullmatch(token.strip()):
        raise Rejected("unknown token", 403)
    return token.strip()


def parse_ratings(body: dict) -> list[tuple[str, int]]:
    """The ratings of a submission, checked for shape only (the HIT is checked by the store)."""
    check_keys(body, {"hit_id", "ratings"}, "body")
    text_field(body["hit_id"], "hit_id")
    ratings = body["ratings"]
    if not isinstance(ratings, list) or not 1 <= len(ratings) <= MAX_HIT_SIZE:
        raise Rejected(f"ratings: must be a list of 1 to {MAX_HIT_SIZE} ratings")
    parsed = []
    for rating in ratings:
        if not isinstance(rating, dict):
            raise Rejected("ratings: each rating must be an object {item_id, typicality}")
        check_keys(rating, {"item_id", "typicality"}, "rating")
        text_field(rating["item_id"], "item_id")
        if not is_rating(rating["typicality"]):
            raise Rejected(f"typicality: must be an integer from 1 to 6, not {json.dumps(rating['typicality'])[:20]}")
        parsed.append((rating["item_id"], rating["typicality"]))
    if len({item_id for item_id, _ in parsed}) != len(parsed):
        raise Rejected("ratings: an item is rated twice in one submission")
    return parsed


def answered(handler):
    """An endpoint whose failures are JSON answers: Rejected -> its status; a store busy past
    its short wait -> 503; anything else -> 500, logged without the request's values."""
    @functools.wraps(handler)
    async def guarded(self, request: Request) -> Response:
        try:
            return await handler(self, request)
        except Rejected as exc:
            return error(str(exc), exc.status)
        except ClientDisconnect:
            return error("the request body did not arrive whole", 400)
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                response = error("the store is busy (another process is writing); try again in a moment", 503)
                response.headers["retry-after"] = "2"
                return response
            return internal_error(request, exc)
        except Exception as exc:  # noqa: BLE001 - answered as JSON; logged below
            return internal_error(request, exc)
    return guarded


def internal_error(request: Request, exc: BaseException) -> Response:
    """The failure's type and where it happened, never its message (it could quote a request's values)."""
    where = "".join(traceback.format_tb(exc.__traceback__)[-3:])
    logger.error("%s %s failed with %s; nothing was stored\n%s", request.method, request.url.path,
                 type(exc).__name__, where.rstrip())
    return error("the server could not handle this request; nothing was stored", 500)


def static_file(name: str) -> bytes:
    """A static file; the page gets the rating instructions from their one source (records)."""
    content = (STATIC / name).read_bytes()
    return content.replace(INSTRUCTIONS_MARK, html.escape(TYPICALITY_INSTRUCTIONS).encode())


class Endpoints:
    """The request handlers. Store calls run in worker threads (the store serialises them)."""

    def __init__(self, plan: Plan, store: JudgementStore) -> None:
        self.plan, self.store = plan, store
        self.pages = {path: (static_file(name), kind) for path, (name, kind) in PAGES.items()}

    async def authenticated(self, request: Request) -> Annotator:
        annotator = await run_in_threadpool(self.store.authenticate, bearer_token(request))
        if annotator is None:
            raise Rejected("unknown token", 403)
        return annotator

    async def page(self, request: Request) -> Response:
        token = request.query_params.get("token")
        if request.url.path == "/" and token is not None and TOKEN.fullmatch(token):
            return RedirectResponse("/#token=" + quote(token), status_code=303)  # an old ?token= link
        content, kind = self.pages[request.url.path]
        return Response(content, media_type=kind)

    @answered
    async def get_hit(self, request: Request) -> Response:
        annotator = await self.authenticated(request)
        return JSONResponse(await run_in_threadpool(hit_payload, self.plan, self.store, annotator))

    @answered
    async def post_ratings(self, request: Request) -> Response:
        annotator = await self.authenticated(request)
        body = await json_body(request)
        ratings = parse_ratings(body)
        saved = await run_in_threadpool(self.store.submit, annotator, body["hit_id"], ratings)
        return JSONResponse({"saved": saved})

    @answered
    async def join_prolific(self, request: Request) -> Response:
        body = await json_body(request)
        check_keys(body, {"study", "participant"}, "body")
        token = await run_in_threadpool(prolific_token, self.plan, self.store, body["study"], body["participant"])
        return JSONResponse({"token": token})


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
    text_field(study, "study")
    if not isinstance(participant, str) or not PARTICIPANT_ID.fullmatch(participant):
        raise Rejected("participant: expected Prolific's participant id (letters, digits, _ or -)")
    group_id = None
    for group in plan.groups:  # every study token compared, in constant time each
        if hmac.compare_digest(study_token(plan, group.group_id).encode(), study.encode()):
            group_id = group.group_id
    if group_id is None:
        raise Rejected("unknown study", 403)
    return store.join_study(participant_name(plan, group_id, participant), group_id)


def listen(host: str, port: int) -> socket.socket:
    """The listening socket the server will use (port 0: any free port, read back with
    getsockname), bound here so that a busy port is one line before uvicorn starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise UserError(f"--port {port}: cannot listen on {host}:{port} ({exc.strerror or exc}); "
                        "choose another --port or --host") from None
    sock.set_inheritable(True)
    return sock


def serve(plan: Plan, store: JudgementStore, sock: socket.socket, host: str) -> None:
    """Serve on `sock` (from listen(host, port)) until stopped."""
    import uvicorn

    if host not in LOOPBACK:
        logger.warning("--host %s: the rating page is reachable from the network; anyone who has a link can "
                       "rate with it. It speaks plain HTTP: put it behind an HTTPS proxy before sharing links "
                       "over the internet.", host)
    # access_log off: an old link's request line carries its token in the query string
    config = uvicorn.Config(create_app(plan, store), access_log=False, log_level="warning", server_header=False,
                            lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])
