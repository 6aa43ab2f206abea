/**
 * The PUT/DEL coordinator as a machine of its own, one per request (Riak's put FSM), on a
 * replica of the key: a read phase (the context a plain write supersedes, or what a conditional
 * write depends on), then — for a write forwarded here, once its forwarder granted it (KV-9) —
 * mint the write's event once, persist it, replicate it, and answer at W.
 *
 *   step(request, input, view) → { outputs, done }
 *
 * Inputs: `Start` (once the node registered the request), a replica's `Read` answer, the
 * forwarder's `Grant`, a replica's write `Ack`, the `Deadline`. `view` is what the request reads
 * of its node, read-only: the time, this node's id and hybrid clock, the current local object of
 * the key, the key's policy, and where the copies go once writing begins. The outputs say what
 * the node is to do, in order: ask a replica, move the hybrid clock, persist the written object
 * (before anything that follows is released), replicate it, reply. node-put.ts applies them.
 *
 * Owns: a `PutRequest` (changed in place). Must not: touch the node's state or store, mint a
 * forwarded write without its forwarder's grant, or reuse a dot (RECLAIM-2: the event is minted
 * over the *current* local object, which holds every dot this node minted).
 */
import type { ClientResult, Previous, PutOp } from "./messages.ts"
import type { NodeId } from "./ids.ts"
import { BadRequest, NotGranted, quorumNotMet } from "./failure.ts"
import { counts } from "./get-coordinator.ts"
import * as Hlc from "./hlc.ts"
import * as Quorum from "./quorum.ts"
import * as Version from "./version.ts"

/** Where one copy of a key goes: a preferred replica, or a substitute holding a hint for one. */
export interface Target {
  readonly node: NodeId
  readonly hintFor: NodeId | undefined
}

export interface PutRequest {
  readonly op: PutOp
  /** The replicas the read phase asks (sloppy substitutes included, this node always). */
  readonly replicas: ReadonlyArray<NodeId>
  /** Where the copies go (sloppy substitutes and pending owners included), fixed at `Writing`. */
  targets: ReadonlyArray<Target>
  readonly w: number
  /** Reading: learning the context a plain write supersedes. Writing: waiting for W acks. */
  phase: "Reading" | "Writing"
  tally: Quorum.Tally
  readonly responses: Map<NodeId, Version.Obj>
  /** Sloppy substitutes asked in the read phase (an empty answer from one does not count). */
  readonly substitutes: ReadonlySet<NodeId>
  /** AP: the nodes believed up when the read phase began; once all answered, write anyway. */
  readonly waitFor: ReadonlyArray<NodeId>
  written: Version.Obj
  /** The write superseded a live value (for DEL's count). */
  existed: boolean
  /** The live value the coordinator resolved when it minted (SET … GET, GETDEL). */
  previous?: Previous | undefined
  /** A counter's total after an increment (INCR's reply). */
  total?: string | undefined
  /** The read phase is over (a plain write learnt its context, or the write had one). */
  readDone: boolean
  /**
   * A forwarded write runs only once its forwarder granted this coordinator the right to run it
   * (KV-9): `Waiting` until the grant arrives. Writes from this node's own clients: `Granted`.
   */
  claim: "Waiting" | "Granted"
}

export type PutInput =
  | { readonly _tag: "Start" }
  | { readonly _tag: "Read"; readonly from: NodeId; readonly obj: Version.Obj }
  | { readonly _tag: "Grant"; readonly granted: boolean }
  | { readonly _tag: "Ack"; readonly from: NodeId }
  | { readonly _tag: "Deadline" }

export interface PutView {
  readonly now: number
  readonly self: NodeId
  readonly mode: "ap" | "cp"
  /** The node's read quorum, which a write's read phase uses. */
  readonly r: number
  /** The request's timeout, for the failure's facts. */
  readonly timeoutMs: number
  /** The node's hybrid clock. */
  readonly hlc: number
  /** The key's current local object (the step's own earlier writes included). */
  readonly local: () => Version.Obj
  /** The key's policy applied to an object (last-write-wins keeps the latest sibling). */
  readonly reconcile: (obj: Version.Obj) => Version.Obj
  /**
   * Where the copies go when writing begins: the targets (preferred replicas or substitutes
   * with a hint), and the pending owners (joining nodes, heirs of a leaving one), which get the
   * write too and must acknowledge it on top of W (Cassandra's pending ranges).
   */
  readonly placement: () => {
    readonly targets: ReadonlyArray<Target>
    readonly pendingOwners: ReadonlyArray<NodeId>
  }
}

export type PutOutput =
  /** Ask `node` for its copy (the read phase). */
  | { readonly _tag: "Ask"; readonly node: NodeId }
  /** The node's hybrid clock moves to `hlc` (it observed the siblings it read, and ticked). */
  | { readonly _tag: "Clock"; readonly hlc: number }
  /** Persist the written object locally: what follows is released only once it is durable. */
  | { readonly _tag: "Persist"; readonly obj: Version.Obj }
  /** Send the written object to a target (a hint for `target.hintFor` when it is a substitute). */
  | { readonly _tag: "Replicate"; readonly target: Target; readonly obj: Version.Obj }
  | { readonly _tag: "Reply"; readonly result: ClientResult }

export interface PutResult {
  readonly outputs: ReadonlyArray<PutOutput>
  /** The request is over: the node forgets it. */
  readonly done: boolean
}

export const make = (args: {
  readonly op: PutOp
  readonly self: NodeId
  readonly r: number
  readonly w: number
  readonly local: Version.Obj
  readonly asked: ReadonlyArray<NodeId>
  readonly substitutes: ReadonlySet<NodeId>
  readonly waitFor: ReadonlyArray<NodeId>
  /** A forwarded write waits for its forwarder's grant (KV-9); none when failover is unsafe. */
  readonly waitsForGrant: boolean
}): PutRequest => {
  const asked = args.asked.includes(args.self) ? args.asked : [...args.asked, args.self]
  const need = Math.min(args.r, asked.length - args.substitutes.size)
  return {
    op: args.op,
    replicas: asked,
    substitutes: args.substitutes,
    waitFor: args.waitFor,
    targets: [],
    w: args.w,
    phase: "Reading",
    tally: Quorum.addOk(Quorum.make(need, asked), args.self),
    responses: new Map([[args.self, args.local]]),
    written: args.local,
    existed: false,
    readDone: false,
    claim: args.waitsForGrant ? "Waiting" : "Granted",
  }
}

const waiting: PutResult = { outputs: [], done: false }

export const step = (p: PutRequest, input: PutInput, view: PutView): PutResult => {
  switch (input._tag) {
    case "Start":
      return start(p, view)
    case "Read":
      return onRead(p, input.from, input.obj, view)
    case "Grant":
      if (p.claim !== "Waiting") return waiting
      // Refused: another replica runs this write (or the forwarder gave up on it). This copy
      // ends without a word; the forwarder listens to its grantee only.
      if (!input.granted) return { outputs: [], done: true }
      p.claim = "Granted"
      return maybeBegin(p, view)
    case "Ack":
      if (p.phase !== "Writing") return waiting
      p.tally = Quorum.addOk(p.tally, input.from)
      return maybeFinish(p, view, [])
    case "Deadline":
      // The write fails; it may still take effect (unless it never got its grant).
      return {
        outputs: [
          p.claim === "Waiting"
            ? reply({ _tag: "Failed", error: new NotGranted() })
            : failed(p, p.phase === "Reading" ? "R" : "W", view),
        ],
        done: true,
      }
    default:
      return input satisfies never
  }
}

/**
 * A plain write learns the context it supersedes; a conditional or read-modify-write one learns
 * what it is conditioned on. Both read a quorum first (this node's own copy counts).
 */
const start = (p: PutRequest, view: PutView): PutResult => {
  const { op } = p
  const reads =
    op.context === null ||
    op.cond !== undefined ||
    op.keep !== undefined ||
    op.incr !== undefined ||
    op.append === true
  if (reads && !Quorum.enough(p.tally)) {
    const outputs: Array<PutOutput> = []
    for (const node of p.replicas) if (node !== view.self) outputs.push({ _tag: "Ask", node })
    return { outputs, done: false }
  }
  p.readDone = true
  return maybeBegin(p, view)
}

/** One replica's answer to the read phase. */
const onRead = (p: PutRequest, from: NodeId, obj: Version.Obj, view: PutView): PutResult => {
  // An answer from a node never asked (a confused peer, a stale rid) is not read: it would add
  // versions to the write's context that no replica it asked holds.
  if (p.phase !== "Reading" || p.responses.has(from) || !p.tally.asked.includes(from)) {
    return waiting
  }
  p.responses.set(from, obj)
  p.tally = Quorum.addOk(p.tally, from, counts(p.substitutes, from, obj))
  // AP: once everyone asked has answered, write with the best context known rather than
  // refuse (at worst the write becomes a sibling, never a loss). CP: refuse.
  const apDone = view.mode === "ap" && p.waitFor.every((n) => p.responses.has(n))
  if (Quorum.enough(p.tally) || apDone) {
    p.readDone = true
    return maybeBegin(p, view)
  }
  if (Quorum.complete(p.tally)) return { outputs: [failed(p, "R", view)], done: true }
  return waiting
}

/**
 * The write's event is minted once its read phase is over and, for a forwarded write, once its
 * forwarder granted this coordinator the write (KV-9): a copy of the request that arrives late
 * (a paused or partitioned coordinator working through its backlog, a duplicated message, a
 * failover the forwarder already made) finds the grant gone to another and runs nowhere.
 */
const maybeBegin = (p: PutRequest, view: PutView): PutResult =>
  p.phase === "Reading" && p.readDone && p.claim === "Granted" ? begin(p, view) : waiting

/**
 * Mint the write's event, persist it, replicate it. The event is minted over the *current*
 * local object (not the one read when the request arrived): another write may have been
 * coordinated here meanwhile, and its dot must be neither reused nor overwritten.
 */
const begin = (p: PutRequest, view: PutView): PutResult => {
  const { op } = p
  const now = view.now
  let read = Version.empty
  for (const obj of p.responses.values()) read = Version.sync(read, obj)
  const seen = Version.sync(view.local(), read)
  // A plain write supersedes everything its coordinator knows when it mints the event: what its
  // read quorum held and every write coordinated here since. Plain writes through one
  // coordinator therefore never pile up as siblings (a hot key under redis-benchmark would
  // otherwise carry one sibling per write in flight); only writes coordinated on different
  // replicas at the same moment can still be concurrent.
  const clock = op.context ?? Version.context(seen)
  // Conditions and read-modify-writes are decided here, over everything this coordinator
  // knows at the moment it mints (EXP-2, COND-1).
  const current = Version.readAt(seen, now)
  // The value a plain GET would read here: for a counter, the join of every live counter
  // sibling, not the resolved sibling's own total.
  p.previous =
    current === undefined
      ? undefined
      : {
          value: Version.readValueAt(seen, now)!,
          ...(current.sibling.exp === undefined ? {} : { exp: current.sibling.exp }),
        }
  if (skips(op, seen, current !== undefined)) {
    const result: ClientResult = p.previous
      ? { _tag: "PutSkipped", previous: p.previous }
      : { _tag: "PutSkipped" }
    return { outputs: [reply(result)], done: true }
  }
  const outputs: Array<PutOutput> = []
  // Stamp the write above everything it saw, whatever this node's wall clock says (KV-LWW-1).
  let hlc = view.hlc
  for (const d of Version.siblings(seen)) hlc = Hlc.observe(hlc, d.sibling.ts)
  p.existed = Version.siblings(seen).some(
    (d) => !Version.dead(d.sibling, now) && Version.descends(clock, [[d.actor, d.counter]]),
  )
  let sibling: Version.Sibling
  if (op.incr !== undefined) {
    const counted = incremented(view.self, seen, current, op.incr, now)
    if (typeof counted === "string") {
      if (hlc !== view.hlc) outputs.push({ _tag: "Clock", hlc })
      outputs.push(reply({ _tag: "Failed", error: new BadRequest({ detail: counted }) }))
      return { outputs, done: true }
    }
    hlc = Hlc.tick(hlc, now)
    p.total = Version.counterTotal(counted)
    // INCR keeps the key's expiry, as Redis does.
    const exp = current?.sibling.exp
    sibling = { value: p.total, ts: hlc, counter: counted, ...(exp === undefined ? {} : { exp }) }
  } else {
    hlc = Hlc.tick(hlc, now)
    const value =
      op.keep === "value"
        ? p.previous!.value
        : op.append === true
          ? (p.previous?.value ?? "") + (op.value ?? "")
          : op.value
    // KEEPTTL and APPEND keep the live value's expiry, as Redis does.
    const exp = op.keep === "ttl" || op.append === true ? p.previous?.exp : op.exp
    sibling = exp === undefined || value === null ? { value, ts: hlc } : { value, ts: hlc, exp }
  }
  outputs.push({ _tag: "Clock", hlc })
  // The dot's counter follows the write's hybrid timestamp whenever it may (RECLAIM-2).
  const minted = Version.update(seen, clock, sibling, view.self, sibling.ts)
  p.written = view.reconcile(minted)
  p.phase = "Writing"
  // Pending owners get every write too, and must acknowledge it on top of W: once they own
  // the key, no acknowledged write may be missing from them.
  const { targets, pendingOwners } = view.placement()
  p.targets = [...targets, ...pendingOwners.map((node) => ({ node, hintFor: undefined }))]
  const nodes = p.targets.map((t) => t.node)
  if (!nodes.includes(view.self)) nodes.push(view.self)
  const need = Math.min(p.w + pendingOwners.length, nodes.length)
  p.tally = Quorum.addOk(Quorum.make(need, nodes), view.self)
  outputs.push({ _tag: "Persist", obj: p.written })
  for (const target of p.targets) {
    if (target.node !== view.self) outputs.push({ _tag: "Replicate", target, obj: p.written })
  }
  return maybeFinish(p, view, outputs)
}

/** At W acknowledgements (this node's own included) the write answers its client. */
const maybeFinish = (p: PutRequest, view: PutView, outputs: Array<PutOutput>): PutResult => {
  if (p.phase !== "Writing" || !Quorum.enough(p.tally)) {
    return outputs.length === 0 ? waiting : { outputs, done: false }
  }
  const context = Version.context(p.written)
  outputs.push(
    reply({
      _tag: "PutOk",
      context,
      dot: [view.self, context.find(([a]) => a === view.self)![1]],
      existed: p.existed,
      ...(p.previous === undefined ? {} : { previous: p.previous }),
      ...(p.total === undefined ? {} : { total: p.total }),
    }),
  )
  return { outputs, done: true }
}

const reply = (result: ClientResult): PutOutput => ({ _tag: "Reply", result })

const failed = (p: PutRequest, which: "R" | "W", view: PutView): PutOutput =>
  reply({ _tag: "Failed", error: quorumNotMet(which, p.tally, view.timeoutMs) })

export const INT64_MIN = -(2n ** 63n)
export const INT64_MAX = 2n ** 63n - 1n

/**
 * The counter an increment writes (CTR-1): the join of every live counter sibling, or a new
 * counter over the live integer value (0 when none), plus `by` on this coordinator's entry. A
 * string that is not an integer (a float, for INCRBYFLOAT) fails with Redis's error.
 */
export const incremented = (
  self: NodeId,
  seen: Version.Obj,
  current: Version.Dotted | undefined,
  incr: NonNullable<PutOp["incr"]>,
  now: number,
): Version.Counter | string => {
  let counter: Version.Counter
  if (current?.sibling.counter !== undefined) {
    counter = Version.liveCounterAt(seen, now)!
    if (counter.float && !incr.float) return "value is not an integer or out of range"
  } else {
    const text = current?.sibling.value ?? "0"
    // As Redis parses them (string2ld, string2ll): no surrounding space, no "+" or "-0" or
    // leading zero in an integer.
    const valid = incr.float
      ? /^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i.test(text) && Number.isFinite(Number(text))
      : /^(0|-?[1-9]\d*)$/.test(text) && BigInt(text) >= INT64_MIN && BigInt(text) <= INT64_MAX
    if (!valid) {
      return incr.float ? "value is not a valid float" : "value is not an integer or out of range"
    }
    counter = {
      base: incr.float ? String(Number(text)) : text,
      baseTs: current?.sibling.ts ?? 0,
      p: [],
      n: [],
      float: incr.float,
    }
  }
  const next = Version.increment(counter, self, incr.by, incr.float)
  const total = Version.counterTotal(next)
  if (next.float) {
    if (!Number.isFinite(Number(total))) return "increment would produce NaN or Infinity"
  } else if (BigInt(total) < INT64_MIN || BigInt(total) > INT64_MAX) {
    return "increment or decrement would overflow"
  }
  return next
}

/** A conditional or read-modify-write whose condition does not hold writes nothing. */
export const skips = (op: PutOp, seen: Version.Obj, live: boolean): boolean => {
  if (op.keep === "value" && !live) return true
  switch (op.cond) {
    case undefined:
      return false
    case "nx":
      return live
    case "xx":
      return !live
    case "context":
      return !sameClock(Version.context(seen), op.context ?? Version.emptyClock)
  }
}

export const sameClock = (a: Version.Clock, b: Version.Clock): boolean =>
  Version.descends(a, b) && Version.descends(b, a)
