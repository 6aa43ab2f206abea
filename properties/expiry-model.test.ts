/**
 * Expiry and conditional writes against a model (EXP-1, EXP-2, COND-1), in the simulator: a
 * 5-node cluster (N=3, R=W=2) runs generated sequences of SET with and without expiry,
 * SET NX / XX / KEEPTTL, EXPIRE, PERSIST-like rewrites and GETs through random nodes, with waits
 * that let values expire and a node that crashes and restarts, and every answer is compared with
 * a Map of (value, expiry) advanced on the same virtual clock.
 *
 * A read whose window [invoked, completed] straddles the value's expiry may see either side;
 * everything else must match exactly.
 */
import assert from "node:assert/strict"
import { test } from "./helpers/test.ts"
import fc from "fast-check"
import type { ClientOp, PutOp } from "../impl/core/messages.ts"
import * as Version from "../impl/core/version.ts"
import { defaultNetwork, Simulation } from "../impl/sim/sim.ts"
import { assertFloors, params } from "./helpers/fc.ts"

const KEYS = ["x", "y"]

type Step =
  | { _tag: "Set"; key: number; node: number; ttl: number | null; cond: "nx" | "xx" | null }
  | { _tag: "KeepTtl"; key: number; node: number }
  | { _tag: "Expire"; key: number; node: number; ttl: number | null }
  | { _tag: "Get"; key: number; node: number }
  | { _tag: "Wait"; ms: number }
  | { _tag: "Crash"; node: number }
  | { _tag: "Restart" }

const ttlArb = fc.option(fc.integer({ min: 50, max: 3000 }), { nil: null, freq: 2 })
const stepArb: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      _tag: fc.constant("Set" as const),
      key: fc.nat(1),
      node: fc.nat(4),
      ttl: ttlArb,
      cond: fc.constantFrom(null, null, "nx" as const, "xx" as const),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      _tag: fc.constant("KeepTtl" as const),
      key: fc.nat(1),
      node: fc.nat(4),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      _tag: fc.constant("Expire" as const),
      key: fc.nat(1),
      node: fc.nat(4),
      ttl: ttlArb,
    }),
  },
  {
    weight: 5,
    arbitrary: fc.record({ _tag: fc.constant("Get" as const), key: fc.nat(1), node: fc.nat(4) }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      _tag: fc.constant("Wait" as const),
      ms: fc.integer({ min: 10, max: 2500 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Crash" as const), node: fc.nat(4) }) },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Restart" as const) }) },
)

interface Held {
  readonly value: string
  readonly exp: number | undefined
}

test("EXP-1, EXP-2, COND-1: SET with expiry, NX/XX, KEEPTTL, EXPIRE and PERSIST match a model on a virtual clock, through crashes", () => {
  const seen = { reads: 0, expiredReads: 0, skipped: 0, conditionals: 0, keptTtl: 0, ambiguous: 0 }
  fc.assert(
    fc.property(
      fc.integer(),
      fc.array(stepArb, { minLength: 20, maxLength: 60, size: "max" }),
      (seed, steps) => {
        const sim = new Simulation({ seed, nodes: 5, network: defaultNetwork })
        const model = new Map<string, Held>()
        let down: number | undefined
        let values = 0
        const live = (key: string, at: number): Held | undefined => {
          const h = model.get(key)
          return h !== undefined && (h.exp === undefined || h.exp > at) ? h : undefined
        }
        const call = (node: number, op: ClientOp) => {
          const ids = sim.ids.filter((_, i) => i !== down)
          const operation = sim.call(ids[node % ids.length]!, op)
          assert.ok(operation.result !== undefined, `no answer to ${JSON.stringify(op)}`)
          assert.notEqual(
            operation.result._tag,
            "Failed",
            `${JSON.stringify(op)} failed: ${JSON.stringify(operation.result)}`,
          )
          return operation
        }
        for (const step of steps) {
          switch (step._tag) {
            case "Set":
            case "KeepTtl":
            case "Expire": {
              const key = KEYS[step.key]!
              const now = sim.now
              const ttl = step._tag === "KeepTtl" ? null : step.ttl
              const exp = ttl === null ? undefined : now + ttl
              const value = `v${values++}`
              const op: PutOp =
                step._tag === "Expire"
                  ? {
                      _tag: "Put",
                      key,
                      value: null,
                      context: null,
                      keep: "value",
                      ...(exp === undefined ? {} : { exp }),
                    }
                  : step._tag === "KeepTtl"
                    ? { _tag: "Put", key, value, context: null, keep: "ttl" }
                    : {
                        _tag: "Put",
                        key,
                        value,
                        context: null,
                        ...(exp === undefined ? {} : { exp }),
                        ...(step.cond === null ? {} : { cond: step.cond }),
                      }
              const o = call(step.node, op)
              // The coordinator decides at some moment inside the call; with no expiry inside
              // that window the model's answer is exact.
              const before = live(key, o.invokedAt)
              const after = live(key, o.completedAt!)
              const result = o.result!
              const previous =
                result._tag === "PutOk" || result._tag === "PutSkipped"
                  ? result.previous
                  : undefined
              if ((before === undefined) !== (after === undefined)) {
                // The value expired while the write ran: the coordinator's answer says which
                // side of the expiry it decided on (what it found live, if anything).
                seen.ambiguous++
                if (result._tag === "PutSkipped") break
                const found =
                  previous === undefined ? undefined : { value: previous.value, exp: previous.exp }
                model.set(key, written(step, value, exp, found))
                break
              }
              const h = before
              const skip =
                (step._tag === "Expire" && h === undefined) ||
                (step._tag === "Set" && step.cond === "nx" && h !== undefined) ||
                (step._tag === "Set" && step.cond === "xx" && h === undefined)
              if (step._tag === "Set" && step.cond !== null) seen.conditionals++
              assert.equal(
                o.result!._tag,
                skip ? "PutSkipped" : "PutOk",
                `${JSON.stringify(step)} with ${JSON.stringify(h)} at ${o.invokedAt}`,
              )
              // What the coordinator found live is what the model holds (SET … GET's answer).
              assert.equal(previous?.value, h?.value, `previous of ${JSON.stringify(step)}`)
              assert.equal(previous?.exp, h?.exp, `previous expiry of ${JSON.stringify(step)}`)
              if (skip) {
                seen.skipped++
                break
              }
              if (step._tag === "KeepTtl" && h?.exp !== undefined) seen.keptTtl++
              model.set(key, written(step, value, exp, h))
              break
            }
            case "Get": {
              const key = KEYS[step.key]!
              const o = call(step.node, { _tag: "Get", key })
              if (o.result!._tag !== "GetOk") break
              const got = Version.readAt(o.result!.obj, o.completedAt!)?.sibling.value ?? null
              const early = live(key, o.invokedAt)?.value ?? null
              const late = live(key, o.completedAt!)?.value ?? null
              assert.ok(
                got === early || got === late,
                `GET ${key} = ${got}, model ${early} (at ${o.invokedAt}) / ${late} (at ${o.completedAt})`,
              )
              seen.reads++
              if (model.has(key) && late === null) seen.expiredReads++
              break
            }
            case "Wait":
              sim.runFor(step.ms)
              break
            case "Crash":
              if (down !== undefined) break
              down = step.node
              sim.stop(sim.ids[down]!)
              break
            case "Restart":
              if (down === undefined) break
              sim.restart(sim.ids[down]!)
              assert.ok(sim.untilServing(sim.ids[down]!), "never served after a restart")
              down = undefined
              break
          }
        }
      },
    ),
    params(25),
  )
  assertFloors(seen, { reads: 100, expiredReads: 10, skipped: 10, conditionals: 40, keptTtl: 2 })
})

/** The model's entry after a write that was not skipped. */
const written = (
  step: Step,
  value: string,
  exp: number | undefined,
  held: Held | undefined,
): Held => {
  if (step._tag === "Expire") return { value: held!.value, exp }
  if (step._tag === "KeepTtl") return { value, exp: held?.exp }
  return { value, exp }
}
