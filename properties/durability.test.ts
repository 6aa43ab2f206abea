/**
 * Durability in the simulator (DUR-*): writes take time to become durable, and a crash loses
 * whatever was not durable yet. Crashes land at arbitrary points inside operations; nothing
 * acknowledged may be lost.
 */
import assert from "node:assert/strict"
import { test } from "./helpers/test.ts"
import fc from "fast-check"
import * as Version from "../impl/core/version.ts"
import { defaultNetwork, Simulation } from "../impl/sim/sim.ts"
import { KvModel } from "../models/kv.ts"
import { Lengths, params, scheduleMax } from "./helpers/fc.ts"

const KEYS = ["a", "b", "c", "d"]

const stepArb = fc.record({
  key: fc.nat(KEYS.length - 1),
  node: fc.nat(9),
  write: fc.boolean(),
  /** Crash this node (index among live ones) this many ms into the operation, if any. */
  crash: fc.option(fc.tuple(fc.nat(9), fc.integer({ min: 0, max: 40 })), { nil: undefined }),
  restart: fc.boolean(),
})

const durLengths = new Lengths("DUR-1", scheduleMax(40))

test("DUR-1: a crash at any point loses nothing that was acknowledged", () => {
  let crashesInFlight = 0
  fc.assert(
    fc.property(
      fc.integer(),
      fc.integer({ min: 1, max: 20 }),
      fc.array(stepArb, { minLength: 1, maxLength: scheduleMax(40) }),
      (seed, persistDelayMs, steps) => {
        durLengths.add(steps.length)
        const sim = new Simulation({ seed, nodes: 5, network: defaultNetwork, persistDelayMs })
        const model = new KvModel()
        const live = () => sim.ids.filter((id) => sim.isUp(id))
        steps.forEach((s, i) => {
          const at = live()[s.node % live().length]!
          const key = KEYS[s.key]!
          const value = `v${i}`
          const op = sim.invoke(
            at,
            s.write ? { _tag: "Put", key, value, context: null } : { _tag: "Get", key },
          )
          if (s.crash !== undefined && live().length === 5) {
            sim.runFor(s.crash[1])
            // 9: every node at once (a power failure); otherwise one node.
            const victims = s.crash[0] === 9 ? live() : [live()[s.crash[0] % live().length]!]
            for (const victim of victims) sim.stop(victim)
            if (op.result === undefined) crashesInFlight++
            if (s.crash[0] === 9) for (const id of sim.ids) sim.restart(id)
          }
          sim.runUntil(() => op.result !== undefined, 60_000)
          if (s.write) {
            if (op.result?._tag === "PutOk") model.written(key, value)
            else model.indeterminate(key, value)
          }
          if (s.restart) for (const id of sim.ids) sim.restart(id)
        })
        for (const id of sim.ids) sim.restart(id)
        sim.runFor(10_000)
        for (const key of KEYS) {
          const op = sim.call(sim.ids[0]!, { _tag: "Get", key })
          assert.equal(op.result?._tag, "GetOk")
          if (op.result?._tag !== "GetOk") continue
          const v = Version.resolve(op.result.obj)?.sibling.value ?? null
          assert.ok(
            model.allowed(key).has(v),
            `${key} = ${v} after crashes; allowed ${[...model.allowed(key)]}`,
          )
        }
      },
    ),
    params(150),
  )
  durLengths.print()
  assert.ok(crashesInFlight > 0, "no crash ever hit an operation in flight")
})
