/**
 * A starting node (restarted or joining, not yet confirmed by a peer or caught up with its view:
 * impl/core/node.ts `serving`) reports `loading:1` in INFO, as Redis does while it loads its
 * dataset, so that a client's ready check waits until it serves: ioredis, connecting with its
 * default ready check, sends nothing until the node reports `loading:0`.
 */
import assert from "node:assert/strict"
import { Redis } from "ioredis"
import type { ClientOp, ClientResult } from "../impl/core/messages.ts"
import * as Version from "../impl/core/version.ts"
import { withRespServer } from "./helpers/resp-server.ts"
import { test } from "./helpers/test.ts"

test("MEM-5: a starting node reports loading:1 in INFO until it serves, and ioredis's ready check waits for it", async () => {
  let starting = true
  const submitted: Array<ClientOp> = []
  const submit = (op: ClientOp, onResult: (r: ClientResult) => void) => {
    submitted.push(op)
    onResult({ _tag: "GetOk", obj: Version.empty })
  }
  await withRespServer({ submit, starting: () => starting }, async (port) => {
    const probe = new Redis({ port, host: "127.0.0.1", enableReadyCheck: false })
    const client = new Redis({ port, host: "127.0.0.1", lazyConnect: true })
    try {
      assert.match(String(await probe.call("INFO", "persistence")), /loading:1\r\n/)
      let ready = false
      client.once("ready", () => {
        ready = true
      })
      // connect() resolves once ready: not awaited, it would wait for the node to serve.
      const connected = client.connect()
      // Its ready check sees loading:1: it holds its commands back.
      const get = client.get("k")
      await new Promise((resolve) => setTimeout(resolve, 300))
      assert.equal(ready, false, "ready while the node reports loading:1")
      assert.equal(submitted.length, 0, "a command reached the node while it was starting")
      starting = false
      assert.match(String(await probe.call("INFO", "persistence")), /loading:0\r\n/)
      await connected
      assert.equal(await get, null)
      assert.equal(ready, true)
      assert.deepEqual(
        submitted.map((op) => op._tag),
        ["Get"],
      )
    } finally {
      probe.disconnect()
      client.disconnect()
    }
  })
})
