/**
 * Two nodes of five down, on real processes: what each mode promises (KV-4, KV-5), and that
 * the hints written meanwhile reach their owners, also after the nodes holding them were
 * killed and restarted (HINT-1).
 *
 *  - AP (5 LMDB nodes, N=3, R=W=2): with two owners killed, writes through the other three
 *    succeed (sloppy quorum: substitutes keep hints) and reads return nothing never written;
 *    every hint holder is then killed (SIGKILL) and restarted with the owners: each holder
 *    delivers at least the hints it held (its counters start again at the restart, so it read
 *    them back from its store), every hint is handed off (hints_held 0 everywhere), every
 *    owner's own copy holds its keys' last values, and every read returns them.
 *  - CP (5 nodes, strict quorums): with two nodes killed, each write and read either succeeds
 *    with a value the model allows or fails with the quorum error.
 *
 * Every process is killed in `after`, which node:test runs even when a test fails.
 */
import assert from "node:assert/strict"
import type { Redis } from "ioredis"
import { DhtClient } from "../impl/client/client.ts"
import { NodeId } from "../impl/core/ids.ts"
import * as Ring from "../impl/core/ring.ts"
import { fetchStatus } from "../impl/cli/status.ts"
import { Cluster, connectClient, errorOf, pollUntil, stopAll } from "./helpers/cluster.ts"
import { after, before, describe, test } from "./helpers/test.ts"

const clients: Array<Redis> = []
const KEYS = Array.from({ length: 20 }, (_, i) => `outage:${i}`)
/** The preference lists of the boot ring, as the nodes compute them (N=3, default tokens). */
const ring = Ring.make(
  ["n0", "n1", "n2", "n3", "n4"].map((id) => ({ id: NodeId(id), weight: 1 })),
  Ring.DEFAULT_TOKENS_PER_NODE,
)
const replicasOf = (key: string) => Ring.preferenceList(ring, key, 3).map(String)

/** A stats field of INFO, as a number. */
const stat = async (c: Redis, field: string): Promise<number> => {
  const m = new RegExp(`${field}:(\\d+)`).exec(await c.info("stats"))
  assert.ok(m !== null, `no ${field} in INFO stats`)
  return Number(m[1])
}

describe("e2e: two of five nodes down, in AP and in CP", { timeout: 150_000 }, () => {
  let ap: Cluster | undefined
  let cp: Cluster | undefined
  before(async () => {
    ;[ap, cp] = await Promise.all([
      Cluster.start({ nodes: 5, store: "lmdb", cluster: "e2e-ap" }),
      // A short request timeout: an operation that cannot meet its quorum fails sooner.
      Cluster.start({
        nodes: 5,
        store: "memory",
        cluster: "e2e-cp",
        args: ["--mode", "cp", "--request-timeout-ms", "500"],
      }),
    ])
  })
  after(async () => {
    for (const c of clients) c.disconnect()
    await stopAll([ap, cp])
  })
  const at = (c: Cluster, i: number) => connectClient(c.nodes[i]!.clientPort, clients)

  /** Until the live nodes `live` all see the nodes `down` as down. */
  const suspected = (c: Cluster, live: ReadonlyArray<number>, down: ReadonlyArray<number>) =>
    pollUntil(
      "the live nodes to suspect the killed ones",
      async () => {
        for (const i of live) {
          const report = await fetchStatus({ host: "127.0.0.1", port: c.nodes[i]!.clientPort })
          for (const m of report.members) {
            if (m.reachable === down.includes(Number(m.id.slice(1)))) return false
          }
        }
        return true
      },
      { timeoutMs: 30_000, intervalMs: 250 },
    )

  test("KV-5, HINT-1: AP with two owners killed: writes succeed and reads invent nothing; the hints survive their holders' SIGKILL and restart, reach the owners when they are back, and every read returns the last value", async () => {
    const c = ap!
    const owners = [3, 4]
    const live = [0, 1, 2]
    await Promise.all(owners.map((i) => c.kill(i, "SIGKILL")))
    await suspected(c, live, owners)
    const written = new Map<string, Set<string>>()
    const last = new Map<string, string>()
    let stale = 0
    for (const round of [1, 2]) {
      for (const [i, key] of KEYS.entries()) {
        const value = `${key}=v${round}`
        written.set(key, (written.get(key) ?? new Set()).add(value))
        assert.equal(await at(c, live[i % 3]!).set(key, value), "OK", `${key} round ${round}`)
        last.set(key, value)
        // KV-5: nothing invented (a substitute's copy may be stale, never made up).
        const read = await at(c, live[(i + 1) % 3]!).get(key)
        assert.ok(read !== null && written.get(key)!.has(read), `${key} read ${read}`)
        if (read !== value) stale++
      }
    }
    const held = await Promise.all(live.map((i) => stat(at(c, i), "hints_held")))
    const holders = live.filter((_, j) => held[j]! > 0)
    assert.ok(holders.length > 0, `no substitute holds a hint: ${held}`)
    // HINT-1: the holders crash; they and the owners come back. A holder's counters start
    // again at its restart, so what it delivers from then on it read back from its store.
    await Promise.all(holders.map((i) => c.kill(i, "SIGKILL")))
    await Promise.all([...holders, ...owners].map((i) => c.restart(i)))
    await pollUntil(
      "every hint to be handed off",
      async () => {
        const all = await Promise.all([0, 1, 2, 3, 4].map((i) => stat(at(c, i), "hints_held")))
        return all.every((h) => h === 0)
      },
      { timeoutMs: 30_000, intervalMs: 250 },
    )
    const delivered = await Promise.all(holders.map((i) => stat(at(c, i), "hints_delivered")))
    for (const [j, i] of holders.entries()) {
      const before = held[live.indexOf(i)]!
      assert.ok(delivered[j]! >= before, `n${i} held ${before} hints, delivered ${delivered[j]}`)
    }
    // Each returning owner's own copy (DHT.GET R 1: its own answer comes first) of every key it
    // owns holds the key's last value.
    let owned = 0
    for (const i of owners) {
      const dht = new DhtClient(at(c, i))
      for (const key of KEYS.filter((k) => replicasOf(k).includes(`n${i}`))) {
        assert.deepEqual((await dht.get(key, { r: 1 })).siblings, [last.get(key)], `n${i}: ${key}`)
        owned++
      }
    }
    assert.ok(owned >= 6, `only ${owned} keys owned by the killed nodes`)
    // KV-5: after recovery and handoff, every read returns the last value.
    for (const [i, key] of KEYS.entries()) assert.equal(await at(c, i % 5).get(key), last.get(key))
    console.log(
      `# AP outage: ${KEYS.length * 2} writes, ${stale} stale reads during the outage, ` +
        `hints held ${held} by n${live.join(",n")}, delivered after a restart ${delivered}, ` +
        `${owned} owner copies checked`,
    )
  })

  test("KV-4: CP with two of five nodes killed: each write and read succeeds with a value the model allows, or fails with the quorum error", async () => {
    const c = cp!
    const down = [1, 3]
    const live = [0, 2, 4]
    await Promise.all(down.map((i) => c.kill(i, "SIGKILL")))
    const keys = KEYS.slice(0, 8)
    const seen = { ok: 0, refused: 0, reads: 0 }
    await Promise.all(
      keys.map(async (key, i) => {
        // The model: the last acknowledged value, and any failed write since (indeterminate).
        let allowed = new Set<string | null>([null])
        for (const round of [1, 2]) {
          const value = `${key}=v${round}`
          const error = await errorOf(at(c, live[(i + round) % 3]!).set(key, value))
          if (error === undefined) {
            allowed = new Set([value])
            seen.ok++
          } else {
            assert.match(error, /quorum not met|CP mode/, `${key}: ${error}`)
            allowed.add(value)
            seen.refused++
          }
          let read: string | null | undefined
          const readError = await errorOf(
            at(c, live[(i + round + 1) % 3]!)
              .get(key)
              .then((v) => {
                read = v
              }),
          )
          if (readError !== undefined) {
            assert.match(readError, /quorum not met|CP mode/, `${key}: ${readError}`)
            continue
          }
          seen.reads++
          assert.ok(allowed.has(read ?? null), `${key} read ${read}, allowed ${[...allowed]}`)
          // A successful read settles an indeterminate write either way.
          allowed = new Set([read ?? null])
        }
      }),
    )
    // Strict quorums: a key with two of its three replicas down refuses every write (W=2
    // cannot be met); a key with one down serves every one.
    const downOf = (k: string) => replicasOf(k).filter((r) => down.includes(Number(r.slice(1))))
    const served = keys.filter((k) => downOf(k).length <= 1).length
    console.log(
      `# CP outage: ${JSON.stringify(seen)}, ${served} of ${keys.length} keys keep a quorum`,
    )
    assert.ok(served > 0 && served < keys.length, "the keys do not cover both cases")
    assert.equal(seen.ok, served * 2, "writes acknowledged")
    assert.equal(seen.refused, (keys.length - served) * 2, "writes refused")
    assert.ok(seen.reads >= served * 2, `reads ${seen.reads}`)
  })
})
