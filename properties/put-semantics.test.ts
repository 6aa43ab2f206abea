/**
 * CMD-1: what one write command does to one key, through the PUT coordinator
 * (impl/core/put-coordinator.ts) stepped directly with a single replica, against a sequential
 * model of Redis's commands on one string key, small enough to read at a glance: SET with NX,
 * XX, EX and KEEPTTL (and GET's `previous`), DEL, APPEND, INCRBY and INCRBYFLOAT (their parsing,
 * int64 overflow, and the key's expiry kept), EXPIRE and PERSIST, and compare-and-set on a
 * context (DHT.PUT … IF-CONTEXT) fresh or stale. Time moves between commands, so values expire
 * in between. Every reply is compared field by field (PutOk's `existed`, `previous`, `total`;
 * PutSkipped's `previous`; the error text), and after every command the value a GET reads and
 * its expiry.
 *
 * The other suites check what the coordinator does with replicas (properties/coordinators.test.ts)
 * and through faults (expiry-model, counter-sim); this one checks the command semantics that the
 * mutation run of put-coordinator.ts found unexamined (docs/verification.md).
 */
import assert from "node:assert/strict"
import fc from "fast-check"
import * as Hlc from "../impl/core/hlc.ts"
import { NodeId } from "../impl/core/ids.ts"
import type { ClientResult, PutOp } from "../impl/core/messages.ts"
import * as Put from "../impl/core/put-coordinator.ts"
import * as Version from "../impl/core/version.ts"
import { assertFloors, params, replaying } from "./helpers/fc.ts"
import { test } from "./helpers/test.ts"

const self = NodeId("n0")
const n1 = NodeId("n1")
const n2 = NodeId("n2")
const INT64_MIN = -(2n ** 63n)
const INT64_MAX = 2n ** 63n - 1n

type Cmd =
  | {
      readonly _tag: "Set"
      readonly value: string
      readonly cond: "nx" | "xx" | undefined
      readonly ttl: number | "keep" | undefined
    }
  | { readonly _tag: "Del" }
  | { readonly _tag: "Append"; readonly value: string }
  | { readonly _tag: "Incr"; readonly by: string; readonly float: boolean }
  /** EXPIRE (a TTL in ms) or PERSIST (undefined). */
  | { readonly _tag: "Expire"; readonly ttl: number | undefined }
  /** IF-CONTEXT with the context of the `ago`-th write before the last (0: the current one). */
  | { readonly _tag: "Cas"; readonly value: string; readonly ago: number }
  | { readonly _tag: "Wait"; readonly ms: number }

// Strings Redis reads as integers, as floats, as both, and as neither.
const values = fc.constantFrom(
  "0",
  "7",
  "-3",
  "abc",
  "",
  "9223372036854775807",
  "-9223372036854775808",
  "9223372036854775808",
  "1.5",
  "-0",
  "007",
  "+4",
  " 2",
  "2 ",
  "2.5e3",
  ".5",
  "5.",
  "1e",
  ".25",
  "1e308",
)
const intBys = fc.constantFrom("1", "-1", "5", "0", "9223372036854775807", "-9223372036854775808")
// Binary fractions: sums are exact, so the model's arithmetic is plainly right.
const floatBys = fc.constantFrom("0.5", "-1.25", "3", "0", "1e3", "-2.5", "1e308")
const ttls = fc.integer({ min: 1, max: 3000 })

const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      _tag: fc.constant("Set" as const),
      value: values,
      cond: fc.constantFrom(undefined, "nx" as const, "xx" as const),
      ttl: fc.oneof(fc.constant(undefined), fc.constant("keep" as const), ttls),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ _tag: "Del" as const }) },
  { weight: 2, arbitrary: fc.record({ _tag: fc.constant("Append" as const), value: values }) },
  {
    weight: 4,
    arbitrary: fc.oneof(
      fc.record({ _tag: fc.constant("Incr" as const), by: intBys, float: fc.constant(false) }),
      fc.record({ _tag: fc.constant("Incr" as const), by: floatBys, float: fc.constant(true) }),
    ),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      _tag: fc.constant("Expire" as const),
      ttl: fc.oneof(fc.constant(undefined), ttls),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      _tag: fc.constant("Cas" as const),
      value: values,
      ago: fc.oneof(fc.constant(0), fc.nat(3)),
    }),
  },
  { weight: 2, arbitrary: fc.record({ _tag: fc.constant("Wait" as const), ms: ttls }) },
)

// ---------------------------------------------------------------------------------------------
// The model: one Redis string key

/** Redis's string2ll: no sign but a minus, no leading zeros, no "-0", within int64. */
const redisInt = (s: string): bigint | undefined => {
  if (!/^(0|-?[1-9]\d*)$/.test(s)) return undefined
  const n = BigInt(s)
  return n >= INT64_MIN && n <= INT64_MAX ? n : undefined
}

/** Redis's string2ld on the decimal forms generated here: no surrounding space, finite. */
const redisFloat = (s: string): number | undefined => {
  if (!/^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i.test(s)) return undefined
  const n = Number(s)
  return Number.isFinite(n) ? n : undefined
}

/**
 * A counter as CTR-1 defines it, for one coordinator: the value it started from, the sum of the
 * increments and the sum of the decrements (decimal strings). An integer counter that
 * INCRBYFLOAT touches becomes a float one, each part converted on its own.
 */
interface Counter {
  readonly base: string
  readonly p: string
  readonly n: string
  readonly float: boolean
}

const totalOf = (c: Counter): string =>
  c.float
    ? String(Number(c.base) + Number(c.p) - Number(c.n))
    : (BigInt(c.base) + BigInt(c.p) - BigInt(c.n)).toString()

const add = (c: Counter, by: string): Counter => {
  const f = (x: string) => (c.float ? String(Number(x)) : x)
  const d = c.float ? Number(by) : BigInt(by)
  const mag = d < 0 ? -d : d
  const plus = (x: string) =>
    c.float ? String(Number(x) + (mag as number)) : (BigInt(x) + (mag as bigint)).toString()
  const next = { base: f(c.base), p: f(c.p), n: f(c.n), float: c.float }
  return d >= 0 ? { ...next, p: plus(next.p) } : { ...next, n: plus(next.n) }
}

interface Key {
  value: string | null
  exp: number | undefined
  /** The counter the value is the total of (made by an increment; any other write ends it). */
  counter: Counter | undefined
}

type Expected =
  | {
      readonly _tag: "PutOk"
      readonly existed: boolean
      readonly previous?: object
      readonly total?: string
    }
  | { readonly _tag: "PutSkipped"; readonly previous?: object }
  | { readonly _tag: "Failed"; readonly detail: string }

/** Apply `cmd` at `now` to the model; what the client must get back. */
const apply = (k: Key, cmd: Cmd, now: number, fresh: boolean): Expected => {
  const live = k.value !== null && (k.exp === undefined || k.exp > now)
  const previous = live
    ? { value: k.value!, ...(k.exp === undefined ? {} : { exp: k.exp }) }
    : undefined
  const prev = previous === undefined ? {} : { previous }
  const write = (value: string | null, exp: number | undefined, counter?: Counter): Expected => {
    k.value = value
    k.exp = value === null ? undefined : exp
    k.counter = counter
    return { _tag: "PutOk", existed: live, ...prev }
  }
  switch (cmd._tag) {
    case "Set":
      if ((cmd.cond === "nx" && live) || (cmd.cond === "xx" && !live)) {
        return { _tag: "PutSkipped", ...prev }
      }
      return write(
        cmd.value,
        cmd.ttl === "keep" ? previous?.exp : cmd.ttl === undefined ? undefined : now + cmd.ttl,
      )
    case "Del":
      return write(null, undefined)
    case "Append":
      return write((live ? k.value! : "") + cmd.value, previous?.exp)
    case "Expire":
      // The live value written again (a counter's total, as a plain value) with a new expiry.
      if (!live) return { _tag: "PutSkipped" }
      return write(k.value, cmd.ttl === undefined ? undefined : now + cmd.ttl)
    case "Cas":
      if (!fresh) return { _tag: "PutSkipped", ...prev }
      return write(cmd.value, undefined)
    case "Incr": {
      const notInt = "value is not an integer or out of range"
      let counter: Counter
      if (live && k.counter !== undefined) {
        if (k.counter.float && !cmd.float) return { _tag: "Failed", detail: notInt }
        counter = k.counter
      } else {
        const text = live ? k.value! : "0"
        const valid = cmd.float ? redisFloat(text) !== undefined : redisInt(text) !== undefined
        if (!valid) {
          return { _tag: "Failed", detail: cmd.float ? "value is not a valid float" : notInt }
        }
        counter = { base: cmd.float ? String(Number(text)) : text, p: "0", n: "0", float: false }
      }
      if (cmd.float) counter = { ...counter, float: true }
      const next = add(counter, cmd.by)
      const total = totalOf(next)
      if (next.float && !Number.isFinite(Number(total))) {
        return { _tag: "Failed", detail: "increment would produce NaN or Infinity" }
      }
      if (!next.float && (BigInt(total) < INT64_MIN || BigInt(total) > INT64_MAX)) {
        return { _tag: "Failed", detail: "increment or decrement would overflow" }
      }
      // INCR keeps the key's expiry.
      return { ...write(total, previous?.exp, next), total } as Expected
    }
    case "Wait":
      throw new Error("not a command")
  }
}

// ---------------------------------------------------------------------------------------------
// The coordinator

const opOf = (cmd: Cmd, now: number, contexts: ReadonlyArray<Version.Clock>): PutOp => {
  const base = { _tag: "Put" as const, key: "k", context: null }
  switch (cmd._tag) {
    case "Set":
      return {
        ...base,
        value: cmd.value,
        cond: cmd.cond,
        ...(cmd.ttl === "keep"
          ? { keep: "ttl" as const }
          : cmd.ttl === undefined
            ? {}
            : { exp: now + cmd.ttl }),
      }
    case "Del":
      return { ...base, value: null }
    case "Append":
      return { ...base, value: cmd.value, append: true }
    case "Incr":
      return { ...base, value: null, incr: { by: cmd.by, float: cmd.float } }
    case "Expire":
      return {
        ...base,
        value: null,
        keep: "value",
        ...(cmd.ttl === undefined ? {} : { exp: now + cmd.ttl }),
      }
    case "Cas": {
      const context = contexts[contexts.length - 1 - cmd.ago] ?? Version.emptyClock
      return { ...base, value: cmd.value, cond: "context", context }
    }
    case "Wait":
      throw new Error("not a command")
  }
}

/** Run one write through a one-replica coordinator: its reply, and the object it persisted. */
const run = (op: PutOp, local: Version.Obj, now: number, hlc: number, at: NodeId = self) => {
  const view: Put.PutView = {
    now,
    self: at,
    mode: "cp",
    r: 1,
    timeoutMs: 500,
    hlc,
    local: () => local,
    reconcile: (o) => o,
    placement: () => ({ targets: [{ node: at, hintFor: undefined }], pendingOwners: [] }),
  }
  const p = Put.make({
    op,
    self: at,
    r: 1,
    w: 1,
    local,
    asked: [at],
    substitutes: new Set(),
    waitFor: [at],
    waitsForGrant: false,
  })
  const { outputs, done } = Put.step(p, { _tag: "Start" }, view)
  assert.ok(done, "one replica: the write ends in its first step")
  let persisted: Version.Obj | undefined
  let reply: ClientResult | undefined
  let clock = hlc
  for (const o of outputs) {
    if (o._tag === "Persist") persisted = o.obj
    if (o._tag === "Reply") reply = o.result
    if (o._tag === "Clock") clock = o.hlc
  }
  assert.ok(reply !== undefined, "the write answers")
  return { reply, persisted, hlc: clock }
}

const previousOf = (r: ClientResult) =>
  "previous" in r && r.previous !== undefined ? { previous: r.previous } : {}

test("CMD-1: one key's write commands through the PUT coordinator reply and write exactly as a sequential Redis model says", () => {
  const seen = {
    commands: 0,
    skipped: 0,
    failed: 0,
    incremented: 0,
    floats: 0,
    appended: 0,
    keptTtl: 0,
    expiredBetween: 0,
    casFresh: 0,
    casStale: 0,
    existed: 0,
  }
  fc.assert(
    fc.property(fc.array(cmdArb, { minLength: 1, maxLength: 40, size: "max" }), (cmds) => {
      const k: Key = { value: null, exp: undefined, counter: undefined }
      let local = Version.empty
      let now = 10_000
      let hlc = Hlc.tick(0, now)
      // The context after each write (what a client holding it would send back).
      const contexts: Array<Version.Clock> = []
      for (const cmd of cmds) {
        if (cmd._tag === "Wait") {
          const wasLive = k.value !== null && (k.exp === undefined || k.exp > now)
          now += cmd.ms
          if (wasLive && k.exp !== undefined && k.exp <= now) seen.expiredBetween++
          continue
        }
        now += 1
        seen.commands++
        const op = opOf(cmd, now, contexts)
        // A compare-and-set holds with the current context: the last write's, or none at all.
        const fresh = cmd._tag === "Cas" && (cmd.ago === 0 || contexts.length === 0)
        const expected = apply(k, cmd, now, fresh)
        const got = run(op, local, now, hlc)
        hlc = got.hlc
        const what = `${JSON.stringify(cmd)} at ${now}`
        switch (expected._tag) {
          case "Failed":
            seen.failed++
            assert.equal(got.reply._tag, "Failed", what)
            if (got.reply._tag === "Failed") {
              assert.equal(got.reply.error._tag, "BadRequest", what)
              assert.equal((got.reply.error as { detail?: string }).detail, expected.detail, what)
            }
            assert.equal(got.persisted, undefined, `${what}: a failed command writes nothing`)
            break
          case "PutSkipped":
            seen.skipped++
            assert.deepEqual({ _tag: got.reply._tag, ...previousOf(got.reply) }, expected, what)
            assert.equal(got.persisted, undefined, `${what}: a skipped command writes nothing`)
            break
          case "PutOk": {
            assert.equal(got.reply._tag, "PutOk", `${what}: ${JSON.stringify(got.reply)}`)
            if (got.reply._tag !== "PutOk") break
            const { existed, total } = got.reply
            assert.deepEqual(
              {
                _tag: "PutOk",
                existed,
                ...previousOf(got.reply),
                ...(total === undefined ? {} : { total }),
              },
              expected,
              what,
            )
            assert.ok(got.persisted !== undefined, `${what}: written`)
            local = got.persisted!
            contexts.push(Version.context(local))
            if (existed) seen.existed++
            if (cmd._tag === "Incr") seen.incremented++
            if (cmd._tag === "Incr" && cmd.float) seen.floats++
            if (cmd._tag === "Append") seen.appended++
            if (cmd._tag === "Set" && cmd.ttl === "keep" && k.exp !== undefined) seen.keptTtl++
            break
          }
        }
        if (cmd._tag === "Cas") {
          if (expected._tag === "PutOk") seen.casFresh++
          else seen.casStale++
        }
        // What a GET reads now, and the expiry it reports.
        const read = Version.readAt(local, now)
        const live = k.value !== null && (k.exp === undefined || k.exp > now)
        assert.equal(Version.readValueAt(local, now) ?? null, live ? k.value : null, what)
        if (live) assert.equal(read?.sibling.exp, k.exp, `${what}: expiry`)
      }
    }),
    params(300),
  )
  console.log(`# CMD-1: ${JSON.stringify(seen)}`)
  if (replaying) return
  assertFloors(seen, {
    commands: 3000,
    skipped: 200,
    failed: 200,
    incremented: 300,
    floats: 100,
    appended: 200,
    keptTtl: 30,
    expiredBetween: 30,
    casFresh: 50,
    casStale: 50,
    existed: 500,
  })
})

test("CMD-1: a conditional or read-modify-write reads a quorum first even when the client sent a context; a plain write with one does not", () => {
  const context: Version.Clock = [["n1", 3]]
  const base: PutOp = { _tag: "Put", key: "k", value: "v", context }
  const reading: ReadonlyArray<PutOp> = [
    { ...base, cond: "nx" },
    { ...base, cond: "xx" },
    { ...base, cond: "context" },
    { ...base, keep: "ttl" },
    { ...base, keep: "value" },
    { ...base, incr: { by: "1", float: false } },
    { ...base, append: true },
  ]
  for (const op of [base, ...reading]) {
    const p = Put.make({
      op,
      self,
      r: 2,
      w: 1,
      local: Version.empty,
      asked: [n1, n2],
      substitutes: new Set(),
      waitFor: [n1, n2],
      waitsForGrant: false,
    })
    const view: Put.PutView = {
      now: 10_000,
      self,
      mode: "cp",
      r: 2,
      timeoutMs: 500,
      hlc: Hlc.tick(0, 10_000),
      local: () => Version.empty,
      reconcile: (o) => o,
      placement: () => ({ targets: [{ node: self, hintFor: undefined }], pendingOwners: [] }),
    }
    const tags = Put.step(p, { _tag: "Start" }, view).outputs.map((o) => o._tag)
    assert.deepEqual(
      tags,
      op === base ? ["Clock", "Persist", "Reply"] : ["Ask", "Ask"],
      JSON.stringify(op),
    )
  }
})

test("CMD-1, CTR-1: DEL's count, PutOk's dot and a counter's base follow what the write superseded and when", () => {
  const now = 10_000
  const hlc = Hlc.tick(0, now)
  const set = (
    value: string,
    at: NodeId,
    local: Version.Obj,
    context: Version.Clock | null,
    t = now,
  ) => run({ _tag: "Put", key: "k", value, context }, local, t, Hlc.tick(0, t), at)
  // n1's live value; n2 writes beside it (an empty context: a new sibling) and over it.
  const a = set("a", n1, Version.empty, null).persisted!
  for (const [context, supersedes] of [
    [Version.emptyClock, false],
    [Version.context(a), true],
  ] as const) {
    const b = set("b", n2, a, context)
    assert.ok(b.reply._tag === "PutOk")
    assert.equal(b.reply.existed, supersedes, "existed: the write superseded a live value")
    // The dot is n2's new event: the sibling holding "b" in what was persisted.
    const minted = Version.siblings(b.persisted!).find((d) => d.sibling.value === "b")!
    assert.deepEqual(b.reply.dot, [minted.actor, minted.counter])
    assert.equal(minted.actor, n2)
  }
  // Concurrent SETs of 9 (earlier) and 7 (later) on two replicas, each then incremented there:
  // the join counts both increments over the later value's base, 7 + 1 + 1.
  const nine = set("9", n1, Version.empty, null, now).persisted!
  const seven = set("7", n2, Version.empty, null, now + 50).persisted!
  const incr = (local: Version.Obj, at: NodeId, t: number) =>
    run(
      { _tag: "Put", key: "k", value: null, context: null, incr: { by: "1", float: false } },
      local,
      t,
      Hlc.tick(hlc, t),
      at,
    ).persisted!
  const joined = Version.sync(incr(nine, n1, now + 100), incr(seven, n2, now + 100))
  assert.equal(Version.readValueAt(joined, now + 200), "9")
})
