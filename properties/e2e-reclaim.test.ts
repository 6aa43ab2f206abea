/**
 * Reclamation of dead keys on a real cluster (RECLAIM-1, RECLAIM-2), with ioredis against three
 * LMDB nodes (N=3, R=2, W=2) and a short grace: 60 keys written, one node killed with SIGKILL,
 * 50 keys deleted through the two live nodes. While the node is down nothing is reclaimed (a down
 * member holds reclamation back), even long after the grace. Once it is restarted, the cluster
 * reclaims every tombstone on every node (INFO keyspace: keys=10, tombstones=0), no deleted key
 * reads back (a "zombie"), the 10 live keys keep their values, and a key written again after its
 * reclamation reads back on every node. KV-12: reads of deleted keys while the node is down,
 * past the grace, purge nothing (INFO stats purges); with every node up, reads within the grace
 * purge nothing either, and past it they purge (CAUSAL-8: no node reads or holds the purged
 * values again, live keys read beside them keep theirs, and every node's own copy of every key,
 * DHT.GET R 1, converges to the same object).
 *
 * Progress is observed through INFO's keyspace line and DHT.STATUS's `reclaim`, by bounded polls.
 * Every process is killed in `after`, which runs even when the test fails.
 */
import assert from "node:assert/strict"
import { after, before, describe, test } from "./helpers/test.ts"
import { Either } from "effect"
import type { Redis } from "ioredis"
import { DhtClient } from "../impl/client/client.ts"
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

  test(`RECLAIM-1, RECLAIM-2, RECLAIM-3, CAUSAL-8, KV-12: ${DELETED} of ${KEYS} keys deleted while a node is down are reclaimed only after it is back, and no read purges them meanwhile; no zombie reads, a write after reclamation holds, and reads purge tombstones only past their grace, leaving no zombie and every replica the same object`, async (t) => {
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
    const purgesWhileDown = await totalPurges(live)
    for (let i = 0; i < 10; i++) {
      assert.equal(await live[i % 2]!.get(key(i)), null, `${key(i)} after its delete`)
    }
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
    // KV-12: the reads of deleted keys made with a replica down (their deadlines fell after the
    // grace) purged nothing: no read heard every replica.
    assert.equal(await totalPurges(live), purgesWhileDown, "a read purged with a replica down")
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

    // --- CAUSAL-8, KV-12: purges too; no zombie, and every replica converges ----------------
    // Five live keys deleted with every node up. Read at once, within the grace, nothing is
    // purged (KV-12); past the grace, a read that hears all three replicas holding the same
    // tombstone purges it (its value goes, its clock stays). Five other live keys, read beside
    // them, keep their values: only dead objects are purged.
    const all = everyone
    const purged = Array.from({ length: 5 }, (_, j) => key(DELETED + j))
    const kept = Array.from({ length: 5 }, (_, j) => key(DELETED + 5 + j))
    for (const [j, k] of purged.entries()) assert.equal(await all[j % 3]!.del(k), 1)
    const deletedAgainAt = Date.now()
    const reader = new DhtClient(all[0]!)
    const readAll = async (): Promise<void> => {
      for (const k of purged) assert.deepEqual((await reader.get(k, { r: 3 })).siblings, [], k)
      for (const k of kept)
        assert.deepEqual((await reader.get(k, { r: 3 })).siblings, [value(Number(k.slice(-2)))])
    }
    const purgesBefore = await totalPurges(all)
    await readAll()
    if (Date.now() - deletedAgainAt < GRACE_MS) {
      assert.equal(
        await totalPurges(all),
        purgesBefore,
        "a read purged a tombstone within its grace",
      )
    } else t.diagnostic("the reads within the grace took longer than the grace: not judged")
    await sleep(Math.max(0, deletedAgainAt + GRACE_MS + 100 - Date.now()))
    const purges = await pollUntil(
      "reads to purge the five tombstones",
      async () => {
        await readAll()
        const n = (await totalPurges(all)) - purgesBefore
        return n >= purged.length ? n : undefined
      },
      { timeoutMs: 15_000, intervalMs: 100 },
    )
    t.diagnostic(`purges by the reads of the ${purged.length} deleted keys: ${purges}`)
    // CAUSAL-3 through the purges: no node reads a purged key's value back, nor holds it; the
    // live keys read beside them keep their values on every node.
    for (const [n, c] of all.entries()) {
      for (const k of purged) {
        assert.deepEqual(await localSiblings(c, k), [], `n${n} still holds ${k}'s value`)
        assert.equal(await c.get(k), null, `${k} read back through n${n} after its purge`)
      }
      for (const k of kept) {
        assert.deepEqual(await localSiblings(c, k), [value(Number(k.slice(-2)))], `n${n}: ${k}`)
      }
    }
    // CAUSAL-6: every replica of every key ends up holding the same object (its own copy, read
    // with R=1 at each node: the coordinator's own answer comes first).
    const keys = Array.from({ length: KEYS }, (_, i) => key(i))
    const diverged = async (): Promise<Array<string>> => {
      const out: Array<string> = []
      for (const k of keys) {
        const copies = await Promise.all(all.map((c) => localCopy(c, k)))
        if (new Set(copies).size > 1) out.push(`${k}: ${copies.join(" | ")}`)
      }
      return out
    }
    let apart: Array<string> = []
    await pollUntil(
      `every replica of the ${KEYS} keys to hold the same object`,
      async () => {
        apart = await diverged()
        return apart.length === 0
      },
      { timeoutMs: 30_000, intervalMs: 250 },
    ).catch((e: unknown) => {
      throw new Error(`${e instanceof Error ? e.message : String(e)}: ${apart.join("; ")}`)
    })
  })
})

/** The sum of INFO stats `purges` (reads that purged a tombstone) over the nodes. */
const totalPurges = async (nodes: ReadonlyArray<Redis>): Promise<number> => {
  let total = 0
  for (const c of nodes) {
    const m = /purges:(\d+)/.exec(await c.info("stats"))
    assert.ok(m !== null, "no purges in INFO stats")
    total += Number(m[1])
  }
  return total
}

/** A node's own copy of `key`: DHT.GET with R=1 answers with the coordinator's own object. */
const localCopy = async (c: Redis, key: string): Promise<string> => {
  const read = await new DhtClient(c).get(key, { r: 1 })
  return JSON.stringify([read.context, [...read.siblings].sort(), read.deleted])
}

const localSiblings = async (c: Redis, key: string): Promise<ReadonlyArray<string>> =>
  (await new DhtClient(c).get(key, { r: 1 })).siblings
