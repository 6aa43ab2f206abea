/**
 * KV-7 end to end: a forwarded write runs on one coordinator at a time. Four real `dht node`
 * processes (n0..n3, N=3, R=W=2); every key written here has n0 first in its preference list
 * and n3 outside it, so n3 forwards it, to n0 first.
 *
 * The slow replica. Every node listens on 127.0.0.1 but advertises 127.0.0.3, where this test
 * relays each peer connection to the node it was opened to (connections are one-way: a node
 * sends only on the connections it opened, and names itself in their first frame, Hello). The
 * relay delays what n0 sends, everything alike: its answers and its heartbeats. This is a
 * per-link delay in user space, as `tc netem` would add in the kernel (sch_netem is missing
 * on the machine these tests were written on, and the relay needs no root). A delay of
 * SLOW_MS is longer than the forwarder's forward timeout, so n3's timer finds n0 silent, with
 * no replica holding the grant, before the claim arrives; and shorter than the silence the
 * failure detector tolerates whatever its history (FD-2), while heartbeats, delayed alike,
 * keep arriving at their usual interval. So n0 is slow and believed up, and n3 must wait for it:
 * n0 is the only node that coordinates these writes (its `puts` grow by one per write, the other
 * replicas' by none), n3 refuses no claim (a second coordinator's claim, or n0's after a
 * failover, would be refused), each write is acknowledged once, and after each of the two
 * writes of a key every node reads one sibling whose clock is a single dot of n0's, the second
 * above the first (dots count from the write's hybrid timestamp, impl/core/version.ts).
 *
 * Negative control: n0's messages are delayed DEAD_MS, longer than the detector's suspicion
 * delay. n3 now judges n0 down while it waits, and fails over to the next replica, which claims
 * the write and is granted it; n0's claim, arriving long after, is refused (KV-9: the grant keeps
 * the write single). Each write is acknowledged once, coordinated by a replica other than n0,
 * and each key holds one sibling with that replica's single dot.
 */
import assert from "node:assert/strict"
import * as net from "node:net"
import { Either } from "effect"
import type { Redis } from "ioredis"
import { fetchStatus, type StatusReport } from "../impl/cli/status.ts"
import { DhtClient } from "../impl/client/client.ts"
import { NodeId } from "../impl/core/ids.ts"
import * as Node from "../impl/core/node.ts"
import * as Phi from "../impl/core/phi.ts"
import * as Ring from "../impl/core/ring.ts"
import * as Context from "../impl/wire/context.ts"
import { FrameDecoder } from "../impl/wire/frame.ts"
import { decodeHello } from "../impl/wire/schema.ts"
import { Cluster, connectClient, pollUntil, stopAll } from "./helpers/cluster.ts"
import { after, describe, test } from "./helpers/test.ts"

const LOOPBACK = "127.0.0.1"
const RELAY_HOST = "127.0.0.3"
const SECRET = "kv7-e2e"
const SLOW = "n0"
const FORWARDER = 3
const KEYS = 8
const NEGATIVE_KEYS = 4

/** The nodes' failure detector, configured as impl/core/node.ts `init` configures it. */
const heartbeatMs = Node.defaults.heartbeatMs
const detector = Phi.make({
  minStdDevMs: Math.max(50, heartbeatMs / 2),
  firstHeartbeatEstimateMs: heartbeatMs,
  maxSampleIntervalMs: heartbeatMs * 4,
}).config
const forwardTimeoutMs = Node.defaults.forwardTimeoutMs
/**
 * Longer than the forward timeout (500 ms): n0's claim reaches n3 only after it, so n3's timer
 * finds n0 silent with no replica holding the grant, and must wait. With a heartbeat interval
 * (250 ms) it stays far short of any silence the detector could suspect (FD-2: about 2.3 s),
 * leaving more than a second for a loaded machine's event-loop lag (at 1.2 s, a CI run under
 * the full suite once saw n3 give the write to n2).
 */
const SLOW_MS = 800
/** Far longer than the detector's suspicion delay for heartbeats at their usual interval. */
const DEAD_MS = 15_000
/** n0 coordinates a write in about two delays (claim and read, then replicate): room for it. */
const REQUEST_TIMEOUT_MS = 8000

// ---------------------------------------------------------------------------------------------
// The relay: peer connections through this process, what a node sends delayed as set

class Relay {
  private readonly servers: Array<net.Server> = []
  private readonly sockets = new Set<net.Socket>()
  /** Delay of every byte a node sends (by its id), from now on; 0 when absent. */
  readonly delayOf = new Map<string, number>()
  /** Chunks waiting for their release time, and chunks delayed so far. */
  waiting = 0
  delayed = 0

  /** Listen at RELAY_HOST:port and relay every connection to LOOPBACK:port. */
  async add(port: number): Promise<void> {
    const server = net.createServer((down) => this.relay(down, port))
    this.servers.push(server)
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject)
      server.listen(port, RELAY_HOST, () => resolve())
    })
  }

  private relay(down: net.Socket, port: number): void {
    const up = net.connect({ host: LOOPBACK, port })
    for (const s of [down, up]) {
      this.sockets.add(s)
      s.on("close", () => this.sockets.delete(s))
      s.on("error", () => {})
    }
    const closeBoth = () => {
      down.destroy()
      up.destroy()
    }
    up.on("close", closeBoth)
    up.on("data", (chunk) => down.write(chunk))
    // In order: a chunk never overtakes an earlier one, whatever the delays were when each came.
    const queue: Array<{ readonly at: number; readonly chunk: Buffer | undefined }> = []
    let timer: NodeJS.Timeout | undefined
    let last = 0
    const drain = () => {
      timer = undefined
      const now = Date.now()
      while (queue.length > 0 && queue[0]!.at <= now) {
        const { chunk } = queue.shift()!
        this.waiting--
        if (chunk === undefined) closeBoth()
        else up.write(chunk)
      }
      if (queue.length > 0) timer = setTimeout(drain, queue[0]!.at - now)
    }
    const enqueue = (chunk: Buffer | undefined) => {
      const delay = from === undefined ? 0 : (this.delayOf.get(from) ?? 0)
      if (delay > 0) this.delayed++
      last = Math.max(last, Date.now() + delay)
      queue.push({ at: last, chunk })
      this.waiting++
      if (timer === undefined) timer = setTimeout(drain, queue[0]!.at - Date.now())
    }
    // The sender names itself in the connection's first frame.
    let from: string | undefined
    const decoder = new FrameDecoder()
    down.on("data", (chunk: Buffer) => {
      if (from === undefined) {
        const [first] = decoder.push(chunk).frames
        if (first !== undefined) {
          const hello = decodeHello(first)
          from = Either.isRight(hello) ? hello.right.from : "?"
        }
      }
      enqueue(chunk)
    })
    down.on("close", () => enqueue(undefined))
  }

  close(): void {
    for (const s of this.sockets) s.destroy()
    for (const server of this.servers) server.close()
  }
}

// ---------------------------------------------------------------------------------------------

/** The boot ring of n0..n3, as every node computes it. */
const ring = Ring.make(
  ["n0", "n1", "n2", "n3"].map((id) => ({ id: NodeId(id), weight: 1 })),
  Node.defaults.tokensPerNode,
)

/** `count` keys with n0 first in their preference list and n3 outside it; their replicas. */
const keysFor = (tag: string, count: number) => {
  const out: Array<{ readonly key: string; readonly replicas: ReadonlyArray<string> }> = []
  for (let i = 0; out.length < count; i++) {
    const key = `kv7:${tag}:${i}`
    const replicas = Ring.preferenceList(ring, key, 3)
    if (replicas[0] === SLOW && !replicas.includes(NodeId(`n${FORWARDER}`))) {
      out.push({ key, replicas })
    }
  }
  return out
}

const clients: Array<Redis> = []
const clusters: Array<Cluster> = []
const relays: Array<Relay> = []

const statusOf = (c: Cluster, i: number): Promise<StatusReport> =>
  fetchStatus({ host: LOOPBACK, port: c.nodes[i]!.clientPort }, 5000)

/** Each node's counter `name` (DHT.STATUS stats), by node id. */
const counters = async (c: Cluster, name: string): Promise<Map<string, number>> =>
  new Map(
    await Promise.all(
      c.nodes.map(async (n, i) => [n.id, Number((await statusOf(c, i)).stats[name])] as const),
    ),
  )

/** How much each node's counter grew since `before`. */
const grown = (before: Map<string, number>, now: Map<string, number>): Map<string, number> =>
  new Map([...now].map(([id, v]) => [id, v - (before.get(id) ?? 0)]))

/** Every node sees every member up and reachable. */
const allReachable = async (c: Cluster): Promise<boolean> => {
  const reports = await Promise.all(c.nodes.map((_, i) => statusOf(c, i)))
  return reports.every(
    (r) => r.members.length === c.nodes.length && r.members.every((m) => m.reachable),
  )
}

/** SET every key to `value(key)` through the forwarder at once; each reply and its latency. */
const writeAll = async (c: Cluster, keys: ReadonlyArray<string>, value: (k: string) => string) => {
  const via = connectClient(c.nodes[FORWARDER]!.clientPort, clients, 30_000)
  return Promise.all(
    keys.map(async (key) => {
      const started = Date.now()
      const reply = await via.set(key, value(key)).catch((e: Error) => `error: ${e.message}`)
      return { key, reply, ms: Date.now() - started }
    }),
  )
}

/** DHT.GET of `key` through every node: the siblings, and the clock of the context. */
const readEverywhere = (c: Cluster, key: string) =>
  Promise.all(
    c.nodes.map(async (n) => {
      const read = await new DhtClient(connectClient(n.clientPort, clients, 30_000))
        .get(key)
        .catch((e: Error) => assert.fail(`DHT.GET ${key} through ${n.id}: ${e.message}`))
      const clock = Context.decode(read.context, SECRET)
      assert.ok(!(clock instanceof Context.ContextError), `context of ${key}: ${clock}`)
      return {
        via: n.id,
        siblings: read.siblings,
        clock: clock as ReadonlyArray<readonly [string, number]>,
      }
    }),
  )

describe("e2e KV-7: a forwarder waits for a slow coordinator it believes up", {
  timeout: 300_000,
}, () => {
  after(async () => {
    for (const r of relays) r.close()
    for (const client of clients) client.disconnect()
    await stopAll(clusters)
  })

  test(`KV-7: n0's messages delayed ${SLOW_MS} ms (heartbeats too): ${KEYS} keys written twice through a non-replica run on n0 alone, once each, one sibling with n0's single dot; negative control at ${DEAD_MS} ms fails over and the grant keeps each write single (KV-9)`, async (t) => {
    assert.ok(SLOW_MS > forwardTimeoutMs, "the delay must outlast the forward timeout")
    assert.ok(
      SLOW_MS < Phi.safeSilenceMs(detector),
      `a ${SLOW_MS} ms silence must never be suspected (FD-2: ${Phi.safeSilenceMs(detector)} ms)`,
    )
    assert.ok(DEAD_MS > 2 * Phi.suspicionDelayMs(detector, heartbeatMs))
    const c = await Cluster.start({
      nodes: 4,
      store: "memory",
      n: 3,
      r: 2,
      w: 2,
      peerHost: RELAY_HOST,
      readyTimeoutMs: 60_000,
      args: ["--secret", SECRET, "--request-timeout-ms", String(REQUEST_TIMEOUT_MS)],
    })
    clusters.push(c)
    const relay = new Relay()
    relays.push(relay)
    for (const n of c.nodes) await relay.add(n.peerPort)
    await pollUntil(
      "every node to see every member reachable through the relay",
      () => allReachable(c),
      { timeoutMs: 60_000 },
    )

    // --- n0 slow, believed up: n3 waits for it ------------------------------------------------
    const slowKeys = keysFor("slow", KEYS)
    const keys = slowKeys.map((k) => k.key)
    const others = new Set(slowKeys.flatMap((k) => k.replicas.slice(1)))
    const puts0 = await counters(c, "puts")
    const refused0 = await counters(c, "claimsRefused")
    const forwarded0 = await counters(c, "forwarded")
    const failures0 = await counters(c, "failures")
    relay.delayOf.set(SLOW, SLOW_MS)
    // Meanwhile, how n3 judges n0 (its routing failure detector, as DHT.STATUS reports it).
    let sampling = true
    const samples = { reachable: 0, unreachable: 0 }
    const sampler = (async () => {
      while (sampling) {
        const r = await statusOf(c, FORWARDER).catch(() => undefined)
        const m = r?.members.find((x) => x.id === SLOW)
        if (m !== undefined) samples[m.reachable ? "reachable" : "unreachable"]++
        await new Promise((resolve) => setTimeout(resolve, 200))
      }
    })()
    // After each round every node reads one sibling per key, whose clock is one dot of n0's
    // (a second coordinator would add its own dot); the second write's dot is above the first's.
    const writes: Array<{ readonly key: string; readonly reply: string; readonly ms: number }> = []
    const dots = new Map<string, number>()
    let reads = 0
    try {
      for (const round of [1, 2]) {
        writes.push(...(await writeAll(c, keys, (k) => `${k}:v${round}`)))
        for (const key of keys) {
          for (const r of await readEverywhere(c, key)) {
            assert.deepEqual(r.siblings, [`${key}:v${round}`], `${key} through ${r.via}`)
            const at = `${key} through ${r.via} after write ${round}: ${JSON.stringify(r.clock)}`
            assert.equal(r.clock.length, 1, `${at}: not a single dot`)
            const [actor, counter] = r.clock[0]!
            assert.equal(
              actor,
              SLOW,
              `${at}: not n0's dot (n3's view of n0 so far: ${JSON.stringify(samples)})`,
            )
            if (round === 1) dots.set(key, counter)
            else assert.ok(counter > dots.get(key)!, `${at}: not above ${dots.get(key)}`)
            reads++
          }
        }
      }
    } finally {
      sampling = false
      await sampler
    }
    assert.equal(reads, 2 * KEYS * c.nodes.length)
    assert.deepEqual(
      writes.filter((w) => w.reply !== "OK"),
      [],
      "every write through the forwarder is acknowledged",
    )
    // The delay is in effect: no write could be answered before n0's messages came through.
    const quick = writes.filter((w) => w.ms < SLOW_MS)
    assert.deepEqual(quick, [], "writes answered before n0's delayed answer could arrive")
    assert.equal(samples.unreachable, 0, `n3 judged n0 down while it was only slow`)
    assert.ok(samples.reachable >= 10, `only ${samples.reachable} samples of n3's view of n0`)
    const puts = grown(puts0, await counters(c, "puts"))
    const refused = grown(refused0, await counters(c, "claimsRefused"))
    const forwarded = grown(forwarded0, await counters(c, "forwarded"))
    const failures = grown(failures0, await counters(c, "failures"))
    t.diagnostic(
      `slow phase: ${writes.length} writes, latency ${Math.min(...writes.map((w) => w.ms))}..` +
        `${Math.max(...writes.map((w) => w.ms))} ms; ${reads} reads; puts ${JSON.stringify([...puts])}; ` +
        `n3 saw n0 reachable in ${samples.reachable} of ${samples.reachable + samples.unreachable} samples; ` +
        `relay delayed ${relay.delayed} chunks`,
    )
    assert.equal(forwarded.get("n3"), writes.length, "n3 forwarded each write once")
    assert.equal(puts.get(SLOW), writes.length, "n0 coordinated each write once")
    for (const id of others) assert.equal(puts.get(id), 0, `${id} coordinated a forwarded write`)
    assert.equal(refused.get("n3"), 0, "n3 refused a claim: a second coordinator tried the write")
    assert.equal(failures.get("n3"), 0, "a forwarded write failed")
    relay.delayOf.set(SLOW, 0)

    // --- negative control: n0 silent past the detector's bound: n3 fails over, the grant holds --
    await pollUntil(
      "the relay to deliver what it delayed, and every member to be reachable",
      async () => relay.waiting === 0 && (await allReachable(c)),
      { timeoutMs: 60_000 },
    )
    const deadKeys = keysFor("dead", NEGATIVE_KEYS).map((k) => k.key)
    const before = {
      puts: await counters(c, "puts"),
      refused: await counters(c, "claimsRefused"),
      failures: await counters(c, "failures"),
    }
    relay.delayOf.set(SLOW, DEAD_MS)
    const failover = await writeAll(c, deadKeys, (k) => `${k}:v1`)
    assert.deepEqual(
      failover.filter((w) => w.reply !== "OK"),
      [],
      "every write through the forwarder is acknowledged after a failover",
    )
    // n0's claims reach n3 once their delay is over: each is refused.
    const refusedAfter = await pollUntil(
      "n0's late claims to reach n3",
      async () => {
        const r = grown(before.refused, await counters(c, "claimsRefused"))
        return (r.get("n3") ?? 0) >= NEGATIVE_KEYS && r
      },
      { timeoutMs: DEAD_MS + 30_000, intervalMs: 500 },
    )
    relay.delayOf.set(SLOW, 0)
    const deadPuts = grown(before.puts, await counters(c, "puts"))
    t.diagnostic(
      `negative control: ${failover.length} writes, latency ` +
        `${Math.min(...failover.map((w) => w.ms))}..${Math.max(...failover.map((w) => w.ms))} ms; ` +
        `puts ${JSON.stringify([...deadPuts])}; claims refused ${JSON.stringify([...refusedAfter])}`,
    )
    assert.equal(refusedAfter.get("n3"), NEGATIVE_KEYS, "one refused claim per write (n0's)")
    assert.equal(deadPuts.get(SLOW), NEGATIVE_KEYS, "n0 started each write (and was refused)")
    const elsewhere = [...deadPuts].filter(([id]) => id !== SLOW).reduce((a, [, v]) => a + v, 0)
    assert.equal(elsewhere, NEGATIVE_KEYS, "another replica coordinated each write once")
    assert.equal(grown(before.failures, await counters(c, "failures")).get("n3"), 0)
    // Heartbeats resume before the backlog behind them is through: wait for both.
    await pollUntil(
      "the relay to deliver n0's backlog, and n0 to be reachable again everywhere",
      async () => relay.waiting === 0 && (await allReachable(c)),
      { timeoutMs: DEAD_MS + 30_000 },
    )
    let failedOver = 0
    for (const key of deadKeys) {
      for (const r of await readEverywhere(c, key)) {
        assert.deepEqual(r.siblings, [`${key}:v1`], `${key} through ${r.via}`)
        assert.equal(r.clock.length, 1, `${key} through ${r.via}: ${JSON.stringify(r.clock)}`)
        const [actor] = r.clock[0]!
        assert.notEqual(actor, SLOW, `${key} through ${r.via}: n0's dot, yet n0 was refused`)
        failedOver++
      }
    }
    assert.equal(failedOver, NEGATIVE_KEYS * c.nodes.length)
  })
})
