"""Fresh request ids: random, unique, read from the system in batches, never shared with a forked child."""

from __future__ import annotations

import os
import re
from types import SimpleNamespace

from project import request_context

HEX_ID = re.compile(r"[0-9a-f]{32}")


def test_fresh_ids_are_random_hex_read_from_the_system_256_at_a_time(monkeypatch):
    reads: list[int] = []
    urandom = os.urandom

    def counting(size: int) -> bytes:
        reads.append(size)
        return urandom(size)

    monkeypatch.setattr(request_context, "os", SimpleNamespace(urandom=counting))  # this module's reads only
    request_context._fresh_ids.reset()

    ids = [request_context.request_id_from(None) for _ in range(1000)]

    assert all(HEX_ID.fullmatch(i) for i in ids)
    assert len(set(ids)) == 1000
    assert reads == [16 * 256] * 4  # 1000 ids: four reads, not one system call per request


def test_a_sane_id_sent_by_the_caller_is_kept():
    assert request_context.request_id_from("trace-7.a_B") == "trace-7.a_B"
    assert HEX_ID.fullmatch(request_context.request_id_from("not sane!"))


def test_a_forked_child_never_hands_out_its_parents_ids():
    request_context._fresh_ids.reset()
    request_context.request_id_from(None)  # the parent has read a batch and used one id of it
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: os.register_at_fork has run
        try:
            os.write(write_end, "".join(request_context.request_id_from(None) for _ in range(8)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    child = os.read(read_end, 8 * 32).decode()
    os.waitpid(pid, 0)
    os.close(read_end)
    parent_next = {request_context.request_id_from(None) for _ in range(255)}
    child_ids = {child[i : i + 32] for i in range(0, len(child), 32)}
    assert len(child_ids) == 8 and all(HEX_ID.fullmatch(i) for i in child_ids)
    assert not child_ids & parent_next
