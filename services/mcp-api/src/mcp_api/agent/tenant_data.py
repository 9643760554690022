"""Agent conversations in the per-tenant export and erasure (`secure-agent tenant export|erase`)."""

from __future__ import annotations

import json
import tarfile
from typing import TYPE_CHECKING

from ..security.privacy import TenantData, _add_json, register_tenant_data
from ..store.conversations import ConversationStore

if TYPE_CHECKING:
    from ..security.privacy import PrivacyContext


async def _export(ctx: PrivacyContext, tenant: str, tar: tarfile.TarFile) -> dict:
    conversations = ConversationStore(ctx.store)
    exported = []
    for info in await conversations.list(tenant, limit=1_000_000):
        exported.append({**info.summary(), "transcript": await conversations.messages(tenant, info.id)})
    _add_json(tar, "agent_conversations.json", json.loads(json.dumps(exported, default=str)))
    return {"count": len(exported)}


async def _erase(ctx: PrivacyContext, tenant: str) -> int:
    conversations = ConversationStore(ctx.store)
    erased = 0
    for info in await conversations.list(tenant, limit=1_000_000):
        erased += int(await conversations.delete(tenant, info.id))
    return erased


register_tenant_data(TenantData("agent_conversations", _export, _erase))
