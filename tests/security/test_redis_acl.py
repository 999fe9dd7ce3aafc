"""S3 for data: each mailer's Redis user reaches only its own keys and the commands its queue
needs, proven from inside the running mailer containers with the credentials they run with.

Before, one `default` user (`~* &* +@all`) served both: with the shop's password, `SCAN` listed
`mailer:praxis:*` and `FLUSHALL` would have wiped the practice's queued medical mail.
"""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.security, pytest.mark.needs("redis", "praxis-mailer", "ecom-mailer")]

# Runs inside a mailer container, as its own uid, with its REDIS_USER and password file.
PROBE = r"""
import json, os, sys, redis
r = redis.Redis(host=os.environ["REDIS_HOST"], port=6379, username=os.environ["REDIS_USER"],
                password=open(os.environ["REDIS_PASSWORD_FILE"]).read().strip(), socket_timeout=5)
own, other = sys.argv[1], sys.argv[2]
tries = {
    "ping": lambda: r.ping(),
    "own_stream": lambda: r.xlen(f"mailer:{own}:incoming"),
    "own_key": lambda: (r.set(f"mailer:{own}:enqueued:acl-probe", b"1", ex=60),
                        r.delete(f"mailer:{own}:enqueued:acl-probe")),
    "other_stream": lambda: r.xlen(f"mailer:{other}:incoming"),
    "other_key_read": lambda: r.get(f"mailer:{other}:enqueued:x"),
    "other_key_delete": lambda: r.delete(f"mailer:{other}:incoming"),
    "unprefixed_key": lambda: r.set("acl-probe", b"1"),
    "scan": lambda: r.scan(0),
    "keys": lambda: r.keys("*"),
    "flushall": lambda: r.flushall(),
    "flushdb": lambda: r.flushdb(),
    "config": lambda: r.config_get("dir"),
    "acl": lambda: r.acl_list(),
    "publish": lambda: r.publish("x", "y"),
    "debug": lambda: r.execute_command("DEBUG", "SLEEP", "0"),
    "shutdown": lambda: r.execute_command("SHUTDOWN", "NOSAVE"),
}
out = {}
for name, call in tries.items():
    try:
        call()
        out[name] = "allowed"
    except redis.exceptions.NoPermissionError:
        out[name] = "denied"
    except redis.exceptions.ResponseError as exc:
        # DEBUG is also off server-wide (enable-debug-command no): refused either way
        refused = "NOPERM" in str(exc) or "command not allowed" in str(exc)
        out[name] = "denied" if refused else f"error: {exc}"
print(json.dumps(out))
"""
ALLOWED = {"ping", "own_stream", "own_key"}


@pytest.mark.req("S3")
@pytest.mark.parametrize(
    ("service", "own", "other"),
    [("ecom-mailer", "ecom", "praxis"), ("praxis-mailer", "praxis", "ecom")],
)
def test_mailer_redis_user_is_confined_to_its_own_queue(stack, service, own, other):
    res = stack.service(service).exec(["python3", "-c", PROBE, own, other])
    assert res.exit_code == 0, res.output
    seen = json.loads(res.output.strip().splitlines()[-1])
    allowed = {name for name, verdict in seen.items() if verdict == "allowed"}
    assert allowed == ALLOWED, seen
    assert all(v in ("allowed", "denied") for v in seen.values()), seen


@pytest.mark.req("S3")
def test_admin_user_is_not_what_the_mailers_hold(stack):
    """The administrator's password (health check, suite, rotation) is in no mailer."""
    admin = stack.secret("redis_password", service="redis")
    for service in ("praxis-mailer", "ecom-mailer"):
        res = stack.service(service).exec(["sh", "-c", 'cat "$REDIS_PASSWORD_FILE"'])
        assert res.exit_code == 0, res.output
        assert res.output.strip() and res.output.strip() != admin
