/**
 * Hinted handoff (HINT-*): a write whose preferred replica is down goes to the next healthy node
 * with a durable hint, and the hint reaches the owner when it is back — also when the node
 * holding the hint crashed and restarted in between (hints live in its store, not its memory).
 */
import assert from "node:assert/strict"
import { test } from "./helpers/test.ts"
import fc from "fast-check"
import type { NodeId } from "../impl/core/ids.ts"
import * as Version from "../impl/core/version.ts"
import { defaultNetwork, Simulation } from "../impl/sim/sim.ts"
import { params } from "./helpers/fc.ts"

test("HINT-1: hints reach a returning owner, also after the hint holder restarted", () => {
  let handedOff = 0
  fc.assert(
    fc.property(
      fc.integer(),
      fc.nat(4),
      fc.uniqueArray(fc.nat(200), { minLength: 1, maxLength: 15 }),
      fc.boolean(),
      (seed, ownerIndex, keyNumbers, restartHolders) => {
        const sim = new Simulation({
          seed,
          nodes: 5,
          network: defaultNetwork,
          node: { mode: "ap", handoffIntervalMs: 200 },
          persistDelayMs: 2,
        })
        const owner = sim.ids[ownerIndex]!
        sim.stop(owner)
        sim.runFor(8_000) // the others now believe it down: writes take substitutes
        const keys = keyNumbers.map((k) => `k${k}`).filter((k) => sim.replicasOf(k).includes(owner))
        const others = sim.ids.filter((id) => id !== owner)
        for (const key of keys) {
          const op = sim.call(others[key.length % others.length]!, {
            _tag: "Put",
            key,
            value: `v-${key}`,
            context: null,
          })
          assert.equal(op.result?._tag, "PutOk", JSON.stringify(op.result))
        }
        sim.runFor(500) // the substitutes' copies are acknowledged after W; let them land
        const holders: Array<NodeId> = others.filter((id) =>
          sim
            .storeOf(id)
            .hints(1000)
            .some((h) => h.owner === owner),
        )
        if (keys.length > 0)
          assert.ok(holders.length > 0, "no substitute took a hint for the down owner")
        if (restartHolders) {
          // Crash every hint holder (volatile state gone) and bring it back before the owner.
          for (const id of holders) sim.stop(id)
          for (const id of holders) sim.restart(id)
        }
        sim.restart(owner)
        sim.runFor(10_000)
        for (const key of keys) {
          const stored = sim.stored(owner, key) ?? Version.empty
          assert.deepEqual(Version.values(stored), [`v-${key}`], `${key} never reached ${owner}`)
          handedOff++
        }
        for (const id of holders) {
          assert.ok(
            !sim
              .storeOf(id)
              .hints(1000)
              .some((h) => h.owner === owner),
            `${id} kept delivered hints`,
          )
        }
      },
    ),
    params(40),
  )
  assert.ok(handedOff > 0, "no key was ever handed off")
})
