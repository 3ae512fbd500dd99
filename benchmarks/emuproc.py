"""Run the Responses API emulator in a separate process for timing benchmarks.

The emulator's CPU work (building and serialising events) must not share the client's GIL or event loop, or the
client-side differences we want to see would drown in server time. So timing benchmarks start
``python -m ipy_responses_ws.emulator --port 0 ...`` (docs/contracts.md, "emulator/"), read the base URL from the
first stdout line, and stop the process on exit. The server listens on 127.0.0.1 only.

``IPY_RWS_BENCH_EMULATOR`` may name a different script to run instead (used only while developing the benchmarks
before the emulator existed); it receives the same arguments.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from types import TracebackType

#: The fake key every benchmark uses; never a real credential.
FAKE_KEY = "sk-test-FAKE-bench-0000000000000000"


class EmulatorProcess:
    """A context manager owning one emulator subprocess.

    ``EmulatorProcess(ttft=0.3, token_rate=50)`` starts an emulator with that latency profile;
    ``.base_url`` is ``http://127.0.0.1:PORT/v1``. Extra CLI flags go in ``extra_args``.
    """

    def __init__(
        self,
        *,
        ttft: float = 0.0,
        token_rate: float = 0.0,
        answer_words: int | None = None,
        extra_args: tuple[str, ...] = (),
        start_timeout: float = 30.0,
    ) -> None:
        self.ttft = ttft
        self.token_rate = token_rate
        self.answer_words = answer_words
        self.extra_args = extra_args
        self.start_timeout = start_timeout
        self.base_url = ""
        self.proc: subprocess.Popen[str] | None = None
        self._lines: list[str] = []

    def command(self) -> list[str]:
        override = os.environ.get("IPY_RWS_BENCH_EMULATOR")
        head = [sys.executable, override] if override else [sys.executable, "-m", "ipy_responses_ws.emulator"]
        args = ["--host", "127.0.0.1", "--port", "0", "--api-key", FAKE_KEY]
        args += ["--ttft", str(self.ttft), "--token-rate", str(self.token_rate)]
        if self.answer_words is not None:
            args += ["--words", str(self.answer_words)]
        return head + args + list(self.extra_args)

    def __enter__(self) -> EmulatorProcess:
        self.proc = subprocess.Popen(
            self.command(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        first: list[str] = []
        ready = threading.Event()

        def pump() -> None:
            # Keep draining stdout so a chatty emulator can never block on a full pipe.
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                if not first:
                    first.append(line.strip())
                    ready.set()
                else:
                    self._lines.append(line)
            ready.set()

        threading.Thread(target=pump, name="emulator-stdout", daemon=True).start()
        threading.Thread(target=self._drain_stderr, name="emulator-stderr", daemon=True).start()
        if not ready.wait(self.start_timeout) or not first:
            self.__exit__(None, None, None)
            raise RuntimeError(f"emulator did not print its URL: {' '.join(self.command())}")
        url = first[0].split()[-1]
        self.base_url = url.rstrip("/")
        return self

    def _drain_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self._lines.append(line)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:PORT`` (the base URL without ``/v1``)."""
        return self.base_url.rsplit("/v1", 1)[0]

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            deadline = time.monotonic() + 5.0
            while self.proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5.0)
        self.proc = None
