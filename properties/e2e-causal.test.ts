/**
 * End to end, the causal API over real TCP (real node processes, ioredis and the TypeScript
 * client): concurrent writes with one context become siblings, a write with the merged context
 * collapses them, bad contexts are refused, and plain Redis commands keep working beside it.
 */
import assert from "node:assert/strict"
import { after, before, test } from "./helpers/test.ts"
import { Redis } from "ioredis"
import { DhtClient } from "../impl/client/client.ts"
import { Cluster, stopAll } from "./helpers/cluster.ts"

let cluster: Cluster | undefined
const redis: Array<Redis> = []

before(async () => {
  cluster = await Cluster.start({ nodes: 3, store: "memory" })
  for (const node of cluster.nodes) {
    const client = new Redis({ host: "127.0.0.1", port: node.clientPort, maxRetriesPerRequest: 0 })
    client.on("error", () => {})
    redis.push(client)
  }
})

after(async () => {
  for (const c of redis) c.disconnect()
  await stopAll([cluster])
})

test("CAUSAL-5: two writes with the same context through different nodes become siblings; a write with the returned context collapses them", async () => {
  const [a, b, c] = redis.map((r) => new DhtClient(r))
  await a!.put("cart", "milk")
  const first = await b!.get("cart")
  assert.deepEqual(first.siblings, ["milk"])
  await a!.put("cart", "milk,eggs", { context: first.context })
  await c!.put("cart", "milk,bread", { context: first.context })
  const both = await b!.get("cart", { r: 3 })
  assert.deepEqual([...both.siblings].sort(), ["milk,bread", "milk,eggs"])
  // Plain GET returns one of the siblings (the one with the greatest hybrid timestamp).
  assert.ok(both.siblings.includes((await redis[0]!.get("cart"))!))
  await c!.put("cart", "milk,eggs,bread", { context: both.context })
  const resolved = await a!.get("cart", { r: 3 })
  assert.deepEqual(resolved.siblings, ["milk,eggs,bread"])
  assert.equal(resolved.deleted, false)
})

test("e2e causal: a causal delete leaves a tombstone that DHT.GET reports as deleted", async () => {
  const dht = new DhtClient(redis[1]!)
  const ctx = await dht.put("gone", "soon")
  await dht.del("gone", { context: ctx })
  const read = await dht.get("gone", { r: 3 })
  assert.deepEqual(read.siblings, [])
  assert.equal(read.deleted, true)
  assert.equal(await redis[2]!.get("gone"), null)
})

test("e2e causal: a corrupted or forged context gets a clear error and writes nothing", async () => {
  const dht = new DhtClient(redis[0]!)
  const ctx = await dht.put("guarded", "v1")
  const forged = `${ctx.slice(0, -2)}${ctx.endsWith("A") ? "BB" : "AA"}`
  await assert.rejects(dht.put("guarded", "evil", { context: forged }), /invalid causal context/)
  await assert.rejects(
    dht.put("guarded", "evil", { context: "not a token!" }),
    /invalid causal context/,
  )
  assert.deepEqual((await dht.get("guarded", { r: 3 })).siblings, ["v1"])
  await assert.rejects(
    redis[0]!.call("DHT.GET", "guarded", "R", "7"),
    /R must be an integer from 1 to N=3/,
  )
  await assert.rejects(redis[0]!.call("DHT.PUT", "guarded", "x", "BOGUS", "1"), /syntax error/)
})
