/**
 * Client latency during a join, against the same load without one: 3 real node processes
 * (LMDB), 20 closed-loop ioredis clients doing GET/SET on random keys for a fixed time, first
 * in steady state, then while a 4th node joins and streams its share of the data in (under the
 * default streaming budget). Prints ops/s and latency percentiles for both phases, then stops
 * every process it started.
 * Run: npx tsx bench/join-p99.ts [--keys 20000] [--seconds 8] [--clients 20]
 */
import { performance } from "node:perf_hooks"
import { Redis } from "ioredis"
import { Cluster, pollUntil, stopAll } from "../properties/helpers/cluster.ts"
import { percentile } from "./lib.ts"

const arg = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? Number(process.argv[i + 1]) : fallback
}
const KEYS = arg("keys", 20_000)
const SECONDS = arg("seconds", 8)
const CLIENTS = arg("clients", 20)

const connect = (port: number): Redis => {
  const c = new Redis({
    host: "127.0.0.1",
    port,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  })
  c.on("error", () => {})
  return c
}

/** Closed-loop load for `seconds`: every client issues its next request when the last returns. */
const load = async (ports: ReadonlyArray<number>, seconds: number) => {
  const clients = Array.from({ length: CLIENTS }, (_, i) => connect(ports[i % ports.length]!))
  const latencies: Array<number> = []
  let errors = 0
  let seed = 12345
  const random = () => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
    return seed / 2 ** 32
  }
  const end = performance.now() + seconds * 1000
  await Promise.all(
    clients.map(async (c) => {
      while (performance.now() < end) {
        const key = `bench:${Math.floor(random() * KEYS)}`
        const t0 = performance.now()
        try {
          if (random() < 0.5) await c.get(key)
          else await c.set(key, `v${Math.floor(random() * 1e9)}`)
          latencies.push(performance.now() - t0)
        } catch {
          errors++
        }
      }
    }),
  )
  for (const c of clients) c.disconnect()
  latencies.sort((a, b) => a - b)
  return {
    ops: latencies.length,
    opsPerSec: latencies.length / seconds,
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
    max: latencies[latencies.length - 1] ?? 0,
    errors,
  }
}

const main = async () => {
  const cluster = await Cluster.start({ nodes: 3, store: "lmdb" })
  try {
    const ports = cluster.nodes.map((n) => n.clientPort)
    const loader = connect(ports[0]!)
    for (let start = 0; start < KEYS; start += 1000) {
      const p = loader.pipeline()
      for (let i = start; i < Math.min(KEYS, start + 1000); i++) p.set(`bench:${i}`, `v${i}`)
      await p.exec()
    }
    loader.disconnect()
    console.error(`loaded ${KEYS} keys; measuring steady state for ${SECONDS} s …`)
    const steady = await load(ports, SECONDS)
    console.error("starting a 4th node (joining) and measuring during its streaming …")
    const joinedAt = performance.now()
    const joining = cluster.join()
    const during = await load(ports, SECONDS)
    const joiner = await joining
    const status = connect(cluster.nodes[joiner]!.clientPort)
    await pollUntil(
      "the joiner to be up",
      async () => {
        const s = JSON.parse((await status.call("DHT.STATUS")) as string)
        return s.members.find((m: { id: string }) => m.id === s.self)?.status === "up"
      },
      { timeoutMs: 300_000 },
    )
    const joinSeconds = (performance.now() - joinedAt) / 1000
    const keysOnJoiner = JSON.parse((await status.call("DHT.STATUS")) as string).keys
    status.disconnect()
    const row = (name: string, r: Awaited<ReturnType<typeof load>>) =>
      `${name.padEnd(22)} ${Math.round(r.opsPerSec).toString().padStart(8)} ${r.p50.toFixed(2).padStart(8)} ${r.p99.toFixed(2).padStart(8)} ${r.max.toFixed(1).padStart(9)} ${String(r.errors).padStart(7)}`
    console.log(
      `Client latency, ${CLIENTS} closed-loop clients, 50% GET / 50% SET over ${KEYS} keys, ${SECONDS} s each`,
    )
    console.log(
      `${"phase".padEnd(22)} ${"ops/s".padStart(8)} ${"p50 ms".padStart(8)} ${"p99 ms".padStart(8)} ${"max ms".padStart(9)} ${"errors".padStart(7)}`,
    )
    console.log(row("steady (3 nodes)", steady))
    console.log(row("during a join", during))
    console.log(`the joiner was up after ${joinSeconds.toFixed(1)} s holding ${keysOnJoiner} keys`)
  } finally {
    await stopAll([cluster])
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e)
    process.exit(1)
  },
)
