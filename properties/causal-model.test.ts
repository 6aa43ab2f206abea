/**
 * Model-based suite of the causal API: fast-check command sequences of DHT.GET / DHT.PUT /
 * DHT.DEL with contexts (and plain blind writes) against a 5-node cluster, compared with the
 * causal reference model of models/causal-kv.ts: in the simulator, and on the machine layer
 * (properties/helpers/machines.ts: machines stepped directly, delivery order chosen). Replay
 * with FC_SEED, FC_PATH and FC_REPLAY_PATH.
 */
import assert from "node:assert/strict"
import { test } from "./helpers/test.ts"
import fc from "fast-check"
import * as Version from "../impl/core/version.ts"
import { defaultNetwork, Simulation } from "../impl/sim/sim.ts"
import { CausalKvModel, type WriteId } from "../models/causal-kv.ts"
import { assertFloors, commandOptions, params } from "./helpers/fc.ts"
import { type Cluster, choicesArb, Machines } from "./helpers/machines.ts"

const KEYS = ["a", "b"]

interface Model {
  readonly kv: CausalKvModel
  /** Contexts read so far per key: the real clock and the model's ids, side by side. */
  readonly contexts: Map<string, Array<{ clock: Version.Clock; ids: ReadonlySet<WriteId> }>>
}
interface Real {
  readonly cluster: Cluster
}

/** What the reads compared (machine layer): reads, reads with siblings, reordered deliveries. */
const seen = { reads: 0, siblings: 0, overtaking: 0 }

/** Values are unique (one counter for every run). */
let written = 0

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
    const ids = real.cluster.ids
    const op = real.cluster.call(ids[this.node % ids.length]!, { _tag: "Get", key })
    assert.equal(op.result?._tag, "GetOk")
    if (op.result?._tag !== "GetOk") return
    const got = Version.siblings(op.result.obj).map((d) => d.sibling.value)
    const want = [...model.kv.siblings(key).values()]
    assert.deepEqual(sorted(got), sorted(want), `siblings of ${key}`)
    seen.reads++
    if (got.length > 1) seen.siblings++
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
    const value = this.del ? null : `v${++written}`
    const saved = model.contexts.get(key) ?? []
    const pick =
      typeof this.context === "number" && saved.length > 0
        ? saved[this.context % saved.length]
        : undefined
    const clock = this.context === "blind" ? null : (pick?.clock ?? Version.emptyClock)
    const at = real.cluster.ids[this.node % real.cluster.ids.length]!
    const op = real.cluster.call(at, { _tag: "Put", key, value, context: clock })
    assert.equal(op.result?._tag, "PutOk", `write ${value} to ${key}`)
    model.kv.write(key, value, this.context === "blind" ? "blind" : (pick?.ids ?? new Set()))
  }
  toString = () =>
    `${this.del ? "Del" : "Put"}(node#${this.node}, ${KEYS[this.key % KEYS.length]}, ctx=${this.context})`
}

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

const modelRun = (cluster: Cluster, cmds: Iterable<fc.Command<Model, Real>>): void =>
  fc.modelRun(
    () => ({ model: { kv: new CausalKvModel(), contexts: new Map() }, real: { cluster } }),
    cmds,
  )

test("CAUSAL-9: the causal API matches the causal reference model", () => {
  fc.assert(
    fc.property(fc.integer(), commands, (seed, cmds) => {
      modelRun(new Simulation({ seed, nodes: 5, network: defaultNetwork }), cmds)
    }),
    params(60),
  )
})

test("CAUSAL-9: machines stepped directly, in any delivery order: the causal API matches the causal reference model", () => {
  Object.assign(seen, { reads: 0, siblings: 0, overtaking: 0 })
  fc.assert(
    fc.property(choicesArb, commands, (choices, cmds) => {
      const cluster = new Machines({ nodes: 5, choices })
      modelRun(cluster, cmds)
      seen.overtaking += cluster.counters.overtaking
    }),
    params(60),
  )
  console.log(`# CAUSAL-9, machines: ${JSON.stringify(seen)}`)
  assertFloors(seen, { reads: 500, siblings: 100, overtaking: 5000 })
})
