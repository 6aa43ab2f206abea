/**
 * The PUT/DEL coordinator, on a replica of the key: read phase (the context a plain write
 * supersedes, or what a conditional write depends on), then mint once — for a write forwarded
 * here, once its forwarder granted it (KV-9; the forwarder is node-forward.ts) — persist and
 * replicate to W (sloppy substitutes and pending owners included).
 *
 * Owns: the Put requests in `state.pending`. Must not: mint a forwarded write without its
 * forwarder's grant, run a write this node does not replicate, or reuse a dot (RECLAIM-2).
 */
import { BadRequest, NotGranted, NotReplica } from "./failure.ts"
import type { Out } from "./ready.ts"
import * as Hlc from "./hlc.ts"
import * as Quorum from "./quorum.ts"
import * as Version from "./version.ts"
import type { ClientResult, PeerMessage, PutOp, StoreView } from "./messages.ts"
import type { NodeId } from "./ids.ts"
import {
  fail,
  failQuorum,
  reconcile,
  respond,
  type Origin,
  type Placement,
  type PutPending,
  type State,
} from "./node-state.ts"
import { persist } from "./node-store.ts"
import {
  counts,
  forwardedRoute,
  pendingOwnersOf,
  preferred,
  readSet,
  targetsOf,
  tooFewReplicas,
} from "./node-placement.ts"

export const startPut = (
  state: State,
  now: number,
  origin: Origin,
  op: PutOp,
  replicas: ReadonlyArray<NodeId>,
  store: StoreView,
  out: Out,
  placement: Placement = undefined,
): void => {
  state.stats.puts++
  const w = op.w ?? state.config.w
  if (tooFewReplicas(state, origin, "W", w, replicas.length, out)) return
  const rid = state.nextRid++
  const local = store.get(op.key) ?? Version.empty
  // The read phase of a plain write asks where copies are (sloppy substitutes included).
  const { asked, substitutes, waitFor } = readSet(state, op.key, now, placement)
  if (!asked.includes(state.config.self)) asked.push(state.config.self)
  const p: PutPending = {
    _tag: "Put",
    origin,
    op,
    replicas: asked,
    substitutes,
    waitFor,
    targets: [],
    w,
    phase: "Reading",
    tally: Quorum.make(Math.min(state.config.r, asked.length - substitutes.size), asked),
    responses: new Map([[state.config.self, local]]),
    written: local,
    existed: false,
    placement,
    readDone: false,
    claim: origin._tag === "Peer" && !state.config.unsafeFailover ? "Waiting" : "Granted",
  }
  p.tally = Quorum.addOk(p.tally, state.config.self)
  state.pending.set(rid, p)
  out.setTimer({ _tag: "SetTimer", rid, kind: "Deadline", at: now + state.config.requestTimeoutMs })
  if (origin._tag === "Peer" && p.claim === "Waiting") {
    // Ask the forwarder for the right to run this write, in parallel with the read phase.
    const claim: PeerMessage = { _tag: "CoordinateClaim", rid: origin.rid, put: rid }
    out.sendNow({ _tag: "Send", to: origin.node, message: claim })
  }
  // A plain write learns the context it supersedes; a conditional or read-modify-write one
  // learns what it is conditioned on. Both read a quorum first.
  const reads =
    op.context === null ||
    op.cond !== undefined ||
    op.keep !== undefined ||
    op.incr !== undefined ||
    op.append === true
  if (reads && !Quorum.enough(p.tally)) {
    for (const replica of asked) {
      if (replica === state.config.self) continue
      const message: PeerMessage = { _tag: "ReadRequest", rid, key: op.key }
      out.sendNow({ _tag: "Send", to: replica, message })
    }
    return
  }
  p.readDone = true
  maybeBeginWrite(state, now, rid, p, store, out)
}

/**
 * A write's event is minted once its read phase is over and, for a forwarded write, once its
 * forwarder granted this coordinator the write (KV-9): a copy of the request that arrives late
 * (a paused or partitioned coordinator working through its backlog, a duplicated message, a
 * failover the forwarder already made) finds the grant gone to another and runs nowhere.
 */
export const maybeBeginWrite = (
  state: State,
  now: number,
  rid: number,
  p: PutPending,
  store: StoreView,
  out: Out,
): void => {
  if (p.phase === "Reading" && p.readDone && p.claim === "Granted") {
    beginWrite(state, now, rid, p, store, out)
  }
}

/**
 * Mint the write's event on the coordinator, persist it, replicate it. The event is minted over
 * the *current* local object (not the one read when the request arrived): another write may
 * have been coordinated here meanwhile, and its dot must be neither reused nor overwritten.
 */
export const beginWrite = (
  state: State,
  now: number,
  rid: number,
  p: PutPending,
  store: StoreView,
  out: Out,
): void => {
  let read = Version.empty
  for (const obj of p.responses.values()) read = Version.sync(read, obj)
  const seen = Version.sync(store.get(p.op.key) ?? Version.empty, read)
  // A plain write supersedes everything its coordinator knows when it mints the event: what its
  // read quorum held and every write coordinated here since. Plain writes through one
  // coordinator therefore never pile up as siblings (a hot key under redis-benchmark would
  // otherwise carry one sibling per write in flight); only writes coordinated on different
  // replicas at the same moment can still be concurrent.
  const clock = p.op.context ?? Version.context(seen)
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
  if (skips(p.op, seen, current !== undefined)) {
    state.pending.delete(rid)
    const result: ClientResult = p.previous
      ? { _tag: "PutSkipped", previous: p.previous }
      : { _tag: "PutSkipped" }
    return respond(state, p.origin, result, out)
  }
  // Stamp the write above everything it saw, whatever this node's wall clock says (KV-LWW-1).
  for (const d of Version.siblings(seen)) state.hlc = Hlc.observe(state.hlc, d.sibling.ts)
  p.existed = Version.siblings(seen).some(
    (d) => !Version.dead(d.sibling, now) && Version.descends(clock, [[d.actor, d.counter]]),
  )
  let sibling: Version.Sibling
  if (p.op.incr !== undefined) {
    const counted = incremented(state, seen, current, p.op.incr, now)
    if (typeof counted === "string") {
      state.pending.delete(rid)
      return fail(state, p.origin, new BadRequest({ detail: counted }), out)
    }
    state.hlc = Hlc.tick(state.hlc, now)
    p.total = Version.counterTotal(counted)
    // INCR keeps the key's expiry, as Redis does.
    const exp = current?.sibling.exp
    sibling = {
      value: p.total,
      ts: state.hlc,
      counter: counted,
      ...(exp === undefined ? {} : { exp }),
    }
  } else {
    state.hlc = Hlc.tick(state.hlc, now)
    const value =
      p.op.keep === "value"
        ? p.previous!.value
        : p.op.append === true
          ? (p.previous?.value ?? "") + (p.op.value ?? "")
          : p.op.value
    // KEEPTTL and APPEND keep the live value's expiry, as Redis does.
    const exp = p.op.keep === "ttl" || p.op.append === true ? p.previous?.exp : p.op.exp
    sibling =
      exp === undefined || value === null ? { value, ts: state.hlc } : { value, ts: state.hlc, exp }
  }
  // The dot's counter follows the write's hybrid timestamp whenever it may (RECLAIM-2).
  const minted = Version.update(seen, clock, sibling, state.config.self, sibling.ts)
  p.written = reconcile(state, p.op.key, minted)
  p.phase = "Writing"
  // Pending owners (joining nodes, or the heirs of a leaving one) get every write too, and
  // must acknowledge it on top of W (Cassandra's pending ranges): once they own the key, no
  // acknowledged write may be missing from them.
  const pendingOwners = pendingOwnersOf(state, p.op.key, p.placement)
  p.targets = [
    ...targetsOf(state, p.op.key, now, p.placement),
    ...pendingOwners.map((node) => ({ node, hintFor: undefined })),
  ]
  const nodes = p.targets.map((t) => t.node)
  if (!nodes.includes(state.config.self)) nodes.push(state.config.self)
  const need = Math.min(p.w + pendingOwners.length, nodes.length)
  p.tally = Quorum.addOk(Quorum.make(need, nodes), state.config.self)
  persist(state, store, p.op.key, p.written, out)
  for (const t of p.targets) {
    if (t.node === state.config.self) continue
    const message: PeerMessage =
      t.hintFor === undefined
        ? { _tag: "WriteRequest", rid, key: p.op.key, obj: p.written, at: now }
        : { _tag: "HintedWrite", rid, key: p.op.key, obj: p.written, owner: t.hintFor, at: now }
    out.sendAfterPersist({ _tag: "Send", to: t.node, message })
  }
  maybeFinishPut(state, rid, p, out)
}

export const INT64_MIN = -(2n ** 63n)
export const INT64_MAX = 2n ** 63n - 1n

/**
 * The counter an increment writes (CTR-1): the join of every live counter sibling, or a new
 * counter over the live integer value (0 when none), plus `by` on this coordinator's entry. A
 * string that is not an integer (a float, for INCRBYFLOAT) fails with Redis's error.
 */
export const incremented = (
  state: State,
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
    const valid = incr.float
      ? /^\s*[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?\s*$/i.test(text) && Number.isFinite(Number(text))
      : /^-?(0|[1-9]\d*)$/.test(text) && BigInt(text) >= INT64_MIN && BigInt(text) <= INT64_MAX
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
  const next = Version.increment(counter, state.config.self, incr.by, incr.float)
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

export const maybeFinishPut = (state: State, rid: number, p: PutPending, out: Out): void => {
  if (p.phase !== "Writing" || !Quorum.enough(p.tally)) return
  state.pending.delete(rid)
  respond(
    state,
    p.origin,
    {
      _tag: "PutOk",
      context: Version.context(p.written),
      dot: [
        state.config.self,
        Version.context(p.written).find(([a]) => a === state.config.self)![1],
      ],
      existed: p.existed,
      ...(p.previous === undefined ? {} : { previous: p.previous }),
      ...(p.total === undefined ? {} : { total: p.total }),
    },
    out,
  )
}

// ---------------------------------------------------------------------------------------------
// Peer messages and the deadline

/**
 * A write forwarded to this node (KV-9): it runs here if this node is one of the key's replicas
 * (by its own ring, or by the forwarder's lookup under Chord routing); else it is refused before
 * anything is done, so that the forwarder may try the next replica.
 */
export const onCoordinateRequest = (
  state: State,
  now: number,
  origin: Origin,
  message: Extract<PeerMessage, { _tag: "CoordinateRequest" }>,
  store: StoreView,
  out: Out,
): void => {
  const route = forwardedRoute(state, message.replicas)
  if (route === undefined) {
    const detail = "Chord routing: no replicas named"
    return fail(state, origin, new BadRequest({ detail }), out)
  }
  const replicas = preferred(state, message.op.key, route.placement)
  if (!replicas.includes(state.config.self)) {
    // Our views disagree (membership or the Chord ring changing): refuse rather than mint a
    // stray event.
    return fail(state, origin, new NotReplica(), out)
  }
  startPut(state, now, origin, message.op, replicas, store, out, route.placement)
}

/** A replica acknowledged its copy: the write may have reached W. */
export const onWriteAck = (state: State, rid: number, from: NodeId, out: Out): void => {
  const p = state.pending.get(rid)
  if (p?._tag !== "Put" || p.phase !== "Writing") return
  p.tally = Quorum.addOk(p.tally, from)
  maybeFinishPut(state, rid, p, out)
}

/** The write's deadline: it fails with a quorum error (it may still take effect). */
export const onPutDeadline = (state: State, rid: number, p: PutPending, out: Out): void => {
  state.pending.delete(rid)
  if (p.claim === "Waiting") {
    return fail(state, p.origin, new NotGranted(), out)
  }
  failQuorum(state, p.origin, p.phase === "Reading" ? "R" : "W", p.tally, out)
}

/** The forwarder's answer to this coordinator's claim (KV-9). */
export const onGrant = (
  state: State,
  now: number,
  from: NodeId,
  rid: number,
  granted: boolean,
  store: StoreView,
  out: Out,
): void => {
  const p = state.pending.get(rid)
  if (p?._tag !== "Put" || p.claim !== "Waiting" || p.origin._tag !== "Peer") return
  if (p.origin.node !== from) return
  if (!granted) {
    // Another replica runs this write (or the forwarder gave up on it): drop this copy without
    // a word; the forwarder listens to its grantee only.
    state.pending.delete(rid)
    return
  }
  p.claim = "Granted"
  maybeBeginWrite(state, now, rid, p, store, out)
}

/** One replica's answer to a write's read phase. */
export const onPutRead = (
  state: State,
  now: number,
  rid: number,
  p: PutPending,
  from: NodeId,
  obj: Version.Obj,
  store: StoreView,
  out: Out,
): void => {
  if (p.phase !== "Reading" || p.responses.has(from)) return
  p.responses.set(from, obj)
  p.tally = Quorum.addOk(p.tally, from, counts(p.substitutes, from, obj))
  // AP: once everyone asked has answered, write with the best context known rather than
  // refuse (at worst the write becomes a sibling, never a loss). CP: refuse.
  const apDone = state.config.mode === "ap" && p.waitFor.every((n) => p.responses.has(n))
  if (Quorum.enough(p.tally) || apDone) {
    p.readDone = true
    maybeBeginWrite(state, now, rid, p, store, out)
  } else if (Quorum.complete(p.tally)) {
    state.pending.delete(rid)
    failQuorum(state, p.origin, "R", p.tally, out)
  }
}
