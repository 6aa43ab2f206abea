/**
 * Partitions across real processes on separate network hosts (Linux network namespaces, see
 * helpers/netns.ts): the cluster network is cut in two while clients still reach every node.
 *
 * PART-3, CP: the minority node refuses writes with the CP error, the majority accepts them,
 * and after the heal the minority serves the majority's writes.
 * PART-4, AP: both halves of a 4-node cluster accept writes (sloppy quorum); after the heal
 * every write is readable everywhere, and two concurrent writes of one key made on the two
 * sides survive as siblings.
 * These are PART-1 and PART-2 (checked on the machines and in the simulator) on real hosts, and
 * their tests say so.
 */
import assert from "node:assert/strict"
import { after, test } from "./helpers/test.ts"
import type { Redis } from "ioredis"
import { fetchStatus } from "../impl/cli/status.ts"
import { DhtClient } from "../impl/client/client.ts"
import { connectClient, errorOf, pollUntil } from "./helpers/cluster.ts"
import { NetnsCluster } from "./helpers/netns.ts"

const registry: Array<Redis> = []
const started: Array<NetnsCluster> = []

after(async () => {
  for (const c of registry) c.disconnect()
  await Promise.all(started.map((c) => c.destroy()))
})

const clientOf = (cluster: NetnsCluster) => {
  const clients = new Map<number, Redis>()
  return (i: number): Redis => {
    let c = clients.get(i)
    if (c === undefined || c.status === "end") {
      const node = cluster.nodes[i]!
      c = connectClient(node.clientPort, registry, 15_000, node.clientIp)
      clients.set(i, c)
    }
    return c
  }
}

test("PART-1, PART-3: CP across network namespaces: the cut-off node refuses writes, the majority accepts them, and the minority catches up after the heal", async () => {
  const cluster = await NetnsCluster.start(3, ["--mode", "cp"])
  started.push(cluster)
  const client = clientOf(cluster)
  assert.equal(await client(0).set("before", "1"), "OK")
  assert.equal(await client(2).get("before"), "1")

  cluster.partition([2])
  // Until the failure detector suspects its peers, n2 may still try (and time out); then it
  // must refuse at once, with the CP error.
  const refusal = await pollUntil(
    "n2 to refuse writes as a partitioned minority",
    async () => {
      const error = await errorOf(client(2).set("minority", "x"))
      return error !== undefined && /CP mode: this node sees 1 of 3 members/.test(error) && error
    },
    { timeoutMs: 30_000, intervalMs: 500 },
  )
  assert.match(refusal, /writes need a majority/)
  // The majority side has W=2 of every key's replicas: it accepts every write.
  for (let i = 0; i < 20; i++) {
    assert.equal(await client(i % 2).set(`during:${i}`, `v${i}`), "OK")
  }

  cluster.heal()
  await pollUntil(
    "n2 to accept writes again after the heal",
    async () => (await errorOf(client(2).set("after", "y"))) === undefined,
    { timeoutMs: 30_000, intervalMs: 500 },
  )
  for (let i = 0; i < 20; i++) assert.equal(await client(2).get(`during:${i}`), `v${i}`)
  assert.equal(await client(2).get("minority"), null, "the refused write took effect")
})

test("PART-2, PART-4, CTR-1: AP across network namespaces: both halves accept writes and every write is everywhere after the heal, concurrent ones as siblings, and increments made on both sides add up", async () => {
  const cluster = await NetnsCluster.start(4, ["--mode", "ap"])
  started.push(cluster)
  const client = clientOf(cluster)
  assert.equal(await client(0).set("before", "1"), "OK")
  assert.equal(await client(0).incrby("hits", 5), 5)

  cluster.partition([2, 3])
  // Wait until every node believes the other side down and its own side up (the failure
  // detector's bound): from then on sloppy quorum routes every write to substitutes at once.
  await pollUntil(
    "each side to see the other as down",
    async () => {
      for (const [i, node] of cluster.nodes.entries()) {
        const report = await fetchStatus({ host: node.clientIp, port: node.clientPort })
        for (const m of report.members) {
          const sameSide = i < 2 === ["n0", "n1"].includes(m.id)
          if (m.reachable !== sameSide) return false
        }
      }
      return true
    },
    { timeoutMs: 60_000, intervalMs: 500 },
  )
  for (let i = 0; i < 20; i++) {
    assert.equal(await client(i % 2).set(`left:${i}`, `l${i}`), "OK", `left:${i}`)
    assert.equal(await client(2 + (i % 2)).set(`right:${i}`, `r${i}`), "OK", `right:${i}`)
  }
  // One key written on both sides, with no context: concurrent, so both must survive.
  await new DhtClient(client(0)).put("contested", "from-left")
  await new DhtClient(client(3)).put("contested", "from-right")
  // Both sides count the same key: every increment must survive the heal (CTR-1).
  let left = 0
  let right = 0
  for (let i = 0; i < 10; i++) left = await client(i % 2).incr("hits")
  for (let i = 0; i < 7; i++) right = await client(2 + (i % 2)).incr("hits")
  assert.equal(await client(3).decrby("hits", 2), right - 2)
  assert.equal(left, 15, "the left side counts its own increments")
  assert.equal(right, 12, "the right side counts its own increments")

  cluster.heal()
  await pollUntil(
    "every write to be readable on the other side",
    async () => {
      for (let i = 0; i < 20; i++) {
        if ((await client(3).get(`left:${i}`)) !== `l${i}`) return false
        if ((await client(0).get(`right:${i}`)) !== `r${i}`) return false
      }
      return true
    },
    { timeoutMs: 60_000, intervalMs: 500 },
  )
  const contested = await pollUntil(
    "both concurrent writes to be siblings",
    async () => {
      const read = await new DhtClient(client(1)).get("contested")
      return read.siblings.length === 2 && read
    },
    { timeoutMs: 60_000, intervalMs: 500 },
  )
  assert.deepEqual([...contested.siblings].sort(), ["from-left", "from-right"])
  // 5 before, 10 on the left, 7 - 2 on the right: the healed cluster holds the sum everywhere.
  await pollUntil(
    "every node to read the sum of both sides' increments",
    async () => {
      for (const i of [0, 1, 2, 3]) if ((await client(i).get("hits")) !== "20") return false
      return true
    },
    { timeoutMs: 60_000, intervalMs: 500 },
  )
  assert.equal(await client(1).incr("hits"), 21)
})
