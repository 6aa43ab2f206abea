/**
 * What Chord routing costs a client, against one-hop routing on the same hardware: K real node
 * processes (memory stores, so that disk flushes do not hide the routing cost) started once with
 * `--routing ring` and once with `--routing chord`, the same closed-loop load on each (50 % GET,
 * 50 % SET on random keys, clients spread over every node), and the lookup hops the Chord nodes
 * counted. Prints ops/s and latency percentiles per mode, then stops every process it started.
 * Run: npx tsx bench/routing.ts [--nodes 16] [--keys 5000] [--seconds 8] [--clients 32]
 */
import { walkChord } from "../impl/cli/status.ts"
import { Cluster, pollUntil, stopAll } from "../properties/helpers/cluster.ts"
import { header, type LoadResult, load, preload, row } from "./load.ts"
import { arg } from "./lib.ts"

const NODES = arg("nodes", 16)
const KEYS = arg("keys", 5000)
const SECONDS = arg("seconds", 8)
const CLIENTS = arg("clients", 32)

const measure = async (routing: "ring" | "chord") => {
  console.error(`starting ${NODES} nodes with --routing ${routing} …`)
  const cluster = await Cluster.start({
    nodes: NODES,
    store: "memory",
    routing,
    readyTimeoutMs: 180_000,
  })
  try {
    const first = { host: "127.0.0.1", port: cluster.nodes[0]!.clientPort }
    if (routing === "chord") {
      await pollUntil(
        "the Chord ring to close",
        async () => {
          const walk = await walkChord(first, NODES + 2)
          return walk.ok && walk.reports.length === NODES
        },
        { timeoutMs: 180_000, intervalMs: 500 },
      )
    }
    const ports = cluster.nodes.map((n) => n.clientPort)
    await preload(ports[0]!, KEYS)
    // A short warm-up: connections, JIT, Chord fingers refreshed by the first lookups.
    await load(ports, 2, CLIENTS, KEYS)
    console.error(`measuring ${routing} for ${SECONDS} s …`)
    const result = await load(ports, SECONDS, CLIENTS, KEYS)
    let hops = ""
    if (routing === "chord") {
      const walk = await walkChord(first, NODES + 2)
      const lookups = walk.reports.reduce((n, r) => n + (r.chord?.lookups ?? 0), 0)
      const total = walk.reports.reduce(
        (n, r) => n + (r.chord?.lookups ?? 0) * (r.chord?.meanHops ?? 0),
        0,
      )
      const max = Math.max(...walk.reports.map((r) => r.chord?.maxHops ?? 0))
      const table = walk.reports.map((r) => r.chord?.tablePeers ?? 0)
      hops =
        `chord: ${lookups} lookups, mean ${(total / Math.max(1, lookups)).toFixed(2)} hops ` +
        `(½·log2 N = ${(Math.log2(NODES) / 2).toFixed(2)}), max ${max}; routing table ` +
        `${Math.min(...table)}..${Math.max(...table)} peers of ${NODES - 1}`
    }
    return { result, hops }
  } finally {
    await stopAll([cluster])
  }
}

const main = async () => {
  const results: Array<readonly [string, LoadResult]> = []
  const notes: Array<string> = []
  for (const routing of ["ring", "chord"] as const) {
    const { result, hops } = await measure(routing)
    results.push([`${routing} (${NODES} nodes)`, result])
    if (hops) notes.push(hops)
  }
  console.log(
    `Routing cost, ${CLIENTS} closed-loop clients over ${NODES} nodes (memory stores), ` +
      `50% GET / 50% SET over ${KEYS} keys, ${SECONDS} s each`,
  )
  console.log(header())
  for (const [name, r] of results) console.log(row(name, r))
  for (const note of notes) console.log(note)
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e)
    process.exit(1)
  },
)
