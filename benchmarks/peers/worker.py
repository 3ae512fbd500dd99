"""One peer of the tool-rollout benchmark, run from the peers' own venv (benchmarks/peers/make_venv.sh).

    benchmarks/peers/.venv/bin/python benchmarks/peers/worker.py {agents|livekit} BASE_URL KEY MODEL

It opens its client, runs a short warm-up rollout (so the measured rollouts use a warm connection), prints
``{"ready": ...}`` and then answers one JSON line per command read from stdin:

* ``{"cmd": "rollout", "prompt": "call step 20 times"}`` → ``{"wall": s, "cpu": s, "calls": n, "text": ...}``:
  wall (``time.perf_counter``) and this process's CPU (``time.process_time``, every thread) around the rollout
  alone, so the pipe to the driver is not on the clock;
* ``{"cmd": "quit"}`` → closes the client and exits.

Peers (the same 20-step rollout as ``ResponsesSession.respond(prompt, tools=[step])``):

* ``agents``: the OpenAI Agents SDK, ``Runner.run`` of an ``Agent`` with one ``function_tool`` ``step`` on
  ``OpenAIResponsesWSModel`` (Responses over WebSocket), ``auto_previous_response_id=True`` (the SDK's chaining:
  each step sends the new items by ``previous_response_id`` instead of the whole transcript), ``max_turns=25``,
  tracing off (it would upload traces).
* ``livekit``: livekit-plugins-openai's ``responses.LLM`` (WebSocket by default), driven by the loop its docs
  and ``AgentSession`` use: ``chat(chat_ctx, tools=[step])``, collect the ``FunctionToolCall`` chunks, run them,
  append ``FunctionCall`` + ``FunctionCallOutput`` to the context, call ``chat`` again until no calls.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any


def step(n: int) -> str:
    """One step of a long rollout."""
    return f"step {n} done"


class AgentsPeer:
    async def open(self, base_url: str, key: str, model: str) -> None:
        from agents import Agent, function_tool, set_tracing_disabled
        from agents.models.openai_responses import OpenAIResponsesWSModel
        from openai import AsyncOpenAI

        set_tracing_disabled(True)
        self.client = AsyncOpenAI(api_key=key, base_url=base_url, max_retries=0)
        self.model = OpenAIResponsesWSModel(model, self.client)
        self.agent = Agent(name="bench", model=self.model, tools=[function_tool(step)])

    async def rollout(self, prompt: str) -> dict[str, Any]:
        from agents import Runner

        result = await Runner.run(self.agent, prompt, max_turns=25, auto_previous_response_id=True)
        calls = sum(1 for item in result.new_items if getattr(item, "type", "") == "tool_call_item")
        return {"calls": calls, "text": str(result.final_output)}

    async def close(self) -> None:
        close = getattr(self.model, "close", None) or getattr(self.model, "aclose", None)
        if close is not None:
            res = close()
            if asyncio.iscoroutine(res):
                await res
        await self.client.close()


class LiveKitPeer:
    async def open(self, base_url: str, key: str, model: str) -> None:
        from livekit.agents import llm
        from livekit.agents.utils import http_context
        from livekit.plugins.openai.responses import LLM

        # Outside a LiveKit job the plugin needs this context for its aiohttp session (its error message says so).
        self.http_ctx = http_context.open()
        await self.http_ctx.__aenter__()
        self.llm_mod = llm
        self.llm = LLM(model=model, api_key=key, base_url=base_url + "/responses")
        self.tool = llm.function_tool(step)

    async def rollout(self, prompt: str) -> dict[str, Any]:
        llm = self.llm_mod
        ctx = llm.ChatContext.empty()
        ctx.add_message(role="user", content=prompt)
        calls_total = 0
        text = ""
        for _ in range(25):
            calls: list[Any] = []
            parts: list[str] = []
            async with self.llm.chat(chat_ctx=ctx, tools=[self.tool]) as stream:
                async for chunk in stream:
                    if chunk.delta is None:
                        continue
                    if chunk.delta.content:
                        parts.append(chunk.delta.content)
                    if chunk.delta.tool_calls:
                        calls.extend(chunk.delta.tool_calls)
            text = "".join(parts)
            if text:
                ctx.add_message(role="assistant", content=text)
            if not calls:
                break
            for call in calls:
                args = json.loads(call.arguments or "{}")
                try:
                    output, is_error = str(step(**args)), False
                except Exception as exc:  # the model gets the error, as AgentSession does
                    output, is_error = f"{type(exc).__name__}: {exc}", True
                ctx.items.append(
                    llm.FunctionCall(call_id=call.call_id, name=call.name, arguments=call.arguments)
                )
                ctx.items.append(
                    llm.FunctionCallOutput(
                        call_id=call.call_id, name=call.name, output=output, is_error=is_error
                    )
                )
                calls_total += 1
        return {"calls": calls_total, "text": text}

    async def close(self) -> None:
        await self.llm.aclose()
        await self.http_ctx.__aexit__(None, None, None)


PEERS = {"agents": AgentsPeer, "livekit": LiveKitPeer}


async def amain(name: str, base_url: str, key: str, model: str) -> None:
    # One task for the whole life of the worker: LiveKit binds its HTTP session to a context variable, which a
    # task per command would not see.
    peer = PEERS[name]()
    loop = asyncio.get_running_loop()
    out = sys.stdout
    await peer.open(base_url, key, model)
    try:
        warm = await peer.rollout("call step 2 times")
        out.write(json.dumps({"ready": True, "warmup_calls": warm["calls"]}) + "\n")
        out.flush()
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            cmd = json.loads(line)
            if cmd.get("cmd") == "quit":
                break
            c0 = time.process_time()
            t0 = time.perf_counter()
            try:
                res = await peer.rollout(cmd["prompt"])
            except Exception as exc:
                res = {"error": f"{type(exc).__name__}: {exc}"[:500]}
            res["wall"] = time.perf_counter() - t0
            res["cpu"] = time.process_time() - c0
            out.write(json.dumps(res) + "\n")
            out.flush()
    finally:
        await peer.close()


def main() -> None:
    asyncio.run(amain(*sys.argv[1:5]))


if __name__ == "__main__":
    main()
