/**
 * End to end under Chord routing: 16 real node processes (LMDB stores) started with
 * `--routing chord`, each knowing only three seeds. The suite walks the ring the way
 * `dht status` does, checks that no node holds the membership, talks to the cluster with
 * ioredis exactly as to a one-hop cluster (SET/GET/MGET/DEL, DHT.PUT with contexts), kills a
 * node with SIGKILL, keeps reading and writing, restarts it, and has another node leave.
 */
import assert from "node:assert/strict"
import { after, before, test } from "./helpers/test.ts"
import type { Redis } from "ioredis"
import { type ChordWalk, walkChord } from "../impl/cli/status.ts"
import { DhtClient } from "../impl/client/client.ts"
import { Cluster, connectClient, pollUntil, stopAll } from "./helpers/cluster.ts"

const NODES = 16
const KEYS = 400
let cluster: Cluster | undefined
const registry: Array<Redis> = []
const clients = new Map<number, Redis>()

const client = (i: number): Redis => {
  const port = cluster!.nodes[i]!.clientPort
  let c = clients.get(port)
  if (c === undefined || c.status === "end") {
    c = connectClient(port, registry)
    clients.set(port, c)
  }
  return c
}

const target = (i: number) => ({ host: "127.0.0.1", port: cluster!.nodes[i]!.clientPort })

/** Walk first successors from node `from` until the ring closes over `size` nodes. */
const ringOf = (from: number, size: number, timeoutMs = 90_000): Promise<ChordWalk> =>
  pollUntil(
    `a closed Chord ring of ${size} nodes`,
    async () => {
      const walk = await walkChord(target(from), NODES + 2)
      return walk.ok && walk.reports.length === size ? walk : undefined
    },
    { timeoutMs, intervalMs: 500 },
  )

/** Run `op` until it succeeds, as a client would while the ring heals (bounded). */
const retrying = async <A>(what: string, op: () => Promise<A>): Promise<A> => {
  let last: unknown
  for (let attempt = 0; attempt < 20; attempt++) {
    try {
      return await op()
    } catch (e) {
      last = e
      await new Promise((r) => setTimeout(r, 500))
    }
  }
  throw new Error(`${what}: ${last instanceof Error ? last.message : String(last)}`)
}

const key = (i: number) => `chord:${i}`

before(async () => {
  cluster = await Cluster.start({ nodes: NODES, routing: "chord", readyTimeoutMs: 180_000 })
})

after(async () => {
  for (const c of registry) c.disconnect()
  await stopAll([cluster])
})

test("e2e chord: 16 processes form one ring, each with O(log N) routing state and no membership", async () => {
  const walk = await ringOf(0, NODES, 180_000)
  const ids = new Set(walk.reports.map((r) => r.self))
  assert.equal(ids.size, NODES, "every node is on the ring once")
  for (const r of walk.reports) {
    assert.equal(r.routing, "chord")
    assert.equal(r.chord?.status, "Active", `${r.self} is ${r.chord?.status}`)
    assert.ok(
      r.chord!.tablePeers < NODES - 1,
      `${r.self} routes with ${r.chord!.tablePeers} peers: that is the whole cluster`,
    )
    assert.ok(
      r.members.every((m) => m.id === r.self),
      `${r.self} keeps a membership view: ${r.members.map((m) => m.id)}`,
    )
  }
})

test("e2e chord: ioredis reads, writes and deletes through any node, as in one-hop mode", async () => {
  for (let start = 0; start < KEYS; start += 100) {
    const node = (start / 100) % NODES
    const pipeline = client(node).pipeline()
    for (let i = start; i < start + 100; i++) pipeline.set(key(i), `v${i}`)
    const results = await pipeline.exec()
    for (const [err, reply] of results ?? []) assert.equal(err ?? reply, "OK")
  }
  for (let i = 0; i < KEYS; i += 7) {
    assert.equal(await client((i * 5 + 3) % NODES).get(key(i)), `v${i}`, key(i))
  }
  const many = await client(9).mget(key(1), key(2), "chord:absent")
  assert.deepEqual(many, ["v1", "v2", null])
  assert.equal(await client(4).del(key(3)), 1)
  assert.equal(await client(11).get(key(3)), null)
  // Causal contexts work as under ring routing: a context-less DHT.PUT, then one with the
  // returned context, supersedes it (no sibling).
  const context = await new DhtClient(client(2)).put("doc", "a")
  await new DhtClient(client(13)).put("doc", "b", { context })
  const read = await new DhtClient(client(7)).get("doc")
  assert.deepEqual(read.siblings, ["b"])
  // Lookups went through the ring, in O(log N) hops.
  const walk = await walkChord(target(0), NODES + 2)
  const lookups = walk.reports.reduce((n, r) => n + (r.chord?.lookups ?? 0), 0)
  const maxHops = Math.max(...walk.reports.map((r) => r.chord?.maxHops ?? 0))
  assert.ok(lookups >= KEYS, `only ${lookups} lookups`)
  assert.ok(maxHops <= 2 * Math.log2(NODES), `a lookup took ${maxHops} hops`)
})

test("e2e chord: with a node killed (SIGKILL) every key stays readable and writable; it rejoins", async () => {
  const victim = 5
  await cluster!.kill(victim)
  for (let i = 0; i < KEYS; i += 3) {
    if (i === 3) continue
    const value = await retrying(`GET ${key(i)}`, () =>
      client((i + 1) % NODES === victim ? 0 : (i + 1) % NODES).get(key(i)),
    )
    assert.equal(value, `v${i}`, key(i))
  }
  for (let i = 0; i < 50; i++) {
    const at = i % NODES === victim ? 0 : i % NODES
    assert.equal(
      await retrying(`SET after kill ${i}`, () => client(at).set(`after:${i}`, `w${i}`)),
      "OK",
    )
  }
  await ringOf(0, NODES - 1)
  await cluster!.restart(victim)
  await ringOf(0, NODES)
  for (let i = 0; i < 50; i++) {
    assert.equal(await retrying(`GET after:${i}`, () => client(victim).get(`after:${i}`)), `w${i}`)
  }
  for (let i = 0; i < KEYS; i += 11) {
    if (i === 3) continue
    assert.equal(await client(victim).get(key(i)), `v${i}`, key(i))
  }
})

test("e2e chord: a node that leaves (DHT.LEAVE) hands its arc over and stops; the ring closes without it and every key stays readable", async () => {
  const leaver = 9
  const reply = await client(leaver).call("DHT.LEAVE")
  assert.match(String(reply), /leaving/)
  const child = cluster!.nodes[leaver]!.process
  await pollUntil(`${cluster!.nodes[leaver]!.id} to stop`, () => child.exitCode !== null, {
    timeoutMs: 30_000,
  })
  await ringOf(0, NODES - 1)
  for (let i = 0; i < KEYS; i += 5) {
    if (i === 3) continue
    const at = i % NODES === leaver ? 0 : i % NODES
    assert.equal(await retrying(`GET ${key(i)}`, () => client(at).get(key(i))), `v${i}`, key(i))
  }
})
