/**
 * The forwarder of a write received by a node outside the key's preference list (KV-9): it
 * hands the write to a replica to coordinate, the ones believed up first, grants the write to
 * the first replica that claims it, relays the grantee's answer to the client, and fails over
 * to the next replica only while nobody holds the grant.
 *
 * Owns: the Forward requests in `state.pending`, `stats.forwarded`, `stats.claimsRefused`.
 * Must not: grant one write twice, fail over after granting (the grantee may still run it,
 * however late), or fail over from a replica the failure detector still believes up.
 */
import { ForwardTimeout } from "./failure.ts"
import type { Out } from "./ready.ts"
import type * as Chord from "./chord.ts"
import type { ClientRef, PeerMessage, PutOp } from "./messages.ts"
import type { NodeId } from "./ids.ts"
import { believedUp, type ForwardPending, type State } from "./node-state.ts"

/** Hand a write to a replica to coordinate; the ones believed up first, in preference order. */
export const forward = (
  state: State,
  now: number,
  client: ClientRef,
  op: PutOp,
  replicas: ReadonlyArray<NodeId>,
  chordReplicas: ReadonlyArray<Chord.Peer> | undefined,
  out: Out,
): void => {
  const up = replicas.filter((r) => believedUp(state, r, now))
  const candidates = [...up, ...replicas.filter((r) => !up.includes(r))]
  const rid = state.nextRid++
  state.pending.set(rid, {
    _tag: "Forward",
    client,
    op,
    candidates,
    replicas: chordReplicas,
    attempt: 0,
    granted: undefined,
  })
  state.stats.forwarded++
  // Outlast the coordinator's own deadline, so that its clear answer (e.g. a quorum error)
  // arrives before we give up on it, and long enough for the failure detector to judge a silent
  // coordinator down (about 6 s with the defaults) and for the next replica to answer.
  const deadline = now + state.config.forwardDeadlineMs
  out.setTimer({ _tag: "SetTimer", rid, kind: "Deadline", at: deadline })
  sendForward(state, now, rid, out)
}

export const sendForward = (state: State, now: number, rid: number, out: Out): void => {
  const p = state.pending.get(rid)
  if (p?._tag !== "Forward") return
  const to = p.candidates[p.attempt % p.candidates.length]!
  const message: PeerMessage =
    p.replicas === undefined
      ? { _tag: "CoordinateRequest", rid, op: p.op }
      : { _tag: "CoordinateRequest", rid, op: p.op, replicas: p.replicas }
  out.sendNow({ _tag: "Send", to, message })
  out.setTimer({ _tag: "SetTimer", rid, kind: "Forward", at: now + state.config.forwardTimeoutMs })
}

/**
 * Grant a forwarded write to its first claimant only; refuse every other claim, and every claim
 * for a request this node no longer has (answered, timed out, or of an earlier incarnation:
 * request ids never repeat, KV-6).
 */
export const onClaim = (state: State, from: NodeId, rid: number, put: number, out: Out): void => {
  const p = state.pending.get(rid)
  const granted =
    p?._tag === "Forward" &&
    // Only a replica this write was sent to may run it.
    p.candidates.slice(0, p.attempt + 1).includes(from) &&
    (p.granted === undefined || (p.granted.node === from && p.granted.put === put))
  if (granted) p.granted = { node: from, put }
  else state.stats.claimsRefused++
  const answer: PeerMessage = { _tag: "CoordinateGrant", rid: put, granted }
  out.sendNow({ _tag: "Send", to: from, message: answer })
}

/** A coordinator's answer: the grantee's result goes to the client; a refusal may fail over. */
export const onCoordinateResponse = (
  state: State,
  now: number,
  from: NodeId,
  message: Extract<PeerMessage, { _tag: "CoordinateResponse" }>,
  out: Out,
): void => {
  const p = state.pending.get(message.rid)
  if (p?._tag !== "Forward") return
  // Once granted, only the grantee speaks for the write (another answer is a refused copy).
  if (p.granted !== undefined && p.granted.node !== from) return
  // Refused before anything was done (it is no replica in its view) and nobody holds the
  // grant: the next replica may run the write (KV-9 holds: no copy can run elsewhere).
  if (
    message.result._tag === "Failed" &&
    message.result.error._tag === "NotReplica" &&
    p.granted === undefined &&
    p.attempt + 1 < p.candidates.length
  ) {
    p.attempt++
    return sendForward(state, now, message.rid, out)
  }
  state.pending.delete(message.rid)
  if (message.result._tag === "Failed") state.stats.failures++
  out.sendNow({ _tag: "Reply", client: p.client, result: message.result })
}

/**
 * The current replica has been silent a `forwardTimeoutMs`. A grantee may run the write however
 * late: nobody else may (KV-9), so wait for it. A replica believed up is waited for too: slow is
 * not dead, and a second copy is wasted work. Else the next replica gets the write.
 */
export const onForwardTimer = (
  state: State,
  now: number,
  rid: number,
  p: ForwardPending,
  out: Out,
): void => {
  const current = p.candidates[p.attempt % p.candidates.length]!
  if (p.granted !== undefined || believedUp(state, current, now)) {
    out.setTimer({
      _tag: "SetTimer",
      rid,
      kind: "Forward",
      at: now + state.config.forwardTimeoutMs,
    })
    return
  }
  p.attempt++
  if (p.attempt < p.candidates.length) sendForward(state, now, rid, out)
}

/** No replica answered by the deadline: the write fails (it may still take effect). */
export const onForwardDeadline = (state: State, rid: number, p: ForwardPending, out: Out): void => {
  state.pending.delete(rid)
  state.stats.failures++
  out.sendAfterPersist({
    _tag: "Reply",
    client: p.client,
    result: {
      _tag: "Failed",
      error: new ForwardTimeout({ withinMs: state.config.forwardDeadlineMs, tried: p.candidates }),
    },
  })
}
