/**
 * Why a client request failed: one typed error per case, each carrying the facts of its case
 * (how many replicas answered, which members were down, which lookup failed) instead of a
 * sentence to be parsed. The sentence a client reads is each class's `message`, computed from
 * those facts.
 *
 * The classes are `Schema.TaggedError`s: tagged errors like `Data.TaggedError` (an `Error`, a
 * `_tag`, structural equality, yieldable in an Effect) whose schema is the class itself, so that
 * a failure crosses the wire (`CoordinateResponse`, impl/wire/schema.ts) and comes back as the
 * same class. They are built only when a request fails: the hot path never allocates one.
 *
 * `kindOf` sorts the cases into the six kinds a client acts on (retry, back off, give up; and
 * whether the write may still have taken effect); the RESP server maps kinds to error codes,
 * exhaustively.
 *
 * Owns: the failure vocabulary. Must not: decide when a request fails (the machines do).
 */
import { Match, Schema } from "effect"
import type * as Quorum from "./quorum.ts"

const Count = Schema.NonNegativeInt
const Nodes = Schema.Array(Schema.String)
const Which = Schema.Literal("R", "W")

/** The R or W replicas a request needed did not answer within its deadline. */
export class QuorumNotMet extends Schema.TaggedError<QuorumNotMet>()("QuorumNotMet", {
  which: Which,
  answered: Count,
  need: Count,
  asked: Count,
  withinMs: Count,
}) {
  override get message(): string {
    return (
      `quorum not met: ${this.answered} of ${this.need} required replicas answered ` +
      `(${this.which}=${this.need}, N=${this.asked}) within ${this.withinMs} ms`
    )
  }
}

/** The failure of a request whose `tally` did not reach its quorum within `withinMs`. */
export const quorumNotMet = (
  which: "R" | "W",
  tally: Quorum.Tally,
  withinMs: number,
): QuorumNotMet =>
  new QuorumNotMet({
    which,
    answered: tally.ok.length,
    need: tally.need,
    asked: tally.asked.length,
    withinMs,
  })

/** Fewer replicas are known for the key than the request's R or W (a ring still forming). */
export class TooFewReplicas extends Schema.TaggedError<TooFewReplicas>()("TooFewReplicas", {
  which: Which,
  need: Count,
  known: Count,
}) {
  override get message(): string {
    return (
      `quorum not met: ${this.known} replica(s) known for this key, fewer than ` +
      `${this.which}=${this.need} (the ring is still forming?); retry`
    )
  }
}

/** A SCAN needs every member but at most N-1: too many are believed down. */
export class ScanMembersDown extends Schema.TaggedError<ScanMembersDown>()("ScanMembersDown", {
  down: Nodes,
  n: Count,
}) {
  override get message(): string {
    return (
      `quorum not met: SCAN needs all but at most N-1=${this.n - 1} members, ` +
      `${this.down.length} are down (${this.down.join(", ")})`
    )
  }
}

/** A SCAN page's deadline passed before every member asked answered. */
export class ScanIncomplete extends Schema.TaggedError<ScanIncomplete>()("ScanIncomplete", {
  answered: Count,
  asked: Count,
  silent: Nodes,
}) {
  override get message(): string {
    return (
      `quorum not met: SCAN heard from ${this.answered} of ${this.asked} members ` +
      `(no answer from ${this.silent.join(", ")})`
    )
  }
}

/** No replica a write was forwarded to answered by the forwarder's deadline. */
export class ForwardTimeout extends Schema.TaggedError<ForwardTimeout>()("ForwardTimeout", {
  withinMs: Count,
  tried: Nodes,
}) {
  override get message(): string {
    return (
      `no replica of the key answered within ${this.withinMs} ms ` +
      `(tried ${this.tried.join(", ")})`
    )
  }
}

/** A forwarded write's coordinator never got the forwarder's grant (another replica ran it). */
export class NotGranted extends Schema.TaggedError<NotGranted>()("NotGranted", {}) {
  override get message(): string {
    return "the forwarder never granted this replica the write (it went to another replica)"
  }
}

/** The node a client spoke to went down before it answered (the simulator's clients). */
export class NodeDown extends Schema.TaggedError<NodeDown>()("NodeDown", { node: Schema.String }) {
  override get message(): string {
    return `node ${this.node} is down`
  }
}

/** A client could not reach the node at all: nothing was done (the explorer's clients). */
export class ConnectionRefused extends Schema.TaggedError<ConnectionRefused>()(
  "ConnectionRefused",
  { node: Schema.String },
) {
  override get message(): string {
    return `connection refused: ${this.node} is down`
  }
}

/** The node has `limit` requests in flight already. */
export class Overloaded extends Schema.TaggedError<Overloaded>()("Overloaded", { limit: Count }) {
  override get message(): string {
    return "too many requests in flight; retry later"
  }
}

/**
 * The request itself is wrong (an R or W out of range, INCR on a non-integer, an operator
 * intent the cluster's state forbids): `detail` is the sentence the client reads, worded as
 * Redis words its own errors where Redis has one.
 */
export class BadRequest extends Schema.TaggedError<BadRequest>()("BadRequest", {
  detail: Schema.String,
}) {
  override get message(): string {
    return this.detail
  }
}

/** The node is starting and has not heard from a peer yet. */
export class Starting extends Schema.TaggedError<Starting>()("Starting", {}) {
  override get message(): string {
    return "this node is starting and waits to hear from a peer before it serves; retry"
  }
}

/** CP mode: this node sees `sees` of `members` members, not a majority, and refuses writes. */
export class Minority extends Schema.TaggedError<Minority>()("Minority", {
  sees: Count,
  members: Count,
}) {
  override get message(): string {
    return (
      `CP mode: this node sees ${this.sees} of ${this.members} members; ` +
      "writes need a majority (partitioned minority)"
    )
  }
}

/** Chord routing: the lookup of the key's successor failed (or this node has not joined). */
export class LookupFailed extends Schema.TaggedError<LookupFailed>()("LookupFailed", {
  reason: Schema.Literal(
    "NotJoined",
    "Overloaded",
    "NoRoute",
    "HopLimit",
    "TimeoutLimit",
    "Refused",
  ),
  hops: Count,
  timeouts: Count,
}) {
  override get message(): string {
    const why =
      this.reason === "NotJoined"
        ? "this node has not joined the Chord ring yet"
        : `the lookup of the key's successor failed (${this.reason}, ` +
          `${this.hops} hops, ${this.timeouts} timeouts)`
    return `${why}; retry`
  }
}

/**
 * A write was forwarded to a node that is not one of the key's replicas in its own view
 * (membership views disagree while they change): it refused before doing anything, so the write
 * did not take effect, and the forwarder may try the next replica.
 */
export class NotReplica extends Schema.TaggedError<NotReplica>()("NotReplica", {}) {
  override get message(): string {
    return "forwarded to a node that is not a replica"
  }
}

/** Every case, as one schema (the wire decodes a failure into its class). */
export const RequestErrorSchema = Schema.Union(
  QuorumNotMet,
  TooFewReplicas,
  ScanMembersDown,
  ScanIncomplete,
  ForwardTimeout,
  NotGranted,
  NodeDown,
  ConnectionRefused,
  Overloaded,
  BadRequest,
  Starting,
  Minority,
  LookupFailed,
  NotReplica,
)

export type RequestError = typeof RequestErrorSchema.Type

/**
 * The kinds a client acts on:
 *  - `QuorumNotMet`: too few replicas answered or are known; a write may still take effect.
 *  - `Timeout`: nobody answered in time; a write may still take effect.
 *  - `Overloaded`: refused before anything was done; retry later.
 *  - `BadRequest`: the request is wrong; retrying does not help.
 *  - `Unavailable`: refused before anything was done (starting, minority, no route); retry.
 *  - `NotReplica`: refused before anything was done; retry (another replica may run it).
 */
export type FailureKind =
  | "QuorumNotMet"
  | "Timeout"
  | "Overloaded"
  | "BadRequest"
  | "Unavailable"
  | "NotReplica"

export const kindOf: (error: RequestError) => FailureKind = Match.type<RequestError>().pipe(
  Match.tagsExhaustive({
    QuorumNotMet: () => "QuorumNotMet" as const,
    TooFewReplicas: () => "QuorumNotMet" as const,
    ScanMembersDown: () => "QuorumNotMet" as const,
    ScanIncomplete: () => "QuorumNotMet" as const,
    ForwardTimeout: () => "Timeout" as const,
    NotGranted: () => "Timeout" as const,
    NodeDown: () => "Timeout" as const,
    ConnectionRefused: () => "Unavailable" as const,
    Overloaded: () => "Overloaded" as const,
    BadRequest: () => "BadRequest" as const,
    Starting: () => "Unavailable" as const,
    Minority: () => "Unavailable" as const,
    LookupFailed: () => "Unavailable" as const,
    NotReplica: () => "NotReplica" as const,
  }),
)
