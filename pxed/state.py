# -*- test-case-name: tests.test_state -*-
"""
Boot timelines: what each machine did, stage by stage.

Behind L{IBootLog} so a site running several pxed can share one store
(Redis, PostgreSQL); the default keeps a bounded history in memory.  The
store only keeps events: what they mean (the current stage, progress,
loops) is worked out from them by L{pxed.timeline}, so every pxed sharing
a store draws the same conclusions.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from zope.interface import Interface, implementer

__all__ = ["BootEvent", "IBootLog", "MemoryBootLog"]


@dataclass(frozen=True)
class BootEvent:
    mac: str
    stage: str
    when: float
    fields: dict[str, Any] = field(default_factory=dict)


class IBootLog(Interface):
    """
    Records the stages of machines' boots.
    """

    def record(mac: str, stage: str, **fields: Any) -> None:
        """
        Note that C{mac} reached C{stage}.  Must not block.
        """

    def events(mac: str) -> list[BootEvent]:
        """
        The recorded events of one machine, oldest first.
        """

    def machines() -> list[str]:
        """
        The machines with events, least recently active first.
        """

    def last(mac: str) -> BootEvent | None:
        """
        The most recent event of one machine, or C{None}.  Asked on every
        event recorded (to time stages), so it must be cheap.
        """

    def version() -> int:
        """
        A number that changes whenever an event is recorded, so that a
        status page polling the store can be told "nothing new" cheaply
        (it is the JSON API's ETag).
        """


@implementer(IBootLog)
class MemoryBootLog:
    """
    An in-memory L{IBootLog}, bounded in events per machine and in
    machines (the least recently active machine is evicted first), so a
    boot storm or a scan cannot grow it without limit.
    """

    def __init__(
        self,
        max_machines: int = 4096,
        max_events: int = 256,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._machines: OrderedDict[str, deque[BootEvent]] = OrderedDict()
        self.max_machines = max_machines
        self.max_events = max_events
        self.clock = clock
        self._version = 0

    def record(self, mac: str, stage: str, **fields: Any) -> None:
        events = self._machines.get(mac)
        if events is None:
            events = self._machines[mac] = deque(maxlen=self.max_events)
            while len(self._machines) > self.max_machines:
                self._machines.popitem(last=False)
        else:
            self._machines.move_to_end(mac)
        events.append(BootEvent(mac, stage, self.clock(), fields))
        self._version += 1

    def insert(self, event: BootEvent) -> None:
        """
        Add an event recorded elsewhere (by another pxed sharing a store),
        in time order among the machine's events.
        """
        events = self._machines.get(event.mac)
        if events is None:
            events = self._machines[event.mac] = deque(maxlen=self.max_events)
            while len(self._machines) > self.max_machines:
                self._machines.popitem(last=False)
        else:
            self._machines.move_to_end(event.mac)
        if events and events[-1].when > event.when:
            ordered = sorted([*events, event], key=lambda e: e.when)
            events.clear()
            events.extend(ordered)
        else:
            events.append(event)
        self._version += 1

    def events(self, mac: str) -> list[BootEvent]:
        return list(self._machines.get(mac, ()))

    def machines(self) -> list[str]:
        return list(self._machines)

    def last(self, mac: str) -> BootEvent | None:
        events = self._machines.get(mac)
        return events[-1] if events else None

    def version(self) -> int:
        return self._version
