/**
 * The history checker (spec/history.ts) that `dht verify` runs on real clusters (KV-9).
 *
 * Hand-written histories that MUST be flagged (the lost-write schedule of a forwarded SET re-run
 * by a paused replica, values from nowhere, divergence, stale reads, resurrection, a pipelined
 * read that misses the write it was pipelined after) and ones that must pass (concurrent, later
 * and indeterminate writes winning); then sequential histories generated from a register model
 * with siblings, deletes, failed and indeterminate operations and pipelined reads (CONN-1: sent
 * with the operation before them, started once it has its result), which must all pass, and the
 * same histories mutated, which each check must fail.
 */
import assert from "node:assert/strict"
import { test } from "./helpers/test.ts"
import fc from "fast-check"
import {
  type Kind,
  check,
  checkConvergence,
  checkFromNowhere,
  checkLost,
  checkResurrection,
  checkSessions,
  checkSuperseded,
  type FinalRead,
  type History,
  type Op,
  type Outcome,
  sloppyPromises,
  strictPromises,
} from "../spec/history.ts"
import { params } from "./helpers/fc.ts"

// ---------------------------------------------------------------------------------------------
// Hand-written histories

const NODES = ["n0", "n1", "n2", "n3", "n4"]

class Builder {
  readonly ops: Array<Op> = []
  readonly final: Array<FinalRead> = []

  private add(op: Omit<Op, "id">): Op {
    const full = { ...op, id: this.ops.length }
    this.ops.push(full)
    return full
  }

  write(
    client: string,
    key: string,
    value: string,
    invokedAt: number,
    completedAt: number | undefined,
    outcome: Outcome = "ok",
    kind: Kind = "write",
  ): Op {
    return this.add({ client, key, kind, value, invokedAt, completedAt, outcome })
  }

  del(
    client: string,
    key: string,
    invokedAt: number,
    completedAt: number,
    outcome: Outcome = "ok",
  ) {
    return this.add({ client, key, kind: "delete", invokedAt, completedAt, outcome })
  }

  /** DHT.DEL with the context of a read invoked at `readAt` that returned `seen`. */
  causalDel(
    client: string,
    key: string,
    seen: ReadonlyArray<string>,
    readAt: number,
    invokedAt: number,
    completedAt: number,
  ): Op {
    return this.add({
      client,
      key,
      kind: "delete",
      context: seen,
      contextReadAt: readAt,
      invokedAt,
      completedAt,
      outcome: "ok",
    })
  }

  /** A read; `after`: pipelined on the same connection right after that operation (CONN-1). */
  read(
    client: string,
    key: string,
    values: ReadonlyArray<string>,
    invokedAt: number,
    completedAt: number,
    after?: Op,
  ): Op {
    return this.add({
      client,
      key,
      kind: "read",
      values,
      invokedAt,
      completedAt,
      outcome: "ok",
      ...(after === undefined ? {} : { after: after.id }),
    })
  }

  finalEverywhere(key: string, values: ReadonlyArray<string>, nodes = NODES): this {
    for (const node of nodes) this.final.push({ node, key, values })
    return this
  }

  get history(): History {
    return { ops: this.ops, final: this.final }
  }
}

test("KV-9: the history checker flags the lost-write schedule: a forwarded SET re-run by a paused replica supersedes a later acknowledged write", () => {
  // n3 is not a replica of k: it forwards SET k v1 to replica n0, which is paused; n3 fails
  // over to n1, which acknowledges; the client then writes v2 (acknowledged). n0 resumes and
  // runs its stale copy of SET k v1, whose read phase sees v2 and supersedes it.
  const h = new Builder()
  h.write("c1", "k", "v1", 1000, 7200)
  const v2 = h.write("c1", "k", "v2", 7300, 7350)
  h.finalEverywhere("k", ["v1"])
  const report = check(h.history)
  assert.equal(report.ok, false)
  assert.equal(report.counts.lost, 1)
  assert.equal(report.counts.acknowledged, 2)
  const [violation] = report.violations
  assert.equal(violation?.check, "lost")
  assert.equal(violation?.key, "k")
  assert.equal(violation?.ops[0], v2.id, "the lost write is v2")
  assert.deepEqual(violation?.nodes, NODES)
  assert.match(violation!.message, /lost write: #1 write "v2"/)
  // Lost at one node only is lost too (and divergence).
  const one = new Builder()
  one.write("c1", "k", "v1", 1000, 7200)
  one.write("c1", "k", "v2", 7300, 7350)
  one.finalEverywhere("k", ["v2"], ["n0", "n1", "n2", "n3"]).finalEverywhere("k", ["v1"], ["n4"])
  const partly = check(one.history)
  assert.equal(partly.counts.lost, 1)
  assert.deepEqual(partly.checks.lost.violations[0]?.nodes, ["n4"])
  assert.equal(partly.counts.diverged, 1)
  // The same run where v2 survived passes.
  const good = new Builder()
  good.write("c1", "k", "v1", 1000, 7200)
  good.write("c1", "k", "v2", 7300, 7350)
  good.finalEverywhere("k", ["v2"])
  assert.equal(check(good.history).ok, true)
  // Had the client timed out on v1 (indeterminate), v1 winning later is allowed.
  const timedOut = new Builder()
  timedOut.write("c1", "k", "v1", 1000, 13_000, "indeterminate")
  timedOut.write("c1", "k", "v2", 13_100, 13_150)
  timedOut.finalEverywhere("k", ["v1"])
  assert.equal(check(timedOut.history).ok, true)
})

test("KV-9: the history checker lets concurrent, later and indeterminate writes and deletes win over an acknowledged write", () => {
  const cases: Array<[string, (h: Builder) => void]> = [
    [
      "a concurrent write wins",
      (h) => {
        h.write("c1", "k", "a", 0, 100)
        h.write("c2", "k", "b", 50, 150)
        h.finalEverywhere("k", ["a"])
      },
    ],
    [
      "concurrent writes as siblings",
      (h) => {
        h.write("c1", "k", "a", 0, 100, "ok", "put")
        h.write("c2", "k", "b", 50, 150, "ok", "put")
        h.finalEverywhere("k", ["b", "a"])
      },
    ],
    [
      "a later write wins",
      (h) => {
        h.write("c1", "k", "a", 0, 100)
        h.write("c1", "k", "b", 200, 300)
        h.finalEverywhere("k", ["b"])
      },
    ],
    [
      "an indeterminate write invoked earlier lands later",
      (h) => {
        h.write("c2", "k", "x", 0, 5000, "indeterminate")
        h.write("c1", "k", "a", 6000, 6100)
        h.finalEverywhere("k", ["x"])
      },
    ],
    [
      "a write that never answered lands later",
      (h) => {
        h.write("c2", "k", "x", 0, undefined, "indeterminate")
        h.write("c1", "k", "a", 6000, 6100)
        h.finalEverywhere("k", ["x"])
      },
    ],
    [
      "a later acknowledged delete",
      (h) => {
        h.write("c1", "k", "a", 0, 100)
        h.del("c2", "k", 200, 300)
        h.finalEverywhere("k", [])
      },
    ],
    [
      "an indeterminate delete",
      (h) => {
        h.del("c2", "k", 0, 9000, "indeterminate")
        h.write("c1", "k", "a", 9500, 9600)
        h.finalEverywhere("k", [])
      },
    ],
    [
      "an older sibling beside the tombstone of a delete that removed the acknowledged write (AP)",
      (h) => {
        h.write("c1", "k", "old", 0, 100)
        h.write("c2", "k", "a", 200, 300)
        h.del("c2", "k", 400, 500)
        h.finalEverywhere("k", ["old"])
      },
    ],
  ]
  for (const [name, build] of cases) {
    const h = new Builder()
    build(h)
    const report = check(h.history, { promises: sloppyPromises })
    assert.equal(report.counts.lost, 0, name)
    assert.equal(report.ok, true, `${name}: ${report.violations.map((v) => v.message).join("; ")}`)
  }
})

test("KV-9: the history checker flags a value from nowhere: never written, written to another key, by a definitely failed write, or read before its write was invoked", () => {
  const nowhere = new Builder()
  nowhere.write("c1", "k", "a", 0, 10)
  nowhere.read("c2", "k", ["zzz"], 20, 30)
  nowhere.finalEverywhere("k", ["a"])
  const r1 = check(nowhere.history)
  assert.equal(r1.counts.fromNowhere, 1)
  assert.equal(r1.ok, false)
  assert.match(
    r1.violations[0]!.message,
    /value from nowhere: .* returned "zzz" for k; no operation wrote it/,
  )

  const otherKey = new Builder()
  otherKey.write("c1", "j", "a", 0, 10)
  otherKey.finalEverywhere("k", ["a"]).finalEverywhere("j", ["a"])
  const r2 = checkFromNowhere(otherKey.history)
  assert.equal(r2.found, NODES.length, "every node's final read of k holds j's value")
  assert.match(r2.violations[0]!.message, /written to another key, j/)

  const failed = new Builder()
  failed.write("c1", "k", "bad", 0, 10, "failed")
  failed.read("c2", "k", ["bad"], 20, 30)
  failed.finalEverywhere("k", [])
  const r3 = checkFromNowhere(failed.history)
  assert.equal(r3.found, 1)
  assert.match(r3.violations[0]!.message, /definitely failed/)

  const early = new Builder()
  early.read("c2", "k", ["a"], 0, 10)
  early.write("c1", "k", "a", 20, 30)
  early.finalEverywhere("k", ["a"])
  const r4 = checkFromNowhere(early.history)
  assert.equal(r4.found, 1)
  assert.match(r4.violations[0]!.message, /invoked only after the read completed/)
})

test("KV-9: the history checker flags divergence between the nodes' final siblings, and a node it could not read", () => {
  const h = new Builder()
  h.write("c1", "k", "a", 0, 10, "ok", "put")
  h.write("c2", "k", "b", 5, 15, "ok", "put")
  h.finalEverywhere("k", ["a", "b"], ["n0", "n1"]).finalEverywhere("k", ["b", "a"], ["n2", "n3"])
  assert.equal(checkConvergence(h.history).found, 0, "sibling order does not matter")
  h.finalEverywhere("k", ["a"], ["n4"])
  const diverged = check(h.history)
  assert.equal(diverged.counts.diverged, 1)
  assert.equal(diverged.ok, false)
  assert.match(diverged.checks.convergence.violations[0]!.message, /n4: \["a"\]/)

  const unreadable = new Builder()
  unreadable.write("c1", "k", "a", 0, 10)
  unreadable.finalEverywhere("k", ["a"], ["n0", "n1"])
  unreadable.final.push({ node: "n2", key: "k", error: "connection refused" })
  const r = checkConvergence(unreadable.history)
  assert.equal(r.found, 1)
  assert.match(r.violations[0]!.message, /n2: unreadable \(connection refused\)/)
})

test("KV-9: the history checker counts stale reads (read-your-writes, monotonic reads) and makes them violations only where the mode promises them", () => {
  const ryw = new Builder()
  ryw.write("c1", "k", "a", 0, 10)
  ryw.write("c1", "k", "b", 20, 30)
  ryw.read("c1", "k", ["a"], 40, 50)
  ryw.finalEverywhere("k", ["b"])
  const strict = checkSessions(ryw.history, { promises: strictPromises })
  assert.equal(strict.found, 1)
  assert.equal(strict.violated, 1)
  assert.match(strict.violations[0]!.message, /read-your-writes/)
  const sloppy = check(ryw.history, { promises: sloppyPromises })
  assert.equal(sloppy.counts.stale, 1, "counted")
  assert.equal(sloppy.ok, true, "not a violation when not promised")
  assert.equal(sloppy.checks.sessions.notPromised.length, 1)

  const monotonic = new Builder()
  monotonic.write("c1", "k", "a", 0, 10)
  monotonic.write("c1", "k", "b", 20, 30)
  monotonic.read("c2", "k", ["b"], 40, 50)
  monotonic.read("c2", "k", ["a"], 60, 70)
  monotonic.finalEverywhere("k", ["b"])
  const m = checkSessions(monotonic.history, { promises: strictPromises })
  assert.equal(m.found, 1)
  assert.match(m.violations[0]!.message, /monotonic reads/)
  // A value seen from a write still in flight may vanish again: no monotonic-read finding.
  const inFlight = new Builder()
  inFlight.write("c1", "k", "a", 0, 10)
  inFlight.write("c1", "k", "b", 20, 500)
  inFlight.read("c2", "k", ["b"], 40, 50)
  inFlight.read("c2", "k", ["a"], 60, 70)
  inFlight.finalEverywhere("k", ["b"])
  assert.equal(checkSessions(inFlight.history).found, 0)
  // Own delete: reading nothing is reading it; reading the older value is stale.
  const ownDelete = new Builder()
  ownDelete.write("c1", "k", "a", 0, 10)
  ownDelete.del("c1", "k", 20, 30)
  ownDelete.read("c1", "k", [], 40, 50)
  ownDelete.read("c1", "k", ["a"], 60, 70)
  ownDelete.finalEverywhere("k", [])
  assert.equal(checkSessions(ownDelete.history).found, 1)
})

test("CONN-1: the history checker judges a pipelined read from its effective start: a GET pipelined after an acknowledged SET that returns the older value is a read-your-writes violation", () => {
  // SET k a, acknowledged; then one pipeline on one connection: SET k b; GET k, both sent at 20.
  // The GET starts only once the SET has its result (30), so it must read b (or newer).
  const piped = new Builder()
  piped.write("c1", "k", "a", 0, 10)
  const b = piped.write("c1", "k", "b", 20, 30)
  const get = piped.read("c1", "k", ["a"], 20, 31, b)
  piped.finalEverywhere("k", ["b"])
  const strict = checkSessions(piped.history, { promises: strictPromises })
  assert.equal(strict.found, 1)
  assert.equal(strict.violated, 1)
  assert.deepEqual(strict.pipelined, { checked: 1, found: 1 })
  assert.deepEqual(strict.violations[0]!.ops, [get.id, b.id])
  assert.match(
    strict.violations[0]!.message,
    /^stale read \(read-your-writes\): #2 read by c1 \(invoked 20, pipelined after #1, answered ok at 31\) returned \["a"\], not the client's own earlier #1 write "b"/,
  )
  assert.equal(check(piped.history, { promises: strictPromises }).ok, false)
  // Sloppy quorums: counted, not a violation.
  const sloppy = check(piped.history, { promises: sloppyPromises })
  assert.equal(sloppy.ok, true)
  assert.equal(sloppy.counts.stale, 1)
  assert.equal(sloppy.checks.sessions.notPromised.length, 1)
  assert.deepEqual(sloppy.checks.sessions.pipelined, { checked: 1, found: 1 })
  // Reading b, or nil after a pipelined DEL, is what CONN-1 promises.
  const fine = new Builder()
  fine.write("c1", "k", "a", 0, 10)
  const b2 = fine.write("c1", "k", "b", 20, 30)
  fine.read("c1", "k", ["b"], 20, 31, b2)
  const del = fine.del("c1", "k", 20, 32)
  fine.read("c1", "k", [], 20, 33, del)
  fine.finalEverywhere("k", [])
  const ok = checkSessions(fine.history)
  assert.equal(ok.found, 0)
  assert.deepEqual(ok.pipelined, { checked: 2, found: 0 })
  // The same history without `after`: the GET was invoked before the SET completed, so it may
  // have run before it; reading a (the last write done before it was invoked) is fine.
  const unpiped = new Builder()
  unpiped.write("c1", "k", "a", 0, 10)
  unpiped.write("c1", "k", "b", 20, 30)
  unpiped.read("c1", "k", ["a"], 20, 31)
  unpiped.finalEverywhere("k", ["b"])
  const none = checkSessions(unpiped.history, { promises: strictPromises })
  assert.equal(none.found, 0)
  assert.deepEqual(none.pipelined, { checked: 0, found: 0 })
  assert.equal(check(unpiped.history, { promises: strictPromises }).ok, true)
  // A pipelined predecessor that is indeterminate (the client may have given up before the
  // server had its result) gives no bound: the read is judged from its invocation.
  const timedOut = new Builder()
  timedOut.write("c1", "k", "a", 0, 10)
  const lost = timedOut.write("c1", "k", "b", 20, 8020, "indeterminate")
  timedOut.read("c1", "k", ["a"], 20, 8021, lost)
  timedOut.finalEverywhere("k", ["b"])
  assert.equal(checkSessions(timedOut.history).found, 0)
  // Monotonic reads within a pipeline: GET; GET after an acknowledged write of another client
  // was read by the first GET: the second (pipelined after it) must not lose it.
  const mono = new Builder()
  mono.write("c2", "k", "a", 0, 10)
  const first = mono.read("c1", "k", ["a"], 20, 30)
  mono.read("c1", "k", [], 20, 30, first)
  mono.finalEverywhere("k", ["a"])
  const m = checkSessions(mono.history)
  assert.equal(m.found, 1)
  assert.match(m.violations[0]!.message, /monotonic reads/)
})

test("KV-9: the history checker flags a value written before an acknowledged delete that a later read or a final read returns", () => {
  const h = new Builder()
  const a = h.write("c1", "k", "a", 0, 10)
  const d = h.del("c2", "k", 20, 30)
  h.read("c3", "k", ["a"], 25, 35) // began before the delete completed: may see a
  const late = h.read("c3", "k", ["a"], 40, 50)
  h.finalEverywhere("k", ["a"], ["n0"]).finalEverywhere("k", [], ["n1", "n2"])
  const r = checkResurrection(h.history, { promises: strictPromises })
  assert.equal(r.found, 2, "the late read and n0's final read")
  assert.deepEqual(r.violations[0]!.ops, [late.id, d.id, a.id])
  assert.match(r.violations[0]!.message, /resurrected: .* returned "a"/)
  const sloppy = checkResurrection(h.history, { promises: sloppyPromises })
  assert.equal(sloppy.found, 2)
  assert.equal(sloppy.violated, 0)
  // A write concurrent with the delete (or after it) may reappear.
  const ok = new Builder()
  ok.write("c1", "k", "a", 0, 25)
  ok.del("c2", "k", 20, 30)
  ok.write("c1", "k", "b", 40, 50)
  ok.read("c3", "k", ["a"], 60, 70)
  ok.finalEverywhere("k", ["b", "a"])
  assert.equal(checkResurrection(ok.history).found, 0)
})

test("KV-9: the history checker judges a delete with a context by when its context was read: a put done after that read survives it legitimately", () => {
  // causal7 reads k (nothing), causal4 puts x (acknowledged), causal7 deletes with the context
  // of its read: the tombstone does not cover x, which stays (a sibling of the tombstone).
  const stale = new Builder()
  stale.read("causal7", "k", [], 0, 5)
  stale.write("causal4", "k", "x", 10, 20, "ok", "put")
  stale.causalDel("causal7", "k", [], 0, 30, 40)
  stale.read("causal4", "k", ["x"], 50, 60)
  stale.finalEverywhere("k", ["x"])
  assert.equal(check(stale.history, { promises: strictPromises }).ok, true)
  // The same for read-your-writes: causal7 reading x after its own delete is not stale (the
  // case dht verify met in CP mode: a put acknowledged between the context read and the delete).
  stale.read("causal7", "k", ["x"], 45, 48)
  assert.equal(check(stale.history, { promises: strictPromises }).ok, true)
  // Had the context been read after x was acknowledged, x coming back is a resurrection.
  const late = new Builder()
  late.write("causal4", "k", "x", 10, 20, "ok", "put")
  late.read("causal7", "k", [], 25, 28)
  late.causalDel("causal7", "k", [], 25, 30, 40)
  late.finalEverywhere("k", ["x"])
  const r = check(late.history, { promises: strictPromises })
  assert.equal(r.counts.resurrected, NODES.length, "in every node's final read")
  assert.match(r.checks.resurrection.violations[0]!.message, /its context was read at 25/)
})

test("KV-9: the history checker flags a value an acknowledged causal write superseded (it was in its context) that comes back: in a final read in any mode, in a later read where quorums are strict", () => {
  const h = new Builder()
  h.write("c1", "k", "a", 0, 10, "ok", "put")
  h.read("c2", "k", ["a"], 20, 25)
  const put: Op = {
    id: h.ops.length,
    client: "c2",
    key: "k",
    kind: "put",
    value: "b",
    context: ["a"],
    contextReadAt: 20,
    invokedAt: 30,
    completedAt: 40,
    outcome: "ok",
  }
  h.ops.push(put)
  h.read("c3", "k", ["a", "b"], 50, 60)
  h.finalEverywhere("k", ["b"], ["n0", "n1"]).finalEverywhere("k", ["a", "b"], ["n2"])
  const strict = checkSuperseded(h.history, { promises: strictPromises })
  assert.equal(strict.found, 2)
  assert.equal(strict.violated, 2)
  const sloppy = checkSuperseded(h.history, { promises: sloppyPromises })
  assert.equal(sloppy.found, 2)
  assert.equal(sloppy.violated, 1, "the final read at n2 is a violation in AP too")
  assert.match(sloppy.violations[0]!.message, /superseded value in the final read at n2: "a"/)
  assert.equal(check(h.history, { promises: sloppyPromises }).ok, false)
})

test("KV-9: the history checker refuses a malformed history: two writes of one value", () => {
  const h = new Builder()
  h.write("c1", "k", "a", 0, 10)
  h.write("c2", "k", "a", 20, 30)
  h.finalEverywhere("k", ["a"])
  const r = check(h.history)
  assert.equal(r.ok, false)
  assert.match(r.malformed[0]!, /value "a" is written by #0 and #1/)
})

// ---------------------------------------------------------------------------------------------
// Generated sequential histories: a register with siblings per key

type StepKind = "write" | "put" | "putSibling" | "delete" | "read" | "readAll"

interface Step {
  readonly client: number
  readonly key: number
  readonly kind: StepKind
  readonly outcome: Outcome
  /** Indeterminate: when the effect lands (0 now, k: k steps later, -1 never). */
  readonly lands: number
  readonly answered: boolean
  readonly duration: number
  /**
   * A read sent on the same connection right after the previous step (its client and key), in
   * one pipeline: invoked with it, started once it has its result (CONN-1).
   */
  readonly pipelined: boolean
}

const stepArb: fc.Arbitrary<Step> = fc.record({
  client: fc.nat(2),
  key: fc.nat(2),
  kind: fc.constantFrom<StepKind>("write", "put", "putSibling", "delete", "read", "readAll"),
  outcome: fc.constantFrom<Outcome>("ok", "ok", "ok", "ok", "failed", "indeterminate"),
  lands: fc.integer({ min: -1, max: 4 }),
  answered: fc.boolean(),
  duration: fc.integer({ min: 1, max: 20 }),
  pipelined: fc.boolean(),
})

interface Sibling {
  readonly value: string
  readonly at: number
}

/** Run `steps` one after the other against the register model; record the history. */
const runModel = (steps: ReadonlyArray<Step>, landLeftovers: boolean): History => {
  const state = new Map<string, Array<Sibling>>()
  const ops: Array<Op> = []
  const later: Array<{ at: number; apply: (now: number) => void }> = []
  let now = 0
  let serial = 0
  const siblings = (key: string) => state.get(key) ?? []
  steps.forEach((s, index) => {
    for (const l of later.filter((l) => l.at === index)) l.apply(now)
    now += 1
    const previous = ops[ops.length - 1]
    const piped =
      s.pipelined && (s.kind === "read" || s.kind === "readAll") && previous !== undefined
    const key = piped ? previous.key : `k${s.key}`
    const client = piped ? previous.client : `c${s.client}`
    const invokedAt = piped ? previous.invokedAt : now
    now += s.duration
    const completedAt = s.outcome === "indeterminate" && !s.answered ? undefined : now
    const id = ops.length
    if (s.kind === "read" || s.kind === "readAll") {
      const live = siblings(key)
      const latest = live.reduce<Sibling | undefined>(
        (b, x) => (b && b.at > x.at ? b : x),
        undefined,
      )
      const values = s.kind === "readAll" ? live.map((x) => x.value) : latest ? [latest.value] : []
      ops.push({
        id,
        client,
        key,
        kind: "read",
        invokedAt,
        completedAt,
        outcome: s.outcome,
        ...(s.outcome === "ok" ? { values } : {}),
        ...(piped ? { after: previous.id } : {}),
      })
      return
    }
    const value = s.kind === "delete" ? undefined : `v${serial++}`
    const context = siblings(key).map((x) => x.value)
    const apply = (at: number) => {
      const live = siblings(key)
      if (s.kind === "delete")
        state.set(
          key,
          live.filter((x) => !context.includes(x.value)),
        )
      else if (s.kind === "write") state.set(key, [{ value: value!, at }])
      else if (s.kind === "put") {
        state.set(key, [...live.filter((x) => !context.includes(x.value)), { value: value!, at }])
      } else state.set(key, [...live, { value: value!, at }])
    }
    const kind: Kind = s.kind === "delete" ? "delete" : s.kind === "write" ? "write" : "put"
    ops.push({
      id,
      client,
      key,
      kind,
      invokedAt,
      completedAt,
      outcome: s.outcome,
      ...(value === undefined ? {} : { value }),
      ...(s.kind === "put" || s.kind === "delete" ? { context, contextReadAt: invokedAt } : {}),
    })
    if (s.outcome === "ok") apply(invokedAt)
    else if (s.outcome === "indeterminate") {
      if (s.lands === 0) apply(invokedAt)
      else if (s.lands > 0) later.push({ at: index + s.lands, apply })
    }
  })
  if (landLeftovers) {
    for (const l of later.filter((l) => l.at >= steps.length)) l.apply(++now)
  }
  const final: Array<FinalRead> = []
  for (const key of new Set(ops.map((o) => o.key))) {
    for (const node of ["n0", "n1", "n2"]) {
      final.push({ node, key, values: siblings(key).map((x) => x.value) })
    }
  }
  return { ops, final }
}

const historyArb = fc
  .tuple(fc.array(stepArb, { minLength: 1, maxLength: 60 }), fc.boolean())
  .map(([steps, land]) => runModel(steps, land))

test("KV-9: the history checker passes every sequential history of the register model, with siblings, deletes, failed and indeterminate operations, pipelined reads (generated)", () => {
  let pipelined = 0
  fc.assert(
    fc.property(historyArb, (history) => {
      const report = check(history, { promises: strictPromises })
      assert.deepEqual(report.violations, [])
      assert.deepEqual(report.malformed, [])
      assert.equal(report.ok, true)
      assert.equal(report.counts.stale, 0)
      assert.equal(report.counts.resurrected, 0)
      assert.equal(report.counts.superseded, 0)
      pipelined += report.checks.sessions.pipelined?.checked ?? 0
    }),
    params(300),
  )
  assert.ok(pipelined >= 100, `only ${pipelined} pipelined reads checked`)
})

const endOf = (h: History): number =>
  Math.max(0, ...h.ops.map((o) => Math.max(o.invokedAt, o.completedAt ?? 0))) + 10

const doneBefore = (x: Op, t: number): boolean =>
  x.outcome === "ok" && x.completedAt !== undefined && x.completedAt < t

/** A delete of `key` that had not completed before t (it may explain a missing value). */
const deleteOpen = (h: History, key: string, t: number): boolean =>
  h.ops.some(
    (d) => d.key === key && d.kind === "delete" && d.outcome !== "failed" && !doneBefore(d, t),
  )

const ackedWrites = (h: History): Array<Op> =>
  h.ops.filter((o) => o.kind !== "read" && o.kind !== "delete" && o.outcome === "ok")

const appendRead = (h: History, client: string, key: string, values: Array<string>): History => {
  const at = endOf(h)
  const read: Op = {
    id: h.ops.length,
    client,
    key,
    kind: "read",
    values,
    invokedAt: at,
    completedAt: at + 1,
    outcome: "ok",
  }
  return { ops: [...h.ops, read], final: h.final }
}

test("KV-9: the history checker finds every mutation of a generated history: an older final value (lost), an unknown value (from nowhere), a diverging node, a stale read, a stale pipelined read, a resurrection, a superseded value back", () => {
  const applied = {
    lost: 0,
    nowhere: 0,
    diverged: 0,
    stale: 0,
    pipelined: 0,
    resurrected: 0,
    superseded: 0,
  }
  fc.assert(
    fc.property(historyArb, fc.nat(), (history, pick) => {
      // Lost: every node ends with only the value of an acknowledged write b done before an
      // acknowledged write a of the same key was invoked (and no delete explains a's absence).
      const writes = ackedWrites(history)
      const pairs: Array<[Op, Op]> = []
      for (const a of writes) {
        if (deleteOpen(history, a.key, a.invokedAt)) continue
        for (const b of writes) {
          if (b.key === a.key && doneBefore(b, a.invokedAt)) pairs.push([a, b])
        }
      }
      if (pairs.length > 0) {
        const [a, b] = pairs[pick % pairs.length]!
        const mutated: History = {
          ops: history.ops,
          final: history.final.map((f) => (f.key === a.key ? { ...f, values: [b.value!] } : f)),
        }
        const lost = checkLost(mutated)
        assert.ok(lost.found >= 1, "an older final value loses an acknowledged write")
        assert.ok(lost.violations.some((v) => v.ops[0] === a.id))
        assert.equal(check(mutated).ok, false)
        applied.lost++
      }
      // From nowhere.
      const anyKey = history.ops[pick % history.ops.length]!.key
      const nowhere = appendRead(history, "c9", anyKey, ["never-written"])
      assert.equal(checkFromNowhere(nowhere).found, 1)
      assert.equal(check(nowhere).ok, false)
      applied.nowhere++
      // Divergence: one node loses or gains a value.
      const finals = history.final.filter((f) => f.node === "n1")
      const target = finals[pick % finals.length]!
      const other = history.ops.find((o) => o.key === target.key && o.value !== undefined)
      if (target.values!.length > 0 || other !== undefined) {
        const values = target.values!.length > 0 ? [] : [other!.value!]
        const diverged: History = {
          ops: history.ops,
          final: history.final.map((f) => (f === target ? { ...f, values } : f)),
        }
        assert.equal(checkConvergence(diverged).found, 1)
        assert.equal(check(diverged).ok, false)
        applied.diverged++
      }
      // A stale read: a client reads an older value after its own last acknowledged write.
      for (const own of writes) {
        const later = history.ops.filter(
          (u) =>
            u.client === own.client &&
            u.key === own.key &&
            u.kind !== "read" &&
            u.outcome === "ok" &&
            u.completedAt! > own.completedAt!,
        )
        if (later.length > 0 || deleteOpen(history, own.key, own.invokedAt)) continue
        const older = writes.find((b) => b.key === own.key && doneBefore(b, own.invokedAt))
        if (older === undefined) continue
        const stale = appendRead(history, own.client, own.key, [older.value!])
        const strict = check(stale, { promises: strictPromises })
        assert.equal(strict.counts.stale, 1)
        assert.equal(strict.ok, false)
        const sloppy = check(stale, { promises: sloppyPromises })
        assert.equal(sloppy.counts.stale, 1)
        assert.equal(sloppy.ok, true)
        applied.stale++
        break
      }
      // A pipelined read that misses the acknowledged write it was pipelined after (CONN-1):
      // it returns a value written before that write was invoked instead.
      for (const r of history.ops) {
        if (r.kind !== "read" || r.outcome !== "ok" || r.after === undefined) continue
        const own = history.ops[r.after]!
        if (own.kind === "read" || own.kind === "delete" || own.outcome !== "ok") continue
        if (deleteOpen(history, own.key, own.invokedAt)) continue
        const older = writes.find((b) => b.key === own.key && doneBefore(b, own.invokedAt))
        if (older === undefined) continue
        const stale: History = {
          ops: history.ops.map((o) => (o === r ? { ...r, values: [older.value!] } : o)),
          final: history.final,
        }
        const strict = checkSessions(stale, { promises: strictPromises })
        assert.ok(
          strict.violations.some(
            (v) => v.ops[0] === r.id && v.ops[1] === own.id && /read-your-writes/.test(v.message),
          ),
          "the pipelined read misses its own write",
        )
        assert.ok((strict.pipelined?.found ?? 0) >= 1)
        assert.equal(check(stale, { promises: strictPromises }).ok, false)
        assert.ok(check(stale, { promises: sloppyPromises }).counts.stale >= 1)
        applied.pipelined++
        break
      }
      // A resurrection: a value written before an acknowledged delete is read after it.
      for (const d of history.ops) {
        if (d.kind !== "delete" || d.outcome !== "ok") continue
        const before = writes.find((w) => w.key === d.key && doneBefore(w, d.invokedAt))
        if (before === undefined) continue
        const back = appendRead(history, "c9", d.key, [before.value!])
        assert.ok(checkResurrection(back).found >= 1)
        assert.equal(check(back, { promises: strictPromises }).ok, false)
        applied.resurrected++
        break
      }
      // A superseded value (in an acknowledged causal write's context) back in a final read.
      const superseding = history.ops.find(
        (o) => o.outcome === "ok" && o.context !== undefined && o.context.length > 0,
      )
      if (superseding !== undefined) {
        const back: History = {
          ops: history.ops,
          final: history.final.map((f) =>
            f.key === superseding.key && f.node === "n2"
              ? { ...f, values: [...(f.values ?? []), superseding.context![0]!] }
              : f,
          ),
        }
        assert.ok(checkSuperseded(back, { promises: sloppyPromises }).violated >= 1)
        assert.equal(check(back, { promises: sloppyPromises }).ok, false)
        applied.superseded++
      }
    }),
    params(300),
  )
  // Each mutation must have been tried often enough to mean something.
  for (const [name, count] of Object.entries(applied)) {
    assert.ok(count >= 20, `mutation "${name}" applied only ${count} times`)
  }
})
