/**
 * Client latency during a join, against the same load without one: 3 real node processes
 * (LMDB), 20 closed-loop ioredis clients doing GET/SET on random keys for a fixed time, first
 * in steady state, then while a 4th node joins and streams its share of the data in (under the
 * default streaming budget). Prints ops/s and latency percentiles for both phases, then stops
 * every process it started.
 * Run: npx tsx bench/join-p99.ts [--keys 20000] [--seconds 8] [--clients 20]
 */
import { performance } from "node:perf_hooks"
import { fetchStatus } from "../impl/cli/status.ts"
import { Cluster, pollUntil, stopAll } from "../properties/helpers/cluster.ts"
import { header, type LoadResult, load as loadOn, preload, row } from "./load.ts"
import { arg } from "./lib.ts"

const KEYS = arg("keys", 20_000)
const SECONDS = arg("seconds", 8)
const CLIENTS = arg("clients", 20)

const load = (ports: ReadonlyArray<number>, seconds: number): Promise<LoadResult> =>
  loadOn(ports, seconds, CLIENTS, KEYS)

const main = async () => {
  const cluster = await Cluster.start({ nodes: 3, store: "lmdb" })
  try {
    const ports = cluster.nodes.map((n) => n.clientPort)
    await preload(ports[0]!, KEYS)
    console.error(`loaded ${KEYS} keys; measuring steady state for ${SECONDS} s …`)
    const steady = await load(ports, SECONDS)
    console.error("starting a 4th node (joining) and measuring during its streaming …")
    const joinedAt = performance.now()
    const joining = cluster.join()
    const during = await load(ports, SECONDS)
    const joiner = await joining
    const at = { host: "127.0.0.1", port: cluster.nodes[joiner]!.clientPort }
    await pollUntil(
      "the joiner to be up",
      async () => {
        const s = await fetchStatus(at)
        return s.members.find((m) => m.id === s.self)?.status === "up"
      },
      { timeoutMs: 300_000 },
    )
    const joinSeconds = (performance.now() - joinedAt) / 1000
    const keysOnJoiner = (await fetchStatus(at)).keys
    console.log(
      `Client latency, ${CLIENTS} closed-loop clients, 50% GET / 50% SET over ${KEYS} keys, ${SECONDS} s each`,
    )
    console.log(header())
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
