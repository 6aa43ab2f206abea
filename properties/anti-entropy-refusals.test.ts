/**
 * The anti-entropy machine (impl/core/anti-entropy.ts) stepped directly, one event at a time,
 * every step's commands and statistics compared exactly with what spec/anti-entropy.md says
 * it must do: which refusal a responder sends (to whom, with which rid, reason and detail),
 * how much it serves within its budget, which entries of a push it repairs, when the initiator
 * starts an exchange and with which target, and how an exchange's answers count.
 * properties/merkle.test.ts drives the machine over a lossy network and checks its bounds;
 * this suite checks its exact answers (written for the mutants that survived `npm run mutate
 * -- anti-entropy`: docs/verification.md, "Mutation testing").
 *
 * The Merkle side (which hashes, which keys, what a reconciliation merges) is merkle.ts's and
 * checked in properties/merkle.test.ts; where an answer's contents come from it, this suite
 * takes them from merkle.ts and checks what the machine does with them.
 */
import assert from "node:assert/strict"
import fc from "fast-check"
import * as AE from "../impl/core/anti-entropy.ts"
import * as Budget from "../impl/core/budget.ts"
import { NodeId } from "../impl/core/ids.ts"
import * as Merkle from "../impl/core/merkle.ts"
import * as Version from "../impl/core/version.ts"
import type { Obj } from "../impl/core/version.ts"
import { assertFloors, params } from "./helpers/fc.ts"
import { test } from "./helpers/test.ts"

// ---------------------------------------------------------------------------------------------
// Fixtures

const self = NodeId("n0")
const peers = [NodeId("n1"), NodeId("n2")] as const

/** Two ranges that split the ring (the second wraps past 2^52), and the whole ring. */
const R1: Merkle.Range = { start: 2 ** 50, end: 3 * 2 ** 50 }
const R2: Merkle.Range = { start: 3 * 2 ** 50, end: 2 ** 50 }
const WHOLE: Merkle.Range = { start: 0, end: 0 }
/** A range a view keeps, whose tree is being built. */
const BUILDING: Merkle.Range = { start: 11, end: 2 ** 51 }
/** A valid range no view keeps (the whole ring, named from another start). */
const UNKEPT: Merkle.Range = { start: 5, end: 5 }

const SHAPE: Merkle.Shape = { fanout: 2, depth: 2 }

/** Values that are not a range: not an object, or not two integer ring positions. */
const badRanges: ReadonlyArray<unknown> = [
  null,
  undefined,
  0,
  "0:0",
  [],
  {},
  { start: 3 },
  { start: -1, end: 5 },
  { start: 1.5, end: 5 },
  { start: 2 ** 52, end: 0 },
  { start: 0, end: "9" },
]

/**
 * Values that are not a shape: none, not an object, or not a fanout >= 2 and depth >= 0 within
 * 2^20 leaves.
 */
const badShapes: ReadonlyArray<unknown> = [
  undefined, // a request that names no shape
  null,
  3,
  "2x2",
  {},
  { fanout: 1, depth: 1 },
  { fanout: 2.5, depth: 1 },
  { fanout: 2, depth: -1 },
  { fanout: 2, depth: 1.5 },
  { fanout: 4, depth: 11 },
]

const isPosition = (x: unknown): boolean =>
  typeof x === "number" && Number.isInteger(x) && x >= 0 && x < 2 ** 52

/** A range as the spec defines it: (start, end] of two ring positions. */
const isRange = (x: unknown): x is Merkle.Range =>
  typeof x === "object" &&
  x !== null &&
  isPosition((x as Merkle.Range).start) &&
  isPosition((x as Merkle.Range).end)

const isShape = (x: unknown): x is Merkle.Shape => {
  if (typeof x !== "object" || x === null) return false
  const { fanout, depth } = x as Merkle.Shape
  return (
    Number.isInteger(fanout) &&
    Number.isInteger(depth) &&
    fanout >= 2 &&
    depth >= 0 &&
    fanout ** depth <= 2 ** 20
  )
}

const keyArb = fc.integer({ min: 0, max: 39 }).map((i) => `k${i}`)

/** An object written once or twice by one of a few actors. */
const objArb: fc.Arbitrary<Obj> = fc
  .tuple(fc.constantFrom("n0", "n1", "n2"), fc.string({ maxLength: 3 }), fc.boolean())
  .map(([actor, value, twice]) => {
    const once = Version.update(Version.empty, Version.emptyClock, { value, ts: 1 }, actor)
    return twice ? Version.update(once, Version.context(once), { value: "2", ts: 2 }, actor) : once
  })

const storeArb: fc.Arbitrary<Map<string, Obj>> = fc
  .uniqueArray(fc.tuple(keyArb, objArb), { selector: ([k]) => k, maxLength: 24 })
  .map((entries) => new Map(entries))

/**
 * A node's view. It keeps a tree of each range of `kept` in whatever shape is asked, built from
 * its store (as the storage node does); "Building" for a kept range in `building`. A view that
 * `ignoresShape` answers its own tree (shape SHAPE) whatever shape is asked, as a view of one
 * tree per range would.
 */
class TestView implements AE.View {
  readonly kept: Set<string>
  readonly building = new Set<string>()
  private readonly cache = new Map<string, Merkle.Tree>()

  constructor(
    readonly store: ReadonlyMap<string, Obj>,
    kept: ReadonlyArray<Merkle.Range>,
    readonly ignoresShape = false,
  ) {
    this.kept = new Set(kept.map(Merkle.rangeId))
  }

  get = (key: string): Obj | undefined => this.store.get(key)

  tree = (range: Merkle.Range, shape?: Merkle.Shape): Merkle.Tree | "Building" | undefined => {
    const id = Merkle.rangeId(range)
    if (!this.kept.has(id)) return undefined
    if (this.building.has(id)) return "Building"
    return this.treeOf(range, this.ignoresShape ? SHAPE : (shape ?? SHAPE))
  }

  /** The tree of a kept range in a shape, built once. */
  treeOf(range: Merkle.Range, shape: Merkle.Shape): Merkle.Tree {
    const id = `${Merkle.rangeId(range)}/${shape.fanout}x${shape.depth}`
    let tree = this.cache.get(id)
    if (tree === undefined) {
      tree = Merkle.build(range, shape, this.store)
      this.cache.set(id, tree)
    }
    return tree
  }

  toggle(set: Set<string>, range: Merkle.Range): void {
    const id = Merkle.rangeId(range)
    if (!set.delete(id)) set.add(id)
  }
}

/** Every counter at zero, as `init` leaves them (checked here). */
const zeroStats = (): AE.Stats => {
  const stats = { ...AE.init({ self, ...AE.defaults }, [], 0).stats }
  for (const [name, value] of Object.entries(stats)) assert.equal(value, 0, name)
  return stats
}

const send = (to: NodeId, message: AE.Message): AE.Command => ({ _tag: "Send", to, message })

const refusal = (to: NodeId, rid: number, reason: AE.RefusalReason, detail: string): AE.Command =>
  send(to, { _tag: "ExchangeRefused", rid, reason, detail })

/** A message as it may arrive: anything at all (the machine checks what it reads). */
const received = (now: number, from: NodeId, message: unknown): AE.Event => ({
  _tag: "MessageReceived",
  now,
  from,
  message: message as AE.Message,
})

/** A budget no test runs out of, for the properties that are not about the budget. */
const ample = { ratePerSec: 1_000_000, burst: 1_000_000 }

/** Step, and check the commands and the whole statistics against the expected ones. */
const stepExpect = (
  state: AE.State,
  event: AE.Event,
  view: AE.View,
  expected: ReadonlyArray<AE.Command>,
  stats: AE.Stats,
): void => {
  const [after, commands] = AE.step(state, event, view)
  assert.equal(after, state, "the state is updated in place")
  assert.deepEqual(commands, expected)
  assert.deepEqual(state.stats, stats)
}

// ---------------------------------------------------------------------------------------------
// The configuration

test("AE-5, BUDGET-1: init takes a key bound K only as an integer >= 1 and a burst only >= K, and names the bad value; with a burst of exactly K the first tick starts an exchange", () => {
  const seen = { nonInteger: 0, belowOne: 0, burstBelow: 0, burstEqual: 0, valid: 0 }
  const maxKeysArb = fc.oneof(
    { arbitrary: fc.integer({ min: -3, max: 8 }), weight: 4 },
    fc.double({ min: -4, max: 8, noNaN: true }).filter((x) => !Number.isInteger(x)),
    fc.constantFrom(Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY),
  )
  const caseArb = maxKeysArb.chain((k) =>
    fc.tuple(
      fc.constant(k),
      fc.oneof(
        fc.integer({ min: -2, max: 12 }),
        fc.constant(k),
        fc.constant(k - 0.5),
        fc.constant(Number.NaN),
      ),
    ),
  )
  fc.assert(
    fc.property(caseArb, ([maxKeys, burst]) => {
      const config = { self, ...AE.defaults, ratePerSec: 10, maxKeys, burst }
      const targets = [{ peer: peers[0], range: R1 }]
      const init = () => AE.init(config, targets, 0)
      if (!(Number.isInteger(maxKeys) && maxKeys >= 1)) {
        if (Number.isInteger(maxKeys)) seen.belowOne++
        else seen.nonInteger++
        const message = `anti-entropy: maxKeys must be an integer >= 1, got ${maxKeys}`
        assert.throws(init, { message })
        return
      }
      if (!(burst >= maxKeys)) {
        seen.burstBelow++
        assert.throws(init, { message: `anti-entropy: burst ${burst} < maxKeys ${maxKeys}` })
        return
      }
      seen.valid++
      if (burst === maxKeys) seen.burstEqual++
      const state = init()
      const view = new TestView(new Map(), [R1])
      const request = Merkle.startDiff(view.treeOf(R1, SHAPE), 1)
      const expected: Array<AE.Command> = [
        { _tag: "SetTimer", rid: 1, at: AE.defaults.exchangeTimeoutMs },
        send(peers[0], request),
      ]
      stepExpect(state, { _tag: "TickElapsed", now: 0 }, view, expected, {
        ...zeroStats(),
        started: 1,
      })
    }),
    params(300),
  )
  // Floors about three standard deviations under the means of 8 runs (valid: 48, burstEqual: 35).
  assertFloors(seen, { nonInteger: 30, belowOne: 30, burstBelow: 30, burstEqual: 10, valid: 15 })
})

// ---------------------------------------------------------------------------------------------
// The initiator's schedule

const R3: Merkle.Range = { start: 7, end: 2 ** 40 }
const scheduleRanges = [R1, R2, R3] as const
const candidates: ReadonlyArray<AE.Target> = [
  { peer: peers[0], range: R1 },
  { peer: peers[1], range: R1 },
  { peer: peers[0], range: R2 },
  { peer: peers[1], range: R2 },
  { peer: peers[0], range: R3 },
]

/** 0: from the running exchange's peer with its rid; 1: from another peer; 2: with a stale rid. */
const strayArb = fc.constantFrom(0, 0, 1, 2)

type ScheduleEvent =
  | { readonly kind: "tick"; readonly dt: number }
  | { readonly kind: "refuse"; readonly stray: number }
  | { readonly kind: "answer"; readonly stray: number }
  | { readonly kind: "timer"; readonly running: boolean }
  | { readonly kind: "retarget"; readonly picks: ReadonlyArray<number> }
  | { readonly kind: "keep"; readonly r: number }
  | { readonly kind: "build"; readonly r: number }

const scheduleEventArb: fc.Arbitrary<ScheduleEvent> = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant("tick" as const), dt: fc.nat(120) }), weight: 6 },
  { arbitrary: fc.record({ kind: fc.constant("refuse" as const), stray: strayArb }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant("answer" as const), stray: strayArb }), weight: 2 },
  fc.record({ kind: fc.constant("timer" as const), running: fc.boolean() }),
  fc.record({
    kind: fc.constant("retarget" as const),
    picks: fc.array(fc.nat(candidates.length - 1), { maxLength: 5 }),
  }),
  fc.record({ kind: fc.constant("keep" as const), r: fc.nat(2) }),
  fc.record({ kind: fc.constant("build" as const), r: fc.nat(2) }),
)

test("AE-3, AE-6: a node visits its targets round-robin, one exchange at a time and at most one per interval, skipping ranges it keeps no tree for and waiting for trees being built; only its peer's answer or refusal with its rid ends an exchange", () => {
  const seen = {
    started: 0,
    rotated: 0,
    skipped: 0,
    waited: 0,
    notDue: 0,
    refused: 0,
    inSync: 0,
    gone: 0,
    timedOut: 0,
    stray: 0,
  }
  const INTERVAL = 100
  const TIMEOUT = 250
  fc.assert(
    fc.property(
      storeArb,
      fc.array(fc.nat(candidates.length - 1), { maxLength: 5 }),
      fc.array(scheduleEventArb, { maxLength: 60 }),
      (store, picks, events) => {
        const config = {
          self,
          intervalMs: INTERVAL,
          exchangeTimeoutMs: TIMEOUT,
          maxKeys: 2,
          ...ample,
        }
        // The model: what the spec says the schedule is.
        let targets = picks.map((i) => candidates[i]!)
        let cursor = 0
        let nextStartAt = 0
        let nextRid = 1
        let active: (AE.Target & { readonly rid: number }) | undefined
        let lastStarted: AE.Target & { readonly rid: number } = { ...candidates[0]!, rid: 0 }
        const stats = zeroStats()
        const state = AE.init(config, targets, 0)
        const view = new TestView(store, [R1, R2])
        let now = 0
        for (const ev of events) {
          let event: AE.Event
          let expected: Array<AE.Command> = []
          if (ev.kind === "keep" || ev.kind === "build") {
            view.toggle(ev.kind === "keep" ? view.kept : view.building, scheduleRanges[ev.r]!)
            continue
          }
          if (ev.kind === "tick") {
            now += ev.dt
            event = { _tag: "TickElapsed", now }
            if (active === undefined && targets.length > 0 && now < nextStartAt) seen.notDue++
            if (active === undefined && targets.length > 0 && now >= nextStartAt) {
              const target = targets[cursor]!
              const tree = view.tree(target.range)
              if (tree === undefined) {
                seen.skipped++
                cursor = (cursor + 1) % targets.length
              } else if (tree === "Building") seen.waited++
              else {
                seen.started++
                if (cursor > 0) seen.rotated++
                const rid = nextRid++
                active = { ...target, rid }
                lastStarted = active
                cursor = (cursor + 1) % targets.length
                nextStartAt = now + INTERVAL
                stats.started++
                const request: Merkle.TreeLevelRequest = {
                  _tag: "TreeLevelRequest",
                  rid,
                  range: target.range,
                  shape: SHAPE,
                  level: 0,
                  indices: [0],
                }
                expected = [
                  { _tag: "SetTimer", rid, at: now + TIMEOUT },
                  send(target.peer, request),
                ]
              }
            }
          } else if (ev.kind === "timer") {
            // The running exchange's timer, a late one of a finished exchange, or a foreign rid.
            const rid = ev.running ? (active?.rid ?? lastStarted.rid) : nextRid + 3
            event = { _tag: "TimerFired", now, rid }
            if (rid === active?.rid) {
              seen.timedOut++
              active = undefined
              stats.timedOut++
            }
          } else if (ev.kind === "retarget") {
            targets = ev.picks.map((i) => candidates[i]!)
            cursor = 0
            event = { _tag: "TargetsChanged", now, targets }
          } else {
            // A refusal, or the peer's root hash equal to ours (the trees agree): from the running
            // exchange's peer with its rid, or a stray one (another peer, a stale rid, or a late
            // one when no exchange runs).
            const x = active ?? lastStarted
            const stray = active === undefined ? 3 : ev.stray
            const from = stray === 1 ? peers[1 - peers.indexOf(x.peer)]! : x.peer
            const rid = stray === 2 ? x.rid - 1 : x.rid
            const message: AE.Message =
              ev.kind === "refuse"
                ? {
                    _tag: "ExchangeRefused",
                    rid,
                    reason: "NoTree",
                    detail: "no tree for this range",
                  }
                : {
                    _tag: "TreeLevelResponse",
                    rid,
                    level: 0,
                    indices: [0],
                    hashes: [Merkle.root(view.treeOf(x.range, SHAPE))],
                  }
            event = received(now, from, message)
            if (stray !== 0) seen.stray++
            else if (ev.kind === "refuse") {
              seen.refused++
              active = undefined
              stats.refused++
            } else {
              active = undefined
              const tree = view.tree(x.range, SHAPE)
              if (tree === undefined || tree === "Building") {
                // The initiator's own tree went meanwhile: it gives the exchange up.
                seen.gone++
                stats.refused++
              } else {
                seen.inSync++
                stats.nodesCompared++
                stats.inSync++
              }
            }
          }
          stepExpect(state, event, view, expected, stats)
          assert.equal(state.active?.rid, active?.rid, "the running exchange")
          assert.equal(state.active?.peer, active?.peer)
        }
      },
    ),
    params(200),
  )
  assertFloors(seen, {
    started: 250,
    rotated: 45,
    skipped: 50,
    waited: 50,
    notDue: 80,
    refused: 50,
    inSync: 50,
    gone: 6,
    timedOut: 24,
    stray: 100,
  })
})

// ---------------------------------------------------------------------------------------------
// The responder: refusals and answers

/**
 * What a responder must do with a request naming `range` and `shape`: refuse it, checked in this
 * order (a range that is not two ring positions, a shape that is not a shape, a tree being
 * built, no tree), else answer from its tree of the range in that shape.
 */
const treeCheck = (
  view: TestView,
  range: unknown,
  shape: unknown,
): { readonly refuse: readonly [AE.RefusalReason, string] } | { readonly tree: Merkle.Tree } => {
  if (!isRange(range)) return { refuse: ["NoTree", "bad range"] }
  if (!isShape(shape)) return { refuse: ["NoTree", "bad shape"] }
  const id = Merkle.rangeId(range)
  if (!view.kept.has(id)) return { refuse: ["NoTree", "no tree for this range"] }
  if (view.building.has(id)) return { refuse: ["Busy", "the tree is being built"] }
  return { tree: view.treeOf(range, view.ignoresShape ? SHAPE : shape) }
}

const isIndex = (x: unknown, bound: number): boolean =>
  typeof x === "number" && Number.isInteger(x) && x >= 0 && x < bound

const rangeArb: fc.Arbitrary<unknown> = fc.oneof(
  { arbitrary: fc.constantFrom<unknown>(R1, R2, WHOLE), weight: 8 },
  fc.constantFrom<unknown>(BUILDING, UNKEPT),
  fc.constantFrom(...badRanges),
)

const shapeArb: fc.Arbitrary<unknown> = fc.oneof(
  { arbitrary: fc.constant(SHAPE), weight: 8 },
  fc.record({ fanout: fc.integer({ min: 2, max: 4 }), depth: fc.integer({ min: 0, max: 3 }) }),
  fc.constantFrom(...badShapes),
)

const levelRequestArb = fc.record({
  _tag: fc.constant("TreeLevelRequest"),
  rid: fc.nat(1000),
  range: rangeArb,
  shape: shapeArb,
  level: fc.oneof(
    { arbitrary: fc.nat(3), weight: 4 },
    fc.constantFrom<unknown>(-1, 0.5, "1", null),
  ),
  indices: fc.oneof(
    { arbitrary: fc.uniqueArray(fc.nat(3), { maxLength: 2 }), weight: 4 },
    fc.uniqueArray(fc.nat(8), { maxLength: 8 }),
    fc.constantFrom<unknown>("0", null, { 0: 0 }, [-1], [0.5], ["1"]),
  ),
})

const keysRequestArb = fc.record({
  _tag: fc.constant("KeysRequest"),
  rid: fc.nat(1000),
  range: rangeArb,
  shape: shapeArb,
  buckets: fc.oneof(
    { arbitrary: fc.uniqueArray(fc.nat(3), { maxLength: 4 }), weight: 4 },
    fc.uniqueArray(fc.nat(8), { maxLength: 4 }),
    fc.constantFrom<unknown>(null, "1", [-1], [0.5]),
  ),
  /** Which of the responder's keys the initiator claims, and how: same digest, other, none. */
  digests: fc.oneof(
    { arbitrary: fc.array(fc.tuple(keyArb, fc.nat(2)), { maxLength: 12 }), weight: 4 },
    fc.constantFrom<unknown>(null, "digests"),
  ),
  limit: fc.oneof({ arbitrary: fc.nat(5), weight: 4 }, fc.constantFrom<unknown>(1.5, -1, "3")),
})

/**
 * A generated KeysRequest's digests made real: for each [key, how] the initiator claims the
 * responder's own digest of the key (how 0), another digest (1), or nothing (2).
 */
const withDigests = (message: unknown, store: ReadonlyMap<string, Obj>): unknown => {
  const m = message as { _tag?: unknown; digests?: unknown } | null | undefined
  if (m?._tag !== "KeysRequest" || !Array.isArray(m.digests)) return message
  const digests = (m.digests as Array<[string, number]>)
    .filter(([, how]) => how < 2)
    .map(([key, how]) => {
      const [hi, lo] = Merkle.keyDigest(key, store.get(key)) ?? [7, 7]
      return [key, how === 0 ? [hi, lo] : [(hi ^ 1) >>> 0, lo]] as const
    })
  return { ...m, digests }
}

/** Neither a request nor an answer: no message at all, or one of no known kind. */
const junkArb = fc.constantFrom<unknown>(null, undefined, 0, "TreeLevelRequest", true, {
  _tag: "Nope",
})

test("AE-6: a request the responder cannot serve gets exactly one ExchangeRefused, to its sender with its rid and the reason and detail of the first check it fails; one it can is answered from the tree it names; a non-message gets nothing", () => {
  const seen: Record<string, number> = {}
  const count = (what: string) => {
    seen[what] = (seen[what] ?? 0) + 1
  }
  const K = 3
  const requestArb = fc.oneof(
    { arbitrary: levelRequestArb, weight: 4 },
    { arbitrary: keysRequestArb, weight: 4 },
    junkArb,
  )
  fc.assert(
    fc.property(
      storeArb,
      fc.boolean(),
      fc.array(fc.tuple(requestArb, fc.nat(1)), { minLength: 1, maxLength: 12 }),
      (store, ignoresShape, requests) => {
        const view = new TestView(store, [R1, R2, WHOLE, BUILDING], ignoresShape)
        view.building.add(Merkle.rangeId(BUILDING))
        const state = AE.init({ self, ...AE.defaults, maxKeys: K, ...ample }, [], 0)
        const stats = zeroStats()
        for (const [generated, p] of requests) {
          const from = peers[p]!
          const expected: Array<AE.Command> = []
          const message = withDigests(generated, store)
          const m = message as Record<string, unknown> | null | undefined
          if (typeof m !== "object" || m === null || m._tag === "Nope") count("junk")
          else {
            const rid = m.rid as number
            const reject = (reason: AE.RefusalReason, detail: string): void => {
              count(`${reason}: ${detail}`)
              expected.push(refusal(from, rid, reason, detail))
            }
            const check = treeCheck(view, m.range, m.shape)
            if ("refuse" in check) reject(...check.refuse)
            else if (!Merkle.sameShape(check.tree.shape, m.shape as Merkle.Shape)) {
              reject("BadRequest", "shape mismatch")
            } else if (m._tag === "TreeLevelRequest") {
              const { fanout, depth } = check.tree.shape
              const level = m.level as number
              const indices = m.indices as Array<number>
              if (!isIndex(level, depth + 1)) reject("BadRequest", "bad level")
              else if (
                !Array.isArray(indices) ||
                indices.length > fanout ** level ||
                !indices.every((i) => isIndex(i, fanout ** level))
              ) {
                reject("BadRequest", "bad indices")
              } else {
                count("level answer")
                const hashes = indices.map((i) => Merkle.nodeHash(check.tree, level, i))
                expected.push(
                  send(from, { _tag: "TreeLevelResponse", rid, level, indices, hashes }),
                )
              }
            } else if (!Array.isArray(m.buckets) || !Array.isArray(m.digests)) {
              reject("BadRequest", "bad keys request")
            } else if (!m.buckets.every((b) => isIndex(b, check.tree.leafCount))) {
              reject("BadRequest", "bad buckets")
            } else {
              const request = m as unknown as Merkle.KeysRequest
              const answer = Merkle.answerKeys(check.tree, view.get, request, K)
              assert.equal(answer._tag, "Answer")
              if (answer._tag === "Answer") {
                count(answer.message.entries.length > 0 ? "keys answer" : "empty keys answer")
                expected.push(send(from, answer.message))
                stats.keysServed += answer.message.entries.length
              }
            }
          }
          stepExpect(state, received(0, from, message), view, expected, stats)
          assert.equal(state.active, undefined)
        }
      },
    ),
    params(300),
  )
  assertFloors(seen, {
    junk: 100,
    "NoTree: bad range": 50,
    "NoTree: bad shape": 50,
    "NoTree: no tree for this range": 30,
    "Busy: the tree is being built": 30,
    "BadRequest: shape mismatch": 22,
    "BadRequest: bad level": 20,
    "BadRequest: bad indices": 20,
    "BadRequest: bad keys request": 20,
    "BadRequest: bad buckets": 20,
    "level answer": 50,
    "keys answer": 30,
    "empty keys answer": 30,
  })
})

// ---------------------------------------------------------------------------------------------
// The responder's budget

test("BUDGET-1: a responder serves keys as far as its budget goes: the first `affordable` keys of its answer, a Busy refusal when it can afford none, an empty answer at no cost; each key served costs one token", () => {
  const seen = { full: 0, partial: 0, busy: 0, empty: 0 }
  const K = 4
  fc.assert(
    fc.property(
      storeArb,
      fc.integer({ min: K, max: K + 2 }),
      fc.constantFrom(0, 1, 2, 4),
      fc.array(
        fc.record({
          dt: fc.nat(1500),
          rid: fc.nat(100),
          buckets: fc.uniqueArray(fc.nat(1), { maxLength: 2 }),
          claimed: fc.nat(24),
        }),
        { minLength: 1, maxLength: 12 },
      ),
      (store, burst, ratePerSec, requests) => {
        const shape: Merkle.Shape = { fanout: 2, depth: 1 }
        const view = new TestView(store, [WHOLE])
        const tree = view.treeOf(WHOLE, shape)
        const state = AE.init({ self, ...AE.defaults, maxKeys: K, burst, ratePerSec }, [], 0)
        // The test's own bucket, with the same rate and burst, charged one token per key served.
        let budget = Budget.make(ratePerSec, burst, 0)
        const stats = zeroStats()
        let now = 0
        for (const r of requests) {
          now += r.dt
          // The initiator holds the first `claimed` keys as the responder does, the rest not at all.
          const digests = [...store]
            .slice(0, r.claimed)
            .map(([key, obj]) => [key, Merkle.keyDigest(key, obj)!] as const)
          const request: Merkle.KeysRequest = {
            _tag: "KeysRequest",
            rid: r.rid,
            range: WHOLE,
            shape,
            buckets: r.buckets,
            digests,
            limit: K,
          }
          const answer = Merkle.answerKeys(tree, view.get, request, K)
          assert.equal(answer._tag, "Answer")
          if (answer._tag !== "Answer") return
          const all = answer.message.entries
          const affordable = Math.min(all.length, Math.floor(Budget.available(budget, now)))
          const from = peers[r.rid % 2]!
          let expected: AE.Command
          if (all.length > 0 && affordable === 0) {
            seen.busy++
            expected = refusal(from, r.rid, "Busy", "anti-entropy budget spent")
          } else {
            if (all.length === 0) seen.empty++
            else if (affordable < all.length) seen.partial++
            else seen.full++
            budget = Budget.take(budget, affordable, now).budget
            stats.keysServed += affordable
            expected = send(from, { ...answer.message, entries: all.slice(0, affordable) })
          }
          stepExpect(state, received(now, from, request), view, [expected], stats)
        }
      },
    ),
    params(300),
  )
  assertFloors(seen, { full: 100, partial: 40, busy: 18, empty: 40 })
})

// ---------------------------------------------------------------------------------------------
// Pushes

/** Not an entry, or an entry with a key that is not a string or an obj that is not an object. */
const badEntryArb: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom<unknown>(null, undefined, 5, "k1"),
  fc
    .tuple(keyArb, fc.constantFrom<unknown>(null, undefined, "obj", 7, {}, { entries: "x" }))
    .map(([key, obj]) => ({ key, obj })),
  fc
    .tuple(fc.constantFrom<unknown>(5, null, undefined, ["k1"], { k: 1 }), objArb)
    .map(([key, obj]) => ({ key, obj })),
  keyArb.map((key) => ({ key })),
)

const pushEntriesArb: fc.Arbitrary<unknown> = fc.oneof(
  {
    arbitrary: fc.array(
      fc.oneof(
        { arbitrary: fc.record({ key: keyArb, obj: objArb }), weight: 3 },
        { arbitrary: badEntryArb, weight: 2 },
      ),
      { maxLength: 6 },
    ),
    weight: 6,
  },
  fc.constantFrom<unknown>(undefined, null, "abc", {}, 7),
)

test("AE-6: a push is repaired entry by entry: each of its first K entries that has a string key in the pushed range and an object with an entries array becomes one Repair, in order, the rest are skipped; a push for a range the node keeps no tree for, or not an array of entries, is dropped; one for a tree being built is taken", () => {
  const seen = { repaired: 0, badEntry: 0, outside: 0, beyondK: 0, dropped: 0, building: 0 }
  const K = 3
  const pushRangeArb = fc.oneof(
    { arbitrary: fc.constantFrom<unknown>(R1, R2, BUILDING), weight: 4 },
    fc.constantFrom<unknown>(UNKEPT, ...badRanges),
  )
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.nat(100), pushRangeArb, pushEntriesArb, fc.nat(1)), {
        minLength: 1,
        maxLength: 8,
      }),
      (pushes) => {
        const view = new TestView(new Map(), [R1, R2, BUILDING])
        view.building.add(Merkle.rangeId(BUILDING))
        const state = AE.init({ self, ...AE.defaults, maxKeys: K, ...ample }, [], 0)
        const stats = zeroStats()
        for (const [rid, range, entries, p] of pushes) {
          const expected: Array<AE.Command> = []
          const kept = isRange(range) && view.kept.has(Merkle.rangeId(range))
          if (!kept || !Array.isArray(entries)) seen.dropped++
          else {
            if (view.building.has(Merkle.rangeId(range))) seen.building++
            seen.beyondK += Math.max(0, entries.length - K)
            for (const entry of entries.slice(0, K) as Array<{ key: unknown; obj: unknown }>) {
              const obj = entry?.obj as Obj | undefined
              const wellFormed =
                typeof entry === "object" &&
                entry !== null &&
                typeof entry.key === "string" &&
                typeof obj === "object" &&
                obj !== null &&
                Array.isArray(obj.entries)
              if (!wellFormed) seen.badEntry++
              else if (!Merkle.contains(range, entry.key as string)) seen.outside++
              else {
                seen.repaired++
                expected.push({ _tag: "Repair", key: entry.key as string, obj: obj as Obj })
                stats.keysRepaired++
              }
            }
          }
          const push = { _tag: "KeysPush", rid, range, entries }
          stepExpect(state, received(0, peers[p]!, push), view, expected, stats)
        }
      },
    ),
    params(300),
  )
  assertFloors(seen, {
    repaired: 300,
    badEntry: 300,
    outside: 100,
    beyondK: 50,
    dropped: 200,
    building: 50,
  })
})

// ---------------------------------------------------------------------------------------------
// One exchange, answer by answer

type Divergence = "same" | "aOnly" | "bOnly" | "aNewer" | "bNewer" | "both"

/** Two stores over the same keys: the initiator's (a) and the responder's (b). */
const twoStoresArb = fc
  .tuple(
    fc.uniqueArray(fc.tuple(keyArb, objArb), { selector: ([k]) => k, maxLength: 16 }),
    fc.constantFrom<ReadonlyArray<Divergence>>(
      ["same", "aOnly", "bOnly", "aNewer", "bNewer", "both"],
      ["same", "bOnly", "bNewer"],
      ["same", "aOnly", "aNewer"],
      ["same"],
    ),
    fc.array(fc.nat(5), { minLength: 16, maxLength: 16 }),
  )
  .map(([entries, kinds, picks]) => {
    const a = new Map<string, Obj>()
    const b = new Map<string, Obj>()
    const newer = (obj: Obj, actor: string) =>
      Version.update(obj, Version.context(obj), { value: actor, ts: 9 }, actor)
    entries.forEach(([key, obj], i) => {
      const kind = kinds[picks[i]! % kinds.length]!
      if (kind !== "bOnly") a.set(key, kind === "aNewer" || kind === "both" ? newer(obj, "a") : obj)
      if (kind !== "aOnly") b.set(key, kind === "bNewer" || kind === "both" ? newer(obj, "b") : obj)
    })
    return [a, b] as const
  })

/** Noise before an answer: it from another peer, with another rid, or a stray refusal. */
const noiseArb = fc.constantFrom("otherPeer", "staleRid", "refuseOtherPeer", "refuseStaleRid")

test("AE-6: an exchange takes only its peer's answers with its rid: each level answer counts its nodes compared and asks the next level, the keys answer gives exactly the Repairs and the one KeysPush (if anything is to push) its reconciliation computes, counted; if the initiator's tree went meanwhile the exchange is refused; anything stray or repeated changes nothing", () => {
  const seen = {
    inSync: 0,
    pushed: 0,
    repairOnly: 0,
    goneAtLevel: 0,
    goneAtKeys: 0,
    noise: 0,
    repeated: 0,
  }
  const K = 3
  fc.assert(
    fc.property(
      twoStoresArb,
      fc.array(fc.array(noiseArb, { maxLength: 3 }), { minLength: 4, maxLength: 4 }),
      fc.oneof(
        { arbitrary: fc.constant(undefined), weight: 3 },
        fc.record({ round: fc.constantFrom(0, 1, 2, 3, 3, 3), building: fc.boolean() }),
      ),
      ([a, b], noise, gone) => {
        const [peer, other] = peers
        const mine = new TestView(a, [WHOLE])
        const theirs = new TestView(b, [WHOLE])
        const config = { self, ...AE.defaults, maxKeys: K, ...ample }
        const state = AE.init(config, [{ peer, range: WHOLE }], 0)
        const responder = AE.init({ ...config, self: peer }, [], 0)
        const stats = zeroStats()
        const [, first] = AE.step(state, { _tag: "TickElapsed", now: 0 }, mine)
        stats.started++
        let request = first.find((c) => c._tag === "Send")?.message
        let last: AE.Message | undefined
        for (let round = 0; state.active !== undefined; round++) {
          assert.ok(round <= SHAPE.depth + 1, "the exchange ends after depth + 2 answers")
          assert.ok(request?._tag === "TreeLevelRequest" || request?._tag === "KeysRequest")
          const [, out] = AE.step(responder, received(0, self, request), theirs)
          assert.equal(out.length, 1)
          const answer = (out[0] as { message: Merkle.TreeLevelResponse | Merkle.KeysResponse })
            .message
          assert.equal(answer.rid, request.rid)
          last = answer
          for (const n of noise[round] ?? []) {
            seen.noise++
            const stale = { ...answer, rid: answer.rid + 1 }
            const refused = (rid: number): AE.ExchangeRefused => ({
              _tag: "ExchangeRefused",
              rid,
              reason: "Busy",
              detail: "anti-entropy budget spent",
            })
            const stray =
              n === "otherPeer"
                ? received(0, other, answer)
                : n === "staleRid"
                  ? received(0, peer, stale)
                  : n === "refuseOtherPeer"
                    ? received(0, other, refused(answer.rid))
                    : received(0, peer, refused(answer.rid + 1))
            stepExpect(state, stray, mine, [], stats)
          }
          if (gone?.round === round) {
            // The initiator's tree is being rebuilt, or went with the ring: it gives up.
            if (gone.building) mine.building.add(Merkle.rangeId(WHOLE))
            else mine.kept.clear()
            if (request._tag === "TreeLevelRequest") seen.goneAtLevel++
            else seen.goneAtKeys++
            stats.refused++
            stepExpect(state, received(0, peer, answer), mine, [], stats)
            break
          }
          const tree = mine.treeOf(WHOLE, SHAPE)
          if (request._tag === "TreeLevelRequest" && answer._tag === "TreeLevelResponse") {
            const next = Merkle.compareLevel(tree, request, answer, K)
            assert.equal(next.compared, request.indices.length)
            stats.nodesCompared += request.indices.length
            if (next._tag === "InSync") {
              seen.inSync++
              stats.inSync++
              stepExpect(state, received(0, peer, answer), mine, [], stats)
            } else {
              stepExpect(state, received(0, peer, answer), mine, [send(peer, next.request)], stats)
              request = next.request
            }
          } else if (request._tag === "KeysRequest" && answer._tag === "KeysResponse") {
            const { repairs, pushes } = Merkle.reconcile(tree, mine.get, request, answer)
            const expected: Array<AE.Command> = repairs.map((r) => ({ _tag: "Repair", ...r }))
            if (pushes.length > 0) {
              seen.pushed++
              const push: AE.KeysPush = {
                _tag: "KeysPush",
                rid: request.rid,
                range: WHOLE,
                entries: pushes,
              }
              expected.push(send(peer, push))
            } else if (repairs.length > 0) seen.repairOnly++
            stats.keysRepaired += repairs.length
            stats.keysPushed += pushes.length
            stats.repaired++
            stepExpect(state, received(0, peer, answer), mine, expected, stats)
          } else assert.fail(`${answer._tag} does not answer ${request._tag}`)
        }
        // The last answer again, once the exchange is over: nothing.
        if (last !== undefined) {
          seen.repeated++
          stepExpect(state, received(0, peer, last), mine, [], stats)
        }
      },
    ),
    params(300),
  )
  console.log(`# AE-6: ${JSON.stringify(seen)}`)
  assertFloors(seen, {
    inSync: 20,
    pushed: 40,
    repairOnly: 20,
    // About three standard deviations under the means of 12 runs (26 and 23): a floor of 20
    // failed a clean run.
    goneAtLevel: 8,
    goneAtKeys: 8,
    noise: 300,
    repeated: 200,
  })
})
