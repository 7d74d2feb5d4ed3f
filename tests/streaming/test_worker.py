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


def test_the_session_left_out_of_a_full_batch_goes_first_next_time() -> None:
    seen: list[list[str]] = []
    gate = threading.Event()

    def run(jobs: list[str]) -> list[str]:
        gate.wait(5)
        seen.append([j[0] for j in jobs])
        return jobs

    worker: InferenceWorker[str, str] = InferenceWorker(run, max_batch=2, max_pending=1)
    for rnd in range(3):  # three sessions fall due together each round; a batch holds two
        for f in worker.submit_many([(s, f"{s}{rnd}") for s in "abc"]):
            gate.set()
            f.result(5)
        gate.clear()
    worker.stop()
    firsts = [b for b in seen if len(b) == 2]
    # the one left out of a round's full batch leads the next round's: no session is always served late
    assert firsts == [["a", "b"], ["c", "a"], ["b", "c"]]


def test_idle_work_runs_on_the_worker_after_a_poke_and_never_before_a_queued_job() -> None:
    order: list[str] = []
    gate = threading.Event()

    def run(jobs: list[str]) -> list[str]:
        gate.wait(5)
        order.extend(jobs)
        return jobs

    worker: InferenceWorker[str, str] = InferenceWorker(run, idle=lambda: order.append("idle"))
    first = worker.submit("s", "job1")
    time.sleep(0.02)  # job1 is running
    worker.poke()
    second = worker.submit("t", "job2")
    gate.set()
    first.result(5), second.result(5)
    deadline = time.monotonic() + 5
    while "idle" not in order and time.monotonic() < deadline:
        time.sleep(0.005)
    worker.stop()
    assert order == ["job1", "job2", "idle"]
