"""No secret in logs, job data, Redis or admin output; the platform's email mapping.

The email sink has a bearer token, an API key and a signing secret, all from the
environment. The target echoes the credentials it received in its error replies; the
worker must still never write them anywhere: its log, any Redis key (RQ's jobs, results
and registries, the sink's state and dead letters), or what the admin API returns.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import zlib
from pathlib import Path

import pytest
import redis
from rq.job import Job
from rq.serializers import JSONSerializer
from standardwebhooks.webhooks import Webhook

from mozaiks_bus.sinks import list_dead_letters, sink_state, sink_states
from tests.integration.sink_support import (
    WorkerProcess,
    publish,
    settings_for,
    sync_client,
    write_config,
)
from tests.integration.sink_target import Reply, Target
from tests.support import wait_until

pytestmark = pytest.mark.integration
ECHO = ("authorization", "x-api-key", "webhook-signature")



def dump_everything(client: redis.Redis) -> bytes:
    """Every value of every key in this Redis, raw (and RQ's compressed fields inflated)."""
    out: list[bytes] = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        if kind == b"string":
            out.append(client.get(key) or b"")
        elif kind == b"hash":
            for field, value in client.hgetall(key).items():
                out += [field, value]
                if field in (b"exc_string", b"data", b"return_value", b"exc_info"):
                    try:
                        out.append(zlib.decompress(base64.b64decode(value)))
                    except Exception:
                        with contextlib.suppress(Exception):
                            out.append(zlib.decompress(value))
        elif kind == b"list":
            out += client.lrange(key, 0, -1)
        elif kind == b"set":
            out += list(client.smembers(key))
        elif kind == b"zset":
            out += client.zrange(key, 0, -1)
        elif kind == b"stream":
            for _, fields in client.xrange(key):
                for field, value in fields.items():
                    out += [field, value]
                    if field == b"exc_string":
                        out.append(zlib.decompress(base64.b64decode(value)))
        out.append(key)
    return b"\n".join(out)


def test_no_secret_in_logs_job_data_redis_or_admin_output(
    redis_url: str, key_prefix: str, tmp_path: Path, target: Target,
) -> None:
    bearer = "tok-" + secrets.token_hex(16)
    api_key = "key-" + secrets.token_hex(16)
    raw_key = secrets.token_bytes(32)
    signing = "whsec_" + base64.b64encode(raw_key).decode()
    secret_texts = [bearer, api_key, signing, signing.removeprefix("whsec_")]
    target.script("/email", [Reply(503, echo=ECHO), Reply(400, echo=ECHO)])
    config = write_config(tmp_path / "bus.toml", url=redis_url, prefix=key_prefix, sinks=[{
        "name": "email", "url": target.url("/email"), "patterns": ["notification.created"],
        "format": "email-notification", "auth_bearer_env": "EMAIL_SERVICE_API_KEY",
        "api_key_header": "X-Api-Key", "api_key_env": "EMAIL_EXTRA_KEY",
        "signing_secret_env": "EMAIL_SIGNING_SECRET", "attempts": 3, "backoff_base_s": 0.1,
        "headers": {"X-Mozaiks-Service": "core"},
    }])
    env = {"EMAIL_SERVICE_API_KEY": bearer, "EMAIL_EXTRA_KEY": api_key,
           "EMAIL_SIGNING_SECRET": signing}
    worker = WorkerProcess(config, tmp_path / "worker.log", env=env,
                           options={"log_level": "DEBUG"}).start()
    try:
        settings = settings_for(redis_url, key_prefix, config)
        base = {"user_id": "u1", "notification_type": "welcome", "subject": "Hi",
                "message": "Welcome aboard", "notification_id": "n"}
        first, second, skipped = publish(settings, "notification.created", [
            {**base, "notification_id": "n1", "recipient": "a@example.com"},
            {**base, "notification_id": "n2", "recipient": "b@example.com"},
            {**base, "notification_id": "n3", "channels": ["in_app"]},  # not for email
        ])
        client = sync_client(redis_url)
        wait_until(lambda: (s := sink_state(client, settings, "email")).counters["delivered"]
                   + s.dead_letters + s.counters["skipped"] == 3, 20, "three outcomes")
    finally:
        worker.stop()

    calls = target.received("/email")
    assert len(calls) == 3  # 503, then 400 (dead letter) for one event, 200 for the other
    assert {c.headers["authorization"] for c in calls} == {f"Bearer {bearer}"}
    assert {c.headers["x-api-key"] for c in calls} == {api_key}
    assert {c.headers["x-mozaiks-service"] for c in calls} == {"core"}
    for call in calls:
        Webhook(signing).verify(call.body, call.headers)
    bodies = {json.loads(c.body)["recipient"]: json.loads(c.body) for c in calls}
    assert bodies["b@example.com"] == {"recipient": "b@example.com", "subject": "Hi",
                                       "message": "Welcome aboard",
                                       "notification_type": "welcome"}
    state = sink_state(client, settings, "email")
    assert state.counters["skipped"] == 1
    [dead] = list_dead_letters(client, settings, "email")
    assert dead.status == 400
    assert "Bearer ***" in dead.error
    assert "v1,***" in dead.error

    admin = json.dumps([s.to_dict() for s in sink_states(client, settings)]
                       + [d.to_dict() for d in list_dead_letters(client, settings)])
    everything = dump_everything(client)
    job_keys = list(client.scan_iter(f"rq:job:{key_prefix}-sink*"))
    jobs = [Job.fetch(k.decode().removeprefix("rq:job:"), connection=client,
                      serializer=JSONSerializer) for k in job_keys]
    assert len(jobs) >= 2  # the batch(es) of first attempts, the retry of the 503
    functions = set()
    for key in job_keys:  # JSON, never pickle: [function, instance, args, kwargs]
        func, _, args, _ = json.loads(zlib.decompress(client.hget(key, "data") or b""))
        functions.add(func)
        assert args[0] == "email"
    assert functions == {"mozaiks_bus.sinks.job.deliver",
                         "mozaiks_bus.sinks.batch_job.deliver_batch"}
    job_data = json.dumps([[j.args, j.kwargs, j.meta, j.description] for j in jobs],
                          default=str)
    log = worker.log()
    assert "dead-lettered" in log  # the log does talk about the failure
    for secret in secret_texts:
        assert secret not in log
        assert secret not in admin
        assert secret not in job_data
        assert secret.encode() not in everything
    assert first.id in log
    assert second.id in everything.decode(errors="replace")
    assert skipped.id
    client.close()
