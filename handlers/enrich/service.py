"""The enrich capability's one object that talks to the outside: providers, cache, limits, state.

:class:`EnrichService` (one per process, :func:`enrich_service`) owns the provider clients
(:mod:`.providers`), the persistent response cache and OMDb's daily budget (:mod:`.cache`), one
rate limiter per provider (aiolimiter: TMDb ``requests_per_second``, MusicBrainz 1/s, OMDb
5/s), and each item's enrichment state (``enrich_state``). The ``enrich`` step and the
background task both call :meth:`EnrichService.enrich_item`.

An item is identified by identifiers first (a person's pin, a ``[tmdbid-603]`` tag, an IMDb id
in a name, an ``.nfo`` or source metadata: :mod:`.ids`), else by a scored TMDb search
(:mod:`.match`): only a strong, unambiguous match is applied; anything else is stored as
candidates and the item is ``needs_review``. What is applied is written to ``items.enrichment``
in the shape :func:`handlers.enrich.shape.compose` documents; fields a person edited
(``locked``) keep the person's values.

Only the cleaned title, year and ids leave the machine, never a path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from aiolimiter import AsyncLimiter

from handlers.enrich import shape
from handlers.enrich.cache import DailyBudget, ResponseCache
from handlers.enrich.config import EnrichConfig, api_key, enrich_config
from handlers.enrich.ids import Ids, ids_from_name, ids_from_nfo, ids_from_source_meta, merge_ids
from handlers.enrich.match import (
    Candidate,
    Decision,
    Query,
    candidates_from_tmdb,
    decide,
    decide_by_id,
    score,
    search_plan,
    unique,
)
from handlers.enrich.providers import BadKey, NotFound, ProviderError, RateLimited, Unavailable
from harbord import offload
from harbord.events import make_event
from harbord.fsio import write_atomic
from harbord.pathtext import from_db

if TYPE_CHECKING:
    from harbord.context import Context

log = structlog.get_logger(__name__)

SHARED_KEY = "enrich"
KINDS = {"movie": "movie", "episode": "tv"}
"""Media types enrichment applies to, and the TMDb kind searched for each."""
RETRY_MAX_SECONDS = 6 * 3600.0
OMDB_PER_SECOND = 5.0
MUSICBRAINZ_SPACING = 1.05
"""Seconds per MusicBrainz token: 1 request/s is MusicBrainz's limit, and a token handed out
exactly 1.000 s after the last one can reach the server a few ms early; 5% keeps every 1 s
window at one request (bench/enrich.py measured 2 in one window at 1.00)."""
PROVIDER_THREADS = {"tmdb": 4, "omdb": 2, "musicbrainz": 1}
DOWN_SECONDS = 5.0
"""How long a provider that failed with a network error or a 5xx is skipped (items go pending)."""
GATE_SECONDS = 120.0
"""Longest a request waits for its provider's rate limiter."""
POLL_SECONDS = 2.0
"""Longest the background task sleeps between looks at ``enrich_state``: items another process
made due (``harbord enrich``/``match``/``edit`` while the daemon runs, which cannot set this
process's :attr:`EnrichService.wake`) are started within this many seconds."""


class TryLater(Exception):  # noqa: N818 - an outcome: the item's enrichment stays pending
    """A provider could not answer now (network, timeout, 5xx, 429); ``retry_after`` seconds
    when the provider said so."""

    def __init__(self, message: str, retry_after: float | None = None, *, skipped: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.skipped = skipped
        """The provider was not asked (it failed a moment ago): not an attempt of the item's."""


@dataclass
class Outcome:
    """What :meth:`EnrichService.enrich_item` did: ``status`` (``done``, ``pending``,
    ``needs_review``, ``none``), the stored ``enrichment`` shape, and ``why``."""

    status: str
    enrichment: dict[str, Any]
    why: str


class EnrichService:
    """See the module docstring. Every method runs on the event loop thread that owns
    ``ctx.db``; provider HTTP runs in worker threads."""

    def __init__(self, ctx: Context, clients: Mapping[str, Any] | None = None) -> None:
        self.ctx = ctx
        self.cfg: EnrichConfig = enrich_config(ctx.config)
        self.cache = ResponseCache(ctx.db, self.cfg.cache_ttl_days, self.cfg.negative_ttl_days)
        self.budget = DailyBudget(ctx.db, "omdb", self.cfg.omdb.daily_budget)
        self.limiters = {
            "tmdb": AsyncLimiter(self.cfg.tmdb.requests_per_second, 1.0),
            "omdb": AsyncLimiter(OMDB_PER_SECOND, 1.0),
            "musicbrainz": AsyncLimiter(1, MUSICBRAINZ_SPACING),
        }
        self._threads = {provider: ThreadPoolExecutor(count, thread_name_prefix=f"enrich-{provider}")
                         for provider, count in PROVIDER_THREADS.items()}
        """Each provider's own worker threads: a provider waiting for its rate limit (MusicBrainz
        serialises its module-global client) never holds a thread the chain's file work needs."""
        self.down_until: dict[str, float] = {}
        """Provider -> monotonic time before which it is not asked again after a network failure
        (a down service costs each item a state write, not a refused connection per request)."""
        self._clients: dict[str, Any] = dict(clients or {})
        self.paused: dict[str, str] = {}
        """Provider -> why it is skipped (no key, bad key); said once in the log."""
        self.requests: dict[str, int] = {"tmdb": 0, "omdb": 0, "musicbrainz": 0}
        self.wake = asyncio.Event()
        """Set to make the background task look for due items now."""
        ctx.shared(f"{SHARED_KEY}-{id(self)}", lambda: self, close=lambda s: s.aclose())
        """Closed (its threads stopped) with the context, like the shared service."""

    # providers ---------------------------------------------------------------------------
    def client(self, provider: str) -> Any | None:
        """The provider's client, built on first use; None when it has no key, is disabled or
        is paused after a bad key (the reason is logged once)."""
        if provider in self.paused:
            return None
        if provider in self._clients:
            return self._clients[provider]
        timeout = self.cfg.timeout_seconds
        gate = self._gate(provider)
        client: Any = None
        if provider == "tmdb":
            key = api_key(self.cfg.tmdb.api_key, "tmdb")
            if key:
                from handlers.enrich.providers.tmdb import Tmdb

                client = Tmdb(self.cfg.tmdb.base_url, key, self.cfg.tmdb.language, timeout,
                              before_request=gate)
        elif provider == "omdb":
            key = api_key(self.cfg.omdb.api_key, "omdb")
            if key:
                from handlers.enrich.providers.omdb import Omdb

                client = Omdb(self.cfg.omdb.base_url, key, timeout, before_request=gate)
        elif provider == "musicbrainz" and self.cfg.musicbrainz.enabled:
            from handlers.enrich.providers.musicbrainz import MusicBrainz
            from harbord import __version__

            client = MusicBrainz(self.cfg.musicbrainz.host, self.cfg.musicbrainz.https, timeout,
                                 __version__, contact=self.cfg.musicbrainz.contact or None,
                                 before_request=gate)
        if client is None:
            self._pause(provider, "no API key configured" if provider != "musicbrainz" else "disabled")
            return None
        self._clients[provider] = client
        return client

    def _gate(self, provider: str) -> Callable[[], None]:
        """What a client calls (in its worker thread) before each HTTP request: take a token
        from the provider's limiter on the event loop, so a call that makes several requests
        (TMDb details + credits, MusicBrainz lookups) stays within the rate too. Counts the
        requests (:attr:`requests`)."""
        loop = asyncio.get_running_loop()
        limiter = self.limiters[provider]

        def wait_for_token() -> None:
            try:  # bounded: a loop that stops (shutdown) must not leave this thread waiting
                asyncio.run_coroutine_threadsafe(limiter.acquire(), loop).result(timeout=GATE_SECONDS)
            except (TimeoutError, RuntimeError) as err:
                raise Unavailable(provider, f"no request slot within {GATE_SECONDS:g} s") from err
            self.requests[provider] += 1

        return wait_for_token

    def _pause(self, provider: str, why: str) -> None:
        if provider not in self.paused:
            self.paused[provider] = why
            log.warning("enrichment provider skipped", provider=provider, reason=why)

    async def call(self, provider: str, op: str, *args: Any) -> Any:
        """``client(provider).<op>(*args)``: from the cache when known, else behind the
        provider's limiter (and OMDb's daily budget) in a worker thread, the answer cached.

        Raises NotFound (also from the cache), BadKey (the provider is paused: no key, or the
        key was refused), TryLater (RateLimited or Unavailable: try again later).
        """
        key = f"{op}:{json.dumps(args, sort_keys=True, default=str)}"
        cached = self.cache.get(provider, key)
        if cached is not None:
            if cached.status == "not_found":
                raise NotFound(provider, f"{op} {args}: not found (cached)")
            return json.loads(cached.body)
        client = self.client(provider)
        if client is None:
            raise BadKey(provider, self.paused.get(provider, "unavailable"))
        if (left := self.down_until.get(provider, 0.0) - time.monotonic()) > 0:
            raise TryLater(f"{provider}: unavailable a moment ago; not asked again yet",
                           retry_after=left, skipped=True)
        if provider == "omdb" and not self.budget.take():
            raise TryLater(f"omdb: daily budget of {self.budget.limit} requests spent",
                           retry_after=_seconds_to_utc_midnight())
        loop = asyncio.get_running_loop()
        try:  # the client takes a limiter token before each request it makes (_gate)
            data = await loop.run_in_executor(self._threads[provider], lambda: getattr(client, op)(*args))
        except NotFound:
            self.cache.put(provider, key, "not_found", "null")
            raise
        except BadKey as err:
            self._pause(provider, f"the API key was refused ({err}); change it in the config")
            raise
        except RateLimited as err:
            raise TryLater(str(err), err.retry_after) from err
        except Unavailable as err:
            self.down_until[provider] = time.monotonic() + DOWN_SECONDS
            raise TryLater(str(err)) from err
        self.down_until.pop(provider, None)
        self.cache.put(provider, key, "ok", json.dumps(data, default=str))
        return data

    async def _optional(self, provider: str, op: str, *args: Any) -> Any | None:
        """:meth:`call` for a secondary provider: None when it has nothing or is skipped;
        TryLater still propagates (the item stays pending for it)."""
        try:
            return await self.call(provider, op, *args)
        except (NotFound, BadKey):
            return None

    # identification ----------------------------------------------------------------------
    def _ids(self, item: Mapping[str, Any]) -> Ids:
        """Identifiers the file names, an ``.nfo`` sidecar and the source's metadata give."""
        layers = []
        for f in item.get("files") or []:
            parts = Path(str(f["path"])).parts[-3:]
            layers.append(ids_from_name(parts))
        for kind, path in (item.get("sidecars") or {}).items():
            if kind == "nfo":
                with contextlib.suppress(OSError):  # a vanished sidecar: no ids from it
                    layers.append(ids_from_nfo(Path(path).read_bytes()[:1_000_000]))
        meta = (item.get("parsed") or {}).get("source_meta")
        if isinstance(meta, Mapping):
            layers.append(ids_from_source_meta(meta))
        return merge_ids(*layers) if layers else merge_ids()

    async def _details(self, kind: str, tmdb_id: int) -> dict[str, Any]:
        data: dict[str, Any] = await self.call("tmdb", "movie" if kind == "movie" else "tv", tmdb_id)
        return data

    async def _identify(self, item: Mapping[str, Any], kind: str, pin: Mapping[str, Any] | None
                        ) -> tuple[Decision, dict[str, Any] | None]:
        """The decision on the item's identity, and the TMDb details of an applied one."""
        year = item.get("year") if isinstance(item.get("year"), int) else None
        details: dict[str, Any] | None
        if pin:
            if "tmdb" in pin:
                pinned = await self._details(str(pin.get("kind", kind)), int(pin["tmdb"]))
                cand = Candidate.from_tmdb(pinned, "movie" if pin.get("kind", kind) == "movie" else "tv")
                return decide_by_id(cand, None), pinned
            if "imdb" in pin:
                return await self._by_imdb(str(pin["imdb"]), kind, None)
        ids = self._ids(item)
        if ids.tmdb_id is not None:
            try:
                details = await self._details(kind, int(ids.tmdb_id))
            except NotFound:
                details = None
            if details is not None:
                return decide_by_id(Candidate.from_tmdb(details, kind), year), details  # type: ignore[arg-type]
        if ids.imdb_id:
            decision, details = await self._by_imdb(ids.imdb_id, kind, year)
            if decision.status != "none":
                return decision, details
        title = str(item.get("title") or "").strip()
        query = Query(title=title, year=year, kind=kind,  # type: ignore[arg-type]
                      season=item.get("season") if isinstance(item.get("season"), int) else None)
        seen: list[Candidate] = []
        raw: dict[int, dict[str, Any]] = {}
        decision = decide([])
        for search in search_plan(title, year, kind):  # type: ignore[arg-type]
            op = "search_movie" if kind == "movie" else "search_tv"
            try:
                results = await self.call("tmdb", op, search.title, search.year)
            except NotFound:
                results = []
            for result in results:
                if isinstance(result, Mapping) and "id" in result:
                    raw.setdefault(int(result["id"]), dict(result))
            seen = unique([*seen, *candidates_from_tmdb({"results": results}, kind)])  # type: ignore[arg-type]
            decision = decide([score(query, c) for c in seen])
            if decision.status == "applied":
                break
        if decision.status != "applied" or decision.best is None:
            return decision, None
        best = decision.best.candidate.provider_id
        try:
            return decision, await self._details(kind, best)
        except NotFound:  # details gone (or not served): what the search said is still known
            return decision, raw.get(best)

    async def _by_imdb(self, imdb_id: str, kind: str, year: int | None
                       ) -> tuple[Decision, dict[str, Any] | None]:
        try:
            found = await self.call("tmdb", "find_imdb", imdb_id)
        except NotFound:
            return decide([]), None
        results = found.get("movie_results" if kind == "movie" else "tv_results") or []
        other = found.get("tv_results" if kind == "movie" else "movie_results") or []
        if not results and other:  # the name said movie, the id says TV (or the reverse)
            kind, results = ("tv" if kind == "movie" else "movie"), other
        if not results:
            return decide([]), None
        details = await self._details(kind, int(results[0]["id"]))
        return decide_by_id(Candidate.from_tmdb(details, kind), year), details  # type: ignore[arg-type]

    # the whole item ----------------------------------------------------------------------
    async def enrich_item(self, item_id: int, *, refresh: bool = False) -> Outcome:
        """Enrich catalog item ``item_id``; see the module docstring. ``refresh``: forget the
        item's cached answers first (``harbord enrich --refresh``). Never raises for provider
        trouble: a provider that cannot answer now leaves the item ``pending`` (retried with
        backoff by :func:`background`). Raises UnknownItemError for an unknown item."""
        from harbord.errors import UnknownItemError

        item = self.ctx.catalog.get_item(item_id)
        if item is None:
            raise UnknownItemError(f"no item {item_id}")
        old: dict[str, Any] = item["enrichment"] if isinstance(item.get("enrichment"), dict) else {}
        kind = KINDS.get(str(item.get("media_type")))
        if not self.cfg.enabled or kind is None:
            why = ("enrichment is off" if not self.cfg.enabled
                   else f"not a movie or episode ({item.get('media_type')})")
            return self._store(item_id, old, {"status": "none", "why": why}, "none", why)
        state = self._state(item_id)
        pin = json.loads(state["pin"]) if state and state.get("pin") else None
        if refresh:
            self._forget(item)
        try:
            if self.client("tmdb") is None:
                why = f"TMDb skipped: {self.paused.get('tmdb')}"
                return self._store(item_id, old, {"status": "none", "why": why}, "none", why)
            decision, details = await self._identify(item, kind, pin)
            if decision.status != "applied" or details is None:
                status = "needs_review" if decision.status == "needs_review" else "none"
                new: dict[str, Any] = {
                    "status": status, "candidates": [s.to_dict() for s in decision.candidates[:10]],
                       "why": decision.reason, "warnings": list(decision.warnings)}
                return self._store(item_id, old, new, status, decision.reason)
            new = await self._facts(item, kind, details, decision, pin is not None)
        except TryLater as err:
            return self._pending(item_id, old, str(err), err.retry_after, skipped=err.skipped)
        except BadKey as err:
            why = str(err)
            return self._store(item_id, old, {"status": "none", "why": why}, "none", why)
        except ProviderError as err:  # not found where an answer was expected
            why = str(err)
            return self._store(item_id, old, {"status": "none", "why": why}, "none", why)
        outcome = self._store(item_id, old, new, "done", new["why"])
        self._announce(item_id, outcome.enrichment)
        return outcome

    async def _facts(self, item: Mapping[str, Any], kind: str, details: dict[str, Any],
                     decision: Decision, pinned: bool) -> dict[str, Any]:
        """Everything the providers say about the identified item, as the stored shape."""
        tmdb_id = int(details["id"])
        episode = None
        season, number = item.get("season"), item.get("episode")
        if kind == "tv" and isinstance(season, int) and str(number).isdigit():
            try:
                episode = await self.call("tmdb", "episode", tmdb_id, season, int(str(number)))
            except NotFound:
                episode = None
        imdb_id = shape.imdb_id_of(details)
        omdb = await self._optional("omdb", "by_imdb", imdb_id) if imdb_id else None
        soundtrack = None
        if kind == "movie" and imdb_id:
            soundtrack = await self._soundtrack(item, details, imdb_id)
        artwork = await self._artwork(item, details)
        why = "pinned by a person" if pinned else decision.reason
        return shape.compose(kind=kind, details=details, episode=episode, omdb=omdb,
                             soundtrack=soundtrack, artwork=artwork, decision=decision, why=why)

    async def _soundtrack(self, item: Mapping[str, Any], details: Mapping[str, Any], imdb_id: str
                          ) -> dict[str, Any] | None:
        """The film's soundtrack: a person's entry wins; else MusicBrainz by the IMDb URL
        relationship, else a strict soundtrack search by title and year; else None."""
        row = self.ctx.db.execute("SELECT source, release_group_id, tracks FROM soundtracks "
                                  "WHERE item_id = ?", [item["id"]]).fetchone()
        if row is not None and row[0] == "user":
            return {"source": "user", "release_group_id": row[1], "tracks": json.loads(row[2])}
        groups = await self._optional("musicbrainz", "soundtracks_for_imdb", imdb_id)
        if not groups:
            title = details.get("title") or details.get("name")
            year = shape.year_of(details.get("release_date"))
            groups = await self._optional("musicbrainz", "search_soundtrack", title, year) if title else None
        if not groups:
            return None
        group = groups[0]
        tracks = await self._optional("musicbrainz", "tracks", group["id"])
        if tracks is None:
            return None
        found = {"source": "musicbrainz", "release_group_id": group["id"], "title": group.get("title"),
                 "tracks": tracks.get("tracks", [])}
        self.ctx.db.execute(
            "INSERT INTO soundtracks(item_id, source, release_group_id, tracks, updated_at) VALUES "
            "(?, ?, ?, ?, ?) ON CONFLICT(item_id) DO UPDATE SET source = excluded.source, "
            "release_group_id = excluded.release_group_id, tracks = excluded.tracks, "
            "updated_at = excluded.updated_at WHERE soundtracks.source != 'user'",
            [item["id"], "musicbrainz", group["id"], json.dumps(found["tracks"]), time.time()])
        return found

    async def _artwork(self, item: Mapping[str, Any], details: Mapping[str, Any]) -> dict[str, str]:
        """Poster (``w500``) and backdrop (``w1280``) stored once beside the item's object as
        ``<h>-poster.jpg`` / ``<h>-fanart.jpg`` (Kodi/Jellyfin names:
        https://kodi.wiki/view/Artwork_types); a poster a source or the user supplied is kept."""
        out: dict[str, str] = {}
        obj = (item.get("object") or {}).get("path")
        digest = item.get("object_hash")
        if not obj or not digest:
            return out
        # (kind, source, path) of the item's sidecars; a "tmdb:" source is artwork fetched here
        # for the identity of that time, which a later identity (harbord match) replaces
        kept = [(str(k), from_db(src), from_db(path)) for k, src, path in self.ctx.db.execute(
            "SELECT kind, source, path FROM sidecars WHERE item_id = ? ORDER BY id", [item["id"]])]
        supplied = {k: path for k, src, path in kept if not src.startswith("tmdb:")}
        for kind, field, size, suffix in (("poster", "poster_path", "w500", "poster"),
                                           ("fanart", "backdrop_path", "w1280", "fanart")):
            existing = ((supplied.get("cover") or supplied.get("poster")) if kind == "poster"
                        else supplied.get(kind))
            if existing:
                out["poster" if kind == "poster" else "backdrop"] = str(existing)
                continue
            path = details.get(field)
            if not isinstance(path, str) or not path:
                continue
            source = f"tmdb:{size}{path}"
            target = Path(obj).with_name(f"{digest}-{suffix}{Path(path).suffix or '.jpg'}")
            if not (target.exists() and (kind, source) in {(k, src) for k, src, _ in kept}):
                client = self.client("tmdb")
                if client is None:
                    continue
                try:
                    images = (await self.call("tmdb", "configuration")).get("images") or {}
                    base = images.get("secure_base_url") or images.get("base_url")
                    data = await asyncio.get_running_loop().run_in_executor(
                        self._threads["tmdb"], client.image, path, size, base)
                    await offload.io(write_atomic, target, data)
                except (ProviderError, TryLater, ValueError, OSError) as err:
                    log.warning("artwork not stored", item_id=item["id"], error=str(err))
                    continue
                self.ctx.db.execute("DELETE FROM sidecars WHERE item_id = ? AND kind = ? AND "
                                    "source LIKE 'tmdb:%' AND source != ?", [item["id"], kind, source])
            self.ctx.catalog.add_sidecar(int(item["id"]), kind, source, str(target),
                                         target.stat().st_size, None)
            out["poster" if kind == "poster" else "backdrop"] = str(target)
        return out

    # state -------------------------------------------------------------------------------
    def _state(self, item_id: int) -> dict[str, Any] | None:
        rows = list(self.ctx.db.query("SELECT * FROM enrich_state WHERE item_id = ?", [item_id]))
        return rows[0] if rows else None

    def _forget(self, item: Mapping[str, Any]) -> None:
        """Drop the cached answers a refresh must ask again (all of TMDb's search and details
        for this title are keyed by title/id; the simplest correct choice is every provider's
        entries for this item's title and ids)."""
        title = json.dumps(str(item.get("title") or ""))[1:-1]
        self.ctx.db.execute("DELETE FROM enrich_cache WHERE key LIKE ?", [f"%{title}%"])
        enrichment = item.get("enrichment") or {}
        for value in (enrichment.get("tmdb_id"), enrichment.get("imdb_id")):
            if value:
                self.ctx.db.execute("DELETE FROM enrich_cache WHERE key LIKE ?", [f"%{value}%"])

    def _store(self, item_id: int, old: Mapping[str, Any], new: dict[str, Any], status: str,
               why: str, *, attempts: int = 0, next_at: float | None = None,
               error: str | None = None) -> Outcome:
        """Write the item's enrichment (locked fields keep their values) and its state row."""
        merged = shape.keep_locked(old, new)
        merged["status"] = status
        self.ctx.catalog.update_item(item_id, {"enrichment": merged})
        self.ctx.db.execute(
            "INSERT INTO enrich_state(item_id, status, candidates, why, attempts, next_attempt_at, "
            "last_error, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(item_id) DO UPDATE "
            "SET status = excluded.status, candidates = excluded.candidates, why = excluded.why, "
            "attempts = excluded.attempts, next_attempt_at = excluded.next_attempt_at, "
            "last_error = excluded.last_error, updated_at = excluded.updated_at",
            [item_id, status, json.dumps(merged.get("candidates", [])), why, attempts, next_at, error,
             time.time()])
        return Outcome(status, merged, why)

    def _pending(self, item_id: int, old: Mapping[str, Any], error: str, retry_after: float | None,
                 *, skipped: bool = False) -> Outcome:
        """Leave the item pending: due after the backoff of its attempts (``Retry-After`` when
        longer); ``skipped`` (the provider was not asked): due when the provider may be asked
        again, without counting an attempt."""
        state = self._state(item_id) or {}
        attempts = int(state.get("attempts") or 0) + (0 if skipped else 1)
        delay = min(RETRY_MAX_SECONDS, self.cfg.retry_base_seconds * 2 ** max(0, attempts - 1))
        if skipped:
            delay = retry_after or 0.0
        elif retry_after is not None:
            delay = max(delay, retry_after)
        pending = dict(old)
        pending["why"] = f"waiting for the providers: {error}"
        log.info("enrichment pending", item_id=item_id, error=error, retry_in=round(delay, 1))
        return self._store(item_id, old, pending, "pending", pending["why"], attempts=attempts,
                           next_at=time.time() + delay, error=error)

    def mark_pending(self, item_id: int, why: str) -> None:
        """Leave item ``item_id`` pending, due at once (the ``enrich`` step's deadline passed)."""
        item = self.ctx.catalog.get_item(item_id)
        old = (item or {}).get("enrichment") or {}
        self._store(item_id, old, {**old, "why": why}, "pending", why, next_at=time.time())
        self.wake.set()

    def pin(self, item_id: int, identity: dict[str, Any]) -> None:
        """Pin the identity of item ``item_id`` (``{"tmdb": 603, "kind": "movie"}`` or
        ``{"imdb": "tt0133093"}``); every later refresh uses it."""
        self.ctx.db.execute(
            "INSERT INTO enrich_state(item_id, status, pin, updated_at) VALUES (?, 'pending', ?, ?) "
            "ON CONFLICT(item_id) DO UPDATE SET pin = excluded.pin, updated_at = excluded.updated_at",
            [item_id, json.dumps(identity), time.time()])

    def due(self, limit: int = 20, now: float | None = None) -> list[int]:
        """Items whose pending enrichment is due, oldest first."""
        now = time.time() if now is None else now
        return [int(r[0]) for r in self.ctx.db.execute(
            "SELECT item_id FROM enrich_state WHERE status = 'pending' AND "
            "(next_attempt_at IS NULL OR next_attempt_at <= ?) ORDER BY next_attempt_at LIMIT ?",
            [now, limit])]

    def next_due(self) -> float | None:
        """Seconds until the next pending item is due (0: now), None when none is pending."""
        row = self.ctx.db.execute(
            "SELECT min(coalesce(next_attempt_at, 0)) FROM enrich_state WHERE status = 'pending'"
        ).fetchone()
        return None if row is None or row[0] is None else max(0.0, float(row[0]) - time.time())

    def _announce(self, item_id: int, enrichment: Mapping[str, Any]) -> None:
        """Emit ``enriched`` (title, year, poster path) on the daemon's event sink."""
        artwork = enrichment.get("artwork") or {}
        self.ctx.events.emit(make_event("enriched", "", "", item_id=item_id,
                                        title=enrichment.get("title"), year=enrichment.get("year"),
                                        poster=artwork.get("poster")))

    async def aclose(self) -> None:
        """Close the provider clients."""
        for client in self._clients.values():
            close: Callable[[], Any] | None = getattr(client, "close", None)
            if close is not None:
                close()
        self._clients.clear()
        for pool in self._threads.values():
            pool.shutdown(wait=False, cancel_futures=True)


def _seconds_to_utc_midnight(now: float | None = None) -> float:
    now = time.time() if now is None else now
    return 86400.0 - (now % 86400.0)


def enrich_service(ctx: Context) -> EnrichService:
    """The process's :class:`EnrichService`, created on first call and closed by ``ctx.aclose()``."""
    return ctx.shared(SHARED_KEY, lambda: EnrichService(ctx))  # it registers its own close


async def background(ctx: Context, stop: asyncio.Event) -> None:
    """The daemon's background task: enrich items whose enrichment is pending when they are
    due (backoff per item), until ``stop`` is set. Never holds a job."""
    if not enrich_config(ctx.config).enabled or "enrich" not in ctx.config.pipeline.handlers:
        await stop.wait()
        return
    service = enrich_service(ctx)
    while not stop.is_set():
        for item_id in service.due():
            if stop.is_set():
                return
            try:
                await service.enrich_item(item_id)
            except Exception as err:  # one item's trouble must not stop the others
                log.warning("background enrichment failed", item_id=item_id, error=repr(err))
                known = (service.ctx.catalog.get_item(item_id) or {}).get("enrichment")
                service._pending(item_id, known if isinstance(known, dict) else {}, repr(err), None)
        wait = service.next_due()
        service.wake.clear()
        timeout = POLL_SECONDS if wait is None else min(POLL_SECONDS, max(0.2, wait))
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(service.wake.wait())]
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
