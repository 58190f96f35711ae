# -*- test-case-name: tests.test_logging -*-
"""
C{twistd pxed --log-format json}: one JSON object per line, for log
shippers (Loki, Elasticsearch, journald's JSON import).

twisted.logger events already carry their fields (C{mac}, C{arch},
C{stage}, C{peer} ...); here they become top-level keys beside the
formatted message, the level, the namespace and an ISO 8601 time, so a
shipper can index a machine's whole boot without parsing text.
twisted.logger's own JSON format keeps Twisted's internals (the format
string, the logger object, the source) and needs Twisted to read back;
this one does not.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO, Any

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    textFileLogObserver,
)
from twisted.python.logfile import LogFile
from zope.interface import implementer

__all__ = [
    "JSONLinesObserver",
    "event_record",
    "json_observer",
    "configure_twistd",
    "set_level",
    "sole_observer",
    "wanted",
    "text_observer",
    "write_to",
]

#: Keys of the record itself; an event field with one of these names is
#: kept as C{field_NAME}.
_RESERVED = frozenset({"time", "level", "namespace", "system", "message", "traceback"})

#: Keys that legacy (twisted.python.log) events carry for its own use.
_LEGACY = frozenset({"message", "format", "isError", "time", "system", "why", "failure"})


def _plain(value: Any, depth: int = 0) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if depth < 4:
        if isinstance(value, Mapping):
            return {str(k): _plain(v, depth + 1) for k, v in value.items()}
        if isinstance(value, (list, tuple, set, frozenset)):
            return [_plain(v, depth + 1) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return repr(value)


def event_record(event: Mapping[str, Any]) -> dict[str, Any]:
    """
    The flat JSON-ready form of a twisted.logger event.
    """
    when = event.get("log_time")
    level = event.get("log_level")
    record: dict[str, Any] = {
        "time": (datetime.fromtimestamp(when, UTC).isoformat(timespec="milliseconds")
                 if isinstance(when, (int, float)) else None),
        "level": getattr(level, "name", "info"),
        "namespace": event.get("log_namespace"),
        "message": formatEvent(dict(event)),
    }
    system = event.get("log_system")
    if system not in (None, "-"):
        record["system"] = system
    legacy = "log_legacy" in event or "isError" in event
    for key, value in event.items():
        if key.startswith("log_") or (legacy and key in _LEGACY):
            continue
        record[f"field_{key}" if key in _RESERVED else key] = _plain(value)
    failure = event.get("log_failure")
    if failure is not None:
        try:
            record["traceback"] = failure.getTraceback()
        except Exception:
            record["traceback"] = repr(failure)
    return record


@implementer(ILogObserver)
class JSONLinesObserver:
    """
    Writes each event to C{out} as one line of JSON.
    """

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def __call__(self, event: Mapping[str, Any]) -> None:
        try:
            line = json.dumps(event_record(event), ensure_ascii=False)
        except Exception as e:  # never lose the line: say what could not be written
            line = json.dumps({"level": "error", "message": f"unloggable event: {e!r}"})
        self.out.write(line + "\n")
        self.out.flush()


#: Where L{json_observer} writes: C{None} or "-" for standard output.
_logfile: str | None = None


def write_to(logfile: str | None) -> None:
    """
    Tell L{json_observer} where twistd's C{--logfile} points.
    """
    global _logfile
    _logfile = logfile


#: The least severe level written; per-packet detail is debug, so the
#: default keeps a boot storm from turning into a logging storm.
_level: LogLevel = LogLevel.info


def set_level(name: str) -> None:
    """
    Set the level L{json_observer} and L{text_observer} write from.

    @raise InvalidLogLevelError: for a name that is not a twisted.logger level.
    """
    global _level
    _level = LogLevel.levelWithName(name)


#: Whether pxed's filtered observer is the only one (twistd with pxed's
#: C{--logger}): then nothing below L{_level} is written anywhere.
_sole = False


def sole_observer() -> None:
    """
    Say that pxed's observer (L{text_observer}, L{json_observer}) is the
    only one events reach, so that L{wanted} can tell a caller that an
    event below the configured level would go nowhere.
    """
    global _sole
    _sole = True


def wanted(level: LogLevel) -> bool:
    """
    Whether an event at C{level} can be written anywhere.  A line built
    for every request (a policy's "matched rule") asks first, so that
    under C{twistd} at info level a boot storm does not build and drop
    one debug event per packet.  Without L{sole_observer} (tests, pxed
    inside another program) every event is wanted.
    """
    return not _sole or level >= _level


def _output() -> IO[str]:
    if _logfile in (None, "", "-"):
        return sys.stdout
    return LogFile.fromFullPath(_logfile)  # type: ignore[return-value]


def _filtered(observer: ILogObserver) -> ILogObserver:
    return FilteringLogObserver(observer, [LogLevelFilterPredicate(defaultLogLevel=_level)])


def json_observer() -> ILogObserver:
    """
    The log observer factory twistd's C{--logger} is given for
    C{--log-format json}: to twistd's C{--logfile} (rotated like twistd's
    own), or standard output.
    """
    return _filtered(JSONLinesObserver(_output()))


def text_observer() -> ILogObserver:
    """
    twistd's usual text lines, from the configured level up (twistd's own
    observer writes debug events too).
    """
    return _filtered(textFileLogObserver(_output()))


def configure_twistd(options: Any, fmt: str, level: str) -> None:
    """
    Check C{--log-format}/C{--log-level} and hand twistd (C{options.parent},
    whose C{postOptions} runs after a plugin's) pxed's observer as its
    C{--logger}: twistd's own would write debug events too.  A C{--logger}
    the user named is kept for text; JSON cannot be combined with it.

    @raise usage.UsageError: for a bad format or level, as one line.
    """
    from twisted.logger import InvalidLogLevelError
    from twisted.python import usage

    if fmt not in ("text", "json"):
        raise usage.UsageError(f"--log-format must be text or json, not {fmt!r}")
    try:
        set_level(level)
    except (ValueError, InvalidLogLevelError):
        raise usage.UsageError(
            f"--log-level must be debug, info, warn, error or critical, not {level!r}"
        ) from None
    parent = getattr(options, "parent", None)
    if parent is None:
        return
    if parent.get("logger"):
        if fmt == "json":
            raise usage.UsageError("--log-format json and twistd's --logger cannot be combined")
        return  # the user's own observer decides what it writes
    write_to(parent.get("logfile") or (None if parent.get("nodaemon") else "twistd.log"))
    parent["logger"] = f"pxed.logs.{fmt}_observer"
    sole_observer()
