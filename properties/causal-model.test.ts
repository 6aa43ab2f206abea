/**
 * Model-based suite of the causal API: fast-check command sequences of DHT.GET / DHT.PUT /
 * DHT.DEL with contexts (and plain blind writes) against a simulated 5-node cluster, compared
 * with the causal reference model of models/causal-kv.ts. Replay with FC_SEED, FC_PATH and
 * FC_REPLAY_PATH.
 */
import assert from "node:assert/strict"
import { test } from "./helpers/test.ts"
import fc from "fast-check"
import * as Version from "../impl/core/version.ts"
import { defaultNetwork, Simulation } from "../impl/sim/sim.ts"
import { CausalKvModel, type WriteId } from "../models/causal-kv.ts"
import { commandOptions, params } from "./helpers/fc.ts"

const KEYS = ["a", "b"]

interface Model {
  readonly kv: CausalKvModel
  /** Contexts read so far per key: the real clock and the model's ids, side by side. */
  readonly contexts: Map<string, Array<{ clock: Version.Clock; ids: ReadonlySet<WriteId> }>>
}
interface Real {
  readonly sim: Simulation
}

const sorted = (values: ReadonlyArray<string | null>) =>
  [...values].map((v) => (v === null ? "<deleted>" : v)).sort()

class Read implements fc.Command<Model, Real> {
  constructor(
    readonly node: number,
    readonly key: number,
  ) {}
  check = () => true
  run(model: Model, real: Real): void {
    const key = KEYS[this.key % KEYS.length]!
    const op = real.sim.call(real.sim.ids[this.node % real.sim.ids.length]!, { _tag: "Get", key })
    assert.equal(op.result?._tag, "GetOk")
    if (op.result?._tag !== "GetOk") return
    const got = Version.siblings(op.result.obj).map((d) => d.sibling.value)
    const want = [...model.kv.siblings(key).values()]
    assert.deepEqual(sorted(got), sorted(want), `siblings of ${key}`)
    const list = model.contexts.get(key) ?? []
    list.push({ clock: Version.context(op.result.obj), ids: model.kv.read(key) })
    model.contexts.set(key, list)
  }
  toString = () => `Read(node#${this.node}, ${KEYS[this.key % KEYS.length]})`
}

class Write implements fc.Command<Model, Real> {
  constructor(
    readonly node: number,
    readonly key: number,
    readonly del: boolean,
    /** Which earlier read's context to send; "none" for a new sibling; "blind" for a plain SET. */
    readonly context: number | "none" | "blind",
  ) {}
  check = () => true
  run(model: Model, real: Real): void {
    const key = KEYS[this.key % KEYS.length]!
    const value = this.del ? null : `v${real.sim.history.length}`
    const saved = model.contexts.get(key) ?? []
    const pick =
      typeof this.context === "number" && saved.length > 0
        ? saved[this.context % saved.length]
        : undefined
    const clock = this.context === "blind" ? null : (pick?.clock ?? Version.emptyClock)
    const at = real.sim.ids[this.node % real.sim.ids.length]!
    const op = real.sim.call(at, { _tag: "Put", key, value, context: clock })
    assert.equal(op.result?._tag, "PutOk", `write ${value} to ${key}`)
    model.kv.write(key, value, this.context === "blind" ? "blind" : (pick?.ids ?? new Set()))
  }
  toString = () =>
    `${this.del ? "Del" : "Put"}(node#${this.node}, ${KEYS[this.key % KEYS.length]}, ctx=${this.context})`
}

test("CAUSAL-9: the causal API matches the causal reference model", () => {
  const commands = fc.commands(
    [
      fc.tuple(fc.nat(9), fc.nat(9)).map(([n, k]) => new Read(n, k)),
      fc
        .tuple(
          fc.nat(9),
          fc.nat(9),
          fc.boolean(),
          fc.oneof(fc.nat(20), fc.constantFrom("none" as const, "blind" as const)),
        )
        .map(([n, k, d, c]) => new Write(n, k, d, c)),
    ],
    commandOptions(80),
  )
  fc.assert(
    fc.property(fc.integer(), commands, (seed, cmds) => {
      const sim = new Simulation({ seed, nodes: 5, network: defaultNetwork })
      fc.modelRun(
        () => ({ model: { kv: new CausalKvModel(), contexts: new Map() }, real: { sim } }),
        cmds,
      )
    }),
    params(60),
  )
})
