/**
 * Hybrid logical clocks (Kulkarni et al., "Logical Physical Clocks", OPODIS 2014), packed into
 * one number: `wallMs * 1024 + logical`. A timestamp never goes backwards on one node, and a node
 * that has seen timestamp t stamps everything after it above t, whatever its own wall clock says,
 * so a write that causally follows another always carries the larger timestamp (KV-LWW-1).
 *
 * Pure: the caller passes its physical time in. Packed values stay below 2^53 until the year
 * 2248 at 1024 logical ticks per millisecond.
 *
 * Owns nothing: the caller keeps its last timestamp. Must not: read a clock.
 */

const LOGICAL = 1024

/** Timestamp for a local event (a write), given the last one issued and the physical time. */
export const tick = (last: number, physicalMs: number): number =>
  Math.max(last + 1, Math.floor(physicalMs) * LOGICAL)

/** Advance past a timestamp received from another node. */
export const observe = (last: number, received: number): number => Math.max(last, received)

/** Physical milliseconds of a packed timestamp. */
export const wallMs = (ts: number): number => Math.floor(ts / LOGICAL)
