/**
 * Reclamation of dead keys on a real cluster (RECLAIM-1, RECLAIM-2), with ioredis against three
 * LMDB nodes (N=3, R=2, W=2) and a short grace: 60 keys written, one node killed with SIGKILL,
 * 50 keys deleted through the two live nodes. While the node is down nothing is reclaimed (a down
 * member holds reclamation back), even long after the grace. Once it is restarted, the cluster
 * reclaims every tombstone on every node (INFO keyspace: keys=10, tombstones=0), no deleted key
 * reads back (a "zombie"), the 10 live keys keep their values, and a key written again after its
 * reclamation reads back on every node.
 *
 * Progress is observed through INFO's keyspace line and DHT.STATUS's `reclaim`, by bounded polls.
 * Every process is killed in `after`, which runs even when the test fails.
 */
import assert from "node:assert/strict"
import { after, before, describe, test } from "./helpers/test.ts"
import { Either } from "effect"
import type { Redis } from "ioredis"
import { parseStatus } from "../impl/wire/status.ts"
import { Cluster, connectClient, pollUntil, stopAll } from "./helpers/cluster.ts"

const KEYS = 60
const DELETED = 50
const GRACE_MS = 2000
const VICTIM = 2

const clients: Array<Redis> = []
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const key = (i: number) => `reclaim:${String(i).padStart(2, "0")}`
const value = (i: number) => `v${i}`

interface Keyspace {
  readonly keys: number
  readonly live: number
  readonly tombstones: number
}

/** INFO keyspace's db0 line: `keys=K,live=L,tombstones=T,expires=0,avg_ttl=0`. */
const keyspace = async (c: Redis): Promise<Keyspace> => {
  const text = await c.info("keyspace")
  const line = /db0:([^\r\n]*)/.exec(text)?.[1]
  assert.ok(line !== undefined, `no db0 line in INFO keyspace:\n${text}`)
  const field = (name: string): number => {
    const m = new RegExp(`(?:^|,)${name}=(\\d+)`).exec(line)
    assert.ok(m !== null, `no ${name}= in "${line}"`)
    return Number(m[1])
  }
  return { keys: field("keys"), live: field("live"), tombstones: field("tombstones") }
}

const show = (k: Keyspace) => `keys=${k.keys},live=${k.live},tombstones=${k.tombstones}`

describe("e2e reclamation on a 3-node LMDB cluster", { timeout: 120_000 }, () => {
  let cluster: Cluster | undefined
  before(async () => {
    cluster = await Cluster.start({
      nodes: 3,
      store: "lmdb",
      n: 3,
      r: 2,
      w: 2,
      args: [
        ...["--tombstone-grace-ms", String(GRACE_MS)],
        ...["--max-message-age-ms", "3000"],
        ...["--max-clock-skew-ms", "100"],
      ],
    })
  })
  after(async () => {
    for (const c of clients) c.disconnect()
    await stopAll([cluster])
  })
  const at = (i: number) => connectClient(cluster!.nodes[i]!.clientPort, clients)

  /** Every node's keyspace and DHT.STATUS `reclaim`, and the nodes' log tails: for failures. */
  const describeNodes = async (nodes: ReadonlyArray<number>): Promise<string> => {
    const parts: Array<string> = []
    for (const i of nodes) {
      const node = cluster!.nodes[i]!
      try {
        const c = at(i)
        const ks = await keyspace(c)
        const stats = await c.info("stats")
        const report = parseStatus(await c.call("DHT.STATUS"))
        const reclaim = Either.isRight(report) ? JSON.stringify(report.right.reclaim) : report.left
        const members = Either.isRight(report)
          ? report.right.members.map((m) => `${m.id}:${m.status}:${m.reachable ? "up" : "down"}`)
          : []
        const counters = ["reaped", "stale_messages_dropped", "hints_held"]
          .map((f) => new RegExp(`${f}:(\\d+)`).exec(stats)?.[0] ?? `${f}:?`)
          .join(" ")
        parts.push(
          `${node.id}: ${show(ks)} ${counters} reclaim=${reclaim} members=${members.join(",")}`,
        )
      } catch (e) {
        parts.push(`${node.id}: did not answer (${e instanceof Error ? e.message : String(e)})`)
      }
      parts.push(`--- ${node.id} log (tail) ---\n${node.log.slice(-3000)}`)
    }
    return parts.join("\n")
  }

  test(`RECLAIM-1, RECLAIM-2, RECLAIM-3: ${DELETED} of ${KEYS} keys deleted while a node is down are reclaimed only after it is back; no zombie reads, and a write after reclamation holds`, async (t) => {
    const c0 = at(0)
    for (let i = 0; i < KEYS; i++) assert.equal(await c0.set(key(i), value(i)), "OK")
    const written = await pollUntil("every node to hold the 60 keys", async () => {
      const all = await Promise.all([0, 1, 2].map((i) => keyspace(at(i))))
      return all.every((k) => k.keys === KEYS) ? all : undefined
    })
    t.diagnostic(`written: ${written.map((k, i) => `n${i} ${show(k)}`).join("; ")}`)

    // --- one node down, 50 keys deleted through the other two --------------------------------
    await cluster!.kill(VICTIM, "SIGKILL")
    const live = [0, 1].map(at)
    for (let i = 0; i < DELETED; i++) {
      assert.equal(await live[i % 2]!.del(key(i)), 1, `DEL ${key(i)} did not answer 1`)
    }
    const deletedAt = Date.now()
    // Longer than the grace, with the node still down: nothing may be reclaimed.
    await sleep(GRACE_MS + 1000)
    // The reaper has made at least one full pass by now (every second): tombstones are counted.
    const held = await pollUntil("the live nodes' reaper to count the tombstones", async () => {
      const all = await Promise.all(live.map(keyspace))
      return all.every((k) => k.tombstones > 0) ? all : undefined
    })
    t.diagnostic(
      `${Date.now() - deletedAt} ms after the deletes, n${VICTIM} down: ` +
        held.map((k, i) => `n${i} ${show(k)}`).join("; "),
    )
    for (const [i, k] of held.entries()) {
      assert.ok(
        k.keys > KEYS - DELETED,
        `n${i} reclaimed while n${VICTIM} was down: ${show(k)}\n${await describeNodes([0, 1])}`,
      )
      assert.equal(k.tombstones, DELETED, `n${i}: ${show(k)}`)
    }

    // --- the node is back: every tombstone is reclaimed everywhere ---------------------------
    const restartedAt = Date.now()
    await cluster!.restart(VICTIM)
    const everyone = [0, 1, 2].map(at)
    let last: ReadonlyArray<Keyspace> = []
    try {
      last = await pollUntil(
        "every node's INFO keyspace to show keys=10 and tombstones=0",
        async () => {
          last = await Promise.all(everyone.map(keyspace))
          return last.every((k) => k.keys === KEYS - DELETED && k.tombstones === 0)
            ? last
            : undefined
        },
        { timeoutMs: 60_000, intervalMs: 250 },
      )
    } catch (e) {
      const seen = last.map((k, i) => `n${i} ${show(k)}`).join("; ")
      throw new Error(
        `${e instanceof Error ? e.message : String(e)}; last seen: ${seen}\n` +
          (await describeNodes([0, 1, 2])),
      )
    }
    t.diagnostic(
      `reclaimed ${Date.now() - restartedAt} ms after n${VICTIM} restarted: ` +
        last.map((k, i) => `n${i} ${show(k)}`).join("; "),
    )
    const reports = await Promise.all(everyone.map(async (c) => c.call("DHT.STATUS")))
    const reaped = reports.map((r) => {
      const decoded = parseStatus(r)
      assert.ok(Either.isRight(decoded), Either.isLeft(decoded) ? decoded.left : "")
      return decoded.right.reclaim?.reaped ?? -1
    })
    t.diagnostic(`keys reaped per node (DHT.STATUS reclaim.reaped): ${reaped.join(", ")}`)
    for (const [i, n] of reaped.entries()) assert.equal(n, DELETED, `n${i} reaped ${n}`)

    // --- every key through every node: deleted ones nil, live ones their value ---------------
    let zombies = 0
    let checked = 0
    for (const [n, c] of everyone.entries()) {
      for (let i = 0; i < KEYS; i++) {
        const got = await c.get(key(i))
        if (i < DELETED) {
          checked++
          if (got !== null) {
            zombies++
            t.diagnostic(`zombie: ${key(i)} read ${JSON.stringify(got)} through n${n}`)
          }
        } else {
          assert.equal(got, value(i), `${key(i)} through n${n}`)
        }
      }
    }
    t.diagnostic(
      `zombie reads: ${zombies} of ${checked} reads of deleted keys; ` +
        `${(KEYS - DELETED) * everyone.length} reads of live keys returned their values`,
    )
    assert.equal(zombies, 0, `${zombies} deleted keys read back`)

    // --- a write after reclamation is neither lost nor hidden --------------------------------
    const again = key(7)
    assert.equal(await everyone[1]!.set(again, "again"), "OK")
    for (const [n, c] of everyone.entries()) {
      assert.equal(await c.get(again), "again", `${again} written again, read through n${n}`)
    }
    const rewritten = await pollUntil(
      "every node to store the key written again",
      async () => {
        const all = await Promise.all(everyone.map(keyspace))
        return all.every((k) => k.keys === KEYS - DELETED + 1 && k.live === k.keys)
          ? all
          : undefined
      },
      { timeoutMs: 15_000 },
    )
    t.diagnostic(`after the write again: ${rewritten.map((k, i) => `n${i} ${show(k)}`).join("; ")}`)
  })
})
