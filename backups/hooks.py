"""Hooks: commands run in a volume's containers before and after its backup (worker side).

Where they come from:
- the labels of each running container that mounts the volume (set by whoever runs the
  container, so trusted as the container's own): `cargohold.backup.pre`,
  `cargohold.backup.post`, `cargohold.restore.post`, with `cargohold.hook.user`,
  `cargohold.hook.timeout` (seconds) and `cargohold.backup.pre.continue-on-failure`;
  offen/docker-volume-backup's `docker-volume-backup.archive-pre` / `-post` (and their
  `.user`) are read too, so its users switch without relabelling;
- the backup's policy (BackupPolicy.hook_*, set by Admins only: a hook is a command in a
  container, host-level power), run in each running container that mounts the volume.

A command is an argv split like a shell would (`sh -c '...'` for shell syntax), exec'd
through the engine (volumes.engine.exec_run) with a timeout that kills it; its output goes
to the job's log. A failing pre-hook aborts the backup unless told to continue;
post-hooks always run, like restarting stopped containers.
"""

from __future__ import annotations

import shlex
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings

from jobs.runner import JobContext
from project.errors import CargoholdError
from volumes import engine

PRE, POST, RESTORE_POST = "backup.pre", "backup.post", "restore.post"
LABEL_PREFIX = "cargohold."
LABEL_USER = "cargohold.hook.user"
LABEL_TIMEOUT = "cargohold.hook.timeout"
LABEL_CONTINUE = "cargohold.backup.pre.continue-on-failure"
OFFEN_LABELS = {PRE: "docker-volume-backup.archive-pre", POST: "docker-volume-backup.archive-post"}
MAX_TIMEOUT_SECONDS = 24 * 3600
TRUE = ("1", "true", "yes", "on")


class HookFailed(CargoholdError):
    pass


@dataclass(frozen=True)
class Hook:
    phase: str
    container_id: str
    container_name: str
    argv: tuple[str, ...]
    user: str
    timeout: int
    continue_on_failure: bool
    source: str  # where it was set, for the log and the error: "label cargohold.backup.pre"

    @property
    def label(self) -> str:
        return f"{self.phase} hook ({self.source}) in {self.container_name}"


def parse_command(text: str, *, source: str) -> tuple[str, ...]:
    try:
        argv = tuple(shlex.split(text or ""))
    except ValueError as exc:
        raise HookFailed(f"The {source} cannot be read as a command ({exc}): {text[:200]!r}.") from None
    return argv


def parse_timeout(value, *, source: str) -> int:
    if value in (None, "", 0):
        return settings.HOOK_TIMEOUT_SECONDS
    try:
        seconds = int(str(value).strip())
    except ValueError:
        seconds = -1
    if not 0 < seconds <= MAX_TIMEOUT_SECONDS:
        raise HookFailed(f"The {source} must be a number of seconds from 1 to {MAX_TIMEOUT_SECONDS}, "
                         f"not {str(value)[:50]!r}.")
    return seconds


def hooks_from_labels(container: engine.EngineContainer, phase: str) -> list[Hook]:
    """The hooks a container's labels set for `phase` (ours first, then offen's). Pure."""
    labels = container.labels
    timeout = parse_timeout(labels.get(LABEL_TIMEOUT), source=f"label {LABEL_TIMEOUT} of {container.name}")
    keep_going = str(labels.get(LABEL_CONTINUE, "")).strip().lower() in TRUE
    hooks = []
    for key in (LABEL_PREFIX + phase, OFFEN_LABELS.get(phase)):
        if not key or not str(labels.get(key, "")).strip():
            continue
        source = f"label {key}"
        hooks.append(Hook(
            phase=phase, container_id=container.id, container_name=container.name,
            argv=parse_command(labels[key], source=f"{source} of {container.name}"),
            user=labels.get(f"{key}.user") or labels.get(LABEL_USER, ""), timeout=timeout,
            continue_on_failure=keep_going, source=source,
        ))
    return hooks


def hooks_from_policy(policy, containers: list[engine.EngineContainer], phase: str) -> list[Hook]:
    """The hooks a policy sets for `phase`, one per running container of the volume. Pure."""
    text = {PRE: policy.hook_pre, POST: policy.hook_post}.get(phase, "")
    if not (text or "").strip():
        return []
    source = f"policy {policy.name}"
    argv = parse_command(text, source=f"{phase} hook of {source}")
    timeout = parse_timeout(policy.hook_timeout_seconds, source=f"hook timeout of {source}")
    return [Hook(phase=phase, container_id=c.id, container_name=c.name, argv=argv, user=policy.hook_user,
                 timeout=timeout, continue_on_failure=policy.hook_continue_on_failure, source=source)
            for c in containers]


def volume_hooks(volume_name: str, phase: str, *, policy=None) -> list[Hook]:
    """Every hook for `phase` of a backup of `volume_name`, in container-name order:
    the containers' labels, then the policy's. Raises HookFailed on a label it cannot read."""
    containers = [c for c in engine.containers_using(volume_name, running_only=True)
                  if engine.HELPER_LABEL not in c.labels]
    hooks = [h for c in containers for h in hooks_from_labels(c, phase)]
    if policy is not None:
        hooks += hooks_from_policy(policy, containers, phase)
    return hooks


def hook_run(ctx: JobContext, hook: Hook) -> engine.ExecResult:
    """Run one hook, its output to the job's log; returns the result (never raises for
    the command's own failure, only for the engine refusing to run it)."""
    ctx.say(f"Running the {hook.label}")
    ctx.log(f"$ {shlex.join(hook.argv)}   # {hook.label}{f' as {hook.user}' if hook.user else ''}")
    result = engine.exec_run(hook.container_id, list(hook.argv), user=hook.user, timeout=hook.timeout,
                             on_line=lambda line: ctx.log(f"  {line}"))
    if result.timed_out:
        ctx.log(f"  killed: still running after its timeout of {hook.timeout} s")
    else:
        ctx.log(f"  exit {result.exit_code}")
    return result


def _why(hook: Hook, result: engine.ExecResult | None, error: Exception | None) -> str:
    if error is not None:
        return f"The {hook.label} could not run: {error}"
    if result.timed_out:
        return f"The {hook.label} was killed after its timeout of {hook.timeout} s."
    last = result.output.strip().splitlines()[-1:] if result.output.strip() else []
    return f"The {hook.label} failed (exit {result.exit_code}){': ' + last[0][:300] if last else ''}."


def hooks_run(ctx: JobContext, hooks: list[Hook], *, abort_on_failure: bool) -> list[str]:
    """Run `hooks` in order. A failure of one not allowed to continue raises HookFailed
    when `abort_on_failure` (pre-hooks); else (post-hooks) every hook runs and the
    failures are returned as warnings."""
    warnings = []
    for hook in hooks:
        result, error = None, None
        try:
            result = hook_run(ctx, hook)
        except engine.EngineError as exc:
            error = exc
        if error is None and result.ok:
            continue
        why = _why(hook, result, error)
        ctx.log(f"  {why}")
        if abort_on_failure and not hook.continue_on_failure:
            raise HookFailed(f"{why} Nothing was backed up (set {LABEL_CONTINUE}=true to back up anyway).")
        warnings.append(why)
    return warnings


def backup_policy(backup):
    """The policy whose run started `backup`, if any (its hooks apply)."""
    from policies.models import PolicyRun

    run = PolicyRun.objects.select_related("policy").filter(backup=backup).first()
    return run.policy if run is not None else None


@contextmanager
def backup_hooks(ctx: JobContext, volume_name: str, *, policy=None):
    """Pre-hooks before the block (a failure aborts it unless allowed to continue),
    post-hooks after it, always (also when the block or a pre-hook failed). Their
    failures after a backup are warnings on the job, not a failed backup."""
    post = volume_hooks(volume_name, POST, policy=policy)  # a bad label fails before anything ran
    pre = volume_hooks(volume_name, PRE, policy=policy)
    ran = bool(pre or post)
    warnings: list[str] = []
    try:
        warnings += hooks_run(ctx, pre, abort_on_failure=True)
        yield
    finally:
        if post:
            # Containers may have been stopped and started again meanwhile (new ids are
            # fine, the names stay): run what is set now on those that run now.
            current = volume_hooks(volume_name, POST, policy=policy)
            running = {h.container_name for h in current}
            for h in post:
                if h.container_name not in running:
                    warnings.append(f"The {h.label} did not run: the container is not running.")
                    ctx.log(warnings[-1])
            warnings += hooks_run(ctx, current, abort_on_failure=False)
        if ran:
            ctx.result["hooks"] = len(pre) + len(post)
        if warnings:
            ctx.result["warnings"] = ctx.result.get("warnings", []) + warnings


def restore_post_hooks(sender=None, *, job, **kwargs) -> None:
    """job_ended of a restore that succeeded: the `cargohold.restore.post` hooks of the
    running containers that mount the volume (a restore in place started them again), their
    output appended to the restore job's log; their failures are warnings on it."""
    from jobs.models import Job
    from restores.models import Restore

    from restores.services import KIND_RESTORE_IN_PLACE, KIND_RESTORE_NEW

    if job.kind not in (KIND_RESTORE_IN_PLACE, KIND_RESTORE_NEW) or job.status != Job.Status.SUCCEEDED:
        return
    restore = Restore.objects.filter(job=job).first()
    if restore is None:
        return
    ctx = JobContext(job)
    try:
        found = volume_hooks(restore.volume_name, RESTORE_POST)
        warnings = hooks_run(ctx, found, abort_on_failure=False)
    except (HookFailed, engine.EngineError) as exc:
        found, warnings = [], [str(exc)]
    if found or warnings:
        result = {**job.result, "warnings": [*job.result.get("warnings", []), *warnings]} if warnings else job.result
        Job.objects.filter(pk=job.pk).update(log=ctx.log_text, result=result)
