/**
 * AP and CP behaviour under a partition (PART-*), in the simulator: a 5-node cluster split into
 * a minority of 2 and a majority of 3, keys written on both sides, then healed.
 */
import assert from "node:assert/strict"
import { test } from "./helpers/test.ts"
import fc from "fast-check"
import * as Version from "../impl/core/version.ts"
import { defaultNetwork, Simulation } from "../impl/sim/sim.ts"
import { params } from "./helpers/fc.ts"

const split = (sim: Simulation, minoritySeed: number) => {
  const shuffled = [...sim.ids].sort(
    (a, b) =>
      ((a.charCodeAt(1) * 7919 + minoritySeed) % 13) -
      ((b.charCodeAt(1) * 7919 + minoritySeed) % 13),
  )
  const minority = shuffled.slice(0, 2)
  const majority = shuffled.slice(2)
  sim.partition([minority, majority])
  // Let the failure detectors on both sides notice.
  sim.runFor(8_000)
  return { minority, majority }
}

const W = 2

test("PART-1: in CP mode the minority refuses writes with a clear error and the majority accepts every write it has a quorum for", () => {
  fc.assert(
    fc.property(
      fc.integer(),
      fc.nat(12),
      fc.array(fc.nat(50), { minLength: 1, maxLength: 10 }),
      (seed, m, keys) => {
        const sim = new Simulation({
          seed,
          nodes: 5,
          network: defaultNetwork,
          node: { mode: "cp" },
        })
        const { minority, majority } = split(sim, m)
        for (const k of keys) {
          const key = `k${k}`
          const refused = sim.call(minority[k % 2]!, {
            _tag: "Put",
            key,
            value: "minority",
            context: null,
          })
          assert.equal(refused.result?._tag, "Failed")
          if (refused.result?._tag === "Failed") {
            assert.equal(refused.result.reason, "Unavailable")
            assert.match(refused.result.message, /CP mode: this node sees 2 of 5 members/)
          }
          const op = sim.call(majority[k % 3]!, {
            _tag: "Put",
            key,
            value: "majority",
            context: null,
          })
          const reachable = sim.replicasOf(key).filter((id) => majority.includes(id))
          if (reachable.length >= W) {
            assert.equal(op.result?._tag, "PutOk", JSON.stringify(op.result))
          } else {
            // Strict quorums: a key whose replicas are mostly in the minority is unavailable.
            assert.equal(op.result?._tag, "Failed")
            if (op.result?._tag === "Failed") assert.match(op.result.message, /quorum not met/)
          }
        }
      },
    ),
    params(30),
  )
})

test("PART-2: in AP mode both sides accept writes for every key they hold a replica of, and every replica converges after the heal", () => {
  let bothSides = 0
  fc.assert(
    fc.property(
      fc.integer(),
      fc.nat(12),
      fc.array(fc.nat(50), { minLength: 1, maxLength: 10 }),
      (seed, m, keys) => {
        const sim = new Simulation({
          seed,
          nodes: 5,
          network: defaultNetwork,
          node: { mode: "ap", handoffIntervalMs: 200 },
        })
        const { minority, majority } = split(sim, m)
        const accepted = new Map<string, Set<string>>()
        for (const k of keys) {
          const key = `k${k}`
          const replicas = sim.replicasOf(key)
          for (const [side, value] of [
            [minority, "left"],
            [majority, "right"],
          ] as const) {
            const op = sim.call(side[k % side.length]!, { _tag: "Put", key, value, context: null })
            if (replicas.some((id) => side.includes(id))) {
              // Sloppy quorum: a replica on this side coordinates; substitutes take the rest.
              assert.equal(op.result?._tag, "PutOk", `${value} side: ${JSON.stringify(op.result)}`)
              accepted.set(key, (accepted.get(key) ?? new Set()).add(value))
            } else {
              // Only replicas mint versions; with none on this side the write fails clearly.
              assert.equal(op.result?._tag, "Failed")
              if (op.result?._tag === "Failed")
                assert.match(op.result.message, /no replica of the key answered/)
            }
          }
          if (accepted.get(key)?.size === 2) bothSides++
        }
        sim.heal()
        sim.runFor(5_000)
        for (const [key, values] of accepted) {
          const read = sim.call(sim.ids[0]!, { _tag: "Get", key, r: 3 })
          assert.equal(read.result?._tag, "GetOk")
          if (read.result?._tag === "GetOk") {
            // Writes on the two sides were concurrent: every accepted one survives as a sibling.
            assert.deepEqual([...Version.values(read.result.obj)].sort(), [...values].sort())
          }
          sim.runFor(1_000)
          const objs = sim.replicasOf(key).map((id) => sim.stored(id, key) ?? Version.empty)
          for (const o of objs) assert.ok(Version.equals(o, objs[0]!), `replicas of ${key} differ`)
        }
      },
    ),
    params(30),
  )
  assert.ok(bothSides > 0, "no key was written on both sides of a partition")
})
