/**
 * Model-based properties of the replicated store: fast-check command sequences of put / get /
 * delete (and node stops and restarts) against a 5-node cluster (N=3, R=W=2), compared step by
 * step with the Map model of models/kv.ts. Each suite runs twice: in the simulator (impl/sim,
 * latencies from a seed) and on the machine layer (properties/helpers/machines.ts: the machines
 * stepped directly, fast-check choosing which message is delivered next).
 *
 * A failing case prints its seed and path; replay with FC_SEED, FC_PATH and FC_REPLAY_PATH (properties/helpers/fc.ts).
 */
import { kindOf } from "../impl/core/failure.ts"
import assert from "node:assert/strict"
import { test } from "./helpers/test.ts"
import fc from "fast-check"
import type { ClientResult } from "../impl/core/messages.ts"
import * as Version from "../impl/core/version.ts"
import { defaultNetwork, Simulation } from "../impl/sim/sim.ts"
import { KvModel } from "../models/kv.ts"
import { assertFloors, commandOptions, params } from "./helpers/fc.ts"
import { type Boot, type Cluster, choicesArb, Machines } from "./helpers/machines.ts"

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
  /** Machine layer: messages delivered ahead of an older one still in flight. */
  overtaking: number
}

const newSeen = (): Seen => ({
  reads: 0,
  readValues: 0,
  degraded: 0,
  failed: 0,
  recoveryReads: 0,
  recoveryValues: 0,
  overtaking: 0,
})

interface Real {
  readonly cluster: Cluster
}

const liveNodes = (c: Cluster) => c.ids.filter((id) => c.isUp(id))
const downNodes = (c: Cluster) => c.ids.filter((id) => !c.isUp(id))

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
  const { error } = result
  assert.ok(model.maxDown >= 2, `no operation may fail with ≤1 node down: ${error.message}`)
  const kind = kindOf(error)
  assert.ok(
    kind === "QuorumNotMet" || kind === "Timeout" || kind === "Unavailable",
    `failure is a clear quorum error: ${error._tag}`,
  )
  assert.match(error.message, /quorum not met|no replica|CP mode/)
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
    const live = liveNodes(real.cluster)
    const at = live[this.node % live.length]!
    const key = KEYS[this.key % KEYS.length]!
    const op = real.cluster.call(at, { _tag: "Put", key, value: this.value, context: null })
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
    const live = liveNodes(real.cluster)
    const at = live[this.node % live.length]!
    const key = KEYS[this.key % KEYS.length]!
    const op = real.cluster.call(at, { _tag: "Get", key })
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
    const live = liveNodes(real.cluster)
    real.cluster.stop(live[this.node % live.length]!)
    model.down++
  }
  toString = () => `Stop(node#${this.node})`
}

class Restart implements fc.Command<Model, Real> {
  constructor(readonly node: number) {}
  check = (model: Readonly<Model>) => model.down > 0
  run(model: Model, real: Real): void {
    const down = downNodes(real.cluster)
    const id = down[this.node % down.length]!
    real.cluster.restart(id)
    // Back when it serves (a restarted node first catches up with a peer's view; node.ts).
    assert.ok(real.cluster.untilServing(id), `${id} never served after a restart`)
    model.down--
  }
  toString = () => `Restart(node#${this.node})`
}

class Wait implements fc.Command<Model, Real> {
  constructor(readonly ms: number) {}
  check = () => true
  run(_model: Model, real: Real): void {
    real.cluster.runFor(this.ms)
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

/** The simulator (the default layer): a 5-node cluster on the default network, from a seed. */
const onSimulator: Boot<number> = {
  arb: fc.integer(),
  make: (seed, node) => new Simulation({ seed, nodes: 5, network: defaultNetwork, node }),
}

const runScenario = <A>(
  maxDown: number,
  mode: "ap" | "cp",
  numRuns: number,
  seen: Seen,
  boot: Boot<A>,
) =>
  fc.assert(
    fc.property(boot.arb, commands(maxDown), (a, cmds) => {
      const cluster = boot.make(a, { mode })
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
      fc.modelRun(() => ({ model, real: { cluster } }), cmds)
      if (cluster instanceof Machines) seen.overtaking += cluster.counters.overtaking
      if (!staleReadsAllowed) return
      // AP: once every node is back and hints are handed off, reads return the model's value.
      for (const id of cluster.ids) cluster.restart(id)
      cluster.runFor(10_000)
      for (const id of cluster.ids) {
        handoff.stored += cluster.stateOf(id)!.stats.hintsStored
        handoff.delivered += cluster.stateOf(id)!.stats.hintsDelivered
      }
      for (const key of KEYS) {
        const op = cluster.call(cluster.ids[0]!, { _tag: "Get", key })
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
const batch = <A>(
  name: string,
  maxDown: number,
  mode: "ap" | "cp",
  numRuns: number,
  floors: Partial<Record<keyof Seen, number>>,
  boot: Boot<A>,
): void => {
  const seen = newSeen()
  runScenario(maxDown, mode, numRuns, seen, boot)
  console.log(`# ${name}: ${JSON.stringify(seen)}`)
  assertFloors(seen, floors)
}

// Floors of reads that returned a value, and of degraded operations, at about half the smallest
// of 14 clean runs sampled by `npm run floors` (2026-12-04).
const FLOORS_KV3_AP = {
  reads: 130,
  readValues: 30,
  degraded: 120,
  recoveryReads: 150,
  recoveryValues: 28,
}
const FLOORS_KV4 = { reads: 170, readValues: 45, degraded: 180, failed: 10 }
const FLOORS_KV5 = {
  reads: 180,
  readValues: 45,
  degraded: 190,
  failed: 8,
  recoveryReads: 250,
  recoveryValues: 40,
}

test("KV-2: with no faults every operation succeeds with the model's value (sloppy quorums)", () => {
  batch("KV-2 AP", 0, "ap", 40, { reads: 200, readValues: 60 }, onSimulator)
})

test("KV-2: with no faults every operation succeeds with the model's value (strict quorums)", () => {
  batch("KV-2 CP", 0, "cp", 40, { reads: 90, readValues: 40 }, onSimulator)
})

test("KV-3: with any one node stopped every operation succeeds, with the model's value after recovery (sloppy quorums)", () => {
  batch("KV-3 AP", 1, "ap", 40, FLOORS_KV3_AP, onSimulator)
})

test("KV-3: with any one node stopped every operation succeeds with the model's value (strict quorums)", () => {
  batch("KV-3 CP", 1, "cp", 40, { reads: 130, readValues: 30, degraded: 110 }, onSimulator)
})

test("KV-4: with two nodes stopped (strict quorums) each operation succeeds with a model value or fails with a clear quorum error", () => {
  batch("KV-4 CP", 2, "cp", 60, FLOORS_KV4, onSimulator)
})

test("KV-5: with two nodes stopped in AP mode nothing is invented, and after recovery and handoff every read returns the model's value", () => {
  handoff.stored = 0
  handoff.delivered = 0
  batch("KV-5 AP", 2, "ap", 60, FLOORS_KV5, onSimulator)
  assert.ok(handoff.stored > 0 && handoff.delivered > 0, `hints: ${JSON.stringify(handoff)}`)
})

// The same suites on the machine layer: the machines stepped directly, every delivery's order
// chosen by fast-check (properties/helpers/machines.ts), no simulator.

test("KV-2: machines stepped directly, in any delivery order: with no faults every operation succeeds with the model's value (sloppy and strict quorums)", () => {
  const boot: Boot<ReadonlyArray<number>> = {
    arb: choicesArb,
    make: (choices, node) => new Machines({ nodes: 5, choices, node }),
  }
  batch("KV-2 AP, machines", 0, "ap", 40, { reads: 200, readValues: 60, overtaking: 5000 }, boot)
  // 40 runs, as on the simulator: at 20 a clean run drew 50 values against a floor of 40.
  batch("KV-2 CP, machines", 0, "cp", 40, { reads: 90, readValues: 40, overtaking: 3000 }, boot)
})

test("KV-3: machines stepped directly, in any delivery order: with any one node stopped every operation succeeds, with the model's value (strict quorums) or after recovery (sloppy quorums)", () => {
  const boot: Boot<ReadonlyArray<number>> = {
    arb: choicesArb,
    make: (choices, node) => new Machines({ nodes: 5, choices, node }),
  }
  batch("KV-3 AP, machines", 1, "ap", 40, { ...FLOORS_KV3_AP, overtaking: 5000 }, boot)
  const cp = { reads: 130, readValues: 30, degraded: 110, overtaking: 5000 }
  batch("KV-3 CP, machines", 1, "cp", 40, cp, boot)
})

test("KV-4: machines stepped directly, in any delivery order: with two nodes stopped (strict quorums) each operation succeeds with a model value or fails with a clear quorum error", () => {
  const boot: Boot<ReadonlyArray<number>> = {
    arb: choicesArb,
    make: (choices, node) => new Machines({ nodes: 5, choices, node }),
  }
  batch("KV-4 CP, machines", 2, "cp", 60, { ...FLOORS_KV4, overtaking: 5000 }, boot)
})

test("KV-5: machines stepped directly, in any delivery order: with two nodes stopped in AP mode nothing is invented, and after recovery and handoff every read returns the model's value", () => {
  const boot: Boot<ReadonlyArray<number>> = {
    arb: choicesArb,
    make: (choices, node) => new Machines({ nodes: 5, choices, node }),
  }
  handoff.stored = 0
  handoff.delivered = 0
  batch("KV-5 AP, machines", 2, "ap", 60, { ...FLOORS_KV5, overtaking: 5000 }, boot)
  assert.ok(handoff.stored > 0 && handoff.delivered > 0, `hints: ${JSON.stringify(handoff)}`)
})
