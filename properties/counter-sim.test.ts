/**
 * Counters that never lose an increment (CTR-1), in the simulator: a 5-node AP cluster under
 * message loss and duplication, crashes and restarts, and partitions, while increments and
 * decrements of two counters go through random nodes (both sides of a partition included).
 * After heal and quiescence every node reads, for each counter, the sum of every acknowledged
 * increment plus some subset of the indeterminate ones (a timed-out increment may or may not
 * have happened) — never an increment twice, never one lost. Reads during the run never show a
 * total no subset of the increments invoked so far could make.
 */
import assert from "node:assert/strict"
import { test } from "./helpers/test.ts"
import fc from "fast-check"
import type { PutOp } from "../impl/core/messages.ts"
import * as Version from "../impl/core/version.ts"
import { defaultNetwork, Simulation } from "../impl/sim/sim.ts"
import { assertFloors, params } from "./helpers/fc.ts"

const KEYS = ["hits", "stock"]

type Step =
  | { _tag: "Incr"; key: number; node: number; by: number }
  | { _tag: "Get"; key: number; node: number }
  | { _tag: "Crash"; node: number }
  | { _tag: "Restart" }
  | { _tag: "Partition"; cut: number }
  | { _tag: "Heal" }
  | { _tag: "Wait"; ms: number }

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record({
      _tag: fc.constant("Incr" as const),
      key: fc.nat(1),
      node: fc.nat(4),
      by: fc.integer({ min: -3, max: 5 }),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({ _tag: fc.constant("Get" as const), key: fc.nat(1), node: fc.nat(4) }),
  },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Crash" as const), node: fc.nat(4) }) },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Restart" as const) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      _tag: fc.constant("Partition" as const),
      cut: fc.integer({ min: 1, max: 4 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Heal" as const) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      _tag: fc.constant("Wait" as const),
      ms: fc.integer({ min: 50, max: 3000 }),
    }),
  },
)

/** Every total some subset of `deltas` adds to `base`. */
const reachable = (base: number, deltas: ReadonlyArray<number>): Set<number> => {
  let sums = new Set([base])
  for (const d of deltas) sums = new Set([...sums, ...[...sums].map((s) => s + d)])
  return sums
}

test("CTR-1: increments through any nodes, across partitions, crashes, loss and duplication, all count exactly once after the heal", () => {
  const seen = { acked: 0, indeterminate: 0, partitionedIncrements: 0, reads: 0, finalReads: 0 }
  fc.assert(
    fc.property(
      fc.integer(),
      fc.array(stepArb, { minLength: 20, maxLength: 60, size: "max" }),
      fc.record({
        lossRate: fc.constantFrom(0, 0.01, 0.03),
        duplicateRate: fc.constantFrom(0, 0.02, 0.05),
      }),
      (seed, steps, faults) => {
        const sim = new Simulation({ seed, nodes: 5, network: { ...defaultNetwork, ...faults } })
        const acked = new Map(KEYS.map((k) => [k, 0]))
        const unknown = new Map<string, Array<number>>(KEYS.map((k) => [k, []]))
        const invoked = new Map<string, Array<number>>(KEYS.map((k) => [k, []]))
        let down: number | undefined
        let partitioned = false
        const upIds = () => sim.ids.filter((_, i) => i !== down)
        for (const step of steps) {
          switch (step._tag) {
            case "Incr": {
              const key = KEYS[step.key]!
              const ids = upIds()
              const op: PutOp = {
                _tag: "Put",
                key,
                value: null,
                context: null,
                incr: { by: String(step.by), float: false },
              }
              invoked.get(key)!.push(step.by)
              const o = sim.call(ids[step.node % ids.length]!, op, 30_000)
              if (o.result?._tag === "PutOk") {
                acked.set(key, acked.get(key)! + step.by)
                seen.acked++
                if (partitioned) seen.partitionedIncrements++
              } else {
                unknown.get(key)!.push(step.by)
                seen.indeterminate++
              }
              break
            }
            case "Get": {
              const key = KEYS[step.key]!
              const ids = upIds()
              const o = sim.call(ids[step.node % ids.length]!, { _tag: "Get", key }, 30_000)
              if (o.result?._tag !== "GetOk") break
              const v = Version.readValueAt(o.result.obj, o.completedAt!)
              const total = v === null ? 0 : Number(v)
              assert.ok(
                reachable(0, invoked.get(key)!).has(total),
                `read ${key} = ${v}: no subset of the increments invoked makes it`,
              )
              seen.reads++
              break
            }
            case "Crash":
              if (down !== undefined) break
              down = step.node
              sim.stop(sim.ids[down]!)
              break
            case "Restart":
              if (down !== undefined) sim.restart(sim.ids[down]!)
              down = undefined
              break
            case "Partition":
              sim.heal()
              sim.partition([sim.ids.slice(0, step.cut), sim.ids.slice(step.cut)])
              partitioned = true
              break
            case "Heal":
              sim.heal()
              partitioned = false
              break
            case "Wait":
              sim.runFor(step.ms)
              break
          }
        }
        // Heal, restart, and let anti-entropy and hinted handoff finish.
        sim.heal()
        if (down !== undefined) sim.restart(sim.ids[down]!)
        sim.network = defaultNetwork
        sim.runFor(30_000)
        for (const key of KEYS) {
          const allowed = reachable(acked.get(key)!, unknown.get(key)!)
          const totals = sim.ids.map((id) => {
            const o = sim.call(id, { _tag: "Get", key, r: 3 }, 30_000)
            assert.equal(o.result?._tag, "GetOk", `final read of ${key} at ${id} failed`)
            if (o.result?._tag !== "GetOk") return Number.NaN
            const v = Version.readValueAt(o.result.obj, o.completedAt!)
            return v === null ? 0 : Number(v)
          })
          seen.finalReads += totals.length
          assert.equal(new Set(totals).size, 1, `${key}: nodes disagree: ${totals}`)
          assert.ok(
            allowed.has(totals[0]!),
            `${key} = ${totals[0]}: acknowledged ${acked.get(key)}, indeterminate ${unknown.get(key)}`,
          )
        }
      },
    ),
    params(30),
  )
  assertFloors(seen, { acked: 150, partitionedIncrements: 20, reads: 50, finalReads: 200 })
})

const counterArb: fc.Arbitrary<Version.Counter> = fc
  .record({
    base: fc.integer({ min: -50, max: 50 }),
    baseTs: fc.nat(5),
    steps: fc.array(fc.tuple(fc.constantFrom("a", "b", "c"), fc.integer({ min: -9, max: 9 })), {
      maxLength: 8,
    }),
    float: fc.boolean(),
  })
  .map(({ base, baseTs, steps, float }) =>
    steps.reduce((c, [actor, by]) => Version.increment(c, actor, String(by), float), {
      base: String(base),
      baseTs,
      p: [],
      n: [],
      float: false,
    } as Version.Counter),
  )

test("CTR-1: the counter join is commutative, associative and idempotent, and never lowers an actor's entries", () => {
  fc.assert(
    fc.property(counterArb, counterArb, counterArb, (a, b, c) => {
      const j = Version.mergeCounter
      assert.deepEqual(j(a, b), j(b, a))
      assert.deepEqual(j(j(a, b), c), j(a, j(b, c)))
      assert.deepEqual(j(a, a), a)
      const m = j(a, b)
      for (const [actor, v] of [...a.p, ...b.p]) {
        assert.ok(Number(m.p.find(([x]) => x === actor)![1]) >= Number(v))
      }
    }),
    params(300),
  )
})

test("CTR-1: a write that replaces a counter reports the join of its siblings as the value it replaced (SET … GET, APPEND)", () => {
  let checked = 0
  for (const seed of [1, 2, 3, 4, 5]) {
    const sim = new Simulation({ seed, nodes: 5, network: defaultNetwork })
    const incr = (node: number, by: number) =>
      sim.call(sim.ids[node]!, {
        _tag: "Put",
        key: "c",
        value: null,
        context: null,
        incr: { by: String(by), float: false },
      })
    assert.equal(incr(0, 5).result?._tag, "PutOk")
    sim.runFor(2000)
    // Both sides of a partition increment: two concurrent counter siblings.
    sim.partition([sim.ids.slice(0, 2), sim.ids.slice(2)])
    sim.runFor(8000)
    assert.equal(incr(0, 10).result?._tag, "PutOk")
    assert.equal(incr(4, 100).result?._tag, "PutOk")
    sim.heal()
    sim.runFor(8000)
    const read = sim.call(sim.ids[1]!, { _tag: "Get", key: "c", r: 3 })
    assert.equal(read.result?._tag, "GetOk")
    if (read.result?._tag !== "GetOk") continue
    if (Version.siblings(read.result.obj).length < 2) continue
    const replaced = sim.call(sim.ids[2]!, { _tag: "Put", key: "c", value: "x", context: null })
    assert.equal(replaced.result?._tag, "PutOk")
    if (replaced.result?._tag !== "PutOk") continue
    assert.equal(replaced.result.previous?.value, "115", "the replaced value is the counters' join")
    checked++
  }
  assert.ok(checked > 0, "no seed left concurrent counter siblings to replace")
})
