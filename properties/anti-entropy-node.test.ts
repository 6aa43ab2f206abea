/**
 * Anti-entropy in the storage cluster (AE-7): after replicas diverge (writes during a partition
 * in AP mode, hints lost with their holder's un-synced disk), Merkle exchanges between the
 * storage nodes make every replica of every key equal — with no client reading anything.
 */
import assert from "node:assert/strict"
import { test } from "./helpers/test.ts"
import fc from "fast-check"
import * as Version from "../impl/core/version.ts"
import { defaultNetwork, Simulation } from "../impl/sim/sim.ts"
import { params } from "./helpers/fc.ts"

/** Exchanges run one at a time per node, one peer pair per interval (1 s), K keys each. */
const ROUNDS_MAX_MS = 60_000

test("AE-7: after a heal, replicas converge by anti-entropy alone, with no client reads", () => {
  let repaired = 0
  fc.assert(
    fc.property(
      fc.integer(),
      fc.array(fc.tuple(fc.nat(40), fc.nat(4)), { minLength: 1, maxLength: 40 }),
      fc.nat(4),
      (seed, writes, isolated) => {
        const sim = new Simulation({
          seed,
          nodes: 5,
          network: defaultNetwork,
          // No hinted handoff in this run: only anti-entropy can repair the isolated replica.
          node: { mode: "ap", handoffIntervalMs: 10_000_000, aeIntervalMs: 500 },
        })
        const lonely = sim.ids[isolated]!
        sim.partition([[lonely], sim.ids.filter((id) => id !== lonely)])
        sim.runFor(8_000)
        const keys = new Set<string>()
        writes.forEach(([k, at], i) => {
          const node = sim.ids.filter((id) => id !== lonely)[at % 4]!
          const key = `k${k}`
          keys.add(key)
          sim.call(node, { _tag: "Put", key, value: `v${i}`, context: null })
        })
        sim.heal()
        const converged = () =>
          [...keys].every((key) => {
            const objs = sim.replicasOf(key).map((id) => sim.stored(id, key) ?? Version.empty)
            return objs.every((o) => Version.equals(o, objs[0]!))
          })
        assert.ok(
          sim.runUntil(converged, ROUNDS_MAX_MS),
          `replicas still differ ${ROUNDS_MAX_MS} ms after the heal`,
        )
        for (const id of sim.ids) repaired += sim.stateOf(id)!.stats.aeRepairs
        for (const id of sim.ids)
          assert.equal(sim.stateOf(id)!.stats.gets, 0, "a client read happened")
      },
    ),
    params(20),
  )
  assert.ok(repaired > 0, "anti-entropy never repaired anything")
})

test("AE-8: replicas whose key counts differ by far (an empty replica against a full one) still converge by anti-entropy", () => {
  fc.assert(
    fc.property(fc.integer(), fc.nat(4), (seed, isolated) => {
      const sim = new Simulation({
        seed,
        nodes: 5,
        network: defaultNetwork,
        node: {
          mode: "ap",
          handoffIntervalMs: 10_000_000,
          aeIntervalMs: 200,
          aeRatePerSec: 20_000,
          aeMaxKeys: 1024,
          // Trees of 1,500 keys are built across steps, 256 keys a step.
          aeBuildBatch: 256,
        },
      })
      const lonely = sim.ids[isolated]!
      sim.partition([[lonely], sim.ids.filter((id) => id !== lonely)])
      sim.runFor(8_000)
      // Enough keys that the full replicas' trees are deeper than the empty one's would be.
      const keys = Array.from({ length: 1500 }, (_, i) => `k${i}`)
      const others = sim.ids.filter((id) => id !== lonely)
      keys.forEach((key, i) => {
        sim.call(others[i % others.length]!, { _tag: "Put", key, value: `v${i}`, context: null })
      })
      sim.heal()
      const lonelyKeys = keys.filter((key) => sim.replicasOf(key).includes(lonely))
      const converged = () =>
        lonelyKeys.every((key) => {
          const objs = sim.replicasOf(key).map((id) => sim.stored(id, key) ?? Version.empty)
          return objs.every((o) => Version.equals(o, objs[0]!))
        })
      assert.ok(
        sim.runUntil(converged, 120_000),
        `${lonelyKeys.filter((k) => sim.stored(lonely, k) === undefined).length} of ${lonelyKeys.length} keys still missing on ${lonely} 120 s after the heal`,
      )
    }),
    params(2),
  )
})

test("AE-9: every Merkle tree a node keeps equals the tree built afresh from its store, after every step", () => {
  let checks = 0
  fc.assert(
    fc.property(
      fc.integer(),
      fc.array(fc.tuple(fc.nat(60), fc.nat(4), fc.boolean()), { minLength: 1, maxLength: 60 }),
      fc.nat(4),
      fc.constantFrom("ring" as const, "chord" as const),
      // Trees built in one step, or a few keys per step (writes land while they are built).
      fc.constantFrom(4096, 5),
      (seed, writes, isolated, routing, aeBuildBatch) => {
        const sim = new Simulation({
          seed,
          nodes: 5,
          network: defaultNetwork,
          node: { routing, mode: "ap", aeIntervalMs: 300, aeBuildBatch },
          // After each step the simulator compares every kept tree with one built from the
          // store, and the tree being built with the keys its scan passed, and throws where
          // one differs: every write path keeps the trees in step.
          checkTrees: true,
        })
        sim.runFor(15_000)
        const lonely = sim.ids[isolated]!
        const others = sim.ids.filter((id) => id !== lonely)
        sim.partition([[lonely], others])
        writes.forEach(([k, at, del], i) => {
          // Halfway, a node restarts: it builds its trees again from a store that holds keys,
          // while the rest of the writes land.
          if (i === writes.length >> 1) {
            sim.stop(others[0]!)
            sim.restart(others[0]!)
          }
          const value = del ? null : `v${i}`
          sim.call(others[at % 4]!, { _tag: "Put", key: `k${k}`, value, context: null })
        })
        sim.heal()
        sim.runFor(20_000)
        checks += sim.counters.treeChecks
      },
    ),
    // 25 runs: at 10, a build that no write kept up to date (node-store.ts's upkeep of the tree
    // being built emptied) went unnoticed on some seeds.
    params(25),
  )
  assert.ok(checks > 0, "no kept tree was ever compared")
})
