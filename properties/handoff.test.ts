/**
 * Hinted handoff (HINT-*): a write whose preferred replica is down goes to the next healthy node
 * with a durable hint, and the hint reaches the owner when it is back — also when the node
 * holding the hint crashed and restarted in between (hints live in its store, not its memory).
 * In the simulator, and on the machine layer (properties/helpers/machines.ts: the machines
 * stepped directly, fast-check choosing which message is delivered next).
 */
import assert from "node:assert/strict"
import { test } from "./helpers/test.ts"
import fc from "fast-check"
import type { NodeId } from "../impl/core/ids.ts"
import * as Version from "../impl/core/version.ts"
import { defaultNetwork, Simulation } from "../impl/sim/sim.ts"
import { assertFloors, params } from "./helpers/fc.ts"
import { type Cluster, choicesArb, Machines } from "./helpers/machines.ts"

const scenario = fc.tuple(
  fc.nat(4),
  fc.uniqueArray(fc.nat(200), { minLength: 1, maxLength: 15 }),
  fc.boolean(),
)

/** What a batch checked: keys handed off (of which after their holders restarted). */
const newSeen = () => ({ handedOff: 0, afterRestart: 0, overtaking: 0 })

const handoff = (
  cluster: Cluster,
  [ownerIndex, keyNumbers, restartHolders]: [number, Array<number>, boolean],
  seen: ReturnType<typeof newSeen>,
): void => {
  const owner = cluster.ids[ownerIndex]!
  cluster.stop(owner)
  cluster.runFor(8_000) // the others now believe it down: writes take substitutes
  const keys = keyNumbers.map((k) => `k${k}`).filter((k) => cluster.replicasOf(k).includes(owner))
  const others = cluster.ids.filter((id) => id !== owner)
  for (const key of keys) {
    const op = cluster.call(others[key.length % others.length]!, {
      _tag: "Put",
      key,
      value: `v-${key}`,
      context: null,
    })
    assert.equal(op.result?._tag, "PutOk", JSON.stringify(op.result))
  }
  cluster.runFor(500) // the substitutes' copies are acknowledged after W; let them land
  const holders: Array<NodeId> = others.filter((id) =>
    cluster
      .storeOf(id)
      .hints(1000)
      .some((h) => h.owner === owner),
  )
  if (keys.length > 0) assert.ok(holders.length > 0, "no substitute took a hint for the down owner")
  if (restartHolders) {
    // Crash every hint holder (volatile state gone) and bring it back before the owner.
    for (const id of holders) cluster.stop(id)
    for (const id of holders) cluster.restart(id)
  }
  cluster.restart(owner)
  cluster.runFor(10_000)
  for (const key of keys) {
    const stored = cluster.stored(owner, key) ?? Version.empty
    assert.deepEqual(Version.values(stored), [`v-${key}`], `${key} never reached ${owner}`)
    seen.handedOff++
    if (restartHolders) seen.afterRestart++
  }
  for (const id of holders) {
    assert.ok(
      !cluster
        .storeOf(id)
        .hints(1000)
        .some((h) => h.owner === owner),
      `${id} kept delivered hints`,
    )
  }
}

test("HINT-1: hints reach a returning owner, also after the hint holder restarted", () => {
  const seen = newSeen()
  fc.assert(
    fc.property(fc.integer(), scenario, (seed, s) => {
      const sim = new Simulation({
        seed,
        nodes: 5,
        network: defaultNetwork,
        node: { mode: "ap", handoffIntervalMs: 200 },
        persistDelayMs: 2,
      })
      handoff(sim, s, seen)
    }),
    params(40),
  )
  assertFloors(seen, { handedOff: 50, afterRestart: 20 })
})

test("HINT-1: machines stepped directly, in any delivery order: hints reach a returning owner, also after the hint holder restarted", () => {
  const seen = newSeen()
  fc.assert(
    fc.property(choicesArb, scenario, (choices, s) => {
      const node = { mode: "ap" as const, handoffIntervalMs: 200 }
      const cluster = new Machines({ nodes: 5, choices, node })
      handoff(cluster, s, seen)
      seen.overtaking += cluster.counters.overtaking
    }),
    params(40),
  )
  console.log(`# HINT-1, machines: ${JSON.stringify(seen)}`)
  assertFloors(seen, { handedOff: 50, afterRestart: 20, overtaking: 1000 })
})
