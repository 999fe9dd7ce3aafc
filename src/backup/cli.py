"""`python -m backup COMMAND`: run, serve, restore, list, health (exit codes: see backup)."""

from __future__ import annotations

import argparse
import sys
import urllib.request

from backup import config, logs
from backup.errors import EXIT_CODES, BackupError, ConfigError
from backup.signals import stop_event


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse exits 2, which is "disk full" here
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(ConfigError.exit_code)


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m backup",
        description="PostgreSQL backups of the stack: dump, rotate, log, serve metrics, restore.",
        epilog="exit codes:\n"
        + "\n".join(f"  {code}  {meaning}" for code, meaning in EXIT_CODES.items())
        + "\n\nenvironment:\n"
        + config.help_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("run", help="one backup run now (exit 0/1/2/3, see below)")
    sub.add_parser("serve", help="the service: daily runs, /metrics and /healthz")
    r = sub.add_parser("restore", help="restore a dump into a fresh database and compare it")
    r.add_argument("dump", help="dump file name in BACKUP_DIR, or a path")
    r.add_argument("--target-db", required=True, help="database to create and restore into")
    r.add_argument("--force", action="store_true", help="drop and recreate a non-empty target")
    r.add_argument("--no-owner", action="store_true", help="objects owned by PGUSER, not as dumped")
    r.add_argument("--source-db", help="compare with this database (default: the dump's own)")
    r.add_argument("--json", action="store_true", help="print the summary as JSON")
    ls = sub.add_parser("list", help="dumps with size, age and checksum status")
    ls.add_argument("--json", action="store_true")
    ls.add_argument("--no-verify", action="store_true", help="skip re-hashing the dumps")
    h = sub.add_parser("health", help="exit 0 if the running service's /healthz is ok")
    h.add_argument("--timeout", type=float, default=5.0)
    return p


def _run(cfg: config.Config) -> int:
    from backup.run import run_backup

    stop = stop_event(logs.warning, "signal received; stopping the run")
    return run_backup(cfg, stop=stop).exit_code


def _health(cfg: config.Config, timeout: float) -> int:
    url = f"http://127.0.0.1:{cfg.metrics_port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return 0 if resp.status == 200 else 1
    except OSError as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        cfg = config.load()
        if args.command == "run":
            return _run(cfg)
        if args.command == "serve":
            from backup.serve import serve

            return serve(cfg)
        if args.command == "restore":
            from backup.restore import restore

            return restore(
                cfg,
                args.dump,
                args.target_db,
                force=args.force,
                no_owner=args.no_owner,
                source_db=args.source_db,
                as_json=args.json,
            )
        if args.command == "list":
            from backup.listing import show

            return show(cfg.backup_dir, as_json=args.json, verify=not args.no_verify)
        return _health(cfg, args.timeout)
    except BackupError as exc:
        logs.error(f"{args.command} failed", error=str(exc), result=exc.result)
        return exc.exit_code
