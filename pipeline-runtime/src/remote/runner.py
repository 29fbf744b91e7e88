"""The warm runner of a pipeline controller on a Ray cluster.

Submitted once as a Ray job (this file and the pipeline's binary are the job's package, its
current folder), it long-polls the controller over HTTP for step attempts and runs each as a Ray task
that starts the binary in worker mode, with the step's queue resource, CPUs and GPUs; it posts
each attempt's exit and output back. The controller holds the lease table: which attempt this
runner holds. Every poll says which attempts the runner still holds, so an answer lost on the
way is noticed. When the controller is gone (its port refuses connections, or it has not
answered for a while) the runner cancels its tasks and exits: no step outlives its controller
for long, and none runs twice.

Configured by the job's environment: PIPELINE_RUNNER_URL, PIPELINE_RUNNER_TOKEN,
PIPELINE_RUNNER_ID, PIPELINE_RUNNER_EXE (the binary's file name in the package),
PIPELINE_RUNNER_WAIT (seconds a poll may be held), PIPELINE_RUNNER_IDLE (seconds without work
before the runner exits). With PIPELINE_RUNNER_BENCH=N it instead times N bare tasks that
start the binary (a baseline for benchmarks) and prints their median.
"""

import collections
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

import ray

# How long the first poll may take to succeed: past it the controller is unreachable from here.
CONNECT_BOUND = 15.0
# How long polls may keep failing (not refused) before the controller counts as gone.
LOST_BOUND = 30.0
# The most output one report request carries (the controller accepts four times as much).
REPORT_BYTES = 32 << 20
# How long cancelled tasks have to end when the runner stops.
CANCEL_GRACE = 5.0
# Starts the binary as the child of a shell that waits for it. When the task is cancelled, Ray
# kills its worker process and that process's children (the shell); the binary, a grandchild,
# gets its parent-death signal and ends its process group: the step and what it started. A
# signal that ended the binary ends the shell too, so the task sees it.
LAUNCH = 'PIPELINE_WORKER_PARENT=$$ "$0"; s=$?; if [ "$s" -gt 128 ]; then kill -$((s - 128)) $$; fi; exit "$s"'


def report_start(started):
    """Tells the controller that an attempt's task runs now: its time limit counts from here,
    not from when the runner took it (Ray may take seconds to start a worker process)."""
    url, token, runner, attempt = started
    try:
        Controller(url, token).post("/started", {"runner": runner, "ids": [attempt]}, timeout=10)
    except Exception as e:
        # The controller then counts from its own bound (see `exec::process::runner`).
        print(f"pipeline runner: could not report the start of {attempt} ({e})", file=sys.stderr)


@ray.remote(max_retries=0)
def run_step(exe, extra_env, cap, started=None):
    """Runs the binary with `extra_env` (a worker's manifest); returns its exit and the last
    `cap` bytes of its output. `started` (the controller's address and token, the runner's id
    and the attempt's) says where to report that the task runs."""
    if started is not None:
        threading.Thread(target=report_start, args=(started,), daemon=True).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_RUNNER_")}
    env.update(extra_env)
    proc = subprocess.Popen(
        ["/bin/sh", "-c", LAUNCH, exe],
        env=env,
        # The package's folder, as for a job per step.
        cwd=os.path.dirname(exe),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    out = {"kept": collections.deque(), "size": 0, "dropped": 0}
    drained = threading.Event()

    def pump():
        while True:
            chunk = proc.stdout.read1(1 << 16)
            if not chunk:
                break
            out["kept"].append(chunk)
            out["size"] += len(chunk)
            while out["size"] > cap and len(out["kept"]) > 1:
                gone = out["kept"].popleft()
                out["size"] -= len(gone)
                out["dropped"] += len(gone)
        drained.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        # A cancel arrives as an exception between bytecodes (not as a signal that would
        # interrupt a blocking read): so this thread waits in short, interruptible slices.
        # The output's end wakes it at once.
        exited = None
        while not drained.wait(0.1):
            if proc.poll() is not None:
                # Exited, but something it started holds the output open: not for long.
                exited = exited or time.monotonic()
                if time.monotonic() - exited > 2:
                    break
        code = proc.wait()
    except BaseException:
        # Interrupted: the step and what it started end (the shell's group, then the
        # binary's, through its parent-death signal).
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.wait()
        raise
    log = b"".join(out["kept"]).decode("utf-8", "replace")
    if code < 0:
        return {"code": None, "signal": -code, "log": log, "dropped": out["dropped"]}
    return {"code": code, "signal": None, "log": log, "dropped": out["dropped"]}


@ray.remote(max_retries=0)
def warm():
    """Starts a worker process (and unpacks the package) before the first step needs one."""
    return os.getpid()


class Controller:
    """One keep-alive HTTP connection to the controller, with TCP_NODELAY."""

    def __init__(self, url, token):
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname, parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self.headers = {"Content-Type": "application/json", "Authorization": "Bearer " + token}
        self.conn = None

    def post(self, path, body, timeout):
        data = json.dumps(body).encode()
        for attempt in (0, 1):
            if self.conn is None:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
                conn.connect()  # a failure leaves no half-made connection behind
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.conn = conn
            self.conn.sock.settimeout(timeout)
            try:
                self.conn.request("POST", self.prefix + path, data, self.headers)
                answer = self.conn.getresponse()
                text = answer.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # A kept-alive connection the server closed: once more on a new one.
                self.close()
                if attempt == 1:
                    raise
                continue
            except BaseException:
                self.close()
                raise
            if answer.status != 200:
                raise RuntimeError(f"{path} answered HTTP {answer.status}: {text[:300]!r}")
            return json.loads(text) if text else {}

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class Runner:
    def __init__(self):
        env = os.environ
        self.url = env["PIPELINE_RUNNER_URL"]
        self.token = env["PIPELINE_RUNNER_TOKEN"]
        self.id = env["PIPELINE_RUNNER_ID"]
        self.exe = os.path.abspath(env["PIPELINE_RUNNER_EXE"])
        self.wait = float(env.get("PIPELINE_RUNNER_WAIT", "10"))
        self.idle = float(env.get("PIPELINE_RUNNER_IDLE", "300"))
        self.polls = Controller(self.url, self.token)
        self.posts = Controller(self.url, self.token)
        self.cond = threading.Condition()
        # Attempt id -> its task's ref, for attempts not yet reported done.
        self.held = {}
        self.pending = {}  # ref -> attempt id, for tasks not yet finished
        self.stopping = False

    def submit(self, item):
        options = {"resources": item.get("resources") or {}, "name": item["id"], "num_cpus": item.get("num_cpus", 1)}
        if item.get("num_gpus") is not None:
            options["num_gpus"] = item["num_gpus"]
        started = (self.url, self.token, self.id, item["id"])
        ref = run_step.options(**options).remote(self.exe, item["env"], item.get("log_cap", 1 << 26), started)
        with self.cond:
            self.held[item["id"]] = ref
            self.pending[ref] = item["id"]
            self.cond.notify()

    def cancel(self, attempt):
        with self.cond:
            ref = self.held.get(attempt)
        if ref is None:
            return
        # Ray's gentle cancel raises nothing in a task waiting on a subprocess: the task's worker
        # process is killed instead (see `run_step` for how the step's processes follow).
        ray.cancel(ref, force=True)

    def complete(self):
        """Reports each finished task to the controller, in the order they finish; a report
        that could not be posted is posted again with the next ones."""
        backlog = []
        while True:
            with self.cond:
                while not self.pending and not self.stopping and not backlog:
                    self.cond.wait()
                if self.stopping and not self.pending:
                    return
                refs = list(self.pending)
            ready = []
            if refs:
                ready, _ = ray.wait(refs, num_returns=1, timeout=0.05)
                if ready:
                    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            else:
                time.sleep(0.5)  # only a backlog: a pause before posting it again
            reports = backlog
            backlog = []
            for ref in ready:
                with self.cond:
                    attempt = self.pending.pop(ref)
                report = {"id": attempt}
                try:
                    report.update(ray.get(ref))
                except ray.exceptions.TaskCancelledError:
                    report["cancelled"] = True
                except Exception as e:  # the worker or its node died, the task could not start...
                    report["error"] = f"{type(e).__name__}: {e}"
                reports.append(report)
            if self.stopping:
                continue
            # All that finished together, in requests of at most REPORT_BYTES of output each.
            while reports:
                batch, size = [], 0
                while reports and (not batch or size + len(reports[0].get("log", "")) <= REPORT_BYTES):
                    size += len(reports[0].get("log", ""))
                    batch.append(reports.pop(0))
                try:
                    self.posts.post("/done", {"runner": self.id, "reports": batch}, timeout=60)
                except Exception as e:
                    # Still held (every poll says so) until a post gets through.
                    print(f"pipeline runner: could not report {len(batch)} ends ({e}); trying again", file=sys.stderr)
                    backlog = batch + reports
                    break
                with self.cond:
                    for report in batch:
                        self.held.pop(report["id"], None)

    def stop(self, why, code):
        """Cancels every task, waits for them to end (a bound), and exits."""
        print(f"pipeline runner: {why}; stopping", file=sys.stderr, flush=True)
        with self.cond:
            self.stopping = True
            refs = list(self.pending)
            self.cond.notify_all()
        for ref in refs:
            ray.cancel(ref, force=True)
        if refs:
            ray.wait(refs, num_returns=len(refs), timeout=CANCEL_GRACE)
        sys.stdout.flush()
        os._exit(code)

    def run(self):
        threading.Thread(target=self.complete, daemon=True).start()
        seq, ever, failing_since, last_work = 0, False, None, time.monotonic()
        started = time.monotonic()
        while True:
            seq += 1
            with self.cond:
                held = sorted(self.held)
            body = {"runner": self.id, "seq": seq, "held": held, "wait_ms": int(self.wait * 1000), "pid": os.getpid()}
            try:
                answer = self.polls.post("/poll", body, timeout=self.wait + 15)
            except ConnectionRefusedError as e:
                if not ever:
                    self.stop(f"cannot reach the controller at {self.url}: {e}", 3)
                self.stop(f"the controller at {self.url} is gone ({e})", 0)
            except Exception as e:
                now = time.monotonic()
                if not ever and now - started > CONNECT_BOUND:
                    self.stop(f"cannot reach the controller at {self.url}: {e}", 3)
                failing_since = failing_since or now
                if ever and now - failing_since > LOST_BOUND:
                    self.stop(f"the controller at {self.url} has not answered for {LOST_BOUND:.0f} s ({e})", 0)
                time.sleep(0.5)
                continue
            if not ever:
                print(f"pipeline runner {self.id}: serving the controller at {self.url}", file=sys.stderr, flush=True)
            ever, failing_since = True, None
            for item in answer.get("work", []):
                self.submit(item)
            for attempt in answer.get("cancel", []):
                self.cancel(attempt)
            if answer.get("exit"):
                self.stop("the controller asked the runner to exit", 0)
            now = time.monotonic()
            if answer.get("work") or held:
                last_work = now
            elif now - last_work > self.idle:
                self.stop(f"no work for {self.idle:.0f} s", 0)


def bench(n):
    """The baseline: N bare tasks in a row, each starting the binary, which exits at once."""
    exe = os.path.abspath(os.environ["PIPELINE_RUNNER_EXE"])
    options = {"resources": {"queue_default": 1}, "num_cpus": 1}
    ray.get(run_step.options(**options).remote(exe, {"REMOTE_OVERHEAD_BARE": "1"}, 1 << 20))
    times = []
    for _ in range(n):
        start = time.perf_counter()
        out = ray.get(run_step.options(**options).remote(exe, {"REMOTE_OVERHEAD_BARE": "1"}, 1 << 20))
        times.append(time.perf_counter() - start)
        assert out["code"] == 0, out
    times.sort()
    print(f"bare task round trip: median {times[len(times) // 2] * 1e3:.2f} ms over {n}", flush=True)
    fan = int(os.environ.get("PIPELINE_RUNNER_BENCH_FAN", "0"))
    if fan:
        start = time.perf_counter()
        refs = [run_step.options(**options).remote(exe, {"REMOTE_OVERHEAD_BARE": "1"}, 1 << 20) for _ in range(fan)]
        assert all(out["code"] == 0 for out in ray.get(refs))
        wall = time.perf_counter() - start
        print(f"bare task fan-out: {fan} in {wall:.3f} s", flush=True)


def main():
    ray.init(logging_level="WARNING", log_to_driver=False)
    if os.environ.get("PIPELINE_RUNNER_BENCH"):
        bench(int(os.environ["PIPELINE_RUNNER_BENCH"]))
        return
    ray.get(warm.remote())
    Runner().run()


if __name__ == "__main__":
    main()
