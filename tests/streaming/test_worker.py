import threading
import time

from frieren_rt.streaming import InferenceWorker


def test_worker_batches_round_robin_on_its_own_thread() -> None:
    seen: list[list[str]] = []
    threads: set[int] = set()
    gate = threading.Event()

    def run(jobs: list[str]) -> list[str]:
        gate.wait(5)
        threads.add(threading.get_ident())
        seen.append(list(jobs))
        return [j.upper() for j in jobs]

    worker: InferenceWorker[str, str] = InferenceWorker(run, max_batch=2, max_pending=2)
    futures = worker.submit_many([("a", "a1"), ("a", "a2"), ("b", "b1"), ("c", "c1")])
    time.sleep(0.05)
    gate.set()
    assert [f.result(5) for f in futures] == ["A1", "A2", "B1", "C1"]
    worker.stop()
    # one job per session per round, the session served first goes to the back: a never starves b and c
    assert seen[0] == ["a1", "b1"] and seen[1] == ["c1", "a2"]
    assert threading.get_ident() not in threads and list(worker.batch_sizes) == [2, 2]


def test_worker_bounds_each_session_queue_and_reports_errors() -> None:
    gate = threading.Event()

    def run(jobs: list[int]) -> list[int]:
        gate.wait(5)
        raise ValueError("boom")

    worker: InferenceWorker[int, int] = InferenceWorker(run, max_batch=4, max_pending=1)
    first = worker.submit("s", 1)
    time.sleep(0.05)  # the first job is taken; the queue is empty again
    second = worker.submit("s", 2)
    try:
        worker.submit("s", 3)
    except RuntimeError:
        pass
    else:
        raise AssertionError("a full session queue accepted a job")
    gate.set()
    for fut in (first, second):
        try:
            fut.result(5)
        except ValueError:
            pass
        else:
            raise AssertionError("error not propagated")
    worker.stop()
