"""Chains: jobs of one chain run strictly one at a time, in insertion order.

::

    class WebhookWorker(Worker):
        chain = {"by": {"args": "account_id"}}   # one chain per account

        def perform(self, job):
            deliver(job.args["account_id"], job.args["event"])

``by`` names the partition: ``"worker"`` (the default: every job of the worker is one chain),
``{"args": key or [keys]}``, ``{"meta": key or [keys]}``, or a list combining ``"worker"`` with
such dicts. ``on_discarded`` and ``on_cancelled`` say what a discarded or cancelled job does
to the rest of its chain: ``"ignore"`` (the default: the next job runs) or ``"hold"`` (the rest
waits until that job is retried to completion, or deleted).

How: a chained job is inserted ``suspended`` (a state the fetch never looks at) with its chain
id in ``meta["chain_id"]``. In the same transaction (:meth:`Chain.inserted`), under a lock on
the chain (``Engine.serialize``), the chain's first waiting job is released if the chain has
no active job and the job before it finished the right way. When a job of a chain finishes
(:meth:`Chain.acked`, in the transaction that writes its outcome), the next one is released
the same way, so a successor never waits for a poll. A job retried while another job of its
chain is active waits its turn again (suspended). The leader's ``ChainSweep`` plugin repairs a
chain whose release was lost (a predecessor deleted behind django_jobs's back, say), and a
unique index refuses two running jobs of one chain as a backstop.

Order is the order of ids: the order in which inserts drew them (one ``insert_all`` keeps its
list's order; concurrent inserts into one chain are ordered by the database).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Count, Min
from django.utils import timezone

from .. import features
from ..engines import get_engine
from ..exceptions import ConfigurationError
from ..features import Feature
from ..jsonutil import dumps
from ..models.job import FINISHED_STATES, Job, JobChange, JobState
from ..plugins.base import Plugin
from ..registry import resolve_worker
from ..transitions import HeldJob, transition
from .chain_queries import (CHAIN_ACTIVE, chain_heads, chained, chains_with_other_active,
                            in_chain, jobs_of, waiting_chains)
from .partition import parse_by

logger = logging.getLogger("django_jobs.chain")

POLICIES = ("ignore", "hold")
OPTIONS = ("by", "on_discarded", "on_cancelled")


@dataclass(frozen=True)
class ChainSpec:
    """A worker's validated ``chain`` option."""

    #: ("worker",), ("args", keys) and ("meta", keys) parts, in order.
    by: tuple[tuple, ...]
    on_discarded: str = "ignore"
    on_cancelled: str = "ignore"

    def chain_id(self, worker: str, args: Mapping[str, Any], meta: Mapping[str, Any]) -> str:
        """32 hex digits of the SHA-256 of the partition's values."""
        parts = []
        for part in self.by:
            if part[0] == "worker":
                parts.append(["worker", worker])
            else:
                source = args if part[0] == "args" else meta
                parts.append([part[0], {key: source.get(key) for key in part[1]}])
        return hashlib.sha256(dumps(parts).encode()).hexdigest()[:32]

    def releases_after(self, previous: str | None) -> bool:
        """Whether a job whose predecessor is in state ``previous`` may start."""
        if previous is None or previous == JobState.COMPLETED:
            return True
        if previous == JobState.DISCARDED:
            return self.on_discarded == "ignore"
        if previous == JobState.CANCELLED:
            return self.on_cancelled == "ignore"
        return False  # still running, or waiting itself


def parse_chain(value: Any) -> ChainSpec:
    """Validate a ``chain`` option (``True`` means ``{"by": "worker"}``)."""
    if value is True:
        value = {}
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"chain must be True or a dict with {', '.join(OPTIONS)}, "
                                 f"not {value!r}")
    unknown = set(value) - set(OPTIONS)
    if unknown:
        raise ConfigurationError(f"unknown chain option {sorted(unknown)[0]!r} (valid: "
                                 f"{', '.join(OPTIONS)})")
    parts = parse_by(value.get("by", "worker"), "chain by")
    policies = {}
    for name in ("on_discarded", "on_cancelled"):
        policies[name] = value.get(name, "ignore")
        if policies[name] not in POLICIES:
            raise ConfigurationError(f"chain {name} must be 'ignore' or 'hold', not "
                                     f"{policies[name]!r}")
    return ChainSpec(by=tuple(parts), **policies)


def lock_keys(chains: Iterable[str]) -> list[str]:
    return [f"django_jobs.chain:{chain}" for chain in sorted(set(chains))]


def spec_for(worker_path: str) -> ChainSpec | None:
    """The chain option of the worker at ``worker_path`` (None when it has none, or it cannot
    be imported)."""
    try:
        worker = resolve_worker(worker_path)
    except Exception:
        return None
    for feature, config in features.pipeline(worker):
        if isinstance(feature, Chain):
            return config
    return None


#: Seconds the sweep leaves a chain whose job was just cancelled from outside: time for the
#: node running it to stop it (NOTIFY or its next heartbeat, within about a second).
SETTLE = 5.0


def release(using: str, members: Iterable[int], *,
            settle: float = 0.0) -> dict[int, str]:
    """Release the first waiting job of the chain of each of ``members`` (job ids) whose
    turn has come; the caller holds the chains' locks. With ``settle``, a chain whose last
    job was cancelled less than ``settle`` seconds ago waits (it may have been running).
    Returns the released jobs' ids with their new states."""
    heads = chain_heads(using, members)
    if not heads:
        return {}
    now = timezone.now()
    targets: dict[str, dict[int, HeldJob]] = {JobState.AVAILABLE: {}, JobState.SCHEDULED: {}}
    for head in heads:
        spec = spec_for(head["worker"]) or ChainSpec(by=(("worker",),))
        if not spec.releases_after(head["previous"]):
            continue
        cancelled = head["previous_cancelled_at"]
        if settle and head["previous"] == JobState.CANCELLED and cancelled is not None and \
                (now - cancelled).total_seconds() < settle:
            continue
        state = JobState.SCHEDULED if head["scheduled_at"] > now else JobState.AVAILABLE
        targets[state][head["id"]] = HeldJob(head["worker"], head["queue"], head["meta"],
                                              JobState.SUSPENDED)
    for state, rows in targets.items():
        if rows:
            # Chain.acked sees these changes (suspended -> available/scheduled) as jobs made
            # active: each is the only active job of its chain, so they stay released.
            transition(list(rows), state, only_from=(JobState.SUSPENDED,), held=rows,
                       using=using)
    # Under the chain locks, nothing else could have moved these waiting jobs meanwhile.
    return {pk: state for state, rows in targets.items() for pk in rows}


def chain_status(using: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Chains with waiting jobs (at most ``limit``), each with: ``chain``, ``worker``,
    ``waiting`` (how many), ``first`` (the first waiting job's id), ``head`` (the active job,
    as ``(id, state)``, or None) and ``status``: ``running`` (the head is active), ``held``
    (the job before the first waiting one was discarded or cancelled under ``hold``: the
    reason says which and how to go on) or ``releasing`` (due now; the sweep repairs it)."""
    jobs = jobs_of(using)
    rows = []
    waiting = (chained(jobs).filter(state=JobState.SUSPENDED).order_by()
               .values("chain").annotate(first=Min("id"), count=Count("id"))[:limit])
    for row in waiting:
        chain = row["chain"]
        first = jobs.get(pk=row["first"])
        head = in_chain(jobs, chain).filter(state__in=CHAIN_ACTIVE).values_list(
            "id", "state").first()
        before = in_chain(jobs, chain).filter(id__lt=first.pk).order_by("-id").values_list(
            "id", "state").first()
        spec = spec_for(first.worker) or ChainSpec(by=(("worker",),))
        if head is not None:
            status, reason = "running", f"job {head[0]} is {head[1]}"
        elif before is not None and not spec.releases_after(before[1]):
            status = "held"
            reason = (f"job {before[0]} was {before[1]} (on_{before[1]}=hold): retry it to "
                      f"completion, or delete it")
        else:
            status, reason = "releasing", "its turn has come (released at the next sweep)"
        rows.append({"chain": chain, "worker": first.worker, "waiting": row["count"],
                     "first": first.pk, "head": head, "status": status, "reason": reason})
    return rows


def _members(using: str, finished: dict[str, int | None]) -> list[int]:
    """A job of each chain in ``finished`` (chain -> the id of its job that finished, None
    when that job was deleted): that job, or a waiting job of the chain."""
    members = [pk for pk in finished.values() if pk is not None]
    gone = [chain for chain, pk in finished.items() if pk is None]
    if gone:
        members += list(jobs_of(using).filter(chain__in=gone, state=JobState.SUSPENDED)
                        .order_by().values("chain").annotate(member=Min("id"))
                        .values_list("member", flat=True))
    return members


class Chain(Feature):
    """``chain = {...}``: jobs of one partition run one at a time, in insertion order."""

    name = "chain"

    def setup(self, worker: type) -> ChainSpec | None:
        option = getattr(worker, "chain", None)
        if option is None or option is False:
            return None
        spec = parse_chain(option)
        if getattr(worker, "encrypted", None) and any(p[0] == "args" for p in spec.by):
            raise ConfigurationError("an encrypted worker cannot chain by args (the chain id "
                                     "would be a hash of them); chain by meta keys")
        return spec

    def build(self, job: Job, options: Mapping[str, Any], config: ChainSpec) -> None:
        job.meta["chain_id"] = config.chain_id(job.worker, job.args, job.meta)
        job.state = JobState.SUSPENDED  # until its turn: released by inserted() or acked()

    def inserting(self, jobs: list[Job], using: str) -> None:
        # The chains' locks before the rows draw their ids: ids then follow the order in
        # which inserts into one chain take turns, which is the chain's order.
        get_engine(using).serialize(lock_keys({job.meta["chain_id"] for job in jobs}))

    def inserted(self, jobs: list[Job], using: str) -> None:
        first_of_chain = {}
        for job in jobs:
            first_of_chain.setdefault(job.meta["chain_id"], job.pk)
        released = release(using, first_of_chain.values())
        for job in jobs:  # the caller's jobs read as their rows do
            job.state = released.get(job.pk, job.state)

    def acked(self, changes: list[JobChange], using: str) -> None:
        chained_changes = [c for c in changes if isinstance(c.meta, Mapping)
                           and isinstance(c.meta.get("chain_id"), str)]
        # A job that finished moves its chain on, unless its attempt still runs for a moment
        # (cancelled from outside): then the sweep moves it on once the node has stopped it.
        finished: dict[str, int | None] = {}
        for c in chained_changes:
            if (c.new is None or c.new in FINISHED_STATES) and not c.still_running:
                kept = c.id if c.new is not None else None  # a deleted job is gone
                finished[c.meta["chain_id"]] = finished.get(c.meta["chain_id"]) or kept
        # A job made active (retried or run now from outside; or released by the chain
        # itself, which is then the chain's only active job) waits its turn again if its
        # chain has another active job.
        activated = {c.id: c for c in chained_changes if c.new in CHAIN_ACTIVE
                     and (c.old in FINISHED_STATES or c.old == JobState.SUSPENDED)}
        chains = set(finished) | {c.meta["chain_id"] for c in activated.values()}
        if not chains:
            return
        engine = get_engine(using)
        engine.serialize(lock_keys(chains))
        waiting = chains_with_other_active(
            using, {pk: c.meta["chain_id"] for pk, c in activated.items()})
        # Several jobs of one chain made active together: the first in the chain's order
        # goes on, the others wait their turn.
        first: dict[str, int] = {}
        for pk in sorted(set(activated) - waiting):
            if first.setdefault(activated[pk].meta["chain_id"], pk) != pk:
                waiting.add(pk)
        for pk in sorted(waiting):
            change = activated[pk]
            transition([pk], JobState.SUSPENDED, only_from=(change.new,),
                       held={pk: HeldJob(change.worker, change.queue, change.meta,
                                           change.new)}, using=using)
        release(using, _members(using, finished))


class ChainSweep(Plugin):
    """Releases the chains whose turn has come without an ack to move them (every 5 s on the
    leader): chains with waiting jobs and no active one. The ack-time release is the usual
    path; this one moves on a chain whose running job was cancelled from outside (once the node
    had a few seconds to stop it), and repairs a chain whose release was lost (a job deleted
    with a raw query, a database restored from a backup)."""

    name = "chain_sweep"
    interval = 5.0

    def run(self, node, engine, now):
        jobs = Job.objects.using(engine.alias)
        members = waiting_chains(engine.alias)
        released = 0
        for start in range(0, len(members), 100):
            part = members[start:start + 100]
            with transaction.atomic(using=engine.alias):
                chains = jobs.filter(pk__in=part).values_list("chain", flat=True)
                engine.serialize(lock_keys(chains))
                released += len(release(engine.alias, part, settle=SETTLE))
        if released:
            logger.warning("chain sweep released %d waiting jobs whose release was lost",
                           released)
        return {"released": released}
