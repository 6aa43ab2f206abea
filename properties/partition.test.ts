/**
 * AP and CP behaviour under a partition (PART-*): a 5-node cluster split into a minority of 2
 * and a majority of 3, keys written on both sides, then healed. Each property runs in the
 * simulator (impl/sim) and on the machine layer (properties/helpers/machines.ts: the machines
 * stepped directly, fast-check choosing which message is delivered next).
 */
import { kindOf } from "../impl/core/failure.ts"
import assert from "node:assert/strict"
import { test } from "./helpers/test.ts"
import fc from "fast-check"
import * as Version from "../impl/core/version.ts"
import { defaultNetwork, Simulation } from "../impl/sim/sim.ts"
import { assertFloors, params } from "./helpers/fc.ts"
import { type Cluster, choicesArb, Machines } from "./helpers/machines.ts"

const split = (cluster: Cluster, minoritySeed: number) => {
  const shuffled = [...cluster.ids].sort(
    (a, b) =>
      ((a.charCodeAt(1) * 7919 + minoritySeed) % 13) -
      ((b.charCodeAt(1) * 7919 + minoritySeed) % 13),
  )
  const minority = shuffled.slice(0, 2)
  const majority = shuffled.slice(2)
  cluster.partition([minority, majority])
  // Let the failure detectors on both sides notice.
  cluster.runFor(8_000)
  return { minority, majority }
}

const W = 2

const keysArb = fc.array(fc.nat(50), { minLength: 1, maxLength: 10 })

/** What a batch of PART-1 or PART-2 runs checked. */
const newSeen = () => ({ refused: 0, accepted: 0, unavailable: 0, bothSides: 0, overtaking: 0 })
type Seen = ReturnType<typeof newSeen>

/** PART-1 on one cluster (mode cp): the minority refuses, the majority serves what it can. */
const cpSplit = (cluster: Cluster, m: number, keys: ReadonlyArray<number>, seen: Seen): void => {
  const { minority, majority } = split(cluster, m)
  for (const k of keys) {
    const key = `k${k}`
    const refused = cluster.call(minority[k % 2]!, {
      _tag: "Put",
      key,
      value: "minority",
      context: null,
    })
    assert.equal(refused.result?._tag, "Failed")
    if (refused.result?._tag === "Failed") {
      assert.equal(kindOf(refused.result.error), "Unavailable")
      assert.match(refused.result.error.message, /CP mode: this node sees 2 of 5 members/)
      seen.refused++
    }
    const op = cluster.call(majority[k % 3]!, {
      _tag: "Put",
      key,
      value: "majority",
      context: null,
    })
    const reachable = cluster.replicasOf(key).filter((id) => majority.includes(id))
    if (reachable.length >= W) {
      assert.equal(op.result?._tag, "PutOk", JSON.stringify(op.result))
      seen.accepted++
    } else {
      // Strict quorums: a key whose replicas are mostly in the minority is unavailable.
      assert.equal(op.result?._tag, "Failed")
      if (op.result?._tag === "Failed") assert.match(op.result.error.message, /quorum not met/)
      seen.unavailable++
    }
  }
}

/** PART-2 on one cluster (mode ap): both sides accept, and every replica converges. */
const apSplit = (cluster: Cluster, m: number, keys: ReadonlyArray<number>, seen: Seen): void => {
  const { minority, majority } = split(cluster, m)
  const accepted = new Map<string, Set<string>>()
  for (const k of keys) {
    const key = `k${k}`
    const replicas = cluster.replicasOf(key)
    for (const [side, value] of [
      [minority, "left"],
      [majority, "right"],
    ] as const) {
      const op = cluster.call(side[k % side.length]!, { _tag: "Put", key, value, context: null })
      if (replicas.some((id) => side.includes(id))) {
        // Sloppy quorum: a replica on this side coordinates; substitutes take the rest.
        assert.equal(op.result?._tag, "PutOk", `${value} side: ${JSON.stringify(op.result)}`)
        accepted.set(key, (accepted.get(key) ?? new Set()).add(value))
        seen.accepted++
      } else {
        // Only replicas mint versions; with none on this side the write fails clearly.
        assert.equal(op.result?._tag, "Failed")
        if (op.result?._tag === "Failed")
          assert.match(op.result.error.message, /no replica of the key answered/)
        seen.refused++
      }
    }
    if (accepted.get(key)?.size === 2) seen.bothSides++
  }
  cluster.heal()
  cluster.runFor(5_000)
  for (const [key, values] of accepted) {
    const read = cluster.call(cluster.ids[0]!, { _tag: "Get", key, r: 3 })
    assert.equal(read.result?._tag, "GetOk")
    if (read.result?._tag === "GetOk") {
      // Writes on the two sides were concurrent: every accepted one survives as a sibling.
      assert.deepEqual([...Version.values(read.result.obj)].sort(), [...values].sort())
    }
    cluster.runFor(1_000)
    const objs = cluster.replicasOf(key).map((id) => cluster.stored(id, key) ?? Version.empty)
    for (const o of objs) assert.ok(Version.equals(o, objs[0]!), `replicas of ${key} differ`)
  }
}

test("PART-1: in CP mode the minority refuses writes with a clear error and the majority accepts every write it has a quorum for", () => {
  const seen = newSeen()
  fc.assert(
    fc.property(fc.integer(), fc.nat(12), keysArb, (seed, m, keys) => {
      const node = { mode: "cp" as const }
      cpSplit(new Simulation({ seed, nodes: 5, network: defaultNetwork, node }), m, keys, seen)
    }),
    params(30),
  )
  assertFloors(seen, { refused: 50, accepted: 20, unavailable: 5 })
})

test("PART-2: in AP mode both sides accept writes for every key they hold a replica of, and every replica converges after the heal", () => {
  const seen = newSeen()
  fc.assert(
    fc.property(fc.integer(), fc.nat(12), keysArb, (seed, m, keys) => {
      const node = { mode: "ap" as const, handoffIntervalMs: 200 }
      apSplit(new Simulation({ seed, nodes: 5, network: defaultNetwork, node }), m, keys, seen)
    }),
    params(30),
  )
  assertFloors(seen, { accepted: 50, bothSides: 1 })
})

test("PART-1: machines stepped directly, in any delivery order: in CP mode the minority refuses writes with a clear error and the majority accepts every write it has a quorum for", () => {
  const seen = newSeen()
  fc.assert(
    fc.property(choicesArb, fc.nat(12), keysArb, (choices, m, keys) => {
      const cluster = new Machines({ nodes: 5, choices, node: { mode: "cp" } })
      cpSplit(cluster, m, keys, seen)
      seen.overtaking += cluster.counters.overtaking
    }),
    params(30),
  )
  console.log(`# PART-1, machines: ${JSON.stringify(seen)}`)
  assertFloors(seen, { refused: 50, accepted: 20, unavailable: 5, overtaking: 1000 })
})

test("PART-2: machines stepped directly, in any delivery order: in AP mode both sides accept writes for every key they hold a replica of, and every replica converges after the heal", () => {
  const seen = newSeen()
  fc.assert(
    fc.property(choicesArb, fc.nat(12), keysArb, (choices, m, keys) => {
      const node = { mode: "ap" as const, handoffIntervalMs: 200 }
      const cluster = new Machines({ nodes: 5, choices, node })
      apSplit(cluster, m, keys, seen)
      seen.overtaking += cluster.counters.overtaking
    }),
    params(30),
  )
  console.log(`# PART-2, machines: ${JSON.stringify(seen)}`)
  assertFloors(seen, { accepted: 50, bothSides: 10, overtaking: 1000 })
})
