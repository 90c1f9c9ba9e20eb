"""A real MCP client against Slipway's /mcp: the official Python SDK (`mcp`, pinned in
scripts/ensure-tools.sh), driven by crates/api/tests/api/mcp.rs, which starts the API on a fresh
database, seeds it and passes what it seeded in SLIPWAY_MCP_FIXTURE (JSON).

Each check runs once per connection mode: `legacy` (the initialize handshake of the revisions
before 2026-07-28) and `auto` (the SDK probes `server/discover` and speaks 2026-07-28).
Any failed assertion exits non-zero; the Rust test then fails with this output.
"""

import asyncio
import json
import os
import sys

import httpx2
import jsonschema
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client

URL = os.environ["SLIPWAY_MCP_URL"]
FIX = json.loads(os.environ["SLIPWAY_MCP_FIXTURE"])
TOKENS = FIX["tokens"]

READ_TOOLS = {
    "list_preview_environments",
    "get_preview_environment",
    "get_preview_logs",
    "list_jobs",
    "get_job",
    "get_job_logs",
    "get_queue_status",
}
WRITE_TOOLS = {
    "retry_preview_deployment",
    "redeploy_preview",
    "trigger_pipeline",
    "delete_preview_environment",
}


def client(token, mode):
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
    return Client(streamable_http_client(URL, http_client=http), mode=mode, cache=None)


def structured(result, schema):
    """The result's structuredContent, checked against the tool's declared outputSchema and
    against its text content (the same JSON)."""
    assert not result.is_error, f"tool error: {result.content}"
    data = result.structured_content
    assert data is not None, "no structuredContent"
    jsonschema.validate(data, schema, cls=jsonschema.Draft202012Validator)
    assert len(result.content) == 1 and json.loads(result.content[0].text) == data
    return data


def error(result, code, field=None):
    assert result.is_error, f"expected a {code} error, got {result.structured_content}"
    err = result.structured_content["error"]
    assert err["code"] == code, err
    assert err["message"], err
    if field is not None:
        assert err.get("field") == field, err
    assert json.loads(result.content[0].text) == result.structured_content
    return err


async def all_tools(c):
    tools, cursor = [], None
    while True:
        page = await c.list_tools(cursor=cursor)
        tools += page.tools
        cursor = page.next_cursor
        if not cursor:
            return {t.name: t for t in tools}


async def full_token(mode):
    async with client(TOKENS["all"], mode) as c:
        print(f"[{mode}] protocol {c.protocol_version}")
        assert (c.protocol_version >= "2026-07-28") == (mode == "auto"), c.protocol_version
        tools = await all_tools(c)
        assert set(tools) == READ_TOOLS | WRITE_TOOLS, sorted(tools)
        for t in tools.values():
            assert t.description and t.output_schema, t.name
            jsonschema.Draft202012Validator.check_schema(t.output_schema)
            jsonschema.Draft202012Validator.check_schema(t.input_schema)
            a = t.annotations
            if t.name in READ_TOOLS:
                assert a.read_only_hint is True, t.name
            else:
                assert a.read_only_hint is False, t.name
                assert a.idempotent_hint is True, t.name
                assert a.destructive_hint is (t.name == "delete_preview_environment"), t.name
        out = {name: t.output_schema for name, t in tools.items()}

        async def call(name, args=None):
            return await c.call_tool(name, args or {})

        # A long list, paged: every preview once, none twice.
        seen, cursor, pages = [], None, 0
        while True:
            args = {"limit": 10, "repository": "org/many"}
            if cursor:
                args["cursor"] = cursor
            page = structured(await call("list_preview_environments", args), out["list_preview_environments"])
            seen += [p["key"] for p in page["items"]]
            pages += 1
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert pages == 3 and len(seen) == FIX["many"] and len(set(seen)) == len(seen), (pages, seen)
        ready = structured(await call("list_preview_environments", {"status": "ready"}), out["list_preview_environments"])
        assert ready["items"] and all(p["status"] == "ready" for p in ready["items"])

        # A preview by key, by namespace and by pull-request URL.
        live = FIX["live"]
        for ref in (live["key"], live["namespace"], live["pull_request_url"]):
            d = structured(await call("get_preview_environment", {"preview": ref}), out["get_preview_environment"])
            assert d["key"] == live["key"] and d["preview"]["url"] == live["url"], d
            assert d["pull_request"] == {"repository": "org/app", "number": live["number"]}, d
            use = d["resource_use"]
            assert use["metrics"] == "ok" and use["cpu_millis"] == 1700 and use["cpu_limit_millis"] == 2000, use
            assert use["cpu_percent"] == 85.0 and use["memory_percent"] == 12.5 and use["near_limit"] is True, use
        error(await call("get_preview_environment", {"preview": "org/app#999"}), "NOT_FOUND")

        # Why did the build fail? Its log says, and the agent retries it.
        failed = FIX["failed"]
        d = structured(await call("get_preview_environment", {"preview": failed["key"]}), out["get_preview_environment"])
        # The first mode's client retries it; the second one finds it queued again.
        expected = "failed" if mode == "legacy" else "queued"
        assert d["latest_jobs"][0]["id"] == failed["job"] and d["latest_jobs"][0]["state"] == expected, d
        assert d["preview"] is None, "no launch recorded the preview yet"
        logs = structured(
            await call("get_preview_logs", {"preview": failed["key"], "kind": "build", "tail": 5, "timestamps": True}),
            out["get_preview_logs"],
        )
        assert logs["job_id"] == failed["job"] and logs["attempt"] == 1, logs
        assert len(logs["lines"]) == 5 and logs["truncated"] is True, logs
        assert all("ts" in l for l in logs["lines"])
        assert any(failed["cause"] in l["text"] for l in logs["lines"]), logs["lines"]
        plain = structured(await call("get_job_logs", {"job_id": failed["job"]}), out["get_job_logs"])
        assert not plain["truncated"] and all("ts" not in l for l in plain["lines"])
        assert plain["lines"][-1]["text"] == logs["lines"][-1]["text"]
        # A log over the byte cap is cut to it, newest lines kept.
        big = structured(await call("get_job_logs", {"job_id": FIX["big_log_job"], "tail": 2000}), out["get_job_logs"])
        assert big["truncated"] and sum(len(l["text"].encode()) for l in big["lines"]) <= FIX["log_byte_cap"]
        assert big["lines"][-1]["seq"] == FIX["big_log_last_seq"], big["lines"][-1]

        if mode == "legacy":
            retried = structured(
                await call("retry_preview_deployment", {"preview": failed["key"]}), out["retry_preview_deployment"]
            )
            assert retried["id"] == failed["job"] and retried["state"] == "queued", retried
        # Now queued, not failed: a second retry is refused, saying why.
        err = error(await call("retry_preview_deployment", {"preview": failed["key"]}), "CONFLICT")
        assert "queued" in err["message"], err

        # The jobs, one job, the queues.
        jobs = structured(await call("list_jobs", {"state": "failed", "limit": 100}), out["list_jobs"])
        assert all(j["state"] == "failed" for j in jobs["items"])
        job = structured(await call("get_job", {"job_id": failed["job"]}), out["get_job"])
        assert job["kind"] == "build" and job["attempts"][0]["error"], job
        error(await call("get_job", {"job_id": "not-a-uuid"}), "INVALID_INPUT", "job_id")
        error(await call("list_jobs", {"limit": 0}), "INVALID_INPUT", "limit")
        error(await call("list_jobs", {"bogus": 1}), "INVALID_INPUT", "bogus")
        queues = structured(await call("get_queue_status"), out["get_queue_status"])
        assert {q["queue"] for q in queues["items"]} == {"build", "launch", "cleanup"}, queues

        # A pipeline, then the same again: one job (keyed like the API).
        args = {"preview": f"org/app#{50 if mode == 'legacy' else 51}", "repository": "https://github.com/org/app", "commit": FIX["sha"]}
        first = structured(await call("trigger_pipeline", args), out["trigger_pipeline"])
        again = structured(await call("redeploy_preview", args), out["redeploy_preview"])
        assert first["created"] and not again["created"] and first["job"]["id"] == again["job"]["id"], (first, again)
        error(await call("trigger_pipeline", {**args, "repository": "git@github.com:org/app.git"}), "INVALID_INPUT", "repository")

        # Delete: refused without confirm (nothing recorded), done with it.
        gone = FIX["to_delete"][mode]
        error(await call("delete_preview_environment", {"preview": gone}), "INVALID_INPUT", "confirm")
        error(await call("delete_preview_environment", {"preview": gone, "confirm": "org/other#1"}), "INVALID_INPUT", "confirm")
        deleted = structured(
            await call("delete_preview_environment", {"preview": gone, "confirm": gone}), out["delete_preview_environment"]
        )
        assert deleted["created"] and deleted["job"]["kind"] == "cleanup" and deleted["job"]["preview"] == gone, deleted
        # A preview already torn down is not torn down again; the error says when it went.
        done = FIX["already_deleted"]
        err = error(await call("delete_preview_environment", {"preview": done, "confirm": done}), "CONFLICT", "preview")
        assert "torn down" in err["message"], err
        print(f"[{mode}] full token: ok")


async def read_only_token(mode):
    async with client(TOKENS["read"], mode) as c:
        tools = await all_tools(c)
        assert set(tools) == READ_TOOLS, sorted(tools)
        # The forged call of a tool it was not shown is refused, and nothing changes.
        err = error(await c.call_tool("retry_preview_deployment", {"preview": FIX["forged"]["key"]}), "UNAUTHORIZED")
        assert "admin" in err["message"], err
        err = error(
            await c.call_tool("delete_preview_environment", {"preview": FIX["forged"]["key"], "confirm": FIX["forged"]["key"]}),
            "UNAUTHORIZED",
        )
        assert "enqueue" in err["message"], err
        print(f"[{mode}] read-only token: ok")


async def main():
    for mode in ("legacy", "auto"):
        await full_token(mode)
        await read_only_token(mode)
    print("all ok")


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except Exception as e:  # a failed check: say what, exit non-zero
        import traceback

        traceback.print_exc()
        sys.exit(1)
