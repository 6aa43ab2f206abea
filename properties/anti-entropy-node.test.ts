/**
 * Anti-entropy in the storage cluster (AE-7): after replicas diverge (writes during a partition
 * in AP mode, hints lost with their holder's un-synced disk), Merkle exchanges between the
 * storage nodes make every replica of every key equal — with no client reading anything.
 */
import assert from "node:assert/strict"
import { test } from "node:test"
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
