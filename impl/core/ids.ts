/**
 * Branded identifiers, so that a node id, a request id and a ring token cannot be confused.
 * Owns: the id types and their constructors. Must not: validate beyond the type system
 * (impl/wire validates everything that crosses a socket).
 */
import type { Brand } from "effect"

/** A physical node's stable identity, e.g. "n1". */
export type NodeId = string & Brand.Brand<"NodeId">
/** A request id, unique per node that assigned it. */
export type RequestId = number & Brand.Brand<"RequestId">
/** A position on the ring, an integer in [0, 2^52). */
export type Token = number & Brand.Brand<"Token">

export const NodeId = (id: string): NodeId => id as NodeId
export const RequestId = (id: number): RequestId => id as RequestId
export const Token = (t: number): Token => t as Token
