/**
 * Bytes of causal metadata per key: 3 replicas after 1,000 writes from 1,000 different clients
 * (each reads the key, then writes with that context, through a random node of a 5-node
 * simulated cluster), next to the value sizes, and next to what client-id vector clocks would
 * carry for the same history.
 * Run: npx tsx bench/causal-metadata.ts [--writes 1000] [--value-bytes 100]
 */
import { encode } from "../impl/wire/context.ts"
import * as Version from "../impl/core/version.ts"
import { defaultNetwork, Simulation } from "../impl/sim/sim.ts"
import { arg } from "./lib.ts"

export const causalMetadata = (writes: number, valueBytes: number, concurrentEvery = 10) => {
  const sim = new Simulation({ seed: 42, nodes: 5, network: defaultNetwork })
  const key = "user:42"
  const pad = "x".repeat(Math.max(0, valueBytes - 8))
  let failures = 0
  for (let client = 0; client < writes; client++) {
    const at = sim.ids[client % sim.ids.length]!
    const read = sim.call(at, { _tag: "Get", key })
    const context = read.result?._tag === "GetOk" ? Version.context(read.result.obj) : []
    const value = `${String(client).padStart(8, "0")}${pad}`.slice(0, valueBytes)
    // Every tenth client races another one (same context), so siblings do happen.
    const op = sim.invoke(at, { _tag: "Put", key, value, context })
    if (client % concurrentEvery === 0) {
      const other = sim.ids[(client + 2) % sim.ids.length]!
      sim.invoke(other, { _tag: "Put", key, value: `${value.slice(0, -1)}'`, context })
    }
    sim.runUntil(() => op.result !== undefined, 10_000)
    if (op.result?._tag !== "PutOk") failures++
  }
  sim.runFor(5_000)
  const replicas = sim.replicasOf(key).map((id) => {
    const obj = sim.stored(id, key) ?? Version.empty
    const sibs = Version.siblings(obj)
    const clock = Version.context(obj)
    return {
      replica: id,
      clockEntries: clock.length,
      siblings: sibs.length,
      valueBytes: sibs.reduce((s, d) => s + (d.sibling.value?.length ?? 0), 0),
      // What the client carries: the authenticated token (base64url).
      contextTokenBytes: encode(clock, "bench").length,
      // What is stored besides values: per entry actor + counter, per sibling a timestamp.
      storedMetadataBytes:
        JSON.stringify(obj).length -
        sibs.reduce((s, d) => s + JSON.stringify(d.sibling.value).length, 0),
    }
  })
  // Client-id vector clocks: one entry per client that ever wrote ("c0000001": counter).
  const clientIdClockBytes = writes * (8 + 8)
  return { writes, failures, replicas, clientIdClockBytes }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const r = causalMetadata(arg("writes", 1000), arg("value-bytes", 100))
  console.log(`Causal metadata for one key after ${r.writes} writes from ${r.writes} clients (N=3)`)
  console.log(
    "replica  clock entries  siblings  value bytes  stored metadata bytes  context token bytes",
  )
  for (const x of r.replicas) {
    console.log(
      `${x.replica.padEnd(7)}  ${String(x.clockEntries).padStart(13)}  ${String(x.siblings).padStart(8)}  ${String(x.valueBytes).padStart(11)}  ${String(x.storedMetadataBytes).padStart(21)}  ${String(x.contextTokenBytes).padStart(19)}`,
    )
  }
  console.log(
    `client-id vector clock for the same history: ~${r.clientIdClockBytes} bytes (one entry per client)`,
  )
  console.log(`failed writes: ${r.failures}`)
}
