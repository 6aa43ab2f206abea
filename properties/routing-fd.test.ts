/**
 * The storage node's routing failure detector (FD-4..6): phi accrual over direct heartbeats
 * (every `heartbeatMs`, default 250 ms) decides which replicas a coordinator routes around.
 * Bound: phi = t / (max(mean, floor) · ln 10) crosses the threshold 8 after
 * t = 8 · ln 10 · mean of silence. Heartbeats leave on ticks (every 100 ms in the simulator),
 * so the 250 ms period becomes 300 ms in effect; with latency up to 10 ms the mean interval
 * stays near 300 ms, and a crashed node is suspected within 8 · ln 10 · 300 ms ≈ 5.5 s, plus
 * one heartbeat period and the latency.
 */
import assert from "node:assert/strict"
import { test } from "./helpers/test.ts"
import fc from "fast-check"
import * as Node from "../impl/core/node.ts"
import { defaultNetwork, Simulation } from "../impl/sim/sim.ts"
import { params } from "./helpers/fc.ts"

const HEARTBEAT_EFFECTIVE_MS = 300
const SUSPECT_WITHIN_MS =
  Math.ceil(8 * Math.LN10 * HEARTBEAT_EFFECTIVE_MS) + HEARTBEAT_EFFECTIVE_MS + 20

const views = (sim: Simulation) =>
  sim.ids
    .filter((id) => sim.isUp(id))
    .map((observer) => ({
      observer,
      down: sim.ids.filter((id) => !Node.believedUp(sim.stateOf(observer)!, id, sim.now)),
    }))

test("FD-4, FD-5, FD-6: the routing detector suspects a crashed node within its bound, never a live one, and clears after a restart", () => {
  fc.assert(
    fc.property(
      fc.integer(),
      fc.nat(4),
      fc.integer({ min: 1_000, max: 20_000 }),
      (seed, victim, warmupMs) => {
        const sim = new Simulation({ seed, nodes: 5, network: defaultNetwork })
        // FD-5: with delays inside the configured bound, no false suspicions (checked every 100 ms).
        for (let t = 0; t < warmupMs; t += 100) {
          sim.runFor(100)
          for (const v of views(sim))
            assert.deepEqual(v.down, [], `false suspicion at ${sim.now} ms`)
        }
        const id = sim.ids[victim]!
        sim.stop(id)
        const crashedAt = sim.now
        // FD-4: every live node suspects it within the bound.
        const suspected = sim.runUntil(
          () => views(sim).every((v) => v.down.includes(id)),
          SUSPECT_WITHIN_MS,
        )
        assert.ok(suspected, `not suspected by all within ${SUSPECT_WITHIN_MS} ms of the crash`)
        assert.ok(sim.now - crashedAt <= SUSPECT_WITHIN_MS)
        for (const v of views(sim))
          assert.deepEqual(v.down, [id], "only the crashed node is suspected")
        // FD-6: after it comes back, suspicion clears within a few heartbeats.
        sim.restart(id)
        assert.ok(
          sim.runUntil(() => views(sim).every((v) => v.down.length === 0), 2_000),
          "suspicion did not clear within 2 s of the restart",
        )
      },
    ),
    params(30),
  )
})
