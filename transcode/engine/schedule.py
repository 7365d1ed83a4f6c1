"""The shards a conversion still has to build, streamed pass by pass from the plan and checked against the
resume journal: the first shard starts while later passes are not yet made into tasks, and only the tasks
in flight are held."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from transcode.engine.journal import delete_entry, entry_key
from transcode.engine.plan import Plan, ShardTask
from transcode.storage import Storage

if TYPE_CHECKING:
    from transcode.engine.stretchstore import StretchStore


class PendingShards:
    """Iterates the plan's shards whose current journal entry is missing, biggest first within each (zone, year)
    pass; deletes journal entries left stale beside a finished shard's current one. `before_change` runs once,
    before the first shard is handed out, the first entry deleted or the first statistics changed (the caller
    withdraws the manifest there). With `stretch`, each pass is registered with it as it is planned, and its
    statistics invalidated (or, with no work left, rebuilt when stale) before its first shard is handed out.
    `before_pass(zone)` runs as each pass begins, before anything of it is written (the caller syncs the zone's
    metadata there)."""

    def __init__(self, plan: Plan, settings_fingerprint: dict, entries: dict[str, dict[str, int]], store: Storage,
                 before_change: Callable[[], None], stretch: StretchStore | None = None,
                 before_pass: Callable[[int], None] | None = None) -> None:
        self.plan, self.settings, self.entries, self.store = plan, settings_fingerprint, entries, store
        self.before_change = before_change
        self.before_pass = before_pass
        self.stretch = stretch
        self.changed = False
        self.planned = 0
        self.done_before = 0
        self.handed_out = 0
        self._in_flight: dict[str, tuple[ShardTask, str]] = {}

    def _change(self) -> None:
        if not self.changed:
            self.changed = True
            self.before_change()

    def __iter__(self) -> Iterator[ShardTask]:
        for zone, year in self.plan.passes():
            if self.before_pass is not None:
                self.before_pass(zone)
            tasks, todo = [], []
            for task in self.plan.pass_tasks(zone, year):
                self.planned += 1
                fingerprint = task.fingerprint(self.settings)
                tasks.append((task, fingerprint))
                key = entry_key(task, fingerprint)
                old = self.entries.get(task.name, {})
                if key in old:
                    self.done_before += 1
                    stale = [k for k in old if k != key]  # a kill came between a rewrite's new entry and the cleanup
                    if stale:
                        self._change()
                        for k in stale:
                            delete_entry(self.store, k)
                    continue
                todo.append((task, fingerprint))
            if self.stretch is not None and self.stretch.register(zone, year, tasks, [t for t, _ in todo]):
                self._change()
                self.stretch.begin(zone, year)
            todo.sort(key=lambda tf: -tf[0].work(self.plan.shard))  # biggest first: workers finish together
            for task, fingerprint in todo:
                self._change()
                self._in_flight[task.name] = (task, fingerprint)
                self.handed_out += 1
                yield task

    def finished(self, name: str) -> tuple[ShardTask, str, list[str]]:
        """The task handed out under `name`, its fingerprint, and the journal entries it replaces."""
        task, fingerprint = self._in_flight.pop(name)
        return task, fingerprint, list(self.entries.get(name, {}))
