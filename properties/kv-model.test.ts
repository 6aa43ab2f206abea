/**
 * Model-based properties of the replicated store: fast-check command sequences of put / get /
 * delete (and node stops and restarts) against a simulated 5-node cluster (N=3, R=W=2),
 * compared step by step with the Map model of models/kv.ts.
 *
 * A failing case prints its seed and path; replay with FC_SEED, FC_PATH and FC_REPLAY_PATH (properties/helpers/fc.ts).
 */
import assert from "node:assert/strict"
import { test } from "node:test"
import fc from "fast-check"
import type { ClientResult } from "../impl/core/messages.ts"
import * as Version from "../impl/core/version.ts"
import { defaultNetwork, Simulation } from "../impl/sim/sim.ts"
import { KvModel } from "../models/kv.ts"
import { commandOptions, params } from "./helpers/fc.ts"

const KEYS = ["apple", "banana", "cherry", "damson", "elder"]

interface Model {
  readonly kv: KvModel
  down: number
  readonly maxDown: number
}

interface Real {
  readonly sim: Simulation
}

const liveNodes = (sim: Simulation) => sim.ids.filter((id) => sim.isUp(id))
const downNodes = (sim: Simulation) => sim.ids.filter((id) => !sim.isUp(id))

/** What a plain GET returns for a merged object: the resolved sibling, null if absent/deleted. */
const readValue = (result: ClientResult): string | null => {
  assert.equal(result._tag, "GetOk")
  if (result._tag !== "GetOk") return null
  return Version.resolve(result.obj)?.sibling.value ?? null
}

/** With at most one node down every operation succeeds; with two, it may fail clearly. */
const checkOutcome = (model: Model, result: ClientResult | undefined): boolean => {
  assert.ok(result !== undefined, "every operation completes (deadline timers)")
  if (result._tag !== "Failed") return true
  assert.ok(model.maxDown >= 2, `no operation may fail with ≤1 node down: ${result.message}`)
  assert.ok(
    result.reason === "QuorumNotMet" || result.reason === "Timeout",
    `failure is a clear quorum error: ${result.reason}`,
  )
  assert.match(result.message, /quorum not met|no replica/)
  return false
}

class Put implements fc.Command<Model, Real> {
  constructor(
    readonly node: number,
    readonly key: number,
    readonly value: string | null,
  ) {}
  check = () => true
  run(model: Model, real: Real): void {
    const live = liveNodes(real.sim)
    const at = live[this.node % live.length]!
    const key = KEYS[this.key % KEYS.length]!
    const op = real.sim.call(at, { _tag: "Put", key, value: this.value, context: null })
    if (checkOutcome(model, op.result)) model.kv.written(key, this.value)
    else model.kv.indeterminate(key, this.value)
  }
  toString = () =>
    `${this.value === null ? "Del" : "Put"}(node#${this.node}, ${KEYS[this.key % KEYS.length]}` +
    `${this.value === null ? "" : `, ${JSON.stringify(this.value)}`})`
}

class Get implements fc.Command<Model, Real> {
  constructor(
    readonly node: number,
    readonly key: number,
  ) {}
  check = () => true
  run(model: Model, real: Real): void {
    const live = liveNodes(real.sim)
    const at = live[this.node % live.length]!
    const key = KEYS[this.key % KEYS.length]!
    const op = real.sim.call(at, { _tag: "Get", key })
    if (!checkOutcome(model, op.result)) return
    const value = readValue(op.result!)
    const allowed = model.kv.allowed(key)
    assert.ok(
      allowed.has(value),
      `GET ${key} at ${at} returned ${JSON.stringify(value)}, model allows ${JSON.stringify([...allowed])}`,
    )
  }
  toString = () => `Get(node#${this.node}, ${KEYS[this.key % KEYS.length]})`
}

class Stop implements fc.Command<Model, Real> {
  constructor(readonly node: number) {}
  check = (model: Readonly<Model>) => model.down < model.maxDown
  run(model: Model, real: Real): void {
    const live = liveNodes(real.sim)
    real.sim.stop(live[this.node % live.length]!)
    model.down++
  }
  toString = () => `Stop(node#${this.node})`
}

class Restart implements fc.Command<Model, Real> {
  constructor(readonly node: number) {}
  check = (model: Readonly<Model>) => model.down > 0
  run(model: Model, real: Real): void {
    const down = downNodes(real.sim)
    real.sim.restart(down[this.node % down.length]!)
    model.down--
  }
  toString = () => `Restart(node#${this.node})`
}

class Wait implements fc.Command<Model, Real> {
  constructor(readonly ms: number) {}
  check = () => true
  run(_model: Model, real: Real): void {
    real.sim.runFor(this.ms)
  }
  toString = () => `Wait(${this.ms}ms)`
}

const value = fc.oneof(fc.constantFrom("a", "b", "c"), fc.string({ maxLength: 6 }))
const commands = (maxDown: number) =>
  fc.commands(
    [
      fc.tuple(fc.nat(9), fc.nat(9), value).map(([n, k, v]) => new Put(n, k, v)),
      fc.tuple(fc.nat(9), fc.nat(9)).map(([n, k]) => new Put(n, k, null)),
      fc.tuple(fc.nat(9), fc.nat(9)).map(([n, k]) => new Get(n, k)),
      fc.tuple(fc.nat(9), fc.nat(9)).map(([n, k]) => new Get(n, k)),
      ...(maxDown > 0
        ? [fc.nat(9).map((n) => new Stop(n)), fc.nat(9).map((n) => new Restart(n))]
        : []),
      fc.integer({ min: 1, max: 3000 }).map((ms) => new Wait(ms)),
    ],
    commandOptions(60),
  )

const runScenario = (maxDown: number, numRuns: number) =>
  fc.assert(
    fc.property(fc.integer(), commands(maxDown), (seed, cmds) => {
      const sim = new Simulation({ seed, nodes: 5, network: defaultNetwork })
      const model: Model = { kv: new KvModel(), down: 0, maxDown }
      fc.modelRun(() => ({ model, real: { sim } }), cmds)
    }),
    params(numRuns),
  )

test("KV-2: with no faults every operation succeeds with the model's value", () => {
  runScenario(0, 60)
})

test("KV-3: with any one node stopped (N=3, R=W=2) every operation still succeeds", () => {
  runScenario(1, 60)
})

test("KV-4: with two nodes stopped each operation succeeds with a model value or fails with a clear quorum error", () => {
  runScenario(2, 60)
})
