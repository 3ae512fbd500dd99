"""A real IPython kernel driven through jupyter_client, with iopub traffic recorded per execution.

Used by the kernel benchmarks (issue items 4-6). Recipe: /work/shared/TESTING.md, "A real kernel, driven from a
test": widget updates are ``comm_msg`` with ``method: update``; the last updates of a cell can arrive after the
execute reply, so an execution is complete only at the ``idle`` status whose parent is that request.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any


@dataclass
class Execution:
    """What one ``execute_request`` produced on iopub, with arrival times relative to the send."""

    code: str
    sent_at: float
    reply: dict[str, Any] | None = None
    messages: list[tuple[float, dict[str, Any]]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.reply) and self.reply["content"].get("status") == "ok"

    def error_text(self) -> str:
        if self.reply and self.reply["content"].get("status") == "error":
            c = self.reply["content"]
            return f"{c.get('ename')}: {c.get('evalue')}"
        for _, msg in self.messages:
            if msg["msg_type"] == "error":
                return f"{msg['content'].get('ename')}: {msg['content'].get('evalue')}"
        return ""

    def stdout(self) -> str:
        return "".join(
            m["content"].get("text", "")
            for _, m in self.messages
            if m["msg_type"] == "stream" and m["content"].get("name") == "stdout"
        )

    def widget_updates(self) -> list[tuple[float, dict[str, Any]]]:
        """``(seconds after send, state dict)`` of every widget ``update`` comm message of this execution."""
        out = []
        for t, m in self.messages:
            if m["msg_type"] == "comm_msg":
                data = m["content"].get("data", {})
                if data.get("method") == "update":
                    out.append((t, data.get("state", {})))
        return out

    def widget_states(self) -> list[tuple[float, str, dict[str, Any]]]:
        """``(seconds after send, "open"|"update", state)`` for every widget comm_open and update, in order.

        A new widget carries its first value in its ``comm_open`` state (e.g. a frozen Markdown block), so
        "when did the user first see X" must look at both.
        """
        out = []
        for t, m in self.messages:
            if m["msg_type"] in ("comm_open", "comm_msg"):
                data = m["content"].get("data", {})
                if m["msg_type"] == "comm_open":
                    out.append((t, "open", data.get("state", {})))
                elif data.get("method") == "update":
                    out.append((t, "update", data.get("state", {})))
        return out

    def iopub_bytes(self) -> int:
        """Serialised size of every iopub message of this execution (header, parent, metadata, content, buffers).

        This is the JSON jupyter_client would put on the wire minus the HMAC signature and ZMQ identities
        (a constant ~100 bytes per message); it is what the browser's comm layer has to swallow.
        """
        total = 0
        for _, m in self.messages:
            for part in ("header", "parent_header", "metadata", "content"):
                total += len(json.dumps(m.get(part, {}), default=str, separators=(",", ":")).encode())
            total += sum(len(b) for b in m.get("buffers", []) or [])
        return total


class Kernel:
    """``with Kernel(env={...}) as k: ex = k.execute("1+1")``; shuts the kernel down on exit."""

    def __init__(self, env: dict[str, str] | None = None, startup_timeout: float = 90.0) -> None:
        from jupyter_client.manager import KernelManager

        self.km = KernelManager(
            kernel_cmd=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        )
        self.env = {**os.environ, **(env or {})}
        self.startup_timeout = startup_timeout
        self.kc: Any = None
        self.pid = 0

    def __enter__(self) -> Kernel:
        self.km.start_kernel(env=self.env)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=self.startup_timeout)
        ex = self.execute("import os; print(os.getpid())")
        self.pid = int(ex.stdout().strip())
        return self

    def execute(self, code: str, timeout: float = 120.0) -> Execution:
        """Run ``code``; return after its execute reply *and* its idle status have both arrived."""
        # Drop iopub left over from earlier executions (late widget updates of a background cell, etc.).
        while True:
            try:
                self.kc.get_iopub_msg(timeout=0)
            except queue.Empty:
                break
        t0 = time.perf_counter()
        msg_id = self.kc.execute(code)
        ex = Execution(code, t0)
        deadline = t0 + timeout
        idle = False
        while not idle:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise TimeoutError(f"kernel execution did not finish in {timeout} s: {code[:80]!r}")
            try:
                msg = self.kc.get_iopub_msg(timeout=min(remaining, 1.0))
            except queue.Empty:
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            ex.messages.append((time.perf_counter() - t0, msg))
            if msg["msg_type"] == "status" and msg["content"].get("execution_state") == "idle":
                idle = True
        while ex.reply is None:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise TimeoutError("no execute_reply")
            try:
                reply = self.kc.get_shell_msg(timeout=min(remaining, 1.0))
            except queue.Empty:
                continue
            if reply.get("parent_header", {}).get("msg_id") == msg_id:
                ex.reply = reply
        return ex

    def run(self, code: str, timeout: float = 120.0) -> Execution:
        """Like :meth:`execute` but raises when the cell raised."""
        ex = self.execute(code, timeout)
        if not ex.ok:
            raise RuntimeError(f"kernel cell failed: {ex.error_text()}\n--- code ---\n{code}")
        return ex

    def eval_json(self, expr: str, timeout: float = 120.0) -> Any:
        """Evaluate ``expr`` in the kernel and return its JSON-decoded value (printed on one stdout line)."""
        ex = self.run(f"import json as _j; print('@@' + _j.dumps({expr}))", timeout)
        for line in ex.stdout().splitlines():
            if line.startswith("@@"):
                return json.loads(line[2:])
        raise RuntimeError(f"no value printed for {expr!r}: {ex.stdout()!r}")

    def proc_stats(self) -> dict[str, Any]:
        """RSS, open fds, sockets and threads of the kernel process, read from /proc (Linux)."""
        base = f"/proc/{self.pid}"
        rss_kb = 0
        threads = 0
        with open(f"{base}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    rss_kb = int(line.split()[1])
                elif line.startswith("Threads:"):
                    threads = int(line.split()[1])
        fds = os.listdir(f"{base}/fd")
        sockets = 0
        for fd in fds:
            try:
                if os.readlink(f"{base}/fd/{fd}").startswith("socket:"):
                    sockets += 1
            except OSError:
                pass
        return {"rss_mb": rss_kb / 1024, "fds": len(fds), "sockets": sockets, "threads": threads}

    def tcp_connections_to(self, port: int) -> int:
        """ESTABLISHED TCP connections from the kernel process to 127.0.0.1:``port`` (via /proc/net/tcp)."""
        inodes = set()
        for fd in os.listdir(f"/proc/{self.pid}/fd"):
            try:
                link = os.readlink(f"/proc/{self.pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
        count = 0
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                with open(table) as fh:
                    next(fh)
                    for line in fh:
                        cols = line.split()
                        remote_port = int(cols[2].split(":")[1], 16)
                        if cols[3] == "01" and remote_port == port and cols[9] in inodes:
                            count += 1
            except FileNotFoundError:
                pass
        return count

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self.kc is not None:
                self.kc.stop_channels()
        finally:
            self.km.shutdown_kernel(now=False)
