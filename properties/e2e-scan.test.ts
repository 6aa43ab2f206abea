/**
 * SCAN-1 end to end: 10,000 keys on 5 real LMDB nodes, listed with SCAN (ioredis's scanStream,
 * COUNT 100) while a sixth node joins and data streams to it: every key comes back exactly
 * once. Also KEYS with a pattern, DBSIZE, and the transaction commands' clear refusal.
 */
import assert from "node:assert/strict"
import { after, before, describe, test } from "./helpers/test.ts"
import type { Redis } from "ioredis"
import { Cluster, connectClient, stopAll } from "./helpers/cluster.ts"

const clients: Array<Redis> = []
const KEYS = 10_000

describe("e2e SCAN on a 5-node cluster", { timeout: 300_000 }, () => {
  let cluster: Cluster | undefined
  before(async () => {
    cluster = await Cluster.start({ nodes: 5, store: "lmdb", n: 3, r: 2, w: 2 })
    const c = connectClient(cluster.nodes[0]!.clientPort, clients, 60_000)
    for (let start = 0; start < KEYS; start += 500) {
      const pipeline = c.pipeline()
      for (let i = start; i < start + 500; i++) pipeline.set(`scan:${i}`, String(i))
      const results = await pipeline.exec()
      assert.ok(results!.every(([e]) => e === null))
    }
  })
  after(async () => {
    for (const c of clients) c.disconnect()
    await stopAll([cluster])
  })

  test("SCAN-1: SCAN over 10,000 keys returns every key exactly once while a node joins", async () => {
    const c = connectClient(cluster!.nodes[1]!.clientPort, clients, 60_000)
    const counts = new Map<string, number>()
    let pages = 0
    let joined: Promise<number> | undefined
    await new Promise<void>((resolve, reject) => {
      const stream = c.scanStream({ match: "scan:*", count: 100 })
      stream.on("data", (keys: Array<string>) => {
        pages++
        for (const k of keys) counts.set(k, (counts.get(k) ?? 0) + 1)
        // A few pages in, a sixth node joins; the scan goes on while it streams in.
        if (pages === 5) joined = cluster!.join()
      })
      stream.on("end", resolve)
      stream.on("error", reject)
    })
    assert.ok(joined !== undefined, "the scan ended before the join began")
    await joined
    const missing = Array.from({ length: KEYS }, (_, i) => `scan:${i}`).filter(
      (k) => !counts.has(k),
    )
    const twice = [...counts].filter(([, n]) => n > 1).map(([k]) => k)
    assert.deepEqual(missing.slice(0, 10), [], `${missing.length} keys never came back`)
    assert.deepEqual(twice.slice(0, 10), [], `${twice.length} keys came back more than once`)
    assert.equal(counts.size, KEYS)
    assert.ok(pages >= KEYS / 100, `${pages} pages`)
  })

  test("SCAN-1: DBSIZE counts live keys, KEYS lists a pattern, deletes and expiry drop out, bad cursors are refused", async () => {
    const c = connectClient(cluster!.nodes[2]!.clientPort, clients, 60_000)
    assert.equal(await c.dbsize(), KEYS)
    await c.set("other:1", "x")
    await c.set("other:2", "x", "PX", 50)
    await c.del("scan:0")
    await new Promise((resolve) => setTimeout(resolve, 100))
    assert.deepEqual(await c.keys("other:*"), ["other:1"])
    assert.equal(await c.dbsize(), KEYS)
    assert.deepEqual((await c.scan("0", "MATCH", "nothing:*", "COUNT", "10"))[1], [])
    assert.deepEqual(await c.scan("0", "TYPE", "hash"), ["0", []])
    await assert.rejects(c.scan("12"), /ERR invalid cursor/)
    await assert.rejects(
      c.call("MULTI"),
      /ERR MULTI is not supported: keys live on different nodes/,
    )
    await assert.rejects(c.call("WATCH", "k"), /ERR WATCH is not supported/)
  })
})
