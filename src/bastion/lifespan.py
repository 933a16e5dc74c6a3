# SPDX-License-Identifier: Apache-2.0
"""Opens and closes what the app shares between requests, and puts it on ``app.state``."""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from bastion.alerts.detector import AnomalyDetector
from bastion.alerts.feed import audit_observer
from bastion.audit.access import AccessLog
from bastion.audit.sinks import build_fanout
from bastion.auth.api_key_service import build_api_keys
from bastion.auth.runtime import KEYRING_RELOAD_SECONDS, IdentityRuntime
from bastion.chat.wiring import TextServices
from bastion.crypto.content_keys import ContentKeys
from bastion.crypto.fields import FieldCipher
from bastion.crypto.keycheck import check_encryption_keys
from bastion.db.batch import wal_checkpoint
from bastion.db.engine import SQLITE_CHECKPOINT_SECONDS, backend_name, create_engine, create_sessionmaker
from bastion.guard import Guard, GuardConfig, new_canary
from bastion.llm.factory import build_provider
from bastion.llm.metered import MeteredProvider
from bastion.maintenance import Job, Maintenance
from bastion.observability.errortracking import ErrorTracker
from bastion.observability.exporter import MetricsExporter
from bastion.observability.logging import get_logger
from bastion.observability.metrics import WORKER_SAMPLE_SECONDS, Metrics
from bastion.privacy.retention import RetentionPeriods, RetentionPurge
from bastion.ratelimit.components import build_rate_limiting
from bastion.ratelimit.storage.redis import fail_fast_client
from bastion.redis_client import RedisClient, is_cluster
from bastion.redis_client import connect as connect_redis
from bastion.settings import Settings

KEY_CHECK_SECONDS = 10.0


async def _content_keys(app: FastAPI, settings: Settings, cipher: FieldCipher) -> ContentKeys:
    """The keys that sign model replies: those already in the database are published at once;
    the first one is made when the first reply is signed."""
    keys = ContentKeys(
        sessionmaker=app.state.sessionmaker,
        cipher=cipher,
        grace=timedelta(days=settings.content_key_grace_days),
    )
    try:
        await keys.reload()
    except (DBAPIError, OSError, TimeoutError) as exc:
        # Not migrated yet, or the database is down: the first signed reply (or the next reload) retries.
        get_logger("bastion.lifespan").warning("content_keys_unavailable", reason=type(exc).__name__)
    return keys


async def _check_encryption_keys(engine: AsyncEngine, cipher: FieldCipher) -> None:
    """Refuse to start (EncryptionKeyRefused) when DATABASE_ENCRYPTION_KEY cannot open stored data."""
    log = get_logger("bastion.lifespan")
    try:
        async with asyncio.timeout(KEY_CHECK_SECONDS):
            report = await check_encryption_keys(engine, cipher)
    except (OSError, TimeoutError, SQLAlchemyError) as exc:
        # An outage at startup is not a key problem: start, and let the storage fail modes answer.
        log.warning("encryption_key_check_skipped", reason=type(exc).__name__)
        return
    if report is None:
        log.warning("encryption_key_check_unavailable", hint="run `bastion db upgrade`")
        return
    if report.recorded:
        log.info("encryption_keys_recorded", kids=report.recorded)
    if report.retired:
        log.info("encryption_keys_retired", kids=report.retired, message="no stored data uses them")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    log = get_logger("bastion.lifespan")
    database_url = settings.database_url.get_secret_value()
    engine = create_engine(database_url, timeout=settings.database_timeout_seconds)
    cipher = FieldCipher.for_settings(settings)
    try:
        # First, before anything is opened: a key that cannot read the stored data refuses to start.
        await _check_encryption_keys(engine, cipher)
    except BaseException:
        await engine.dispose()
        raise
    redis: RedisClient | None = None
    # What request-path components share (throttle, breaker, version counters): the same server
    # with RATE_LIMIT_REDIS_TIMEOUT_SECONDS timeouts and no retries, so an outage meets each
    # component's fail mode (docs/failure-modes.md) quickly. Its pool reconnects when Redis returns.
    shared: RedisClient | None = None
    if settings.redis_url is not None:
        redis = connect_redis(
            settings.redis_url.get_secret_value(),
            socket_connect_timeout=2,
            socket_timeout=2,
            health_check_interval=30,
        )
        shared = fail_fast_client(redis, settings.rate_limit_redis_timeout_seconds)
    app.state.engine = engine
    app.state.sessionmaker = create_sessionmaker(engine)
    # Every AuditService built on this sessionmaker feeds the same sinks and observers
    # (AUDIT_LOG_SINK, docs/audit.md); request records go to access_logs in batches.
    audit = build_fanout(settings, metrics=app.state.metrics).attach(app.state.sessionmaker)
    app.state.audit = audit
    access_log: AccessLog = app.state.access_log
    if settings.access_log:
        access_log.start(app.state.sessionmaker)
    app.state.redis = redis
    # One pooled client for outbound webhooks (alert deliveries); no environment proxies or netrc
    # credentials. The model provider keeps its own pool (bastion.llm.openai).
    http_client = httpx.AsyncClient(trust_env=False, follow_redirects=False)
    app.state.http_client = http_client
    # Every model call counted (bastion_model_*): the provider wrapped once, for every service.
    metrics: Metrics = app.state.metrics
    app.state.llm = MeteredProvider(build_provider(settings, redis=shared), metrics)
    app.state.cipher = cipher
    # The content guard, built once (rules compiled, classifier loaded) and shared by every request.
    # The canary is made fresh by each process and never stored or configured: each instance's
    # system prompt carries its own, and it only has to be recognised in replies to that prompt.
    app.state.canary = new_canary()
    app.state.guard = Guard(GuardConfig.from_settings(settings, canary=app.state.canary))
    # Rate limiting: Redis-backed when REDIS_URL is set, in-process otherwise.
    rate_limiting = build_rate_limiting(settings, redis=shared, sessionmaker=app.state.sessionmaker)
    await rate_limiting.start()
    app.state.rate_limiting = rate_limiting
    app.state.limiter = rate_limiting.limiter
    app.state.concurrency = rate_limiting.concurrency
    app.state.session_quota = rate_limiting.sessions
    app.state.token_budget = rate_limiting.tokens
    app.state.blocklist = rate_limiting.blocklist
    # The chat, /v1 and guard services, built once for every request (bastion.chat.wiring).
    app.state.text_services = TextServices.build(app.state, settings)
    log.info(
        "startup",
        environment=settings.environment,
        database=backend_name(database_url),
        shared_state="in-process" if redis is None else "redis-cluster" if is_cluster(redis) else "redis",
        llm_provider=settings.llm_provider,
        injection_action=settings.injection_action,
        profanity_filter=settings.profanity_filter,
    )
    for warning in settings.warnings():  # what `bastion check` reports, said at every start too
        log.warning("configuration_warning", message=warning)
    if redis is None:
        log.warning(
            "in_process_state",
            message="REDIS_URL is unset: limits, revocations and blocklists hold in this process only",
        )
        if multiprocessing.parent_process() is not None:
            # uvicorn --workers N runs each worker as a multiprocessing child.
            log.warning(
                "in_process_limits_per_worker",
                message="several workers without REDIS_URL: each enforces its own limits (N x the limit)",
            )
    app.state.identity = await IdentityRuntime.start(
        settings=settings, sessionmaker=app.state.sessionmaker, redis=shared, limiter=app.state.limiter
    )
    identity: IdentityRuntime = app.state.identity
    anomaly: AnomalyDetector = app.state.anomaly
    await anomaly.start(redis=shared, sessionmaker=app.state.sessionmaker, http_client=http_client)
    # Every audit record, once stored, reaches the detectors.
    audit.observers.append(audit_observer(anomaly))
    # Managed keys are hashed under the current API_KEY_SALT, which the identity runtime reloads.
    app.state.api_keys = build_api_keys(
        settings,
        sessionmaker=app.state.sessionmaker,
        redis=shared,
        hasher=lambda: identity.secrets.key_hasher,
    )
    # Retention (docs/privacy.md): expired chat sessions, access and security records.
    retention = RetentionPurge(
        sessionmaker=app.state.sessionmaker, periods=RetentionPeriods.from_settings(settings)
    )
    # Replies are signed with content keys every instance reads from the database each minute.
    app.state.content_keys = content_keys = await _content_keys(app, settings, cipher)
    jobs = [
        Job("retention", settings.maintenance_interval_seconds, retention.run),
        Job("content_keys", KEYRING_RELOAD_SECONDS, content_keys.reload),
    ]
    if engine.dialect.name == "sqlite":
        # The write-ahead log copied into the database here, not by whichever request's commit
        # crosses SQLite's threshold (bastion.db.engine.SQLITE_WAL_BACKSTOP_PAGES).
        async def checkpoint() -> int:
            await wal_checkpoint(engine)
            return 0

        jobs.append(Job("wal_checkpoint", SQLITE_CHECKPOINT_SECONDS, checkpoint))
    if metrics.workers is not None:
        # Several workers: the supervisor's PROMETHEUS_PORT listener cannot sample the gauges,
        # so each worker keeps its reading fresh in the shared files (a merged "most recent"
        # gauge shows nothing until some worker has sampled it: the first reading is taken now).
        async def sample_gauges() -> int:
            await metrics.sample(app.state)
            return 0

        await sample_gauges()
        jobs.append(Job("metrics_sample", WORKER_SAMPLE_SECONDS, sample_gauges))
    maintenance = Maintenance(jobs)
    maintenance.start()
    app.state.maintenance = maintenance
    exporter: MetricsExporter | None = None
    # With several workers `bastion serve` itself listens on PROMETHEUS_PORT, once for all.
    if settings.prometheus_port is not None and metrics.workers is None:
        exporter = MetricsExporter(
            metrics,
            app.state,
            host=settings.prometheus_host,
            port=settings.prometheus_port,
            extra_headers=settings.license_headers,
        )
        try:
            await exporter.start()
        except BaseException:
            await maintenance.aclose()
            await anomaly.aclose()
            raise
    app.state.metrics_exporter = exporter
    # What startup built lives as long as the app: out of the cyclic collector's sight, its
    # collections no longer walk it (about 3% of an authenticated read); back in at shutdown, so
    # an app that stops (tests start many) is collected as before.
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
        if exporter is not None:
            await exporter.aclose()
        await maintenance.aclose()
        await anomaly.aclose()
        await app.state.llm.aclose()
        await http_client.aclose()
        await app.state.identity.close()
        await rate_limiting.aclose()
        await access_log.aclose()
        await audit.aclose()
        if shared is not None:
            await shared.aclose()
        if redis is not None:
            await redis.aclose()
        await engine.dispose()
        metrics.close()
        error_tracker: ErrorTracker | None = getattr(app.state, "error_tracker", None)
        if error_tracker is not None:
            await asyncio.to_thread(error_tracker.flush)  # what is queued, before the process ends
        log.info("shutdown")
