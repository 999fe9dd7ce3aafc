"""Secret rotation (requirement S8): one command gives a secret a new value, applies it where the
value is checked, writes it with every copy derived from it, and restarts the services that read
those files. Run as `./run rotate NAME`
(or `python -m stackcheck.ops.secret_rotation NAME [--stdin]`).

Order, so that no step can leave a password that no file holds: the new value is first written
beside the secret (`NAME.new`); then the server learns it (PostgreSQL `ALTER ROLE` with a
SCRAM-SHA-256 verifier, so the password itself is never in a statement or a log; Redis
`ACL SETUSER` with its SHA-256); then the file is replaced and its derived copies re-derived; then
the readers restart (a running container keeps the file it was started with) and are waited for
until healthy. Sessions opened before keep working until they reconnect.

Exit codes: 0 rotated; 1 not rotated (the server refused or is down; nothing changed); 2 refused
(no such secret, a derived one, or a data-encryption key); 3 half rotated (the server has the new
value; the message says which step failed and how to finish).

Which secrets, how often (docs/secret-rotation.md): database passwords quarterly, Grafana's admin
password monthly, a mail app password at once on a breach (its new value comes from the
provider: `--stdin`). Keys that encrypt stored data are refused: a new n8n encryption key or
MinIO KMS key would make what they protect unreadable.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

from stackcheck import project_root
from stackcheck.compose import Compose
from stackcheck.mode import resolve
from stackcheck.ops.secretfiles import (
    REDIS_MAILER_USERS,
    SPECS,
    SecretSpec,
    chown_secret,
    ensure,
    read_secret,
    write_secret,
)

# secret -> the PostgreSQL role whose password it is
DB_ROLES = {
    "postgres_password": "postgres",
    "praxis_db_password": "praxis",
    "ecom_db_password": "ecom",
    "n8n_db_password": "n8n",
    "monitoring_db_password": "monitoring",
}
REFUSED = {
    "n8n_encryption_key": "n8n keeps its credentials encrypted with it: a new key makes them "
    "unreadable (n8n's own export/import procedure is the way)",
    "minio_kms_key": "MinIO's objects are encrypted with it: a new key makes them unreadable",
    "minio_root_user": "MinIO's root user is its identity, not a password: rotate "
    "minio_root_password",
}
# readers that take the value only when a database is first initialised: never restarted for it
INIT_ONLY = {"postgres"}


class RotationError(RuntimeError):
    """A step after the server took the new value failed: the message says what is done and
    what to do."""


class RotationRefused(RotationError):
    """This secret cannot be rotated this way (or does not exist); nothing was changed."""


@dataclass(frozen=True)
class Plan:
    name: str
    files: tuple[str, ...]  # the secret and every file derived from it, transitively
    services: tuple[str, ...]  # to restart: they mount one of `files`


def scram_sha256(password: str, iterations: int = 4096, salt: bytes | None = None) -> str:
    """PostgreSQL's stored form of a password (RFC 5802/7677), so ALTER ROLE never carries it."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = base64.b64encode
    return (
        f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}"
        f"${b64(stored_key).decode()}:{b64(server_key).decode()}"
    )


def spec_of(name: str, specs: tuple[SecretSpec, ...] = SPECS) -> SecretSpec:
    for spec in specs:
        if spec.name == name:
            return spec
    known = ", ".join(s.name for s in specs if not s.sources and s.name not in REFUSED)
    raise RotationRefused(f"no secret {name!r}; rotatable: {known}")


def plan(name: str, model: dict, specs: tuple[SecretSpec, ...] = SPECS) -> Plan:
    """What rotating `name` touches, from the compose model (`Compose.config()`)."""
    spec = spec_of(name, specs)
    if spec.sources:
        raise RotationRefused(
            f"{name} is derived from {', '.join(spec.sources)}: rotate that, and {name} follows"
        )
    if name in REFUSED:
        raise RotationRefused(f"{name} is not rotated by replacing it: {REFUSED[name]}")
    files = [name]
    for s in specs:  # SPECS lists sources before what is derived from them
        if any(src in files for src in s.sources):
            files.append(s.name)

    def mounts(cfg: dict) -> set[str]:
        refs = cfg.get("secrets") or []
        return {r.get("source") if isinstance(r, dict) else r for r in refs}

    services = sorted(
        svc
        for svc, cfg in model.get("services", {}).items()
        if svc not in INIT_ONLY and mounts(cfg) & set(files)
    )
    return Plan(name, tuple(files), tuple(services))


class Rotator:
    def __init__(self, compose: Compose, secrets_dir: Path):
        self.compose, self.dir = compose, secrets_dir

    def _value(self, name: str) -> str:
        return read_secret(self.dir / name).strip()

    def _port(self, service: str, container_port: int) -> list:
        return self.compose.port(service, container_port)

    def _apply(self, name: str, new: str) -> str:
        """Tell the server; returns what was done, for the report."""
        if name in DB_ROLES:
            import psycopg
            from psycopg import sql

            port = self._port("postgres", 5432)
            if not port:
                raise ConnectionError("postgres publishes no port: is the stack up? (./run up)")
            with psycopg.connect(
                host=port[0].host,
                port=port[0].port,
                dbname="postgres",
                user="postgres",
                password=self._value("postgres_password"),
                connect_timeout=10,
                autocommit=True,
            ) as conn:
                conn.execute(
                    sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                        sql.Identifier(DB_ROLES[name]), sql.Literal(scram_sha256(new))
                    )
                )
            return f"PostgreSQL role {DB_ROLES[name]}: new SCRAM verifier"
        if name == "redis_password" or name in REDIS_MAILER_USERS:
            import redis

            port = self._port("redis", 6379)
            if not port:
                raise ConnectionError("redis publishes no port: is the stack up? (./run up)")
            r = redis.Redis(  # as the administrator (default), whichever user is rotated
                host=port[0].host,
                port=port[0].port,
                password=self._value("redis_password"),
                socket_timeout=10,
            )
            user = REDIS_MAILER_USERS.get(name, "default")
            digest = hashlib.sha256(new.encode()).hexdigest()
            r.execute_command("ACL", "SETUSER", user, "resetpass", f"#{digest}")
            return f"Redis user {user}: new password hash"
        if name == "grafana_admin_password":
            if "grafana" not in self.compose.services():
                raise RotationRefused("grafana is not part of this stack (offline mode runs none)")
            self.compose.run(
                "exec", "-T", "grafana", "grafana", "cli", "admin", "reset-admin-password",
                "--password-from-stdin", input=new + "\n", timeout=60,
            )  # fmt: skip
            return "Grafana admin: password reset"
        return "no server holds it but its readers (they get it at restart)"

    def rotate(self, name: str, new: str | None = None) -> tuple[Plan, str]:
        """Stage the new value, apply it at its server, replace the file and its copies, then
        let the readers pick it up: the order in which no step leaves a password no file holds."""
        steps = plan(name, self.compose.config())
        new = new if new is not None else secrets.token_urlsafe(32)
        if not new or new != new.strip() or "\n" in new:
            raise RotationRefused("the new value is empty or has surrounding whitespace")
        self._check(steps)
        done = self._stage_and_apply(name, new)
        try:
            self._replace(name)
            published = self._publish(steps)
        except Exception as exc:
            raise RotationError(f"{done}, but {self._replace_failed(name, exc)}") from exc
        return self._restart(steps, done, published)

    def _check(self, steps: Plan) -> None:
        """Refuse before anything is written (Compose: nothing to check)."""

    def _stage_and_apply(self, name: str, new: str) -> str:
        staged = self.dir / f"{name}.new"
        write_secret(staged, new + "\n")  # 0400: the value is on disk before anyone needs it
        try:
            return self._apply(name, new)
        except Exception:
            staged.unlink(missing_ok=True)
            raise

    def _replace(self, name: str) -> None:
        path, staged = self.dir / name, self.dir / f"{name}.new"
        spec = spec_of(name)
        os.replace(staged, path)  # staged is 0400 already; only its owner is to change
        chown_secret(path, spec.uid, spec.gid)
        ensure(self.dir)  # re-derives every copy of the old value

    def _publish(self, steps: Plan) -> dict[str, str]:
        """Make the written files available to the readers (Compose: bind mounts already are)."""
        return {}

    def _replace_failed(self, name: str, exc: Exception) -> str:
        staged = self.dir / f"{name}.new"
        return (
            f"writing the files failed ({exc}): the new value is in "
            f"{staged if staged.exists() else self.dir / name}; fix the cause and run `./run setup`"
        )

    def _restart(self, steps: Plan, done: str, published: dict[str, str]) -> tuple[Plan, str]:
        if steps.services:
            try:
                self.compose.run("restart", *steps.services, timeout=300)
                self.compose.run("up", "-d", "--wait", "--no-build", *steps.services, timeout=600)
            except Exception as exc:
                raise RotationError(
                    f"{done} and the files are written, but restarting "
                    f"{', '.join(steps.services)} failed: {exc}"
                ) from exc
        return steps, done


class SwarmRotator(Rotator):
    """Rotation the Swarm way (`./run rotate NAME --swarm`): the new value applied at its server
    (through the swarm stack's loopback gateway), written to the swarm's secret files, each
    changed file a new Docker secret `<file>_v(N+1)`, the readers rolled with
    `docker service update --secret-rm/--secret-add` (start-first where two copies may run:
    the mailers keep fetching during the roll), then every old version no service mounts any
    more removed. The compose stack's files are never touched (stackcheck.ops.swarm.secrets_dir)."""

    def __init__(self, compose: Compose, secrets_dir: Path, ns: str, *, say=print):
        super().__init__(compose, secrets_dir)
        self.ns, self.say = ns, say

    def _port(self, service: str, container_port: int) -> list:
        from stackcheck.ops.swarm import gateway_ports

        return gateway_ports(self.ns, service, container_port)

    def _apply(self, name: str, new: str) -> str:
        if name == "grafana_admin_password":
            raise RotationRefused("grafana on Swarm: not implemented (offline runs no grafana)")
        return super()._apply(name, new)

    def _check(self, steps: Plan) -> None:
        from stackcheck.ops import swarm

        self._versions = swarm.latest_versions(swarm.secret_names())
        missing = [f for f in steps.files if f not in self._versions]
        if missing:
            raise RotationRefused(f"no Docker secret {', '.join(missing)}: `./run deploy swarm`")

    def _publish(self, steps: Plan) -> dict[str, str]:
        """Each changed file becomes a new Docker secret `<file>_v(N+1)`: old name -> new."""
        from stackcheck.ops import swarm

        files = swarm.secret_files(self.compose.config())
        renamed = {}
        for f in steps.files:
            version = self._versions[f]
            old, nxt = f"{f}_v{version}", f"{f}_v{version + 1}"
            swarm.docker(
                "secret", "create", "--label", f"{swarm.SECRET_LABEL}={f}",
                "--label", f"org.stackcheck.version={version + 1}", nxt,
                str(self.dir / files[f].name),
            )  # fmt: skip
            renamed[old] = nxt
        return renamed

    def _replace_failed(self, name: str, exc: Exception) -> str:
        return (
            f"writing the files or creating the new Docker secrets failed ({exc}); "
            f"fix the cause and run `./run rotate {name} --swarm` again"
        )

    def _restart(self, steps: Plan, done: str, published: dict[str, str]) -> tuple[Plan, str]:
        """Roll every reader onto the new secrets, then remove the versions no one mounts."""
        from stackcheck.ops import swarm

        rolled = [svc for svc in swarm.services_of(self.ns) if self._roll(svc, published, done)]
        in_use = {
            r["SecretName"]
            for s in swarm.services_of(self.ns)
            for r in swarm.service_secrets(self.ns, s)
        }
        kept = [old for old in published if old in in_use]
        for old in published:
            if old not in in_use:
                swarm.docker("secret", "rm", old)
        note = (
            f"; kept {', '.join(kept)} (mounted by {', '.join(sorted(INIT_ONLY))}, "
            "read only at initialisation; the next deploy moves it)"
            if kept
            else ""
        )
        new_versions = ", ".join(published.values())
        return Plan(
            steps.name, steps.files, tuple(rolled)
        ), f"{done}; new versions {new_versions}{note}"

    def _roll(self, svc: str, renamed: dict[str, str], done: str) -> bool:
        """`docker service update --secret-rm/--secret-add` for the secrets of svc that changed."""
        from stackcheck.ops import swarm

        args = []
        for ref in swarm.service_secrets(self.ns, svc):
            if ref["SecretName"] in renamed:
                f = ref["File"]
                args += [
                    "--secret-rm", ref["SecretName"], "--secret-add",
                    f"source={renamed[ref['SecretName']]},target={f['Name']},"
                    f"uid={f['UID']},gid={f['GID']},mode=0{f['Mode']:o}",
                ]  # fmt: skip
        if not args or svc in INIT_ONLY:
            return False
        self.say(f"  rolling {svc} ({len(args) // 4} secret(s))")
        try:
            swarm.docker(
                "service", "update", "--detach=false", "--quiet", *args,
                f"{self.ns}_{svc}", timeout=600,
            )  # fmt: skip
        except swarm.SwarmError as exc:
            raise RotationError(
                f"{done}; the new secrets exist, but rolling {svc} failed: {exc}"
            ) from exc
        return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="./run rotate", description=__doc__.split("\n\n")[0])
    ap.add_argument("name", help="the secret (a file name in stack/secrets)")
    ap.add_argument(
        "--stdin", action="store_true", help="read the new value from standard input (a mail "
        "provider's app password) instead of generating one",
    )  # fmt: skip
    ap.add_argument(
        "--swarm", action="store_true", help="rotate in the swarm stack (`./run deploy swarm`): "
        "a new versioned Docker secret, readers rolled with docker service update",
    )  # fmt: skip
    args = ap.parse_args(argv)
    root = project_root()
    cfg = resolve(
        option_mode="swarm" if args.swarm else None,
        option_teardown=False,
        env=os.environ,
        stack_dir=root / "stack",
    )
    compose = Compose(cfg.project, cfg.stack_dir, cfg.files)
    value = sys.stdin.readline().strip() if args.stdin else None
    if args.swarm:
        from stackcheck.ops.swarm import secrets_dir

        rotator: Rotator = SwarmRotator(compose, secrets_dir(), cfg.project)
    else:
        rotator = Rotator(compose, cfg.stack_dir / "secrets")
    try:
        steps, done = rotator.rotate(args.name, value)
    except RotationRefused as exc:
        print(f"rotate: {exc}", file=sys.stderr)
        return 2
    except RotationError as exc:
        print(f"rotate: {args.name} half rotated: {exc}", file=sys.stderr)
        return 3
    except Exception as exc:  # the server refused, the stack is down...: nothing was changed
        print(f"rotate: {args.name} not rotated: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"rotated {args.name}: {done}")
    print(f"  files: {', '.join(steps.files)}")
    what = "rolled (docker service update)" if args.swarm else "restarted and healthy"
    print(f"  {what}: {', '.join(steps.services) or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
