"""`tegbatchd doctor [--json]`: the whole set-up checked, one line per check (ok / warn / fail) with its fix.

Service, notifications, the key the service can read, the endpoint, the clock against the API's Date
header, the state database, what is pending, the configured models, and a newer release (never required).
Nothing is written but the Models API answers the store already keeps for a day.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from tegbatchd import __version__
from tegbatchd import api as api_mod
from tegbatchd.errors import UserError
from tegbatchd.times import shown_time

OK, WARN, FAIL = "ok", "warn", "fail"
CLOCK_WARN_SECONDS = 60
CLOCK_FAIL_SECONDS = 300      # reconciling an unclear create compares times with a 5-minute margin
PROBE_TIMEOUT = 10.0


@dataclass
class Check:
    name: str
    status: str            # ok | warn | fail
    detail: str
    fix: str | None = None


@dataclass
class DoctorReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status == FAIL]

    def as_dict(self) -> dict:
        return {"ok": not self.failed, "version": __version__, "checks": [asdict(c) for c in self.checks]}


# --- the checks ----------------------------------------------------------------------------------------
def check_service(ctx) -> Check:
    from tegbatchd.actions.service import read_manifest, this_platform
    from tegbatchd.locks import is_locked
    from tegbatchd.service_managers import manager_for

    try:
        manifest = read_manifest(ctx)
    except UserError as exc:
        return Check("service", FAIL, exc.message, exc.next_step)
    daemon = is_locked(ctx.paths.state_dir / "daemon.lock")
    if manifest is None:
        if daemon:
            return Check("service", WARN, "not installed, but a daemon runs for this state folder (started by hand)",
                         "tegbatchd service install (so it starts at login)")
        return Check("service", WARN, "not installed: nothing polls while you are away",
                     "tegbatchd service install (or run `tegbatchd poll --once` yourself)")
    unit, variant = manifest["unit"], manifest["variant"]
    missing = [f for f in manifest["files"] if not os.path.exists(f)]
    if missing:
        return Check("service", FAIL, f"the {variant} ({unit}) was installed but {missing[0]} is gone",
                     "tegbatchd service install")
    manager = manager_for(manifest.get("platform") or this_platform())
    if not manager.reachable():
        return Check("service", WARN, f"the {variant} ({unit}) is installed; {manager.name} is not reachable from "
                     f"here to say whether it runs{' (a daemon holds the state folder)' if daemon else ''}",
                     "run doctor from your desktop session")
    state = manager.state(unit)
    if state in ("active", "running"):
        return Check("service", OK, f"the {variant} ({unit}) is {state}")
    if variant == "timer" and state == "loaded, not running":  # a launchd agent run by StartInterval, idle
        return Check("service", OK, f"the {variant} ({unit}) is loaded and waits for its next run")
    logs = (f"journalctl --user -u {unit}" if manifest["platform"] == "linux"
            else f"the log folder {ctx.paths.log_dir}")
    return Check("service", FAIL, f"the {variant} ({unit}) is installed but {state}",
                 f"see {logs}, then `tegbatchd service install` to start it again")


def check_notifications(ctx) -> Check:
    from tegbatchd.notify import backend_description

    kind, detail = backend_description(ctx.config)
    if kind == "desktop":
        return Check("notifications", OK, detail)
    if kind == "disabled":
        return Check("notifications", WARN, detail, "set notifications.enabled: true to be told when work is ready")
    if kind == "no server":
        return Check("notifications", WARN, f"desktop, but {detail}", "start your notification server (dunst, "
                     "your desktop's own)")
    return Check("notifications", WARN, f"log fallback: {detail}; notices go to the log",
                 "run from a desktop session with a session bus (under systemd one is found by itself); "
                 "`tegbatchd paths` shows the log")


def check_key(ctx, service_installed: bool) -> Check:
    from tegbatchd.actions.service import service_key

    try:
        key = service_key(ctx)
    except UserError as exc:
        return Check("key", FAIL, exc.message, exc.next_step)
    configured = ctx.config["api_key_file"]
    if key.source and configured and not os.path.isabs(os.path.expanduser(configured)):
        return Check("key", WARN, f"api_key_file {configured!r} is a relative path: the service reads it from its "
                     "own working folder (your home), not this one", "give api_key_file as an absolute path")
    if key.source:
        return Check("key", OK, f"the service reads it from {key.source}")
    status = FAIL if service_installed else WARN
    if key.in_environment:
        return Check("key", status, "ANTHROPIC_API_KEY is set only in this shell: the service cannot see it",
                     "tegbatchd service install --store-key (writes it to api_key_file, 0600)")
    return Check("key", status, f"no API key the service can read ({key.problem})",
                 "put the key in a 0600 file named by api_key_file, or `keyring set tegbatchd anthropic`")


def _client(ctx, timeout: float):
    """A client for the checks: the key this shell would use, or a placeholder (an unauthenticated call
    still tells whether the endpoint answers and what time it is there). (client, has a real key)."""
    base_url = api_mod.check_endpoint(ctx.config["api"].get("base_url"))
    try:
        key, real = api_mod.resolve_api_key(ctx.config["api_key_file"]), True
    except UserError:
        key, real = "sk-ant-doctor-no-key", False
    return api_mod.BatchApi(key, base_url=base_url, max_retries=0, timeout=timeout), real


def _where(ctx) -> str:
    if os.environ.get("ANTHROPIC_BASE_URL"):
        return "ANTHROPIC_BASE_URL"
    return "api.base_url in the config" if ctx.config["api"].get("base_url") else "the default"


def check_endpoint_and_clock(ctx, client, real_key: bool, *, now: datetime | None = None) -> tuple[list[Check], bool]:
    """The endpoint (answers? the key accepted?) and the clock against its Date header; True when the API
    accepted the key (the models can be checked)."""
    url = client.endpoint.rstrip("/")
    try:
        status, date = client.probe()
    except api_mod.ApiError as exc:
        return [Check("endpoint", WARN, f"{url} ({_where(ctx)}) does not answer: {exc}; nothing is lost, the "
                      "daemon catches up once it does", "check the network, a proxy, or ANTHROPIC_BASE_URL / "
                      "api.base_url"),
                Check("clock", WARN, "not compared: the API did not answer")], False
    checks = []
    if not real_key:
        checks.append(Check("endpoint", WARN, f"{url} ({_where(ctx)}) answers; no key here to try",
                            "set ANTHROPIC_API_KEY (or api_key_file) to check the key too"))
    elif status in (401, 403):
        checks.append(Check("endpoint", FAIL, f"{url} ({_where(ctx)}) rejected the API key ({status})",
                            "check ANTHROPIC_API_KEY or your api_key_file"))
    elif status >= 400:
        checks.append(Check("endpoint", WARN, f"{url} ({_where(ctx)}) answered {status} to a models list"))
    else:
        checks.append(Check("endpoint", OK, f"{url} ({_where(ctx)}) answers and accepts the key"))
    if date is None:
        checks.append(Check("clock", WARN, "not compared: the answer had no Date header"))
    else:
        skew = ((now or datetime.now(UTC)) - date).total_seconds()
        side = "ahead of" if skew > 0 else "behind"
        text = f"this machine is {abs(skew):.0f} s {side} the API's clock"
        if abs(skew) > CLOCK_FAIL_SECONDS:
            checks.append(Check("clock", FAIL, text, "set the clock (enable NTP: `timedatectl set-ntp true`)"))
        elif abs(skew) > CLOCK_WARN_SECONDS:
            checks.append(Check("clock", WARN, text, "enable NTP (`timedatectl set-ntp true`)"))
        else:
            checks.append(Check("clock", OK, text + " (within a minute)"))
    return checks, real_key and status < 400


def check_database(ctx) -> Check:
    from tegbatchd.store import StoreError

    path = ctx.paths.db_path
    if not path.exists():
        return Check("database", OK, f"{path} not made yet (the first submit makes it)")
    try:
        findings, size = ctx.store.integrity()
    except (StoreError, UserError) as exc:
        return Check("database", FAIL, exc.message, exc.next_step)
    except Exception as exc:  # noqa: BLE001 - sqlite3.DatabaseError: damaged pages
        return Check("database", FAIL, f"{path} cannot be read ({exc})",
                     "move it aside and run again (a new one is made; written outputs stay)")
    mb = f"{size / 1e6:.1f} MB"
    if findings != ["ok"]:
        return Check("database", FAIL, f"{path} ({mb}) is damaged: {'; '.join(findings[:3])}",
                     "move it aside (a new one is made; written outputs stay), or restore a copy")
    return Check("database", OK, f"{path}: integrity ok, {mb}")


def check_pending(ctx, utc: bool = False) -> Check:
    from tegbatchd.locks import is_locked

    if not ctx.paths.db_path.exists():
        return Check("pending", OK, "nothing submitted yet")
    view = ctx.store.pending_overview()
    blocked = [j for j in view["jobs"] if j["state"] == "blocked"]
    active = [j for j in view["jobs"] if j["state"] == "active"]
    if not view["jobs"] and not view["batches"]:
        return Check("pending", OK, "nothing pending")
    parts = [f"{len(active)} job(s) active", f"{view['batches']} batch(es) not retrieved"]
    if view["open_intents"]:
        parts.append(f"{view['open_intents']} submission(s) to send or reconcile")
    if view["next_poll_at"]:
        parts.append(f"next poll {shown_time(view['next_poll_at'], utc=utc)}")
    detail = ", ".join(parts)
    if blocked:
        job = blocked[0]
        return Check("pending", WARN, f"{detail}; {len(blocked)} blocked: {job['id']} ({job['title']}): "
                     f"{job['blocked_reason']}", _go_on(job))
    if view["ended_unretrieved"] and not is_locked(ctx.paths.state_dir / "daemon.lock"):
        return Check("pending", WARN, f"{detail}; {view['ended_unretrieved']} ended and waiting, no daemon running",
                     "tegbatchd poll --once (or tegbatchd service install)")
    return Check("pending", OK, detail)


def check_models(ctx, client, usable: bool) -> Check:
    from tegbatchd.config import STAGE_NAMES
    from tegbatchd.preflight import check_models as ask
    from tegbatchd.preflight import stage_model_uses

    if not usable:
        return Check("models", WARN, "not checked: the Models API needs an accepted key")
    uses = stage_model_uses(ctx.config, STAGE_NAMES)
    try:
        warnings = ask(ctx, client, uses)
    except UserError as exc:
        detail = exc.message + (": " + "; ".join(exc.details) if exc.details else "")
        return Check("models", FAIL, detail, exc.next_step)
    except api_mod.ApiError as exc:
        return Check("models", WARN, f"not checked: {exc}")
    if warnings:
        return Check("models", WARN, "; ".join(warnings), "choose a current model in your config")
    return Check("models", OK, f"{len({u.model for u in uses})} model(s) in the config are current: "
                 + ", ".join(sorted({u.model for u in uses})))


def check_version() -> Check:
    from tegbatchd.versions import URL_ENV, index_url, is_newer, newest_version

    url = index_url()
    if url is None:
        return Check("version", OK, f"tegbatchd {__version__} (the package index check is off: {URL_ENV})")
    newest, why = newest_version(url)
    if newest is None:
        return Check("version", OK, f"tegbatchd {__version__} (the package index did not say: {why})")
    if is_newer(newest, __version__):
        return Check("version", WARN, f"tegbatchd {__version__}; {newest} is out",
                     "pip install --upgrade tegbatchd")
    return Check("version", OK, f"tegbatchd {__version__} is the newest")


def _safely(name: str, check, *args, **kwargs) -> Check:
    """A check that meets an error becomes a failed check naming it (doctor itself never stops)."""
    from tegbatchd.store import DatabaseError

    try:
        return check(*args, **kwargs)
    except UserError as exc:
        return Check(name, FAIL, exc.message, exc.next_step)
    except DatabaseError as exc:
        return Check(name, FAIL, f"not checked: the state database cannot be read ({exc})",
                     "see the database check")
    except Exception as exc:  # noqa: BLE001 - a bug in one check must not hide the others
        return Check(name, FAIL, f"the check itself failed ({type(exc).__name__}: {exc})", "please report it")


def run(ctx, *, now: datetime | None = None, utc: bool = False) -> DoctorReport:
    """Every check, in the order a person would look; never raises for what it finds (utc: times in UTC,
    else in this machine's zone)."""
    from tegbatchd.actions.service import read_manifest

    report = DoctorReport()
    report.checks.append(_safely("service", check_service, ctx))
    report.checks.append(_safely("notifications", check_notifications, ctx))
    try:
        installed = read_manifest(ctx) is not None
    except UserError:
        installed = True
    report.checks.append(_safely("key", check_key, ctx, installed))
    try:
        client, real_key = _client(ctx, PROBE_TIMEOUT)
    except UserError as exc:  # a base URL that cannot be parsed
        report.checks += [Check("endpoint", FAIL, exc.message, exc.next_step),
                          Check("clock", WARN, "not compared: no endpoint")]
        client, usable = None, False
    else:
        try:
            checks, usable = check_endpoint_and_clock(ctx, client, real_key, now=now)
        except Exception as exc:  # noqa: BLE001 - as _safely, for the pair
            checks, usable = [_safely("endpoint", _raise, exc), Check("clock", WARN, "not compared")], False
        report.checks += checks
    report.checks.append(_safely("database", check_database, ctx))
    database_sound = report.checks[-1].status != FAIL
    report.checks.append(_safely("pending", check_pending, ctx, utc) if database_sound else
                         Check("pending", WARN, "not read: the state database cannot be used"))
    report.checks.append(_safely("models", check_models, ctx, client, usable and client is not None and database_sound))
    report.checks.append(_safely("version", check_version))
    return report


def _raise(exc: Exception):
    raise exc


def _go_on(job: dict) -> str:
    from tegbatchd.engine.outcome import go_on_command
    from tegbatchd.engine.states import BUDGET

    command = go_on_command(job)
    return command if job.get("blocked_kind") == BUDGET else f"fix it, then {command}"
