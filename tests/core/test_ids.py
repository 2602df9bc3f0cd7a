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
