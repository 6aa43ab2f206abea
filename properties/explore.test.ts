/**
 * Exhaustive small-scope exploration of the real node machine (impl/explore/explore.ts,
 * `npm run explore`): every interleaving of deliveries, losses, a duplicate, a crash and its
 * restart, a timer firing and client invocations that the small scope bounds allow, with the
 * safety predicates checked in every reachable state. A broken read quorum (the nodes run R=1,
 * the checker assumes R=2) must produce a counterexample (CAUSAL-4; with read-your-writes left
 * unchecked, CAUSAL-3), and each predicate must have judged enough reads and states, so the
 * exploration cannot pass by looking at nothing. Two further checks keep the explorer honest: its plain-data copy of the
 * executor's rule releases exactly what impl/core/executor.ts releases, and the parts of a
 * machine state it shares between states are never changed by a step.
 */
import assert from "node:assert/strict"
import fc from "fast-check"
import * as Executor from "../impl/core/executor.ts"
import { NodeId } from "../impl/core/ids.ts"
import type { Command } from "../impl/core/messages.ts"
import * as Version from "../impl/core/version.ts"
import {
  brokenQuorum,
  type Checked,
  Explorer,
  execute,
  explore,
  lastWriteWins,
  releaseFirst,
  small,
} from "../impl/explore/explore.ts"
import { assertFloors, params } from "./helpers/fc.ts"
import { test } from "./helpers/test.ts"

/**
 * States each scope of the small configuration explores at least (measured counts, less a
 * margin): fewer would mean part of the space went unexplored (a transition no longer enabled,
 * a predicate that stops early), which a run that merely passes would not show.
 */
const FLOORS = [60_000, 70_000, 30_000, 20_000, 6_000]

/**
 * What the predicates judged over the five scopes at least (see `Checked`; measured: 26,929
 * reads after an acknowledged superseding write, 34,355 reads with siblings, 165 quiescent
 * states, 32 reads that purged): a predicate that never has anything to judge would pass vacuously.
 */
const JUDGED: Checked = { superseded: 20_000, siblings: 25_000, quiescent: 100, purges: 20 }

test("KV-9, CAUSAL-1, CAUSAL-2, CAUSAL-3, CAUSAL-4, CAUSAL-5, CAUSAL-6, CAUSAL-8, DUR-1: exhaustive exploration of the real machine (3 nodes, N=3 R=2 W=2 CP, 2 clients × 2 operations under any loss and reordering; with a crash and restart, a duplicate, a timer firing, or purges) reaches no state that violates a safety predicate, and every quiescent state has converged", () => {
  assert.equal(small.length, FLOORS.length)
  const judged: Checked = { superseded: 0, siblings: 0, quiescent: 0, purges: 0 }
  small.forEach((scope, i) => {
    const report = explore(scope)
    console.log(
      `# explore "${report.scope}": ${report.explored} states explored, ${report.distinct} ` +
        `distinct, ${report.transitions} transitions, ${report.terminal} final, depth ` +
        `${report.maxDepth}, judged ${JSON.stringify(report.checked)}, ${report.ms} ms ` +
        `(CPU ${report.cpuMs} ms)`,
    )
    for (const k of Object.keys(judged) as Array<keyof Checked>) judged[k] += report.checked[k]
    assert.equal(
      report.violation,
      undefined,
      report.violation &&
        `${report.violation.id}: ${report.violation.message}\n${report.violation.trace.join("\n")}`,
    )
    assert.equal(report.budgetHit, false, `"${scope.name}" must be explored exhaustively`)
    const floor = FLOORS[i]!
    assert.ok(report.explored >= floor, `only ${report.explored} states explored (floor ${floor})`)
    assert.ok(report.terminal > 0, "no state in which every client finished was reached")
  })
  assertFloors(judged, JUDGED)
})

test("CAUSAL-4: the same exploration with a broken read quorum (the nodes run R=1, the checker assumes R=2) finds a read that misses an acknowledged write, and prints the trace", () => {
  const report = explore(brokenQuorum(small[0]!), { strategy: "bfs" })
  const v = report.violation
  assert.ok(v !== undefined, "a broken quorum count went unnoticed")
  assert.equal(v.id, "CAUSAL-4", v.message)
  console.log(`# ${v.id}: ${v.message}\n# ${v.trace.join("\n# ")}`)
  // Shortest first: the client's write, one replica's copy and ack, the read elsewhere.
  assert.ok(v.trace.some((l) => l.includes("PutOk")) && v.trace.some((l) => l.includes("GetOk")))
  assert.ok(report.maxDepth <= 6, `the shortest counterexample is short (depth ${report.maxDepth})`)
})

test("CAUSAL-3: the same exploration with a broken read quorum (the nodes run R=1) and read-your-writes left unchecked finds a read that returns a value an acknowledged write had superseded", () => {
  const report = explore({ ...brokenQuorum(small[0]!), readYourWrites: false }, { strategy: "bfs" })
  const v = report.violation
  assert.ok(v !== undefined, "a superseded value came back unnoticed")
  assert.equal(v.id, "CAUSAL-3", v.message)
  assert.match(v.message, /began after .* was acknowledged, which superseded .*, and returned/)
  console.log(`# ${v.id}: ${v.message}\n# ${v.trace.join("\n# ")}`)
  assert.ok(report.checked.superseded > 0)
  assert.ok(report.maxDepth <= 8, `the shortest counterexample is short (depth ${report.maxDepth})`)
})

test("CAUSAL-7: with a last-write-wins merge in place of sibling sync (every key in an lww namespace), the exploration finds an acknowledged write lost (CAUSAL-1 fails)", () => {
  const report = explore(lastWriteWins(small[0]!))
  const v = report.violation
  assert.ok(v !== undefined, "lww passed the no-lost-write check: the check has no teeth")
  assert.equal(v.id, "CAUSAL-1", v.message)
  assert.match(
    v.message,
    /^every client finished and the nodes hold k=.*: SET k=c\d+v\d+ at n\d \(dot n\d:\d+\) is gone, superseded by no later write$/,
  )
  console.log(`# ${v.id}: ${v.message}\n# ${v.trace.join("\n# ")}`)
})

test("explorer: its plain-data executor releases exactly what impl/core/executor.ts releases, in the same order", () => {
  type Kind = "send" | "reply"
  const outArb = fc.array(fc.constantFrom<Kind>("send", "send", "reply"), { maxLength: 3 })
  const stepArb = fc.oneof(
    fc.record({
      send: outArb,
      persist: fc.nat(3),
      afterPersist: outArb,
      timers: fc.nat(2),
    }),
    fc.constant("durable" as const),
  )
  fc.assert(
    fc.property(fc.array(stepArb, { maxLength: 40 }), (steps) => {
      let id = 0
      const outbound = (kind: Kind): Executor.Outbound => {
        const n = id++
        return kind === "send"
          ? { _tag: "Send", to: NodeId("n1"), message: { _tag: "WriteAck", rid: n } }
          : { _tag: "Reply", client: n, result: { _tag: "PutSkipped" } }
      }
      const times = <T>(k: number, f: (n: number) => T): Array<T> =>
        Array.from({ length: k }, () => f(id++))
      // The real executor, its writes made durable oldest first.
      const real: Array<Command> = []
      const waiting: Array<() => void> = []
      const ex = new Executor.Executor({
        write: () => (done) => waiting.push(done),
        run: (c) => real.push(c),
        setTimer: (c) => real.push(c),
        writeFailed: () => assert.fail("no write fails here"),
      })
      // The explorer's rule.
      const mine: Array<Command> = []
      let segments: Parameters<typeof execute>[0] = []
      for (const step of steps) {
        if (step === "durable") {
          if (segments.length === 0) continue
          waiting.shift()!()
          const r = releaseFirst(segments)
          segments = r.segments
          mine.push(...r.first.held)
          continue
        }
        const ready: Executor.Ready = {
          send: step.send.map(outbound),
          persist: times(step.persist, (n) => ({
            _tag: "Persist",
            key: `k${n}`,
            obj: Version.empty,
          })),
          afterPersist: step.afterPersist.map(outbound),
          timers: times(step.timers, (n) => ({
            _tag: "SetTimer",
            rid: n,
            kind: "Deadline",
            at: n,
          })),
        }
        ex.execute(ready)
        const r = execute(segments, ready)
        segments = r.segments
        // Both run what is not held in order, then set the timers (never held).
        mine.push(...r.run, ...ready.timers)
        assert.equal(r.timers.length, ready.timers.length)
      }
      assert.deepEqual(mine, real)
      assert.equal(segments.length, ex.inFlight)
    }),
    params(300),
  )
})

test("explorer: it shares between states only what the request path never changes (checked on every step of a bounded exploration)", () => {
  const explorer = new Explorer({ ...small[1]!, maxStates: 1500 })
  explorer.paranoid = true
  const report = explorer.run()
  assert.equal(report.violation, undefined, report.violation?.message)
  assert.equal(report.explored, 1500)
})
