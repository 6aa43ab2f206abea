/**
 * REBAL-2 end to end: a join and a leave complete while a member is down and not removed. Five
 * real `dht node` processes with LMDB stores (N=3, R=W=2) hold KEYS keys; n4 is killed with
 * SIGKILL and not removed; while it is down a sixth node joins (`dht node --join`) and, as soon
 * as it answers, n1 leaves (DHT.LEAVE), so that the join's and the leave's streaming overlap,
 * with writes through n0, n2 and n3 going on all along. The joiner must be up, and the leaver
 * removed and its process gone, each within 180 s of being started (the spec's bound; polled,
 * never slept for). Then n4 restarts on its data directory, membership settles (every live
 * member sees the same members up and reachable, n1 removed, streaming settled, no hint left),
 * and every key reads, through the restarted node and through the joiner, its last
 * acknowledged value or the value of a later write that failed (KvModel: a failed write is
 * indeterminate), as REBAL-1 in properties/rebalance.test.ts checks it.
 */
import assert from "node:assert/strict"
import { Either } from "effect"
import type { Redis } from "ioredis"
import { parseStatus, type StatusReport } from "../impl/cli/status.ts"
import { KvModel } from "../models/kv.ts"
import { Cluster, connectClient, pollUntil, stopAll } from "./helpers/cluster.ts"
import { after, describe, test } from "./helpers/test.ts"

const KEYS = 1500
const BATCH = 250
/** Writes per batch while the join and the leave run. */
const CHANGE_BATCH = 50
const BOUND_MS = 180_000

const clients: Array<Redis> = []
const clusters: Array<Cluster> = []

const key = (i: number): string => `rebal2:${i}`

const status = async (client: Redis): Promise<StatusReport> => {
  const decoded = parseStatus(await client.call("DHT.STATUS"))
  if (Either.isLeft(decoded)) throw new Error(decoded.left)
  return decoded.right
}

/** What the writes did: the model of what each key may read, and counts. */
class Writes {
  readonly model = new KvModel()
  acknowledged = 0
  failed = 0

  /**
   * SET each key of `keys` (distinct) to `value(key)` in one pipeline through `client`; an OK
   * is acknowledged, anything else indeterminate. Keys are written one batch at a time, so the
   * writes of one key never overlap: the model of one sequential client fits.
   */
  async batch(client: Redis, keys: ReadonlyArray<string>, value: (k: string) => string) {
    const pipeline = client.pipeline()
    for (const k of keys) pipeline.set(k, value(k))
    const replies = await pipeline.exec().catch(() => null)
    let acked = 0
    keys.forEach((k, j) => {
      const [error, reply] = replies?.[j] ?? [new Error("no reply"), null]
      if (error === null && reply === "OK") {
        this.model.written(k, value(k))
        acked++
      } else {
        this.model.indeterminate(k, value(k))
        this.failed++
      }
    })
    this.acknowledged += acked
    return acked
  }
}

describe("e2e REBAL-2: a join and a leave complete while a member is down", {
  timeout: 600_000,
}, () => {
  after(async () => {
    for (const client of clients) client.disconnect()
    await stopAll(clusters)
  })

  test(`REBAL-2: with n4 killed and not removed, a node joins and n1 leaves at once under writes, each within ${BOUND_MS / 1000} s; after n4 restarts and membership settles, all ${KEYS} keys read their last acknowledged value or a later failed write`, async (t) => {
    const c = await Cluster.start({
      nodes: 5,
      store: "lmdb",
      n: 3,
      r: 2,
      w: 2,
      readyTimeoutMs: 90_000,
    })
    clusters.push(c)
    const connect = (i: number) => connectClient(c.nodes[i]!.clientPort, clients, 30_000)
    const writes = new Writes()
    const keys = Array.from({ length: KEYS }, (_, i) => key(i))

    // --- data, written through every member -----------------------------------------------------
    for (let i = 0; i < KEYS; i += BATCH) {
      await writes.batch(connect((i / BATCH) % 5), keys.slice(i, i + BATCH), (k) => `${k}:v0`)
    }
    assert.ok(writes.acknowledged >= KEYS * 0.99, `${writes.acknowledged} of ${KEYS} first writes`)

    // --- n4 crashes and stays a member ------------------------------------------------------------
    await c.kill(4, "SIGKILL")
    const observer = connect(0)
    await pollUntil(
      "n0 to see n4 unreachable (and still a member)",
      async () => {
        const m = (await status(observer)).members.find((x) => x.id === "n4")
        return m?.status === "up" && !m.reachable
      },
      { timeoutMs: 60_000 },
    )

    // --- writes go on through n0, n2 and n3 while a node joins and n1 leaves --------------------
    const writers = [0, 2, 3].map(connect)
    let writing = true
    let round = 0
    let duringChange = 0
    const writer = (async () => {
      while (writing) {
        round++
        const from = ((round - 1) * CHANGE_BATCH) % KEYS
        const batch = keys.slice(from, from + CHANGE_BATCH)
        duringChange += await writes.batch(writers[round % writers.length]!, batch, (k) => {
          return `${k}:r${round}`
        })
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
    })()

    const joinStarted = Date.now()
    const joined = await c.join()
    const joiner = c.nodes[joined]!
    assert.equal(joiner.id, "n5")
    const leaver = c.nodes[1]!
    const leaveStarted = Date.now()
    assert.match((await connect(1).call("DHT.LEAVE")) as string, /^leaving/)
    const timings: Record<string, number> = {}
    try {
      await Promise.all([
        pollUntil(
          "n5 to be up, as n0 and n5 itself see it",
          async () => {
            const views = await Promise.all([observer, connect(joined)].map(status))
            return views.every((v) => v.members.find((m) => m.id === "n5")?.status === "up")
          },
          { timeoutMs: BOUND_MS - (Date.now() - joinStarted), intervalMs: 500 },
        ).then(() => {
          timings.joinMs = Date.now() - joinStarted
        }),
        pollUntil(
          "n1 to be removed, as n0 sees it, and its process to exit",
          async () =>
            (leaver.process.exitCode !== null || leaver.process.signalCode !== null) &&
            (await status(observer)).members.find((m) => m.id === "n1")?.status === "removed",
          { timeoutMs: BOUND_MS - (Date.now() - leaveStarted), intervalMs: 500 },
        ).then(() => {
          timings.leaveMs = Date.now() - leaveStarted
        }),
      ])
    } finally {
      writing = false
      await writer
    }
    t.diagnostic(
      `join up after ${timings.joinMs} ms, leave done after ${timings.leaveMs} ms; ` +
        `${duringChange} writes acknowledged in ${round} batches meanwhile`,
    )
    assert.equal(leaver.process.exitCode, 0, `n1 exited with ${leaver.process.exitCode}`)

    // --- n4 restarts; membership settles ---------------------------------------------------------
    await c.restart(4)
    const live = [0, 2, 3, 4, joined]
    const liveIds = live.map((i) => c.nodes[i]!.id)
    const settled = await pollUntil(
      "every live member to see the same members up and reachable, n1 removed, streaming settled and no hint left",
      async () => {
        const views = await Promise.all(live.map((i) => status(connect(i))))
        const ok = views.every(
          (v) =>
            v.streaming.settled &&
            v.streaming.pending === 0 &&
            v.hints === 0 &&
            v.members.find((m) => m.id === "n1")?.status === "removed" &&
            liveIds.every((id) => {
              const m = v.members.find((x) => x.id === id)
              return m?.status === "up" && m.reachable
            }),
        )
        return ok && views
      },
      { timeoutMs: BOUND_MS, intervalMs: 1000 },
    )
    const joinerKeys = settled.find((v) => v.self === "n5")!.keys
    assert.ok(joinerKeys > 0, "the joiner holds no keys")

    // --- every key, through the restarted node and through the joiner ------------------------------
    let checked = 0
    const wrong: Array<string> = []
    for (const via of [4, joined]) {
      const reader = connect(via)
      for (let i = 0; i < KEYS; i += BATCH) {
        const part = keys.slice(i, i + BATCH)
        const pipeline = reader.pipeline()
        for (const k of part) pipeline.get(k)
        const replies = (await pipeline.exec()) ?? []
        part.forEach((k, j) => {
          const [error, value] = replies[j] ?? [new Error("no reply"), null]
          checked++
          const allowed = writes.model.allowed(k)
          if (error === null && allowed.has(value as string | null)) return
          wrong.push(
            `${k} via ${c.nodes[via]!.id}: ${error?.message ?? JSON.stringify(value)}, ` +
              `allowed ${JSON.stringify([...allowed])}`,
          )
        })
      }
    }
    t.diagnostic(
      `${writes.acknowledged} writes acknowledged, ${writes.failed} failed (indeterminate); ` +
        `${checked} reads checked, the joiner holds ${joinerKeys} keys`,
    )
    assert.deepEqual(wrong.slice(0, 10), [], `${wrong.length} keys read a value not allowed`)
    assert.equal(checked, 2 * KEYS)
    assert.ok(duringChange >= 200, `only ${duringChange} writes acknowledged during the changes`)
    assert.ok(writes.acknowledged >= KEYS + 200)
  })
})
