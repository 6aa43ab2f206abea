/**
 * Model-based properties of the replicated store: fast-check command sequences of put / get /
 * delete (and node stops and restarts) against a simulated 5-node cluster (N=3, R=W=2),
 * compared step by step with the Map model of models/kv.ts.
 *
 * A failing case prints its seed and path; replay with FC_SEED, FC_PATH and FC_REPLAY_PATH (properties/helpers/fc.ts).
 */
import assert from "node:assert/strict"
import { test } from "./helpers/test.ts"
import fc from "fast-check"
import type { ClientResult } from "../impl/core/messages.ts"
import * as Version from "../impl/core/version.ts"
import { defaultNetwork, Simulation } from "../impl/sim/sim.ts"
import { KvModel } from "../models/kv.ts"
import { assertFloors, commandOptions, params } from "./helpers/fc.ts"

const KEYS = ["apple", "banana", "cherry", "damson", "elder"]

interface Model {
  readonly kv: KvModel
  down: number
  readonly maxDown: number
  /** AP with two down: sloppy reads may be stale during the outage (only checked at the end). */
  readonly staleReadsAllowed: boolean
  /** Every value ever written per key (for "no value from nowhere" while reads may be stale). */
  readonly written: Map<string, Set<string | null>>
  readonly seen: Seen
}

/**
 * What a batch checked, so that it cannot pass vacuously: reads compared with the model, of
 * which returned a value (an absent read passes whenever the model allows it), operations run
 * with a node down, clear failures, and reads after recovery (AP).
 */
interface Seen {
  reads: number
  readValues: number
  degraded: number
  failed: number
  recoveryReads: number
  recoveryValues: number
}

const newSeen = (): Seen => ({
  reads: 0,
  readValues: 0,
  degraded: 0,
  failed: 0,
  recoveryReads: 0,
  recoveryValues: 0,
})

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
  if (model.down > 0) model.seen.degraded++
  if (result._tag !== "Failed") return true
  model.seen.failed++
  assert.ok(model.maxDown >= 2, `no operation may fail with ≤1 node down: ${result.message}`)
  assert.ok(
    result.reason === "QuorumNotMet" ||
      result.reason === "Timeout" ||
      result.reason === "Unavailable",
    `failure is a clear quorum error: ${result.reason}`,
  )
  assert.match(result.message, /quorum not met|no replica|CP mode/)
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
    const all = model.written.get(key) ?? new Set([null])
    model.written.set(key, all.add(this.value))
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
    model.seen.reads++
    if (value !== null) model.seen.readValues++
    const allowed = model.staleReadsAllowed
      ? (model.written.get(key) ?? new Set([null]))
      : model.kv.allowed(key)
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

/** Hints stored and delivered across a batch: proof that sloppy quorum was exercised. */
const handoff = { stored: 0, delivered: 0 }

const runScenario = (maxDown: number, mode: "ap" | "cp", numRuns: number, seen: Seen) =>
  fc.assert(
    fc.property(fc.integer(), commands(maxDown), (seed, cmds) => {
      const sim = new Simulation({ seed, nodes: 5, network: defaultNetwork, node: { mode } })
      // Sloppy quorums (AP) trade read-your-writes for availability as soon as a node can be
      // down: a write acknowledged by a substitute need not meet the next read quorum. AP runs
      // check "nothing invented" online and the model's values after recovery instead.
      const staleReadsAllowed = mode === "ap" && maxDown >= 1
      const model: Model = {
        kv: new KvModel(),
        down: 0,
        maxDown,
        staleReadsAllowed,
        written: new Map(),
        seen,
      }
      fc.modelRun(() => ({ model, real: { sim } }), cmds)
      if (!staleReadsAllowed) return
      // AP: once every node is back and hints are handed off, reads return the model's value.
      for (const id of sim.ids) sim.restart(id)
      sim.runFor(10_000)
      for (const id of sim.ids) {
        handoff.stored += sim.stateOf(id)!.stats.hintsStored
        handoff.delivered += sim.stateOf(id)!.stats.hintsDelivered
      }
      for (const key of KEYS) {
        const op = sim.call(sim.ids[0]!, { _tag: "Get", key })
        const value = readValue(op.result!)
        seen.recoveryReads++
        if (value !== null) seen.recoveryValues++
        const allowed = model.kv.allowed(key)
        assert.ok(
          allowed.has(value),
          `after recovery GET ${key} = ${JSON.stringify(value)}, model allows ${JSON.stringify([...allowed])}`,
        )
      }
    }),
    params(numRuns),
  )

/** Run a batch, print what it checked, and hold it to its floors. */
const batch = (
  name: string,
  maxDown: number,
  mode: "ap" | "cp",
  numRuns: number,
  floors: Partial<Record<keyof Seen, number>>,
): void => {
  const seen = newSeen()
  runScenario(maxDown, mode, numRuns, seen)
  console.log(`# ${name}: ${JSON.stringify(seen)}`)
  assertFloors(seen, floors)
}

test("KV-2: with no faults every operation succeeds with the model's value (sloppy quorums)", () => {
  batch("KV-2 AP", 0, "ap", 40, { reads: 200, readValues: 80 })
})

test("KV-2: with no faults every operation succeeds with the model's value (strict quorums)", () => {
  batch("KV-2 CP", 0, "cp", 20, { reads: 90, readValues: 40 })
})

test("KV-3: with any one node stopped every operation succeeds, with the model's value after recovery (sloppy quorums)", () => {
  batch("KV-3 AP", 1, "ap", 40, {
    reads: 130,
    readValues: 40,
    degraded: 150,
    recoveryReads: 150,
    recoveryValues: 28,
  })
})

test("KV-3: with any one node stopped every operation succeeds with the model's value (strict quorums)", () => {
  batch("KV-3 CP", 1, "cp", 40, { reads: 130, readValues: 40, degraded: 110 })
})

test("KV-4: with two nodes stopped (strict quorums) each operation succeeds with a model value or fails with a clear quorum error", () => {
  batch("KV-4 CP", 2, "cp", 60, { reads: 170, readValues: 45, degraded: 180, failed: 10 })
})

test("KV-5: with two nodes stopped in AP mode nothing is invented, and after recovery and handoff every read returns the model's value", () => {
  batch("KV-5 AP", 2, "ap", 60, {
    reads: 180,
    readValues: 45,
    degraded: 190,
    failed: 8,
    recoveryReads: 250,
    recoveryValues: 40,
  })
  assert.ok(handoff.stored > 0 && handoff.delivered > 0, `hints: ${JSON.stringify(handoff)}`)
})
