"""Drive a real IPython kernel from a test (jupyter_client) and look at what it sent on iopub.

``Kernel`` starts ``python -m ipykernel_launcher`` with this interpreter and a given environment, runs
cells, collects every iopub message of each cell (until its ``idle`` status: the last widget updates can
arrive after the execute reply, TESTING.md), and counts iopub **wire bytes** with its own raw ZMQ
subscriber (all frames of every multipart message: identities, delimiter, signature, header, parent header,
metadata, content, buffers). It can send comm messages (widget clicks, toggle changes) and interrupt.

Always use it as a context manager or call ``shutdown()``: the kernel process is killed at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import zmq
from jupyter_client.manager import KernelManager

FAKE_KEY = "sk-test-FAKE-kernel-0123456789abcdef"


@dataclass
class Execution:
    """One cell: its execute reply and its iopub messages (deserialized), in order."""

    msg_id: str
    reply: dict[str, Any] | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)
    reply_at: float | None = None  # monotonic time the execute reply arrived
    idle_at: float | None = None

    @property
    def status(self) -> str | None:
        return None if self.reply is None else self.reply["content"]["status"]

    @property
    def error(self) -> dict[str, Any] | None:
        """``{"ename", "evalue", "traceback"}`` of an error reply."""
        if self.reply is None or self.reply["content"]["status"] != "error":
            return None
        return self.reply["content"]

    def of_type(self, *types: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["msg_type"] in types]

    def stdout(self) -> str:
        return "".join(
            m["content"]["text"] for m in self.of_type("stream") if m["content"]["name"] == "stdout"
        )

    def stderr(self) -> str:
        return "".join(
            m["content"]["text"] for m in self.of_type("stream") if m["content"]["name"] == "stderr"
        )

    def comm_opens(self, model_name: str | None = None) -> list[dict[str, Any]]:
        opens = self.of_type("comm_open")
        if model_name is None:
            return opens
        return [m for m in opens if m["content"]["data"]["state"].get("_model_name") == model_name]

    def updates(self, comm_id: str) -> list[dict[str, Any]]:
        """The state dicts of ``comm_msg`` updates sent to one widget."""
        out = []
        for m in self.of_type("comm_msg"):
            data = m["content"]["data"]
            if m["content"]["comm_id"] == comm_id and data.get("method") == "update":
                out.append(data["state"])
        return out

    def displays(self) -> list[dict[str, Any]]:
        return self.of_type("display_data", "update_display_data", "execute_result")


class RawIOPubCounter:
    """A second SUB socket on the kernel's iopub port that counts the bytes of each message by parent."""

    def __init__(self, url: str) -> None:
        self._ctx = zmq.Context.instance()
        self._url = url
        self._lock = threading.Lock()
        self.bytes_by_parent: dict[str, int] = {}
        self.count_by_parent: dict[str, int] = {}
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="raw-iopub", daemon=True)
        self._thread.start()
        self._ready.wait(5)

    def _run(self) -> None:
        sock = self._ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.SUBSCRIBE, b"")
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self._url)
        self._ready.set()
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                if not dict(poller.poll(50)):
                    continue
                frames = sock.recv_multipart(copy=True)
                size = sum(len(f) for f in frames)
                parent = ""
                try:
                    delim = frames.index(b"<IDS|MSG>")
                    parent = json.loads(frames[delim + 3]).get("msg_id", "")
                except (ValueError, IndexError):
                    pass
                with self._lock:
                    self.bytes_by_parent[parent] = self.bytes_by_parent.get(parent, 0) + size
                    self.count_by_parent[parent] = self.count_by_parent.get(parent, 0) + 1
        finally:
            sock.close(0)

    def bytes_for(self, msg_id: str) -> int:
        with self._lock:
            return self.bytes_by_parent.get(msg_id, 0)

    def messages_for(self, msg_id: str) -> int:
        with self._lock:
            return self.count_by_parent.get(msg_id, 0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)


class Kernel:
    """A real kernel with helpers. ``env`` is added to this process's environment."""

    def __init__(self, env: dict[str, str] | None = None, *, startup_timeout: float = 60) -> None:
        self.km = KernelManager(kernel_name="python3")
        # The python3 kernelspec says "python"; run this interpreter so the editable install is used.
        self.km.kernel_spec.argv[0] = sys.executable
        full_env = {**os.environ, **(env or {})}
        full_env.pop("PYTEST_CURRENT_TEST", None)
        full_env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
        self.km.start_kernel(env=full_env)
        self.kc = self.km.client()
        self.kc.start_channels()
        self._pending: dict[str, Execution] = {}
        self.all_messages: list[dict[str, Any]] = []
        try:
            self.kc.wait_for_ready(timeout=startup_timeout)
        except Exception:
            self.shutdown()
            raise
        info = self.km.get_connection_info()
        url = f"{info['transport']}://{info['ip']}:{info['iopub_port']}"
        self.raw = RawIOPubCounter(url)
        # ZMQ's slow-joiner problem: make sure the raw subscriber already sees messages.
        deadline = time.monotonic() + 10
        while True:
            ex = self.execute("1")
            if self.raw.messages_for(ex.msg_id) or time.monotonic() > deadline:
                break

    # -- running cells --------------------------------------------------------------------------------

    def submit(self, code: str, cell_id: str | None = None) -> str:
        """Queue a cell without waiting; collect it later with :meth:`collect`.

        *cell_id* is sent as ``metadata.cellId``, as JupyterLab, Notebook 7 and VS Code send each cell's id.
        """
        if cell_id is None:
            return self.kc.execute(code, store_history=True, allow_stdin=False)
        content = {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        }
        msg = self.kc.session.msg("execute_request", content, metadata={"cellId": cell_id})
        self.kc.shell_channel.send(msg)
        return msg["header"]["msg_id"]

    def execute(self, code: str, timeout: float = 60, cell_id: str | None = None) -> Execution:
        return self.collect(self.submit(code, cell_id), timeout=timeout)

    def collect(self, msg_id: str, timeout: float = 60) -> Execution:
        """Read iopub until this cell's ``idle`` status, then its execute reply.

        Messages of other cells read meanwhile are kept for their own ``collect``, so queued cells can be
        collected one after the other.
        """
        ex = self._execution(msg_id)
        self.read_until(lambda m: ex.idle_at is not None, timeout=timeout, what=f"idle of cell {msg_id}")
        deadline = time.monotonic() + timeout
        while ex.reply is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no execute reply for {msg_id}")
            reply = self.kc.get_shell_msg(timeout=remaining)
            target = self._execution(reply["parent_header"].get("msg_id", ""))
            target.reply = reply
            target.reply_at = time.monotonic()
        del self._pending[msg_id]
        return ex

    def _execution(self, msg_id: str) -> Execution:
        ex = self._pending.get(msg_id)
        if ex is None:
            ex = self._pending[msg_id] = Execution(msg_id)
        return ex

    def read_until(
        self, done: Any, *, timeout: float = 30, what: str = "a condition"
    ) -> dict[str, Any] | None:
        """Read iopub (filing each message under its cell) until ``done(msg)`` is true for a message read,
        or already true before reading (``done(None)``). Returns the message that made it true."""
        if done(None):
            return None
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"timed out waiting for {what}")
            try:
                msg = self.kc.get_iopub_msg(timeout=min(remaining, 0.5))
            except Exception:  # queue.Empty
                continue
            msg["_t"] = time.monotonic()  # arrival time (tests compare it with the execute reply)
            self.all_messages.append(msg)
            parent = msg["parent_header"].get("msg_id") or ""
            ex = self._execution(parent)
            ex.messages.append(msg)
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                ex.idle_at = time.monotonic()
            if done(msg):
                return msg

    def wait_reply(self, msg_id: str, timeout: float = 60) -> dict[str, Any]:
        """Wait for a cell's execute reply only (iopub stays queued for :meth:`collect`)."""
        deadline = time.monotonic() + timeout
        while True:
            reply = self.kc.get_shell_msg(timeout=max(0.01, deadline - time.monotonic()))
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply

    # -- widgets ----------------------------------------------------------------------------------------

    def send_comm(self, comm_id: str, data: dict[str, Any]) -> None:
        """Send a comm message as a frontend would (a click, a toggle change)."""
        msg = self.kc.session.msg("comm_msg", {"comm_id": comm_id, "data": data})
        self.kc.shell_channel.send(msg)

    def click(self, comm_id: str) -> None:
        self.send_comm(comm_id, {"method": "custom", "content": {"event": "click"}})

    def set_value(self, comm_id: str, value: Any) -> None:
        self.send_comm(comm_id, {"method": "update", "state": {"value": value}, "buffer_paths": []})

    def interrupt(self) -> None:
        self.km.interrupt_kernel()

    # -- lifetime ---------------------------------------------------------------------------------------

    def shutdown(self) -> None:
        raw = getattr(self, "raw", None)
        if raw is not None:
            raw.close()
        with contextlib.suppress(Exception):
            self.kc.stop_channels()
        try:
            self.km.shutdown_kernel(now=False)
        except Exception:
            self.km.shutdown_kernel(now=True)

    def __enter__(self) -> Kernel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def all_text(messages: list[dict[str, Any]]) -> str:
    """Every iopub message serialized, for 'the key never appears' checks."""
    return "\n".join(json.dumps(m, default=str) for m in messages)
