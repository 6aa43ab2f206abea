/**
 * Properties added for mutants that survived `npm run mutate` (docs/verification.md, "Mutation
 * testing"): each checks, on one module of impl/core directly, a law that the suites checked
 * only through the whole machine, or not at all, and that a surviving mutant broke. Each is
 * named after the invariant it serves.
 */
import assert from "node:assert/strict"
import { isDeepStrictEqual } from "node:util"
import { Schema } from "effect"
import fc from "fast-check"
import { murmur3Scramble, position } from "../impl/core/hash.ts"
import { NodeId } from "../impl/core/ids.ts"
import * as Phi from "../impl/core/phi.ts"
import * as Quorum from "../impl/core/quorum.ts"
import * as Ring from "../impl/core/ring.ts"
import * as Version from "../impl/core/version.ts"
import { decode as decodeContext, encode as encodeContext } from "../impl/wire/context.ts"
import { ObjSchema } from "../impl/wire/schema.ts"
import { naivePreferenceList } from "../models/ring.ts"
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

/** The inverse of an odd number modulo 2^32 (Newton's iteration; 5 steps give 32 bits and more). */
const inverse32 = (c: number): number => {
  let x = c
  for (let i = 0; i < 5; i++) x = Math.imul(x, 2 - Math.imul(c, x))
  return x
}

/** MurmurHash3's block scramble, undone: both multipliers are odd, so it is a bijection. */
const unscramble = (k: number): number => {
  const x = Math.imul(k, inverse32(0x1b873593))
  return Math.imul((x >>> 15) | (x << 17), inverse32(0xcc9e2d51))
}

const word = (k: number): string =>
  String.fromCharCode(k & 0xff, (k >>> 8) & 0xff, (k >>> 16) & 0xff, (k >>> 24) & 0xff)

/**
 * Two 8-byte strings whose MurmurHash3_x86_32 agree under every seed, and so do any two strings
 * that extend them by the same suffix: their first blocks scramble to words that differ in bit
 * 18 only, which the round's 13-bit rotation moves to bit 31, where ×5 and + c keep it (a
 * seed-independent differential in the manner of Aumasson and Bernstein, 2012); their second
 * blocks scramble to words that differ in bit 31 only, which cancels it. So `${a}#${i}` and
 * `${b}#${i}` have the same ring position for every i: every token of the two nodes collides.
 */
const collidingIds = (k1: number, k2: number): [string, string] => [
  word(k1) + word(k2),
  word(unscramble(murmur3Scramble(k1) ^ (1 << 18))) +
    word(unscramble(murmur3Scramble(k2) ^ (1 << 31))),
]

test("RING-2: token collisions go to the smaller node id: with two members whose every token collides, the preference lists equal the reference ring's whatever the members' order, and the member left with no token is on no list", () => {
  const others = ["n0", "n1", "n2"]
  fc.assert(
    fc.property(
      fc.integer(),
      fc.integer(),
      fc.nat(others.length),
      fc.shuffledSubarray([0, 1, 2, 3, 4], { minLength: 5, maxLength: 5 }),
      fc.integer({ min: 1, max: 4 }),
      fc.array(fc.string({ maxLength: 6 }), { minLength: 1, maxLength: 4 }),
      fc.integer({ min: 1, max: 6 }),
      (k1, k2, extra, order, tokensPerNode, keys, n) => {
        const [a, b] = collidingIds(k1, k2)
        for (let i = 0; i < tokensPerNode; i++) {
          assert.equal(position(`${a}#${i}`), position(`${b}#${i}`), `token ${i} collides`)
        }
        const ids = [a, b, ...others.slice(0, extra)]
        const members = order
          .filter((i) => i < ids.length)
          .map((i) => ({ id: NodeId(ids[i]!), weight: 1 }))
        const ring = Ring.make(members, tokensPerNode)
        const loser = [a, b].sort()[1]!
        assert.ok(ring.nodes.includes(NodeId(loser)))
        assert.ok(
          [...ring.owners].every((o) => ring.nodes[o] !== loser),
          "the larger id owns no token",
        )
        for (const key of keys) {
          const list = Ring.preferenceList(ring, key, n)
          assert.deepEqual(list, naivePreferenceList(members, tokensPerNode, key, n))
          assert.ok(!list.includes(NodeId(loser)))
        }
      },
    ),
    params(100),
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

test("FD-1, FD-2: the window's running sum sheds its float drift at every turn: each time the window has been rewritten whole, the mean is exactly the mean of the intervals in it", () => {
  // Steps of very different magnitudes from time 0, so that the running sum rounds: with
  // integer (millisecond) times it never does, and the recomputation is invisible. A window of
  // one turns at every heartbeat: a sum that is never recomputed drifts at once.
  const stepArb = fc
    .tuple(fc.double({ min: 0, max: 1, noNaN: true }), fc.integer({ min: -4, max: 3 }))
    .map(([mantissa, exponent]) => mantissa * 10 ** exponent)
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 5 }),
      fc.array(stepArb, { minLength: 20, maxLength: 60 }),
      (windowSize, steps) => {
        const peer = NodeId("p")
        const state = Phi.make({ windowSize })
        let now = 0
        Phi.heartbeat(state, peer, now)
        const recorded = [Phi.defaults.firstHeartbeatEstimateMs]
        for (const step of steps) {
          const last = now
          now += step
          Phi.heartbeat(state, peer, now)
          recorded.push(now - last)
          const overwrites = recorded.length - windowSize
          if (overwrites >= 0 && overwrites % windowSize === 0) {
            const window = recorded.slice(-windowSize)
            const exact = window.reduce((a, b) => a + b, 0) / windowSize
            assert.equal(Phi.meanIntervalMs(state, peer), exact, `after ${recorded.length}`)
          }
        }
      },
    ),
    params(200),
  )
})

test("EXP-1: a value is dead from its expiry on: at exactly its expiry it reads as absent", () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 10_000 }), fc.nat(10_000), (exp, ts) => {
      const live: Version.Sibling = { value: "v", ts, exp }
      assert.equal(Version.dead(live, exp - 1), false)
      assert.equal(Version.dead(live, exp), true)
      assert.equal(Version.dead({ value: "v", ts }, exp), false)
      assert.equal(Version.dead({ value: null, ts }, 0), true)
      const obj = Version.update(Version.empty, [], live, "a")
      assert.equal(Version.readAt(obj, exp - 1)?.sibling.value, "v")
      assert.equal(Version.readAt(obj, exp), undefined)
      assert.equal(Version.readValueAt(obj, exp), null)
      assert.deepEqual(Version.valuesAt(obj, exp), [])
      assert.equal(Version.isDeletedAt(obj, exp), true)
    }),
    params(100),
  )
})

test("RECLAIM-1: a key died when its last live value died: a tombstone at its write's wall time, an expired value at its expiry (a tombstone's own expiry does not count); undefined while a value lives", () => {
  const wallMs = (ts: number): number => Math.floor(ts / 1024)
  const siblingArb = fc.record({
    value: fc.option(fc.constantFrom("x", "y"), { nil: null }),
    ts: fc.nat(1_000_000),
    exp: fc.option(fc.nat(2000), { nil: undefined }),
  })
  fc.assert(
    fc.property(fc.array(siblingArb, { minLength: 1, maxLength: 4 }), fc.nat(2000), (sibs, now) => {
      // One actor per sibling, each written blind: every sibling stays.
      let obj = Version.empty
      sibs.forEach((s, i) => {
        obj = Version.update(obj, [], s, `a${i}`)
      })
      const diedAt = (s: Version.Sibling): number =>
        s.value === null ? wallMs(s.ts) : s.exp !== undefined ? s.exp : wallMs(s.ts)
      for (const s of sibs) assert.equal(Version.diedAt(s, wallMs), diedAt(s))
      const dead = sibs.every((s) => s.value === null || (s.exp !== undefined && s.exp <= now))
      assert.equal(
        Version.deadSince(obj, now, wallMs),
        dead ? Math.max(...sibs.map(diedAt)) : undefined,
      )
      assert.equal(Version.deadSince(Version.empty, now, wallMs), undefined)
    }),
    params(300),
  )
})

test("VER-2: two clocks are concurrent exactly when neither has seen every event of the other", () => {
  const clockArb = fc.tuple(fc.nat(3), fc.nat(3), fc.nat(3)).map(
    ([a, b, c]) =>
      (
        [
          ["a", a],
          ["b", b],
          ["c", c],
        ] as const
      ).filter(([, n]) => n > 0) as Version.Clock,
  )
  const events = (clock: Version.Clock): Set<string> =>
    new Set(clock.flatMap(([actor, n]) => Array.from({ length: n }, (_, i) => `${actor}${i + 1}`)))
  const subset = (x: Set<string>, y: Set<string>): boolean => [...x].every((e) => y.has(e))
  fc.assert(
    fc.property(clockArb, clockArb, (a, b) => {
      const ea = events(a)
      const eb = events(b)
      assert.equal(Version.descends(a, b), subset(eb, ea))
      assert.equal(Version.concurrent(a, b), !subset(eb, ea) && !subset(ea, eb))
    }),
    params(300),
  )
})

test("RECLAIM-2: an actor whose own siblings were all superseded mints its next dot at the floor at least; with a sibling of its own left, its dots stay contiguous", () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 5 }), fc.nat(1000), (writes, floor) => {
      let obj = Version.empty
      for (let i = 0; i < writes; i++) {
        obj = Version.update(obj, Version.context(obj), { value: `v${i}`, ts: i }, "a")
      }
      const counter = Version.context(obj)[0]![1]
      // Superseding everything it holds: the floor applies.
      const over = Version.update(obj, Version.context(obj), { value: "w", ts: 99 }, "a", floor)
      assert.deepEqual(Version.context(over), [["a", Math.max(counter + 1, floor)]])
      // A blind write beside its own sibling: the next dot, whatever the floor.
      const beside = Version.update(obj, [], { value: "w", ts: 99 }, "a", floor)
      assert.deepEqual(Version.context(beside), [["a", counter + 1]])
      assert.equal(Version.siblings(beside).length, 2)
    }),
    params(200),
  )
})

test("CTR-1: increments add exactly, per actor and sign, and the total is the base plus every increment; the join takes each actor's larger entries and the later base", () => {
  const deltaArb = fc.bigInt({ min: -(10n ** 20n), max: 10n ** 20n })
  const stepsArb = fc.array(fc.tuple(fc.constantFrom("a", "b", "c"), deltaArb), { maxLength: 8 })
  fc.assert(
    fc.property(deltaArb, stepsArb, stepsArb, fc.nat(3), fc.nat(3), (base, left, right, lt, rt) => {
      const start: Version.Counter = { base: String(base), baseTs: 0, p: [], n: [], float: false }
      const run = (steps: ReadonlyArray<readonly [string, bigint]>) =>
        steps.reduce((c, [actor, d]) => Version.increment(c, actor, String(d), false), start)
      const sums = (steps: ReadonlyArray<readonly [string, bigint]>, positive: boolean) => {
        const out = new Map<string, bigint>()
        for (const [actor, d] of steps) {
          if (d >= 0n === positive) out.set(actor, (out.get(actor) ?? 0n) + (d < 0n ? -d : d))
        }
        return [...out.entries()]
          .sort(([x], [y]) => (x < y ? -1 : 1))
          .map(([a, v]) => [a, String(v)])
      }
      const l = run(left)
      assert.deepEqual(l.p, sums(left, true))
      assert.deepEqual(l.n, sums(left, false))
      assert.equal(Version.counterTotal(l), String(left.reduce((t, [, d]) => t + d, base)))
      // Two replicas that incremented from the same start: the join has each actor's larger
      // entries (an actor's entries only grow), and the later base.
      const r = run(right)
      const x = { ...l, baseTs: lt, base: String(base + 1n) }
      const y = { ...r, baseTs: rt }
      const j = Version.mergeCounter(x, y)
      assert.deepEqual(j, Version.mergeCounter(y, x))
      assert.equal(j.base, lt > rt || (lt === rt && x.base >= y.base) ? x.base : y.base)
      assert.equal(j.baseTs, Math.max(lt, rt))
      assert.equal(j.float, false)
      for (const side of ["p", "n"] as const) {
        const want = new Map<string, bigint>()
        for (const [a, v] of [...l[side], ...r[side]]) {
          want.set(a, (want.get(a) ?? -1n) > BigInt(v) ? want.get(a)! : BigInt(v))
        }
        assert.deepEqual(
          j[side],
          [...want.entries()].sort(([p], [q]) => (p < q ? -1 : 1)).map(([a, v]) => [a, String(v)]),
        )
      }
    }),
    params(300),
  )
})

test("CTR-1: a float increment or a join with a float counter turns the counter into a float one and keeps its total", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: -1000, max: 1000 }),
      fc.array(fc.tuple(fc.constantFrom("a", "b"), fc.integer({ min: -50, max: 50 })), {
        maxLength: 6,
      }),
      fc.double({ min: -10, max: 10, noNaN: true }),
      (base, steps, delta) => {
        const start: Version.Counter = { base: String(base), baseTs: 1, p: [], n: [], float: false }
        const c = steps.reduce((k, [a, d]) => Version.increment(k, a, String(d), false), start)
        const total = Number(Version.counterTotal(c))
        const f = Version.increment(c, "c", String(delta), true)
        assert.equal(f.float, true)
        assert.ok(Math.abs(Number(Version.counterTotal(f)) - (total + delta)) < 1e-6)
        for (const [, v] of [...f.p, ...f.n])
          assert.ok(Number.isFinite(Number(v)) && Number(v) >= 0)
        assert.equal(f.base, String(Number(c.base)))
        assert.equal(f.baseTs, c.baseTs)
        const j = Version.mergeCounter(c, f)
        assert.equal(j.float, true)
        assert.ok(Math.abs(Number(Version.counterTotal(j)) - (total + delta)) < 1e-6)
        // Float entries: an actor's later float increment is added, not concatenated.
        const g = Version.increment(f, "c", "0.5", true)
        assert.ok(Math.abs(Number(Version.counterTotal(g)) - (total + delta + 0.5)) < 1e-6)
        // Join of float counters keeps each actor's larger entry.
        const h = Version.mergeCounter(g, f)
        assert.deepEqual(h.p, g.p)
        assert.deepEqual(h.n, g.n)
      },
    ),
    params(300),
  )
})

/** Small objects from a small domain (so that equal ones are common): blind writes by a, b. */
const smallSiblingArb: fc.Arbitrary<Version.Sibling> = fc.record({
  value: fc.constantFrom("x", "y", null),
  ts: fc.nat(2),
  exp: fc.constantFrom(undefined, 5),
  counter: fc.constantFrom(undefined, {
    base: "1",
    baseTs: 0,
    p: [["a", "2"]] as const,
    n: [],
    float: false,
  }),
})
const smallObjArb: fc.Arbitrary<Version.Obj> = fc
  .array(fc.tuple(fc.constantFrom("a", "b"), smallSiblingArb, fc.boolean()), { maxLength: 3 })
  .map((writes) =>
    writes.reduce(
      (obj, [actor, s, seen]) => Version.update(obj, seen ? Version.context(obj) : [], s, actor),
      Version.empty,
    ),
  )

test("LWW-1: a plain read resolves to the latest sibling by (timestamp, actor, counter), and last-write-wins pruning keeps just that one", () => {
  fc.assert(
    fc.property(smallObjArb, (obj) => {
      const all = Version.siblings(obj)
      const key = (d: Version.Dotted) => [d.sibling.ts, d.actor, d.counter] as const
      const after = (x: Version.Dotted, y: Version.Dotted): boolean => {
        const [a, b] = [key(x), key(y)]
        return a[0] !== b[0] ? a[0] > b[0] : a[1] !== b[1] ? a[1] > b[1] : a[2] > b[2]
      }
      for (const x of all) for (const y of all) assert.equal(Version.later(x, y), after(x, y))
      const best = all.reduce<Version.Dotted | undefined>(
        (m, d) => (m === undefined || after(d, m) ? d : m),
        undefined,
      )
      assert.deepEqual(Version.resolve(obj), best)
      const pruned = Version.pruneLww(obj)
      assert.deepEqual(Version.context(pruned), Version.context(obj))
      assert.deepEqual(
        Version.siblings(pruned).map((d) => [d.actor, d.sibling]),
        best === undefined ? [] : [[best.actor, best.sibling]],
      )
      // A key whose tombstones were purged keeps its clock and no sibling: nothing to prune.
      const purged: Version.Obj = { entries: obj.entries.map((e) => ({ ...e, values: [] })) }
      assert.deepEqual(Version.pruneLww(purged), purged)
    }),
    params(300),
  )
  assert.deepEqual(Version.pruneLww(Version.empty), Version.empty)
})

test("VER-4: deleted, dead-at and live values agree with the siblings: deleted means written with every sibling a tombstone (or none left), live values are the non-tombstones", () => {
  fc.assert(
    fc.property(smallObjArb, fc.nat(8), (obj, now) => {
      const all = Version.siblings(obj).map((d) => d.sibling)
      const live = all.filter((s) => s.value !== null).map((s) => s.value)
      const liveAt = all.filter((s) => !Version.dead(s, now)).map((s) => s.value)
      assert.deepEqual(Version.values(obj), live)
      assert.deepEqual(Version.valuesAt(obj, now), liveAt)
      assert.equal(Version.isDeleted(obj), all.length > 0 && live.length === 0)
      assert.equal(Version.isDeletedAt(obj, now), all.length > 0 && liveAt.length === 0)
      assert.equal(Version.wasDeleted(obj), obj.entries.length > 0 && live.length === 0)
      const counters = Version.siblings(obj).filter(
        (d) => d.sibling.counter !== undefined && !Version.dead(d.sibling, now),
      )
      const joined = Version.liveCounterAt(obj, now)
      if (counters.length === 0) assert.equal(joined, undefined)
      else assert.deepEqual(joined, counters[0]!.sibling.counter)
    }),
    params(300),
  )
})

/** One field of one sibling changed: a near miss that only that field tells apart. */
type Tweak = readonly [
  Version.Obj,
  number,
  number,
  "value" | "ts" | "exp" | "counter" | "base" | "p",
]
const tweakArb: fc.Arbitrary<Tweak> = fc.tuple(
  smallObjArb.filter((obj) => Version.siblings(obj).length > 0),
  fc.nat(),
  fc.nat(),
  fc.constantFrom<Tweak[3]>("value", "ts", "exp", "counter", "base", "p"),
)
const tweak = ([obj, at, slot, field]: Tweak): Version.Obj => {
  const held = obj.entries.flatMap((e, i) => (e.values.length > 0 ? [i] : []))
  const i = held[at % held.length]!
  const j = slot % obj.entries[i]!.values.length
  const s = obj.entries[i]!.values[j]!
  const fresh: Version.Counter = { base: "7", baseTs: 1, p: [["b", "3"]], n: [], float: false }
  const c = s.counter
  const changed: Version.Sibling =
    field === "value"
      ? { ...s, value: s.value === "x" ? "y" : "x" }
      : field === "ts"
        ? { ...s, ts: s.ts + 1 }
        : field === "exp"
          ? { ...s, exp: s.exp === undefined ? 7 : s.exp + 1 }
          : c === undefined
            ? { ...s, counter: fresh }
            : field === "counter"
              ? { ...s, counter: undefined }
              : field === "base"
                ? { ...s, counter: { ...c, base: `${c.base}0` } }
                : { ...s, counter: { ...c, p: [...c.p, ["z", "1"]] } }
  return {
    entries: obj.entries.map((e, k) =>
      k === i ? { ...e, values: e.values.map((v, m) => (m === j ? changed : v)) } : e,
    ),
  }
}

test("VER-1: equality of objects is structural: equals holds exactly when the two objects are deeply equal", () => {
  fc.assert(
    fc.property(smallObjArb, smallObjArb, (a, b) => {
      assert.equal(Version.equals(a, b), isDeepStrictEqual(a, b))
      assert.equal(Version.equals(a, a), true)
      // A copy (as from the wire or the disk) shares no counter object with the original.
      const copy = structuredClone(a)
      assert.equal(Version.equals(a, copy), true)
      assert.equal(Version.equals(copy, a), true)
    }),
    params(500),
  )
  // Near misses: one field of one sibling (its value, timestamp, expiry or counter) differs.
  fc.assert(
    fc.property(tweakArb, (t) => {
      const [a] = t
      const b = tweak(t)
      assert.equal(isDeepStrictEqual(a, b), false)
      assert.equal(Version.equals(a, b), false)
      assert.equal(Version.equals(b, a), false)
    }),
    params(300),
  )
})

test("CTX-1: the context an object hands a client is a version vector the node accepts back: counters of at least 1 in actor order, even when the object holds an entry with counter 0 (the wire schema admits one)", () => {
  const secret = "s"
  fc.assert(
    fc.property(smallObjArb, fc.subarray(["0", "a0", "b", "c"], { minLength: 1 }), (obj, zeros) => {
      const entries = [...obj.entries]
      for (const actor of zeros) {
        if (!entries.some((e) => e.actor === actor)) entries.push({ actor, counter: 0, values: [] })
      }
      entries.sort((x, y) => (x.actor < y.actor ? -1 : 1))
      const withZeros: Version.Obj = Schema.decodeUnknownSync(ObjSchema)({ entries })
      const context = Version.context(withZeros)
      assert.deepEqual(
        context,
        obj.entries.map((e) => [e.actor, e.counter]),
      )
      assert.deepEqual(decodeContext(encodeContext(context, secret), secret), context)
    }),
    params(200),
  )
})

test("VER-3: the metadata a key carries is its actors' ids plus 8 bytes per entry and 16 per sibling", () => {
  fc.assert(
    fc.property(smallObjArb, (obj) => {
      const want = obj.entries.reduce(
        (sum, e) => sum + e.actor.length + 8 + 16 * e.values.length,
        0,
      )
      assert.equal(Version.metadataBytes(obj), want)
    }),
    params(100),
  )
})
