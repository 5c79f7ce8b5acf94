"""Ids made without a system call each stay unique across calls and across forked processes."""

from __future__ import annotations

import os

from app.proxy.ids import unique


def test_ids_differ_within_a_process_and_in_a_forked_child():
    made = {unique("req_") for _ in range(10_000)}
    assert len(made) == 10_000 and all(i.startswith("req_") and len(i) == 4 + 16 + 8 for i in made)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child's first id, as a gunicorn worker forked from its master would make it
        os.write(write, unique("req_").encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 100).decode()
    os.close(read)
    os.close(write)
    assert child not in made and child[4:20] != next(iter(made))[4:20]  # a tag of its own
