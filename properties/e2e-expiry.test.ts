/**
 * Expiry and conditional writes end to end (EXP-*, COND-1), with ioredis on a real 3-node LMDB
 * cluster: SET's options, EXPIRE/TTL/PERSIST and friends answer as Redis does, an expired key
 * reads as absent on every node at once, an expiry survives SIGKILL and restart, and an expired
 * value is purged like a tombstone once every replica holds it and the grace has passed.
 */
import assert from "node:assert/strict"
import { after, before, describe, test } from "./helpers/test.ts"
import type { Redis } from "ioredis"
import { Cluster, connectClient, pollUntil, stopAll } from "./helpers/cluster.ts"

const clients: Array<Redis> = []
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describe("e2e expiry and conditional writes on a 3-node cluster", { timeout: 180_000 }, () => {
  let cluster: Cluster | undefined
  before(async () => {
    cluster = await Cluster.start({
      nodes: 3,
      store: "lmdb",
      n: 3,
      r: 2,
      w: 2,
      args: ["--tombstone-grace-ms", "1000"],
    })
  })
  after(async () => {
    for (const c of clients) c.disconnect()
    await stopAll([cluster])
  })
  const at = (i: number) => connectClient(cluster!.nodes[i]!.clientPort, clients)

  test("EXP-1: SET … EX 2, TTL, and after 2 s every node reads nil and TTL is -2", async () => {
    const c = at(0)
    assert.equal(await c.set("exp:story", "v", "EX", 2), "OK")
    assert.ok([1, 2].includes(await c.ttl("exp:story")))
    assert.ok((await c.pttl("exp:story")) > 1000)
    for (const i of [0, 1, 2]) assert.equal(await at(i).get("exp:story"), "v")
    await sleep(2100)
    for (const i of [0, 1, 2]) {
      assert.equal(await at(i).get("exp:story"), null, `n${i} still reads the expired value`)
      assert.equal(await at(i).ttl("exp:story"), -2)
      assert.equal(await at(i).exists("exp:story"), 0)
    }
    assert.equal(await c.del("exp:story"), 0, "DEL of an expired key deletes nothing")
  })

  test("EXP-1: PX, EXAT and PXAT; SETEX, PSETEX; errors like Redis", async () => {
    const c = at(1)
    assert.equal(await c.set("exp:px", "v", "PX", 300), "OK")
    assert.equal(await c.set("exp:exat", "v", "EXAT", Math.floor(Date.now() / 1000) + 100), "OK")
    assert.equal(await c.set("exp:pxat", "v", "PXAT", Date.now() + 100_000), "OK")
    assert.ok((await c.ttl("exp:exat")) > 90)
    assert.ok((await c.ttl("exp:pxat")) > 90)
    assert.equal(await c.setex("exp:setex", 100, "v"), "OK")
    assert.equal(await c.psetex("exp:psetex", 100_000, "v"), "OK")
    assert.ok((await c.ttl("exp:setex")) > 90 && (await c.ttl("exp:psetex")) > 90)
    await sleep(400)
    assert.equal(await c.get("exp:px"), null)
    await assert.rejects(c.set("exp:bad", "v", "EX", 0), /ERR invalid expire time in 'set' command/)
    await assert.rejects(c.set("exp:bad", "v", "EX", "x"), /ERR value is not an integer/)
    await assert.rejects(c.call("SET", "exp:bad", "v", "EX", "10", "PX", "10"), /ERR syntax error/)
    await assert.rejects(c.call("SET", "exp:bad", "v", "NX", "XX"), /ERR syntax error/)
  })

  test("COND-1: SET NX / XX / GET, SETNX, GETDEL, and an expired value counts as absent", async () => {
    const c = at(2)
    assert.equal(await c.set("cond:a", "1", "NX"), "OK")
    assert.equal(await c.set("cond:a", "2", "NX"), null)
    assert.equal(await c.get("cond:a"), "1")
    assert.equal(await c.set("cond:missing", "1", "XX"), null)
    assert.equal(await c.get("cond:missing"), null)
    assert.equal(await c.set("cond:a", "3", "XX"), "OK")
    assert.equal(await c.call("SET", "cond:a", "4", "GET"), "3")
    assert.equal(await c.call("SET", "cond:new", "x", "GET"), null)
    assert.equal(await c.setnx("cond:a", "5"), 0)
    assert.equal(await c.setnx("cond:b", "5"), 1)
    assert.equal(await c.getdel("cond:b"), "5")
    assert.equal(await c.get("cond:b"), null)
    assert.equal(await c.getdel("cond:b"), null)
    assert.equal(await c.set("cond:short", "old", "PX", 200), "OK")
    await sleep(300)
    assert.equal(await c.set("cond:short", "new", "NX"), "OK", "an expired value blocked NX")
    assert.equal(await c.get("cond:short"), "new")
    assert.equal(await c.ttl("cond:short"), -1, "the new value inherited the old expiry")
  })

  test("COND-1: DHT.PUT … IF-CONTEXT is compare-and-set on the causal context", async () => {
    const c = at(1)
    await c.set("cond:cas", "v1")
    const read = (await c.call("DHT.GET", "cond:cas")) as Array<unknown>
    const ctx = String(read[1])
    const next = await c.call("DHT.PUT", "cond:cas", "v2", "IF-CONTEXT", ctx)
    assert.equal(typeof next, "string", "the compare-and-set with the current context failed")
    // The same, stale context again: the key moved on, nothing is written.
    assert.equal(await c.call("DHT.PUT", "cond:cas", "v3", "IF-CONTEXT", ctx), null)
    assert.equal(await at(2).get("cond:cas"), "v2")
    assert.equal(
      typeof (await c.call("DHT.PUT", "cond:cas", "v4", "IF-CONTEXT", String(next))),
      "string",
    )
    assert.equal(await at(0).get("cond:cas"), "v4")
    await assert.rejects(
      c.call("DHT.PUT", "cond:cas", "v", "CONTEXT", ctx, "IF-CONTEXT", ctx),
      /exclude each other/,
    )
  })

  test("CTR-1: INCR, DECR, INCRBY, DECRBY and INCRBYFLOAT answer as Redis does, keep the expiry, and a SET resets", async () => {
    const c = at(0)
    assert.equal(await c.incr("ctr:a"), 1)
    assert.equal(await at(1).incr("ctr:a"), 2)
    assert.equal(await at(2).incrby("ctr:a", 40), 42)
    assert.equal(await c.decr("ctr:a"), 41)
    assert.equal(await c.decrby("ctr:a", 50), -9)
    assert.equal(await at(1).get("ctr:a"), "-9")
    await c.set("ctr:s", "10")
    assert.equal(await c.incr("ctr:s"), 11)
    await c.set("ctr:s", "100")
    assert.equal(await c.incr("ctr:s"), 101, "a SET resets the counter")
    await c.set("ctr:t", "abc")
    await assert.rejects(c.incr("ctr:t"), /ERR value is not an integer or out of range/)
    await assert.rejects(c.incrby("ctr:a", "x" as unknown as number), /ERR value is not an integer/)
    await assert.rejects(
      c.incrbyfloat("ctr:a", "x" as unknown as number),
      /ERR value is not a valid float/,
    )
    await c.set("ctr:max", "9223372036854775807")
    await assert.rejects(c.incr("ctr:max"), /ERR increment or decrement would overflow/)
    assert.equal(await c.incrbyfloat("ctr:f", 10.5), "10.5")
    assert.equal(await c.incrbyfloat("ctr:f", 0.25), "10.75")
    await assert.rejects(c.incr("ctr:f"), /ERR value is not an integer or out of range/)
    await c.set("ctr:ttl", "1", "EX", 100)
    assert.equal(await c.incr("ctr:ttl"), 2)
    assert.ok((await c.ttl("ctr:ttl")) > 90, "INCR dropped the expiry")
  })

  test("EXP-2: EXPIRE, PERSIST, KEEPTTL, GETEX, and EXPIRE in the past deletes", async () => {
    const c = at(0)
    assert.equal(await c.expire("exp:none", 100), 0)
    await c.set("exp:k", "v")
    assert.equal(await c.ttl("exp:k"), -1)
    assert.equal(await c.expire("exp:k", 100), 1)
    assert.ok((await c.ttl("exp:k")) > 90)
    assert.equal(await c.get("exp:k"), "v")
    assert.equal(await c.set("exp:k", "w", "KEEPTTL"), "OK")
    assert.ok((await c.ttl("exp:k")) > 90, "KEEPTTL lost the expiry")
    assert.equal(await c.set("exp:k", "x"), "OK")
    assert.equal(await c.ttl("exp:k"), -1, "a plain SET keeps an old expiry")
    assert.equal(await c.pexpire("exp:k", 100_000), 1)
    assert.equal(await c.persist("exp:k"), 1)
    assert.equal(await c.ttl("exp:k"), -1)
    assert.equal(await c.persist("exp:k"), 0)
    assert.equal(await c.call("GETEX", "exp:k", "EX", "100"), "x")
    assert.ok((await c.ttl("exp:k")) > 90)
    assert.equal(await c.call("GETEX", "exp:k", "PERSIST"), "x")
    assert.equal(await c.ttl("exp:k"), -1)
    assert.equal(await c.expireat("exp:k", Math.floor(Date.now() / 1000) - 10), 1)
    assert.equal(await c.get("exp:k"), null)
    assert.equal(await c.strlen("exp:k"), 0)
    assert.equal(await c.type("exp:k"), "none")
    await c.set("exp:s", "hello")
    assert.equal(await c.strlen("exp:s"), 5)
    assert.equal(await c.append("exp:s", " world"), 11)
    assert.equal(await at(1).get("exp:s"), "hello world")
    assert.equal(await c.append("exp:fresh", "abc"), 3)
    await c.set("exp:app", "x", "EX", 100)
    assert.equal(await c.append("exp:app", "y"), 2)
    assert.ok((await c.ttl("exp:app")) > 90, "APPEND dropped the expiry")
    assert.equal(await c.type("exp:s"), "string")
    await assert.rejects(c.call("EXPIRE", "exp:s", "10", "NX"), /not supported/)
  })

  test("EXP-1: an expiry survives SIGKILL and restart of every replica (it is part of the stored version)", async () => {
    const c = at(0)
    await c.set("exp:durable", "v", "EX", 300)
    for (const i of [0, 1, 2]) {
      await cluster!.kill(i)
      await cluster!.restart(i)
    }
    const ttl = await pollUntil("the restarted cluster to answer TTL", async () => {
      const t = await at(1)
        .ttl("exp:durable")
        .catch(() => undefined)
      return t !== undefined && t !== -2 ? t : undefined
    })
    assert.ok(ttl > 200 && ttl <= 300, `TTL after restart: ${ttl}`)
  })

  test("EXP-3: an expired value is purged like a tombstone: the clock stays, the value goes", async () => {
    const c = at(0)
    await c.set("exp:purge", "v", "PX", 200)
    await sleep(1500) // expiry plus the 1 s grace
    // A read that hears from every replica purges (read repair's purge rule, KV-7's grace).
    assert.equal(await c.get("exp:purge"), null)
    const purged = await pollUntil("the expired value to be purged", async () => {
      await c.get("exp:purge")
      const reply = (await c.call("DHT.GET", "exp:purge", "R", "3")) as Array<unknown>
      const info = await c.info("stats")
      return Number(reply[3]) === 1 && /\npurges:[1-9]/.test(info) ? reply : undefined
    })
    assert.deepEqual(purged[5], [], "no sibling is left")
  })
})
