"""What the model sees of a conversation: the stored transcript, repaired and compacted.

The store keeps every message in full (conversation_get shows it). Before each model call:
1. every tool result is cut to `max_tool_result_chars` (head and tail kept);
2. assistant tool calls with no stored result (a run that was killed mid-step) get a synthetic
   "not executed" result, so the transcript stays valid for both provider APIs;
3. compaction rule: if the transcript exceeds ~75% of the model's context window (estimated at
   4 characters per token), the oldest whole turns (a user prompt and everything after it up to the
   next user prompt) are dropped until it fits, always keeping the latest turn, and replaced by one
   note listing how many messages were dropped and the dropped prompts (each cut to 200 chars).
"""

from __future__ import annotations

from typing import Any

CHARS_PER_TOKEN = 4
CONTEXT_FRACTION = 0.75


def cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    keep = limit - 60
    head, tail = text[: keep * 2 // 3], text[-(keep // 3) :]
    return f"{head}\n[... {len(text) - len(head) - len(tail)} characters cut ...]\n{tail}"


def size(message: dict[str, Any]) -> int:
    total = len(message.get("content") or "")
    for call in message.get("tool_calls") or []:
        total += len(call.get("arguments") or "") + len(call.get("name") or "") + 20
    return total + 20


def repair(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    open_calls: list[dict[str, Any]] = []
    for message in messages:
        if message["role"] == "tool":
            open_calls = [c for c in open_calls if c["id"] != message.get("tool_call_id")]
        else:
            out.extend(_not_executed(open_calls))
            open_calls = list(message.get("tool_calls") or []) if message["role"] == "assistant" else []
        out.append(message)
    out.extend(_not_executed(open_calls))
    return out


def _not_executed(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"role": "tool", "tool_call_id": c["id"], "name": c["name"], "is_error": True, "decision": "none",
         "content": "not executed: the run stopped before this call ran"}
        for c in calls
    ]  # fmt: skip


def _is_prompt(message: dict[str, Any]) -> bool:
    return message["role"] == "user"


def for_model(
    messages: list[dict[str, Any]], *, context_tokens: int, max_tool_result_chars: int
) -> list[dict[str, Any]]:
    prepared = []
    for message in repair(messages):
        if message["role"] == "tool":
            message = {**message, "content": cut(message.get("content") or "", max_tool_result_chars)}
        prepared.append(message)
    budget = int(context_tokens * CONTEXT_FRACTION * CHARS_PER_TOKEN)
    total = sum(size(m) for m in prepared)
    if total <= budget:
        return prepared
    starts = [i for i, m in enumerate(prepared) if _is_prompt(m)]
    cut_at = 0
    for start in starts[1:]:
        cut_at = start
        if sum(size(m) for m in prepared[cut_at:]) <= budget * 0.9:
            break
    if cut_at == 0:
        return prepared  # one turn larger than the budget: tool results are already cut, send as is
    dropped = prepared[:cut_at]
    prompts = [cut(m["content"], 200) for m in dropped if _is_prompt(m)]
    note = {
        "role": "user",
        "note": "compaction",
        "content": f"[Compacted history: {len(dropped)} earlier messages omitted to fit the context window. "
        "Earlier requests were: " + " | ".join(prompts) + "]",
    }
    return [note, *prepared[cut_at:]]
