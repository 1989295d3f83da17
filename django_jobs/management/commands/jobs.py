"""``manage.py jobs``: queue and job control, and live counts. Parsing only; the work is in
:mod:`django_jobs.control`."""

from __future__ import annotations

import argparse
import json
import time

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db.models import Count
from django.utils import timezone

from ... import control
from ...build import validate_queue
from ...exceptions import ConfigurationError, InvalidJobError
from ...models import Batch, CronEntry, CronSource, Job, JobState, Producer
from ...plugins.cron import next_runs
from ...pro.batch import batch_statuses
from ...pro.chain import chain_status
from ...pro.encrypted import reencrypt_jobs


def queue_name(value: str) -> str:
    try:
        return validate_queue(value)
    except InvalidJobError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_int(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected an integer of at least 1, not {value!r}")
    return int(value)


def node_name(value: str) -> str:
    if not value.strip():
        raise argparse.ArgumentTypeError("a node name cannot be empty")
    return value


def json_object(value: str) -> dict:
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError("--args must be a JSON object")
    return parsed


def job_id(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"job ids are integers, not {value!r}")
    return int(value)


class Command(BaseCommand):
    help = "Control queues and jobs on every node, and show counts."

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        for name, text in (("pause", "stop fetching jobs of a queue"),
                           ("resume", "fetch jobs of a paused queue again")):
            p = sub.add_parser(name, help=text)
            p.add_argument("queue", type=queue_name)
            p.add_argument("--node", help="Only on this node.")
        p = sub.add_parser("scale", help="set how many jobs of a queue run at once per node")
        p.add_argument("queue", type=queue_name)
        p.add_argument("limit", type=positive_int)
        p.add_argument("--node", help="Only on this node.")
        p = sub.add_parser("start-queue", help="start running a queue on the running nodes "
                                               "(until they stop: settings decide at start)")
        p.add_argument("queue", type=queue_name)
        p.add_argument("--limit", type=positive_int, required=True,
                       help="How many of its jobs run at once on each node.")
        p.add_argument("--node", type=node_name, help="Only on the nodes of this name.")
        p = sub.add_parser("stop-queue", help="stop running a queue: running jobs finish, "
                                              "no more are fetched")
        p.add_argument("queue", type=queue_name)
        p.add_argument("--node", type=node_name, help="Only on the nodes of this name.")
        for name, text in (("cancel", "cancel jobs (stops executing ones)"),
                           ("retry", "make jobs available again"),
                           ("delete", "delete jobs that are not executing")):
            p = sub.add_parser(name, help=text)
            p.add_argument("ids", nargs="+", type=job_id, metavar="ID")
        cron = sub.add_parser("cron", help="list and manage cron entries").add_subparsers(
            dest="cron_action", required=True, metavar="CRON_ACTION")
        cron.add_parser("list", help="every entry with its next run")
        p = cron.add_parser("add", help="add a database entry")
        p.add_argument("name")
        p.add_argument("expression", help="e.g. '*/15 * * * *' or '@daily' (quote it)")
        p.add_argument("worker", help="dotted path of the worker class")
        p.add_argument("--args", dest="job_args", type=json_object, default={},
                       help="job args as JSON")
        p.add_argument("--timezone", default="",
                       help="IANA time zone (default: DJANGO_JOBS['CRON_TIMEZONE'], UTC)")
        p.add_argument("--catch-up", type=int, default=0, metavar="SECONDS")
        p.add_argument("--queue", type=queue_name)
        p.add_argument("--priority", type=int)
        for name in ("pause", "resume", "delete"):
            cron.add_parser(name, help=f"{name} an entry").add_argument("name")
        p = sub.add_parser("batches", help="batches with their progress and handlers")
        p.add_argument("--all", action="store_true",
                       help="Also batches whose every handler ran (default: open ones).")
        p.add_argument("--limit", type=positive_int, default=50)
        p = sub.add_parser("chains", help="chains with waiting jobs: running, held (and why) "
                                          "or due")
        p.add_argument("--held", action="store_true", help="Only the held chains.")
        p = sub.add_parser("reencrypt", help="seal every job of an encrypted worker with its "
                                             "first key (key rotation)")
        p.add_argument("--batch", type=positive_int, default=500,
                       help="Jobs locked and rewritten per transaction (default 500).")
        p = sub.add_parser("stats", help="jobs per queue and state, and the running producers")
        p.add_argument("--watch", nargs="?", const=2.0, type=float, metavar="SECONDS",
                       help="Refresh every SECONDS (default 2) until interrupted.")

    def handle(self, *args, action: str, **options) -> None:
        if action in ("pause", "resume"):
            changed = getattr(control, f"{action}_queue")(options["queue"],
                                                          node=options["node"])
            self._report(f"{action}d queue {options['queue']}", changed, "producer")
        elif action == "scale":
            changed = control.scale_queue(options["queue"], options["limit"],
                                          node=options["node"])
            self._report(f"scaled queue {options['queue']} to {options['limit']}", changed,
                         "producer")
        elif action == "start-queue":
            queue, node = options["queue"], options["node"]
            nodes = control.start_queue(queue, options["limit"], node=node)
            where = f"nodes named {node!r}" if node else "running nodes"
            self.stdout.write(f"starting queue {queue} with limit {options['limit']} on "
                              f"{nodes} {where}")
            if not nodes:
                self.stdout.write(f"no node {'of that name ' if node else ''}runs any queue "
                                  f"now; a running node that runs no queue applies it too, "
                                  f"nodes starting later use their own settings")
        elif action == "stop-queue":
            changed = control.stop_queue(options["queue"], node=options["node"])
            self._report(f"stopping queue {options['queue']} (running jobs finish)", changed,
                         "producer")
        elif action in ("cancel", "retry", "delete"):
            changed = getattr(control, f"{action}_all_jobs")(options["ids"])
            self.stdout.write(f"{action}: {changed} of {len(options['ids'])} jobs changed")
        elif action == "cron":
            self._cron(options)
        elif action == "batches":
            self._batches(options["all"], options["limit"])
        elif action == "chains":
            rows = [r for r in chain_status() if r["status"] == "held" or not options["held"]]
            if not rows:
                self.stdout.write("no held chains" if options["held"]
                                  else "no chain has waiting jobs")
            for row in rows:
                self.stdout.write(f"{row['chain']}  {row['worker']}  {row['waiting']} waiting "
                                  f"(first: job {row['first']})  {row['status']}: "
                                  f"{row['reason']}")
        elif action == "reencrypt":
            try:
                counts = reencrypt_jobs(batch=options["batch"])
            except ConfigurationError as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(f"resealed {counts['resealed']} with the first key, sealed "
                              f"{counts['sealed']} stored in plain text, "
                              f"{counts['current']} already current")
            if counts["failed"]:
                raise CommandError(f"{counts['failed']} jobs could not be opened (missing key "
                                   f"or altered row); they were left as they are")
        else:
            self._stats(options["watch"])

    def _batches(self, everything: bool, limit: int) -> None:
        batches = list(Batch.objects.order_by("-created_at")[:limit * 4])
        statuses = batch_statuses(batches, Batch.objects.db)
        shown = 0
        for batch in batches:
            status = statuses[batch.pk]
            if not everything and batch.has_fired("handle_exhausted") and "pending" not in \
                    status.handlers.values():
                continue
            counts = ", ".join(f"{n} {name}" for name, n in status.counts.items()
                               if n and name != "members")
            handlers = ", ".join(f"{name.removeprefix('handle_')}: {state}"
                                 for name, state in status.handlers.items())
            self.stdout.write(f"{batch.pk}  {batch.members} members, "
                              f"{round(batch.progress * 100)}% finished ({counts or 'none'})  "
                              f"handlers: {handlers or '-'}")
            shown += 1
            if shown >= limit:
                break
        if not shown:
            self.stdout.write("no open batches" if not everything else "no batches")

    def _cron(self, options) -> None:
        action = options["cron_action"]
        if action == "list":
            rows = next_runs()
            if not rows:
                self.stdout.write("(no cron entries; settings entries appear once a leader "
                                  "has run)")
            for entry, nxt in rows:
                if nxt == "invalid":
                    when = "invalid entry (fix it in the admin or delete it)"
                else:
                    when = ("at cluster start" if entry.expression_obj.reboot
                            else f"{nxt:%Y-%m-%d %H:%M} UTC" if nxt else "never")
                self.stdout.write(f"{entry.name}  {entry.expression!r} {entry.timezone_name}  "
                                  f"{entry.worker}  next: {when}"
                                  f"{'  [paused]' if entry.paused else ''}  ({entry.source})")
            return
        if action == "add":
            job_options = {k: options[k] for k in ("queue", "priority")
                           if options[k] is not None}
            entry = CronEntry(name=options["name"], expression=options["expression"],
                              worker=options["worker"], args=options["job_args"],
                              options=job_options, timezone=options["timezone"],
                              catch_up=options["catch_up"])
            try:
                entry.full_clean()
            except ValidationError as exc:
                raise CommandError("; ".join(exc.messages)) from None
            entry.save()
            nxt = ("at cluster start" if entry.expression_obj.reboot
                   else entry.next_run() or "never (the expression matches no date)")
            self.stdout.write(f"added cron entry {entry.name}; next run {nxt}")
            return
        entry = CronEntry.objects.filter(name=options["name"]).first()
        if entry is None:
            raise CommandError(f"no cron entry named {options['name']!r}")
        if action == "delete":
            if entry.source == CronSource.SETTINGS:
                raise CommandError(f"{entry.name!r} comes from DJANGO_JOBS['CRONTAB']: remove "
                                   f"it there, or pause it")
            entry.delete()
        elif action == "pause":
            CronEntry.objects.filter(pk=entry.pk).update(paused=True)
        else:
            # Runs missed while paused are not caught up: the entry restarts from now.
            CronEntry.objects.filter(pk=entry.pk).update(paused=False,
                                                         last_slot_at=timezone.now())
        self.stdout.write(f"cron entry {entry.name}: {action}d")

    def _report(self, what: str, changed: int, noun: str) -> None:
        if not changed:
            self.stdout.write(f"{what}: no running {noun} of that queue now; nodes starting "
                              f"later use their own settings")
        else:
            self.stdout.write(f"{what}: {changed} {noun}{'s' if changed != 1 else ''}")

    def _stats(self, watch: float | None) -> None:
        if watch is not None and watch <= 0:
            raise CommandError("--watch needs a positive number of seconds")
        try:
            while True:
                table = self._table()
                if watch:
                    self.stdout.write("\x1b[2J\x1b[H" + time.strftime("%H:%M:%S  ") + "\n")
                self.stdout.write(table)
                if not watch:
                    return
                time.sleep(watch)
        except KeyboardInterrupt:
            pass

    @staticmethod
    def _table() -> str:
        counts: dict[str, dict[str, int]] = {}
        for row in Job.objects.values("queue", "state").annotate(n=Count("id")):
            counts.setdefault(row["queue"], {})[row["state"]] = row["n"]
        states = JobState.values
        width = max([5, *(len(q) for q in counts)])
        lines = ["queue".ljust(width) + "".join(s.rjust(11) for s in states)]
        for queue in sorted(counts):
            lines.append(queue.ljust(width) + "".join(
                str(counts[queue].get(s, 0)).rjust(11) for s in states))
        if not counts:
            lines.append("(no jobs)")
        lines.append("")
        lines.append("producers (one per queue and worker process; limits are per process): "
                     "node / queue / limit / paused / last heartbeat")
        for p in Producer.objects.order_by("queue", "node"):
            stopping = isinstance(p.meta, dict) and p.meta.get("stopping") is True
            lines.append(f"  {p.node} / {p.queue} / {p.limit} / {'yes' if p.paused else 'no'}"
                         f" / {p.heartbeat_at:%H:%M:%S}"
                         f"{'  (stopping: its last jobs are finishing)' if stopping else ''}")
        return "\n".join(lines) + "\n"
