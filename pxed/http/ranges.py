# -*- test-case-name: tests.test_http_guard -*-
"""
What pxed does with a C{Range} header, decided before Twisted sees it.

Twisted's multi-range producer fails on overlapping ranges (the client
then waits for ever on a connection that holds a file open), and even
where it works, many overlapping ranges multiply a file's bytes.  Boot
clients only ever ask for one range (iPXE, curl, EDK2 resuming), so pxed
never uses that producer: the ranges a client sends are resolved against
the file's size and merged where they overlap or touch; one range left is
served as a 206, several disjoint ones get the whole file with a 200
(RFC 9110 lets a server ignore Range), and none satisfiable is a 416.
"""

from __future__ import annotations

__all__ = ["MAX_RANGE_HEADER", "single_range"]

#: A Range header longer than this is ignored outright (the whole file is
#: served): parsing it would be the only cost.
MAX_RANGE_HEADER = 8192


def _spans(header: bytes, size: int) -> list[tuple[int, int]] | None:
    """
    The byte spans (first, last inclusive) the header asks for that exist
    in a file of C{size} bytes, or C{None} if the header is malformed.
    """
    unit, eq, value = header.partition(b"=")
    if not eq or unit.strip().lower() != b"bytes":
        return None
    spans = []
    for item in value.split(b","):
        item = item.strip()
        if not item:
            continue
        first, dash, last = item.partition(b"-")
        first, last = first.strip(), last.strip()
        if not dash or not (first or last):
            return None
        if not (first.isdigit() or not first) or not (last.isdigit() or not last):
            return None
        if not first:  # a suffix: the last N bytes
            count = int(last)
            if count == 0:
                continue
            spans.append((max(size - count, 0), size - 1))
            continue
        start = int(first)
        if last and int(last) < start:
            return None
        if start < size:
            end = int(last) if last else size - 1
            spans.append((start, min(end, size - 1)))
    return spans


def single_range(header: bytes, size: int) -> bytes | None:
    """
    The one C{Range} header value to serve C{header} with for a file of
    C{size} bytes, or C{None} to ignore the header and send the whole file.

    An unsatisfiable request comes back as a range starting at C{size},
    which Twisted answers with 416.
    """
    if len(header) > MAX_RANGE_HEADER:
        return None
    spans = _spans(header, size)
    if spans is None:
        return None
    if not spans:
        return b"bytes=%d-" % size
    spans.sort()
    merged = [spans[0]]
    for start, end in spans[1:]:
        last_start, last_end = merged[-1]
        if start <= last_end + 1:
            merged[-1] = (last_start, max(last_end, end))
        else:
            merged.append((start, end))
    if len(merged) > 1:
        return None
    start, end = merged[0]
    return b"bytes=%d-%d" % (start, end)
