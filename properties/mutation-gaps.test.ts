/**
 * Properties added for mutants that survived `npm run mutate` (docs/verification.md, "Mutation
 * testing"): each checks, on one module of impl/core directly, a law that the suites checked
 * only through the whole machine, or not at all, and that a surviving mutant broke. Each is
 * named after the invariant it serves.
 */
import assert from "node:assert/strict"
import fc from "fast-check"
import { NodeId } from "../impl/core/ids.ts"
import * as Phi from "../impl/core/phi.ts"
import * as Quorum from "../impl/core/quorum.ts"
import * as Ring from "../impl/core/ring.ts"
import { params } from "./helpers/fc.ts"
import { test } from "./helpers/test.ts"

const nodes = ["n0", "n1", "n2", "n3", "n4", "n5"].map(NodeId)

test("KV-11: a quorum tally counts each asked replica once, is enough at `need` counting answers, and is complete exactly when every asked replica answered", () => {
  fc.assert(
    fc.property(
      fc.uniqueArray(fc.constantFrom(...nodes), { minLength: 0, maxLength: 5 }),
      fc.nat(5),
      fc.array(fc.tuple(fc.constantFrom(...nodes), fc.boolean()), { maxLength: 12 }),
      (asked, need, answers) => {
        let tally = Quorum.make(need, asked)
        const ok = new Set<string>()
        const answered = new Set<string>()
        assert.equal(Quorum.complete(tally), asked.length === 0)
        assert.equal(Quorum.enough(tally), need === 0)
        for (const [node, counts] of answers) {
          tally = Quorum.addOk(tally, node, counts)
          if (asked.includes(node) && !answered.has(node)) {
            answered.add(node)
            if (counts) ok.add(node)
          }
          assert.deepEqual([...tally.ok].sort(), [...ok].sort())
          assert.deepEqual([...tally.answered].sort(), [...answered].sort())
          assert.equal(Quorum.enough(tally), ok.size >= need)
          assert.equal(Quorum.complete(tally), answered.size === asked.length)
        }
        // Counting is the default.
        const first = asked[0]
        if (first !== undefined) {
          assert.deepEqual(Quorum.addOk(Quorum.make(need, asked), first).ok, [first])
        }
      },
    ),
    params(300),
  )
})

test("RING-2: a member listed twice adds no token: the ring's tokens stay strictly ascending and unique, and the ring equals the ring of the distinct members", () => {
  const memberArb = fc
    .uniqueArray(fc.stringMatching(/^[a-z][a-z0-9]{0,3}$/), { minLength: 1, maxLength: 5 })
    .chain((names) =>
      fc.tuple(
        fc.constant(names.map((name) => ({ id: NodeId(name), weight: 1 }))),
        fc.array(fc.nat(names.length - 1), { minLength: 1, maxLength: 4 }),
        fc.integer({ min: 1, max: 8 }),
      ),
    )
  fc.assert(
    fc.property(memberArb, ([members, repeats, tokensPerNode]) => {
      const listed = [...members, ...repeats.map((i) => members[i]!)]
      const ring = Ring.make(listed, tokensPerNode)
      const distinct = Ring.make(members, tokensPerNode)
      for (let i = 1; i < ring.tokens.length; i++) {
        assert.ok(ring.tokens[i - 1]! < ring.tokens[i]!, `tokens ascending and unique at ${i}`)
      }
      assert.deepEqual([...ring.tokens], [...distinct.tokens])
      assert.deepEqual([...ring.owners], [...distinct.owners])
      assert.deepEqual(ring.nodes, distinct.nodes)
    }),
    params(200),
  )
})

/** The detector as the spec states it: the mean of the last `windowSize` recorded intervals. */
const phiModel = (config: Phi.Config, arrivals: ReadonlyArray<number>) => {
  let last: number | undefined
  const recorded: Array<number> = []
  for (const t of arrivals) {
    if (last === undefined) {
      recorded.push(config.firstHeartbeatEstimateMs)
      last = t
      continue
    }
    if (t < last) continue
    const interval = t - last
    last = t
    if (interval <= config.maxSampleIntervalMs) recorded.push(interval)
  }
  const window = recorded.slice(-config.windowSize)
  const mean = window.length === 0 ? undefined : window.reduce((a, b) => a + b, 0) / window.length
  const phi = (now: number): number => {
    if (last === undefined || mean === undefined) return 0
    const silence = now - last - config.acceptablePauseMs
    return silence <= 0 ? 0 : silence / (Math.max(mean, config.minStdDevMs) * Math.LN10)
  }
  return { last, mean, phi }
}

const close = (a: number, b: number): boolean => Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(b))

test("FD-1, FD-2: the detector's phi is the exponential model's over the last windowSize recorded intervals (the first heartbeat seeds the window, long and backward intervals are not recorded)", () => {
  const configArb = fc.record({
    windowSize: fc.integer({ min: 1, max: 6 }),
    minStdDevMs: fc.integer({ min: 1, max: 300 }),
    acceptablePauseMs: fc.integer({ min: 0, max: 200 }),
    firstHeartbeatEstimateMs: fc.integer({ min: 1, max: 1000 }),
    maxSampleIntervalMs: fc.integer({ min: 1, max: 1500 }),
  })
  // Steps between arrivals: any, or one of the edges (a repeated time, a stale call, exactly
  // the sample bound, just past it).
  const gapsArb = fc.array(
    fc.oneof(
      fc.integer({ min: -300, max: 2500 }),
      fc.constantFrom("zero", "back", "max", "over" as const),
    ),
    { minLength: 1, maxLength: 30 },
  )
  fc.assert(
    fc.property(configArb, gapsArb, fc.nat(5000), (config, steps, probe) => {
      const edge = {
        zero: 0,
        back: -1,
        max: config.maxSampleIntervalMs,
        over: config.maxSampleIntervalMs + 1,
      }
      const gaps = steps.map((g) => (typeof g === "number" ? g : edge[g as keyof typeof edge]))
      const peer = NodeId("p")
      const state = Phi.make(config)
      assert.equal(Phi.isMonitored(state, peer), false)
      assert.equal(Phi.meanIntervalMs(state, peer), undefined)
      assert.equal(Phi.lastHeartbeatAt(state, peer), undefined)
      assert.equal(Phi.phi(state, peer, probe), 0)
      const arrivals: Array<number> = []
      let t = 10_000
      for (const gap of gaps) {
        t += gap
        arrivals.push(t)
        Phi.heartbeat(state, peer, t)
        const model = phiModel(config, arrivals)
        assert.equal(Phi.isMonitored(state, peer), true)
        assert.equal(Phi.lastHeartbeatAt(state, peer), model.last)
        assert.ok(close(Phi.meanIntervalMs(state, peer)!, model.mean!), "window mean")
        for (const after of [0, 1, probe]) {
          const now = model.last! + after
          const expected = model.phi(now)
          assert.ok(close(Phi.phi(state, peer, now), expected), `phi at +${after}`)
          assert.equal(Phi.isAvailable(state, peer, now), expected < Phi.DEFAULT_THRESHOLD)
          assert.equal(Phi.isAvailable(state, peer, now, 1), expected < 1)
        }
      }
      Phi.remove(state, peer)
      assert.equal(Phi.isMonitored(state, peer), false)
      assert.equal(Phi.phi(state, peer, t + probe), 0)
    }),
    params(300),
  )
})

test("FD-1, FD-2: the stated delays are pause + threshold·ln10·max(mean, floor), and a configuration that would void them is refused", () => {
  const c = { ...Phi.defaults, acceptablePauseMs: 50, minStdDevMs: 100 }
  assert.ok(close(Phi.suspicionDelayMs(c, 40), 50 + 8 * Math.LN10 * 100))
  assert.ok(close(Phi.suspicionDelayMs(c, 400, 2), 50 + 2 * Math.LN10 * 400))
  const w = { ...c, maxSampleIntervalMs: 700, firstHeartbeatEstimateMs: 900 }
  assert.ok(close(Phi.worstSuspicionDelayMs(w), 50 + 8 * Math.LN10 * 900))
  assert.ok(
    close(
      Phi.worstSuspicionDelayMs({ ...w, maxSampleIntervalMs: 1200 }, 3),
      50 + 3 * Math.LN10 * 1200,
    ),
  )
  assert.ok(close(Phi.safeSilenceMs(c), 50 + 8 * Math.LN10 * 100))
  assert.ok(close(Phi.safeSilenceMs(c, 4), 50 + 4 * Math.LN10 * 100))
  // phi reaches the threshold exactly at the suspicion delay: the peer is suspected there.
  for (let mean = 500; mean < 520; mean++) {
    const state = Phi.make({ minStdDevMs: mean, firstHeartbeatEstimateMs: mean })
    Phi.heartbeat(state, NodeId("p"), 0)
    const delay = Phi.suspicionDelayMs(state.config, mean)
    assert.equal(Phi.phi(state, NodeId("p"), delay), Phi.DEFAULT_THRESHOLD)
    assert.equal(Phi.isAvailable(state, NodeId("p"), delay), false, `suspected at ${delay}`)
  }
  // Boundaries that are valid.
  Phi.make({ windowSize: 1, acceptablePauseMs: 0 })
  Phi.make({ minStdDevMs: 0.5, firstHeartbeatEstimateMs: 0.5, maxSampleIntervalMs: 0.5 })
  assert.deepEqual(Phi.make().config, Phi.defaults)
  // And the ones that are not, each with a message naming the field.
  const refused: Array<[Partial<Phi.Config>, RegExp]> = [
    [{ windowSize: 0 }, /windowSize must be a positive integer, got 0/],
    [{ windowSize: 1.5 }, /windowSize must be a positive integer, got 1.5/],
    [{ minStdDevMs: 0 }, /minStdDevMs and firstHeartbeatEstimateMs must be positive/],
    [{ firstHeartbeatEstimateMs: 0 }, /minStdDevMs and firstHeartbeatEstimateMs must be positive/],
    [{ firstHeartbeatEstimateMs: Number.NaN }, /firstHeartbeatEstimateMs must be positive/],
    [{ acceptablePauseMs: -1 }, /acceptablePauseMs must be >= 0 and maxSampleIntervalMs > 0/],
    [{ maxSampleIntervalMs: 0 }, /acceptablePauseMs must be >= 0 and maxSampleIntervalMs > 0/],
  ]
  for (const [config, message] of refused) assert.throws(() => Phi.make(config), message)
})
