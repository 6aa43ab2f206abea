/**
 * Closed-loop client load against real nodes, shared by the end-to-end benchmarks: `clients`
 * ioredis connections spread over `ports`, each issuing its next request (50 % GET, 50 % SET on
 * a random key of `keys`) when the last one returns, for `seconds`.
 */
import { performance } from "node:perf_hooks"
import { Redis } from "ioredis"
import { percentile } from "./lib.ts"

export const connect = (port: number): Redis => {
  const c = new Redis({
    host: "127.0.0.1",
    port,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  })
  c.on("error", () => {})
  return c
}

export interface LoadResult {
  readonly ops: number
  readonly opsPerSec: number
  readonly p50: number
  readonly p99: number
  readonly max: number
  readonly errors: number
}

export const load = async (
  ports: ReadonlyArray<number>,
  seconds: number,
  clientCount: number,
  keys: number,
): Promise<LoadResult> => {
  const clients = Array.from({ length: clientCount }, (_, i) => connect(ports[i % ports.length]!))
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
        const key = `bench:${Math.floor(random() * keys)}`
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

/** Write keys bench:0 .. bench:keys-1 through `port`, pipelined. */
export const preload = async (port: number, keys: number): Promise<void> => {
  const loader = connect(port)
  for (let start = 0; start < keys; start += 1000) {
    const p = loader.pipeline()
    for (let i = start; i < Math.min(keys, start + 1000); i++) p.set(`bench:${i}`, `v${i}`)
    await p.exec()
  }
  loader.disconnect()
}

export const header = (): string =>
  `${"phase".padEnd(22)} ${"ops/s".padStart(8)} ${"p50 ms".padStart(8)} ${"p99 ms".padStart(8)} ${"max ms".padStart(9)} ${"errors".padStart(7)}`

export const row = (name: string, r: LoadResult): string =>
  `${name.padEnd(22)} ${Math.round(r.opsPerSec).toString().padStart(8)} ${r.p50.toFixed(2).padStart(8)} ${r.p99.toFixed(2).padStart(8)} ${r.max.toFixed(1).padStart(9)} ${String(r.errors).padStart(7)}`
