/**
 * RECLAIM-1 and RECLAIM-3 on the machine layer: five machines stepped directly, fast-check
 * choosing which message is delivered next (properties/helpers/machines.ts), under generated
 * schedules of writes, deletes and reads through any node, crashes, restarts, partitions and
 * waits, with a grace short enough (300 ms) that keys die, are reclaimed, and are written again
 * inside a run. A down member or a hint held anywhere holds reclamation back.
 *
 *  - RECLAIM-1: no node ever holds, and (strict quorums) no read after an acknowledged delete
 *    returns, a value that delete superseded — through reclamation;
 *  - RECLAIM-3: once the cluster is quiet (healed, every node back), every dead key and every
 *    hint is reclaimed on every node, and the replicas agree.
 *
 * Messages here arrive the moment they are sent (no latency), so the message-age rule of
 * RECLAIM-1 never fires on this layer; the simulator's suite (reclaim.test.ts) holds messages
 * behind cuts for that. What this layer adds: any delivery order, and reclamation's rounds and
 * calm rule with every interleaving of answers the choices make.
 */
import assert from "node:assert/strict"
import fc from "fast-check"
import type { ClientResult } from "../impl/core/messages.ts"
import * as Version from "../impl/core/version.ts"
import type { Operation } from "../impl/sim/sim.ts"
import { assertFixedBatch, assertFloors, params } from "./helpers/fc.ts"
import { choicesArb, deadOrHinted, Machines, replicasAgree } from "./helpers/machines.ts"
import { test } from "./helpers/test.ts"

const KEYS = ["a", "b", "c", "d"]
const NODES = 5
const CONFIG = {
  tombstoneGraceMs: 300,
  maxMessageAgeMs: 2500,
  maxClockSkewMs: 50,
  reapIntervalMs: 200,
  handoffIntervalMs: 200,
}

type Action =
  | { readonly _tag: "Set" | "Del" | "Read"; readonly key: number; readonly node: number }
  | { readonly _tag: "Crash" | "Restart"; readonly node: number }
  | { readonly _tag: "Partition"; readonly mask: number }
  | { readonly _tag: "Heal" }
  | { readonly _tag: "Wait"; readonly ms: number }

const node = fc.nat(NODES - 1)
const keyed = (tag: "Set" | "Del" | "Read") =>
  fc.record({ _tag: fc.constant(tag), key: fc.nat(KEYS.length - 1), node })
const actionArb: fc.Arbitrary<Action> = fc.oneof(
  { weight: 4, arbitrary: keyed("Set") },
  { weight: 3, arbitrary: keyed("Del") },
  { weight: 3, arbitrary: keyed("Read") },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Crash" as const), node }) },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Restart" as const), node }) },
  {
    weight: 1,
    arbitrary: fc.record({
      _tag: fc.constant("Partition" as const),
      mask: fc.integer({ min: 1, max: 30 }),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ _tag: "Heal" as const }) },
  {
    weight: 3,
    arbitrary: fc.record({
      _tag: fc.constant("Wait" as const),
      ms: fc.constantFrom(50, 400, 3000, 3000),
    }),
  },
)

/**
 * The schedule that needs the calm rule (the simulator's suite has it too): key a's owner is
 * down, so a write of a leaves a hint on a substitute; the substitute is cut off before it can
 * hand the hint over, the owner comes back, a is deleted and left to die; once healed, the hint
 * reaches the owner. Reclaimed before that (a hint held anywhere, a member not calm), the hint
 * would bring the deleted value back. Runs first, in AP mode, every delivery in order.
 */
const hintSchedule = ((): ReadonlyArray<Action> => {
  const walk = new Machines({ nodes: NODES, choices: [0], node: { n: 4 } }).replicasOf("a")
  const index = (id: string) => Number(id.slice(1))
  const [first, owner, , substitute] = walk.map(index) as [number, number, number, number]
  return [
    { _tag: "Crash", node: owner },
    { _tag: "Wait", ms: 3000 },
    { _tag: "Wait", ms: 3000 },
    { _tag: "Set", key: 0, node: first },
    { _tag: "Partition", mask: 1 << substitute },
    { _tag: "Restart", node: owner },
    { _tag: "Wait", ms: 3000 },
    { _tag: "Del", key: 0, node: first },
    { _tag: "Wait", ms: 3000 },
    { _tag: "Wait", ms: 3000 },
    { _tag: "Wait", ms: 3000 },
    { _tag: "Heal" },
    { _tag: "Wait", ms: 3000 },
  ]
})()

const isAck = (r: ClientResult | undefined): r is Extract<ClientResult, { _tag: "PutOk" }> =>
  r?._tag === "PutOk"

/** Live siblings of `obj` whose events an acknowledged delete's context covered. */
const superseded = (obj: Version.Obj, deletes: ReadonlyArray<Operation>): Array<string> =>
  Version.siblings(obj)
    .filter((d) => d.sibling.value !== null)
    .filter((d) =>
      deletes.some(
        (w) => isAck(w.result) && Version.descends(w.result.context, [[d.actor, d.counter]]),
      ),
    )
    .map((d) => `${d.sibling.value} (${d.actor}:${d.counter})`)

const newSeen = () => ({
  deletesAcked: 0,
  reapsDuringRun: 0,
  reaps: 0,
  zombieChecks: 0,
  readsAfterDelete: 0,
  overtaking: 0,
})

const run = (
  choices: ReadonlyArray<number>,
  mode: "cp" | "ap",
  schedule: ReadonlyArray<Action>,
  seen: ReturnType<typeof newSeen>,
  unsafeReclaim?: "no-calm",
): void => {
  let reaps = 0
  const cluster = new Machines({
    nodes: NODES,
    choices,
    node: { mode, ...CONFIG, unsafeReclaim },
    onCommands: (_id, _event, commands) => {
      for (const c of commands) if (c._tag === "Send" && c.message._tag === "Reap") reaps++
    },
  })
  const ids = cluster.ids
  const at = (i: number) => {
    for (let k = 0; k < NODES; k++)
      if (cluster.isUp(ids[(i + k) % NODES]!)) return ids[(i + k) % NODES]!
    return undefined
  }
  const writes: Array<Operation> = []
  /** Each read, with the deletes of its key acknowledged when it was invoked. */
  const reads: Array<{ readonly op: Operation; readonly after: ReadonlyArray<Operation> }> = []
  let n = 0
  for (const a of schedule) {
    switch (a._tag) {
      case "Set":
      case "Del": {
        const where = at(a.node)
        if (where === undefined) break
        const value = a._tag === "Set" ? `v${n++}` : null
        const op = { _tag: "Put" as const, key: KEYS[a.key]!, value, context: null }
        writes.push(cluster.call(where, op, 5000))
        break
      }
      case "Read": {
        const where = at(a.node)
        if (where === undefined) break
        const key = KEYS[a.key]!
        const after = writes.filter(
          (w) => w.op._tag === "Put" && w.op.key === key && w.op.value === null && isAck(w.result),
        )
        reads.push({ op: cluster.call(where, { _tag: "Get", key }, 5000), after })
        break
      }
      case "Crash":
        // Keep a majority running, so that quorums remain possible.
        if (ids.filter((id) => cluster.isUp(id)).length > 3) cluster.stop(ids[a.node]!)
        break
      case "Restart":
        cluster.restart(ids[a.node]!)
        break
      case "Partition": {
        const left = ids.filter((_, i) => (a.mask >> i) & 1)
        const right = ids.filter((_, i) => !((a.mask >> i) & 1))
        cluster.heal()
        if (left.length > 0 && right.length > 0) cluster.partition([left, right])
        break
      }
      case "Heal":
        cluster.heal()
        break
      case "Wait":
        cluster.runFor(a.ms)
        break
    }
  }
  seen.reapsDuringRun += reaps
  // Quiet: heal, every node back; every dead key and hint must then be reclaimed everywhere.
  cluster.heal()
  for (const id of ids) cluster.restart(id)
  const deadLeft = (): number => deadOrHinted(cluster)
  const converged = (): boolean => replicasAgree(cluster, KEYS)
  const quiet = cluster.runUntil(() => deadLeft() === 0 && converged(), 120_000)
  // RECLAIM-3: nothing dead and no hint is left anywhere, and the replicas agree.
  assert.ok(
    quiet,
    `RECLAIM-3: ${deadLeft()} dead objects or hints left (converged: ${converged()})`,
  )
  seen.reaps += reaps
  seen.overtaking += cluster.counters.overtaking
  const deletes = writes.filter(
    (w) => w.op._tag === "Put" && w.op.value === null && isAck(w.result),
  )
  seen.deletesAcked += deletes.length
  for (const k of KEYS) {
    const dels = deletes.filter((w) => w.op._tag === "Put" && w.op.key === k)
    // RECLAIM-1: no node holds a value an acknowledged delete superseded ...
    for (const id of ids) {
      const z = superseded(cluster.stored(id, k) ?? Version.empty, dels)
      seen.zombieChecks++
      assert.deepEqual(z, [], `RECLAIM-1: ${id} holds ${k} = ${z.join(", ")} after its delete`)
    }
    // ... nor, with strict quorums, does a read invoked after the delete was acknowledged.
    if (mode !== "cp") continue
    for (const { op: r, after } of reads) {
      if (r.op._tag !== "Get" || r.op.key !== k || r.result?._tag !== "GetOk") continue
      if (after.length === 0) continue
      seen.readsAfterDelete++
      const z = superseded(r.result.obj, after)
      assert.deepEqual(z, [], `RECLAIM-1: a read of ${k} (#${r.id}) returned ${z.join(", ")}`)
    }
  }
}

test("RECLAIM-1, RECLAIM-3: machines stepped directly, in any delivery order: reclaimed keys never come back, and once quiet only live keys remain", () => {
  const seen = newSeen()
  const property = fc.property(
    choicesArb,
    fc.constantFrom("cp" as const, "ap" as const),
    fc.array(actionArb, { minLength: 10, maxLength: 60 }),
    (choices, mode, schedule) => run(choices, mode, schedule, seen),
  )
  // Reclamations during a run are rare and clustered (2 to 18 in clean runs of the random batch
  // sampled by `npm run floors`, against a floor of 3): 15 runs from seed 2 hold 8 of them
  // (seeds 1-6 tried: 2 to 8), so the floor holds on unchanged code whatever the random draw.
  assertFixedBatch(property, 15, 2)
  fc.assert(
    property,
    params(60, {
      examples: [
        [[0], "ap", [...hintSchedule]] as [ReadonlyArray<number>, "cp" | "ap", Array<Action>],
      ],
    }),
  )
  console.log(`# RECLAIM, machines: ${JSON.stringify(seen)}`)
  assertFloors(seen, {
    deletesAcked: 150,
    reapsDuringRun: 3,
    reaps: 100,
    zombieChecks: 500,
    readsAfterDelete: 15,
    overtaking: 2000,
  })
})

test("RECLAIM-1: negative control: machines that reclaim without waiting for every member to be calm (unsafeReclaim no-calm) reclaim a key while a cut-off substitute holds a hint of it, and the hint brings the deleted value back", () => {
  const seen = newSeen()
  assert.throws(
    () => run([0], "ap", hintSchedule, seen, "no-calm"),
    /^AssertionError.*RECLAIM-1: n\d holds a = v0 \(n\d:\d+\) after its delete/s,
  )
})
