import subprocess
import sys
import time

from jupyter_flow.core.ids import id_time_ms, new_id


def test_ids_sort_by_creation_within_a_process():
    ids = [new_id() for _ in range(2000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_ids_sort_by_creation_across_processes():
    first = new_id()
    time.sleep(0.01)
    other = subprocess.run([sys.executable, "-c", "from jupyter_flow.core.ids import new_id; print(new_id())"],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert first < other
    assert abs(id_time_ms(first) - time.time() * 1000) < 60_000


def test_a_block_of_ids_sorts_like_ids_made_one_by_one():
    from jupyter_flow.core.ids import new_ids

    before = new_id()
    block = new_ids(5000)
    after = new_id()
    assert [before, *block, after] == sorted([before, *block, after])
    assert len(set(block)) == 5000 and all(len(i) == 26 for i in block)


def test_a_block_counting_past_a_digit_boundary_stays_sorted(monkeypatch):
    from jupyter_flow.core import ids

    # The random part of a new millisecond's first id, just below where the 12th digit
    # carries: the block's encoding must carry exactly as counting up does.
    monkeypatch.setattr(ids, "_last_ms", -1)
    monkeypatch.setattr(ids, "_random79", lambda: (7 << 40) + (1 << 20) - 2)
    block = ids.new_ids(4)
    assert block == sorted(block) and len(set(block)) == 4
    assert [i[10:] for i in block] == ["000000070000ZZZY", "000000070000ZZZZ",
                                      "0000000700010000", "0000000700010001"]


def test_a_forked_child_does_not_repeat_its_parents_ids():
    import os

    from jupyter_flow.core.ids import new_ids

    read, write = os.pipe()
    parent_ids = new_ids(1)
    pid = os.fork()
    if pid == 0:  # the child: same millisecond as the parent, most likely
        os.write(write, new_ids(1)[0].encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child_id = os.read(read, 26).decode()
    mine = new_ids(1)[0]
    assert child_id != mine and child_id not in parent_ids
