/**
 * End to end, membership changes with real node processes (LMDB stores): a 3-node cluster with
 * data, a 4th node joins (data streamed to it, ownership rebalanced), an original node leaves,
 * and every key still reads its latest value; then a node killed with SIGKILL and restarted has
 * lost no acknowledged write. 10,000 keys, as in the must-show.
 */
import assert from "node:assert/strict"
import { after, before, test } from "./helpers/test.ts"
import { Redis } from "ioredis"
import { fetchStatus, type StatusReport } from "../impl/cli/status.ts"
import { Cluster, pollUntil, stopAll } from "./helpers/cluster.ts"

const KEYS = 10_000
const OVERWRITTEN = 300
let cluster: Cluster | undefined
const clients = new Map<number, Redis>()

const client = (port: number): Redis => {
  let c = clients.get(port)
  if (c === undefined) {
    c = new Redis({ host: "127.0.0.1", port, maxRetriesPerRequest: 0, retryStrategy: () => null })
    c.on("error", () => {})
    clients.set(port, c)
  }
  return c
}

/** DHT.STATUS, decoded (and checked) by the same schema `dht status` uses. */
const status = (port: number): Promise<StatusReport> =>
  fetchStatus({ host: "127.0.0.1", port }, 5000)

const key = (i: number) => `user:${i}`

/** Write keys [from, to) through `port` with `value(i)`, in pipelined batches. */
const writeAll = async (port: number, from: number, to: number, value: (i: number) => string) => {
  for (let start = from; start < to; start += 500) {
    const pipeline = client(port).pipeline()
    for (let i = start; i < Math.min(to, start + 500); i++) pipeline.set(key(i), value(i))
    const results = (await pipeline.exec()) ?? []
    // A write that misses its quorum during a join (the joiner must ack on top of W) is
    // indeterminate: retry it, as a client would, so that the final value is deterministic.
    for (const [j, [error]] of results.entries()) {
      if (error === null) continue
      const i = start + j
      let done = false
      for (let attempt = 0; attempt < 5 && !done; attempt++) {
        done =
          (await client(port)
            .set(key(i), value(i))
            .catch(() => null)) === "OK"
      }
      assert.ok(done, `SET ${key(i)} failed five times: ${error}`)
    }
  }
}

const readAll = async (port: number): Promise<Array<string | null>> => {
  const out: Array<string | null> = []
  for (let start = 0; start < KEYS; start += 500) {
    const pipeline = client(port).pipeline()
    for (let i = start; i < Math.min(KEYS, start + 500); i++) pipeline.get(key(i))
    for (const [error, v] of (await pipeline.exec()) ?? []) {
      assert.equal(error, null, `read failed: ${error}`)
      out.push(v as string | null)
    }
  }
  return out
}

const expected = (i: number) => (i < OVERWRITTEN ? `during-join-${i}` : `value-${i}`)

before(async () => {
  cluster = await Cluster.start({ nodes: 3, store: "lmdb" })
})

after(async () => {
  for (const c of clients.values()) c.disconnect()
  await stopAll([cluster])
})

test("REBAL-1: join, leave, then SIGKILL and restart lose no acknowledged write", {
  timeout: 240_000,
}, async () => {
  const c = cluster!
  const port = (i: number) => c.nodes[i]!.clientPort
  await writeAll(port(0), 0, KEYS, (i) => `value-${i}`)

  // A 4th node joins; writes keep coming while it streams.
  const joiner = await c.join()
  await writeAll(port(1), 0, OVERWRITTEN, (i) => `during-join-${i}`)
  await pollUntil(
    "n3 to be up and every node's streaming settled",
    async () => {
      const all = await Promise.all([0, 1, 2, joiner].map((i) => status(port(i))))
      return all.every(
        (s) => s.streaming.settled && s.members.find((m) => m.id === "n3")?.status === "up",
      )
    },
    { timeoutMs: 120_000 },
  )
  const joined = await status(port(joiner))
  assert.ok(joined.keys > 0, "the new node received no data")
  const owned = joined.members.find((m) => m.id === "n3")!.owned
  assert.ok(owned > 0.1 && owned < 0.45, `the new node owns ${owned} of the ring`)

  // An original node leaves: it streams its data out, removes itself and exits.
  assert.match((await client(port(0)).call("DHT.LEAVE")) as string, /leaving/)
  await pollUntil(
    "n0 to leave",
    async () => {
      const s = await status(port(1))
      return (
        s.members.find((m) => m.id === "n0")?.status === "removed" &&
        c.nodes[0]!.process.exitCode !== null
      )
    },
    { timeoutMs: 120_000 },
  )
  await pollUntil(
    "streaming to settle after the leave",
    async () =>
      (await Promise.all([1, 2, joiner].map((i) => status(port(i))))).every(
        (s) => s.streaming.settled,
      ),
    { timeoutMs: 120_000 },
  )
  const values = await readAll(port(1))
  const wrong = values.flatMap((v, i) => (v === expected(i) ? [] : [`${key(i)}=${v}`]))
  assert.deepEqual(
    wrong.slice(0, 10),
    [],
    `${wrong.length} keys lost or stale after join and leave`,
  )

  // SIGKILL one node and restart it on the same data directory: nothing acknowledged is lost.
  await c.restart(2) // SIGKILL, then the same flags and data directory; waits for PING
  clients.get(port(2))?.disconnect()
  clients.delete(port(2))
  const after = await readAll(port(2))
  const lost = after.flatMap((v, i) => (v === expected(i) ? [] : [`${key(i)}=${v}`]))
  assert.deepEqual(lost.slice(0, 10), [], `${lost.length} keys lost after kill -9 and restart`)
})
