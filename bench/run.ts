/**
 * `npm run bench`: every benchmark, printed as tables (ops/s and latency percentiles).
 * Benchmarks measure; tests never assert on time. Figures go to docs/performance.md.
 */
import { RespParser } from "../impl/wire/resp.ts"
import { position, utf8Bytes } from "../impl/core/hash.ts"
import { NodeId } from "../impl/core/ids.ts"
import * as Ring from "../impl/core/ring.ts"
import * as Version from "../impl/core/version.ts"
import { defaultNetwork, Simulation } from "../impl/sim/sim.ts"
import { encodeFrame, FrameDecoder } from "../impl/wire/frame.ts"
import { causalMetadata } from "./causal-metadata.ts"
import { measure, printResults } from "./lib.ts"
import { ringBalance } from "./ring-balance.ts"

const only = process.argv[2]
const want = (name: string) => only === undefined || only === name

if (want("core")) {
  const ring = Ring.make(Array.from({ length: 10 }, (_, i) => ({ id: NodeId(`n${i}`), weight: 1 })))
  const keys = Array.from({ length: 4096 }, (_, i) => utf8Bytes(`user:${i}`))
  let a = Version.empty
  let b = Version.empty
  for (let i = 0; i < 3; i++) {
    a = Version.update(a, [], { value: `a${i}`, ts: i }, "n1")
    b = Version.update(b, [], { value: `b${i}`, ts: i }, "n2")
  }
  printResults("Pure core (one call per op)", [
    measure("hash position (16-byte key)", (i) => position(keys[i & 4095]!), 200_000),
    measure(
      "preference list N=3, 10 nodes x 256 tokens",
      (i) => Ring.preferenceList(ring, keys[i & 4095]!, 3),
      200_000,
    ),
    measure("dvv sync (2 replicas, 3 siblings each)", () => Version.sync(a, b), 200_000),
    measure(
      "dvv update with context",
      (i) => Version.update(a, Version.context(a), { value: "v", ts: i }, "n1"),
      200_000,
    ),
  ])
}

if (want("sim")) {
  const sim = new Simulation({ seed: 1, nodes: 5, network: defaultNetwork })
  printResults("Simulated 5-node cluster (virtual time; wall-clock cost of the machines)", [
    measure(
      "sim: plain SET (blind, read phase + W=2)",
      (i) => {
        sim.call(sim.ids[i % 5]!, { _tag: "Put", key: `k${i % 1000}`, value: "v", context: null })
      },
      5_000,
    ),
    measure(
      "sim: GET (R=2, read repair)",
      (i) => {
        sim.call(sim.ids[i % 5]!, { _tag: "Get", key: `k${i % 1000}` })
      },
      5_000,
    ),
  ])
}

if (want("codec")) {
  const command = Buffer.from(
    "*3\r\n$3\r\nSET\r\n$16\r\nkey:000000000001\r\n$32\r\nvalue-value-value-value-value-va\r\n",
  )
  const batch = Buffer.concat(Array.from({ length: 100 }, () => command))
  const parser = new RespParser()
  const frames = Buffer.concat(
    Array.from({ length: 100 }, () =>
      encodeFrame(JSON.stringify({ _tag: "WriteAck", rid: 12345 })),
    ),
  )
  const decoder = new FrameDecoder()
  const results = [
    measure(
      "RESP parse, 100 pipelined SETs per op",
      () => {
        parser.feed(batch)
        while (parser.next() !== undefined) {}
      },
      20_000,
    ),
    measure("frame decode, 100 frames per op", () => decoder.push(frames), 20_000),
  ]
  printResults("Codecs", results)
  const mbps = (r: (typeof results)[number], bytes: number) =>
    ((r.opsPerSec * bytes) / 1e6).toFixed(0)
  console.log(
    `RESP parse throughput ≈ ${mbps(results[0]!, batch.length)} MB/s; frame decode ≈ ${mbps(results[1]!, frames.length)} MB/s`,
  )
}

if (want("ring")) {
  const r = ringBalance(Ring.DEFAULT_TOKENS_PER_NODE, 200_000)
  console.log(
    `\nRing balance (10 nodes, ${r.tokens} tokens each): max/mean ownership ${r.maxOverMean.toFixed(3)}, min/mean ${r.minOverMean.toFixed(3)}`,
  )
  console.log(
    `11th node joins: ${(r.primaryMoved * 100).toFixed(2)}% of keys change primary (ideal 1/11 = 9.09%); ${(r.replicaSlotsMoved * 100).toFixed(2)}% of replica slots move`,
  )
}

if (want("causal")) {
  const r = causalMetadata(1000, 100)
  const x = r.replicas[0]!
  console.log(
    `\nCausal metadata after 1,000 writes from 1,000 clients (N=3): ${x.clockEntries} clock entries, ${x.storedMetadataBytes} bytes stored metadata, ${x.contextTokenBytes}-byte context token, ${x.valueBytes} value bytes (${x.siblings} sibling); client-id vector clocks would carry ~${r.clientIdClockBytes} bytes`,
  )
}
